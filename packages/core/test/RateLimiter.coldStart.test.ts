/**
 * `coldStartLag`: an admission that draws a bucket from full holds back that much of its refill (a server's full
 * bucket refills only once a call reaches it, and a cold start's first calls are the slowest on their way), until a
 * report of a call admitted since that says when the server made it gives back all but the refill up to then.
 * TestClock; 60 requests a minute (one a second), the bucket drawn at once.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { Clock, type Duration, Effect, Fiber, Option, TestClock } from "effect"

const SCOPE = "org:a/pool:m"

const limiterOf = (coldStartLag?: Duration.DurationInput) =>
  RateLimiter.make({ budgets: [Budget.make(SCOPE, [Budget.Limit.perMinute("requests", 60)])], coldStartLag })

/**
 * Whether a call asked for now is admitted at `at` (the clock, ms) and not 1 ms before: the clock is set to each and
 * the call's fiber polled.
 */
const admitsAt = (limiter: RateLimiter.Service, at: number) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }))
    if (at > (yield* Clock.currentTimeMillis)) {
      yield* TestClock.setTime(at - 1)
      if (Option.isSome(yield* Fiber.poll(fiber))) return false
    }
    yield* TestClock.setTime(at)
    return Option.isSome(yield* Fiber.poll(fiber))
  })

/** The calls admitted at once from a full bucket (59 of its 60 with a hold of 0.2 requests: the 60th waits). */
const drain = (limiter: RateLimiter.Service, calls: number) =>
  Effect.forEach(Array.from({ length: calls }), () => limiter.acquire([SCOPE], { requests: 1 }))

describe("RateLimiter: coldStartLag", () => {
  it.effect("without it, nothing is held back: the bucket's 60 go at once, the 61st after one second's refill", () =>
    Effect.gen(function*() {
      const limiter = yield* limiterOf()
      yield* drain(limiter, 59)
      expect(yield* admitsAt(limiter, 0)).toBe(true)
      expect(yield* admitsAt(limiter, 1_000)).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(LimiterStore.layerMemory)))

  it.effect("a draw from full holds back 200 ms of refill; a bucket drawn since holds back nothing more", () =>
    Effect.gen(function*() {
      const limiter = yield* limiterOf("200 millis")
      yield* drain(limiter, 59)
      expect(yield* admitsAt(limiter, 200)).toBe(true)
      // not full since: the next after one more second, no second hold
      expect(yield* admitsAt(limiter, 1_200)).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(LimiterStore.layerMemory)))

  it.effect("the first report that says when it was made gives back all but the refill up to then", () =>
    Effect.gen(function*() {
      const limiter = yield* limiterOf("200 millis")
      const permits = yield* drain(limiter, 59)
      yield* TestClock.setTime(100)
      // made by 50 ms (its answer came back at 100 ms less the server's time): 50 ms of the hold kept, 150 ms given
      // back, so the 60th goes at once (at 0.8 + 0.1 of refill + 0.15), the 61st 950 ms later
      yield* limiter.sync(SCOPE, {
        dimension: "requests",
        remaining: 60,
        since: permits[0],
        sentAt: 0,
        reportedBy: 50,
        adopt: false
      })
      expect(yield* admitsAt(limiter, 100)).toBe(true)
      expect(yield* admitsAt(limiter, 1_050)).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(LimiterStore.layerMemory)))

  it.effect("an answer without the server's figures gives it back the same: it says when the call arrived at the latest", () =>
    Effect.gen(function*() {
      const limiter = yield* limiterOf("200 millis")
      const permits = yield* drain(limiter, 59)
      yield* TestClock.setTime(100)
      yield* limiter.sync(SCOPE, { dimension: "requests", since: permits[0], sentAt: 0, reportedBy: 50 })
      expect(yield* admitsAt(limiter, 100)).toBe(true)
      expect(yield* admitsAt(limiter, 1_050)).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(LimiterStore.layerMemory)))

  it.effect("a bucket full again since the hold lost it (at the server too): a late answer gives nothing back", () =>
    Effect.gen(function*() {
      const limiter = yield* limiterOf("200 millis")
      const first = yield* limiter.acquire([SCOPE], { requests: 1 })
      // by 2 s the bucket is full again (58.8 + 2 refilled, capped at 60): the hold is gone
      yield* TestClock.setTime(2_000)
      yield* drain(limiter, 60)
      yield* TestClock.setTime(2_100)
      yield* limiter.sync(SCOPE, { dimension: "requests", since: first, sentAt: 0, reportedBy: 50 })
      // given back, 0.15 more: the next at 2,850 ms, ahead of the server
      expect(yield* admitsAt(limiter, 3_000)).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(LimiterStore.layerMemory)))

  it.effect("a report that lowers the level forgets the hold: a later answer gives nothing back", () =>
    Effect.gen(function*() {
      const limiter = yield* limiterOf("200 millis")
      const permits = yield* drain(limiter, 59)
      yield* TestClock.setTime(100)
      // the server's level, without the call it is about (a burst learned from a 429, say): lowered to 0
      yield* limiter.sync(SCOPE, { dimension: "requests", remaining: 0 })
      yield* limiter.sync(SCOPE, { dimension: "requests", since: permits[0], sentAt: 0, reportedBy: 50 })
      // given back after the lowering, 0.15 more: the 60th at 950 ms
      expect(yield* admitsAt(limiter, 1_100)).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(LimiterStore.layerMemory)))

  it.effect("a report that does not say when it was made gives nothing back", () =>
    Effect.gen(function*() {
      const limiter = yield* limiterOf("200 millis")
      const permits = yield* drain(limiter, 59)
      yield* TestClock.setTime(100)
      yield* limiter.sync(SCOPE, { dimension: "requests", remaining: 60, since: permits[0], sentAt: 0, adopt: false })
      expect(yield* admitsAt(limiter, 200)).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(LimiterStore.layerMemory)))

  it.effect("a bucket full again after a window is held back again; a report of a call admitted before gives nothing back", () =>
    Effect.gen(function*() {
      const limiter = yield* limiterOf("200 millis")
      const early = yield* limiter.acquire([SCOPE], { requests: 1 })
      // a minute (its whole window) without a charge: full again, and cold (the first hold long refilled)
      yield* TestClock.setTime(61_000)
      yield* drain(limiter, 59)
      yield* TestClock.setTime(61_100)
      yield* limiter.sync(SCOPE, {
        dimension: "requests",
        remaining: 60,
        since: early,
        sentAt: 0,
        reportedBy: 61_050,
        adopt: false
      })
      expect(yield* admitsAt(limiter, 61_200)).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(LimiterStore.layerMemory)))
})
