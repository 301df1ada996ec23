/**
 * A wall clock set back (an NTP step, a VM resumed): `Clock.currentTimeMillis` is the wall clock, and a bucket last
 * written at a time now in the future must not stall its waiters until the clock has caught up with it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { Clock, Effect, Fiber, Option, TestClock } from "effect"

const SCOPE = "org:a/pool:m"

describe("RateLimiter: a clock set back", () => {
  it.effect("a waiter is admitted after the refill it needs from the clock's new time, not after the clock catches up", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.make({
          budgets: [Budget.make(SCOPE, [Budget.Limit.perMinute("requests", 10)])]
        })
        yield* TestClock.setTime(60_000)
        for (let i = 0; i < 10; i++) yield* limiter.acquire([SCOPE], { requests: 1 })
        // the clock steps back 30 s: the bucket was last written "30 s from now"
        yield* TestClock.setTime(30_000)
        const waiter = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }))
        // one request refills in 6 s of a 10-a-minute bucket: from the new time, not from 60 s
        yield* TestClock.adjust("6001 millis")
        const admitted = yield* Fiber.poll(waiter)
        expect(Option.isSome(admitted)).toBe(true)
        expect(yield* Clock.currentTimeMillis).toBeLessThan(40_000)
        // and the bucket is not refilled by the time it stepped back over: nothing more before another 6 s
        const next = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }))
        yield* TestClock.adjust("5 seconds")
        expect(Option.isNone(yield* Fiber.poll(next))).toBe(true)
        yield* TestClock.adjust("1001 millis")
        expect(Option.isSome(yield* Fiber.poll(next))).toBe(true)
      })
    ).pipe(Effect.provide(LimiterStore.layerMemory), Effect.orDie))
})
