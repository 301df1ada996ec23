import { describe, expect, it } from "@effect/vitest"
import { SimClock } from "@sluice/testing"
import { Clock, Effect, Fiber, TestClock } from "effect"

describe("SimClock", () => {
  it.effect("a scaled clock reads and sleeps `speed` times faster than its base", () =>
    Effect.gen(function*() {
      const base = yield* Effect.clock // the TestClock
      const fast = SimClock.scaled(20, base)
      const t0 = fast.unsafeCurrentTimeMillis()
      const fiber = yield* Effect.fork(Effect.withClock(Effect.sleep("10 seconds"), fast))
      yield* TestClock.adjust("499 millis")
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis") // 500 ms of base time = 10 s of scaled time
      yield* Fiber.join(fiber)
      expect(fast.unsafeCurrentTimeMillis() - t0).toBe(10_000)
    }))

  it.effect("forked fibers inherit the speed; speed 1 is the clock itself", () =>
    Effect.gen(function*() {
      const base = yield* Effect.clock
      const elapsed = Effect.gen(function*() {
        const start = yield* Clock.currentTimeMillis
        yield* Effect.fork(Effect.sleep("1 minute")).pipe(Effect.flatMap(Fiber.join))
        return (yield* Clock.currentTimeMillis) - start
      })
      const fiber = yield* Effect.fork(Effect.withClock(elapsed, SimClock.scaled(60, base)))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toBe(60_000)
      expect(() => SimClock.scaled(0)).toThrow(RangeError)
      const same = Effect.succeed(1)
      expect(SimClock.withSpeed(same, 1)).toBe(same)
    }))
})
