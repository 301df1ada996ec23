// Tests written from the survivors of a uniform random sample of the mutants of the whole of internal/rateLimiter.ts
// (tenth session, `node mutation/sample.mjs`, see benchmarks/results/mutation.md): each pins a behaviour the rest of
// the limiter's suite left open. All under TestClock.
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, Metrics, RateLimiter } from "@sluice/core"
import type { MetricState } from "effect"
import { Cause, Effect, Exit, Fiber, Layer, Metric, Option, TestClock } from "effect"
import { neverStore, slowStore } from "./suite/stores.js"

const SCOPE = "org:a/pool:m"

const refunds = (dimension: string) =>
  Effect.map(
    Metric.value(Metric.tagged(Metrics.refunds, "dimension", dimension)),
    (state: MetricState.MetricState.Counter<number>) => state.count
  )

const run = <A, E>(
  budgets: ReadonlyArray<Budget.Budget>,
  f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>,
  store: Layer.Layer<LimiterStore.LimiterStore> = LimiterStore.layerMemory
) =>
  Effect.scoped(Effect.flatMap(RateLimiter.make({ budgets }), f)).pipe(
    Effect.provide(Layer.fresh(store)),
    Effect.orDie
  )

/** The level of the scope's first bucket. */
const levelOf = (limiter: RateLimiter.Service) =>
  Effect.map(limiter.peek([SCOPE], {}), (estimate) => estimate.levels[0].level)
describe("RateLimiter: the gates of a cost whose dimension names could make two lists look alike", () => {
  it.effect("a name holding the list separator is not taken for the two names it joins", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("requests", 100)])], (limiter) =>
      Effect.gen(function*() {
        yield* limiter.block(SCOPE, "a", "1 minute")
        // one dimension named "a\u0001b": not gated
        expect(Option.isSome(yield* limiter.tryAcquire([SCOPE], { "a\u0001b": 1 }))).toBe(true)
        // two dimensions, "a" and "b": gated on "a"
        expect(Option.isNone(yield* limiter.tryAcquire([SCOPE], { a: 1, b: 1 }))).toBe(true)
      })))

  it.effect("an empty name is not dropped from the list it is in", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("requests", 100)])], (limiter) =>
      Effect.gen(function*() {
        yield* limiter.block(SCOPE, "", "1 minute")
        expect(Option.isSome(yield* limiter.tryAcquire([SCOPE], { a: 1 }))).toBe(true)
        // "" and "a": gated on ""
        expect(Option.isNone(yield* limiter.tryAcquire([SCOPE], { "": 1, a: 1 }))).toBe(true)
      })))
})

describe("RateLimiter.close: the cause", () => {
  it.effect("is the error's when given, and absent when not", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("requests", 100)])], (limiter) =>
      Effect.gen(function*() {
        const cause = new Error("insufficient_quota")
        yield* limiter.close(SCOPE, "quota", cause)
        const error = yield* Effect.flip(limiter.acquire([SCOPE], { requests: 1 }))
        expect(error).toMatchObject({ _tag: "ScopeClosed", scope: SCOPE, reason: "quota" })
        expect((error as RateLimiter.ScopeClosed).cause).toBe(cause)
        yield* limiter.reopen(SCOPE)
        yield* limiter.close(SCOPE, "gone")
        const plain = yield* Effect.flip(limiter.acquire([SCOPE], { requests: 1 }))
        expect(Object.keys(plain)).not.toContain("cause")
      })))
})

describe("RateLimiter.sync: a report's figures that are not a limit", () => {
  it.effect("a burst of 0 or below is no burst: the limit is learned without one", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("requests", 100)])], (limiter) =>
      Effect.gen(function*() {
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 1_000, burst: 0 })
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 2_000, burst: -5 })
        const learned = limiter.limitsOf(SCOPE).filter((limit) => limit.dimension === "tokens")
        expect(learned.map((limit) => [limit.amount, limit.burst, limit.capacity])).toEqual([[2_000, undefined, 2_000]])
      })))

  it.effect("a limit of 0 with a burst keeps the learned amount and takes the burst", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("requests", 100)])], (limiter) =>
      Effect.gen(function*() {
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 1_000 })
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 0, burst: 100 })
        const learned = limiter.limitsOf(SCOPE).filter((limit) => limit.dimension === "tokens")
        expect(learned.map((limit) => [limit.amount, limit.burst, limit.capacity])).toEqual([[1_000, 100, 100]])
      })))
})

describe("RateLimiter: a synchronous store's answer that a cost can never fit, with a deadline", () => {
  it.effect("fails at once as the cost it is, not as the deadline it could not meet", () =>
    run(
      [Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 1_000)])],
      (limiter) =>
        Effect.gen(function*() {
          const error = yield* Effect.flip(limiter.acquire([SCOPE], { tokens: 10 }, { maxWait: "1 second" }))
          expect(error).toMatchObject({
            _tag: "CostExceedsCapacity",
            scope: SCOPE,
            limit: "1000 tokens / 1m",
            cost: 10
          })
        }),
      neverStore(SCOPE, "tokens", true)
    ))
})

describe("RateLimiter: the pass's early stop with a waiter with a deadline not visited yet", () => {
  it.effect("it is visited: a wait that grew past its deadline fails it in that pass", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 100)])], (limiter) =>
      Effect.gen(function*() {
        const first = yield* limiter.acquire([SCOPE], { tokens: 100 })
        // no deadline, due at 30 s; then one with a deadline at 40 s behind it (a full pass saw both)
        const patient = yield* Effect.fork(limiter.acquire([SCOPE], { tokens: 50 }))
        const hurried = yield* Effect.fork(limiter.acquire([SCOPE], { tokens: 10 }, { maxWait: "40 seconds" }))
        yield* TestClock.adjust("1 second")
        // an under-estimate: 60 tokens of debt, so the first waiter's turn moves to 66 s
        yield* first.settle({ tokens: 160 })
        yield* TestClock.adjust("29 seconds")
        // the pass at 30 s finds the first waiter denied until 66 s: the second cannot make its deadline
        const failed = hurried.unsafePoll()
        expect(failed !== null && Exit.isFailure(failed) ? Cause.failureOption(failed.cause) : failed).toEqual(
          Option.some(expect.objectContaining({ _tag: "DeadlineExceeded", estimatedWaitMillis: 36_000 }))
        )
        yield* TestClock.adjust("36 seconds")
        expect((yield* Fiber.join(patient)).admittedAt).toBe(66_000)
      })))
})

describe("RateLimiter.sync: the report about a refused call", () => {
  it.effect("lowers the level, but does not cap later refunds (a refusal's figures do not count)", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 100_000)])], (limiter) =>
      Effect.gen(function*() {
        const level = () => levelOf(limiter)
        const refused = yield* limiter.acquire([SCOPE], { tokens: 20_000 })
        yield* refused.markSent
        yield* refused.settle({ tokens: 0 })
        // the server's limit is not the budget's (the report only lowers): 90,000 left
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 200_000, remaining: 90_000, since: refused })
        expect(yield* level()).toBe(90_000)
        // a call answered with 1,000 of its 20,000: the settle gives the 19,000 back
        const answered = yield* limiter.acquire([SCOPE], { tokens: 20_000 })
        yield* answered.markSent
        yield* answered.settle({ tokens: 1_000 })
        expect(yield* level()).toBe(89_000)
      })))
})

describe("RateLimiter.sync: a report whose limit is 0", () => {
  it.effect("teaches nothing of how the server charges: a later report still counts the calls at their charge", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 100_000)])], (limiter) =>
      Effect.gen(function*() {
        const level = () => levelOf(limiter)
        const first = yield* limiter.acquire([SCOPE], { tokens: 20_000 })
        yield* first.markSent
        yield* first.settle({ tokens: 1_000 })
        // were its limit taken for one, 50,000 left would show a server that trues calls up to their usage
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 0, remaining: 50_000, since: first })
        expect(yield* level()).toBe(50_000)
        const second = yield* limiter.acquire([SCOPE], { tokens: 20_000 })
        yield* second.markSent
        yield* second.settle({ tokens: 1_000 })
        expect(yield* level()).toBe(49_000)
        // the same report again, replayed over the second call: at its charge, 20,000
        yield* limiter.sync(SCOPE, { dimension: "tokens", remaining: 50_000, since: first })
        expect(yield* level()).toBe(30_000)
      })))
})

describe("RateLimiter: a call settled to nothing unmarked", () => {
  it.effect("leaves no entry in the send order: the calls a report is replayed over stay until a call is sent", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perDay("tokens", 100_000)])], (limiter) =>
      Effect.gen(function*() {
        const level = () => levelOf(limiter)
        const first = yield* limiter.acquire([SCOPE], { tokens: 20_000 })
        yield* first.markSent
        yield* first.settle({ tokens: 1_000 })
        // a report that only lowers (the server's limit is not the budget's): 50,000 left, then a call sent
        yield* limiter.sync(SCOPE, {
          dimension: "tokens",
          limit: 200_000,
          window: "1 day",
          remaining: 50_000,
          since: first
        })
        yield* TestClock.adjust("500 millis")
        const second = yield* limiter.acquire([SCOPE], { tokens: 20_000 })
        yield* second.markSent
        // past the ledger's two minutes from the second call, a call refused before it was marked sent
        yield* TestClock.adjust("121 seconds")
        const refused = yield* limiter.acquire([SCOPE], { tokens: 1_000 })
        yield* refused.settle({ tokens: 0 })
        const before = yield* level()
        // the second call answered with 1,000: its refund raises the level only as far as the report replayed to now
        // leaves room (the second call at its charge): the server's limit refilled twice as fast as the budget over
        // the 121.5 s, so about 141 of the 19,000 (dropped from the ledger, the report is passed over: all of it)
        yield* second.settle({ tokens: 1_000 })
        expect((yield* level()) - before).toBeCloseTo(100_000 * 121_500 / 86_400_000, 6)
      })))
})

/** The memory store, with or without `debitAboveCapacity`, recording the amounts of each admission's debits. */
const recordingStore = (debitAboveCapacity: boolean, asked: Array<ReadonlyArray<number>>) =>
  Layer.effect(
    LimiterStore.LimiterStore,
    Effect.map(LimiterStore.LimiterStore, (inner): LimiterStore.Service => ({
      ...inner,
      debitAboveCapacity: debitAboveCapacity ? true : undefined,
      unsafeTryAcquire: (debits, gates, now) => {
        asked.push(debits.map((debit) => debit.amount))
        return inner.unsafeTryAcquire!(debits, gates, now)
      }
    }))
  ).pipe(Layer.provide(LimiterStore.layerMemory))

describe("RateLimiter: a cost above a burst, as the store is asked for it", () => {
  const budgets = [Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 1_000, 100)])]
  it.effect("one debit for a store that takes a debit above its capacity", () => {
    const asked: Array<ReadonlyArray<number>> = []
    return run(budgets, (limiter) =>
      Effect.gen(function*() {
        yield* limiter.acquire([SCOPE], { tokens: 250 })
        expect(asked).toEqual([[250]])
      }), recordingStore(true, asked))
  })

  it.effect("parts of at most the capacity for one that does not", () => {
    const asked: Array<ReadonlyArray<number>> = []
    return run(budgets, (limiter) =>
      Effect.gen(function*() {
        yield* limiter.acquire([SCOPE], { tokens: 250 })
        expect(asked).toEqual([[100, 75, 75]])
      }), recordingStore(false, asked))
  })
})

describe("RateLimiter: a settle's refund after the report that capped it aged out of the ledger", () => {
  it.effect("is given back whole (the report is passed over)", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perDay("tokens", 100_000)])], (limiter) =>
      Effect.gen(function*() {
        const level = () => levelOf(limiter)
        const first = yield* limiter.acquire([SCOPE], { tokens: 20_000 })
        yield* first.markSent
        yield* first.settle({ tokens: 1_000 })
        // a report that only lowers (the server's limit is not the budget's): 50,000 left
        yield* limiter.sync(SCOPE, {
          dimension: "tokens",
          limit: 200_000,
          window: "1 day",
          remaining: 50_000,
          since: first
        })
        const second = yield* limiter.acquire([SCOPE], { tokens: 20_000 })
        yield* second.markSent
        // past the ledger's two minutes, a call sent: the first two calls are dropped from the ledger
        yield* TestClock.adjust("121 seconds")
        const later = yield* limiter.acquire([SCOPE], { tokens: 1_000 })
        yield* later.markSent
        const before = yield* level()
        yield* second.settle({ tokens: 1_000 })
        expect((yield* level()) - before).toBeCloseTo(19_000, 6)
      })))
})

describe("RateLimiter: the refunds metric", () => {
  it.effect("a release counts every dimension it gives back", () =>
    run(
      [Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 100_000), Budget.Limit.perMinute("requests", 100)])],
      (limiter) =>
        Effect.gen(function*() {
          const before = { tokens: yield* refunds("tokens"), requests: yield* refunds("requests") }
          const permit = yield* limiter.acquire([SCOPE], { tokens: 500, requests: 1 })
          yield* permit.release
          expect({
            tokens: (yield* refunds("tokens")) - before.tokens,
            requests: (yield* refunds("requests")) - before.requests
          }).toEqual({ tokens: 500, requests: 1 })
        })
    ))

  it.effect("a refund a settle holds back is not counted, beside a charge on another dimension", () =>
    run(
      [Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 100_000), Budget.Limit.perMinute("requests", 100)])],
      (limiter) =>
        Effect.gen(function*() {
          // a report adopted both ways (the budget's limit, nothing else in flight): the tokens bucket reports its level
          const first = yield* limiter.acquire([SCOPE], { tokens: 20_000, requests: 1 })
          yield* first.markSent
          yield* first.settle({ tokens: 1_000 })
          yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 100_000, remaining: 79_000, since: first })
          // answered with less tokens and more requests: the tokens refund is held back, and not counted
          const before = yield* refunds("tokens")
          const second = yield* limiter.acquire([SCOPE], { tokens: 20_000, requests: 1 })
          yield* second.markSent
          yield* second.settle({ tokens: 1_000, requests: 2 })
          expect((yield* refunds("tokens")) - before).toBe(0)
        })
    ))
})

describe("RateLimiter: the dispatcher's first pass", () => {
  it.effect("is a full one: waiters queued before a limit was learned are all prepared again, and fail if it is too small", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 100)])], (limiter) =>
      Effect.gen(function*() {
        yield* limiter.acquire([SCOPE], { tokens: 100 })
        // queued (the bucket is empty) before the dispatcher's first pass, then a per-second limit learned
        const small = yield* Effect.fork(limiter.acquire([SCOPE], { tokens: 50 }))
        const large = yield* Effect.fork(limiter.acquire([SCOPE], { tokens: 80 }))
        yield* Effect.yieldNow()
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 60, window: "1 second" })
        yield* TestClock.adjust("1 millis")
        // the pass prepares both for it: the first waits its turn, the second can never fit 60
        expect(small.unsafePoll()).toBeNull()
        const failed = large.unsafePoll()
        expect(failed !== null && Exit.isFailure(failed) ? Cause.failureOption(failed.cause) : failed).toEqual(
          Option.some(expect.objectContaining({ _tag: "CostExceedsCapacity", capacity: 60, cost: 80 }))
        )
      })))
})

describe("RateLimiter.peek: a cost above a burst, within the amount", () => {
  it.effect("waits for a full bucket (as acquire does), not for ever", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 1_000, 100)])], (limiter) =>
      Effect.gen(function*() {
        expect((yield* limiter.peek([SCOPE], { tokens: 250 })).waitMillis).toBe(0)
        yield* limiter.acquire([SCOPE], { tokens: 250 })
        // 150 below zero: full again after 250 at 1,000 a minute, 15 s
        expect((yield* limiter.peek([SCOPE], { tokens: 250 })).waitMillis).toBe(15_000)
      })))
})

describe("RateLimiter: a waiter interrupted while the dispatcher's store call about it is under way", () => {
  // the memory store answering 10 ms after it is asked; one request a minute
  const slow = <A, E>(f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>) =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("requests", 1)])], f, slowStore("10 millis"))

  it.effect("denied: nothing is refunded (the next call waits for the refill)", () =>
    slow((limiter) =>
      Effect.gen(function*() {
        const first = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }))
        const waiter = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }))
        // at 10 ms the first is admitted and the dispatcher asks about the waiter (answered at 20 ms: denied)
        yield* TestClock.adjust("15 millis")
        yield* Fiber.join(first)
        yield* Fiber.interrupt(waiter)
        yield* TestClock.adjust("5 millis")
        const next = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }))
        yield* TestClock.adjust("1 minute")
        expect((yield* Fiber.join(next)).admittedAt).toBe(60_000)
      })
    ))

  it.effect("admitted: refunded, and counted out of the queue once (a waiter behind it is admitted in its turn)", () =>
    slow((limiter) =>
      Effect.gen(function*() {
        const first = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }))
        const waiter = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }))
        const behind = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }))
        const last = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }))
        yield* TestClock.adjust("10 millis")
        yield* Fiber.join(first)
        // at 60 s the dispatcher asks about the waiter (answered 10 ms later: admitted); interrupted meanwhile
        yield* TestClock.adjust("59995 millis")
        yield* Effect.fork(Fiber.interrupt(waiter))
        yield* TestClock.adjust("5 millis")
        expect((yield* Fiber.await(waiter))._tag).toBe("Failure")
        // the waiter's admission went back: the one behind it takes it in the same pass (its store call answered
        // 10 ms later)
        yield* TestClock.adjust("10 millis")
        const admitted = behind.unsafePoll()
        expect(admitted !== null && Exit.isSuccess(admitted) ? admitted.value.admittedAt : admitted).toBe(60_000)
        // and the last one a minute later (counted out twice, the queue would look empty: no timer, never admitted)
        yield* TestClock.adjust("1 minute")
        const next = last.unsafePoll()
        expect(next !== null && Exit.isSuccess(next) ? next.value.admittedAt : next).toBe(120_010)
      })
    ))
})

describe("RateLimiter: an asynchronous store's fast path denied after a limit was learned meanwhile", () => {
  it.effect("the next pass is a full one, and prepares it for the new limit (too small: it fails)", () =>
    run(
      [Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 100)])],
      (limiter) =>
        Effect.gen(function*() {
          // a ramp that lets one request out now, and two only after an hour
          yield* limiter.ramp(SCOPE, "requests", { from: 1, doubling: "1 hour" })
          const first = yield* Effect.fork(limiter.acquire([SCOPE], { tokens: 100 }))
          yield* TestClock.adjust("10 millis")
          yield* Fiber.join(first)
          // the store is asked about this one at once (the queue is empty, the ramp lets it out)...
          const fast = yield* Effect.fork(
            limiter.acquire([SCOPE], { tokens: 80, requests: 1 }, { priority: "background" })
          )
          // ...and this one, queued ahead of it in the interactive lane, is held by the ramp
          const held = yield* Effect.fork(limiter.acquire([SCOPE], { tokens: 1, requests: 2 }))
          yield* TestClock.adjust("5 millis")
          // learned while the store answers: a per-second limit of 60 tokens
          yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 60, window: "1 second" })
          yield* TestClock.adjust("5 millis")
          // denied (the bucket is empty), it waits as prepared for the old limits: the next pass prepares it again
          yield* TestClock.adjust("1 millis")
          const failed = fast.unsafePoll()
          expect(failed !== null && Exit.isFailure(failed) ? Cause.failureOption(failed.cause) : failed).toEqual(
            Option.some(expect.objectContaining({ _tag: "CostExceedsCapacity", capacity: 60, cost: 80 }))
          )
          expect(held.unsafePoll()).toBeNull()
        }),
      slowStore("10 millis")
    ))
})

describe("RateLimiter.sync: a report that changes a learned limit and gives the remaining", () => {
  it.effect("the remaining goes to that limit's bucket (of the report's dimension), not another's", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("requests", 100)])], (limiter) =>
      Effect.gen(function*() {
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 1_000 })
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 2_000, remaining: 500 })
        const levels = (yield* limiter.peek([SCOPE], {})).levels.map((l) => [l.dimension, l.limit.amount, l.level])
        expect(levels).toEqual([["requests", 100, 100], ["tokens", 2_000, 500]])
      })))
})

describe("RateLimiter.sync: a report about a call sent before those of a report adopted already", () => {
  it.effect("is passed over: the server knew less then", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 100_000)])], (limiter) =>
      Effect.gen(function*() {
        const level = () => levelOf(limiter)
        const first = yield* limiter.acquire([SCOPE], { tokens: 1_000 })
        yield* first.markSent
        yield* TestClock.adjust("100 millis")
        const second = yield* limiter.acquire([SCOPE], { tokens: 1_000 })
        yield* second.markSent
        // about the second (the first counted): adopted both ways
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 100_000, remaining: 97_000, since: second })
        const adopted = yield* level()
        // about the first, answered before the second reached the server: older, passed over
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 100_000, remaining: 50_000, since: first })
        expect(yield* level()).toBe(adopted)
      })))
})

describe("RateLimiter: a call a ramp holds past its deadline", () => {
  it.effect("fails without taking a place in the queue: a tryAcquire right after it is not turned away", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("requests", 100)])], (limiter) =>
      Effect.gen(function*() {
        // one request now, two by 1 s
        yield* limiter.ramp(SCOPE, "requests", { from: 1, doubling: "1 second" })
        yield* limiter.acquire([SCOPE], { requests: 1 })
        // both started before either runs: the first fails (a hold of 1 s, 10 ms allowed), then the second tries
        const refused = yield* Effect.fork(
          Effect.flip(limiter.acquire([SCOPE], { requests: 1 }, { maxWait: "10 millis" }))
        )
        const tried = yield* Effect.fork(limiter.tryAcquire([SCOPE], { tokens: 1 }))
        expect(yield* Fiber.join(refused)).toMatchObject({ _tag: "DeadlineExceeded", estimatedWaitMillis: 1_000 })
        expect(Option.isSome(yield* Fiber.join(tried))).toBe(true)
      })))
})
