/**
 * Retry policies as Effect `Schedule`s whose input is a typed error.
 *
 * A policy is built per error kind: kinds left out are not retried, and an error whose `retryable`
 * accessor says `false` is never retried, whatever the configuration. Delays are exponential with
 * full or decorrelated jitter, a server's `retryAfter` is a floor (`delay = max(backoff, retryAfter)`,
 * with no cut-off), attempts and total elapsed time are capped, a caller's deadline makes a wait that
 * cannot be met fail at once with the time it would have taken, and a shared {@link RetryBudget} keeps
 * retries to a share of recent first attempts so an incident cannot become a retry storm.
 *
 * This module knows nothing of any provider: it reads errors through accessors (`kind`,
 * `retryable`, `retryAfter`). Presets for OpenAI live in `@sluice/openai` (`OpenAiRetry`).
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as Interval from "effect/ScheduleInterval"
import * as Schema from "effect/Schema"
import * as internal from "./internal/retry.js"

/**
 * How the delay of one kind grows.
 *
 * @since 0.1.0
 * @category models
 */
export type Jitter = "none" | "full" | "decorrelated"

/**
 * The settings of one error kind. Every field has a default: `base` 1 second, `factor` 2,
 * `maxDelay` 30 seconds (the cap on the backoff, never on a server's `retryAfter`), `maxRetries` 5,
 * `jitter` `"full"`, `honorRetryAfter` `true`.
 *
 * @since 0.1.0
 * @category models
 */
export interface KindOptions {
  readonly base?: Duration.DurationInput | undefined
  readonly factor?: number | undefined
  readonly maxDelay?: Duration.DurationInput | undefined
  readonly maxRetries?: number | undefined
  readonly jitter?: Jitter | undefined
  readonly honorRetryAfter?: boolean | undefined
}

/**
 * The options of a policy over errors of type `E`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<E> {
  /** The kind of an error (usually its `_tag`), the key into `kinds`. */
  readonly kind: (error: E) => string
  /**
   * Which failures the policy understands. {@link retry} accepts effects that fail with more than
   * `E`: failures outside `E` are never retried. Default: every failure is taken to be an `E`.
   */
  readonly is?: ((error: unknown) => error is E) | undefined
  /**
   * Whether the error may ever be retried. `false` wins over any configuration. An error carrying
   * `retryable: false` itself is never retried in any case. Default: every other error may be.
   */
  readonly retryable?: ((error: E) => boolean) | undefined
  /** The wait the server asked for, used as a floor on the delay. */
  readonly retryAfter?: ((error: E) => Duration.Duration | undefined) | undefined
  /** The kinds retried, with their settings (`true` takes `defaults`). Kinds left out are not retried. */
  readonly kinds: { readonly [kind: string]: KindOptions | true }
  /** Settings every kind starts from. */
  readonly defaults?: KindOptions | undefined
  /** A cap on retries across all kinds. Default: no cap beyond the kinds' own. */
  readonly maxRetries?: number | undefined
  /**
   * A cap on the time from the first failure to the end of the next wait: a wait that would end
   * later stops the retries at once. Replaced by the caller's deadline when one is given. Default:
   * no cap.
   */
  readonly maxElapsed?: Duration.DurationInput | undefined
}

/**
 * What a policy emits at each failure: a `Retrying` step for each retry it allows, and a final
 * `Stopped` step saying why it gave up (so `Schedule.run` shows the whole story).
 *
 * @since 0.1.0
 * @category models
 */
export type Step = Retrying | Stopped

/**
 * A retry allowed.
 *
 * @since 0.1.0
 * @category models
 */
export interface Retrying {
  readonly _tag: "Retrying"
  readonly kind: string
  /** 1 for the first retry. */
  readonly attempt: number
  /** The wait before this retry: `max(backoff, retryAfter)`. */
  readonly delay: Duration.Duration
  readonly backoff: Duration.Duration
  readonly retryAfter: Option.Option<Duration.Duration>
}

/**
 * The policy gave up.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stopped {
  readonly _tag: "Stopped"
  readonly kind: string
  readonly reason: StopReason
  /** Retries performed before stopping. */
  readonly retries: number
  /** The wait the next retry would have needed, when a time cap stopped it. */
  readonly wait: Option.Option<Duration.Duration>
}

/**
 * Why a policy stopped retrying: the error is not retryable (`NotRetryable`), its kind has no settings
 * (`NotConfigured`), the kind's retries are used up (`MaxRetries`), the next wait would pass the policy's
 * elapsed-time cap (`MaxElapsed`) or the call's deadline (`Deadline`), or the {@link RetryBudget} refused
 * the retry (`Budget`).
 *
 * @since 0.1.0
 * @category models
 */
export type StopReason = "NotRetryable" | "NotConfigured" | "MaxRetries" | "MaxElapsed" | "Deadline" | "Budget"

/**
 * A retry policy: a `Schedule` that takes the typed error as input (use it with `Effect.retry`
 * directly, or with {@link retry} for deadlines and budgets), plus its resolved settings.
 *
 * @since 0.1.0
 * @category models
 */
export interface Policy<E> extends Schedule.Schedule<Step, E> {
  readonly settings: Settings<E>
}

/**
 * A policy's settings as {@link make} resolved them from its {@link Options}: every default applied,
 * every duration in milliseconds (`maxElapsed` is `Infinity` when there is no cap). Pass them back to
 * `make` to build a variant of a policy (a narrower `retryable`, say).
 *
 * @since 0.2.0
 * @category models
 * @example
 * ```ts
 * import { Retry } from "@sluice/core"
 *
 * type Failure = { readonly _tag: "Busy" | "Gone" }
 * const policy = Retry.make<Failure>({ kind: (e) => e._tag, kinds: { Busy: { maxRetries: 4 } } })
 * const s = policy.settings // s.kinds.Busy.base === 1000
 * // the same policy with at most two retries in all
 * const stricter = Retry.make<Failure>({ ...s, maxRetries: 2, maxElapsed: undefined })
 * ```
 */
export interface Settings<E> {
  readonly is: (error: unknown) => error is E
  readonly kind: (error: E) => string
  readonly retryable: (error: E) => boolean
  readonly retryAfter: (error: E) => Duration.Duration | undefined
  readonly kinds: Readonly<Record<string, KindSettings>>
  readonly maxRetries: number
  readonly maxElapsed: number
}

/**
 * One kind's resolved settings (see {@link KindOptions} for their meaning and defaults): durations in
 * milliseconds.
 *
 * @since 0.2.0
 * @category models
 */
export interface KindSettings {
  readonly base: number
  readonly factor: number
  readonly maxDelay: number
  readonly maxRetries: number
  readonly jitter: Jitter
  readonly honorRetryAfter: boolean
}

/**
 * The caller's side of a retry: an absolute `deadline` (Clock milliseconds) or a `timeout` from the
 * start of the call, and a shared {@link RetryBudget}.
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryOptions {
  readonly deadline?: number | undefined
  readonly timeout?: Duration.DurationInput | undefined
  readonly budget?: RetryBudget | undefined
}

/**
 * A retry refused because the wait it needs ends after the caller's deadline. It fails at once,
 * without waiting, and says how long the wait would have been; `cause` is the error that was not
 * retried.
 *
 * @since 0.1.0
 * @category errors
 */
export class RetryDeadlineExceeded extends Schema.TaggedError<RetryDeadlineExceeded>(
  "@sluice/core/RetryDeadlineExceeded"
)("RetryDeadlineExceeded", {
  kind: Schema.String,
  wait: Schema.DurationFromSelf,
  deadline: Schema.Number,
  retries: Schema.Number,
  cause: Schema.Unknown
}) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `retry of ${this.kind} needs ${Duration.format(this.wait)}, beyond the deadline`
  }
}

/**
 * Retries performed, tagged `kind`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const retriesTotal = Metric.counter("sluice_retry_attempts_total", {
  description: "Retries performed by retry policies",
  incremental: true
})

/**
 * Retries refused, tagged `reason` (a {@link StopReason}) and `kind`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const stopsTotal = Metric.counter("sluice_retry_stops_total", {
  description: "Failures a retry policy did not retry, by reason",
  incremental: true
})

// -----------------------------------------------------------------------------
// RetryBudget
// -----------------------------------------------------------------------------

/**
 * A retry budget shared by many calls: over a sliding `window`, retries may not exceed
 * `minRetries + ratio × first attempts`. {@link retry} records each call's first attempt and asks the
 * budget before each retry; a refused retry ends the retries with the last error. (Not a `Budget` of
 * `@sluice/core`'s `Budget` module, which holds a scope's rate limits.)
 *
 * @since 0.2.0
 * @category budget
 */
export interface RetryBudget {
  readonly recordFirstAttempt: Effect.Effect<void>
  readonly tryRetry: Effect.Effect<boolean>
  readonly snapshot: Effect.Effect<{
    readonly firstAttempts: number
    readonly retries: number
    readonly available: number
  }>
}

/**
 * @since 0.2.0
 * @category budget
 */
export declare namespace RetryBudget {
  /**
   * Defaults: `ratio` 0.2 (retries up to 20% of first attempts), `minRetries` 10 per window,
   * `window` 10 seconds.
   *
   * @since 0.2.0
   * @category budget
   */
  export interface Options {
    readonly ratio?: number | undefined
    readonly minRetries?: number | undefined
    readonly window?: Duration.DurationInput | undefined
  }
}

/**
 * Creates a retry budget; time comes from the `Clock`.
 *
 * @since 0.2.0
 * @category budget
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { Retry } from "@sluice/core"
 *
 * const program = Effect.gen(function*() {
 *   const budget = yield* Retry.makeRetryBudget({ ratio: 0.1, minRetries: 5, window: "10 seconds" })
 *   // share `budget` between every call: Retry.retry(call, policy, { budget })
 *   return budget
 * })
 * ```
 */
export const makeRetryBudget = (options: RetryBudget.Options = {}): Effect.Effect<RetryBudget> =>
  Effect.sync(() => {
    const window = new internal.BudgetWindow(
      Duration.toMillis(options.window ?? Duration.seconds(10)),
      options.ratio ?? 0.2,
      options.minRetries ?? 10,
      10
    )
    return {
      recordFirstAttempt: Effect.map(Clock.currentTimeMillis, (now) => window.recordFirst(now)),
      tryRetry: Effect.map(Clock.currentTimeMillis, (now) => window.tryRetry(now)),
      snapshot: Effect.map(Clock.currentTimeMillis, (now) => window.snapshot(now))
    }
  })

/**
 * @deprecated Since 0.2.0: use {@link RetryBudget} (the same interface; `Budget` is the rate-limits module's name).
 * @since 0.1.0
 * @category budget
 */
export interface Budget extends RetryBudget {}

/**
 * @deprecated Since 0.2.0: use {@link RetryBudget}.
 * @since 0.1.0
 * @category budget
 */
export declare namespace Budget {
  /**
   * @deprecated Since 0.2.0: use `RetryBudget.Options`.
   * @since 0.1.0
   * @category budget
   */
  export interface Options extends RetryBudget.Options {}
}

/**
 * @deprecated Since 0.2.0: use {@link makeRetryBudget} (the same function).
 * @since 0.1.0
 * @category budget
 */
export const makeBudget: (options?: RetryBudget.Options) => Effect.Effect<RetryBudget> = makeRetryBudget

// -----------------------------------------------------------------------------
// Policies
// -----------------------------------------------------------------------------

const resolveKind = (defaults: KindOptions | undefined, own: KindOptions | true): internal.KindSettings => {
  const o: KindOptions = own === true ? {} : own
  const pick = <K extends keyof KindOptions>(k: K): KindOptions[K] => o[k] !== undefined ? o[k] : defaults?.[k]
  return {
    base: Duration.toMillis(pick("base") ?? Duration.seconds(1)),
    factor: pick("factor") ?? 2,
    maxDelay: Duration.toMillis(pick("maxDelay") ?? Duration.seconds(30)),
    maxRetries: pick("maxRetries") ?? 5,
    jitter: pick("jitter") ?? "full",
    honorRetryAfter: pick("honorRetryAfter") ?? true
  }
}

const resolve = <E>(options: Options<E>): internal.Settings<E> => {
  const kinds: Record<string, internal.KindSettings> = {}
  for (const [name, own] of Object.entries(options.kinds)) kinds[name] = resolveKind(options.defaults, own)
  return {
    kind: options.kind,
    is: options.is ?? ((_: unknown): _ is E => true),
    // An error that says of itself that it is not retryable (`retryable: false`) is never retried, whatever
    // the policy lists; a custom `retryable` is combined with that, never a way around it.
    retryable: (error: E) =>
      (error as { readonly retryable?: unknown } | null | undefined)?.retryable !== false &&
      (options.retryable === undefined || options.retryable(error)),
    retryAfter: options.retryAfter ?? (() => undefined),
    kinds,
    maxRetries: options.maxRetries ?? Number.POSITIVE_INFINITY,
    maxElapsed: options.maxElapsed === undefined
      ? Number.POSITIVE_INFINITY
      : Duration.toMillis(options.maxElapsed)
  }
}

const toStep = (d: Extract<internal.Decision, { _tag: "Retry" }>): Step => ({
  _tag: "Retrying",
  kind: d.kind,
  attempt: d.attempt,
  delay: Duration.millis(d.delay),
  backoff: Duration.millis(d.backoff),
  retryAfter: d.retryAfter === undefined ? Option.none() : Option.some(Duration.millis(d.retryAfter))
})

const build = <E>(
  settings: internal.Settings<E>,
  deadline: number | undefined,
  budget: RetryBudget | undefined,
  onStop: ((stopped: Stopped) => void) | undefined
): Schedule.Schedule<Step, E> =>
  Schedule.makeWithState<internal.State, E, Step>(internal.initialState, (now, error, state) =>
    Effect.gen(function*() {
      const u = yield* Random.next
      const decision = internal.decide(settings, state, error, now, u, deadline)
      const stop = (reason: StopReason, wait: number | undefined) =>
        Effect.gen(function*() {
          const stopped: Stopped = {
            _tag: "Stopped",
            kind: decision.kind,
            reason,
            retries: state.retries,
            wait: wait === undefined ? Option.none() : Option.some(Duration.millis(wait))
          }
          onStop?.(stopped)
          yield* Metric.update(
            stopsTotal.pipe(Metric.tagged("reason", reason), Metric.tagged("kind", decision.kind)),
            1
          )
          return [state, stopped as Step, ScheduleDecision.done] as const
        })
      if (decision._tag === "Stop") return yield* stop(decision.reason, decision.wait)
      if (budget !== undefined && !(yield* budget.tryRetry)) return yield* stop("Budget", undefined)
      yield* Metric.update(retriesTotal.pipe(Metric.tagged("kind", decision.kind)), 1)
      return [
        decision.state,
        toStep(decision),
        ScheduleDecision.continueWith(Interval.after(now + decision.delay))
      ] as const
    }))

/**
 * Builds a retry policy from per-kind settings.
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { Retry } from "@sluice/core"
 *
 * type Failure = { readonly _tag: "Busy" | "Invalid"; readonly retryable: boolean }
 *
 * const policy = Retry.make<Failure>({
 *   kind: (e) => e._tag,
 *   retryable: (e) => e.retryable,
 *   kinds: { Busy: { base: "500 millis", maxRetries: 4, jitter: "decorrelated" } },
 *   maxElapsed: "2 minutes"
 * })
 *
 * declare const call: Effect.Effect<string, Failure>
 * const retried = Effect.retry(call, policy)
 * ```
 */
export const make = <E>(options: Options<E>): Policy<E> => {
  const settings = resolve(options)
  return Object.assign(build(settings, undefined, undefined, undefined), { settings })
}

/**
 * Accessors for errors that carry their own `_tag`, `retryable` and optional `retryAfter` fields;
 * spread into {@link make}'s options.
 *
 * @since 0.1.0
 * @category constructors
 */
export const tagged: {
  readonly kind: (error: { readonly _tag: string }) => string
  readonly retryable: (error: { readonly retryable?: boolean | undefined }) => boolean
  readonly retryAfter: (error: { readonly retryAfter?: Duration.Duration | undefined }) => Duration.Duration | undefined
} = {
  kind: (error) => error._tag,
  retryable: (error) => error.retryable !== false,
  retryAfter: (error) => error.retryAfter
}

/**
 * The policy as a `Schedule` bound to a caller's deadline and budget. A wait ending after the
 * deadline stops it at once (with {@link retry} the failure says how long the wait would have been).
 *
 * @since 0.1.0
 * @category combinators
 */
export const schedule = <E>(policy: Policy<E>, options: RetryOptions = {}): Schedule.Schedule<Step, E> =>
  build(policy.settings, options.deadline, options.budget, undefined)

/**
 * Runs `self`, retrying its failures under `policy`. With `deadline` (Clock milliseconds) or
 * `timeout` (from now), a retry whose wait would end after the deadline fails at once with
 * {@link RetryDeadlineExceeded}; otherwise the last error is returned when the policy stops. With a
 * `budget`, the call's first attempt is recorded and every retry is asked of the budget.
 *
 * @since 0.1.0
 * @category combinators
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { Retry } from "@sluice/core"
 *
 * declare const policy: Retry.Policy<Error & { readonly _tag: string }>
 * declare const call: Effect.Effect<string, Error & { readonly _tag: string }>
 *
 * const program = Effect.gen(function*() {
 *   const budget = yield* Retry.makeRetryBudget()
 *   return yield* call.pipe(Retry.retry(policy, { timeout: "30 seconds", budget }))
 * })
 * ```
 */
export const retry: {
  <E>(
    policy: Policy<E>,
    options?: RetryOptions
  ): <A, E2, R>(self: Effect.Effect<A, E2, R>) => Effect.Effect<A, E2 | RetryDeadlineExceeded, R>
  <A, E2, R, E>(
    self: Effect.Effect<A, E2, R>,
    policy: Policy<E>,
    options?: RetryOptions
  ): Effect.Effect<A, E2 | RetryDeadlineExceeded, R>
} = dual(
  (args) => Effect.isEffect(args[0]),
  <A, E2, R, E>(
    self: Effect.Effect<A, E2, R>,
    policy: Policy<E>,
    options: RetryOptions = {}
  ): Effect.Effect<A, E2 | RetryDeadlineExceeded, R> =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const deadline = options.deadline ??
        (options.timeout === undefined ? undefined : now + Duration.toMillis(options.timeout))
      if (options.budget !== undefined) yield* options.budget.recordFirstAttempt
      let stop: Stopped | undefined
      const sched = build(policy.settings, deadline, options.budget, (stopped) => {
        stop = stopped
      })
      return yield* Effect.retry(self, sched as unknown as Schedule.Schedule<Step, E2>).pipe(
        Effect.catchAll((error): Effect.Effect<never, E2 | RetryDeadlineExceeded> => {
          const s = stop as Stopped | undefined
          if (s !== undefined && s.reason === "Deadline" && deadline !== undefined) {
            return Effect.fail(
              new RetryDeadlineExceeded({
                kind: s.kind,
                wait: Option.getOrElse(s.wait, () => Duration.infinity),
                deadline,
                retries: s.retries,
                cause: error
              })
            )
          }
          return Effect.fail(error)
        })
      )
    })
)

/**
 * The delays a policy would produce for a sequence of failures, computed purely from a start time
 * and a sequence of uniform random numbers (cycled) — for tests, documentation and planning. The
 * list ends at the first failure the policy would not retry.
 *
 * @since 0.1.0
 * @category utils
 */
export const delays = <E>(
  policy: Policy<E>,
  errors: Iterable<E>,
  options: { readonly now?: number; readonly random?: ReadonlyArray<number>; readonly deadline?: number } = {}
): { readonly delays: ReadonlyArray<Duration.Duration>; readonly stop: Option.Option<StopReason> } => {
  const random = options.random === undefined || options.random.length === 0 ? [0.5] : options.random
  let now = options.now ?? 0
  let state = internal.initialState
  const out: Array<Duration.Duration> = []
  let i = 0
  for (const error of errors) {
    const d = internal.decide(policy.settings, state, error, now, random[i % random.length], options.deadline)
    i++
    if (d._tag === "Stop") return { delays: out, stop: Option.some(d.reason) }
    out.push(Duration.millis(d.delay))
    now += d.delay
    state = d.state
  }
  return { delays: out, stop: Option.none() }
}
