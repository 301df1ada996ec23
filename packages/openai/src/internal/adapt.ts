/**
 * The glue between the OpenAi service, the limiter, the error taxonomy and the retry policy.
 *
 * @internal
 */
import type { Budget, CircuitBreaker, LimiterStore, RateLimiter } from "@sluice/core"
import { Retry } from "@sluice/core"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { CallError, CallEvent } from "../OpenAi.js"
import * as Errors from "../OpenAiError.js"
import type * as Learn from "./learn.js"

/** @internal */
export const classify = (error: unknown, model: string, now?: number): Errors.OpenAiError =>
  Errors.classify(error, now === undefined ? { model } : { model, now })

/** A closed organization (after `insufficient_quota`) fails with the quota error that closed it. */
export const fromAdmission = (error: RateLimiter.AcquireError, _model: string): CallError => {
  if (error._tag === "ScopeClosed" && Errors.isOpenAiError(error.cause)) return error.cause
  return error
}

/** @internal */
export const fromBreaker = (error: CallError | CircuitBreaker.CircuitOpen, _model: string): CallError => error

/** @internal */
export const failureOf = (cause: Cause.Cause<unknown>): Option.Option<Errors.OpenAiError> =>
  Option.filter(Cause.failureOption(cause), Errors.isOpenAiError) as Option.Option<Errors.OpenAiError>

/**
 * What a failed call is charged: a request the server saw counts against RPM (OpenAI counts rejected
 * requests); its tokens are refunded. A call that never reached the server (a connection refused)
 * is refunded too, except for its request, conservatively.
 */
export const chargeOnFailure = (_error: Errors.OpenAiError | undefined): Budget.Cost => ({ tokens: 0, images: 0 })

/** The cost of a call from its `usage` (chat, Responses, embeddings or images). */
export const usageCost = (usage: unknown): Budget.Cost | undefined => {
  if (usage === null || typeof usage !== "object") return undefined
  const u = usage as Record<string, unknown>
  const num = (value: unknown) => (typeof value === "number" && Number.isFinite(value) ? value : undefined)
  const total = num(u.total_tokens) ??
    ((num(u.prompt_tokens) ?? num(u.input_tokens) ?? 0) + (num(u.completion_tokens) ?? num(u.output_tokens) ?? 0))
  return { requests: 1, tokens: total }
}

const headerNumber = (headers: Headers, name: string): number | undefined => {
  const raw = headers.get(name)
  if (raw === null || raw.trim() === "") return undefined
  const value = Number(raw)
  return Number.isFinite(value) ? value : undefined
}

/**
 * Folds `x-ratelimit-limit-*` and `x-ratelimit-remaining-*` into the pool's buckets: remaining lowers
 * the local level where the server knows better (and, with `since.adopt`, may raise it: see
 * `RateLimiter.Observation.remaining`); a limit teaches an unconfigured (or adaptive) one.
 * Daily limits are never in headers. Azure's negative remaining counts as zero; its `-1` sentinel
 * limit is ignored.
 */
export const syncHeaders = (
  limiter: RateLimiter.Service,
  scope: string,
  headers: Headers,
  since?: { readonly permit: RateLimiter.Permit; readonly sentAt: number; readonly adopt?: boolean }
) =>
  Effect.forEach(["requests", "tokens", "images"] as const, (dimension) => {
    const limit = headerNumber(headers, `x-ratelimit-limit-${dimension}`)
    const remaining = headerNumber(headers, `x-ratelimit-remaining-${dimension}`)
    if (limit === undefined && remaining === undefined) return Effect.void
    return limiter.sync(scope, {
      dimension,
      limit: limit !== undefined && limit > 0 ? limit : undefined,
      remaining: remaining === undefined ? undefined : Math.max(0, remaining),
      since: since?.permit,
      sentAt: since?.sentAt,
      adopt: since?.adopt
    })
  }, { discard: true })

/**
 * Syncs the `x-ratelimit-*` headers an SDK error carries (a 429 or any other HTTP error answer has
 * them too); nothing for a failure without a response.
 */
export const syncErrorHeaders = (
  limiter: RateLimiter.Service,
  scope: string,
  error: unknown,
  since?: { readonly permit: RateLimiter.Permit; readonly sentAt: number; readonly adopt?: boolean }
) => {
  const headers = (error as { readonly headers?: unknown } | null | undefined)?.headers
  if (headers instanceof Headers) return syncHeaders(limiter, scope, headers, since)
  if (headers === null || typeof headers !== "object") return Effect.void
  return Effect.suspend(() => syncHeaders(limiter, scope, new Headers(headers as Record<string, string>), since))
}

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

/** @internal */
export const retryOptions = (
  call: { readonly deadline?: Date | number | undefined } | undefined,
  budget?: Retry.Budget | undefined
): Retry.RetryOptions => ({
  ...(call?.deadline === undefined
    ? {}
    : { deadline: typeof call.deadline === "number" ? call.deadline : call.deadline.getTime() }),
  ...(budget === undefined ? {} : { budget })
})

/** A Responses API object that came back `failed` is a failure of its kind. */
export const checkResponseStatus = <A extends { readonly status?: unknown; readonly error?: unknown }>(
  response: A,
  model: string
): Effect.Effect<A, Errors.OpenAiError> =>
  response.status === "failed" && response.error !== null && response.error !== undefined
    ? Effect.fail(Errors.fromResponseFailed({ type: "response.failed", response } as any, { model }))
    : Effect.succeed(response)

/** @internal */
export const unsupportedEndpoint = (url: string): Errors.OpenAiError =>
  Errors.classify({ status: 404, error: { message: `Sluice does not meter ${url}`, code: "unsupported_endpoint" } }, {
    model: "unknown"
  })

/** What a stream chunk's deltas say was generated, in tokens (a quarter of the characters, at least 1). */
const chunkOutputTokens = (chunk: { readonly choices?: ReadonlyArray<unknown> }): number => {
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

/** What a stream has used so far: the output seen, and the usage chunk's figures once it came. */
interface Progress {
  output: number
  used: Budget.Cost | undefined
}

/**
 * A streamed chat completion under the same governance: admission, headers, and a settle from the
 * final usage chunk. Opening the stream is retried like any call (through admission, gates and the
 * breaker); once chunks flow, a failure ends the stream. Interrupted half-way (or ended early by the
 * consumer), the reservation is settled to the prompt plus the output seen so far (a quarter of the
 * delta characters, at least a token a delta), so the unused part goes back to the budget at once.
 */
export const stream = <Chunk extends { readonly usage?: unknown; readonly choices?: ReadonlyArray<unknown> }>(args: {
  readonly limiter: RateLimiter.Service
  readonly scopes: ReadonlyArray<string>
  readonly org: string
  readonly policy: Retry.Policy<any> | false
  readonly budget?: Retry.Budget | undefined
  readonly call: {
    readonly priority?: RateLimiter.Lane | undefined
    readonly deadline?: Date | number | undefined
    readonly maxWait?: Duration.DurationInput | undefined
  } | undefined
  readonly model: string
  readonly estimate: { readonly tokens: number; readonly promptTokens: number }
  readonly seed: (poolScope: string) => Effect.Effect<void, LimiterStore.LimiterStoreError>
  readonly probed: <A, E, R>(poolScope: string, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly learned: (poolScope: string) => Effect.Effect<void>
  readonly learner?: Learn.Learner | undefined
  readonly guard: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | CircuitBreaker.CircuitOpen, R>
  readonly emit: (event: CallEvent) => Effect.Effect<void>
  readonly classify: (error: unknown, model: string) => Effect.Effect<Errors.OpenAiError>
  readonly open: (signal: AbortSignal) => Promise<{ data: AsyncIterable<Chunk>; response: Response }>
}): Stream.Stream<Chunk, CallError> => {
  const { limiter, model, scopes } = args
  const poolScope = scopes[1]
  const cost: Budget.Cost = { requests: 1, tokens: args.estimate.tokens }
  const usedSoFar = (progress: Progress): Budget.Cost =>
    progress.used ?? { requests: 1, tokens: args.estimate.promptTokens + progress.output }
  let attempts = 0

  const opened = Effect.suspend(() => {
    const attempt = ++attempts
    return args.probed(
      poolScope,
      Effect.gen(function*() {
        const asked = yield* Clock.currentTimeMillis
        if (args.learner !== undefined) yield* args.learner.fit(poolScope, cost)
        const progress: Progress = { output: 0, used: undefined }
        // However the stream ends (completed, failed, interrupted, abandoned), its scope settles the
        // permit to what was used: the usage chunk's figures, else the prompt and the output seen.
        const permit = yield* Effect.uninterruptibleMask((restore) =>
          Effect.tap(
            Effect.mapError(
              restore(limiter.acquire(scopes, cost, {
                priority: args.call?.priority,
                deadline: args.call?.deadline,
                maxWait: args.call?.maxWait
              })),
              (error) => fromAdmission(error, model)
            ),
            (permit) => Effect.addFinalizer(() => Effect.ignore(permit.settle(usedSoFar(progress))))
          )
        )
        yield* args.emit({
          _tag: "Admitted",
          model,
          attempt,
          scopes,
          cost,
          waitedMillis: Math.max(0, permit.admittedAt - asked)
        })
        const controller = new AbortController()
        yield* Effect.addFinalizer(() => Effect.sync(() => controller.abort()))
        // last before the request leaves: the order marked is the order sent
        const sent = yield* Clock.currentTimeMillis
        yield* permit.markSent
        const result = yield* Effect.tryPromise({ try: () => args.open(controller.signal), catch: (error) => error })
          .pipe(
            Effect.catchAll((raw) =>
              Effect.gen(function*() {
                const error = yield* args.classify(raw, model)
                yield* Effect.ignore(permit.settle(chargeOnFailure(error)))
                // after the refund: the server's remaining does not count this refused call's tokens either
                yield* Effect.ignore(syncErrorHeaders(limiter, poolScope, raw, { permit, sentAt: sent, adopt: false }))
                if (error.status !== undefined) yield* args.learned(poolScope)
                yield* feedback(limiter, { org: args.org, poolScope, scopes }, error, {
                  permit,
                  sentAt: sent,
                  adopt: false
                })
                if (error._tag === "RateLimited" && args.learner !== undefined) {
                  yield* args.learner.rateLimited(poolScope, error, { permit, sentAt: sent, adopt: false })
                }
                const latencyMillis = (yield* Clock.currentTimeMillis) - sent
                yield* args.emit({ _tag: "Failed", model, attempt, error, latencyMillis })
                return yield* Effect.fail(error)
              })
            )
          )
        // a stream's headers come before its output: they cannot count its final charge, which its settle
        // (from the final usage chunk, or what was read) applies, so its report only lowers
        yield* Effect.ignore(
          syncHeaders(limiter, poolScope, result.response.headers, { permit, sentAt: sent, adopt: false })
        )
        args.learner?.heard(poolScope, result.response.headers)
        yield* args.learned(poolScope)
        return { permit, data: result.data, attempt, sent, controller, progress }
      })
    )
  })

  const once = args.guard(opened)
  const retried = args.policy === false ? once : Retry.retry(once, args.policy, retryOptions(args.call, args.budget))

  return Stream.unwrapScoped(
    Effect.map(
      Effect.flatMap(args.seed(poolScope), () => retried),
      ({ attempt, controller, data, permit, progress, sent }) => {
        const finish = (exit: Exit.Exit<unknown, unknown>) =>
          Effect.gen(function*() {
            const used = usedSoFar(progress)
            yield* Effect.ignore(permit.settle(used))
            const latencyMillis = (yield* Clock.currentTimeMillis) - sent
            if (Exit.isSuccess(exit) || progress.used !== undefined) {
              yield* args.emit({ _tag: "Succeeded", model, attempt, reserved: cost, used, latencyMillis })
            } else {
              const error = Option.getOrUndefined(failureOf(exit.cause))
              if (error !== undefined) yield* args.emit({ _tag: "Failed", model, attempt, error, latencyMillis })
            }
          })
        return Stream.fromAsyncIterable(abortable(data, controller), (error) => error).pipe(
          Stream.catchAll((raw) => Stream.fromEffect(Effect.flatMap(args.classify(raw, model), Effect.fail))),
          Stream.tap((chunk) =>
            Effect.suspend(() => {
              progress.output += chunkOutputTokens(chunk)
              const usage = usageCost(chunk.usage)
              if (usage === undefined) return Effect.void
              progress.used = usage
              return Effect.ignore(permit.settle(usage))
            })
          ),
          Stream.ensuringWith(finish)
        )
      }
    )
  ) as Stream.Stream<Chunk, CallError>
}
