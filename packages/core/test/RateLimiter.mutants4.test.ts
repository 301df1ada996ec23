// Tests written from the survivors of a uniform random sample of the mutants of internal/rateLimiter.ts after the
// dispatcher's pass (ninth session, `node mutation/sample.mjs`, see benchmarks/results/mutation.md): each pins a
// behaviour the rest of the limiter's suite left open. All under TestClock.
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { Cause, Effect, Exit, Fiber, Layer, TestClock } from "effect"
import { countingStore, slowStore as slowStoreOf } from "./suite/stores.js"

const SCOPE = "org:a/pool:m"

const run = <A, E>(budgets: ReadonlyArray<Budget.Budget>, f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>) =>
  Effect.scoped(Effect.flatMap(RateLimiter.make({ budgets }), f)).pipe(
    Effect.provide(Layer.fresh(LimiterStore.layerMemory)),
    Effect.orDie
  )

describe("RateLimiter: a ramp's hold at acquire", () => {
  it.effect("a hold exactly as long as the time allowed is waited out, and admitted at the deadline", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("requests", 100)])], (limiter) =>
      Effect.gen(function*() {
        // one request at once, two by 1 s
        yield* limiter.ramp(SCOPE, "requests", { from: 1, doubling: "1 second" })
        yield* limiter.acquire([SCOPE], { requests: 1 })
        const fiber = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }, { maxWait: "1 second" }))
        yield* TestClock.adjust("999 millis")
        expect(fiber.unsafePoll()).toBeNull()
        yield* TestClock.adjust("1 millis")
        const permit = yield* Fiber.join(fiber)
        expect(permit.admittedAt).toBe(1_000)
        // one millisecond less allowed: it fails at once, with the hold's wait
        yield* limiter.ramp(SCOPE, "requests", { from: 1, doubling: "1 second" })
        yield* limiter.acquire([SCOPE], { requests: 1 })
        const error = yield* Effect.flip(limiter.acquire([SCOPE], { requests: 1 }, { maxWait: "999 millis" }))
        expect(error).toMatchObject({ _tag: "DeadlineExceeded", estimatedWaitMillis: 1_000, allowedMillis: 999 })
      })))
})

describe("RateLimiter.sync: the bucket a report's remaining applies to", () => {
  it.effect("the one whose window is closest to the report's, not the first listed", () =>
    run(
      [Budget.make(SCOPE, [
        Budget.Limit.of("tokens", 1_000, "2 minutes"),
        Budget.Limit.of("tokens", 200, "10 seconds")
      ])],
      (limiter) =>
        Effect.gen(function*() {
          // a per-minute report: 50 s from the 10 s window, 60 s from the 2 min one
          yield* limiter.sync(SCOPE, { dimension: "tokens", window: "1 minute", remaining: 0 })
          const levels = (yield* limiter.peek([SCOPE], {})).levels.map((l) => [l.limit.windowMillis, l.level])
          expect(levels).toEqual([[120_000, 1_000], [10_000, 0]])
        })
    ))
})

describe("RateLimiter: a waiter interrupted after the dispatcher ended its wait, before it saw the end", () => {
  it.effect("refused (its scope closed): the interruption ends it, with no permit to release, no defect, and once", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("requests", 1)])], (limiter) =>
      Effect.gen(function*() {
        yield* limiter.acquire([SCOPE], { requests: 1 })
        const waiter = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }))
        yield* TestClock.adjust("1 second")
        expect(waiter.unsafePoll()).toBeNull()
        const self = yield* Effect.fiberId
        // the dispatcher is woken first, then the interruption is sent: the dispatcher refuses the waiter before the
        // waiter's fiber runs, which then takes the interruption before the refusal
        yield* limiter.close(SCOPE, "gone")
        yield* Effect.sync(() => waiter.unsafeInterruptAsFork(self))
        const exit = yield* Fiber.await(waiter)
        expect(Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)).toBe(true)
        // and it is not counted out of the queue a second time: reopened, the next call waits its turn and is
        // admitted when the bucket has room again
        yield* limiter.reopen(SCOPE)
        const next = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }))
        yield* TestClock.adjust("1 second")
        expect((yield* limiter.snapshot).waiting).toEqual({ interactive: 1, background: 0 })
        yield* TestClock.adjust("1 minute")
        // polled, not joined: counted out twice, the queue looks empty and nothing would ever admit it
        const admitted = next.unsafePoll()
        expect(admitted !== null && Exit.isSuccess(admitted) ? admitted.value.admittedAt : admitted).toBe(60_000)
      })))
})

describe("RateLimiter.sync: a report about a call held and not marked sent", () => {
  it.effect("counts the call once: the level is the report's, less nothing for the call itself", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 100_000)])], (limiter) =>
      Effect.gen(function*() {
        const level = () => Effect.map(limiter.peek([SCOPE], {}), (estimate) => estimate.levels[0].level)
        const held = yield* limiter.acquire([SCOPE], { tokens: 1_000 })
        // released unmarked: the report about it counts nothing of it
        const released = yield* limiter.acquire([SCOPE], { tokens: 2_000 })
        yield* released.release
        expect(yield* level()).toBe(99_000)
        // the server: the held call and 5,000 of other traffic
        yield* limiter.sync(SCOPE, { dimension: "tokens", remaining: 94_000, since: held })
        expect(yield* level()).toBe(94_000)
        // about the released call: the held one, not marked sent, is one the server has not seen
        yield* limiter.sync(SCOPE, { dimension: "tokens", remaining: 90_000, since: released })
        expect(yield* level()).toBe(89_000)
      })))
})

// the memory store answering asynchronously, 10 ms after it is asked
const slowStore = slowStoreOf("10 millis")

describe("RateLimiter: an asynchronous store's fast path admitted with a waiter queued behind its place", () => {
  it.effect("the place is left and the waiter behind it stays queued, admitted by the next pass", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const limiter = yield* RateLimiter.make({
          budgets: [Budget.make(SCOPE, [Budget.Limit.perMinute("requests", 10)])]
        })
        // the first asks the store at once, holding a place at the head of the queue; the second queues behind it
        const first = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }))
        const second = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }))
        yield* TestClock.adjust("10 millis")
        expect((yield* Fiber.join(first)).admittedAt).toBe(0)
        // the dispatcher's pass asks the store for the second once the first's answer is in: 10 ms more
        yield* TestClock.adjust("10 millis")
        expect((yield* Fiber.join(second)).admittedAt).toBe(10)
        expect((yield* limiter.snapshot).waiting).toEqual({ interactive: 0, background: 0 })
      })
    ).pipe(Effect.provide(Layer.fresh(slowStore)), Effect.orDie))
})

describe("RateLimiter.sync: a report adopted both ways with no call sent just before the one it is about", () => {
  it.effect("is adopted without reading the store's level (a round trip for a remote store)", () =>
    Effect.gen(function*() {
      const calls = { adjust: 0, levels: 0 }
      const level = yield* Effect.scoped(
        Effect.gen(function*() {
          const limiter = yield* RateLimiter.make({
            budgets: [Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 100_000)])]
          })
          const permit = yield* limiter.acquire([SCOPE], { tokens: 1_000 })
          yield* permit.markSent
          yield* TestClock.adjust("1 second")
          yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 100_000, remaining: 90_000, since: permit })
          expect(calls.levels).toBe(0)
          return (yield* limiter.peek([SCOPE], {})).levels[0].level
        })
      ).pipe(Effect.provide(countingStore(calls)), Effect.orDie)
      // adopted: the server's remaining as of the call's send, refilled over the second since (100,000 a minute)
      expect(level).toBeCloseTo(90_000 + 100_000 / 60, 6)
    }))
})

describe("RateLimiter.sync: a learned limit updated by a report", () => {
  it.effect("is the one of the report's dimension and window, not the first learned over that window", () =>
    run([], (limiter) =>
      Effect.gen(function*() {
        yield* limiter.sync(SCOPE, { dimension: "requests", limit: 100 })
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 1_000 })
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 2_000 })
        expect(limiter.limitsOf(SCOPE).map((limit) => [limit.dimension, limit.amount])).toEqual([
          ["requests", 100],
          ["tokens", 2_000]
        ])
      })))
})

describe("RateLimiter.sync: a report since a permit", () => {
  const tokens = [Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 100_000)])]
  const level = (limiter: RateLimiter.Service) =>
    Effect.map(limiter.peek([SCOPE], {}), (estimate) => estimate.levels[0].level)

  // a day's bucket, which 121 s refill by only 140 tokens (a minute's would be full again whatever the report said)
  it.effect("sent longer ago than the ledger keeps is stale: ignored", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perDay("tokens", 100_000)])], (limiter) =>
      Effect.gen(function*() {
        const permit = yield* limiter.acquire([SCOPE], { tokens: 1_000 })
        yield* permit.markSent
        yield* TestClock.adjust("121 seconds")
        yield* limiter.sync(SCOPE, { dimension: "tokens", window: "1 day", remaining: 0, since: permit })
        expect(yield* level(limiter)).toBeCloseTo(99_000 + 121_000 * 100_000 / 86_400_000, 6)
      })))

  it.effect("a stand-in this limiter did not make (no send point): taken as a report with no permit", () =>
    run(tokens, (limiter) =>
      Effect.gen(function*() {
        const permit = yield* limiter.acquire([SCOPE], { tokens: 1_000 })
        const standIn: RateLimiter.Permit = {
          scopes: permit.scopes,
          charged: permit.charged,
          state: permit.state,
          admittedAt: permit.admittedAt,
          settle: permit.settle,
          release: permit.release,
          markSent: permit.markSent
        }
        yield* limiter.sync(SCOPE, { dimension: "tokens", remaining: 50_000, since: standIn })
        expect(yield* level(limiter)).toBe(50_000)
      })))
})

describe("RateLimiter.snapshot: the calls waiting", () => {
  it.effect("a waiter that left the background lane is not counted while the lane still holds it", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("requests", 1)])], (limiter) =>
      Effect.gen(function*() {
        yield* limiter.acquire([SCOPE], { requests: 1 })
        const first = yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }, { priority: "background" }))
        yield* Effect.fork(limiter.acquire([SCOPE], { requests: 1 }, { priority: "background" }))
        yield* TestClock.adjust("1 second")
        expect((yield* limiter.snapshot).waiting).toEqual({ interactive: 0, background: 2 })
        // interrupted: finished, and left in its lane until a compaction (one waiter is still queued)
        yield* Fiber.interrupt(first)
        yield* TestClock.adjust("1 second")
        expect((yield* limiter.snapshot).waiting).toEqual({ interactive: 0, background: 1 })
      })))
})

describe("RateLimiter.sync: a report adopted both ways that the local level already agrees with", () => {
  // `b`'s report counts `a` (sent just before it) as not seen by the server: replayed over it, 99,998 left, the local
  // level exactly; so it is adopted (not folded in by send order), and `b`'s own refund is the server's already
  it.effect("the call it is about gets no refund when settled lower", () =>
    run([Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", 100_000)])], (limiter) =>
      Effect.gen(function*() {
        const level = () => Effect.map(limiter.peek([SCOPE], {}), (estimate) => estimate.levels[0].level)
        const a = yield* limiter.acquire([SCOPE], { tokens: 1 })
        yield* a.markSent
        const b = yield* limiter.acquire([SCOPE], { tokens: 1 })
        yield* b.markSent
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 100_000, remaining: 99_999, since: b })
        expect(yield* level()).toBe(99_998)
        yield* b.settle({ tokens: 0 })
        expect(yield* level()).toBe(99_998)
      })))
})
