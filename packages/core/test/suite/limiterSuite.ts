/**
 * The RateLimiter's behaviour suite, parameterised by the store behind it. It runs on the memory
 * store (packages/core/test/RateLimiter.test.ts) and unchanged on Redis (packages/redis/test), always
 * under TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import type { LimiterStore } from "@sluice/core"
import { Budget, RateLimiter } from "@sluice/core"
import { Cause, Duration, Effect, Exit, Fiber, Layer, Option, TestClock } from "effect"

export const limiterBehaviourSuite = (
  name: string,
  store: Layer.Layer<LimiterStore.LimiterStore, unknown>
) => {
  const withLimiter = <A, E>(
    budgets: ReadonlyArray<Budget.Budget>,
    f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>
  ) =>
    Effect.scoped(Effect.flatMap(RateLimiter.make({ budgets }), f)).pipe(
      Effect.provide(Layer.fresh(store)),
      Effect.orDie
    )

  const rpm = (scope: string, amount: number, burst?: number) =>
    Budget.make(scope, [Budget.Limit.perMinute("requests", amount, burst)])

  const levelOf = (limiter: RateLimiter.Service, scope: string, dimension: string) =>
    Effect.map(
      limiter.peek([scope], {}),
      (estimate) => estimate.levels.find((info) => info.dimension === dimension)!.level
    )

  describe(`RateLimiter behaviour (${name})`, () => {
    it.effect("admits up to capacity at once, then refills continuously", () =>
      withLimiter([rpm("org:a", 3)], (limiter) =>
        Effect.gen(function*() {
          for (let i = 0; i < 3; i++) yield* limiter.acquire(["org:a"], { requests: 1 })
          const fourth = yield* Effect.fork(limiter.acquire(["org:a"], { requests: 1 }))
          yield* TestClock.adjust("19999 millis")
          expect(Option.isNone(yield* Fiber.poll(fourth))).toBe(true)
          yield* TestClock.adjust("1 millis")
          const exit = yield* Fiber.await(fourth)
          expect(Exit.isSuccess(exit)).toBe(true)
        })))

    it.effect("charges every scope and dimension atomically, or nothing", () =>
      withLimiter(
        [
          Budget.make("org:a", [Budget.Limit.perMinute("requests", 10), Budget.Limit.perMinute("tokens", 1000)]),
          Budget.make("project:p", [Budget.Limit.perMinute("tokens", 500)])
        ],
        (limiter) =>
          Effect.gen(function*() {
            const permit = yield* limiter.acquire(["org:a", "project:p"], { requests: 1, tokens: 400 })
            expect(yield* levelOf(limiter, "org:a", "tokens")).toBe(600)
            expect(yield* levelOf(limiter, "project:p", "tokens")).toBe(100)
            // project:p cannot take 200 more: nothing may be charged anywhere.
            const none = yield* limiter.tryAcquire(["org:a", "project:p"], { requests: 1, tokens: 200 })
            expect(Option.isNone(none)).toBe(true)
            expect(yield* levelOf(limiter, "org:a", "tokens")).toBe(600)
            expect(yield* levelOf(limiter, "org:a", "requests")).toBe(9)
            expect(yield* levelOf(limiter, "project:p", "tokens")).toBe(100)
            yield* permit.release
          })
      ))

    it.effect("fails at once when a cost can never fit, naming scope, dimension, limit and cost", () =>
      withLimiter(
        [Budget.make("pool:gpt-4o", [Budget.Limit.perMinute("tokens", 30_000)])],
        (limiter) =>
          Effect.gen(function*() {
            const error = yield* Effect.flip(limiter.acquire(["pool:gpt-4o"], { tokens: 34_307 }))
            expect(error._tag).toBe("CostExceedsCapacity")
            if (error._tag !== "CostExceedsCapacity") return
            expect(error.scope).toBe("pool:gpt-4o")
            expect(error.dimension).toBe("tokens")
            expect(error.cost).toBe(34_307)
            expect(error.capacity).toBe(30_000)
            expect(error.limit).toContain("30000 tokens")
          })
      ))

    it.effect("a cost above a burst (within the amount) waits for a full bucket and takes it into debt, at any ratio", () =>
      withLimiter([rpm("org:a", 6_000, 10)], (limiter) =>
        Effect.gen(function*() {
          // 100 bursts at once, in one admission (the store admits a debit above its capacity on a full bucket)
          yield* limiter.acquire(["org:a"], { requests: 1 })
          const large = yield* Effect.fork(limiter.acquire(["org:a"], { requests: 1_000 }))
          // 0.1 a ms: full again after 10 ms
          yield* TestClock.adjust("9 millis")
          expect(Option.isNone(yield* Fiber.poll(large))).toBe(true)
          yield* TestClock.adjust("1 millis")
          expect(Exit.isSuccess(yield* Fiber.await(large))).toBe(true)
          expect(yield* levelOf(limiter, "org:a", "requests")).toBeCloseTo(-990, 6)
          // the next call waits for the debt to refill: 9,910 ms
          const next = yield* Effect.fork(limiter.acquire(["org:a"], { requests: 1 }))
          yield* TestClock.adjust("9909 millis")
          expect(Option.isNone(yield* Fiber.poll(next))).toBe(true)
          yield* TestClock.adjust("1 millis")
          expect(Exit.isSuccess(yield* Fiber.await(next))).toBe(true)
          // above the amount it never fits
          const error = yield* Effect.flip(limiter.acquire(["org:a"], { requests: 6_001 }))
          expect(error._tag).toBe("CostExceedsCapacity")
        })))

    it.effect("settle refunds an over-estimate and charges an under-estimate into debt", () =>
      withLimiter(
        [Budget.make("org:a", [Budget.Limit.perMinute("tokens", 6000)])],
        (limiter) =>
          Effect.gen(function*() {
            const first = yield* limiter.acquire(["org:a"], { tokens: 4000 })
            yield* first.settle({ tokens: 1000 })
            expect(yield* levelOf(limiter, "org:a", "tokens")).toBe(5000)
            const second = yield* limiter.acquire(["org:a"], { tokens: 5000 })
            yield* second.settle({ tokens: 8000 })
            expect(yield* levelOf(limiter, "org:a", "tokens")).toBe(-3000)
            // 100 tokens/s refill: the debt of 3000 plus 100 needed takes 31 s.
            const next = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 100 }))
            yield* TestClock.adjust("30999 millis")
            expect(Option.isNone(yield* Fiber.poll(next))).toBe(true)
            yield* TestClock.adjust("1 millis")
            expect(Exit.isSuccess(yield* Fiber.await(next))).toBe(true)
          })
      ))

    it.effect("settle and release are idempotent; refunds never exceed grants", () =>
      withLimiter([Budget.make("org:a", [Budget.Limit.perDay("tokens", 10_000)])], (limiter) =>
        Effect.gen(function*() {
          const permit = yield* limiter.acquire(["org:a"], { tokens: 3000 })
          yield* permit.release
          yield* permit.release
          yield* permit.settle({ tokens: 0 })
          expect(permit.state).toBe("released")
          expect(yield* levelOf(limiter, "org:a", "tokens")).toBe(10_000)
          const other = yield* limiter.acquire(["org:a"], { tokens: 3000 })
          yield* other.settle({ tokens: 500 })
          yield* other.settle({ tokens: 0 })
          yield* other.release
          expect(other.charged).toEqual({ tokens: 500 })
          expect(yield* levelOf(limiter, "org:a", "tokens")).toBe(9500)
        })))

    it.effect("an interrupted wait leaks nothing and lets the next waiter in", () =>
      withLimiter([Budget.make("org:a", [Budget.Limit.perDay("tokens", 1000)])], (limiter) =>
        Effect.gen(function*() {
          const held = yield* limiter.acquire(["org:a"], { tokens: 900 })
          const big = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 800 }))
          const small = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 100 }))
          yield* TestClock.adjust("1 second")
          // small waits behind big (FIFO), even though 100 fits now.
          expect(Option.isNone(yield* Fiber.poll(small))).toBe(true)
          yield* Fiber.interrupt(big)
          const permit = yield* Fiber.join(small)
          expect(permit.charged).toEqual({ tokens: 100 })
          yield* permit.release
          yield* held.release
          expect(yield* levelOf(limiter, "org:a", "tokens")).toBe(1000)
        })))

    it.effect("withPermit releases an unsettled permit however the body ends", () =>
      withLimiter([Budget.make("org:a", [Budget.Limit.perDay("tokens", 1000)])], (limiter) =>
        Effect.gen(function*() {
          const failed = yield* Effect.exit(
            limiter.withPermit(["org:a"], { tokens: 600 }, () => Effect.fail("boom"))
          )
          expect(Exit.isFailure(failed)).toBe(true)
          expect(yield* levelOf(limiter, "org:a", "tokens")).toBe(1000)
          const fiber = yield* Effect.fork(
            limiter.withPermit(["org:a"], { tokens: 600 }, () => Effect.never)
          )
          yield* TestClock.adjust("1 millis")
          expect(yield* levelOf(limiter, "org:a", "tokens")).toBeCloseTo(400, 3)
          yield* Fiber.interrupt(fiber)
          expect(yield* levelOf(limiter, "org:a", "tokens")).toBe(1000)
          const settled = yield* limiter.withPermit(
            ["org:a"],
            { tokens: 600 },
            (permit) => Effect.as(permit.settle({ tokens: 250 }), "ok")
          )
          expect(settled).toBe("ok")
          expect(yield* levelOf(limiter, "org:a", "tokens")).toBe(750)
        })))

    it.effect("waits FIFO within a lane: a large request is not starved by small ones", () =>
      withLimiter(
        [Budget.make("org:a", [Budget.Limit.perMinute("tokens", 6000)])],
        (limiter) =>
          Effect.gen(function*() {
            yield* limiter.acquire(["org:a"], { tokens: 6000 })
            const order: Array<string> = []
            const big = yield* Effect.fork(
              Effect.tap(limiter.acquire(["org:a"], { tokens: 5000 }), () => Effect.sync(() => order.push("big")))
            )
            const smalls = yield* Effect.forEach(
              [1, 2, 3, 4, 5],
              (i) =>
                Effect.fork(
                  Effect.tap(limiter.acquire(["org:a"], { tokens: 100 }), () => Effect.sync(() => order.push(`s${i}`)))
                )
            )
            yield* TestClock.adjust("2 minutes")
            yield* Fiber.join(big)
            yield* Effect.forEach(smalls, Fiber.join)
            expect(order).toEqual(["big", "s1", "s2", "s3", "s4", "s5"])
          })
      ))

    it.effect("interactive waiters go before background ones", () =>
      withLimiter([rpm("org:a", 60)], (limiter) =>
        Effect.gen(function*() {
          for (let i = 0; i < 60; i++) yield* limiter.acquire(["org:a"], { requests: 1 })
          const order: Array<string> = []
          const background = yield* Effect.fork(
            Effect.tap(
              limiter.acquire(["org:a"], { requests: 1 }, { priority: "background" }),
              () => Effect.sync(() => order.push("background"))
            )
          )
          yield* TestClock.adjust("10 millis")
          const interactive = yield* Effect.fork(
            Effect.tap(
              limiter.acquire(["org:a"], { requests: 1 }, { priority: "interactive" }),
              () => Effect.sync(() => order.push("interactive"))
            )
          )
          yield* TestClock.adjust("3 seconds")
          yield* Fiber.join(background)
          yield* Fiber.join(interactive)
          expect(order).toEqual(["interactive", "background"])
        })))

    it.effect("a deadline that cannot be met fails fast with the estimated wait", () =>
      withLimiter([rpm("org:a", 1)], (limiter) =>
        Effect.gen(function*() {
          yield* limiter.acquire(["org:a"], { requests: 1 })
          const error = yield* Effect.flip(limiter.acquire(["org:a"], { requests: 1 }, { maxWait: "10 seconds" }))
          expect(error._tag).toBe("DeadlineExceeded")
          if (error._tag !== "DeadlineExceeded") return
          expect(error.estimatedWaitMillis).toBe(60_000)
          expect(error.scope).toBe("org:a")
          expect(error.dimension).toBe("requests")
          // within the deadline: waits and succeeds
          const ok = yield* Effect.fork(limiter.acquire(["org:a"], { requests: 1 }, { maxWait: "2 minutes" }))
          yield* TestClock.adjust("1 minute")
          expect(Exit.isSuccess(yield* Fiber.await(ok))).toBe(true)
        })))

    it.effect("tryAcquire never waits", () =>
      withLimiter([rpm("org:a", 2)], (limiter) =>
        Effect.gen(function*() {
          expect(Option.isSome(yield* limiter.tryAcquire(["org:a"], { requests: 1 }))).toBe(true)
          expect(Option.isSome(yield* limiter.tryAcquire(["org:a"], { requests: 1 }))).toBe(true)
          expect(Option.isNone(yield* limiter.tryAcquire(["org:a"], { requests: 1 }))).toBe(true)
        })))

    it.effect("a gate pauses every waiter on the scope until its time", () =>
      withLimiter([rpm("pool:gpt-4o", 1000), rpm("pool:mini", 1000)], (limiter) =>
        Effect.gen(function*() {
          yield* limiter.block("pool:gpt-4o", "*", "20 seconds")
          const fibers = yield* Effect.forEach(
            [1, 2, 3],
            () => Effect.fork(limiter.acquire(["pool:gpt-4o"], { requests: 1 }))
          )
          // another scope is not affected
          expect(Option.isSome(yield* limiter.tryAcquire(["pool:mini"], { requests: 1 }))).toBe(true)
          yield* TestClock.adjust("19999 millis")
          for (const fiber of fibers) expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
          yield* TestClock.adjust("1 millis")
          for (const fiber of fibers) expect(Exit.isSuccess(yield* Fiber.await(fiber))).toBe(true)
          // a dimension gate applies only to calls charging that dimension
          yield* limiter.block("pool:mini", "tokens", new Date((yield* TestClock.currentTimeMillis) + 5000))
          expect(Option.isSome(yield* limiter.tryAcquire(["pool:mini"], { requests: 1 }))).toBe(true)
          expect(Option.isNone(yield* limiter.tryAcquire(["pool:mini"], { requests: 1, tokens: 10 }))).toBe(true)
          const estimate = yield* limiter.peek(["pool:mini"], { requests: 1, tokens: 10 })
          expect(estimate.waitMillis).toBe(5000)
          expect(Option.getOrThrow(estimate.binding).reason).toBe("gate")
        })))

    it.effect("sync lowers remaining to the server's figure and learns an unconfigured limit", () =>
      withLimiter(
        [Budget.make("org:a", [Budget.Limit.perMinute("tokens", 10_000)])],
        (limiter) =>
          Effect.gen(function*() {
            yield* limiter.sync("org:a", { dimension: "tokens", limit: 10_000, remaining: 2500 })
            expect(yield* levelOf(limiter, "org:a", "tokens")).toBe(2500)
            // never raised by a report
            yield* limiter.sync("org:a", { dimension: "tokens", remaining: 9000 })
            expect(yield* levelOf(limiter, "org:a", "tokens")).toBe(2500)
            // learned: requests were not configured
            yield* limiter.sync("org:a", { dimension: "requests", limit: 60, remaining: 1 })
            const learned = limiter.limitsOf("org:a").find((limit) => limit.dimension === "requests")
            expect(learned?.amount).toBe(60)
            expect(Duration.toMillis(learned!.window)).toBe(60_000)
            expect(yield* levelOf(limiter, "org:a", "requests")).toBe(1)
            yield* limiter.acquire(["org:a"], { requests: 1 })
            expect(Option.isNone(yield* limiter.tryAcquire(["org:a"], { requests: 1 }))).toBe(true)
          })
      ))

    it.effect("peek and snapshot report levels, waits and gates", () =>
      withLimiter(
        [Budget.make("org:a", [Budget.Limit.perMinute("requests", 60), Budget.Limit.perMinute("tokens", 6000)])],
        (limiter) =>
          Effect.gen(function*() {
            yield* limiter.acquire(["org:a"], { requests: 1, tokens: 6000 })
            const estimate = yield* limiter.peek(["org:a"], { requests: 1, tokens: 1000 })
            expect(estimate.waitMillis).toBe(10_000)
            expect(Option.getOrThrow(estimate.binding)).toEqual({
              scope: "org:a",
              dimension: "tokens",
              reason: "limit"
            })
            yield* limiter.block("org:a", "requests", "30 seconds")
            const snapshot = yield* limiter.snapshot
            const tokens = snapshot.levels.find((info) => info.dimension === "tokens")!
            expect(tokens.level).toBe(0)
            expect(tokens.fullInMillis).toBe(60_000)
            expect(snapshot.gates).toEqual([{ scope: "org:a", dimension: "requests", remainingMillis: 30_000 }])
          })
      ))

    it.effect("closing a scope fails its waiters at once and refuses admissions until reopened", () =>
      withLimiter([rpm("org:a", 1), rpm("org:b", 1)], (limiter) =>
        Effect.gen(function*() {
          yield* limiter.acquire(["org:a"], { requests: 1 })
          const waiting = yield* Effect.fork(limiter.acquire(["org:a"], { requests: 1 }))
          yield* TestClock.adjust("1 second")
          yield* limiter.close("org:a", "insufficient_quota")
          yield* TestClock.adjust("1 millis")
          const exit = yield* Fiber.await(waiting)
          expect(Exit.isFailure(exit) && Cause.failureOption(exit.cause).pipe(Option.map((e) => e._tag))).toEqual(
            Option.some("ScopeClosed")
          )
          const refused = yield* Effect.flip(limiter.acquire(["org:a"], { requests: 1 }))
          expect(refused._tag).toBe("ScopeClosed")
          expect(Option.isSome(yield* limiter.tryAcquire(["org:b"], { requests: 1 }))).toBe(true)
          yield* limiter.reopen("org:a")
          yield* TestClock.adjust("1 minute")
          expect(Option.isSome(yield* limiter.tryAcquire(["org:a"], { requests: 1 }))).toBe(true)
        })))

    it.effect("pattern budgets give every matching scope its own buckets", () =>
      withLimiter([rpm("tenant:*", 2)], (limiter) =>
        Effect.gen(function*() {
          yield* limiter.acquire(["tenant:1"], { requests: 2 })
          expect(Option.isNone(yield* limiter.tryAcquire(["tenant:1"], { requests: 1 }))).toBe(true)
          expect(Option.isSome(yield* limiter.tryAcquire(["tenant:2"], { requests: 1 }))).toBe(true)
        })))

    it.effect("a burst below the amount caps the instantaneous burst, not the rate", () =>
      withLimiter([rpm("org:a", 600, 10)], (limiter) =>
        Effect.gen(function*() {
          for (let i = 0; i < 10; i++) yield* limiter.acquire(["org:a"], { requests: 1 })
          expect(Option.isNone(yield* limiter.tryAcquire(["org:a"], { requests: 1 }))).toBe(true)
          yield* TestClock.adjust("100 millis")
          expect(Option.isSome(yield* limiter.tryAcquire(["org:a"], { requests: 1 }))).toBe(true)
        })))
  })
}
