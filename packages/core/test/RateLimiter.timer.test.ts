// The dispatcher's timer: one fiber sleeps to the instant the dispatcher wants to be woken at and sleeps on from
// there, rather than a fiber forked per timed wait (a simulated day has ~9,500 of them; each fork copies the fiber's
// FiberRefs). A wait that must end before the instant the timer sleeps to gets a fresh timer, and is woken on time.
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { Clock, Effect, Fiber, Supervisor, TestClock } from "effect"

/** Counts the fibers started under it (here: the limiter's own, forked as it is made and after), and those ended. */
class Forks extends Supervisor.AbstractSupervisor<number> {
  count = 0
  ended = 0
  get value() {
    return Effect.sync(() => this.count)
  }
  override onStart(): void {
    this.count++
  }
  override onEnd(): void {
    this.ended++
  }
}

const withLimiter = <A, E>(
  budgets: ReadonlyArray<Budget.Budget>,
  f: (limiter: RateLimiter.Service, forks: Forks) => Effect.Effect<A, E>
) => {
  const forks = new Forks()
  return Effect.scoped(
    Effect.flatMap(Effect.supervised(RateLimiter.make({ budgets }), forks), (limiter) => f(limiter, forks))
  ).pipe(Effect.provide(LimiterStore.layerMemory), Effect.orDie)
}

describe("RateLimiter dispatcher timer", () => {
  it.effect("timed waits, one after another, fork no fiber each: the admissions come at the refills", () =>
    withLimiter(
      [Budget.make("pool:a", [Budget.Limit.perMinute("requests", 1)])],
      (limiter, forks) =>
        Effect.gen(function*() {
          const calls = 30
          const fibers = yield* Effect.forEach(
            Array.from({ length: calls }, (_, i) => i),
            () => Effect.fork(Effect.map(limiter.acquire(["pool:a"], { requests: 1 }), (permit) => permit.admittedAt)),
            { concurrency: "unbounded" }
          )
          for (let i = 0; i < calls; i++) yield* TestClock.adjust("1 minute")
          const admitted = yield* Effect.forEach(fibers, Fiber.join)
          expect(admitted).toEqual(Array.from({ length: calls }, (_, i) => i * 60_000))
          // the dispatcher and one timer: a fork per timed wait made 29 more
          expect(yield* forks.value).toBeLessThanOrEqual(2)
        })
    ))

  it.effect("a wait that ends before the instant the timer sleeps to is woken at its own instant", () =>
    withLimiter([
      Budget.make("pool:slow", [Budget.Limit.perMinute("requests", 1)]),
      Budget.make("pool:fast", [Budget.Limit.of("requests", 1, "10 seconds")])
    ], (limiter, forks) =>
      Effect.gen(function*() {
        const at = (scope: string) =>
          Effect.fork(
            Effect.flatMap(limiter.acquire([scope], { requests: 1 }), () => Clock.currentTimeMillis)
          )
        yield* Effect.flatMap(at("pool:slow"), Fiber.join)
        yield* Effect.flatMap(at("pool:fast"), Fiber.join)
        // the timer sleeps to the slow bucket's refill, a minute away
        const slow = yield* at("pool:slow")
        yield* TestClock.adjust("1 second")
        // a wait of 9 more seconds: a timer of its own
        const fast = yield* at("pool:fast")
        yield* TestClock.adjust("9 seconds")
        expect(yield* Fiber.join(fast)).toBe(10_000)
        // and the timer still wakes the slow one at its refill
        yield* TestClock.adjust("50 seconds")
        expect(yield* Fiber.join(slow)).toBe(60_000)
        expect(yield* forks.value).toBeLessThanOrEqual(3)
        // nothing queued now (the timer parks); a wait after it: the timer sleeps again
        expect(yield* Effect.flatMap(at("pool:fast"), Fiber.join)).toBe(60_000)
        const again = yield* at("pool:fast")
        yield* TestClock.adjust("10 seconds")
        expect(yield* Fiber.join(again)).toBe(70_000)
      })))

  it.effect("an idle limiter holds no timer: the last waiter admitted before the timer's instant, the timer ends", () =>
    withLimiter(
      [Budget.make("pool:a", [Budget.Limit.perMinute("requests", 1)])],
      (limiter, forks) =>
        Effect.gen(function*() {
          const first = yield* limiter.acquire(["pool:a"], { requests: 1 })
          const waiting = yield* Effect.fork(limiter.acquire(["pool:a"], { requests: 1 }))
          yield* TestClock.adjust("1 second")
          expect([forks.count, forks.ended]).toEqual([2, 0]) // the dispatcher, and a timer to the refill
          // the refund admits the waiter at once: nothing is queued, and nothing is left for the timer to wake
          yield* first.release
          expect((yield* Fiber.join(waiting)).admittedAt).toBe(1_000)
          yield* TestClock.adjust("1 millis")
          expect([forks.count, forks.ended]).toEqual([2, 1])
        })
    ))
})
