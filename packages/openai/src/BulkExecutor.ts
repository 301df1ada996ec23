/**
 * The OpenAI executor of the bulk runner: what `sluice run` hands to {@link BulkRunner.run}, for any program to
 * use without the command. Every line goes through the `OpenAi` service (or, given a routing config, through
 * `OpenAiRouter` over its deployments): estimated, admitted atomically across its scopes (organization, the model's
 * pool), sent with the official SDK, synced from the `x-ratelimit-*` headers, settled to its `usage`, gated on
 * 429 hints and retried per {@link retryPolicy}. Its call events feed the run's {@link BulkRunner.Progress}:
 * waits, 429s, retries, the binding budget, tokens reserved against used, and the theoretical minimum wall time
 * for the limits in force. Without routing, a pool's configured per-minute limits given without their bursts start
 * with the first-contact ramp (`OpenAi.Options.firstContactRamp`): a long job loses nothing to it, and its first
 * herd is not refused beyond a bucket the server enforces over a shorter period than it announces.
 *
 * The policy, in one place:
 *
 * - {@link retryPolicy}: OpenAI's retry policy with more patience, since a line that gives up is written as a
 *   failure a rerun does not retry;
 * - {@link describeError}: how an error becomes the failure written for its line, and which errors stop the run
 *   instead (`stop: true`: the line is not written, a rerun does it): an exhausted quota or a refused key, since
 *   every other line would fail the same way, and a closed limiter or a failing limiter store;
 * - {@link Cancelled}: a call given up unsent stops the run too — after `cancel` (Ctrl-C: calls waiting for
 *   admission or a retry fail at once, calls on the wire finish), or in an outage (the server never answered
 *   and could not be reached: the lines are not at fault).
 *
 * @since 0.2.0
 */
import type { LimiterStore, Retry } from "@sluice/core"
import type { Budget, RateLimiter } from "@sluice/core"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as BulkRunner from "./BulkRunner.js"
import * as internal from "./internal/bulkExecutor.js"
import type * as OpenAi from "./OpenAi.js"
import type * as OpenAiError from "./OpenAiError.js"
import * as OpenAiRetry from "./OpenAiRetry.js"
import type * as OpenAiRouter from "./OpenAiRouter.js"
import type * as ResponseCache from "./ResponseCache.js"
import type * as Tiers from "./Tiers.js"

// ---------------------------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------------------------

/**
 * A call given up before it was sent (never written: a rerun sends it): after `cancel` (`Signal`), or when the
 * server was never reached (`Outage`: no connection succeeded, so the lines are not at fault).
 *
 * @since 0.2.0
 * @category errors
 */
export class Cancelled extends Schema.TaggedError<Cancelled>("@sluice/openai/Cancelled")("Cancelled", {
  kind: Schema.Literal("Signal", "Outage"),
  message: Schema.String
}) {}

/**
 * What `execute` fails with: a routed call's error, or {@link Cancelled}.
 *
 * @since 0.2.0
 * @category errors
 */
export type ExecuteError = OpenAiRouter.RoutedError | Cancelled

// ---------------------------------------------------------------------------------------------------------------
// the policy
// ---------------------------------------------------------------------------------------------------------------

/**
 * The bulk retry policy: OpenAI's defaults with more patience, since a line that gives up is written as a
 * failure a rerun will not retry — at most 12 retries and 30 minutes per request, and an open circuit breaker
 * waited out up to 8 times (an incident on one model delays its lines rather than burning them).
 *
 * @since 0.2.0
 * @category policy
 * @example
 * ```ts
 * import { BulkExecutor, OpenAi } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 *
 * // the same patience for a call made outside a bulk run
 * const call = (openai: OpenAi.OpenAi.Service) =>
 *   openai.request("/v1/embeddings", { model: "text-embedding-3-small", input: "hello" }, {
 *     retry: BulkExecutor.retryPolicy
 *   })
 * ```
 */
export const retryPolicy: Retry.Policy<OpenAiError.OpenAiError> = OpenAiRetry.make({
  kinds: { CircuitOpen: { maxRetries: 8, maxDelay: Duration.seconds(5) } },
  maxRetries: 12,
  maxElapsed: Duration.minutes(30)
})

/**
 * The failure written for a routed call's error, or a stop: an exhausted quota, a refused key, a closed limiter
 * or a failing limiter store stop the run (`stop: true`: not written, a rerun does the line); a call that found
 * no candidate, missed its deadline, cost more than a budget holds or met an open breaker is written with its
 * tag as kind and code; any other OpenAI error with its `code` (else `type`, else `http_<status>`) and status.
 *
 * @since 0.2.0
 * @category policy
 * @example
 * ```ts
 * import { BulkExecutor, OpenAiError } from "@sluice/openai"
 *
 * const failure = BulkExecutor.describeError(
 *   new OpenAiError.QuotaExhausted({ message: "no quota left", retryable: false, code: "insufficient_quota" })
 * )
 * // { kind: "QuotaExhausted", code: "insufficient_quota", message: "no quota left", stop: true }
 * ```
 */
export const describeError = (error: OpenAiRouter.RoutedError): BulkRunner.Failure => {
  switch (error._tag) {
    case "NoCandidate":
      return { kind: error._tag, code: error._tag, message: error.message }
    case "QuotaExhausted":
    case "Unauthorized":
      // Not written, and the run stops: every other line would fail the same way. A rerun (after topping up,
      // or with the right key) does them all.
      return { kind: error._tag, code: error.code ?? error._tag, message: error.message, stop: true }
    case "ScopeClosed":
    case "LimiterStoreError":
      return { kind: error._tag, code: error._tag, message: error.message, stop: true }
    case "DeadlineExceeded":
    case "RetryDeadlineExceeded":
    case "CostExceedsCapacity":
    case "CircuitOpen":
      return { kind: error._tag, code: error._tag, message: error.message }
    default:
      return {
        kind: error._tag,
        code: error.code ?? error.type ?? (error.status === undefined ? error._tag : `http_${error.status}`),
        message: error.message,
        statusCode: error.status
      }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// the executor
// ---------------------------------------------------------------------------------------------------------------

/**
 * The `fetch` the SDK sends with (an embedded simulator's, a proxy's).
 *
 * @since 0.2.0
 * @category models
 */
export type Fetch = (input: string | URL | Request, init?: RequestInit) => Promise<globalThis.Response>

/**
 * What the executor needs.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** The SDK-style base URL (`https://api.openai.com/v1`). */
  readonly baseUrl: string
  readonly apiKey: Redacted.Redacted<string>
  /** The organization name used in scope keys (default `"default"`). */
  readonly organization?: string | undefined
  /** Sent as `OpenAI-Organization`. */
  readonly organizationId?: string | undefined
  readonly projectId?: string | undefined
  /** The usage tier whose presets give the limits (none: the limits are learned from the answers). */
  readonly tier: Tiers.Tier | undefined
  /** Budgets that replace the tier's for their scopes (e.g. `org:<organization>/pool:<pool>`). */
  readonly budgets?: ReadonlyArray<Budget.Budget> | undefined
  /** A routing config (parsed JSON) and where it came from: lines go through `OpenAiRouter` over its deployments. */
  readonly routing?: { readonly config: unknown; readonly path: string } | undefined
  readonly priority: "interactive" | "background" | undefined
  /** Per-request admission deadline, in milliseconds from when the request is taken up. */
  readonly deadlineMs: number | undefined
  /** The `fetch` to use (default: the SDK's). */
  readonly fetch: Fetch | undefined
  /** Progress to feed (waits, 429s, retries, binding budget, tokens); give the same to `BulkRunner.run`. */
  readonly progress: BulkRunner.Progress
  /** Where the budgets live: `LimiterStore.layerMemory` (this process) unless given (Redis: shared). */
  readonly store?: Layer.Layer<LimiterStore.LimiterStore, Error> | undefined
  /**
   * A response cache every line goes through (`sluice run --cache`): a line answered from it (or sharing an
   * identical line under way) is sent nowhere and charges nothing, not even the theoretical minimum.
   *
   * @since 0.2.0
   */
  readonly cache?: ResponseCache.ResponseCache.Service | undefined
  /**
   * Also told of every call's events (after the executor's own bookkeeping): `Pipeline.onEvent`, so that a
   * pipeline's stages see their calls' waits, charges, retries and 429s.
   *
   * @since 0.2.0
   */
  readonly onEvent?: ((event: OpenAi.CallEvent) => Effect.Effect<void>) | undefined
}

/**
 * Per-line call options of {@link Executor.execute}: the lane and the tenant scope that line is charged against
 * (a pipeline stage's), over the executor's own `priority`. Through a router, only the lane applies.
 *
 * @since 0.2.0
 * @category models
 */
export interface CallOptions {
  readonly priority?: "interactive" | "background" | undefined
  readonly tenant?: string | undefined
}

/**
 * An executor: `execute` and `describe` for {@link BulkRunner.run}, and what to ask it afterwards.
 *
 * @since 0.2.0
 * @category models
 */
export interface Executor {
  /** Runs one line; `call` (since 0.2.0) gives it its own lane and tenant. */
  readonly execute: (
    request: BulkRunner.Request,
    call?: CallOptions
  ) => Effect.Effect<BulkRunner.Response, ExecuteError>
  /** {@link describeError}, and a stop for {@link Cancelled} and for what an outage left unsent. */
  readonly describe: (error: ExecuteError) => BulkRunner.Failure
  /**
   * Gives up every call not being sent right now (waiting for admission, for a retry, or queued): each fails
   * with {@link Cancelled} at once, unsent; calls on the wire finish, and are not retried.
   */
  readonly cancel: (kind: "Signal", message: string) => Effect.Effect<void>
  /** The limiter the executor admits through (for a final snapshot). */
  readonly limiter: RateLimiter.Service
  /** With a routing config: the router's summary in words (served, spilled and why, reported). */
  readonly routingSummary: Effect.Effect<string | undefined>
  /**
   * What was learned that the server does not announce, one line each: the OpenAi service's bursts and limits
   * found without headers (`tokens burst 2,500 on … after 3 429s`; none through a router), then the daily
   * limits a 429 taught the limiter (`requests limit 10,000/day on …`; through a router too).
   */
  readonly learned: Effect.Effect<ReadonlyArray<string>>
}

/**
 * Builds an executor with its own limiter (the memory store, or the one given) and `OpenAi` service (or
 * router), in the current scope (a Redis store's connection lives as long as it). It loads the tokenizer's
 * vocabularies first, so that no line waits for them mid-run.
 *
 * @since 0.2.0
 * @category constructors
 * @example
 * ```ts
 * import { BulkExecutor, BulkRunner } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as Redacted from "effect/Redacted"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const progress = yield* BulkRunner.makeProgress
 *   const executor = yield* BulkExecutor.make({
 *     baseUrl: "https://api.openai.com/v1",
 *     apiKey: Redacted.make(process.env.OPENAI_API_KEY ?? ""),
 *     tier: 1,
 *     priority: undefined,
 *     deadlineMs: undefined,
 *     fetch: undefined,
 *     progress
 *   })
 *   return yield* BulkRunner.run({
 *     input: "requests.jsonl",
 *     output: "results.jsonl",
 *     execute: executor.execute,
 *     describe: executor.describe,
 *     progress
 *   })
 * }))
 * ```
 */
export const make = (
  options: Options
): Effect.Effect<Executor, OpenAiRouter.RoutingConfigError | ConfigError.ConfigError | Error, Scope.Scope> =>
  internal.make(options)
