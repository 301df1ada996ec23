/**
 * One governed call: the path every call of the `OpenAi` service takes, `create`, `stream` and `request` alike.
 *
 * A call is the retry policy around the model's circuit breaker around one attempt, and every attempt, a
 * retry as much as the first, goes:
 *
 * 1. **admit**: a pool that has not heard from the server yet lets one probe out first, the call takes its turn
 *    on the pool's learning ramp (both in `learn.ts`), then `RateLimiter.acquire` charges its estimate on every
 *    scope at once (organization, pool, project, tenant), waiting in its lane for room;
 * 2. **mark sent** as the request leaves: the order marked is the order sent, by which the limiter ages the
 *    server's reports. An SDK request is marked from inside the `fetch` the SDK calls ({@link Request.wired}),
 *    after the SDK's own preparation (an `apiKey` function, a token provider), which may take a while: marked
 *    before it, a report of a call sent later would be read as counting this one, not yet on the wire;
 * 3. **send** through the SDK (its own retries off), the answer checked against the endpoint's shape;
 * 4. **settle**, then **sync**: the permit is trued to the answer's `usage`, then the answer's `x-ratelimit-*`
 *    report is folded in ({@link settleThenSync}: the rule of their order is written there, once);
 * 5. on a failure, **classify** it into OpenAI's kinds (`OpenAiError`), settle (its request counts, its tokens
 *    go back) and sync the error's headers the same way, then **feedback**: what it teaches the limiter (a 429
 *    closes a gate for the whole pool, `insufficient_quota` closes the organization) and the learner.
 *
 * A stream takes the same attempt with its permit held: it opens the stream (its headers come with the first
 * byte, before any output), and the permit settles when the stream ends, from the final usage chunk or from what
 * was read. However an attempt ends once admitted (an interruption, a defect; for a stream, the stream's end), its
 * request is aborted if still out and a permit nothing settled is settled to what was used.
 *
 * @internal
 */
import type { Budget, RateLimiter } from "@sluice/core"
import { CircuitBreaker, Retry } from "@sluice/core"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { CallError, OpenAi } from "../OpenAi.js"
import * as Errors from "../OpenAiError.js"
import * as OpenAiRetry from "../OpenAiRetry.js"
import * as Tiers from "../Tiers.js"
import type * as TokenEstimator from "../TokenEstimator.js"
import * as Endpoints from "./endpoint.js"
import * as Learn from "./learn.js"
import * as Telemetry from "./telemetry.js"

/**
 * What the SDK's `withResponse()` gives: the parsed body, the HTTP response (a fetch `Response`, or any answer
 * with a status and `Headers`: an `HttpClient`'s, see `OpenAiHttp`), the request id.
 */
export interface Answer<A> {
  readonly data: A
  readonly response: { readonly status: number; readonly headers: Headers }
  readonly request_id: string | null
}

/**
 * One request to govern: its endpoint, its model, its estimate, and how one attempt is sent: the SDK's call
 * (`maxRetries: 0`; `signal` aborts it), or an Effect (an `HttpClient` request: interrupting it aborts it), which
 * fails with what `OpenAiError.classify` reads (a `{ status, headers, body }` answer, a transport error).
 */
export interface Request<A> {
  readonly path: Endpoints.Path
  readonly model: string
  readonly estimate: TokenEstimator.Estimate
  /**
   * One attempt. When {@link wired}, it calls `onWire` as its request leaves (from the `fetch` it is sent
   * through); else `onWire` is `undefined` and the attempt is marked sent just before `send` is called.
   */
  readonly send: (
    signal: AbortSignal,
    onWire: (() => void) | undefined
  ) => Promise<Answer<A>> | Effect.Effect<Answer<A>, unknown>
  /**
   * `send` calls its `onWire` as the request goes on the wire. An attempt whose send never does (it failed in
   * the SDK before any `fetch`) is marked sent when it ends.
   */
  readonly wired?: boolean | undefined
  /**
   * Called when a {@link wired} attempt was answered by the server without its `onWire` ever being called: the
   * client sends through a `fetch` other than the one wrapped (openai 7's own fetch under x509 workload-identity
   * auth, a client whose `fetch` was replaced after the service was built). `true` the first time for that client:
   * its later requests are then built with `wired` false (marked before the SDK call) and a warning is logged once.
   */
  readonly unwired?: (() => boolean) | undefined
}

/** A stream's chunks as its answer carries them: the SDK's async iterable, or an Effect `Stream`. */
export type Chunks<Chunk> = AsyncIterable<Chunk> | Stream.Stream<Chunk, unknown>

/** A stream opened: its answer (status and headers) and its chunks, which settle the permit as they go. */
export interface Opened<Chunk> {
  readonly answer: Answer<Chunks<Chunk>>
  readonly chunks: Stream.Stream<Chunk, CallError>
}

/** A streamed chat completion's chunk, as far as governing it reads. */
export interface StreamChunk {
  readonly usage?: unknown
  readonly choices?: ReadonlyArray<unknown>
  /**
   * An in-stream failure the server reported (a Responses `response.failed` or `error` event): the stream fails
   * with it after this chunk (an `HttpClient`'s stream, see `OpenAiHttp`; the SDK's throws it instead).
   */
  readonly failure?: unknown
}

/** The governed calls of one `OpenAi` service. */
export interface Calls {
  /** A call to its answer (checked against its endpoint's shape), settled and synced. */
  readonly run: <A>(request: Request<A>, options: OpenAi.CallOptions | undefined) => Effect.Effect<Answer<A>, CallError>
  /**
   * A streamed chat completion: opening it is retried like any call; once chunks flow, a failure ends the
   * stream. Interrupted half-way (or ended early by the consumer), the permit settles to the prompt plus the
   * output seen so far (a quarter of the delta characters, at least a token a delta).
   */
  readonly stream: <Chunk extends StreamChunk>(
    request: Request<Chunks<Chunk>>,
    options: OpenAi.CallOptions | undefined
  ) => Stream.Stream<Chunk, CallError>
  /**
   * {@link stream} opened in the caller's scope: the answered attempt (its status and headers, before any chunk)
   * and its chunks. Closing the scope aborts the request and settles what was used.
   */
  readonly open: <Chunk extends StreamChunk>(
    request: Request<Chunks<Chunk>>,
    options: OpenAi.CallOptions | undefined
  ) => Effect.Effect<Opened<Chunk>, CallError, Scope.Scope>
  /** The scopes a call on `model` is charged against. */
  readonly scopesOf: (model: string, tenant?: string) => ReadonlyArray<string>
  /** The circuit breakers, keyed by model (`undefined` with `breaker: false`). */
  readonly breakers: CircuitBreaker.CircuitBreaker.Service | undefined
  /** What the service has learned that the server does not announce. */
  readonly learned: () => ReadonlyArray<Learn.Learned>
}

/**
 * The scopes a call is charged against: the organization, its pool for the model, the project and its pool
 * (when a project is set) and the tenant (when given). (`OpenAi.scopesFor`.)
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

/** One call across its attempts. */
interface Call {
  readonly model: string
  readonly pool: string
  readonly scopes: ReadonlyArray<string>
  readonly poolScope: string
  /** What admission charges: the estimate (see `Endpoints.costOf`). */
  readonly cost: Budget.Cost
  readonly options: OpenAi.CallOptions | undefined
  /** `gen_ai.operation.name` of its endpoint. */
  readonly operation: string
  /** Its lane, and its tenant as metric labels show it (`undefined`: left out). */
  readonly lane: RateLimiter.Lane
  readonly tenant: string | undefined
  /** The attempts so far, and the kind of the last one's failure (what a retry retries). */
  attempts: number
  lastFailure: Errors.OpenAiError["_tag"] | undefined
  /**
   * When its first attempt asked the limiter for admission (its `CallOptions.arrivedAt` if earlier): every retry
   * waits in its lane as if it had arrived then, keeping its place (`RateLimiter.AcquireOptions.arrivedAt`).
   */
  arrivedAt: number | undefined
  /** For its span: the time waited for admission over all attempts, what the last answer said. */
  waitedMillis: number
  answered: AnswerInfo | undefined
}

/** What an answer says of itself, for the span and `gen_ai.*` metrics. */
interface AnswerInfo {
  readonly model: string | undefined
  readonly id: string | undefined
  readonly input: number | undefined
  readonly output: number | undefined
  readonly finishReasons: ReadonlyArray<string> | undefined
}

const answerInfo = (data: unknown): AnswerInfo => {
  const body = data as {
    readonly model?: unknown
    readonly id?: unknown
    readonly choices?: ReadonlyArray<{ readonly finish_reason?: unknown } | null>
    readonly status?: unknown
  } | null
  const { input, output } = Telemetry.usageTokens(data)
  let finishReasons: Array<string> | undefined
  if (Array.isArray(body?.choices)) {
    for (const choice of body.choices) {
      if (typeof choice?.finish_reason === "string") (finishReasons ??= []).push(choice.finish_reason)
    }
  } else if (typeof body?.status === "string") {
    finishReasons = [body.status]
  }
  return {
    model: typeof body?.model === "string" ? body.model : undefined,
    id: typeof body?.id === "string" ? body.id : undefined,
    input,
    output,
    finishReasons
  }
}

/** What a stream has used so far: the output seen, and the usage chunk's figures once it came. */
interface Progress {
  output: number
  used: Budget.Cost | undefined
  /** The server reported a failure in the stream (its usage, if it came with it, is that of a failed call). */
  failed?: boolean
}

/** An attempt admitted: its permit, the abort of its request, what a stream has used so far. */
interface Admitted {
  readonly permit: RateLimiter.Permit
  readonly attempt: number
  readonly waitedMillis: number
  readonly controller: AbortController
  readonly progress: Progress
}

/** An attempt answered: its permit (settled, or held by a stream), and what the rest of a stream needs. */
interface Sent<A> extends Admitted {
  readonly answer: Answer<A>
  readonly sentAt: number
}

/**
 * The end of an attempt that did not settle (an interruption, a defect; a stream's end): `abort`s its request
 * if asked, and settles its permit, if still held, to what was used ({@link usedSoFar}).
 */
const release = (estimate: TokenEstimator.Estimate, admitted: Admitted, abort: boolean) =>
  Effect.suspend(() => {
    if (abort) admitted.controller.abort()
    return admitted.permit.state === "held"
      ? Effect.ignore(admitted.permit.settle(usedSoFar(admitted.progress, estimate)))
      : Effect.void
  })

/** A server's report as of one call: folded in by its send order; `adopt` see `RateLimiter.Observation`. */
interface Since {
  readonly permit: RateLimiter.Permit
  readonly sentAt: number
  readonly adopt: boolean
  /** When its answer's headers came back (the limiter's clock). */
  readonly answeredAt: number
}

/**
 * What a failed call is charged: its request (OpenAI counts rejected requests; a call that may never have
 * reached the server, a connection refused, counts too, conservatively); its tokens and images go back. The
 * dimensions left out keep their charge.
 */
const FAILED: Budget.Cost = { tokens: 0, images: 0 }

/**
 * What a call used when its answer did not say: its request and prompt, and the output a stream read (an
 * interrupted call gets the rest of its reservation back at once; an image call, its images).
 */
const usedSoFar = (progress: Progress, estimate: TokenEstimator.Estimate): Budget.Cost => {
  if (progress.used !== undefined) return progress.used
  const used = { requests: 1, tokens: estimate.promptTokens + progress.output }
  return estimate.images > 0 ? { ...used, images: 0 } : used
}

/** A closed organization (after `insufficient_quota`) fails with the quota error that closed it. */
const fromAdmission = (error: RateLimiter.AcquireError): CallError =>
  error._tag === "ScopeClosed" && Errors.isOpenAiError(error.cause) ? error.cause : error

/** Classifies a failure at the Clock's time (an HTTP-date `retry-after` is relative to it). */
const classify = (error: unknown, model: string) =>
  Effect.map(Clock.currentTimeMillis, (now) => Errors.classify(error, { model, now }))

/**
 * The governed calls of a service: the retry policy and budget, the breakers, the learner and the events
 * shared by its calls.
 */
export const make = (
  limiter: RateLimiter.Service,
  options: OpenAi.Options
): Effect.Effect<Calls, never, Scope.Scope> =>
  Effect.gen(function*() {
    const poolOf = options.poolOf ?? Tiers.poolOf
    const policy = options.retry ?? OpenAiRetry.defaultPolicy
    const breakers = options.breaker === false
      ? undefined
      : options.breaker !== undefined && "withBreaker" in options.breaker
      ? options.breaker
      : yield* CircuitBreaker.make({ isFailure: OpenAiRetry.breakerCounts(), ...options.breaker })
    const retryBudget = options.retryBudget === undefined
      ? undefined
      : "tryRetry" in options.retryBudget
      ? options.retryBudget
      : yield* Retry.makeRetryBudget(options.retryBudget)
    const emit = options.onEvent ?? (() => Effect.void)
    const settleUsage = options.settleUsage !== false
    const org = `org:${options.organization ?? "default"}`
    const telemetry = Telemetry.make(options.metrics?.tenants, yield* FiberRef.get(FiberRef.currentMetricLabels))
    /** What the server enforces but does not announce, and the adaptive pools' first answer. */
    const learner = Learn.make(
      limiter,
      options.adaptive === false ? undefined : {
        requestsPerMinute: options.adaptive?.requestsPerMinute ?? 60,
        tokensPerMinute: options.adaptive?.tokensPerMinute ?? 20_000
      },
      options.firstContactRamp === true
    )

    const callOf = (request: Request<unknown>, callOptions: OpenAi.CallOptions | undefined): Call => {
      const pool = poolOf(request.model)
      const scopes = scopesFor(options, pool, callOptions?.tenant)
      return {
        model: request.model,
        pool,
        scopes,
        poolScope: scopes[1],
        cost: Endpoints.costOf(request.estimate),
        options: callOptions,
        operation: Telemetry.operationOf(request.path),
        lane: callOptions?.priority ?? "interactive",
        tenant: telemetry.tenantLabel(callOptions?.tenant),
        attempts: 0,
        lastFailure: undefined,
        arrivedAt: undefined,
        waitedMillis: 0,
        answered: undefined
      }
    }

    /**
     * One attempt: its turn on the learning ramp, 1. admission on every scope at once, then {@link sent} (2–5).
     * Once admitted, however it ends, an interrupted request is aborted and a permit nothing settled is settled
     * to what was used ({@link release}); a stream's answer keeps both (`held`: its permit settles at the
     * stream's end, and its report may only lower the limiter's levels).
     */
    const attempt = <A>(request: Request<A>, call: Call, held: boolean): Effect.Effect<Sent<A>, CallError> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const number = ++call.attempts
          const asked = yield* Clock.currentTimeMillis
          // a retry keeps the first attempt's place in its lane (not behind the calls that arrived since); taken before
          // the learner's turn, so that the calls that wait there (a configured pool's first contact) keep their order
          if (call.arrivedAt === undefined) {
            const given = call.options?.arrivedAt
            const millis = given === undefined ? asked : typeof given === "number" ? given : given.getTime()
            call.arrivedAt = millis < asked ? millis : asked
          }
          yield* restore(learner.fit(call.poolScope, call.cost))
          const permit = yield* restore(Effect.mapError(
            limiter.acquire(call.scopes, call.cost, {
              priority: call.options?.priority,
              deadline: call.options?.deadline,
              maxWait: call.options?.maxWait,
              arrivedAt: call.arrivedAt
            }),
            fromAdmission
          ))
          const admitted: Admitted = {
            permit,
            attempt: number,
            // the time in the limiter's queue (the permit's admission time), not the CPU between two reads
            waitedMillis: Math.max(0, permit.admittedAt - asked),
            controller: new AbortController(),
            progress: { output: 0, used: undefined }
          }
          // a call's answer read whole (or refused) leaves nothing to abort: an abort builds a DOMException, and the
          // SDK's linked controller another (1.6 s of CPU in a simulated day of 10,000 calls)
          return yield* Effect.onExit(
            restore(sent(request, call, held, admitted)),
            (exit) =>
              held && Exit.isSuccess(exit)
                ? Effect.void
                : release(request.estimate, admitted, held || Exit.isInterrupted(exit))
          )
        })
      )

    /** 2–5: an admitted attempt sent, and its answer (or failure) settled, synced, classified and fed back. */
    const sent = <A>(
      request: Request<A>,
      call: Call,
      held: boolean,
      admitted: Admitted
    ): Effect.Effect<Sent<A>, CallError> =>
      Effect.gen(function*() {
        const { attempt: number, controller, permit } = admitted
        const { poolScope } = call
        call.waitedMillis += admitted.waitedMillis
        telemetry.admitted(
          call.model,
          call.lane,
          call.tenant,
          admitted.waitedMillis,
          call.cost.tokens ?? 0,
          number > 1 ? call.lastFailure : undefined
        )
        yield* emit({
          _tag: "Admitted",
          model: call.model,
          attempt: number,
          scopes: call.scopes,
          cost: call.cost,
          waitedMillis: admitted.waitedMillis,
          ...(number > 1 && call.lastFailure !== undefined ? { retryOf: call.lastFailure } : {})
        })
        // 2. marked sent as the request leaves: the order marked is the order sent
        let sentAt = -1
        const mark = Effect.zipRight(
          permit.markSent,
          Effect.flatMap(Clock.currentTimeMillis, (now) => {
            sentAt = now
            return learner.sent(poolScope, permit, now)
          })
        )
        let onWire: (() => void) | undefined = undefined
        if (request.wired === true) {
          // called from the SDK's `fetch`, outside this fiber: marked on its runtime (its Clock), once
          const runtime = yield* Effect.runtime<never>()
          onWire = () => {
            if (sentAt < 0) Runtime.runSyncExit(runtime, mark)
          }
        } else {
          yield* mark
        }
        // 3. send: a call's answer checked against its endpoint's shape (a stream's is its chunks, read later)
        const outcome = yield* Effect.either(sendOnce(request, held, controller.signal, onWire))
        if (
          onWire !== undefined && sentAt < 0 && request.unwired !== undefined &&
          (Either.isRight(outcome) ||
            typeof (outcome.left as { readonly status?: unknown } | null)?.status === "number")
        ) {
          // answered, yet the hook never ran: this client sends through another fetch; mark its later calls early
          if (request.unwired()) {
            yield* Effect.logWarning(
              "sluice: this OpenAI client sends through a fetch other than the one Sluice wrapped (x509 " +
                "workload-identity auth, or a fetch replaced after the service was built); its calls are now " +
                "marked sent when the SDK is called, which can read the server's reports less exactly"
            )
          }
        }
        // never on the wire (the SDK failed before its fetch): counted sent as of now, as a refused connection is
        if (sentAt < 0) yield* mark
        const answeredAt = yield* Clock.currentTimeMillis
        const latencyMillis = answeredAt - sentAt
        const since: Since = { permit, sentAt, adopt: !held && settleUsage, answeredAt }
        if (Either.isLeft(outcome)) {
          // 5. a failure: classified, settled and synced, then fed back to the limiter and the learner
          const raw = outcome.left
          const error = yield* classify(raw, call.model)
          yield* settleThenSync(
            limiter,
            poolScope,
            FAILED,
            (raw as { readonly headers?: unknown } | null)?.headers,
            since
          )
          if (error.status !== undefined) {
            yield* learner.answered(
              poolScope,
              sentAt,
              processingMillis((raw as { readonly headers?: unknown } | null)?.headers)
            )
          }
          yield* feedback(limiter, { org, poolScope, scopes: call.scopes }, error, since)
          call.lastFailure = error._tag
          telemetry.answered(call.model, call.operation, call.tenant, error._tag, Telemetry.rateLimitKind(error))
          if (error._tag === "RateLimited") yield* learner.rateLimited(poolScope, error, since)
          yield* emit({ _tag: "Failed", model: call.model, attempt: number, error, latencyMillis })
          return yield* Effect.fail(error)
        }
        // 4. an answer: settled to its usage (a stream's at its end), then synced
        const answer = outcome.right
        const used = held
          ? undefined
          : settleUsage
          ? Endpoints.usedCost(request.path, answer.data, request.estimate) ?? call.cost
          : call.cost
        yield* settleThenSync(limiter, poolScope, used, answer.response.headers, since)
        yield* learner.heard(poolScope, answer.response.headers)
        yield* learner.answered(poolScope, sentAt, processingMillis(answer.response.headers))
        telemetry.answered(call.model, call.operation, call.tenant, "ok", undefined)
        if (!held) call.answered = answerInfo(answer.data)
        if (used !== undefined) {
          telemetry.used(call.model, call.tenant, used.tokens ?? 0)
          yield* emit({
            _tag: "Succeeded",
            model: call.model,
            attempt: number,
            reserved: call.cost,
            used,
            latencyMillis
          })
        }
        return { ...admitted, answer, sentAt }
      })

    /** The retry policy (the call's, else the service's) around the model's breaker around each attempt. */
    const retried = <A, R>(call: Call, once: Effect.Effect<A, CallError, R>): Effect.Effect<A, CallError, R> => {
      const probed = learner.probed(call.poolScope, once, call.cost.tokens ?? 0)
      const guarded = breakers === undefined ? probed : breakers.withBreaker(call.model, probed)
      const callPolicy = call.options?.retry ?? policy
      if (callPolicy === false) return guarded
      const deadline = call.options?.deadline
      return Retry.retry(guarded, callPolicy, {
        ...(deadline === undefined ? {} : { deadline: typeof deadline === "number" ? deadline : deadline.getTime() }),
        ...(retryBudget === undefined ? {} : { budget: retryBudget })
      })
    }

    /**
     * A call's end, on its span and in the `gen_ai.*` metrics: what the answer said (model, id, usage, finish
     * reasons), the attempts and waits, the decision (`ok`, `retried`, `failed`, `refused` by the limiter).
     */
    const ended = (call: Call, startedAt: number, exit: Exit.Exit<unknown, CallError>) =>
      Effect.flatMap(endedAttributes(call, startedAt, exit), Effect.annotateCurrentSpan)

    const endedAttributes = (call: Call, startedAt: number, exit: Exit.Exit<unknown, CallError>) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const failure = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : undefined
        const errorType = Exit.isSuccess(exit)
          ? undefined
          : failure?._tag === "Some"
          ? failure.value._tag
          : Exit.isInterrupted(exit)
          ? "Interrupted"
          : "_OTHER"
        const refused = failure?._tag === "Some" && !Errors.isOpenAiError(failure.value)
        const info = call.answered
        telemetry.operation(
          call.operation,
          call.model,
          info?.model,
          errorType,
          (now - startedAt) / 1000,
          Exit.isSuccess(exit) ? info?.input : undefined,
          Exit.isSuccess(exit) ? info?.output : undefined
        )
        const attributes: Record<string, unknown> = {
          "sluice.attempts": call.attempts,
          "sluice.wait.duration": call.waitedMillis / 1000,
          "sluice.decision": Exit.isSuccess(exit)
            ? call.attempts > 1 ? "retried" : "ok"
            : refused
            ? "refused"
            : "failed"
        }
        if (errorType !== undefined) attributes["error.type"] = errorType
        if (Exit.isSuccess(exit) && info !== undefined) {
          if (info.model !== undefined) attributes["gen_ai.response.model"] = info.model
          if (info.id !== undefined) attributes["gen_ai.response.id"] = info.id
          if (info.input !== undefined) attributes["gen_ai.usage.input_tokens"] = info.input
          if (info.output !== undefined) attributes["gen_ai.usage.output_tokens"] = info.output
          if (info.finishReasons !== undefined) attributes["gen_ai.response.finish_reasons"] = info.finishReasons
        }
        return attributes
      })

    /** A call's span: `{operation} {model}`, kind client, the GenAI request attributes and Sluice's. */
    const spanOf = (call: Call, request: Request<unknown>) => ({
      name: `${call.operation} ${call.model}`,
      options: {
        kind: "client" as const,
        // a stack trace per call costs more than the rest of the span; the attributes say what it was
        captureStackTrace: false,
        attributes: {
          "gen_ai.operation.name": call.operation,
          "gen_ai.provider.name": "openai",
          "gen_ai.system": "openai",
          "gen_ai.request.model": call.model,
          "sluice.model": call.model,
          "sluice.pool": call.pool,
          "sluice.scopes": call.scopes,
          "sluice.lane": call.lane,
          "sluice.tokens.estimate": request.estimate.tokens,
          // OpenTelemetry's OpenAI conventions: both are operation `chat`; this attribute tells them apart
          ...(request.path === "/responses"
            ? { "openai.api.type": "responses" }
            : request.path === "/chat/completions"
            ? { "openai.api.type": "chat_completions" }
            : {})
        }
      }
    })

    const run: Calls["run"] = (request, callOptions) =>
      Effect.suspend(() => {
        const call = callOf(request, callOptions)
        return Effect.flatMap(Clock.currentTimeMillis, (startedAt) =>
          Effect.map(retried(call, attempt(request, call, false)), (answered) => answered.answer).pipe(
            Effect.onExit((exit) => ended(call, startedAt, exit))
          )).pipe((effect) => {
            const span = spanOf(call, request)
            return Effect.withSpan(effect, span.name, span.options)
          })
      })

    const open: Calls["open"] = <Chunk extends StreamChunk>(
      request: Request<Chunks<Chunk>>,
      callOptions: OpenAi.CallOptions | undefined
    ) =>
      Effect.suspend(() => {
        const call = callOf(request, callOptions)
        const { name, options: spanOptions } = spanOf(call, request)
        // the span lasts as long as the scope: the opening, then the chunks until the stream ends
        return Effect.flatMap(
          Effect.zip(Clock.currentTimeMillis, Effect.makeSpanScoped(name, spanOptions)),
          ([startedAt, span]) => {
            const close = (exit: Exit.Exit<unknown, CallError>) =>
              Effect.map(endedAttributes(call, startedAt, exit), (attributes) => {
                for (const key in attributes) span.attribute(key, attributes[key])
              })
            // the scope holds the answered attempt: closing it aborts the request and settles what was used
            return Effect.uninterruptibleMask((restore) =>
              Effect.flatMap(
                restore(retried(call, attempt(request, call, true))).pipe(
                  Effect.withParentSpan(span),
                  Effect.tapErrorCause((cause) => close(Exit.failCause(cause)))
                ),
                (answered) =>
                  Effect.as(
                    Effect.addFinalizer(() => release(request.estimate, answered, true)),
                    { answer: answered.answer, chunks: chunks(call, request.estimate, answered, close) }
                  )
              )
            )
          }
        )
      })

    const stream: Calls["stream"] = (request, callOptions) =>
      Stream.unwrapScoped(Effect.map(open(request, callOptions), (opened) => opened.chunks))

    /** A stream's chunks once opened: each counts its output; the usage chunk settles; the end reports. */
    const chunks = <Chunk extends StreamChunk>(
      call: Call,
      estimate: TokenEstimator.Estimate,
      { answer, attempt, controller, permit, progress, sentAt }: Sent<Chunks<Chunk>>,
      close: (exit: Exit.Exit<unknown, CallError>) => Effect.Effect<void>
    ): Stream.Stream<Chunk, CallError> => {
      const finish = (exit: Exit.Exit<unknown, Errors.OpenAiError>) =>
        Effect.gen(function*() {
          const used = usedSoFar(progress, estimate)
          yield* Effect.ignore(permit.settle(used))
          yield* close(exit)
          const latencyMillis = (yield* Clock.currentTimeMillis) - sentAt
          if (Exit.isSuccess(exit) || (progress.used !== undefined && progress.failed !== true)) {
            telemetry.used(call.model, call.tenant, used.tokens ?? 0)
            yield* emit({ _tag: "Succeeded", model: call.model, attempt, reserved: call.cost, used, latencyMillis })
            return
          }
          const failure = Cause.failureOption(exit.cause)
          if (failure._tag === "Some" && Errors.isOpenAiError(failure.value)) {
            yield* emit({ _tag: "Failed", model: call.model, attempt, error: failure.value, latencyMillis })
          }
        })
      const data = answer.data
      const source: Stream.Stream<Chunk, unknown> = Symbol.asyncIterator in data
        ? Stream.fromAsyncIterable(abortable(data, controller), (error) => error)
        : data
      return source.pipe(
        Stream.catchAll((raw) =>
          Stream.fromEffect(Effect.flatMap(classify(raw, call.model), (error) =>
            // a failure the server reported in the stream teaches the limiter what its answer would have (a
            // rate limit gates the pool); a broken connection does not
            progress.failed === true
              ? Effect.zipRight(
                feedback(limiter, { org, poolScope: call.poolScope, scopes: call.scopes }, error, {
                  permit,
                  sentAt,
                  adopt: false
                }),
                Effect.fail(error)
              )
              : Effect.fail(error)))
        ),
        Stream.tap((chunk) =>
          Effect.suspend(() => {
            if (chunk.failure !== undefined) progress.failed = true
            progress.output += chunkOutputTokens(chunk)
            const usage = Endpoints.usageCost(chunk.usage)
            if (usage === undefined) return Effect.void
            progress.used = usage
            call.answered = answerInfo(chunk)
            return Effect.ignore(permit.settle(usage))
          })
        ),
        Stream.ensuringWith(finish)
      )
    }

    return {
      run,
      stream,
      open,
      scopesOf: (model, tenant) => scopesFor(options, poolOf(model), tenant),
      breakers,
      learned: () => learner.learned()
    }
  })

/**
 * 3. One attempt sent: the SDK's promise or an Effect; a call's answer (not a stream's) checked against its
 * endpoint's shape. A send that throws fails with what it threw.
 */
const sendOnce = <A>(
  request: Request<A>,
  held: boolean,
  signal: AbortSignal,
  onWire: (() => void) | undefined
): Effect.Effect<Answer<A>, unknown> =>
  Effect.suspend(() => {
    let sending: Promise<Answer<A>> | Effect.Effect<Answer<A>, unknown>
    try {
      sending = request.send(signal, onWire)
    } catch (error) {
      return Effect.fail(error)
    }
    if (Effect.isEffect(sending)) {
      return held
        ? sending
        : Effect.flatMap(sending, (answer) => Endpoints.checkedAnswer(request.path, request.model, answer))
    }
    const promise = sending
    return Effect.tryPromise({
      try: () => held ? promise : Endpoints.checked(request.path, request.model, promise),
      catch: (error) => error
    })
  })

// -----------------------------------------------------------------------------------------------------------
// 4. settle, then sync
// -----------------------------------------------------------------------------------------------------------

/**
 * Settles a call's permit to `used`, then folds in the server's report of it (the `x-ratelimit-*` headers of
 * its answer, or of its error: a 429 or any other HTTP error answer has them too). In that order: the server's
 * remaining already counts the call at its actual usage (and a refused call's tokens not at all), so lowering
 * to it before the refund would count the refund twice. `used` undefined: the permit stays held (a stream,
 * settled at its end), and `since.adopt` is then `false`, so its report only lowers.
 */
const settleThenSync = (
  limiter: RateLimiter.Service,
  poolScope: string,
  used: Budget.Cost | undefined,
  headers: unknown,
  since: Since
) =>
  Effect.zipRight(
    used === undefined ? Effect.void : Effect.ignore(since.permit.settle(used)),
    Effect.ignore(syncHeaders(limiter, poolScope, headers, since))
  )

/**
 * The server's own time on a call (`openai-processing-ms`, from `Headers` or a plain object), `undefined` when it
 * is not said: an answer's round trip less this is the network's (and the client's), what a 429 takes to come back.
 */
const processingMillis = (source: unknown): number | undefined => {
  if (source === null || typeof source !== "object") return undefined
  const raw = typeof (source as Headers).get === "function"
    ? (source as Headers).get("openai-processing-ms")
    : (source as Record<string, unknown>)["openai-processing-ms"]
  const value = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : NaN
  return Number.isFinite(value) && value >= 0 ? value : undefined
}

/**
 * The latest the server can have made the report its answer carries: when the answer came back less the server's
 * own time on it (`undefined` when the server does not say it: then as of the request's send).
 */
const reportedBy = (since: { readonly answeredAt?: number | undefined }, headers: unknown): number | undefined => {
  const processing = processingMillis(headers)
  return processing === undefined || since.answeredAt === undefined ? undefined : since.answeredAt - processing
}

const headerNumber = (headers: Headers, name: string): number | undefined => {
  const raw = headers.get(name)
  if (raw === null || raw.trim() === "") return undefined
  const value = Number(raw)
  return Number.isFinite(value) ? value : undefined
}

/**
 * Folds `x-ratelimit-limit-*` and `x-ratelimit-remaining-*` (from `Headers`, or a plain object as an SDK
 * error may carry; nothing without headers) into the pool's buckets: remaining lowers the local level where the server knows better (and,
 * with `since.adopt`, may raise it: see `RateLimiter.Observation.remaining`); a limit teaches an unconfigured
 * (or adaptive) one. Daily limits are never in headers. Azure's negative remaining counts as zero; its `-1`
 * sentinel limit is ignored.
 */
const syncHeaders = (limiter: RateLimiter.Service, scope: string, source: unknown, since: Since) => {
  if (source === null || typeof source !== "object") return Effect.void
  const headers = typeof (source as Headers).get === "function"
    ? source as Headers
    : new Headers(source as Record<string, string>)
  const by = reportedBy(since, headers)
  return Effect.forEach(["requests", "tokens", "images"] as const, (dimension) => {
    const limit = headerNumber(headers, `x-ratelimit-limit-${dimension}`)
    const remaining = headerNumber(headers, `x-ratelimit-remaining-${dimension}`)
    if (limit === undefined && remaining === undefined) {
      // no figures (a server or gateway without the headers): the answer still says when the call reached the
      // server at the latest (`RateLimiter.Options.coldStartLag`)
      return by === undefined
        ? Effect.void
        : limiter.sync(scope, { dimension, since: since.permit, sentAt: since.sentAt, reportedBy: by })
    }
    return limiter.sync(scope, {
      dimension,
      limit: limit !== undefined && limit > 0 ? limit : undefined,
      remaining: remaining === undefined ? undefined : Math.max(0, remaining),
      since: since.permit,
      sentAt: since.sentAt,
      reportedBy: by,
      adopt: since.adopt
    })
  }, { discard: true })
}

// -----------------------------------------------------------------------------------------------------------
// 5. feedback
// -----------------------------------------------------------------------------------------------------------

/**
 * How long a per-minute 429 closes its dimension for every call. Its "try again in" hint is the wait of the
 * refused call's size: when the message says the announced bucket refused it ("Limit L, Used U, Requested R"
 * with U + R > L), a call of one unit would wait only `(U + 1 − L) / rate` (nothing while U < L), so the
 * gate is that long and the server's level (L − U) is synced instead: smaller calls go on, larger ones wait
 * their turn in the limiter. Otherwise (a bucket the message does not name refused it, or it says nothing)
 * the whole hint.
 */
const minuteGate = (
  error: Errors.RateLimited,
  hint: number
): number | { readonly millis: number; readonly remaining: number } => {
  const { limit, requested, used } = error
  if (
    limit === undefined || used === undefined || requested === undefined || !(limit > 0) ||
    error.dimension === undefined || used + requested <= limit
  ) return hint
  const perMs = limit / 60_000
  return { millis: Math.min(hint, Math.max(0, (used + 1 - limit) / perMs)), remaining: Math.max(0, limit - used) }
}

/**
 * What a failure teaches the limiter, so the herd waits instead of each fiber finding out alone:
 * - a transient rate limit with a hint closes the pool's gate on its dimension until then;
 * - a daily limit is learned as a per-day bucket of its dimension, beside the per-minute ones (from "Limit L",
 *   at L − U left, "Used U"), and gated;
 * - `insufficient_quota` closes the organization: every waiting call fails at once, unsent.
 */
export const feedback = (
  limiter: RateLimiter.Service,
  scopes: { readonly org: string; readonly poolScope: string; readonly scopes: ReadonlyArray<string> },
  error: Errors.OpenAiError,
  /**
   * The refused call: its message's figures are as of its arrival, folded in by send order (see `syncHeaders`);
   * `adopt` as for its headers (`false`: a reserve-only service or a stream only ever lowers the level).
   */
  since?: { readonly permit: RateLimiter.Permit; readonly sentAt: number; readonly adopt?: boolean | undefined }
) =>
  Effect.gen(function*() {
    switch (error._tag) {
      case "RateLimited": {
        const scope = error.scope === "project"
          ? scopes.scopes.find((s) => s.includes("/project:") && s.includes("/pool:")) ?? scopes.poolScope
          : scopes.poolScope
        const dimension = error.dimension ?? "*"
        if (error.window === "day" && error.limit !== undefined && error.limit > 0) {
          // learned as a per-day bucket of its own (beside the per-minute ones), at what the server has left
          // ("Limit L, Used U"; none when the message does not say)
          yield* Effect.ignore(
            limiter.sync(scope, {
              dimension: error.dimension ?? "requests",
              limit: error.limit,
              window: "1 day",
              remaining: error.used !== undefined ? Math.max(0, error.limit - error.used) : 0
            })
          )
        }
        const hint = error.retryAfter === undefined ? 0 : Duration.toMillis(error.retryAfter)
        const gate = error.window === "day" ? hint : minuteGate(error, hint)
        if (typeof gate !== "number" && error.dimension !== undefined) {
          // what the message says the server has left (limit − used): the limiter paces the refused call (and
          // any other too large for it) to it
          yield* Effect.ignore(limiter.sync(scope, {
            dimension: error.dimension,
            limit: error.limit,
            remaining: gate.remaining,
            since: since?.permit,
            sentAt: since?.sentAt,
            adopt: since?.adopt
          }))
        }
        const millis = typeof gate === "number" ? gate : gate.millis
        if (millis > 0) yield* Effect.ignore(limiter.block(scope, dimension, Duration.millis(millis)))
        return
      }
      case "QuotaExhausted": {
        yield* limiter.close(scopes.org, "insufficient_quota", error)
        return
      }
      case "Overloaded": {
        if (error.retryAfter !== undefined && Duration.toMillis(error.retryAfter) > 0) {
          yield* Effect.ignore(limiter.block(scopes.poolScope, "*", error.retryAfter))
        }
        return
      }
      default:
        return
    }
  })

// -----------------------------------------------------------------------------------------------------------
// streams
// -----------------------------------------------------------------------------------------------------------

/** What a stream chunk's deltas say was generated, in tokens (a quarter of the characters, at least 1). */
const chunkOutputTokens = (chunk: StreamChunk): number => {
  let chars = 0
  let parts = 0
  for (const choice of chunk.choices ?? []) {
    const delta = (choice as { readonly delta?: Record<string, unknown> } | null)?.delta
    if (delta === undefined || delta === null) continue
    for (const field of ["content", "refusal"] as const) {
      const text = delta[field]
      if (typeof text === "string" && text.length > 0) {
        chars += text.length
        parts++
      }
    }
    const calls = delta.tool_calls
    if (Array.isArray(calls)) {
      for (const call of calls) {
        const args = (call as { readonly function?: { readonly arguments?: unknown } } | null)?.function?.arguments
        if (typeof args === "string" && args.length > 0) {
          chars += args.length
          parts++
        }
      }
    }
  }
  return parts === 0 ? 0 : Math.max(parts, Math.ceil(chars / 4))
}

/**
 * An async iterable whose `return()` (a consumer stopping, or an interruption) first aborts the
 * request: an async generator such as the SDK's queues `return()` behind a pending `next()`, which
 * would otherwise wait for the server's next chunk.
 */
const abortable = <A>(iterable: AsyncIterable<A>, controller: AbortController): AsyncIterable<A> => ({
  [Symbol.asyncIterator]() {
    const iterator = iterable[Symbol.asyncIterator]()
    return {
      next: () => iterator.next(),
      return: (value?: unknown) => {
        controller.abort()
        return iterator.return !== undefined
          ? iterator.return(value)
          : Promise.resolve({ done: true as const, value: value as any })
      }
    }
  }
})
