// The dispatcher's timed wait when an asynchronous store answers its pass: a signal that comes during the pass ends
// the next wait at once, before the timer handed that wait has run. Under TestClock. A timer fiber reused across
// waits (03404bd, reverted in 28178c2) judged "fired" by a flag its fiber set once it ran: here that fiber had not run
// yet, the timer was kept, the next wait's handover was lost, and c was never admitted (the Redis 4-process test's
// workers stopped admitting after the restart). A timer per wait (or a reused one armed at the handover) passes.
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { Clock, Effect, Fiber, Layer, Option, TestClock } from "effect"

/** The memory store, answering admissions after 1 s of virtual time (an asynchronous store, as Redis is). */
const slowStore = Layer.effect(
  LimiterStore.LimiterStore,
  Effect.map(LimiterStore.LimiterStore, (inner): LimiterStore.Service => ({
    ...inner,
    tryAcquire: (debits, gates) => Effect.delay(inner.tryAcquire(debits, gates), 1_000),
    unsafeTryAcquire: undefined
  }))
).pipe(Layer.provide(LimiterStore.layerMemory))

describe("RateLimiter: the dispatcher's timer with an asynchronous store", () => {
  it.effect("a waiter that arrived during a pass is admitted when its wait is over, with no later signal", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ budgets: [Budget.make("org:a", [Budget.Limit.perMinute("requests", 1)])] })
      const admittedAt = Effect.zipRight(limiter.acquire(["org:a"], { requests: 1 }), Clock.currentTimeMillis)
      const a = yield* Effect.fork(admittedAt)
      yield* TestClock.adjust(1_000)
      expect(yield* Fiber.join(a)).toBe(1_000)
      // b is denied at 2,000 (fast path) and by the dispatcher's pass of 2,000 (answered at 3,000), whose timer
      // fires at 60,000 (a pass's waits count from its start)
      const b = yield* Effect.fork(admittedAt)
      yield* TestClock.adjust(59_500)
      // 60,500: the pass that admits b is waiting for the store; c arrives and signals meanwhile
      const c = yield* Effect.fork(admittedAt)
      // b admitted at 61,000; c denied at 62,000 by that pass, which hands its wait to the timer and finds the
      // wake-up already signalled; the next pass (answered at 63,000) hands the timer its wait again, then nothing
      // else happens: only that timer can wake the dispatcher
      for (let i = 0; i < 70; i++) yield* TestClock.adjust(1_000)
      expect(yield* Fiber.join(b)).toBe(61_000)
      expect(Option.map(yield* Fiber.poll(c), (exit) => exit._tag)).toStrictEqual(Option.some("Success"))
      expect(yield* Fiber.join(c)).toBe(121_000)
    }).pipe(Effect.scoped, Effect.provide(slowStore)))
})
