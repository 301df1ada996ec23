// Queue fairness and deadlines with an asynchronous store (a store that answers after a delay, as Redis does):
// the fast path must hold its place while the store answers, and a deadline that cannot be met behind the
// queue fails at once with the wait it would have had.
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { Effect, Exit, Fiber, Option, TestClock } from "effect"
import { slowStore as slowStoreOf } from "./suite/stores.js"

/** The memory store, answering admissions and adjustments after `millis` (as Redis does, later). */
const slowStore = (millis: number) => slowStoreOf(millis, { adjust: true })

const withLimiter = <A, E>(
  budgets: ReadonlyArray<Budget.Budget>,
  f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>,
  store = slowStore(1)
) => Effect.scoped(Effect.flatMap(RateLimiter.make({ budgets }), f)).pipe(Effect.provide(store), Effect.orDie)

describe("RateLimiter queue (asynchronous store)", () => {
  it.effect("an arrival does not overtake an earlier request whose store call is in flight", () =>
    withLimiter([Budget.make("org:a", [Budget.Limit.perMinute("tokens", 6000)])], (limiter) =>
      Effect.gen(function*() {
        const first = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 5000 }))
        yield* TestClock.adjust("1 millis")
        yield* Fiber.join(first) // 1000 left
        const order: Array<string> = []
        const big = yield* Effect.fork(
          Effect.tap(limiter.acquire(["org:a"], { tokens: 3000 }), () => Effect.sync(() => order.push("big")))
        )
        // arrives while the big one's store call is in flight; alone it would fit now
        const small = yield* Effect.fork(
          Effect.tap(limiter.acquire(["org:a"], { tokens: 500 }), () => Effect.sync(() => order.push("small")))
        )
        yield* TestClock.adjust("1 minute")
        yield* Fiber.join(big)
        yield* Fiber.join(small)
        expect(order).toEqual(["big", "small"])
      })))

  it.effect("traffic on other buckets is not held up by a waiter", () =>
    withLimiter([
      Budget.make("pool:a", [Budget.Limit.perMinute("requests", 1)]),
      Budget.make("pool:b", [Budget.Limit.perMinute("requests", 100)])
    ], (limiter) =>
      Effect.gen(function*() {
        const a1 = yield* Effect.fork(limiter.acquire(["org:x", "pool:a"], { requests: 1 }))
        yield* TestClock.adjust("1 millis")
        yield* Fiber.join(a1)
        const a2 = yield* Effect.fork(limiter.acquire(["org:x", "pool:a"], { requests: 1 })) // waits a minute
        yield* TestClock.adjust("5 millis")
        const bs = yield* Effect.forEach(
          [1, 2, 3],
          () => Effect.fork(limiter.acquire(["org:x", "pool:b"], { requests: 1 }))
        )
        yield* TestClock.adjust("1 second")
        for (const b of bs) expect(Option.isSome(yield* Fiber.poll(b))).toBe(true)
        expect(Option.isNone(yield* Fiber.poll(a2))).toBe(true)
        yield* TestClock.adjust("1 minute")
        expect(Exit.isSuccess(yield* Fiber.await(a2))).toBe(true)
      })))

  it.effect("an interruption while the store answers leaks nothing, admitted or not", () =>
    withLimiter([Budget.make("org:a", [Budget.Limit.perMinute("tokens", 1000)])], (limiter) =>
      Effect.gen(function*() {
        // the store call is uninterruptible (its answer must be accounted for), so the interruption
        // completes once the store has answered
        const interruptions = []
        for (let i = 0; i < 20; i++) {
          const fiber = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 400 }))
          if (i % 2 === 1) yield* TestClock.adjust("1 millis") // some admitted before the interruption lands
          interruptions.push(yield* Effect.fork(Fiber.interrupt(fiber)))
        }
        // every store call takes a millisecond, the dispatcher's one after another
        for (let t = 0; t < 100; t++) yield* TestClock.adjust("1 millis")
        for (const interruption of interruptions) expect(interruption.unsafePoll()).not.toBeNull()
        const estimate = yield* limiter.peek(["org:a"], { tokens: 1 })
        expect(estimate.levels[0].level).toBe(1000)
        expect(estimate.queued).toBe(0)
      })))

  describe("deadlines behind the queue", () => {
    for (const [name, store] of [["memory store", LimiterStore.layerMemory], ["slow store", slowStore(1)]] as const) {
      it.effect(`fail at once with the wait they would have had (${name})`, () =>
        withLimiter(
          [Budget.make("org:a", [Budget.Limit.perMinute("requests", 1)])],
          (limiter) =>
            Effect.gen(function*() {
              const taken = yield* Effect.fork(limiter.acquire(["org:a"], { requests: 1 }))
              yield* TestClock.adjust("1 millis")
              yield* Fiber.join(taken)
              // waits about a minute for the refill
              const ahead = yield* Effect.fork(limiter.acquire(["org:a"], { requests: 1 }))
              yield* TestClock.adjust("2 millis")
              // behind it, with 10 seconds to spare: cannot be met, fails now rather than in 10 seconds
              const behind = yield* Effect.fork(
                Effect.either(limiter.acquire(["org:a"], { requests: 1 }, { maxWait: "10 seconds" }))
              )
              yield* TestClock.adjust("5 millis")
              const result = yield* Fiber.join(behind)
              expect(result._tag).toBe("Left")
              if (result._tag === "Left") {
                expect(result.left._tag).toBe("DeadlineExceeded")
                if (result.left._tag === "DeadlineExceeded") {
                  expect(result.left.reason).toBe("queue")
                  expect(result.left.estimatedWaitMillis).toBeGreaterThan(50_000)
                  expect(result.left.scope).toBe("org:a")
                }
              }
              yield* TestClock.adjust("1 minute")
              expect(Exit.isSuccess(yield* Fiber.await(ahead))).toBe(true)
            }),
          store
        ))
    }
  })

  it.effect("a waiter queued before a limit is learned anew asks for the new buckets", () =>
    withLimiter([], (limiter) =>
      Effect.gen(function*() {
        // learned from headers: 2 requests a minute
        yield* limiter.sync("pool:x", { dimension: "requests", limit: 2 })
        for (let i = 0; i < 2; i++) {
          const taken = yield* Effect.fork(limiter.acquire(["pool:x"], { requests: 1 }))
          yield* TestClock.adjust("1 millis")
          yield* Fiber.join(taken)
        }
        const waiting = yield* Effect.fork(limiter.acquire(["pool:x"], { requests: 1 }))
        yield* TestClock.adjust("1 second")
        expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true) // ~30 s away at 2 a minute
        // the server says the limit is 600 a minute (10 a second): the waiter is re-prepared and let in soon
        yield* limiter.sync("pool:x", { dimension: "requests", limit: 600 })
        yield* TestClock.adjust("200 millis")
        expect(Option.isSome(yield* Fiber.poll(waiting))).toBe(true)
      }), LimiterStore.layerMemory))
})
