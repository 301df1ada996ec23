// Tests written from the survivors of a uniform random sample of the mutants of internal/rateLimiter.ts from line 351
// (seventh session, `node mutation/sample.mjs`, see benchmarks/results/mutation.md): each pins a behaviour the rest of
// the limiter's suite left open. All under TestClock.
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, Metrics, RateLimiter } from "@sluice/core"
import type { MetricState } from "effect"
import { Effect, Exit, Fiber, Layer, Metric, Option, TestClock } from "effect"
import { countingStore, neverStore, slowStore as slowStoreOf } from "./suite/stores.js"

const rejections = (reason: string) =>
  Effect.map(
    Metric.value(Metric.tagged(Metrics.rejections, "reason", reason)),
    (state: MetricState.MetricState.Counter<number>) => state.count
  )

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E | undefined =>
  Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined

const CAPACITY = 100_000
const SCOPE = "org:a/pool:m"

type Options = Parameters<typeof RateLimiter.make>[0]

const run = <A, E>(
  options: Options,
  f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>,
  store: Layer.Layer<LimiterStore.LimiterStore>
) => Effect.scoped(Effect.flatMap(RateLimiter.make(options), f)).pipe(Effect.provide(Layer.fresh(store)))

// tokens twice at the same capacity (1,000: a day's limit with a burst of 1,000, listed second), and requests at 5
const budget = Budget.make("org:a", [
  Budget.Limit.perMinute("tokens", 1_000),
  Budget.Limit.perDay("tokens", 100_000, 1_000),
  Budget.Limit.perMinute("requests", 5)
])

describe("RateLimiter: a store's answer that a cost can never fit", () => {
  it.effect("names the narrowest limit of the denied scope and dimension, the first of equals", () =>
    run({ budgets: [budget] }, (limiter) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(limiter.acquire(["org:a"], { tokens: 10, requests: 1 }))
        expect(error).toEqual(
          new RateLimiter.CostExceedsCapacity({
            scope: "org:a",
            dimension: "tokens",
            limit: "1000 tokens / 1m",
            capacity: 1_000,
            cost: 10
          })
        )
        // tryAcquire fails the same way (it does not wait)
        expect(yield* Effect.flip(limiter.tryAcquire(["org:a"], { tokens: 10, requests: 1 }))).toMatchObject({
          _tag: "CostExceedsCapacity",
          limit: "1000 tokens / 1m"
        })
      }), neverStore("org:a", "tokens")))

  it.effect("a scope or dimension the call has no limit for: the dimension stands for the limit, capacity 0", () =>
    run({ budgets: [budget] }, (limiter) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(limiter.acquire(["org:a"], { tokens: 10, requests: 1 }))
        expect(error).toEqual(
          new RateLimiter.CostExceedsCapacity({
            scope: "org:b",
            dimension: "tokens",
            limit: "tokens",
            capacity: 0,
            cost: 10
          })
        )
      }), neverStore("org:b", "tokens")))

  it.effect("an asynchronous store's answer: the same error at once, even with a deadline it could not meet", () =>
    run({ budgets: [budget] }, (limiter) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(limiter.acquire(["org:a"], { tokens: 10 }, { maxWait: "1 second" }))
        expect(error).toMatchObject({ _tag: "CostExceedsCapacity", scope: "org:a", limit: "1000 tokens / 1m" })
      }), neverStore("org:a", "tokens", false)))
})

// A report (no limit: it can only lower the level) that the server had 10,001 fewer than CAPACITY left right after
// the answered call `a` (1 token, sent first when the bucket was full): 10,000 of other traffic. Replayed over the
// calls this limiter sent after `a`, each at what it charged, it lowers the level to 89,999 less those.
const afterReport = <E>(later: (limiter: RateLimiter.Service) => Effect.Effect<void, E>) =>
  Effect.scoped(
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({
        budgets: [Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", CAPACITY)])]
      })
      const a = yield* limiter.acquire([SCOPE], { tokens: 1 })
      yield* a.markSent
      yield* later(limiter)
      yield* limiter.sync(SCOPE, { dimension: "tokens", remaining: CAPACITY - 10_001, since: a })
      return (yield* limiter.peek([SCOPE], {})).levels[0].level
    })
  ).pipe(Effect.provide(Layer.fresh(LimiterStore.layerMemory)), Effect.orDie)

describe("RateLimiter: a call settled before it was marked sent, in the ledger a report is replayed over", () => {
  it.effect("counts at its actual charge (the estimate and its correction), once", () =>
    Effect.gen(function*() {
      const level = yield* afterReport((limiter) =>
        Effect.gen(function*() {
          // estimated 1,000, used 3,000, never marked sent: settled, it goes into the send order at 3,000
          const b = yield* limiter.acquire([SCOPE], { tokens: 1_000 })
          yield* b.settle({ tokens: 3_000 })
        })
      )
      expect(level).toBe(CAPACITY - 10_001 - 3_000)
    }))

  it.effect("counts a charge on a dimension it was estimated at 0 for", () =>
    Effect.gen(function*() {
      const level = yield* afterReport((limiter) =>
        Effect.gen(function*() {
          const b = yield* limiter.acquire([SCOPE], { tokens: 0 })
          yield* b.settle({ tokens: 500 })
        })
      )
      expect(level).toBe(CAPACITY - 10_001 - 500)
    }))
})

// A limiter of 100 tokens a minute per org, with org:a and org:b both taken whole.
const bothTaken = <A, E>(f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>) =>
  run(
    { budgets: [Budget.make("org:*", [Budget.Limit.perMinute("tokens", 100)])] },
    (limiter) =>
      Effect.gen(function*() {
        yield* limiter.acquire(["org:a"], { tokens: 100 })
        yield* limiter.acquire(["org:b"], { tokens: 100 })
        return yield* f(limiter)
      }),
    LimiterStore.layerMemory
  )

describe("RateLimiter: a waiter that gave up", () => {
  it.effect("is skipped by later passes, even once its scope is closed: the waiter behind it is not lost", () =>
    bothTaken((limiter) =>
      Effect.gen(function*() {
        const first = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 50 }))
        const second = yield* Effect.fork(limiter.acquire(["org:b"], { tokens: 50 }))
        yield* TestClock.adjust(1)
        // the first gives up; it stays in its lane, marked done, until a compaction (fewer than 64 are finished)
        yield* Fiber.interrupt(first)
        const closedBefore = yield* rejections("closed")
        yield* limiter.close("org:a", "gone")
        yield* TestClock.adjust(29_999)
        // nobody waiting on org:a was refused, and 50 tokens of org:b have refilled: the second's turn
        expect((yield* rejections("closed")) - closedBefore).toBe(0)
        const admitted = yield* Fiber.poll(second)
        expect(Option.isSome(admitted) && Exit.isSuccess(admitted.value)).toBe(true)
        expect((yield* limiter.snapshot).waiting).toEqual({ interactive: 0, background: 0 })
      })
    ))
})

describe("RateLimiter: the compaction of the lanes", () => {
  it.effect("with finished waiters only in the background lane, the interactive lane's walk stops at its end", () =>
    bothTaken((limiter) =>
      Effect.gen(function*() {
        const first = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 50 }))
        const gaveUp = yield* Effect.forEach(
          Array.from({ length: 64 }, () => 0),
          () => Effect.fork(limiter.acquire(["org:b"], { tokens: 50 }, { priority: "background" }))
        )
        yield* TestClock.adjust(1)
        // 64 finished (a compaction at the end of the next pass), all in the background lane, the first still queued
        yield* Fiber.interruptAll(gaveUp)
        yield* TestClock.adjust(29_999)
        const admitted = yield* Fiber.poll(first)
        expect(Option.isSome(admitted) && Exit.isSuccess(admitted.value)).toBe(true)
        expect((yield* limiter.snapshot).waiting).toEqual({ interactive: 0, background: 0 })
      })
    ))

  it.effect("drops the finished waiters between queued ones, each queued one kept once and in order", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.make({
          budgets: [Budget.make("org:a", [Budget.Limit.perMinute("tokens", 100)])]
        })
        yield* limiter.acquire(["org:a"], { tokens: 100 })
        // a, one that gives up, b, 63 that give up, c: 64 finished, one of them between a and b
        const order: Array<string> = []
        const queue = (name: string) =>
          Effect.tap(
            Effect.fork(
              Effect.tap(limiter.acquire(["org:a"], { tokens: 10 }), () => Effect.sync(() => order.push(name)))
            ),
            () => Effect.yieldNow()
          )
        const a = yield* queue("a")
        const gaveUp = [yield* queue("x")]
        const b = yield* queue("b")
        for (let i = 0; i < 63; i++) gaveUp.push(yield* queue("x"))
        const c = yield* queue("c")
        yield* TestClock.adjust(1)
        yield* Fiber.interruptAll(gaveUp)
        yield* TestClock.adjust(1)
        expect((yield* limiter.snapshot).waiting).toEqual({ interactive: 3, background: 0 })
        expect((yield* limiter.peek(["org:a"], { tokens: 1 })).queued).toBe(3)
        // 10 tokens refill every 6 s
        yield* TestClock.adjust(18_000)
        yield* Fiber.joinAll([a, b, c])
        expect(order).toEqual(["a", "b", "c"])
      })
    ).pipe(Effect.provide(Layer.fresh(LimiterStore.layerMemory))))
})

describe("RateLimiter: a report's burst", () => {
  it.effect("narrowing a configured limit, its remaining goes to that dimension's bucket, not another's", () =>
    Effect.scoped(
      Effect.gen(function*() {
        // requests first, in the same window as tokens: a report on tokens must not land on the requests bucket
        const limiter = yield* RateLimiter.make({
          budgets: [
            Budget.make("org:a", [Budget.Limit.perMinute("requests", 100), Budget.Limit.perMinute("tokens", 60_000)])
          ]
        })
        yield* limiter.sync("org:a", { dimension: "tokens", burst: 5_000, remaining: 1_000 })
        const levels = (yield* limiter.peek(["org:a"], {})).levels
        const of = (dimension: string) => levels.find((level) => level.dimension === dimension)!
        expect([of("tokens").level, of("tokens").limit.capacity]).toEqual([1_000, 5_000])
        expect(of("requests").level).toBe(100)
      })
    ).pipe(Effect.provide(Layer.fresh(LimiterStore.layerMemory))))

  it.effect("of 0 or below is no burst, and a limit of 0 or below no limit: a learned limit keeps the report's amount", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.make({ budgets: [] })
        yield* limiter.sync("org:a", { dimension: "tokens", limit: 60_000, burst: 0 })
        yield* limiter.sync("org:b", { dimension: "tokens", limit: 60_000, burst: -5 })
        for (const scope of ["org:a", "org:b"]) {
          const level = (yield* limiter.peek([scope], {})).levels[0]
          expect([level.level, level.limit.amount, level.limit.burst, level.learned]).toEqual([
            60_000,
            60_000,
            undefined,
            true
          ])
        }
        // a later report with a burst and a limit of 0 (no limit: the amount stays) narrows it to that burst
        yield* limiter.sync("org:a", { dimension: "tokens", limit: 0, burst: 5_000 })
        const narrowed = (yield* limiter.peek(["org:a"], {})).levels[0]
        expect([narrowed.level, narrowed.limit.amount, narrowed.limit.burst]).toEqual([5_000, 60_000, 5_000])
      })
    ).pipe(Effect.provide(Layer.fresh(LimiterStore.layerMemory))))
})

// The pass's early stop (waiters not visited yet that are all merely blocked behind one key): it must not skip a
// waiter that something since the last full pass concerns, nor one with a deadline.
describe("RateLimiter: the dispatcher's early stop", () => {
  const scoped = <A, E>(f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>) =>
    Effect.scoped(
      Effect.flatMap(
        RateLimiter.make({
          budgets: [
            Budget.make("org:a", [Budget.Limit.perMinute("tokens", 100)]),
            Budget.make("org:z", [Budget.Limit.perMinute("tokens", 1_000)])
          ]
        }),
        f
      )
    ).pipe(Effect.provide(Layer.fresh(LimiterStore.layerMemory)))

  // a waiter on team:x queued behind a blocked one; `change` closes team:x: it fails at once
  const closedBehind = (
    change: (limiter: RateLimiter.Service) => Effect.Effect<void, LimiterStore.LimiterStoreError>
  ) =>
    scoped((limiter) =>
      Effect.gen(function*() {
        yield* limiter.acquire(["org:a"], { tokens: 100 })
        yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 100 }))
        yield* TestClock.adjust(1)
        const behind = yield* Effect.fork(limiter.acquire(["org:a", "team:x"], { tokens: 10 }))
        yield* TestClock.adjust(1)
        yield* change(limiter)
        yield* TestClock.adjust(1)
        const exit = yield* Fiber.poll(behind)
        expect(Option.isSome(exit) && Exit.isFailure(exit.value)).toBe(true)
        expect(Option.isSome(exit) && failureOf(exit.value)).toMatchObject({ _tag: "ScopeClosed", scope: "team:x" })
      })
    )

  it.effect("a scope closed since the last full pass: a waiter on it behind a blocked one fails at once", () =>
    closedBehind((limiter) => limiter.close("team:x", "gone")))

  // each moves the epoch on (a ramp lifted from an unrelated scope, then the close): had one moved it back, the epoch
  // would be the last full pass's again and the pass would stop before the waiter on team:x
  it.effect("a ramp lifted and a scope closed in the same step: two changes, still a full pass", () =>
    closedBehind((limiter) =>
      Effect.zipRight(limiter.ramp("org:z", "tokens", undefined), limiter.close("team:x", "gone"))
    ))

  // the same with a configured limit of the unrelated scope narrowed to a reported burst (ninth session's sample)
  it.effect("a configured burst narrowed and a scope closed in the same step: two changes, still a full pass", () =>
    closedBehind((limiter) =>
      Effect.gen(function*() {
        yield* limiter.sync("org:z", { dimension: "tokens", burst: 500 })
        expect(limiter.limitsOf("org:z").map((limit) => limit.burst)).toEqual([500])
        yield* limiter.close("team:x", "gone")
      })
    ))

  it.effect("a waiter with a deadline behind blocked ones is visited: one it cannot meet fails at once", () =>
    scoped((limiter) =>
      Effect.gen(function*() {
        yield* limiter.acquire(["org:a"], { tokens: 100 })
        // a deadline it can meet (the bucket is full again in 60 s), then one without, then one of 5 s
        yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 100 }, { maxWait: "2 minutes" }))
        yield* TestClock.adjust(1)
        yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 10 }))
        yield* TestClock.adjust(1)
        const short = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 10 }, { maxWait: "5 seconds" }))
        yield* TestClock.adjust(1)
        const exit = yield* Fiber.poll(short)
        expect(Option.isSome(exit) && failureOf(exit.value)).toMatchObject({
          _tag: "DeadlineExceeded",
          reason: "queue"
        })
      })
    ))
})

// The memory store, except that a debit of `dimension` can never fit (as `neverStore`, for that dimension alone).
const neverOnStore = (dimension: string) =>
  Layer.effect(
    LimiterStore.LimiterStore,
    Effect.map(LimiterStore.LimiterStore, (inner): LimiterStore.Service => ({
      ...inner,
      unsafeTryAcquire: (debits, gates, now) =>
        debits.some((debit) => debit.bucket.dimension === dimension)
          ? { _tag: "Denied", waitMillis: Number.POSITIVE_INFINITY, scope: "org:a", dimension, reason: "limit" }
          : inner.unsafeTryAcquire!(debits, gates, now)
    }))
  ).pipe(Layer.provide(LimiterStore.layerMemory))

// the memory store answering asynchronously, 10 ms after it is asked
const slowStore = slowStoreOf("10 millis")

describe("RateLimiter: a call that can never fit, found by the dispatcher", () => {
  it.effect("is refused as capacity, on the rejections' capacity series", () =>
    run({ budgets: [budget] }, (limiter) =>
      Effect.gen(function*() {
        const before = yield* rejections("capacity")
        yield* limiter.acquire(["org:a"], { tokens: 1_000 })
        // queued behind the first (tokens), so the dispatcher asks the store about the second
        yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 10 }))
        yield* TestClock.adjust(1)
        const never = yield* Effect.fork(limiter.acquire(["org:a"], { requests: 1 }))
        yield* TestClock.adjust(1)
        const exit = yield* Fiber.poll(never)
        expect(Option.isSome(exit) && failureOf(exit.value)).toMatchObject({
          _tag: "CostExceedsCapacity",
          dimension: "requests"
        })
        expect((yield* rejections("capacity")) - before).toBe(1)
      }), neverOnStore("requests")))
})

describe("RateLimiter: an asynchronous store's admission at once", () => {
  it.effect("is refunded when the caller was interrupted while the store answered", () =>
    run(
      { budgets: [Budget.make("org:a", [Budget.Limit.perMinute("tokens", 100)])] },
      (limiter) =>
        Effect.gen(function*() {
          const call = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 60 }))
          yield* TestClock.adjust(5)
          const interrupting = yield* Effect.fork(Fiber.interrupt(call))
          yield* TestClock.adjust(10)
          const exit = yield* Fiber.join(interrupting)
          expect(Exit.isInterrupted(exit)).toBe(true)
          expect((yield* limiter.peek(["org:a"], {})).levels[0].level).toBe(100)
        }),
      slowStore
    ))
})

describe("RateLimiter: a refund", () => {
  it.effect("none at a settle at the estimate: no correction goes to the store (a round trip for a remote one)", () =>
    Effect.gen(function*() {
      const calls = { adjust: 0, levels: 0 }
      yield* run({ budgets: [budget] }, (limiter) =>
        Effect.gen(function*() {
          const permit = yield* limiter.acquire(["org:a"], { tokens: 10, requests: 1 })
          yield* permit.settle({ tokens: 10, requests: 1 })
          expect(calls.adjust).toBe(0)
          const over = yield* limiter.acquire(["org:a"], { tokens: 10, requests: 1 })
          yield* over.settle({ tokens: 20, requests: 1 })
          expect(calls.adjust).toBe(1)
        }), countingStore(calls))
    }))

  it.effect("wakes the waiter it makes room for at once, not at the time it was due", () =>
    run(
      { budgets: [Budget.make("org:a", [Budget.Limit.perMinute("tokens", 100)])] },
      (limiter) =>
        Effect.gen(function*() {
          const permit = yield* limiter.acquire(["org:a"], { tokens: 100 })
          // due in 30 s (50 tokens at 100 a minute)
          const waiter = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 50 }))
          yield* TestClock.adjust(1)
          yield* permit.release
          yield* TestClock.adjust(1)
          const admitted = yield* Fiber.poll(waiter)
          expect(Option.isSome(admitted) && Exit.isSuccess(admitted.value)).toBe(true)
        }),
      LimiterStore.layerMemory
    ))
})

describe("RateLimiter: a call at an asynchronous store", () => {
  it.effect("holds its place while the store answers: a smaller call behind it waits its turn", () =>
    run(
      { budgets: [Budget.make("org:a", [Budget.Limit.perMinute("tokens", 100)])] },
      (limiter) =>
        Effect.gen(function*() {
          const taken = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 50 }))
          yield* TestClock.adjust(10)
          yield* Fiber.join(taken)
          // the first is at the store (denied: 100 do not fit 50); the second, of 10, would fit, but is behind it
          const first = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 100 }))
          yield* Effect.yieldNow()
          const second = yield* Effect.fork(limiter.acquire(["org:a"], { tokens: 10 }))
          yield* TestClock.adjust(100)
          expect([Option.isNone(yield* Fiber.poll(first)), Option.isNone(yield* Fiber.poll(second))]).toEqual([
            true,
            true
          ])
        }),
      slowStore
    ))
})

describe("RateLimiter: peek and snapshot", () => {
  const limits = Budget.make("org:a", [Budget.Limit.perMinute("tokens", 100), Budget.Limit.perMinute("requests", 10)])

  it.effect("peek leaves out a dimension the cost does not name, even a bucket in debt", () =>
    run({ budgets: [limits] }, (limiter) =>
      Effect.gen(function*() {
        const permit = yield* limiter.acquire(["org:a"], { tokens: 100, requests: 1 })
        // 50 tokens in debt
        yield* permit.settle({ tokens: 150 })
        const view = yield* limiter.peek(["org:a"], { requests: 1 })
        expect([view.waitMillis, Option.isNone(view.binding)]).toEqual([0, true])
        // a settle that names tokens alone leaves the request charged as estimated
        expect(view.levels.map((level) => level.level)).toEqual([-50, 9])
        // naming tokens, it waits for the debt and the token: 51 at 100 a minute
        expect((yield* limiter.peek(["org:a"], { tokens: 1 })).waitMillis).toBe(30_600)
      }), LimiterStore.layerMemory))

  it.effect("snapshot lists only the gates still closed", () =>
    run({ budgets: [limits] }, (limiter) =>
      Effect.gen(function*() {
        yield* limiter.acquire(["org:a"], { tokens: 1, requests: 1 })
        yield* limiter.block("org:a", "tokens", "1 second")
        expect((yield* limiter.snapshot).gates).toEqual([{
          scope: "org:a",
          dimension: "tokens",
          remainingMillis: 1_000
        }])
        yield* TestClock.adjust("1 second")
        expect((yield* limiter.snapshot).gates).toEqual([])
      }), LimiterStore.layerMemory))
})
