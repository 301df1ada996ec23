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
import type { Budget, LimiterStore } from "@sluice/core"
import { CircuitBreaker, RateLimiter, Retry } from "@sluice/core"
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
import * as Adapt from "./internal/adapt.js"
import * as Endpoints from "./internal/endpoint.js"
import * as Learn from "./internal/learn.js"
import * as TimeSlice from "./internal/timeSlice.js"
import * as Turn from "./internal/turn.js"
import type * as OpenAiError from "./OpenAiError.js"
import * as OpenAiRetry from "./OpenAiRetry.js"
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
     * For a pool with no configured limit (the adaptive mode, the default): the first call goes alone,
     * and the herd is admitted once its answer's `x-ratelimit-*` headers have taught the pool its real
     * limits (later headers keep them current). When the answer has no such headers, the pool starts
     * cautious: by default 60 requests and 20,000 tokens a minute. `false` leaves such pools unlimited
     * (only the server's 429s and their gates govern).
     */
    readonly adaptive?: false | { readonly requestsPerMinute?: number; readonly tokensPerMinute?: number } | undefined
    /** The pool a model charges (default {@link Tiers.poolOf}: snapshots share their family's pool). */
    readonly poolOf?: ((model: string) => string) | undefined
    /** The retry policy (default {@link OpenAiRetry.defaultPolicy}). */
    readonly retry?: Retry.Policy<OpenAiError.OpenAiError> | undefined
    /**
     * A retry budget shared by every call of the service, so a provider incident cannot become a retry
     * storm: retries are allowed up to `ratio` of the recent first attempts plus `minRetries` per `window`
     * (see `Retry.makeBudget`); beyond it a failure is returned instead of retried. Give options to make
     * one, or an existing budget to share it with other services. Default: none — every retry already goes
     * back through admission, so retries never exceed the limits; a budget bounds them further.
     */
    readonly retryBudget?: Retry.Budget | Retry.Budget.Options | undefined
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
     * admission and the retries' waits. (In the adaptive mode, calls that arrive while a pool's first
     * call is out wait for its answer before they queue for admission.)
     */
    readonly deadline?: Date | number | undefined
    readonly maxWait?: Duration.DurationInput | undefined
    /** A tenant scope (`tenant:<tenant>`) for fairness between the applications sharing a budget. */
    readonly tenant?: string | undefined
    /**
     * This call's retry policy instead of the service's; `false` for a single attempt (a router that
     * falls over to another model itself, say). Non-retryable kinds stay unretried whatever it says.
     */
    readonly retry?: Retry.Policy<OpenAiError.OpenAiError> | false | undefined
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
      { readonly body: unknown; readonly requestId: string | null; readonly status: number },
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
export const scopesFor = (
  options: { readonly organization?: string | undefined; readonly project?: string | undefined },
  pool: string,
  tenant?: string
): ReadonlyArray<string> => {
  const org = `org:${options.organization ?? "default"}`
  const scopes = [org, `${org}/pool:${pool}`]
  if (options.project !== undefined) {
    scopes.push(`${org}/project:${options.project}`, `${org}/project:${options.project}/pool:${pool}`)
  }
  if (tenant !== undefined) scopes.push(`tenant:${tenant}`)
  return scopes
}

interface Metered<A> {
  readonly model: string
  readonly estimate: TokenEstimator.Estimate
  readonly send: (signal: AbortSignal) => Promise<{ data: A; response: Response; request_id: string | null }>
  readonly usage: (data: A) => Budget.Cost | undefined
}

/**
 * How long calls wait for a pool's first answer before they probe its limits without it (a slow start from
 * the cautious limits: a server that does announce its limits is then found by 429s, so not too soon).
 */
const PROBE_PATIENCE = Duration.seconds(10)

/**
 * Builds the service over an SDK client. The limiter comes from context when one is there (so several
 * services, or other code, can share budgets); otherwise give budgets in the options.
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
    const poolOf = options.poolOf ?? Tiers.poolOf
    const policy = options.retry ?? OpenAiRetry.defaultPolicy
    const breakers = options.breaker === false
      ? undefined
      : options.breaker !== undefined && "withBreaker" in options.breaker
      ? options.breaker
      : yield* CircuitBreaker.make({ isFailure: OpenAiRetry.breakerCounts(), ...options.breaker })
    const emit = options.onEvent ?? (() => Effect.void)
    const retryBudget = options.retryBudget === undefined
      ? undefined
      : "tryRetry" in options.retryBudget
      ? options.retryBudget
      : yield* Retry.makeBudget(options.retryBudget)
    const adaptive = options.adaptive === false ? undefined : {
      requestsPerMinute: options.adaptive?.requestsPerMinute ?? 60,
      tokensPerMinute: options.adaptive?.tokensPerMinute ?? 20_000
    }
    const org = `org:${options.organization ?? "default"}`
    const settleUsage = options.settleUsage !== false
    /** What the server enforces but does not announce, learned on the pools whose limits are learned. */
    const learner = Learn.make(limiter)
    /**
     * The adaptive pools (no configured limit on requests or tokens): `probing` until the first HTTP
     * answer has taught the pool its limits, during which calls go one at a time.
     */
    const adaptivePools = new Map<string, { probing: boolean; readonly probe: Turn.Turn }>()

    /** The dimensions the adaptive mode governs. */
    const unknownDimensions = (poolScope: string) => {
      const known = new Set(limiter.limitsOf(poolScope).map((limit) => limit.dimension))
      return (["requests", "tokens"] as const).filter((dimension) => !known.has(dimension))
    }

    /** The adaptive mode: a pool with no limit probes first (see {@link probed}). */
    const seed = (poolScope: string) =>
      Effect.sync(() => {
        if (adaptive === undefined || adaptivePools.has(poolScope)) return
        adaptivePools.set(poolScope, {
          probing: unknownDimensions(poolScope).length > 0,
          probe: Turn.make()
        })
      })

    /**
     * Ends a pool's probing: an HTTP answer came back and its headers have been synced. When they
     * taught nothing (a server or proxy that sends no `x-ratelimit-*`), the pool gets the cautious
     * starting limits, which later headers can still correct.
     */
    const learned = (poolScope: string, impatient = false) =>
      Effect.suspend(() => {
        const state = adaptivePools.get(poolScope)
        if (state === undefined || !state.probing || adaptive === undefined) return Effect.void
        state.probing = false
        if (limiter.limitsOf(poolScope).length > 0) return impatient ? Effect.void : learner.taught(poolScope)
        return Effect.zipRight(
          Effect.ignore(Effect.forEach(
            unknownDimensions(poolScope),
            (dimension) =>
              limiter.sync(poolScope, {
                dimension,
                limit: dimension === "requests" ? adaptive.requestsPerMinute : adaptive.tokensPerMinute
              }),
            { discard: true }
          )),
          learner.blind(poolScope)
        )
      })

    /**
     * Runs an attempt on an adaptive pool that has not heard from the server yet as the pool's only
     * call in flight (a probe): the herd is admitted after the first answer's `x-ratelimit-*` headers
     * have replaced the cautious starting limits with the real ones, not before. Once the pool has
     * learned, this is the attempt itself.
     */
    const probed = <A, E, R>(poolScope: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      Effect.suspend(() => {
        const state = adaptivePools.get(poolScope)
        if (state === undefined || !state.probing) return effect
        // the pool's turn to probe, unless the first answer is slow: then the herd stops waiting and probes the
        // pool's limits from the cautious ones (see `Learn`)
        const turn = Effect.raceFirst(
          Effect.as(state.probe.take, true),
          Effect.as(Effect.zipRight(Effect.sleep(PROBE_PATIENCE), learned(poolScope, true)), false)
        )
        return Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(restore(turn), (mine) =>
            !mine
              ? restore(effect)
              : state.probing
              ? Effect.ensuring(restore(effect), state.probe.release)
              : Effect.zipRight(state.probe.release, restore(effect)))
        )
      })

    /** Classifies a failure at the Clock's time (an HTTP-date `retry-after` is relative to it). */
    const classifyNow = (error: unknown, model: string) =>
      Effect.map(Clock.currentTimeMillis, (now) => Adapt.classify(error, model, now))

    const attempt = <A>(
      metered: Metered<A>,
      call: OpenAi.CallOptions | undefined,
      pool: string,
      attemptNumber: number,
      retries: { last: OpenAiError.OpenAiError["_tag"] | undefined } = { last: undefined }
    ) => {
      const scopes = scopesFor(options, pool, call?.tenant)
      const poolScope = scopes[1]
      const cost = Endpoints.costOf(metered.estimate)
      const acquireOptions = {
        priority: call?.priority,
        deadline: call?.deadline,
        maxWait: call?.maxWait
      }
      /** The call itself, holding the permit; what it does with the answer (or failure). */
      const use = (permit: RateLimiter.Permit, asked: number) =>
        Effect.gen(function*() {
          yield* emit({
            _tag: "Admitted",
            model: metered.model,
            attempt: attemptNumber,
            scopes,
            cost,
            // the time in the limiter's queue (the permit's admission time), not the CPU between two reads
            waitedMillis: Math.max(0, permit.admittedAt - asked),
            ...(attemptNumber > 1 && retries.last !== undefined ? { retryOf: retries.last } : {})
          })
          // last before the request leaves: the order marked is the order sent
          const sent = yield* Clock.currentTimeMillis
          yield* permit.markSent
          let failure: unknown
          const outcome = yield* Effect.exit(
            Effect.tryPromise({ try: (signal) => metered.send(signal), catch: (error) => error }).pipe(
              Effect.catchAll((raw) => {
                failure = raw
                return Effect.flatMap(classifyNow(raw, metered.model), Effect.fail)
              })
            )
          )
          const latencyMillis = (yield* Clock.currentTimeMillis) - sent
          if (outcome._tag === "Success") {
            const { data, response } = outcome.value
            // Settle first, then fold in the server's remaining: its figure already counts this call at its
            // actual usage, so lowering to it before the refund would count the refund twice.
            const used = settleUsage ? metered.usage(data) ?? cost : cost
            yield* Effect.ignore(permit.settle(used))
            yield* Effect.ignore(
              Adapt.syncHeaders(limiter, poolScope, response.headers, { permit, sentAt: sent, adopt: settleUsage })
            )
            learner.heard(poolScope, response.headers)
            yield* learned(poolScope)
            yield* emit({
              _tag: "Succeeded",
              model: metered.model,
              attempt: attemptNumber,
              reserved: cost,
              used,
              latencyMillis
            })
            return outcome.value
          }
          const error = Option.getOrUndefined(Adapt.failureOf(outcome.cause))
          // A refused or failed call still counts as a request; its tokens are returned. Then the error answer's
          // `x-ratelimit-*` headers (the same as a success's), after the refund for the same reason as above.
          yield* Effect.ignore(permit.settle(Adapt.chargeOnFailure(error)))
          if (failure !== undefined) {
            yield* Effect.ignore(
              Adapt.syncErrorHeaders(limiter, poolScope, failure, { permit, sentAt: sent, adopt: settleUsage })
            )
          }
          if (error !== undefined) {
            if (error.status !== undefined) yield* learned(poolScope)
            yield* Adapt.feedback(limiter, { org, poolScope, scopes }, error, {
              permit,
              sentAt: sent,
              adopt: settleUsage
            })
            retries.last = error._tag
            if (error._tag === "RateLimited") {
              yield* learner.rateLimited(poolScope, error, { permit, sentAt: sent, adopt: settleUsage })
            }
            yield* emit({ _tag: "Failed", model: metered.model, attempt: attemptNumber, error, latencyMillis })
          }
          return yield* outcome
        })

      // Interrupted once admitted (a timeout, a cancelled caller), the call is charged its request and
      // prompt, and the rest of the reservation goes back at once.
      const interrupted: Budget.Cost = { requests: 1, tokens: metered.estimate.promptTokens, images: 0 }
      const governedAttempt = Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const asked = yield* Clock.currentTimeMillis
          yield* learner.fit(poolScope, cost)
          const permit = yield* restore(Effect.mapError(
            limiter.acquire(scopes, cost, acquireOptions),
            (error) => Adapt.fromAdmission(error, metered.model)
          ))
          return yield* restore(use(permit, asked)).pipe(
            Effect.onInterrupt(() => Effect.ignore(permit.settle(interrupted)))
          )
        })
      )
      return Effect.zipRight(seed(poolScope), probed(poolScope, governedAttempt))
    }

    const governed = <A>(metered: Metered<A>, call: OpenAi.CallOptions | undefined) =>
      Effect.suspend(() => {
        const pool = poolOf(metered.model)
        let attempts = 0
        const retries = { last: undefined as OpenAiError.OpenAiError["_tag"] | undefined }
        const once = Effect.suspend(() => attempt(metered, call, pool, ++attempts, retries))
        const guarded = breakers === undefined
          ? once
          : Effect.mapError(
            breakers.withBreaker(metered.model, once),
            (error) => Adapt.fromBreaker(error, metered.model)
          )
        const callPolicy = call?.retry ?? policy
        const retried = callPolicy === false
          ? guarded
          : Retry.retry(guarded, callPolicy, Adapt.retryOptions(call, retryBudget))
        return retried.pipe(
          Effect.withSpan("sluice.openai.call", {
            // a stack trace per call costs more than the rest of the span; the attributes say what it was
            captureStackTrace: false,
            attributes: {
              "sluice.model": metered.model,
              "sluice.pool": pool,
              "sluice.tokens.estimate": metered.estimate.tokens
            }
          })
        )
      })

    const estimateOptions = { defaultMaxOutputTokens: options.defaultMaxOutputTokens }
    const sliceMillis = TimeSlice.millisOf(options.timeSlice)
    /** A call, estimated and run once it has its turn of the thread (see `Options.timeSlice`). */
    const sliced = <A, E>(call: () => Effect.Effect<A, E>): Effect.Effect<A, E> =>
      TimeSlice.enter(sliceMillis, Effect.suspend(call))
    const requestOptions = (signal: AbortSignal) => ({ maxRetries: 0, signal })

    /** A body the service cannot read fails typed (`BadRequest`, `invalid_body`), unsent. */
    const unreadable = (path: Endpoints.Path, params: unknown) => {
      const problem = Endpoints.serviceBodyProblem(path, params)
      return problem === undefined
        ? undefined
        : Effect.fail(Endpoints.invalidBodyError(problem, (params as { readonly model?: unknown } | null)?.model))
    }

    const chatCreate: OpenAi.Service["chat"]["completions"]["create"] = (params, call) =>
      sliced(() =>
        unreadable("/chat/completions", params) ?? Effect.map(
          governed({
            model: params.model,
            estimate: TokenEstimator.chat(params, estimateOptions),
            send: (signal) =>
              Endpoints.checked(
                "/chat/completions",
                params.model,
                client.chat.completions.create(params, requestOptions(signal)).withResponse()
              ),
            usage: (data) => Adapt.usageCost(data.usage)
          }, call),
          (result) => result.data
        )
      )

    const chatStream: OpenAi.Service["chat"]["completions"]["stream"] = (params, call) =>
      Stream.suspend(() => {
        const problem = Endpoints.serviceBodyProblem("/chat/completions", params)
        if (problem !== undefined) return Stream.fail(Endpoints.invalidBodyError(problem, params?.model))
        return Adapt.stream({
          limiter,
          scopes: scopesFor(options, poolOf(params.model), call?.tenant),
          org,
          policy: call?.retry ?? policy,
          budget: retryBudget,
          call,
          model: params.model,
          estimate: TokenEstimator.chat(params, estimateOptions),
          seed,
          probed,
          learned,
          learner,
          guard: (effect) => breakers === undefined ? effect : breakers.withBreaker(params.model, effect),
          emit,
          classify: classifyNow,
          open: (signal) =>
            client.chat.completions.create(
              {
                ...params,
                stream: true,
                stream_options: { ...params.stream_options, include_usage: true }
              } as ChatCompletionCreateParamsStreaming,
              requestOptions(signal)
            ).withResponse()
        })
      })

    const responsesCreate: OpenAi.Service["responses"]["create"] = (params, call) =>
      sliced(() =>
        unreadable("/responses", params) ?? Effect.flatMap(
          governed({
            model: String(params.model ?? "gpt-4o"),
            estimate: TokenEstimator.responses(params as any, estimateOptions),
            send: (signal) =>
              Endpoints.checked(
                "/responses",
                String(params.model ?? "gpt-4o"),
                client.responses.create(params, requestOptions(signal)).withResponse()
              ),
            usage: (data) => Adapt.usageCost(data.usage)
          }, call),
          (result) => Adapt.checkResponseStatus(result.data, String(params.model ?? "gpt-4o"))
        )
      )

    const embeddingsCreate: OpenAi.Service["embeddings"]["create"] = (params, call) =>
      sliced(() =>
        unreadable("/embeddings", params) ?? Effect.map(
          governed({
            model: params.model,
            estimate: TokenEstimator.embeddings(params),
            send: (signal) =>
              Endpoints.checked(
                "/embeddings",
                params.model,
                client.embeddings.create(params, requestOptions(signal)).withResponse()
              ),
            usage: (data) => Adapt.usageCost(data.usage)
          }, call),
          (result) => result.data
        )
      )

    const imagesGenerate: OpenAi.Service["images"]["generate"] = (params, call) =>
      sliced(() =>
        unreadable("/images/generations", params) ?? Effect.map(
          governed({
            model: params.model ?? "dall-e-2",
            estimate: TokenEstimator.images(params),
            send: (signal) =>
              Endpoints.checked(
                "/images/generations",
                params.model ?? "dall-e-2",
                client.images.generate(params, requestOptions(signal)).withResponse()
              ),
            usage: (data) => {
              const usage = Adapt.usageCost(data.usage)
              const images = data.data?.length ?? params.n ?? 1
              return usage === undefined ? { images } : { ...usage, images }
            }
          }, call),
          (result) => result.data
        )
      )

    const request: OpenAi.Service["request"] = (url, body, call) =>
      sliced(() => {
        const endpoint = Endpoints.endpointOf(url)
        if (endpoint === undefined) return Effect.fail(Adapt.unsupportedEndpoint(String(url)))
        const invalid = unreadable(endpoint, body)
        if (invalid !== undefined) return invalid
        const estimate = TokenEstimator.forEndpoint(url, body, estimateOptions)
        if (estimate === undefined) return Effect.fail(Adapt.unsupportedEndpoint(url))
        return Effect.map(
          governed({
            model: estimate.model,
            estimate,
            send: (signal) =>
              Endpoints.checked(
                endpoint,
                estimate.model,
                client.post(endpoint, { body, maxRetries: 0, signal }).withResponse() as Promise<
                  { data: any; response: Response; request_id: string | null }
                >
              ),
            usage: (data: any) => {
              const usage = Adapt.usageCost(data?.usage)
              return estimate.images > 0 ? { ...usage, images: data?.data?.length ?? estimate.images } : usage
            }
          }, call),
          (result) => ({ body: result.data, requestId: result.request_id, status: result.response.status })
        )
      })

    return {
      client,
      limiter,
      breakers,
      chat: { completions: { create: chatCreate, stream: chatStream } },
      responses: { create: responsesCreate },
      embeddings: { create: embeddingsCreate },
      images: { generate: imagesGenerate },
      request,
      scopesFor: (model, tenant) => scopesFor(options, poolOf(model), tenant),
      learned: Effect.sync(() => learner.learned())
    } satisfies OpenAi.Service
  })

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
  const limiter = RateLimiter.layer({ budgets: budgetsFor(options) })
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
