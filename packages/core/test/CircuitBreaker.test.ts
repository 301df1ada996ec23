import { describe, expect, it } from "@effect/vitest"
import { CircuitBreaker } from "@sluice/core"
import type { MetricState } from "effect"
import { Deferred, Duration, Effect, Exit, Fiber, Metric, Option, Ref, TestClock } from "effect"

class Boom {
  readonly _tag = "Boom"
}
class Invalid {
  readonly _tag = "Invalid"
}

const failWith = (e: unknown) => Effect.fail(e)

describe("CircuitBreaker", () => {
  it.scoped("opens after consecutive failures, refuses at once, half-opens at the exact virtual time", () =>
    Effect.gen(function*() {
      const transitions = yield* Ref.make<Array<string>>([])
      const breaker = yield* CircuitBreaker.make({
        consecutiveFailures: 3,
        openFor: "30 seconds",
        onTransition: (t) => Ref.update(transitions, (xs) => [...xs, `${t.from}->${t.to}@${t.at}`])
      })
      const run = (self: Effect.Effect<string, unknown>) => Effect.exit(breaker.withBreaker("gpt-4o", self))

      yield* run(failWith(new Boom()))
      yield* run(failWith(new Boom()))
      expect(yield* breaker.state("gpt-4o")).toBe("Closed")
      yield* TestClock.adjust("1 second")
      yield* run(failWith(new Boom()))
      expect(yield* breaker.state("gpt-4o")).toBe("Open")

      const calls = yield* Ref.make(0)
      const refused = yield* run(Ref.update(calls, (n) => n + 1).pipe(Effect.as("x")))
      expect(yield* Ref.get(calls)).toBe(0)
      expect(Exit.isFailure(refused)).toBe(true)
      const error = yield* Effect.flip(breaker.withBreaker("gpt-4o", Effect.succeed("x")))
      expect(error).toBeInstanceOf(CircuitBreaker.CircuitOpen)
      expect(error).toMatchObject({ _tag: "CircuitOpen", key: "gpt-4o", state: "Open" })
      expect(Duration.toMillis((error as CircuitBreaker.CircuitOpen).retryAfter!)).toBe(30_000)

      yield* TestClock.adjust(Duration.millis(29_999))
      expect(yield* breaker.state("gpt-4o")).toBe("Open")
      yield* TestClock.adjust(Duration.millis(1))
      // the Clock moved it: the transition is recorded at 31 000 ms without any call
      expect(yield* Ref.get(transitions)).toEqual(["Closed->Open@1000", "Open->HalfOpen@31000"])
      expect(yield* breaker.state("gpt-4o")).toBe("HalfOpen")

      expect(yield* breaker.withBreaker("gpt-4o", Effect.succeed("probe"))).toBe("probe")
      expect(yield* breaker.state("gpt-4o")).toBe("Closed")
      expect(yield* Ref.get(transitions)).toEqual([
        "Closed->Open@1000",
        "Open->HalfOpen@31000",
        "HalfOpen->Closed@31000"
      ])
    }))

  it.scoped("keys are independent and readable for routing", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ consecutiveFailures: 1 })
      yield* Effect.exit(breaker.withBreaker("a", failWith(new Boom())))
      yield* breaker.withBreaker("b", Effect.succeed(1))
      const states = yield* breaker.states
      expect(Object.fromEntries(states)).toEqual({ a: "Open", b: "Closed" })
      const info = yield* breaker.info("a")
      expect(info.openUntil).toEqual(Option.some(30_000))
    }))

  it.scoped("a success resets the consecutive count; ignored errors never count", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({
        consecutiveFailures: 2,
        isFailure: (e) => e instanceof Boom
      })
      const k = "m"
      yield* Effect.exit(breaker.withBreaker(k, failWith(new Boom())))
      yield* breaker.withBreaker(k, Effect.succeed(1))
      yield* Effect.exit(breaker.withBreaker(k, failWith(new Boom())))
      expect(yield* breaker.state(k)).toBe("Closed")
      for (let i = 0; i < 10; i++) yield* Effect.exit(breaker.withBreaker(k, failWith(new Invalid())))
      expect(yield* breaker.state(k)).toBe("Closed")
      expect((yield* breaker.info(k)).consecutiveFailures).toBe(1)
      yield* Effect.exit(breaker.withBreaker(k, failWith(new Boom())))
      expect(yield* breaker.state(k)).toBe("Open")
    }))

  it.scoped("defects count unless told otherwise; interruptions never do", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ consecutiveFailures: 1 })
      yield* Effect.exit(breaker.withBreaker("d", Effect.die("boom")))
      expect(yield* breaker.state("d")).toBe("Open")
      const lenient = yield* CircuitBreaker.make({ consecutiveFailures: 1, countDefects: false })
      yield* Effect.exit(lenient.withBreaker("d", Effect.die("boom")))
      yield* Effect.exit(lenient.withBreaker("d", Effect.interrupt))
      expect(yield* lenient.state("d")).toBe("Closed")
    }))

  it.scoped("failure rate over a sliding window, with a minimum number of calls", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({
        failureRate: { threshold: 0.5, window: "10 seconds", minimumCalls: 10 },
        openFor: "5 seconds"
      })
      const k = "rate"
      // 4 failures out of 8: below the minimum number of calls
      for (let i = 0; i < 8; i++) {
        yield* Effect.exit(breaker.withBreaker(k, i % 2 === 0 ? failWith(new Boom()) : Effect.succeed(1)))
      }
      expect(yield* breaker.state(k)).toBe("Closed")
      // the window slides past them
      yield* TestClock.adjust("11 seconds")
      expect((yield* breaker.info(k)).windowCalls).toBe(0)
      for (let i = 0; i < 6; i++) yield* breaker.withBreaker(k, Effect.succeed(1))
      for (let i = 0; i < 3; i++) yield* Effect.exit(breaker.withBreaker(k, failWith(new Boom())))
      expect(yield* breaker.state(k)).toBe("Closed") // 3 / 9, below minimum
      yield* Effect.exit(breaker.withBreaker(k, failWith(new Boom())))
      expect(yield* breaker.state(k)).toBe("Closed") // 4 / 10 = 40%
      yield* Effect.exit(breaker.withBreaker(k, failWith(new Boom())))
      expect(yield* breaker.state(k)).toBe("Closed") // 5 / 11 = 45%
      yield* Effect.exit(breaker.withBreaker(k, failWith(new Boom())))
      expect(yield* breaker.state(k)).toBe("Open") // 6 / 12 = 50%
      yield* TestClock.adjust("5 seconds")
      expect(yield* breaker.state(k)).toBe("HalfOpen")
    }))

  it.scoped("half-open admits a bounded number of probes; a failed probe reopens for longer", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({
        consecutiveFailures: 1,
        openFor: "10 seconds",
        openBackoff: 2,
        maxOpenFor: "30 seconds",
        halfOpenProbes: 2,
        successesToClose: 2
      })
      const k = "p"
      yield* Effect.exit(breaker.withBreaker(k, failWith(new Boom())))
      yield* TestClock.adjust("10 seconds")
      expect(yield* breaker.state(k)).toBe("HalfOpen")

      const gate = yield* Deferred.make<void>()
      const probe1 = yield* Effect.fork(breaker.withBreaker(k, Deferred.await(gate).pipe(Effect.as(1))))
      const probe2 = yield* Effect.fork(breaker.withBreaker(k, Deferred.await(gate).pipe(Effect.as(2))))
      yield* Effect.yieldNow()
      expect((yield* breaker.info(k)).probesInFlight).toBe(2)
      const third = yield* Effect.flip(breaker.withBreaker(k, Effect.succeed(3)))
      expect(third).toMatchObject({ _tag: "CircuitOpen", state: "HalfOpen" })
      yield* Deferred.succeed(gate, void 0)
      expect(yield* Fiber.join(probe1)).toBe(1)
      expect(yield* Fiber.join(probe2)).toBe(2)
      expect(yield* breaker.state(k)).toBe("Closed")

      // open again (opens counter reset by the close): 10 s; a failed probe doubles it: 20 s, then 30 s (cap)
      yield* Effect.exit(breaker.withBreaker(k, failWith(new Boom())))
      expect((yield* breaker.info(k)).openUntil).toEqual(Option.some(20_000))
      yield* TestClock.adjust("10 seconds")
      yield* Effect.exit(breaker.withBreaker(k, failWith(new Boom())))
      expect((yield* breaker.info(k)).openUntil).toEqual(Option.some(40_000))
      yield* TestClock.adjust("20 seconds")
      expect(yield* breaker.state(k)).toBe("HalfOpen")
      yield* Effect.exit(breaker.withBreaker(k, failWith(new Boom())))
      expect((yield* breaker.info(k)).openUntil).toEqual(Option.some(70_000))
    }))

  it.scoped("an interrupted probe frees its slot", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ consecutiveFailures: 1, openFor: "1 second" })
      yield* Effect.exit(breaker.withBreaker("i", failWith(new Boom())))
      yield* TestClock.adjust("1 second")
      const probe = yield* Effect.fork(breaker.withBreaker("i", Effect.never))
      yield* Effect.yieldNow()
      expect((yield* breaker.info("i")).probesInFlight).toBe(1)
      yield* Fiber.interrupt(probe)
      expect((yield* breaker.info("i")).probesInFlight).toBe(0)
      expect(yield* breaker.withBreaker("i", Effect.succeed("ok"))).toBe("ok")
      expect(yield* breaker.state("i")).toBe("Closed")
    }))

  it.scoped("reset and trip; transitions are counted in metrics", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ consecutiveFailures: 5 })
      yield* breaker.trip("metrics-key")
      expect(yield* breaker.state("metrics-key")).toBe("Open")
      yield* breaker.reset("metrics-key")
      expect(yield* breaker.state("metrics-key")).toBe("Closed")
      const opened = yield* Metric.value(
        CircuitBreaker.transitionsTotal.pipe(
          Metric.tagged("key", "metrics-key"),
          Metric.tagged("from", "Closed"),
          Metric.tagged("to", "Open")
        )
      )
      expect((opened as MetricState.MetricState.Counter<number>).count).toBe(1)
    }))

  it.scoped("the layer and the context accessors", () =>
    Effect.gen(function*() {
      const result = yield* Effect.succeed("hi").pipe(CircuitBreaker.withBreaker("k"))
      expect(result).toBe("hi")
      expect(yield* CircuitBreaker.state("k")).toBe("Closed")
    }).pipe(Effect.provide(CircuitBreaker.layer())))
})
