/**
 * The `OpenAi` service: the official `openai` SDK, governed.
 *
 * Every call estimates its cost, acquires it atomically across its scopes (organization, project, the
 * model's pool, an optional tenant), calls the SDK with `withResponse()` (the SDK's own retries off),
 * syncs the limiter from the `x-ratelimit-*` headers, and settles the permit to the actual `usage`. On
 * failure it classifies the error into a typed kind, closes the pool's gate on a hint (so every fiber
 * waits, not just the one refused), feeds the model's circuit breaker, and retries per policy — every
 * retry going back through admission.
 *
 * Users pass the SDK's own parameter types and get the SDK's own result types back, as Effects with
 * typed errors.
 *
 * @since 0.1.0
 */
import type { Budget, CircuitBreaker, LimiterStore, Retry } from "@sluice/core"
import { RateLimiter } from "@sluice/core"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import OpenAIClient from "openai"
import type OpenAI from "openai"
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionCreateParamsStreaming
} from "openai/resources/chat/completions"
import type { CreateEmbeddingResponse, EmbeddingCreateParams } from "openai/resources/embeddings"
import type { ImageGenerateParamsNonStreaming, ImagesResponse } from "openai/resources/images"
import type { Response as OpenAiResponse, ResponseCreateParamsNonStreaming } from "openai/resources/responses/responses"
import * as Call from "./internal/call.js"
import * as Endpoints from "./internal/endpoint.js"
import * as Learn from "./internal/learn.js"
import * as TimeSlice from "./internal/timeSlice.js"
import * as Wire from "./internal/wire.js"
import type * as OpenAiError from "./OpenAiError.js"
import * as ResponseCache from "./ResponseCache.js"
import * as Tiers from "./Tiers.js"
import * as TokenEstimator from "./TokenEstimator.js"

/**
 * The errors a call can end with: OpenAI's kinds, the limiter's deadline, an open breaker.
 *
 * @since 0.1.0
 * @category errors
 */
export type CallError =
  | OpenAiError.OpenAiError
  | RateLimiter.DeadlineExceeded
  | RateLimiter.CostExceedsCapacity
  | RateLimiter.ScopeClosed
  | LimiterStore.LimiterStoreError
  | CircuitBreaker.CircuitOpen
  | Retry.RetryDeadlineExceeded

// -----------------------------------------------------------------------------
// the call surface: declared once, for OpenAi, Routing and wrapOpenAI
// -----------------------------------------------------------------------------

/**
 * The calls of the OpenAI surface Sluice governs, each with the SDK's parameters and result (for
 * a stream, its chunks). `OpenAi.Service`, `Routing.Service` and `wrapOpenAI`'s client derive their calls
 * from this one table through {@link CallSurface}.
 *
 * @since 0.2.0
 * @category call surface
 */
export interface Calls {
  readonly "chat.completions.create": {
    readonly params: ChatCompletionCreateParamsNonStreaming
    readonly result: ChatCompletion
  }
  /** Streams the chunks; the final usage chunk settles the reservation, interruption releases it. */
  readonly "chat.completions.stream": {
    readonly params: Omit<ChatCompletionCreateParamsStreaming, "stream"> & { readonly stream?: true }
    readonly result: ChatCompletionChunk
  }
  readonly "responses.create": { readonly params: ResponseCreateParamsNonStreaming; readonly result: OpenAiResponse }
  readonly "embeddings.create": { readonly params: EmbeddingCreateParams; readonly result: CreateEmbeddingResponse }
  readonly "images.generate": { readonly params: ImageGenerateParamsNonStreaming; readonly result: ImagesResponse }
}

/**
 * @since 0.2.0
 * @category call surface
 */
export type CallName = keyof Calls

/**
 * How one surface types its calls: `type` is the call named `this["call"]` (a type lambda,
 * as effect's `TypeLambda`).
 *
 * @since 0.2.0
 * @category call surface
 */
export interface CallLambda {
  readonly call: CallName
  readonly type: unknown
}

/**
 * The type a {@link CallLambda} gives the call `K`.
 *
 * @since 0.2.0
 * @category call surface
 */
export type CallOf<F extends CallLambda, K extends CallName> = (F & { readonly call: K })["type"]

/**
 * The SDK's call surface — `chat.completions.create` and `stream`, `responses.create`,
 * `embeddings.create`, `images.generate` — with each call typed by `F`: Effects here ({@link EffectCalls}),
 * routed Effects in `Routing`, Promises in `wrapOpenAI`.
 *
 * @since 0.2.0
 * @category call surface
 */
export interface CallSurface<F extends CallLambda> {
  readonly chat: {
    readonly completions: {
      readonly create: CallOf<F, "chat.completions.create">
      /** Streams the chunks; the final usage chunk settles the reservation, interruption releases it. */
      readonly stream: CallOf<F, "chat.completions.stream">
    }
  }
  readonly responses: { readonly create: CallOf<F, "responses.create"> }
  readonly embeddings: { readonly create: CallOf<F, "embeddings.create"> }
  readonly images: { readonly generate: CallOf<F, "images.generate"> }
}

/**
 * The `OpenAi` service's calls: the SDK's parameters and {@link OpenAi.CallOptions}; an Effect of the
 * SDK's result (a `Stream` of chunks for `stream`) failing with a {@link CallError}.
 *
 * @since 0.2.0
 * @category call surface
 */
export interface EffectCalls extends CallLambda {
  readonly type: (
    params: Calls[this["call"]]["params"],
    options?: OpenAi.CallOptions
  ) => this["call"] extends "chat.completions.stream" ? Stream.Stream<Calls[this["call"]]["result"], CallError>
    : Effect.Effect<Calls[this["call"]]["result"], CallError>
}

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace OpenAi {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Options {
    /** The organization's name for scopes (`org:<organization>`); default `"default"`. */
    readonly organization?: string | undefined
    /** The project, when its limits are separate (`org:<organization>/project:<project>`). */
    readonly project?: string | undefined
    /**
     * Limits: a usage tier's presets for the models used, explicit budgets (on the scopes this service
     * charges — see {@link scopesFor}), or both (explicit budgets win for a scope). With neither, the
     * adaptive mode learns each pool's limits from the response headers.
     */
    readonly tier?: Tiers.Tier | undefined
    readonly budgets?: ReadonlyArray<Budget.Budget> | undefined
    /**
     * For a pool with no configured limit (the adaptive mode, the default): its first calls go as probes
     * (up to 8 at once and at most a quarter of the cautious requests a minute, their estimates within a
     * quarter of the cautious tokens, the first whatever its size), and the herd is admitted once the first answer's `x-ratelimit-*` headers have taught the pool
     * its real limits (later headers keep them current). When the answer has no such headers, the pool starts
     * cautious: by default 60 requests and 20,000 tokens a minute. `false` leaves such pools unlimited
     * (only the server's 429s and their gates govern).
     */
    readonly adaptive?: false | { readonly requestsPerMinute?: number; readonly tokensPerMinute?: number } | undefined
    /**
     * For a pool with configured per-minute limits on its own scope (`org:<organization>/pool:<pool>`: a `tier`, or
     * `budgets` there) given without their bursts: from its first call until its first 429 on that limit, or for 3.9 s, the
     * calls go out over a ramp (1/64 of each such per-minute limit at once, doubling every 650 ms, all of it after
     * 3.9 s; a call goes while what went before it is within the ramp, whatever its size) instead of all in one
     * instant. OpenAI enforces some limits over shorter periods than it announces (60,000 a minute as 1,000 a
     * second) and its headers give the minute's figures: a whole configured minute sent at once is refused beyond
     * that bucket before the first 429 can be read, while over the ramp the first call that overflows it teaches
     * its size (a learned burst). The ramp lets out at least what the limits refill, so a herd larger than a
     * minute's bucket ends when it would have without it (no refill is lost, whatever its calls' sizes); one that
     * fits whole waits for the ramp, up to 3.9 s. The ramp counts what its calls were charged after their answers
     * (a call that used less than its estimate gives the rest back to it, as to the buckets). It runs once, from the
     * pool's first call: a herd that comes later goes as the budgets allow. Default `false` (the configured limits are taken as the whole
     * truth); the bulk runner (`sluice run`) turns it on, except when it routes.
     *
     * @since 0.2.0
     * @example
     * ```ts
     * import { OpenAi } from "@sluice/openai"
     *
     * // a long job on tier 1's published limits, which the server may enforce per second
     * const layer = OpenAi.layerConfig({ tier: 1, firstContactRamp: true })
     * ```
     */
    readonly firstContactRamp?: boolean | undefined
    /** The pool a model charges (default {@link Tiers.poolOf}: snapshots share their family's pool). */
    readonly poolOf?: ((model: string) => string) | undefined
    /** The retry policy (default `OpenAiRetry.defaultPolicy`). */
    readonly retry?: Retry.Policy<OpenAiError.OpenAiError> | undefined
    /**
     * A retry budget shared by every call of the service, so a provider incident cannot become a retry
     * storm: retries are allowed up to `ratio` of the recent first attempts plus `minRetries` per `window`
     * (see `Retry.makeRetryBudget`); beyond it a failure is returned instead of retried. Give options to make
     * one, or an existing budget to share it with other services. Default: none — every retry already goes
     * back through admission, so retries never exceed the limits; a budget bounds them further.
     */
    readonly retryBudget?: Retry.RetryBudget | Retry.RetryBudget.Options | undefined
    /**
     * Circuit breakers per model (default: open after 5 server errors, overloads, timeouts or connection
     * errors in a row, for 30 seconds; rate limits and the caller's own mistakes do not count); `false`
     * for none.
     */
    readonly breaker?: false | CircuitBreaker.CircuitBreaker.Options | CircuitBreaker.CircuitBreaker.Service | undefined
    /** Output tokens reserved when a call sets no maximum (default per model family). */
    readonly defaultMaxOutputTokens?: number | undefined
    /**
     * Settle each call to its actual `usage` (default `true`): an over-estimate goes back to the budget
     * at once. `false` keeps the estimate charged (a conservative, reserve-only mode).
     */
    readonly settleUsage?: boolean | undefined
    /**
     * Called with what happens to every call: each admission (with its wait), each success (reserved
     * versus used), each failed attempt. For progress displays and metrics of your own; it must not fail.
     */
    readonly onEvent?: ((event: CallEvent) => Effect.Effect<void>) | undefined
    /**
     * The service's metrics (see `OpenAiMetrics`; they are always counted, as Effect Metrics):
     * - `every`: keep the limiter's gauges (levels, limits, utilisation, queue depth per lane) current with a
     *   snapshot this often, on the `Clock`, while the service lives (`RateLimiter.sampleMetrics`). Default
     *   none: the gauges then move only when something calls `snapshot`.
     * - `tenants`: whether a call's tenant labels its series (`tenant`): `"omit"` (default: one series per
     *   tenant has no bound), `"label"` (the tenant as given: only for a few known tenants), or a function
     *   that buckets tenants into a few labels (their plan, a hash modulo 10).
     *
     * @since 0.2.0
     */
    readonly metrics?: {
      readonly every?: Duration.DurationInput | undefined
      readonly tenants?: "omit" | "label" | ((tenant: string) => string) | undefined
    } | undefined
    /**
     * Shares the thread during a burst (default 4 ms): a call yields to the event loop once the current
     * macrotask has been busy for longer than this, so when thousands of calls start at once (an
     * `Effect.forEach` with `concurrency: "unbounded"`) the first requests leave after one slice instead
     * of after all of them have been estimated and prepared, while the server's bucket sits full. A call
     * that starts while others wait goes behind them. Real time (`performance.now()`), not the `Clock`; a
     * call that starts within its slice is never delayed. Node only; `false` turns it off. Only on the
     * live `Clock`: under `TestClock` (any other clock) a call yields once through Effect's scheduler
     * instead and nothing waits on real time, so a test gives the same admissions at the same virtual
     * times on every run.
     */
    readonly timeSlice?: Duration.DurationInput | false | undefined
    /**
     * The response cache its calls go through (see `ResponseCache`): by default the `ResponseCache` in context
     * when there is one; `false` for none even then. The cache is read once, when the service is made: provide
     * it to the `OpenAi` layer (`Layer.provide(ResponseCache.layerMemory())` on the layer), not to the program
     * that uses the service — a cache provided only to the program is silently unused.
     *
     * @since 0.2.0
     */
    readonly cache?: ResponseCache.ResponseCache.Service | false | undefined
  }

  /**
   * @since 0.1.0
   * @category models
   */
  export interface CallOptions {
    /** The lane: `interactive` (default) or `background`. */
    readonly priority?: RateLimiter.Lane | undefined
    /**
     * Give up (with the estimated wait) when the call cannot be admitted by then. It bounds each
     * admission and the retries' waits. (In the adaptive mode, calls that arrive while a pool's probes
     * are out wait for the first answer, or 10 s, before they queue for admission; that wait is not bounded
     * by the deadline.)
     */
    readonly deadline?: Date | number | undefined
    readonly maxWait?: Duration.DurationInput | undefined
    /**
     * Wait for admission as if the call had arrived then (a `Date`, or epoch milliseconds): in its lane, behind the
     * calls that arrived before, ahead of those after (`RateLimiter.AcquireOptions.arrivedAt`). Its retries keep
     * its place on their own (the first attempt's arrival); give it for a call that is itself a retry, or a
     * fallback, of an earlier one (`OpenAiRouter` gives each deployment's call its request's arrival).
     *
     * @since 0.2.0
     */
    readonly arrivedAt?: Date | number | undefined
    /** A tenant scope (`tenant:<tenant>`) for fairness between the applications sharing a budget. */
    readonly tenant?: string | undefined
    /**
     * This call's retry policy instead of the service's; `false` for a single attempt (a router that
     * falls over to another model itself, say). Non-retryable kinds stay unretried whatever it says.
     */
    readonly retry?: Retry.Policy<OpenAiError.OpenAiError> | false | undefined
    /**
     * With a response cache (`ResponseCache`): `true` caches this call whatever the cache's policy for
     * non-deterministic requests; `false` neither reads nor writes the cache. Default: the policy (text at
     * `temperature: 0` or with a `seed`, embeddings, moderations).
     *
     * @since 0.2.0
     */
    readonly cache?: boolean | undefined
  }

  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service extends CallSurface<EffectCalls> {
    /** The SDK client the service calls. */
    readonly client: OpenAI
    readonly limiter: RateLimiter.Service
    /** The circuit breakers, keyed by model (`undefined` with `breaker: false`): routing reads them. */
    readonly breakers: CircuitBreaker.CircuitBreaker.Service | undefined
    /**
     * Any metered endpoint by its Batch-API path (`/v1/chat/completions`, `/v1/responses`,
     * `/v1/embeddings`, `/v1/images/generations`, `/v1/completions`, `/v1/moderations`) with a JSON body: what
     * the bulk runner calls.
     */
    readonly request: (
      url: string,
      body: Record<string, unknown>,
      options?: CallOptions
    ) => Effect.Effect<
      {
        readonly body: unknown
        readonly requestId: string | null
        readonly status: number
        /** `true` when the response cache answered it (or it shared an identical call under way): nothing sent. */
        readonly cached?: boolean | undefined
      },
      CallError
    >
    /** The scopes a call on `model` is charged against. */
    readonly scopesFor: (model: string, tenant?: string) => ReadonlyArray<string>
    /**
     * What the service has learned that the server enforces but does not announce (see {@link Learned}):
     * burst capacities below the announced limits, and limits found without headers.
     *
     * @since 0.1.0
     */
    readonly learned: Effect.Effect<ReadonlyArray<Learned>>
  }
}

/**
 * What happened to a call, for `onEvent`: `Admitted` once per attempt (after its wait for admission),
 * then `Succeeded` or `Failed`. `attempt` counts from 1; an attempt above 1 is a retry.
 *
 * @since 0.1.0
 * @category models
 */
export type CallEvent =
  | {
    readonly _tag: "Admitted"
    readonly model: string
    readonly attempt: number
    readonly scopes: ReadonlyArray<string>
    readonly cost: Budget.Cost
    readonly waitedMillis: number
    /** On a retry (`attempt` above 1): the kind (`_tag`) of the failure it retries. */
    readonly retryOf?: OpenAiError.OpenAiError["_tag"] | undefined
  }
  | {
    readonly _tag: "Succeeded"
    readonly model: string
    readonly attempt: number
    readonly reserved: Budget.Cost
    readonly used: Budget.Cost
    readonly latencyMillis: number
  }
  | {
    readonly _tag: "Failed"
    readonly model: string
    readonly attempt: number
    readonly error: OpenAiError.OpenAiError
    readonly latencyMillis: number
  }

/**
 * Something the service learned of a pool that the server does not announce: a `burst` (the server
 * enforces the announced per-minute limit over a shorter period: its bucket holds only `amount`), or a
 * `limit` per minute found without rate-limit headers (from a 429's message, or by backing off when the
 * message names none). `after` counts the pool's 429s on that dimension until then. The learned limits and
 * bursts are also in the limiter (`snapshot`, `limitsOf`) and the `sluice_openai_learned` gauge.
 *
 * @since 0.1.0
 * @category models
 */
export interface Learned {
  readonly scope: string
  readonly dimension: "requests" | "tokens"
  readonly kind: "burst" | "limit"
  readonly amount: number
  readonly after: number
}

/**
 * One line per thing learned, for summaries.
 *
 * @since 0.1.0
 * @category models
 * @example
 * ```ts
 * import { OpenAi } from "@sluice/openai"
 *
 * OpenAi.describeLearned([{ scope: "org:acme/pool:gpt-4o-mini", dimension: "tokens", kind: "burst", amount: 10_000, after: 3 }])
 * // ["tokens burst 10,000 on org:acme/pool:gpt-4o-mini after 3 429s"]
 * ```
 */
export const describeLearned = (learned: ReadonlyArray<Learned>): ReadonlyArray<string> => Learn.describe(learned)

/**
 * @since 0.1.0
 * @category tags
 */
export class OpenAi extends Context.Tag("@sluice/openai/OpenAi")<OpenAi, OpenAi.Service>() {}

/**
 * The scopes a call is charged against: the organization, its pool for the model, the project and
 * its pool (when a project is set) and the tenant (when given).
 *
 * @since 0.1.0
 * @category scopes
 */
export const scopesFor: (
  options: { readonly organization?: string | undefined; readonly project?: string | undefined },
  pool: string,
  tenant?: string
) => ReadonlyArray<string> = Call.scopesFor

/**
 * Builds the service over an SDK client. The limiter comes from context when one is there (so several
 * services, or other code, can share budgets); otherwise give budgets in the options.
 *
 * Every call takes the same path: its turn of the thread (`Options.timeSlice`), its body checked (a body the
 * service cannot read fails typed, `BadRequest` with `invalid_body`, unsent) and estimated
 * ({@link TokenEstimator}), then one governed call (`internal/call.ts`): the retry policy around the model's
 * breaker around each attempt, and each attempt admitted, marked sent, sent, settled, synced, and on a
 * failure classified and fed back.
 *
 * An attempt is marked sent when its request goes on the wire, not when the SDK is called: the SDK may await an
 * `apiKey` function or a token provider first, and the limiter reads the server's reports by the order calls were
 * marked sent. So the client's `fetch` is wrapped (once, however many services share the client) by a
 * pass-through that tells a governed request's attempt it is being sent; requests made with the client directly
 * go through it untouched.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  client: OpenAI,
  options: OpenAi.Options = {}
): Effect.Effect<OpenAi.Service, never, RateLimiter.RateLimiter | Scope.Scope> =>
  Effect.gen(function*() {
    const limiter = yield* RateLimiter.RateLimiter
    if (options.metrics?.every !== undefined) yield* RateLimiter.sampleMetrics(limiter, options.metrics.every)
    const calls = yield* Call.make(limiter, options)
    const cache = options.cache === false
      ? undefined
      : options.cache ?? Option.getOrUndefined(yield* Effect.serviceOption(ResponseCache.ResponseCache))
    const estimateOptions = { defaultMaxOutputTokens: options.defaultMaxOutputTokens }
    const sliceMillis = TimeSlice.millisOf(options.timeSlice)
    // whether this client's requests reach the `fetch` Sluice wrapped; cleared when an answered call shows not
    const wire = { on: Wire.install(client) }
    const unwired = () => {
      if (!wire.on) return false
      wire.on = false
      return true
    }
    const requestOptions = (signal: AbortSignal, onWire: (() => void) | undefined) => ({
      maxRetries: 0,
      signal,
      ...(onWire === undefined ? {} : { fetchOptions: Wire.options(onWire) })
    })

    /** A call on `path`, once it has its turn of the thread and its body has been read. */
    const governed = <A>(
      path: Endpoints.Path,
      params: unknown,
      call: OpenAi.CallOptions | undefined,
      request: () => Omit<Call.Request<A>, "path">
    ): Effect.Effect<Call.Answer<A>, CallError> =>
      TimeSlice.enter(
        sliceMillis,
        Effect.suspend(() => {
          const problem = Endpoints.serviceBodyProblem(path, params)
          if (problem !== undefined) {
            return Effect.fail(Endpoints.invalidBodyError(problem, (params as { readonly model?: unknown })?.model))
          }
          return calls.run({ path, ...request() }, call)
        })
      )

    /**
     * A governed call through the response cache, if any: in front of everything (a hit takes no turn of the
     * thread, no admission, no tokens).
     */
    /** Who answers, in the cache's key: two services on different deployments sharing a cache share no entry. */
    const cacheScope = JSON.stringify([client.baseURL, client.organization ?? null, client.project ?? null])
    /** Retry policies by identity, for {@link flightOf}. */
    const policies = new WeakMap<object, number>()
    let policiesSeen = 0
    /**
     * How a call is governed, for the cache's in-flight dedupe: only callers that agree on it share a call (none
     * gets another's deadline, retries, lane or tenant). A `maxWait` counts from the caller's arrival, so it is in
     * it as the time its admission must be made by (`now + maxWait`): callers that arrived apart with the same
     * `maxWait` do not share a call whose wait ends before theirs, or after.
     */
    const flightOf = (call: OpenAi.CallOptions | undefined, now: number): string => {
      const { deadline, maxWait, priority, retry, tenant } = call ?? {}
      let policy: number | false | null = null
      if (retry === false) policy = false
      else if (retry !== undefined) {
        policy = policies.get(retry) ?? ++policiesSeen
        policies.set(retry, policy)
      }
      return JSON.stringify([
        deadline === undefined ? null : typeof deadline === "number" ? deadline : deadline.getTime(),
        maxWait === undefined ? null : now + Duration.toMillis(Duration.decode(maxWait)),
        priority ?? "interactive",
        tenant ?? null,
        policy
      ])
    }
    /** {@link flightOf} at the `Clock`'s time (read only when the call has a `maxWait`). */
    const flightNow = (call: OpenAi.CallOptions | undefined): Effect.Effect<string> =>
      call?.maxWait === undefined
        ? Effect.sync(() => flightOf(call, 0))
        : Effect.map(Clock.currentTimeMillis, (now) => flightOf(call, now))

    const cached = <A>(
      path: Endpoints.Path,
      params: unknown,
      model: string,
      call: OpenAi.CallOptions | undefined,
      request: () => Omit<Call.Request<A>, "path">
    ): Effect.Effect<ResponseCache.ResponseCache.Stored<A>, CallError> => {
      const answered = Effect.map(governed(path, params, call, request), (answer) => ({
        body: answer.data,
        requestId: answer.request_id,
        status: answer.response.status
      }))
      return cache === undefined
        ? answered
        : Effect.flatMap(flightNow(call), (flight) =>
          cache.through({ path, body: params, model, cache: call?.cache, scope: cacheScope, flight }, answered))
    }

    const chatCreate: OpenAi.Service["chat"]["completions"]["create"] = (params, call) =>
      Effect.map(
        cached("/chat/completions", params, params.model, call, () => ({
          model: params.model,
          estimate: TokenEstimator.chat(params, estimateOptions),
          wired: wire.on,
          unwired,
          send: (signal, onWire) =>
            client.chat.completions.create(params, requestOptions(signal, onWire)).withResponse()
        })),
        (answer) =>
          answer.body
      )

    const chatStream: OpenAi.Service["chat"]["completions"]["stream"] = (params, call) => {
      const governedStream = Stream.suspend(() => {
        const problem = Endpoints.serviceBodyProblem("/chat/completions", params)
        if (problem !== undefined) return Stream.fail(Endpoints.invalidBodyError(problem, params?.model))
        return calls.stream({
          path: "/chat/completions",
          model: params.model,
          estimate: TokenEstimator.chat(params, estimateOptions),
          wired: wire.on,
          unwired,
          // the final chunk carries the usage the reservation settles to
          send: (signal, onWire) =>
            client.chat.completions.create(
              { ...params, stream: true, stream_options: { ...params.stream_options, include_usage: true } },
              requestOptions(signal, onWire)
            ).withResponse()
        }, call)
      })
      return cache === undefined ? governedStream : Stream.unwrap(Effect.map(flightNow(call), (flight) =>
        cache.replay(
          {
            path: "/chat/completions",
            body: params,
            model: params.model,
            cache: call?.cache,
            stream: true,
            scope: cacheScope,
            flight
          },
          governedStream
        )))
    }

    const responsesCreate: OpenAi.Service["responses"]["create"] = (params, call) => {
      const model = String(params.model ?? "gpt-4o")
      return Effect.flatMap(
        cached("/responses", params, model, call, () => ({
          model,
          estimate: TokenEstimator.responses(params as any, estimateOptions),
          wired: wire.on,
          unwired,
          send: (signal, onWire) => client.responses.create(params, requestOptions(signal, onWire)).withResponse()
        })),
        // an answer that says its response `failed` fails of its kind (after the call settled); one kept by the
        // bulk runner's `request` has no SDK `output_text` yet
        (answer) => Endpoints.checkResponseStatus(Endpoints.withOutputText(answer.body), model)
      )
    }

    const embeddingsCreate: OpenAi.Service["embeddings"]["create"] = (params, call) =>
      Effect.map(
        cached("/embeddings", params, params.model, call, () => ({
          model: params.model,
          estimate: TokenEstimator.embeddings(params),
          wired: wire.on,
          unwired,
          send: (signal, onWire) => client.embeddings.create(params, requestOptions(signal, onWire)).withResponse()
        })),
        (answer) => answer.body
      )

    const imagesGenerate: OpenAi.Service["images"]["generate"] = (params, call) =>
      Effect.map(
        cached("/images/generations", params, params.model ?? "dall-e-2", call, () => ({
          model: params.model ?? "dall-e-2",
          estimate: TokenEstimator.images(params),
          wired: wire.on,
          unwired,
          send: (signal, onWire) => client.images.generate(params, requestOptions(signal, onWire)).withResponse()
        })),
        (answer) => answer.body
      )

    const request: OpenAi.Service["request"] = (url, body, call) => {
      const path = Endpoints.endpointOf(url)
      if (path === undefined) return Effect.fail(Endpoints.unsupportedEndpointError(String(url)))
      // the body's model, for the price a hit saves (the estimate's, once read)
      const model = typeof body.model === "string" ? body.model : "unknown"
      return Effect.map(
        cached(path, body, model, call, () => {
          const estimate = TokenEstimator.forEndpoint(path, body, estimateOptions)!
          return {
            model: estimate.model,
            estimate,
            wired: wire.on,
            unwired,
            send: (signal, onWire) =>
              client.post(path, { body, ...requestOptions(signal, onWire) }).withResponse() as Promise<
                Call.Answer<unknown>
              >
          }
        }),
        (answer) => ({
          body: answer.body,
          requestId: answer.requestId,
          status: answer.status ?? 200,
          ...(answer.cached === true ? { cached: true } : {})
        })
      )
    }

    return {
      client,
      limiter,
      breakers: calls.breakers,
      chat: { completions: { create: chatCreate, stream: chatStream } },
      responses: { create: responsesCreate },
      embeddings: { create: embeddingsCreate },
      images: { generate: imagesGenerate },
      request,
      scopesFor: calls.scopesOf,
      learned: Effect.sync(() => calls.learned())
    } satisfies OpenAi.Service
  })

/**
 * The limiter's `coldStartLag` in every layer of this package (see `RateLimiter.Options.coldStartLag`): how much
 * longer the first calls of a drawn-down bucket may take to reach OpenAI than the later ones. Measured on Node 20:
 * the first `fetch` of a process reached a local server 53-57 ms after it was called (the next ones 1-7 ms), the
 * SDK's first calls ~90 ms; a new connection to the API adds its TCP and TLS handshakes. The refill held back
 * is given back by the first answer that says the server's time on it (`openai-processing-ms`, with or without
 * rate-limit headers), all but that of the time up to when the server had the call.
 *
 * @since 0.2.0
 * @category limits
 * @example
 * ```ts
 * import { Budget, RateLimiter } from "@sluice/core"
 * import { OpenAi } from "@sluice/openai"
 *
 * // a limiter of your own (for `OpenAi.make`), held back as the package's layers are
 * const limiter = RateLimiter.layer({
 *   budgets: [Budget.make("org:acme/pool:gpt-4o", [Budget.Limit.perMinute("tokens", 30_000)])],
 *   coldStartLag: OpenAi.coldStartLag
 * })
 * ```
 */
export const coldStartLag: Duration.Duration = Duration.millis(200)

/**
 * The budgets a configuration implies: the tier's presets for every preset model's pool (on
 * `org:<organization>/pool:<pool>`), then the explicit budgets, which win for their scopes.
 *
 * @since 0.1.0
 * @category limits
 */
export const budgetsFor = (options: OpenAi.Options): ReadonlyArray<Budget.Budget> => {
  const explicit = options.budgets ?? []
  const byScope = new Map<string, Budget.Budget>()
  if (options.tier !== undefined) {
    for (const budget of Tiers.budgets(options.tier, { organization: options.organization ?? "default" })) {
      byScope.set(budget.scope, budget)
    }
  }
  for (const budget of explicit) byScope.set(budget.scope, budget)
  return Array.from(byScope.values())
}

/**
 * The service over an existing `OpenAI` client, with its own limiter built from the options' budgets
 * on the `LimiterStore` in context (memory or Redis). Provides both `OpenAi` and `RateLimiter`.
 *
 * @since 0.1.0
 * @category layers
 * @example
 * ```ts
 * import { LimiterStore } from "@sluice/core"
 * import { OpenAi } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 * import OpenAIClient from "openai"
 *
 * const Live = OpenAi.layerClient(new OpenAIClient(), { organization: "acme", tier: 1 }).pipe(
 *   Layer.provide(LimiterStore.layerMemory)
 * )
 *
 * const program = Effect.gen(function*() {
 *   const openai = yield* OpenAi.OpenAi
 *   const completion = yield* openai.chat.completions.create({
 *     model: "gpt-4o-mini",
 *     messages: [{ role: "user", content: "Say hello" }],
 *     max_tokens: 20
 *   })
 *   return completion.choices[0].message.content
 * }).pipe(Effect.provide(Live))
 * ```
 */
export const layerClient = (
  client: OpenAI,
  options: OpenAi.Options = {}
): Layer.Layer<OpenAi | RateLimiter.RateLimiter, never, LimiterStore.LimiterStore> => {
  const limiter = RateLimiter.layer({ budgets: budgetsFor(options), coldStartLag })
  return Layer.merge(limiter, Layer.scoped(OpenAi, make(client, options)).pipe(Layer.provide(limiter)))
    .pipe(Layer.fresh)
}

/**
 * Options for the SDK client the layer creates.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClientOptions {
  readonly apiKey: Redacted.Redacted<string>
  readonly baseURL?: string | undefined
  /** The OpenAI organization and project ids sent as headers (they also name the scopes if set). */
  readonly organizationId?: string | undefined
  readonly projectId?: string | undefined
  /** A `fetch` for the SDK (the in-process simulator's, in tests). */
  readonly fetch?: typeof globalThis.fetch | undefined
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * Creates the SDK client (its own retries off: Sluice retries, through admission).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeClient = (options: ClientOptions): OpenAI =>
  new OpenAIClient({
    apiKey: Redacted.value(options.apiKey),
    maxRetries: 0,
    ...(options.baseURL === undefined ? {} : { baseURL: options.baseURL }),
    ...(options.organizationId === undefined ? {} : { organization: options.organizationId }),
    ...(options.projectId === undefined ? {} : { project: options.projectId }),
    ...(options.fetch === undefined ? {} : { fetch: options.fetch as any }),
    timeout: options.timeout === undefined ? 600_000 : Duration.toMillis(Duration.decode(options.timeout))
  })

/**
 * The service with a client built from `options` (the API key `Redacted`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: OpenAi.Options & ClientOptions
): Layer.Layer<OpenAi | RateLimiter.RateLimiter, never, LimiterStore.LimiterStore> =>
  layerClient(makeClient(options), {
    ...options,
    organization: options.organization ?? options.organizationId,
    project: options.project ?? options.projectId
  })

/**
 * The service configured from the environment the way the SDK reads it: `OPENAI_API_KEY` (as a
 * `Redacted`), `OPENAI_BASE_URL`, `OPENAI_ORG_ID`, `OPENAI_PROJECT_ID`; the options add limits.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: OpenAi.Options = {}
): Layer.Layer<OpenAi | RateLimiter.RateLimiter, ConfigError.ConfigError, LimiterStore.LimiterStore> =>
  Layer.unwrapEffect(
    Effect.map(
      Config.all({
        apiKey: Config.redacted("OPENAI_API_KEY"),
        baseURL: Config.option(Config.string("OPENAI_BASE_URL")),
        organizationId: Config.option(Config.string("OPENAI_ORG_ID")),
        projectId: Config.option(Config.string("OPENAI_PROJECT_ID"))
      }),
      (config) =>
        layer({
          ...options,
          apiKey: config.apiKey,
          baseURL: Option.getOrUndefined(config.baseURL),
          organizationId: Option.getOrUndefined(config.organizationId),
          projectId: Option.getOrUndefined(config.projectId)
        })
    )
  )
