/**
 * Learned limits that the server enforces but does not announce (`Observation.burst`): a learned limit
 * takes a burst below its amount and keeps it across later reports; a cost above a learned burst (any cost
 * within the amount: however narrow a learned burst, it never forbids a call the server would accept) waits
 * for a full bucket and takes it into debt, as such a server does; a learned bucket that grows gains the room it
 * grew by. A configured limit keeps its amount but takes a smaller burst; a cost above a configured burst
 * waits and takes the bucket into debt the same way.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { Effect, FastCheck as fc, TestClock } from "effect"

const SCOPE = "org:a/pool:m"

const run = <A, E>(budgets: ReadonlyArray<Budget.Budget>, f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>) =>
  Effect.scoped(Effect.flatMap(RateLimiter.make({ budgets }), f)).pipe(
    Effect.provide(LimiterStore.layerMemory),
    Effect.orDie
  )

const levelOf = (limiter: RateLimiter.Service) =>
  Effect.map(limiter.peek([SCOPE], {}), (estimate) => estimate.levels.find((l) => l.dimension === "tokens")!)

describe("RateLimiter: learned bursts", () => {
  it.effect("a learned limit takes a burst and keeps it when later reports give none", () =>
    run([], (limiter) =>
      Effect.gen(function*() {
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 60_000 })
        yield* limiter.sync(SCOPE, { dimension: "tokens", burst: 5_000 })
        expect((yield* levelOf(limiter)).level).toBe(5_000)
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 60_000, remaining: 59_000 })
        const info = yield* levelOf(limiter)
        expect([info.limit.amount, info.limit.burst, info.learned]).toEqual([60_000, 5_000, true])
        // a burst at or above the amount is none
        yield* limiter.sync(SCOPE, { dimension: "tokens", burst: 70_000 })
        expect((yield* levelOf(limiter)).limit.burst).toBeUndefined()
      })))

  it.effect("a configured limit keeps its amount and takes a smaller burst as its capacity, which only narrows", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 60_000)])], (limiter) =>
      Effect.gen(function*() {
        // a report's limit does not change a configured amount
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 90_000 })
        expect((yield* levelOf(limiter)).limit.amount).toBe(60_000)
        yield* limiter.sync(SCOPE, { dimension: "tokens", burst: 5_000 })
        let info = yield* levelOf(limiter)
        expect([info.limit.amount, info.limit.burst, info.learned, info.level]).toEqual([60_000, 5_000, true, 5_000])
        // a wider burst, or one at or above the amount, does not widen it; a narrower one narrows it
        yield* limiter.sync(SCOPE, { dimension: "tokens", burst: 8_000 })
        yield* limiter.sync(SCOPE, { dimension: "tokens", burst: 70_000 })
        expect((yield* levelOf(limiter)).limit.burst).toBe(5_000)
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 60_000, burst: 4_000 })
        info = yield* levelOf(limiter)
        expect([info.limit.amount, info.limit.burst, info.level]).toEqual([60_000, 4_000, 4_000])
        expect(limiter.limitsOf(SCOPE).map((l) => [l.amount, l.burst])).toEqual([[60_000, 4_000]])
        // a configured burst below the learned one stays; the learned one only narrows it
        const kept = yield* run(
          [Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 60_000, 3_000)])],
          (other) => Effect.zipRight(other.sync(SCOPE, { dimension: "tokens", burst: 5_000 }), levelOf(other))
        )
        expect([kept.limit.burst, kept.learned]).toEqual([3_000, false])
      })))

  it.effect.prop(
    "a learned burst never forbids a call the server would accept: after any reports, a cost within the amount is admitted once the bucket has room for it (a full bucket when it is above the burst, then taken into debt); above the amount, it fails at once",
    {
      bursts: fc.array(fc.integer({ min: 1, max: 59_999 }), { minLength: 1, maxLength: 4 }),
      configured: fc.boolean(),
      cost: fc.integer({ min: 1, max: 60_000 })
    },
    ({ bursts, configured, cost }) =>
      run(
        configured ? [Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 60_000)])] : [],
        (limiter) =>
          Effect.gen(function*() {
            if (!configured) yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 60_000 })
            // each report narrows it (a 429 proved a smaller bucket: the least seen, as `@sluice/openai` learns
            // it), down to 1 token
            let burst = Number.POSITIVE_INFINITY
            for (const seen of bursts) {
              burst = Math.min(burst, seen)
              yield* limiter.sync(SCOPE, { dimension: "tokens", burst })
            }
            expect((yield* levelOf(limiter)).limit.burst).toBe(burst)
            const over = yield* Effect.exit(limiter.acquire([SCOPE], { tokens: 60_001 }))
            expect(over._tag === "Failure" && over.cause._tag === "Fail" && over.cause.error._tag).toBe(
              "CostExceedsCapacity"
            )
            yield* limiter.acquire([SCOPE], { tokens: Math.ceil(burst / 2) })
            const left = burst - Math.ceil(burst / 2)
            // the bucket refills 1 token a ms: room for the cost (at most the burst: a full bucket) after
            const wait = Math.max(0, Math.min(cost, burst) - left)
            // and `peek` says so
            expect((yield* limiter.peek([SCOPE], { tokens: cost })).waitMillis).toBe(wait)
            const fiber = yield* Effect.fork(limiter.acquire([SCOPE], { tokens: cost }))
            yield* TestClock.adjust(wait)
            const exit = yield* fiber.await
            expect(exit._tag).toBe("Success")
            if (exit._tag !== "Success") return
            expect(exit.value.admittedAt).toBe(wait)
            // into debt by what it exceeds the level by
            expect((yield* levelOf(limiter)).level).toBeCloseTo(Math.max(left, Math.min(cost, burst)) - cost, 6)
          })
      ),
    { fastCheck: { numRuns: 30 } }
  )

  it.effect("a learned bucket that grows gains the room it grew by", () =>
    run([], (limiter) =>
      Effect.gen(function*() {
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 1_000 })
        yield* limiter.acquire([SCOPE], { tokens: 1_000 })
        expect((yield* levelOf(limiter)).level).toBe(0)
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 3_000 })
        expect((yield* levelOf(limiter)).level).toBe(2_000)
      })))

  // Before the fix a permit's settle or release went to its bucket as it was at the admission: the store capped the
  // level at the old capacity (a learned 393,356 TPM fell to 20,000 on the first answer of a call admitted before it
  // grew, in the no-headers benchmark shape).
  it.effect.prop(
    "a permit admitted before its bucket grew gives back into the bucket as it is now (not capped at the old capacity)",
    {
      before: fc.integer({ min: 1_000, max: 50_000 }),
      grownBy: fc.integer({ min: 2, max: 40 }),
      share: fc.double({ min: 0.1, max: 1, noNaN: true }),
      used: fc.double({ min: 0, max: 1, noNaN: true }),
      release: fc.boolean()
    },
    ({ before, grownBy, release, share, used }) =>
      run([], (limiter) =>
        Effect.gen(function*() {
          yield* limiter.sync(SCOPE, { dimension: "tokens", limit: before })
          const cost = Math.max(1, Math.floor(before * share))
          const permit = yield* limiter.acquire([SCOPE], { tokens: cost })
          const after = before * grownBy
          yield* limiter.sync(SCOPE, { dimension: "tokens", limit: after })
          expect((yield* levelOf(limiter)).level).toBe(after - cost)
          const actual = Math.floor(cost * used)
          yield* release ? permit.release : permit.settle({ tokens: actual })
          expect((yield* levelOf(limiter)).level).toBe(after - (release ? 0 : actual))
        })),
    { fastCheck: { numRuns: 12 } }
  )
})
