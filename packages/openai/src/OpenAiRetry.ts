/**
 * Retry presets for OpenAI: `Retry` policies (from `@sluice/core`) over {@link OpenAiError.OpenAiError},
 * and the predicate circuit breakers use to decide which failures count.
 *
 * The defaults (documented as a table in the package README):
 *
 * | kind | retried | base | factor | max backoff | max retries | jitter |
 * |---|---|---|---|---|---|---|
 * | RateLimited (per minute) | yes | 1 s | 2 | 32 s | 6 | full |
 * | RateLimitedDaily | yes, within the deadline | 1 min | 2 | 1 h | 2 | none |
 * | Overloaded (503) | yes | 2 s | 2 | 60 s | 4 | decorrelated |
 * | ServerError (500/502/504) | yes | 1 s | 2 | 16 s | 3 | full |
 * | Timeout | yes | 1 s | 2 | 16 s | 2 | full |
 * | ConnectionError | yes | 500 ms | 2 | 8 s | 4 | full |
 * | Conflict (409) | yes | 1 s | 2 | 8 s | 2 | full |
 * | UnknownError | only with `x-should-retry: true` | 1 s | 2 | 8 s | 2 | full |
 * | CircuitOpen (the model's breaker) | yes, after the breaker's open time | 1 s | 2 | 8 s | 3 | full |
 * | quota, too large, 400/422, context length, content policy, 401, 403, 404 | never | | | | | |
 *
 * At most 8 retries in all; every delay is `max(backoff, retryAfter)`; total time from the first
 * failure is capped at 5 minutes, or at the caller's deadline when one is given.
 *
 * @since 0.1.0
 */
import { Retry } from "@sluice/core"
import * as Duration from "effect/Duration"
import * as OpenAiError from "./OpenAiError.js"

/**
 * The kinds a policy is configured by: the error's tag, except that a daily rate limit is
 * `"RateLimitedDaily"`.
 *
 * @since 0.1.0
 * @category models
 */
export type RetryKind = OpenAiError.Kind | "RateLimitedDaily" | "CircuitOpen"

/**
 * The kind of an error for retry purposes.
 *
 * @since 0.1.0
 * @category accessors
 */
export const kind = (error: OpenAiError.OpenAiError): RetryKind =>
  (error as { readonly _tag: string })._tag === "CircuitOpen"
    ? "CircuitOpen"
    : error._tag === "RateLimited" && error.window === "day"
    ? "RateLimitedDaily"
    : error._tag

/** An open circuit breaker's refusal (`@sluice/core`'s `CircuitOpen`), which the presets wait out. */
const isCircuitOpen = (error: unknown): boolean =>
  (error as { readonly _tag?: unknown } | null | undefined)?._tag === "CircuitOpen"

/**
 * The per-kind defaults.
 *
 * @since 0.1.0
 * @category defaults
 */
export const defaultKinds: { readonly [K in RetryKind]?: Retry.KindOptions } = {
  RateLimited: { base: Duration.seconds(1), factor: 2, maxDelay: Duration.seconds(32), maxRetries: 6, jitter: "full" },
  RateLimitedDaily: {
    base: Duration.minutes(1),
    factor: 2,
    maxDelay: Duration.hours(1),
    maxRetries: 2,
    jitter: "none"
  },
  Overloaded: {
    base: Duration.seconds(2),
    factor: 2,
    maxDelay: Duration.seconds(60),
    maxRetries: 4,
    jitter: "decorrelated"
  },
  ServerError: { base: Duration.seconds(1), factor: 2, maxDelay: Duration.seconds(16), maxRetries: 3, jitter: "full" },
  Timeout: { base: Duration.seconds(1), factor: 2, maxDelay: Duration.seconds(16), maxRetries: 2, jitter: "full" },
  ConnectionError: {
    base: Duration.millis(500),
    factor: 2,
    maxDelay: Duration.seconds(8),
    maxRetries: 4,
    jitter: "full"
  },
  Conflict: { base: Duration.seconds(1), factor: 2, maxDelay: Duration.seconds(8), maxRetries: 2, jitter: "full" },
  UnknownError: { base: Duration.seconds(1), factor: 2, maxDelay: Duration.seconds(8), maxRetries: 2, jitter: "full" },
  // An open breaker refuses at once; its `retryAfter` (the time until it lets a probe through) is the floor
  // of the delay, so a burst of failures becomes a paced probe and then the waiting calls, not lost calls.
  CircuitOpen: { base: Duration.seconds(1), factor: 2, maxDelay: Duration.seconds(8), maxRetries: 3, jitter: "full" }
}

/**
 * Overrides of the defaults: per kind, settings merged over the default (`false` to stop retrying a
 * kind), and the global caps.
 *
 * @since 0.1.0
 * @category models
 */
export interface Overrides {
  readonly kinds?: { readonly [K in RetryKind]?: Retry.KindOptions | false } | undefined
  readonly maxRetries?: number | undefined
  readonly maxElapsed?: Duration.DurationInput | undefined
}

/**
 * Builds an OpenAI policy: the defaults with `overrides` merged in. Non-retryable kinds stay
 * non-retryable whatever the overrides say (the errors' `retryable` field is `false`).
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { Retry } from "@sluice/core"
 * import { OpenAiRetry, type OpenAiError } from "@sluice/openai"
 *
 * const policy = OpenAiRetry.make({ kinds: { Overloaded: { maxRetries: 2 }, Conflict: false } })
 *
 * declare const call: Effect.Effect<string, OpenAiError.OpenAiError>
 * const program = Effect.gen(function*() {
 *   const budget = yield* Retry.makeRetryBudget({ ratio: 0.2, minRetries: 10, window: "10 seconds" })
 *   return yield* Retry.retry(call, policy, { timeout: "2 minutes", budget })
 * })
 * ```
 */
export const make = (overrides: Overrides = {}): Retry.Policy<OpenAiError.OpenAiError> => {
  const kinds: Record<string, Retry.KindOptions> = {}
  for (const [k, v] of Object.entries(defaultKinds)) if (v !== undefined) kinds[k] = v
  for (const [k, v] of Object.entries(overrides.kinds ?? {})) {
    if (v === false) delete kinds[k]
    else if (v !== undefined) kinds[k] = { ...kinds[k], ...v }
  }
  return Retry.make<OpenAiError.OpenAiError>({
    // OpenAI's errors, and the breaker's refusal (typed apart, so a plain OpenAI policy stays one)
    is: (error): error is OpenAiError.OpenAiError => OpenAiError.isOpenAiError(error) || isCircuitOpen(error),
    kind,
    retryable: (error) => isCircuitOpen(error) || error.retryable,
    retryAfter: (error) => error.retryAfter,
    kinds,
    maxRetries: overrides.maxRetries ?? 8,
    maxElapsed: overrides.maxElapsed ?? Duration.minutes(5)
  })
}

/**
 * The default OpenAI policy (see the table above).
 *
 * @since 0.1.0
 * @category defaults
 */
export const defaultPolicy: Retry.Policy<OpenAiError.OpenAiError> = make()

/**
 * Which failures a circuit breaker should count: server errors, overloads, timeouts and connection
 * errors; rate limits only with `rateLimits: true` (they are about the caller's budget, not the
 * deployment's health); never the caller's own mistakes (400s, auth, quota).
 *
 * @since 0.1.0
 * @category breakers
 */
export const breakerCounts =
  (options: { readonly rateLimits?: boolean | undefined } = {}) => (error: unknown): boolean => {
    const tag = (error as { readonly _tag?: unknown } | null | undefined)?._tag
    switch (tag) {
      case "ServerError":
      case "Overloaded":
      case "Timeout":
      case "ConnectionError":
        return true
      case "RateLimited":
        return options.rateLimits === true
      default:
        return false
    }
  }
