// A waiter's place in its lane (`AcquireOptions.arrivedAt`): a retry of a refused call keeps its first attempt's
// place instead of queueing behind every call that arrived meanwhile (DESIGN.md, invariant 4: FIFO within a lane).
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, Metrics, RateLimiter } from "@sluice/core"
import type { Layer, MetricState } from "effect"
import { Clock, Effect, FastCheck as fc, Fiber, Metric, Random, TestClock } from "effect"
import { slowStore as slowStoreOf } from "./suite/stores.js"

/** The memory store, answering admissions and adjustments after `millis` (as Redis does, later). */
const slowStore = (millis: number) => slowStoreOf(millis, { adjust: true })

const withLimiter = <A, E>(
  f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>,
  store: Layer.Layer<LimiterStore.LimiterStore> = LimiterStore.layerMemory,
  options: Partial<RateLimiter.RateLimiter.Options> = {}
) =>
  // one request a second, one at a time: the order of admission is the order of the queue
  Effect.scoped(
    Effect.flatMap(
      RateLimiter.make({ budgets: [Budget.make("org:a", [Budget.Limit.perSecond("requests", 1)])], ...options }),
      f
    )
  ).pipe(Effect.provide(store), Effect.orDie)

const background = { priority: "background" } as const
/** The background lane's wait histogram (the lane the tests queue in; the metric state is the process's). */
const waits = Effect.map(
  Metric.value(Metric.tagged(Metrics.waitMillis, "lane", "background")),
  (state: MetricState.MetricState.Histogram) => ({ count: state.count, sum: state.sum })
)

/** Forks an acquire of one request in `lane` (with `arrivedAt`), recording `name` in `order` once admitted. */
const forkInto = (
  limiter: RateLimiter.Service,
  order: Array<string>,
  lane: RateLimiter.RateLimiter.AcquireOptions
) =>
(name: string, arrivedAt?: number | Date) =>
  Effect.fork(
    Effect.tap(
      limiter.acquire(["org:a"], { requests: 1 }, { ...lane, arrivedAt }),
      () => Effect.sync(() => order.push(name))
    )
  )

/** At 10 s, the bucket emptied: calls forked into the background lane from then queue, recorded in `order`. */
const queueAt10s = (limiter: RateLimiter.Service) =>
  Effect.gen(function*() {
    yield* TestClock.adjust("10 seconds")
    yield* limiter.acquire(["org:a"], { requests: 1 }, background)
    const order: Array<string> = []
    return { order, fork: forkInto(limiter, order, background) }
  })

describe("RateLimiter arrival order (arrivedAt)", () => {
  it.effect("a call given an early arrival goes behind those that arrived before it, ahead of the later ones", () =>
    withLimiter((limiter) =>
      Effect.gen(function*() {
        const { fork, order } = yield* queueAt10s(limiter)
        const a = yield* fork("a")
        yield* TestClock.adjust("100 millis")
        const b = yield* fork("b")
        yield* TestClock.adjust("100 millis")
        const c = yield* fork("c")
        yield* TestClock.adjust("100 millis")
        const before = yield* waits
        // at 10.3 s, arrived (first) at 10.15 s: after a and b, before c
        const retry = yield* fork("retry", 10_150)
        yield* TestClock.adjust("10 seconds")
        for (const fiber of [a, b, c, retry]) yield* Fiber.join(fiber)
        expect(order).toEqual(["a", "b", "retry", "c"])
        // its wait counts from its own acquire (10.3 s) to its admission (13 s), not from 10.15 s
        const after = yield* waits
        expect(after.count - before.count).toBe(4)
        expect(after.sum - before.sum).toBe(
          (11_000 - 10_000) + (12_000 - 10_100) + (13_000 - 10_300) + (14_000 - 10_200)
        )
      })
    ))

  it.effect("a call given the same arrival as a waiter goes behind it (equal places keep the order of arrival)", () =>
    withLimiter((limiter) =>
      Effect.gen(function*() {
        const { fork, order } = yield* queueAt10s(limiter)
        const a = yield* fork("a") // placed at 10 s
        yield* TestClock.adjust("100 millis")
        const b = yield* fork("b") // placed at 10.1 s
        yield* TestClock.adjust("100 millis")
        const sameAsA = yield* fork("same as a", 10_000)
        const sameAsB = yield* fork("same as b", 10_100)
        yield* TestClock.adjust("10 seconds")
        for (const fiber of [a, b, sameAsA, sameAsB]) yield* Fiber.join(fiber)
        expect(order).toEqual(["a", "same as a", "b", "same as b"])
      })
    ))

  it.effect("an arrival in the future is now, and an early one with nobody waiting changes nothing", () =>
    withLimiter((limiter) =>
      Effect.gen(function*() {
        yield* TestClock.adjust("10 seconds")
        // nobody waiting: admitted at once, whatever its arrival
        const first = yield* limiter.acquire(["org:a"], { requests: 1 }, { arrivedAt: new Date(1_000) })
        expect(first.admittedAt).toBe(10_000)
        const order: Array<string> = []
        const fork = forkInto(limiter, order, {})
        const a = yield* fork("a")
        yield* TestClock.adjust("10 millis")
        const late = yield* fork("late", new Date(60_000)) // a minute ahead: now
        yield* TestClock.adjust("10 millis")
        const b = yield* fork("b")
        yield* TestClock.adjust("10 seconds")
        for (const fiber of [a, late, b]) yield* Fiber.join(fiber)
        expect(order).toEqual(["a", "late", "b"])
      })
    ))

  it.effect("a call placed before the waiter a pass is visiting leaves the pass on that waiter", () =>
    withLimiter(
      (limiter) =>
        Effect.gen(function*() {
          yield* TestClock.adjust("10 seconds")
          const blocker = yield* Effect.fork(limiter.acquire(["org:a"], { requests: 1 }))
          yield* TestClock.adjust("10 millis")
          yield* Fiber.join(blocker) // the bucket is empty until 11.01 s
          // denied by the store at 10.02 s (its fast path); the pass that follows asks the store again until 10.03 s
          const waiter = yield* Effect.fork(limiter.acquire(["org:a"], { requests: 1 }, { maxWait: "3 seconds" }))
          yield* TestClock.adjust("15 millis")
          // placed before it while the pass is at it: the pass visits it once (visited again, it would be blocked
          // by its own jittered wait, past its deadline)
          const retry = yield* Effect.fork(limiter.acquire(["org:a"], { requests: 1 }, { arrivedAt: 9_000 }))
          yield* TestClock.adjust("5 seconds")
          const admitted = [yield* Fiber.join(retry), yield* Fiber.join(waiter)].map((permit) => permit.admittedAt)
          expect(admitted[0]).toBeLessThan(admitted[1])
          expect(admitted[1]).toBeLessThanOrEqual(10_010 + 3_000)
        }),
      slowStore(10),
      // the waiter's first wait jittered to 3.7 times itself (past its deadline: the deadline is checked against the
      // wait itself), the others not jittered
      { wakeJitter: 3 }
    ).pipe(Effect.withRandom(Random.fixed([0.9, 0, 0, 0, 0, 0, 0, 0]))))

  it.effect.prop(
    "admission within a lane is by (arrival, then call order), and the wait counts from the acquire",
    {
      calls: fc.array(
        fc.record({
          // ms after the previous call (all within the first 900 ms: every call is queued before one is admitted)
          gap: fc.integer({ min: 0, max: 45 }),
          // its arrival relative to now: none, earlier (before the queue's start too), or in the future
          arrival: fc.option(fc.integer({ min: -1_500, max: 300 }), { nil: undefined }),
          asDate: fc.boolean()
        }),
        { minLength: 1, maxLength: 16 }
      ),
      asynchronous: fc.boolean()
    },
    ({ asynchronous, calls }) =>
      withLimiter((limiter) =>
        Effect.gen(function*() {
          yield* TestClock.adjust("10 seconds")
          const blocker = yield* Effect.fork(limiter.acquire(["org:a"], { requests: 1 }, background))
          yield* TestClock.adjust("5 millis") // the asynchronous store's answer
          yield* Fiber.join(blocker)
          const before = yield* waits
          const admitted: Array<{ readonly call: number; readonly at: number }> = []
          /** Per call, in the order the calls started: its place (arrival) and its start. */
          const started: Array<{ readonly place: number; readonly at: number }> = []
          let offset = 0
          // each call after its gap, all in one advance of the clock
          const fibers = calls.map(({ arrival, asDate, gap }) =>
            Effect.sleep(offset += gap).pipe(
              Effect.zipRight(Clock.currentTimeMillis),
              Effect.flatMap((now) => {
                const call = started.length
                const at = arrival === undefined ? undefined : now + arrival
                started.push({ place: at === undefined ? now : Math.min(at, now), at: now })
                return Effect.map(
                  limiter.acquire(["org:a"], { requests: 1 }, {
                    ...background,
                    arrivedAt: at === undefined || !asDate ? at : new Date(at)
                  }),
                  (permit) => admitted.push({ call, at: permit.admittedAt })
                )
              }),
              Effect.fork
            )
          )
          const forked = yield* Effect.all(fibers)
          yield* TestClock.adjust("1 minute")
          const pending = []
          for (const fiber of forked) if ((yield* Fiber.poll(fiber))._tag === "None") pending.push(fiber)
          expect(pending.length).toBe(0)
          const expected = started.map((_, call) => call).sort((i, j) => started[i].place - started[j].place || i - j)
          expect(admitted.map((entry) => entry.call)).toEqual(expected)
          // one at a time, a second apart (invariant 1 holds whatever the order)
          for (let i = 1; i < admitted.length; i++) {
            expect(admitted[i].at - admitted[i - 1].at).toBeGreaterThanOrEqual(1_000)
          }
          const after = yield* waits
          expect(after.count - before.count).toBe(calls.length)
          let waited = 0
          for (const entry of admitted) waited += entry.at - started[entry.call].at
          expect(after.sum - before.sum).toBe(waited)
        }), asynchronous ? slowStore(1) : LimiterStore.layerMemory),
    { fastCheck: { numRuns: 30 } }
  )
})
