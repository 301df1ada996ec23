// A ramp (`RateLimiter.Service.ramp`): a slow start on a scope and dimension, a temporary limit beside the
// buckets. The calls it holds wait in the limiter's queue: in order, within their deadlines, failing at once when
// their scope closes, counted as waiting.
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { Chunk, Clock, Effect, Exit, FastCheck as fc, Fiber, Option, TestClock, TestContext } from "effect"

const withLimiter = <A, E>(
  budgets: ReadonlyArray<Budget.Budget>,
  f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>
) => Effect.scoped(Effect.flatMap(RateLimiter.make({ budgets }), f)).pipe(Effect.provide(LimiterStore.layerMemory))

/** Moves the TestClock from sleep to sleep until `fiber` is done. */
const driveUntilDone = <A, E>(fiber: Fiber.Fiber<A, E>) =>
  Effect.gen(function*() {
    while (Option.isNone(yield* Fiber.poll(fiber))) {
      yield* Effect.yieldNow()
      const sleeps = yield* TestClock.sleeps()
      if (Chunk.isEmpty(sleeps)) yield* TestClock.adjust("1 millis")
      else yield* TestClock.setTime(Chunk.reduce(sleeps, Number.POSITIVE_INFINITY, (a, b) => Math.min(a, b)))
    }
    return yield* Fiber.join(fiber)
  })

const budgets = [Budget.make("pool:a", [Budget.Limit.perMinute("requests", 1_000_000)])]

describe("RateLimiter ramp", () => {
  it.effect("property: what is admitted never exceeds the ramp, and each call is admitted when the ramp lets it out", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 50 }),
          fc.integer({ min: 20, max: 2_000 }),
          fc.option(fc.integer({ min: 1, max: 400 }), { nil: undefined }),
          fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 1, maxLength: 40 }),
          fc.boolean(),
          (from, doublingMillis, to, costs, configured) =>
            Effect.runPromise(
              withLimiter(configured ? budgets : [], (limiter) =>
                Effect.gen(function*() {
                  yield* limiter.ramp("pool:a", "requests", { from, doubling: doublingMillis, to })
                  const admitted: Array<number> = []
                  const fibers: Array<Fiber.Fiber<void, RateLimiter.AcquireError>> = []
                  for (const cost of costs) {
                    fibers.push(
                      yield* Effect.fork(
                        Effect.zipRight(
                          limiter.acquire(["org:x", "pool:a"], { requests: cost }),
                          Effect.flatMap(Clock.currentTimeMillis, (at) => Effect.sync(() => void admitted.push(at)))
                        )
                      )
                    )
                  }
                  yield* driveUntilDone(yield* Effect.fork(Fiber.joinAll(fibers)))
                  const endsAt = to === undefined
                    ? Number.POSITIVE_INFINITY
                    : doublingMillis * Math.max(0, Math.log2(to / from))
                  let given = 0
                  let previous = 0
                  admitted.forEach((at, i) => {
                    given += costs[i]
                    // in arrival order, never beyond what the ramp lets out by then (until it ends)
                    expect(at).toBeGreaterThanOrEqual(previous)
                    if (at < endsAt) expect(given).toBeLessThanOrEqual(from * 2 ** (at / doublingMillis) * (1 + 1e-9))
                    // and as soon as it does
                    const due = given <= from ? 0 : Math.min(endsAt, doublingMillis * Math.log2(given / from))
                    expect(at).toBeLessThanOrEqual(Math.max(previous, Math.ceil(due)) + 1)
                    previous = at
                  })
                  expect(admitted).toHaveLength(costs.length)
                })).pipe(Effect.provide(TestContext.TestContext))
            )
        ),
        { numRuns: 60, seed: 17 }
      )
    ))

  it.effect(
    "property, overshoot: a call goes once what was let out before it is within the ramp, whatever its size, and not before",
    () =>
      Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(
            fc.integer({ min: 1, max: 50 }),
            fc.integer({ min: 20, max: 2_000 }),
            fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 30 }),
            (from, doublingMillis, costs) =>
              Effect.runPromise(
                withLimiter(budgets, (limiter) =>
                  Effect.gen(function*() {
                    yield* limiter.ramp("pool:a", "requests", { from, doubling: doublingMillis, overshoot: true })
                    const admitted: Array<number> = []
                    const order: Array<number> = []
                    const fibers: Array<Fiber.Fiber<void, RateLimiter.AcquireError>> = []
                    for (const [index, cost] of costs.entries()) {
                      fibers.push(
                        yield* Effect.fork(
                          Effect.zipRight(
                            limiter.acquire(["pool:a"], { requests: cost }),
                            Effect.flatMap(Clock.currentTimeMillis, (at) =>
                              Effect.sync(() => {
                                admitted[index] = at
                                order.push(index)
                              }))
                          )
                        )
                      )
                    }
                    yield* driveUntilDone(yield* Effect.fork(Fiber.joinAll(fibers)))
                    // in arrival order (first in, first out)
                    expect(order).toEqual(costs.map((_, index) => index))
                    let before = 0
                    let previous = 0
                    admitted.forEach((at, i) => {
                      // what went before it is within the ramp by then (the call itself may take it beyond: at most
                      // one call over)
                      expect(at).toBeGreaterThanOrEqual(previous)
                      expect(before).toBeLessThanOrEqual(from * 2 ** (at / doublingMillis) * (1 + 1e-9))
                      // and as soon as it is: a call larger than the whole ramp does not wait for it to grow
                      const due = before <= from ? 0 : doublingMillis * Math.log2(before / from)
                      expect(at).toBeLessThanOrEqual(Math.max(previous, Math.ceil(due)) + 1)
                      before += costs[i]
                      previous = at
                    })
                  })).pipe(Effect.provide(TestContext.TestContext))
              )
          ),
          { numRuns: 60, seed: 23 }
        )
      )
  )

  it.effect("overshoot: what a call gives back at its settle or release comes off what the ramp let out", () =>
    withLimiter(budgets, (limiter) =>
      Effect.gen(function*() {
        yield* limiter.ramp("pool:a", "requests", { from: 50, doubling: "1 second", overshoot: true })
        // beyond the ramp's 50 at once, but nothing went before it: it goes
        const first = yield* limiter.acquire(["pool:a"], { requests: 100 })
        const held = yield* Effect.either(limiter.acquire(["pool:a"], { requests: 1 }, { maxWait: "500 millis" }))
        expect(held._tag === "Left" && held.left._tag).toBe("DeadlineExceeded")
        // it used 30: 30 let out, within the 50
        yield* first.settle({ requests: 30 })
        const second = yield* limiter.acquire(["pool:a"], { requests: 15 })
        expect(yield* Clock.currentTimeMillis).toBe(0)
        // 45 let out: one more goes (at most one call over), then none until the ramp is past 60 or a call gives back
        yield* limiter.acquire(["pool:a"], { requests: 15 })
        const again = yield* Effect.either(limiter.acquire(["pool:a"], { requests: 1 }, { maxWait: "100 millis" }))
        expect(again._tag === "Left" && again.left._tag).toBe("DeadlineExceeded")
        yield* second.release
        yield* limiter.acquire(["pool:a"], { requests: 1 })
        expect(yield* Clock.currentTimeMillis).toBe(0)
      })))

  it.effect("a continued ramp takes a new pace from where the old one is: what it let out counts, nothing goes at once", () =>
    withLimiter(budgets, (limiter) =>
      Effect.gen(function*() {
        yield* limiter.ramp("pool:a", "requests", { from: 10, doubling: "1 second" })
        yield* limiter.acquire(["pool:a"], { requests: 10 })
        yield* TestClock.adjust("1 second")
        // the old ramp is at 20 by now, 10 of it let out: at a doubling of 10 s from there, 10 more go now and
        // 20 × (2^(1 / 10) − 1) ≈ 1.4 more by 1 s later (a fresh start would let 20 go at once)
        yield* limiter.ramp("pool:a", "requests", { from: 20, doubling: "10 seconds", continued: true })
        yield* limiter.acquire(["pool:a"], { requests: 10 })
        const held = yield* Effect.either(limiter.acquire(["pool:a"], { requests: 2 }, { maxWait: "1 second" }))
        expect(held._tag === "Left" && held.left._tag).toBe("DeadlineExceeded")
        const next = yield* Effect.fork(
          Effect.zipRight(limiter.acquire(["pool:a"], { requests: 1 }), Clock.currentTimeMillis)
        )
        // its turn: 20 × 2^(t / 10 s) = 21
        expect(yield* driveUntilDone(next)).toBe(1_000 + Math.ceil(10_000 * Math.log2(21 / 20)))
      })))

  it.effect("a held call fails at once when its turn is past its deadline; one behind it, by its deadline", () =>
    withLimiter(budgets, (limiter) =>
      Effect.gen(function*() {
        yield* limiter.ramp("pool:a", "requests", { from: 10, doubling: "1 second" })
        yield* limiter.acquire(["pool:a"], { requests: 10 })
        // 10 more by 1 s, 30 more by 2 s
        const late = yield* Effect.either(limiter.acquire(["pool:a"], { requests: 15 }, { maxWait: "1 second" }))
        expect(late._tag === "Left" && late.left._tag).toBe("DeadlineExceeded")
        expect(yield* Clock.currentTimeMillis).toBe(0)
        const first = yield* Effect.fork(limiter.acquire(["pool:a"], { requests: 8 }))
        const behind = yield* Effect.fork(
          Effect.zip(
            Effect.either(limiter.acquire(["pool:a"], { requests: 8 }, { deadline: 900 })),
            Clock.currentTimeMillis
          )
        )
        const [outcome, at] = yield* driveUntilDone(behind)
        expect(outcome._tag === "Left" && outcome.left._tag).toBe("DeadlineExceeded")
        expect(at).toBeLessThanOrEqual(900)
        yield* driveUntilDone(first)
        expect(yield* Clock.currentTimeMillis).toBeLessThanOrEqual(Math.ceil(1_000 * Math.log2(18 / 10)) + 1)
      })))

  it.effect("held calls are waiting (snapshot, peek), fail at once when the scope closes, go when it ends", () =>
    withLimiter(budgets, (limiter) =>
      Effect.gen(function*() {
        yield* limiter.ramp("pool:a", "requests", { from: 2, doubling: "10 seconds" })
        const held = yield* Effect.forEach(
          [1, 2, 3, 4, 5],
          () => Effect.fork(Effect.either(limiter.acquire(["org:x", "pool:a"], { requests: 1 })))
        )
        yield* TestClock.adjust("1 millis")
        expect((yield* limiter.snapshot).waiting.interactive).toBe(3)
        const estimate = yield* limiter.peek(["pool:a"], { requests: 1 })
        expect(Option.map(estimate.binding, (b) => b.reason)).toEqual(Option.some("ramp"))
        expect(Option.isNone(yield* limiter.tryAcquire(["pool:a"], { requests: 1 }))).toBe(true)
        yield* limiter.close("org:x", "closed for the test")
        yield* TestClock.adjust("1 millis")
        const outcomes = yield* Effect.forEach(held, Fiber.join)
        expect(outcomes.map((o) => o._tag === "Left" ? o.left._tag : "Admitted")).toEqual([
          "Admitted",
          "Admitted",
          "ScopeClosed",
          "ScopeClosed",
          "ScopeClosed"
        ])
        expect(yield* Clock.currentTimeMillis).toBe(2)
        // another scope, held: ending the ramp lets it all out at once
        const others = yield* Effect.forEach([1, 2, 3], () => Effect.fork(limiter.acquire(["pool:a"], { requests: 1 })))
        yield* TestClock.adjust("1 millis")
        expect((yield* limiter.snapshot).waiting.interactive).toBe(3)
        yield* limiter.ramp("pool:a", "requests", undefined)
        yield* TestClock.adjust("1 millis")
        for (const fiber of others) expect(Exit.isSuccess(yield* Fiber.await(fiber))).toBe(true)
      })))
})
