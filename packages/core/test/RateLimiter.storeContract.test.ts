// The store contract across versions: a store written to 0.1.0's (no `debitAboveCapacity`, `Infinity` for a debit
// above its capacity, as `@sluice/redis` 0.1.0's script answers) still admits a cost above a burst, charged in
// parts; and a store's denial that can never be met fails the call at once instead of queueing it for ever.
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, Metrics, RateLimiter } from "@sluice/core"
import type { MetricState } from "effect"
import { Effect, Exit, Fiber, Layer, Metric, Option, TestClock } from "effect"

/** The memory store answering as 0.1.0's contract says: `Infinity` for a debit above its bucket's capacity. */
const legacy = (
  inner: LimiterStore.Service,
  options: { readonly sync: boolean; readonly flag?: boolean; readonly seen: Array<number> }
): LimiterStore.Service => {
  const over = (debits: ReadonlyArray<LimiterStore.Debit>): LimiterStore.Admission | undefined => {
    for (const debit of debits) options.seen.push(debit.amount / debit.bucket.capacity)
    const debit = debits.find((debit) => debit.amount > debit.bucket.capacity)
    return debit === undefined ? undefined : {
      _tag: "Denied",
      waitMillis: Number.POSITIVE_INFINITY,
      scope: debit.bucket.scope,
      dimension: debit.bucket.dimension,
      reason: "limit"
    }
  }
  return {
    // the 0.1.0 interface: no `debitAboveCapacity` (unless a test makes the store claim it)
    ...(options.flag === true ? { debitAboveCapacity: true } : {}),
    tryAcquire: (debits, gates) => {
      const denied = over(debits)
      return denied !== undefined
        ? Effect.delay(Effect.succeed(denied), 1)
        : Effect.delay(inner.tryAcquire(debits, gates), 1)
    },
    unsafeTryAcquire: options.sync
      ? (debits, gates, now) => over(debits) ?? inner.unsafeTryAcquire!(debits, gates, now)
      : undefined,
    adjust: inner.adjust,
    block: inner.block,
    observe: inner.observe,
    levels: inner.levels
  }
}

const storeLayer = (options: { readonly sync: boolean; readonly flag?: boolean; readonly seen: Array<number> }) =>
  Layer.effect(LimiterStore.LimiterStore, Effect.map(LimiterStore.makeMemory, (inner) => legacy(inner, options)))

/** 60,000 tokens a minute (1 a ms), a burst of 100. */
const budgets = [Budget.make("org:a", [Budget.Limit.perMinute("tokens", 60_000, 100)])]

const run = <A, E>(
  options: { readonly sync: boolean; readonly flag?: boolean; readonly seen: Array<number> },
  f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>
) => Effect.scoped(Effect.flatMap(RateLimiter.make({ budgets }), f)).pipe(Effect.provide(storeLayer(options)))

const capacityRejections = Effect.map(
  Metric.value(Metric.tagged(Metrics.rejections, "reason", "capacity")),
  (state: MetricState.MetricState.Counter<number>) => state.count
)

/** Whether a fiber has succeeded by now (a call that waits for ever fails the test at once, not by its timeout). */
const succeeded = <A, E>(fiber: Fiber.Fiber<A, E>) =>
  Effect.map(Fiber.poll(fiber), (exit) => Option.isSome(exit) && Exit.isSuccess(exit.value))

const level = (limiter: RateLimiter.Service) =>
  Effect.map(limiter.snapshot, (snapshot) => snapshot.levels.find((entry) => entry.scope === "org:a")!.level)

describe("RateLimiter over a store of the 0.1.0 contract (no debitAboveCapacity)", () => {
  for (const sync of [true, false]) {
    it.effect(`a cost above the burst is charged in parts that fit, and admitted on a full bucket (${sync ? "synchronous" : "asynchronous"} store)`, () =>
      Effect.gen(function*() {
        const seen: Array<number> = []
        yield* run({ sync, seen }, (limiter) =>
          Effect.gen(function*() {
            // the reviewer's case: 150 tokens then 1; before the fix both waited for ever (due = Infinity)
            const large = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 150 }))
            const small = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 1 }))
            yield* TestClock.adjust(sync ? 0 : 1)
            expect(yield* succeeded(large)).toBe(true)
            // charged 100 + 50 on the full bucket: 50 in debt, so the call of 1 waits 51 ms
            expect(yield* level(limiter)).toBe(-50)
            yield* TestClock.adjust(50)
            expect(Option.isNone(yield* Fiber.poll(small))).toBe(true)
            yield* TestClock.adjust(sync ? 1 : 2)
            expect(yield* succeeded(small)).toBe(true)
            // peek says the same as acquire: a cost above the burst waits for a full bucket
            const estimate = yield* limiter.peek(["org:a"], { tokens: 150 })
            expect(estimate.waitMillis).toBe(Math.ceil(100 - (yield* level(limiter))))
            expect(estimate.waitMillis).toBeGreaterThan(0)
          }))
        // the store never saw a debit above its capacity
        expect(Math.max(...seen)).toBe(1)
      }))
  }

  it.effect("a cost of up to 64 bursts fits in parts; above, it fails at once (as in 0.1.0), and peek says so", () =>
    Effect.gen(function*() {
      const seen: Array<number> = []
      yield* run({ sync: true, seen }, (limiter) =>
        Effect.gen(function*() {
          const first = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 6_400 }))
          yield* TestClock.adjust(0)
          expect(yield* succeeded(first)).toBe(true)
          expect(yield* level(limiter)).toBe(-6_300)
          const error = yield* Effect.flip(limiter.acquire(["org:a"], { tokens: 6_401 }))
          expect(error).toMatchObject({ _tag: "CostExceedsCapacity", capacity: 100, cost: 6_401 })
          expect((yield* limiter.peek(["org:a"], { tokens: 6_401 })).waitMillis).toBe(Number.POSITIVE_INFINITY)
          // 6,400 waits for the bucket to refill from -6,300 to full
          expect((yield* limiter.peek(["org:a"], { tokens: 6_400 })).waitMillis).toBe(6_400)
        }))
      expect(seen.length).toBe(64)
      expect(Math.max(...seen)).toBe(1)
    }))

  it.effect("the memory store declares debitAboveCapacity and takes such a cost as one debit", () =>
    Effect.gen(function*() {
      const memory = yield* LimiterStore.makeMemory
      expect(memory.debitAboveCapacity).toBe(true)
    }))
})

describe("RateLimiter: a store's denial that can never be met", () => {
  // a store that claims debitAboveCapacity but answers Infinity for such a debit (a broken store, or one that
  // passed the flag on from a store it wraps): the call fails at once, and the bucket is not held for ever
  for (const sync of [true, false]) {
    it.effect(`fails the call at once with CostExceedsCapacity, and later calls go on (${sync ? "synchronous" : "asynchronous"} store, fast path)`, () =>
      run({ sync, flag: true, seen: [] }, (limiter) =>
        Effect.gen(function*() {
          const before = yield* capacityRejections
          const call = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 150 }))
          yield* TestClock.adjust(1) // the asynchronous store answers after 1 ms
          const exit = Option.getOrThrow(yield* Fiber.poll(call))
          expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error).toMatchObject({
            _tag: "CostExceedsCapacity",
            scope: "org:a",
            dimension: "tokens",
            capacity: 100,
            cost: 150
          })
          expect((yield* capacityRejections) - before).toBe(1)
          // tryAcquire fails too, rather than answering "not now"
          const attempt = yield* Effect.fork(limiter.tryAcquire(["org:a"], { tokens: 150 }))
          yield* TestClock.adjust(1)
          const refused = yield* Effect.flip(Fiber.join(attempt))
          expect(refused._tag).toBe("CostExceedsCapacity")
          // nothing waits behind it
          const next = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 1 }))
          yield* TestClock.adjust(1)
          expect(yield* succeeded(next)).toBe(true)
          expect((yield* limiter.snapshot).waiting).toEqual({ interactive: 0, background: 0 })
        })))
  }

  it.effect("fails a queued call when its turn comes, and the calls behind it are admitted", () =>
    run({ sync: true, flag: true, seen: [] }, (limiter) =>
      Effect.gen(function*() {
        const before = yield* capacityRejections
        yield* limiter.acquire(["org:a"], { tokens: 100 })
        // a call ahead waits 50 ms for the empty bucket; the large one queues behind it, and is put to the store
        // in the dispatcher's pass once the one ahead is admitted
        const ahead = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 50 }))
        const large = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 150 }, { maxWait: "1 hour" }))
        const small = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 1 }))
        yield* TestClock.adjust(49)
        expect(Option.isNone(yield* Fiber.poll(large))).toBe(true)
        yield* TestClock.adjust(1)
        expect(yield* succeeded(ahead)).toBe(true)
        const error = Exit.isFailure(Option.getOrThrow(yield* Fiber.poll(large)))
          ? yield* Effect.flip(Fiber.join(large))
          : undefined
        expect(error).toMatchObject({ _tag: "CostExceedsCapacity", capacity: 100, cost: 150 })
        expect((yield* capacityRejections) - before).toBe(1)
        // the call behind it waits only for its own token (1 ms), not for ever
        yield* TestClock.adjust(1)
        expect(yield* succeeded(small)).toBe(true)
      })))
})
