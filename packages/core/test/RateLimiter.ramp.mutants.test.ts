// Tests written from the survivors of a whole mutation run of internal/ramp.ts (tenth session, `pnpm mutate:ramp`, see
// benchmarks/results/mutation.md): each pins a behaviour of the limiter's ramps the rest of the suite left open. All
// under TestClock.
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { Effect, Fiber, Layer, TestClock } from "effect"

const run = <A, E>(f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>) =>
  Effect.scoped(
    Effect.flatMap(
      RateLimiter.make({ budgets: [Budget.make("pool:a", [Budget.Limit.perMinute("requests", 1_000)])] }),
      f
    )
  ).pipe(Effect.provide(Layer.fresh(LimiterStore.layerMemory)), Effect.orDie)

describe("RateLimiter ramp: several at once", () => {
  it.effect("each scope and dimension has its own: one ramp's admissions do not use up another's", () =>
    run((limiter) =>
      Effect.gen(function*() {
        yield* limiter.ramp("pool:a", "requests", { from: 1, doubling: "1 hour" })
        yield* limiter.ramp("pool:a", "tokens", { from: 100, doubling: "1 hour" })
        yield* limiter.ramp("pool:b", "requests", { from: 1, doubling: "1 hour" })
        // one request on pool:a, then 100 tokens on pool:a and one request on pool:b: all let out at once
        yield* limiter.acquire(["pool:a"], { requests: 1 })
        yield* limiter.acquire(["pool:a"], { tokens: 100 })
        yield* limiter.acquire(["pool:b"], { requests: 1 })
        // ending one ends only that one
        yield* limiter.ramp("pool:b", "requests", undefined)
        yield* limiter.acquire(["pool:b"], { requests: 1 })
        const held = yield* Effect.flip(limiter.acquire(["pool:a"], { requests: 1 }, { maxWait: "1 second" }))
        expect(held).toMatchObject({
          _tag: "DeadlineExceeded",
          scope: "pool:a",
          dimension: "requests",
          reason: "limit"
        })
      })
    ))

  it.effect("a call held by two ramps for as long is named after the first", () =>
    run((limiter) =>
      Effect.gen(function*() {
        yield* limiter.ramp("pool:a", "requests", { from: 1, doubling: "1 second" })
        yield* limiter.ramp("pool:a", "tokens", { from: 1, doubling: "1 second" })
        // both let 2 out by 1 s
        const held = yield* Effect.flip(
          limiter.acquire(["pool:a"], { requests: 2, tokens: 2 }, { maxWait: "10 millis" })
        )
        expect(held).toMatchObject({ dimension: "requests", estimatedWaitMillis: 1_000 })
        // the second holding longer: named after it
        yield* limiter.ramp("pool:a", "tokens", { from: 1, doubling: "2 seconds" })
        const longer = yield* Effect.flip(
          limiter.acquire(["pool:a"], { requests: 2, tokens: 2 }, { maxWait: "10 millis" })
        )
        expect(longer).toMatchObject({ dimension: "tokens", estimatedWaitMillis: 2_000 })
      })
    ))
})

describe("RateLimiter ramp: figures that make no ramp", () => {
  it.effect("a start of 0 or a doubling of 0 is no ramp: calls go at once", () =>
    run((limiter) =>
      Effect.gen(function*() {
        yield* limiter.ramp("pool:a", "requests", { from: 0, doubling: "1 second" })
        yield* limiter.ramp("pool:a", "tokens", { from: 1, doubling: 0 })
        const permit = yield* limiter.acquire(["pool:a"], { requests: 5, tokens: 5 }, { maxWait: "10 millis" })
        expect(permit.admittedAt).toBe(0)
      })
    ))

  it.effect("continued with none before: it starts from nothing let out", () =>
    run((limiter) =>
      Effect.gen(function*() {
        yield* limiter.ramp("pool:a", "requests", { from: 2, doubling: "1 second", continued: true })
        yield* limiter.acquire(["pool:a"], { requests: 2 }, { maxWait: "10 millis" })
      })
    ))

  it.effect("an end that is not a number is no end: held calls go in their turn", () =>
    run((limiter) =>
      Effect.gen(function*() {
        yield* limiter.ramp("pool:a", "requests", { from: 1, doubling: "1 second", to: Number.NaN })
        yield* limiter.acquire(["pool:a"], { requests: 1 })
        const next = yield* Effect.fork(limiter.acquire(["pool:a"], { requests: 1 }))
        yield* TestClock.adjust("1 second")
        expect((yield* Fiber.join(next)).admittedAt).toBe(1_000)
      })
    ))
})

describe("RateLimiter ramp: what it counts", () => {
  it.effect("a dimension the call does not charge (0 or below) is not held, nor charged", () =>
    run((limiter) =>
      Effect.gen(function*() {
        yield* limiter.ramp("pool:a", "tokens", { from: 10, doubling: "1 second" })
        yield* limiter.acquire(["pool:a"], { requests: 1, tokens: 10 })
        // the ramp is used up: a call charging no tokens goes at once
        yield* limiter.acquire(["pool:a"], { requests: 1, tokens: 0 })
        // a negative amount is not a refund to the ramp: 1 token more is held until it has let out 11 (about 138 ms)
        yield* limiter.acquire(["pool:a"], { requests: 1, tokens: -5 })
        const next = yield* Effect.fork(limiter.acquire(["pool:a"], { tokens: 1 }))
        yield* TestClock.adjust("137 millis")
        expect(next.unsafePoll()).toBeNull()
        yield* TestClock.adjust("1 millis")
        expect((yield* Fiber.join(next)).admittedAt).toBe(138)
      })
    ))

  it.effect("continued: what the old ramp let out counts, also for a call that charges nothing of it", () =>
    run((limiter) =>
      Effect.gen(function*() {
        yield* limiter.ramp("pool:a", "tokens", { from: 10, doubling: "1 second" })
        yield* limiter.acquire(["pool:a"], { tokens: 10 })
        // a new pace from 5: the 10 let out are above it, so nothing more goes for a while...
        yield* limiter.ramp("pool:a", "tokens", { from: 5, doubling: "1 second", continued: true })
        // ...but a call charging no tokens is not held
        yield* limiter.acquire(["pool:a"], { requests: 1, tokens: 0 }, { maxWait: "10 millis" })
      })
    ))
})

describe("RateLimiter ramp: its end", () => {
  it.effect("at the instant it ends it lets everything out", () =>
    run((limiter) =>
      Effect.gen(function*() {
        // from 1 to 4, doubling each second: it ends at 2 s
        yield* limiter.ramp("pool:a", "requests", { from: 1, doubling: "1 second", to: 4 })
        yield* limiter.acquire(["pool:a"], { requests: 1 })
        const many = yield* Effect.fork(limiter.acquire(["pool:a"], { requests: 10 }))
        yield* TestClock.adjust("1999 millis")
        expect(many.unsafePoll()).toBeNull()
        yield* TestClock.adjust("1 millis")
        expect((yield* Fiber.join(many)).admittedAt).toBe(2_000)
      })
    ))
})
