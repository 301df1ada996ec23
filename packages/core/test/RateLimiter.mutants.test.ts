// Tests written from the mutants that survived `pnpm mutate:limiter` (internal/rateLimiter.ts, see
// benchmarks/results/mutation.md): each pins a behaviour the rest of the limiter's suite left open.
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { Effect, Exit, Fiber, Option, Random, TestClock } from "effect"

type Options = Parameters<typeof RateLimiter.make>[0]

const run = <A, E>(
  options: Options,
  f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>,
  draws: [number, ...Array<number>] = [0.5]
) =>
  Effect.scoped(Effect.flatMap(RateLimiter.make(options), f)).pipe(
    Effect.withRandom(Random.fixed(draws)),
    Effect.provide(LimiterStore.layerMemory),
    Effect.orDie
  )

const oneAMinute = [Budget.make("org:a", [Budget.Limit.perMinute("requests", 1)])]

/**
 * Whether the second call of a 1-a-minute budget is admitted 1 ms before `at` and at `at` (ms after the first),
 * with these options: `[false, true]` when it is admitted exactly at `at`.
 */
const secondAdmitted = (at: number, options: Options, draws?: [number, ...Array<number>]) =>
  run(options, (limiter) =>
    Effect.gen(function*() {
      yield* limiter.acquire(["org:a"], { requests: 1 })
      const second = yield* Effect.fork(limiter.acquire(["org:a"], { requests: 1 }))
      yield* TestClock.adjust(at - 1)
      const before = Option.isSome(yield* Fiber.poll(second))
      yield* TestClock.adjust(1)
      return [before, Exit.isSuccess(yield* Fiber.await(second))]
    }), draws)

describe("RateLimiter: wake jitter", () => {
  it.effect("a waiter wakes its wait times (1 + jitter × a random draw) later, rounded up; none without jitter", () =>
    Effect.gen(function*() {
      const admittedAt = [false, true]
      expect(yield* secondAdmitted(60_000, { budgets: oneAMinute })).toEqual(admittedAt)
      // 60 s × 0.5 × 0.5 = 15 s later
      expect(yield* secondAdmitted(75_000, { budgets: oneAMinute, wakeJitter: 0.5 }, [0.5])).toEqual(admittedAt)
      // 60 s × 0.5 × 0.33335 = 10,000.5 ms, rounded up
      expect(yield* secondAdmitted(70_001, { budgets: oneAMinute, wakeJitter: 0.5 }, [0.33335])).toEqual(admittedAt)
      // a negative jitter is none
      expect(yield* secondAdmitted(60_000, { budgets: oneAMinute, wakeJitter: -1 }, [0.5])).toEqual(admittedAt)
    }))
})

const rpm = (scope: string, amount: number) => Budget.make(scope, [Budget.Limit.perMinute("requests", amount)])

/** How many calls of one request each a scope admits at once. */
const room = (limiter: RateLimiter.Service, scope: string) =>
  Effect.gen(function*() {
    let admitted = 0
    while (admitted < 100 && Option.isSome(yield* limiter.tryAcquire([scope], { requests: 1 }))) admitted++
    return admitted
  })

describe("RateLimiter: which budget a scope gets", () => {
  it.effect("an exact budget wins over a pattern, and the longest matching pattern wins, in any order", () =>
    Effect.gen(function*() {
      for (
        const budgets of [
          [rpm("org:*", 2), rpm("org:ab*", 3), rpm("org:a", 4)],
          [rpm("org:a", 4), rpm("org:ab*", 3), rpm("org:*", 2)]
        ]
      ) {
        expect(
          yield* run(
            { budgets },
            (limiter) => Effect.all([room(limiter, "org:a"), room(limiter, "org:abc"), room(limiter, "org:b")])
          )
        ).toEqual([4, 3, 2])
        // a scope no budget matches is not limited (no bucket), and lists no limit
        expect(yield* run({ budgets }, (limiter) => Effect.succeed(limiter.limitsOf("team:x")))).toEqual([])
      }
    }))
})

describe("RateLimiter: a cost above a learned burst", () => {
  const learnedBurst = (cost: number, limit = 60_000) =>
    run({ budgets: [] }, (limiter) =>
      Effect.gen(function*() {
        yield* limiter.sync("org:a", { dimension: "tokens", limit, burst: 100 })
        const exit = yield* Effect.exit(limiter.acquire(["org:a"], { tokens: cost }))
        return Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error._tag : exit._tag
      }))

  it.effect("is admitted however many bursts it is, up to the amount; above the amount it never fits", () =>
    Effect.gen(function*() {
      // a full bucket admits it at once (into debt), 1 or 600 bursts alike: the burst never forbids a call the
      // server would accept
      expect(yield* learnedBurst(101)).toBe("Success")
      expect(yield* learnedBurst(6_401)).toBe("Success")
      expect(yield* learnedBurst(60_000)).toBe("Success")
      expect(yield* learnedBurst(60_001)).toBe("CostExceedsCapacity")
      expect(yield* learnedBurst(1_000, 1_000)).toBe("Success")
      expect(yield* learnedBurst(1_001, 1_000)).toBe("CostExceedsCapacity")
    }))
})

const failureTag = <A, E extends { readonly _tag: string }>(exit: Exit.Exit<A, E>) =>
  Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error._tag : exit._tag

describe("RateLimiter: what a call is charged and checked against", () => {
  it.effect("calls on several scopes get the plan of exactly those scopes (no two lists of scopes share one)", () =>
    run({ budgets: [rpm("x", 1), rpm("yz", 5), rpm("xy", 5), rpm("z", 5)] }, (limiter) =>
      Effect.gen(function*() {
        yield* limiter.acquire(["xy", "z"], { requests: 1 })
        // ["x", "yz"] is charged on x (1 a minute), not on xy and z
        yield* limiter.acquire(["x", "yz"], { requests: 1 })
        expect(Option.isNone(yield* limiter.tryAcquire(["x", "yz"], { requests: 1 }))).toBe(true)
        expect(Option.isSome(yield* limiter.tryAcquire(["xy", "z"], { requests: 1 }))).toBe(true)
      })))

  it.effect("a dimension the call does not use (cost 0) is not charged nor checked, even in debt", () =>
    run({
      budgets: [Budget.make("org:a", [Budget.Limit.perMinute("requests", 10), Budget.Limit.perMinute("tokens", 1000)])]
    }, (limiter) =>
      Effect.gen(function*() {
        const permit = yield* limiter.acquire(["org:a"], { requests: 1, tokens: 1000 })
        yield* permit.settle({ requests: 1, tokens: 3000 }) // 2,000 in debt
        expect(Option.isSome(yield* limiter.tryAcquire(["org:a"], { requests: 1, tokens: 0 }))).toBe(true)
        expect(Option.isSome(yield* limiter.tryAcquire(["org:a"], { requests: 1 }))).toBe(true)
        expect(Option.isNone(yield* limiter.tryAcquire(["org:a"], { requests: 1, tokens: 1 }))).toBe(true)
      })))

  it.effect("a closed scope refuses a call that names it in any position", () =>
    run({ budgets: [rpm("org:a", 10), rpm("pool:x", 10)] }, (limiter) =>
      Effect.gen(function*() {
        yield* limiter.close("pool:x", "incident")
        expect(failureTag(yield* Effect.exit(limiter.acquire(["org:a", "pool:x"], { requests: 1 })))).toBe(
          "ScopeClosed"
        )
        expect(failureTag(yield* Effect.exit(limiter.acquire(["pool:x", "org:a"], { requests: 1 })))).toBe(
          "ScopeClosed"
        )
        expect(failureTag(yield* Effect.exit(limiter.acquire(["org:a"], { requests: 1 })))).toBe("Success")
      })))
})

describe("RateLimiter: the queue's bookkeeping", () => {
  it.effect("tryAcquire does not overtake a queued waiter on a bucket they share; it does once the waiter is in", () =>
    run(
      { budgets: [Budget.make("org:a", [Budget.Limit.perMinute("tokens", 6000)]), rpm("org:b", 10)] },
      (limiter) =>
        Effect.gen(function*() {
          yield* limiter.acquire(["org:a"], { tokens: 5000 })
          const big = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 3000 })) // waits 20 s
          yield* TestClock.adjust("1 second")
          expect(Option.isNone(yield* Fiber.poll(big))).toBe(true)
          // 1,100 tokens free, but the big one is first
          expect(Option.isNone(yield* limiter.tryAcquire(["org:a"], { tokens: 100 }))).toBe(true)
          expect(Option.isSome(yield* limiter.tryAcquire(["org:b"], { requests: 1 }))).toBe(true)
          yield* TestClock.adjust("19 seconds")
          expect(Exit.isSuccess(yield* Fiber.await(big))).toBe(true)
          yield* TestClock.adjust("10 seconds")
          // with another waiter queued (on org:b), org:a's count is back to none
          yield* room(limiter, "org:b")
          const onB = yield* Effect.fork(limiter.acquire(["org:b"], { requests: 1 }))
          yield* TestClock.adjust("1 millis")
          expect(Option.isNone(yield* Fiber.poll(onB))).toBe(true)
          expect(Option.isSome(yield* limiter.tryAcquire(["org:a"], { tokens: 100 }))).toBe(true)
        })
    ))

  it.effect("a long queue, admitted one a second with a third of it cancelled, admits the rest in order", () =>
    run({ budgets: [rpm("org:a", 60)] }, (limiter) =>
      Effect.gen(function*() {
        yield* limiter.acquire(["org:a"], { requests: 60 })
        const order: Array<number> = []
        const fibers = yield* Effect.forEach(
          Array.from({ length: 240 }, (_, i) => i),
          (i) =>
            Effect.fork(Effect.tap(limiter.acquire(["org:a"], { requests: 1 }), () => Effect.sync(() => order.push(i))))
        )
        yield* TestClock.adjust("1 millis")
        // cancel every third one among those not admitted by then (from the 100th on)
        yield* TestClock.adjust("99 seconds")
        const cancelled = fibers.filter((_, i) => i >= 100 && i % 3 === 0)
        yield* Effect.forEach(cancelled, Fiber.interrupt, { discard: true })
        expect(order.length).toBe(99)
        expect((yield* limiter.snapshot).waiting.interactive).toBe(240 - 99 - cancelled.length)
        yield* TestClock.adjust("200 seconds")
        const expected = Array.from({ length: 240 }, (_, i) => i).filter((i) => i < 100 || i % 3 !== 0)
        expect(order).toEqual(expected)
        expect((yield* limiter.snapshot).waiting.interactive).toBe(0)
      })))
})
