/**
 * A `Clock` that runs faster than the wall clock, for demos and soak runs of the simulator in real
 * processes: at `speed` 20, a `sleep` of one simulated second takes 50 ms and the time read advances
 * 20 ms per real millisecond. Everything that reads time through Effect's `Clock` (the simulator's
 * latency and buckets, the client's limiter, retries, progress) sees one consistent, accelerated
 * timeline, so a run's figures (rates, waits, wall time against the theoretical minimum) are those
 * of the simulated time. Code that uses real timers outside Effect (the SDK's own request timeout)
 * still runs in real time.
 *
 * Under `TestClock` (tests) nothing of this is needed: virtual time is already free.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

/**
 * A clock `speed` times faster than `base` (default: the real clock), starting at `base`'s time now.
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { SimClock } from "@sluice/testing"
 *
 * // a minute of simulated time in three real seconds
 * const program = Effect.sleep("1 minute").pipe(Effect.withClock(SimClock.scaled(20)))
 * ```
 */
export const scaled = (speed: number, base: Clock.Clock = Clock.make()): Clock.Clock => {
  if (!(speed > 0) || !Number.isFinite(speed)) throw new RangeError(`speed must be a positive number, got ${speed}`)
  const originMillis = base.unsafeCurrentTimeMillis()
  const originNanos = base.unsafeCurrentTimeNanos()
  const millis = () => originMillis + (base.unsafeCurrentTimeMillis() - originMillis) * speed
  const nanos = () => originNanos + BigInt(Math.round(Number(base.unsafeCurrentTimeNanos() - originNanos) * speed))
  return {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: millis,
    unsafeCurrentTimeNanos: nanos,
    currentTimeMillis: Effect.sync(millis),
    currentTimeNanos: Effect.sync(nanos),
    sleep: (duration) => base.sleep(Duration.millis(Duration.toMillis(duration) / speed))
  }
}

/**
 * Runs `self` on a clock `speed` times faster than the real one (fibers it forks inherit the clock).
 * `speed` 1 leaves the clock alone.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withSpeed = <A, E, R>(self: Effect.Effect<A, E, R>, speed: number): Effect.Effect<A, E, R> =>
  speed === 1 ? self : Effect.suspend(() => Effect.withClock(self, scaled(speed)))
