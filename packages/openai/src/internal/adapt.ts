/**
 * The glue between the OpenAi service, the limiter, the error taxonomy and the retry policy.
 *
 * @internal
 */
import type { Budget, CircuitBreaker, LimiterStore, RateLimiter } from "@sluice/core"
import { Retry } from "@sluice/core"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Errors from "../OpenAiError.js"

/** @internal */
export type OpenAiError = Errors.OpenAiError

/** @internal */
export type CallError =
  | Errors.OpenAiError
  | RateLimiter.DeadlineExceeded
  | RateLimiter.CostExceedsCapacity
  | RateLimiter.ScopeClosed
  | LimiterStore.LimiterStoreError
  | CircuitBreaker.CircuitOpen
  | Retry.RetryDeadlineExceeded

/** @internal */
export const classify = (error: unknown, model: string): Errors.OpenAiError => Errors.classify(error, { model })

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
 * the local level where the server knows better; a limit teaches an unconfigured (or adaptive) one.
 * Daily limits are never in headers. Azure's negative remaining counts as zero; its `-1` sentinel
 * limit is ignored.
 */
export const syncHeaders = (limiter: RateLimiter.Service, scope: string, headers: Headers) =>
  Effect.forEach(["requests", "tokens", "images"] as const, (dimension) => {
    const limit = headerNumber(headers, `x-ratelimit-limit-${dimension}`)
    const remaining = headerNumber(headers, `x-ratelimit-remaining-${dimension}`)
    if (limit === undefined && remaining === undefined) return Effect.void
    return limiter.sync(scope, {
      dimension,
      limit: limit !== undefined && limit > 0 ? limit : undefined,
      remaining: remaining === undefined ? undefined : Math.max(0, remaining)
    })
  }, { discard: true })

/**
 * What a failure teaches the limiter, so the herd waits instead of each fiber finding out alone:
 * - a transient rate limit with a hint closes the pool's gate on its dimension until then;
 * - a daily limit is learned as a per-day limit (from "Limit L") and gated;
 * - `insufficient_quota` closes the organization: every waiting call fails at once, unsent.
 */
export const feedback = (
  limiter: RateLimiter.Service,
  scopes: { readonly org: string; readonly poolScope: string; readonly scopes: ReadonlyArray<string> },
  error: Errors.OpenAiError
) =>
  Effect.gen(function*() {
    switch (error._tag) {
      case "RateLimited": {
        const scope = error.scope === "project"
          ? scopes.scopes.find((s) => s.includes("/project:") && s.includes("/pool:")) ?? scopes.poolScope
          : scopes.poolScope
        const dimension = error.dimension ?? "*"
        if (error.window === "day" && error.limit !== undefined && error.limit > 0) {
          yield* Effect.ignore(
            limiter.sync(scope, {
              dimension: error.dimension ?? "requests",
              limit: error.limit,
              window: "1 day",
              remaining: 0
            })
          )
        }
        if (error.retryAfter !== undefined && Duration.toMillis(error.retryAfter) > 0) {
          yield* Effect.ignore(limiter.block(scope, dimension, error.retryAfter))
        }
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
  call: { readonly deadline?: Date | number | undefined } | undefined
): Retry.RetryOptions =>
  call?.deadline === undefined
    ? {}
    : { deadline: typeof call.deadline === "number" ? call.deadline : call.deadline.getTime() }

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

/**
 * A streamed chat completion under the same governance: admission, headers, and a settle from the
 * final usage chunk. Opening the stream is retried like any call; once chunks flow, a failure ends the
 * stream. Interrupted half-way, the reservation is settled to the prompt plus the chunks seen (one
 * token each, at least), so the unused part goes back to the budget at once.
 */
export const stream = <Chunk extends { readonly usage?: unknown; readonly choices?: ReadonlyArray<unknown> }>(args: {
  readonly limiter: RateLimiter.Service
  readonly options: { readonly organization?: string | undefined; readonly project?: string | undefined }
  readonly org: string
  readonly policy: Retry.Policy<any> | false
  readonly call: {
    readonly priority?: RateLimiter.Lane | undefined
    readonly deadline?: Date | number | undefined
    readonly maxWait?: Duration.DurationInput | undefined
    readonly tenant?: string | undefined
  } | undefined
  readonly pool: string
  readonly model: string
  readonly estimate: { readonly tokens: number; readonly promptTokens: number }
  readonly seed: (poolScope: string) => Effect.Effect<void, LimiterStore.LimiterStoreError>
  readonly open: (signal: AbortSignal) => Promise<{ data: AsyncIterable<Chunk>; response: Response }>
}): Stream.Stream<Chunk, CallError> => {
  const { limiter } = args
  const org = `org:${args.options.organization ?? "default"}`
  const scopes = [org, `${org}/pool:${args.pool}`]
  if (args.options.project !== undefined) {
    scopes.push(`${org}/project:${args.options.project}`, `${org}/project:${args.options.project}/pool:${args.pool}`)
  }
  if (args.call?.tenant !== undefined) scopes.push(`tenant:${args.call.tenant}`)
  const poolScope = scopes[1]
  const cost = { requests: 1, tokens: args.estimate.tokens }

  const opened = Effect.gen(function*() {
    yield* args.seed(poolScope)
    const permit = yield* Effect.mapError(
      limiter.acquireScoped(scopes, cost, {
        priority: args.call?.priority,
        deadline: args.call?.deadline,
        maxWait: args.call?.maxWait
      }),
      (error) => fromAdmission(error, args.model)
    )
    const controller = new AbortController()
    yield* Effect.addFinalizer(() => Effect.sync(() => controller.abort()))
    const result = yield* Effect.tryPromise({
      try: () => args.open(controller.signal),
      catch: (error) => classify(error, args.model)
    }).pipe(
      Effect.tapError((error) =>
        Effect.zipRight(
          Effect.ignore(permit.settle({ tokens: 0 })),
          feedback(limiter, { org: args.org, poolScope, scopes }, error)
        )
      )
    )
    yield* Effect.ignore(syncHeaders(limiter, poolScope, result.response.headers))
    return { permit, data: result.data }
  })

  const retried = args.policy === false ? opened : Retry.retry(opened, args.policy, retryOptions(args.call))

  return Stream.unwrapScoped(
    Effect.map(retried, ({ data, permit }) => {
      let seen = 0
      return Stream.fromAsyncIterable(data, (error) => classify(error, args.model)).pipe(
        Stream.tap((chunk) => {
          seen++
          const usage = usageCost(chunk.usage)
          return usage === undefined ? Effect.void : Effect.ignore(permit.settle(usage))
        }),
        Stream.ensuring(
          Effect.suspend(() =>
            permit.state === "held"
              ? Effect.ignore(permit.settle({ tokens: args.estimate.promptTokens + seen }))
              : Effect.void
          )
        )
      )
    })
  ) as Stream.Stream<Chunk, CallError>
}
