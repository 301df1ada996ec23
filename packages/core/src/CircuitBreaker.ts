/**
 * Circuit breakers per key (a model, a deployment): closed, open and half-open.
 *
 * A closed breaker counts the failures its predicate selects and opens after `consecutiveFailures`
 * in a row or when the failure rate over a sliding window reaches a threshold. An open breaker
 * refuses calls at once with {@link CircuitOpen}; when its time has passed it becomes half-open —
 * driven by the `Clock` (a fiber in the breaker's scope sleeps until then, and any read at or after
 * that time sees half-open), not by the next call. A half-open breaker lets a bounded number of probes
 * through: enough successes close it, a failure opens it again (for longer, with `openBackoff`).
 * State is readable for routing, and transitions are reported as Effect Metrics.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/circuitBreaker.js"

/**
 * A breaker's state for one key: `Closed` (calls go through, failures are counted), `Open` (calls fail
 * fast with {@link CircuitOpen} until the open duration has passed), `HalfOpen` (a limited number of
 * trial calls decide whether it closes again or reopens).
 *
 * @since 0.1.0
 * @category models
 */
export type State = "Closed" | "Open" | "HalfOpen"

/**
 * What a breaker knows about one key.
 *
 * @since 0.1.0
 * @category models
 */
export interface Info {
  readonly key: string
  readonly state: State
  /** When an open breaker becomes half-open (Clock milliseconds). */
  readonly openUntil: Option.Option<number>
  readonly consecutiveFailures: number
  /** Calls and failures counted in the failure-rate window (zero without a rate policy). */
  readonly windowCalls: number
  readonly windowFailures: number
  readonly probesInFlight: number
}

/**
 * A transition of one key.
 *
 * @since 0.1.0
 * @category models
 */
export interface Transition {
  readonly key: string
  readonly from: State
  readonly to: State
  readonly at: number
}

/**
 * A call refused because the key's breaker is open (or half-open with every probe slot taken).
 * `retryAfter` is the time until the breaker becomes half-open, when known.
 *
 * @since 0.1.0
 * @category errors
 */
export class CircuitOpen extends Schema.TaggedError<CircuitOpen>("@sluice/core/CircuitOpen")("CircuitOpen", {
  key: Schema.String,
  state: Schema.Literal("Open", "HalfOpen"),
  retryAfter: Schema.optionalWith(Schema.DurationFromSelf, { exact: true })
}) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `circuit ${this.key} is ${this.state === "Open" ? "open" : "half-open (probes busy)"}`
  }
}

/**
 * Breaker transitions, tagged `key`, `from` and `to`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const transitionsTotal = Metric.counter("sluice_breaker_transitions_total", {
  description: "Circuit breaker state transitions",
  incremental: true
})

/**
 * Calls refused by an open breaker, tagged `key`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const rejectionsTotal = Metric.counter("sluice_breaker_rejections_total", {
  description: "Calls refused by an open circuit breaker",
  incremental: true
})

/**
 * The state of a key's breaker, tagged `key`: 0 closed, 1 half-open, 2 open.
 *
 * @since 0.1.0
 * @category metrics
 */
export const stateGauge = Metric.gauge("sluice_breaker_state", {
  description: "Circuit breaker state (0 closed, 1 half-open, 2 open)"
})

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace CircuitBreaker {
  /**
   * Defaults: `consecutiveFailures` 5 when no policy is given, `openFor` 30 seconds, `openBackoff` 1
   * (no growth), `maxOpenFor` 5 minutes, `halfOpenProbes` 1, `successesToClose` 1, every failure
   * counts, defects count.
   *
   * @since 0.1.0
   * @category models
   */
  export interface Options {
    /** Open after this many counted failures in a row. */
    readonly consecutiveFailures?: number | undefined
    /** Open when, over `window`, at least `minimumCalls` calls ran and `threshold` (0–1) of them failed. */
    readonly failureRate?: {
      readonly threshold: number
      readonly window: Duration.DurationInput
      readonly minimumCalls?: number | undefined
    } | undefined
    /** How long a breaker stays open before its probes. */
    readonly openFor?: Duration.DurationInput | undefined
    /** Factor applied to `openFor` on each reopening without a close in between. */
    readonly openBackoff?: number | undefined
    readonly maxOpenFor?: Duration.DurationInput | undefined
    /** Probes allowed at once while half-open. */
    readonly halfOpenProbes?: number | undefined
    /** Probe successes needed to close. */
    readonly successesToClose?: number | undefined
    /** Which failures count (e.g. server errors and timeouts, not bad requests). Default: all. */
    readonly isFailure?: ((error: unknown) => boolean) | undefined
    /** Whether defects count as failures. Default: true. */
    readonly countDefects?: boolean | undefined
    /** Called after every transition (for routing or logs). */
    readonly onTransition?: ((transition: Transition) => Effect.Effect<void>) | undefined
  }

  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    /** Runs `self` under the breaker of `key`. */
    readonly withBreaker: <A, E, R>(key: string, self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | CircuitOpen, R>
    readonly state: (key: string) => Effect.Effect<State>
    readonly info: (key: string) => Effect.Effect<Info>
    /** Every known key's state. */
    readonly states: Effect.Effect<ReadonlyMap<string, State>>
    /** Closes the key's breaker and forgets its counts. */
    readonly reset: (key: string) => Effect.Effect<void>
    /** Opens the key's breaker now (e.g. an operator or a health check). */
    readonly trip: (key: string) => Effect.Effect<void>
  }
}

/**
 * @since 0.1.0
 * @category tags
 */
export class CircuitBreaker extends Context.Tag("@sluice/core/CircuitBreaker")<
  CircuitBreaker,
  CircuitBreaker.Service
>() {}

const stateValue = (s: State): number => (s === "Closed" ? 0 : s === "HalfOpen" ? 1 : 2)

/**
 * Creates a breaker. The scope holds the fibers that move open breakers to half-open on time.
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { CircuitBreaker } from "@sluice/core"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const breaker = yield* CircuitBreaker.make({
 *     consecutiveFailures: 5,
 *     openFor: "30 seconds",
 *     halfOpenProbes: 1,
 *     isFailure: (e) => (e as { _tag?: string })._tag !== "BadRequest"
 *   })
 *   return yield* breaker.withBreaker("gpt-4o", Effect.succeed("ok"))
 * }))
 * ```
 */
export const make = (options: CircuitBreaker.Options = {}): Effect.Effect<CircuitBreaker.Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const settings: internal.Settings = {
      consecutiveFailures: options.consecutiveFailures ??
        (options.failureRate === undefined ? 5 : undefined),
      failureRate: options.failureRate === undefined ? undefined : {
        threshold: options.failureRate.threshold,
        window: Duration.toMillis(options.failureRate.window),
        minimumCalls: options.failureRate.minimumCalls ?? 10
      },
      openFor: Duration.toMillis(options.openFor ?? Duration.seconds(30)),
      openBackoff: options.openBackoff ?? 1,
      maxOpenFor: Duration.toMillis(options.maxOpenFor ?? Duration.minutes(5)),
      halfOpenProbes: Math.max(1, options.halfOpenProbes ?? 1),
      successesToClose: Math.max(1, options.successesToClose ?? 1)
    }
    const isFailure = options.isFailure ?? (() => true)
    const countDefects = options.countDefects ?? true
    const keys = new Map<string, internal.KeyState>()
    const get = (key: string): internal.KeyState => {
      let ks = keys.get(key)
      if (ks === undefined) {
        ks = new internal.KeyState(settings)
        keys.set(key, ks)
      }
      return ks
    }

    const report = (key: string, ts: ReadonlyArray<internal.Transition>): Effect.Effect<void> =>
      ts.length === 0 ? Effect.void : Effect.forEach(ts, (t) =>
        Effect.gen(function*() {
          yield* Metric.update(
            transitionsTotal.pipe(
              Metric.tagged("key", key),
              Metric.tagged("from", t.from),
              Metric.tagged("to", t.to)
            ),
            1
          )
          yield* Metric.set(stateGauge.pipe(Metric.tagged("key", key)), stateValue(t.to))
          if (t.to === "Open") {
            // the Clock, not the next call, moves the breaker to half-open
            const ks = get(key)
            const until = ks.openUntil
            // forked from finalizers and masks: the timer itself must stay interruptible
            yield* Effect.forkIn(
              Effect.interruptible(
                Effect.flatMap(
                  Clock.currentTimeMillis,
                  (now) => Effect.sleep(Duration.millis(Math.max(0, until - now)))
                )
                  .pipe(
                    Effect.zipRight(Effect.suspend(() => step(key, (ks, now, out) => void ks.refresh(now, out))))
                  )
              ),
              scope
            )
          }
          if (options.onTransition !== undefined) {
            yield* options.onTransition({ key, from: t.from, to: t.to, at: t.at })
          }
        }), { discard: true })

    const step = <A>(
      key: string,
      f: (ks: internal.KeyState, now: number, out: Array<internal.Transition>) => A
    ): Effect.Effect<A> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const out: Array<internal.Transition> = []
        // a key's first call sets its state gauge (closed), so the series is there before any transition
        const fresh = !keys.has(key)
        const a = f(get(key), now, out)
        const reported = report(key, out)
        return Effect.as(
          fresh ? Effect.zipRight(Metric.set(stateGauge.pipe(Metric.tagged("key", key)), 0), reported) : reported,
          a
        )
      })

    const info = (key: string): Effect.Effect<Info> =>
      step(key, (ks, now, out) => {
        ks.refresh(now, out)
        const w = ks.window(now)
        return {
          key,
          state: ks.status,
          openUntil: ks.status === "Open" ? Option.some(ks.openUntil) : Option.none(),
          consecutiveFailures: ks.consecutive,
          windowCalls: w.calls,
          windowFailures: w.failures,
          probesInFlight: ks.inFlight
        }
      })

    const withBreaker = <A, E, R>(key: string, self: Effect.Effect<A, E, R>): Effect.Effect<A, E | CircuitOpen, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(
          step(key, (ks, now, out) => {
            const permit = ks.acquire(now, out)
            return { permit, status: ks.status, wait: ks.status === "Open" ? ks.openUntil - now : undefined }
          }),
          ({ permit, status, wait }): Effect.Effect<A, E | CircuitOpen, R> => {
            if (permit === undefined) {
              return Effect.zipRight(
                Metric.update(rejectionsTotal.pipe(Metric.tagged("key", key)), 1),
                Effect.fail(
                  new CircuitOpen(
                    wait === undefined
                      ? { key, state: status === "Open" ? "Open" : "HalfOpen" }
                      : { key, state: "Open", retryAfter: Duration.millis(Math.max(0, wait)) }
                  )
                )
              )
            }
            return Effect.onExit(restore(self), (exit) =>
              step(key, (ks, now, out) => {
                if (Exit.isSuccess(exit)) return ks.onSuccess(now, permit, out)
                const cause = exit.cause
                if (Cause.isInterruptedOnly(cause)) return ks.onIgnored(permit)
                const failure = Cause.failureOption(cause)
                const counts = Option.isSome(failure)
                  ? isFailure(failure.value)
                  : countDefects && Cause.isDie(cause)
                return counts ? ks.onFailure(now, permit, out) : ks.onIgnored(permit)
              }))
          }
        )
      )

    return {
      withBreaker,
      state: (key) => step(key, (ks, now, out) => ks.refresh(now, out)),
      info,
      states: Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const result = new Map<string, State>()
        const all: Array<[string, Array<internal.Transition>]> = []
        for (const [key, ks] of keys) {
          const out: Array<internal.Transition> = []
          result.set(key, ks.refresh(now, out))
          all.push([key, out])
        }
        return Effect.as(Effect.forEach(all, ([key, out]) => report(key, out), { discard: true }), result)
      }),
      reset: (key) => step(key, (ks, now, out) => ks.force("Closed", now, out)),
      trip: (key) => step(key, (ks, now, out) => ks.force("Open", now, out))
    } satisfies CircuitBreaker.Service
  })

/**
 * A layer providing {@link CircuitBreaker}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: CircuitBreaker.Options = {}): Layer.Layer<CircuitBreaker> =>
  Layer.scoped(CircuitBreaker, make(options))

/**
 * Runs an effect under the breaker of `key` from the context.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withBreaker: {
  (key: string): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | CircuitOpen, R | CircuitBreaker>
  <A, E, R>(self: Effect.Effect<A, E, R>, key: string): Effect.Effect<A, E | CircuitOpen, R | CircuitBreaker>
} = dual(
  2,
  <A, E, R>(self: Effect.Effect<A, E, R>, key: string): Effect.Effect<A, E | CircuitOpen, R | CircuitBreaker> =>
    Effect.flatMap(CircuitBreaker, (breaker) => breaker.withBreaker(key, self))
)

/**
 * The state of `key` from the breaker in the context.
 *
 * @since 0.1.0
 * @category accessors
 */
export const state = (key: string): Effect.Effect<State, never, CircuitBreaker> =>
  Effect.flatMap(CircuitBreaker, (breaker) => breaker.state(key))
