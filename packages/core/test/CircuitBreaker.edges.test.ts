// Edges of the circuit breaker found by mutation testing (`pnpm mutate:breaker`): defaults, exact boundaries,
// late results of calls admitted before a transition, probe slot accounting, the sliding window against a model,
// and what the breaker publishes (metrics, info, transitions, errors).
import { describe, expect, it } from "@effect/vitest"
import { CircuitBreaker } from "@sluice/core"
import type { MetricState } from "effect"
import { Deferred, Duration, Effect, FastCheck as fc, Fiber, Metric, Option, Ref, TestClock } from "effect"

class Boom {
  readonly _tag = "Boom"
}

const fail = Effect.fail(new Boom())

const transitionLog = Effect.gen(function*() {
  const log = yield* Ref.make<Array<string>>([])
  const onTransition = (t: CircuitBreaker.Transition) =>
    Ref.update(log, (xs) => [...xs, `${t.key}:${t.from}->${t.to}@${t.at}`])
  return { log, onTransition }
})

describe("CircuitBreaker edges", () => {
  it.scoped("with no policy it opens on exactly the fifth failure in a row", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make()
      for (let i = 0; i < 4; i++) yield* Effect.exit(breaker.withBreaker("d", fail))
      expect(yield* breaker.state("d")).toBe("Closed")
      expect((yield* breaker.info("d")).consecutiveFailures).toBe(4)
      yield* Effect.exit(breaker.withBreaker("d", fail))
      expect(yield* breaker.state("d")).toBe("Open")
      // default openFor: 30 s
      expect((yield* breaker.info("d")).openUntil).toEqual(Option.some(30_000))
    }))

  it.scoped("a failure-rate policy counts ten calls by default and opens at exactly the minimum and threshold", () =>
    Effect.gen(function*() {
      const byDefault = yield* CircuitBreaker.make({ failureRate: { threshold: 1, window: "1 minute" } })
      for (let i = 0; i < 9; i++) yield* Effect.exit(byDefault.withBreaker("r", fail))
      expect(yield* byDefault.state("r")).toBe("Closed")
      yield* Effect.exit(byDefault.withBreaker("r", fail))
      expect(yield* byDefault.state("r")).toBe("Open")

      const exact = yield* CircuitBreaker.make({ failureRate: { threshold: 0.5, window: "1 minute", minimumCalls: 4 } })
      yield* exact.withBreaker("e", Effect.succeed(1))
      yield* exact.withBreaker("e", Effect.succeed(1))
      yield* Effect.exit(exact.withBreaker("e", fail))
      expect(yield* exact.state("e")).toBe("Closed") // 3 calls: under the minimum
      yield* Effect.exit(exact.withBreaker("e", fail))
      expect(yield* exact.state("e")).toBe("Open") // 2 / 4: at the threshold, at the minimum
    }))

  it.scoped("a rate-only policy never opens on consecutive failures, and the caller gets its own error", () =>
    Effect.gen(function*() {
      const rateOnly = yield* CircuitBreaker.make({ failureRate: { threshold: 0.9, window: "1 minute" } })
      for (let i = 0; i < 3; i++) yield* rateOnly.withBreaker("r", Effect.succeed(1))
      for (let i = 0; i < 6; i++) expect(yield* Effect.flip(rateOnly.withBreaker("r", fail))).toBeInstanceOf(Boom)
      expect(yield* rateOnly.state("r")).toBe("Closed")
      const countOnly = yield* CircuitBreaker.make({ consecutiveFailures: 3 })
      expect(yield* Effect.flip(countOnly.withBreaker("c", fail))).toBeInstanceOf(Boom)
      expect(yield* Effect.flip(countOnly.withBreaker("c", fail))).toBeInstanceOf(Boom)
      const info = yield* countOnly.info("c")
      expect(info).toMatchObject({ state: "Closed", consecutiveFailures: 2, windowCalls: 0, windowFailures: 0 })
      expect(info.openUntil).toEqual(Option.none())
    }))

  it.scoped("successesToClose probes are needed to close; each finished probe frees exactly one slot", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({
        consecutiveFailures: 1,
        openFor: "1 second",
        halfOpenProbes: 2,
        successesToClose: 3
      })
      yield* Effect.exit(breaker.withBreaker("p", fail))
      yield* TestClock.adjust("1 second")
      const gate1 = yield* Deferred.make<void>()
      const gate2 = yield* Deferred.make<void>()
      const p1 = yield* Effect.fork(breaker.withBreaker("p", Deferred.await(gate1)))
      const p2 = yield* Effect.fork(breaker.withBreaker("p", Deferred.await(gate2)))
      yield* Effect.yieldNow()
      expect((yield* breaker.info("p")).probesInFlight).toBe(2)
      yield* Deferred.succeed(gate1, void 0)
      yield* Fiber.join(p1)
      expect(yield* breaker.state("p")).toBe("HalfOpen") // one success of three
      expect((yield* breaker.info("p")).probesInFlight).toBe(1)
      const gate3 = yield* Deferred.make<void>()
      const p3 = yield* Effect.fork(breaker.withBreaker("p", Deferred.await(gate3)))
      yield* Effect.yieldNow()
      expect((yield* breaker.info("p")).probesInFlight).toBe(2)
      const busy = yield* Effect.flip(breaker.withBreaker("p", Effect.void))
      expect(busy).toMatchObject({ _tag: "CircuitOpen", key: "p", state: "HalfOpen" })
      expect((busy as CircuitBreaker.CircuitOpen).retryAfter).toBeUndefined()
      expect(busy.message).toBe("circuit p is half-open (probes busy)")
      yield* Deferred.succeed(gate2, void 0)
      yield* Fiber.join(p2)
      expect(yield* breaker.state("p")).toBe("HalfOpen") // two of three
      yield* Deferred.succeed(gate3, void 0)
      yield* Fiber.join(p3)
      expect(yield* breaker.state("p")).toBe("Closed")
    }))

  it.scoped("an interrupted probe frees one slot of two, not both", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ consecutiveFailures: 1, openFor: "1 second", halfOpenProbes: 2 })
      yield* Effect.exit(breaker.withBreaker("i", fail))
      yield* TestClock.adjust("1 second")
      const a = yield* Effect.fork(breaker.withBreaker("i", Effect.never))
      const b = yield* Effect.fork(breaker.withBreaker("i", Effect.never))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(a)
      expect((yield* breaker.info("i")).probesInFlight).toBe(1)
      const c = yield* Effect.fork(breaker.withBreaker("i", Effect.never))
      yield* Effect.yieldNow()
      expect((yield* breaker.info("i")).probesInFlight).toBe(2)
      expect(yield* Effect.flip(breaker.withBreaker("i", Effect.void))).toMatchObject({ state: "HalfOpen" })
      yield* Fiber.interrupt(b)
      yield* Fiber.interrupt(c)
    }))

  it.scoped("a call admitted before the breaker opened does not move it when it ends late", () =>
    Effect.gen(function*() {
      const { log, onTransition } = yield* transitionLog
      const breaker = yield* CircuitBreaker.make({ consecutiveFailures: 1, openFor: "1 second", onTransition })
      const slowFail = yield* Deferred.make<void>()
      const slowOk = yield* Deferred.make<void>()
      const slowGone = yield* Deferred.make<void>()
      const failing = yield* Effect.fork(breaker.withBreaker("s", Effect.zipRight(Deferred.await(slowFail), fail)))
      const succeeding = yield* Effect.fork(breaker.withBreaker("s", Deferred.await(slowOk)))
      const interrupted = yield* Effect.fork(breaker.withBreaker("s", Deferred.await(slowGone)))
      yield* Effect.yieldNow()
      yield* Effect.exit(breaker.withBreaker("s", fail))
      expect(yield* breaker.state("s")).toBe("Open")
      yield* TestClock.adjust("1 second")
      const probe = yield* Effect.fork(breaker.withBreaker("s", Effect.never))
      yield* Effect.yieldNow()
      expect((yield* breaker.info("s")).probesInFlight).toBe(1)

      // the old calls end while the breaker is half-open: neither reopens it nor frees the probe's slot
      yield* Deferred.succeed(slowFail, void 0)
      yield* Fiber.await(failing)
      yield* Fiber.interrupt(interrupted)
      yield* Deferred.succeed(slowOk, void 0)
      yield* Fiber.join(succeeding)
      expect(yield* breaker.state("s")).toBe("HalfOpen")
      expect((yield* breaker.info("s")).probesInFlight).toBe(1)
      expect(yield* Effect.flip(breaker.withBreaker("s", Effect.void))).toMatchObject({ state: "HalfOpen" })
      expect(yield* Ref.get(log)).toEqual(["s:Closed->Open@0", "s:Open->HalfOpen@1000"])
      yield* Fiber.interrupt(probe)
    }))

  it.scoped("an open breaker's counts are frozen: a late success does not clear them", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ consecutiveFailures: 2 })
      const gate = yield* Deferred.make<void>()
      const late = yield* Effect.fork(breaker.withBreaker("f", Deferred.await(gate)))
      yield* Effect.yieldNow()
      yield* Effect.exit(breaker.withBreaker("f", fail))
      yield* Effect.exit(breaker.withBreaker("f", fail))
      expect(yield* breaker.state("f")).toBe("Open")
      yield* Deferred.succeed(gate, void 0)
      yield* Fiber.join(late)
      expect((yield* breaker.info("f")).consecutiveFailures).toBe(2)
    }))

  it.scoped("a probe that ends after a trip or a reset does not undo it", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ consecutiveFailures: 1, openFor: "1 second" })
      // a probe succeeds after an operator tripped the breaker: it stays open
      yield* Effect.exit(breaker.withBreaker("t", fail))
      yield* TestClock.adjust("1 second")
      const okGate = yield* Deferred.make<void>()
      const ok = yield* Effect.fork(breaker.withBreaker("t", Deferred.await(okGate)))
      yield* Effect.yieldNow()
      yield* breaker.trip("t")
      yield* Deferred.succeed(okGate, void 0)
      yield* Fiber.join(ok)
      expect(yield* breaker.state("t")).toBe("Open")

      // a probe fails after an operator reset it: it stays closed
      yield* TestClock.adjust("1 second")
      expect(yield* breaker.state("t")).toBe("HalfOpen")
      const failGate = yield* Deferred.make<void>()
      const failing = yield* Effect.fork(breaker.withBreaker("t", Effect.zipRight(Deferred.await(failGate), fail)))
      yield* Effect.yieldNow()
      yield* breaker.reset("t")
      yield* Deferred.succeed(failGate, void 0)
      yield* Fiber.await(failing)
      expect(yield* breaker.state("t")).toBe("Closed")
    }))

  it.scoped("closing forgets the window; reset and trip of a key already there are no transitions", () =>
    Effect.gen(function*() {
      const { log, onTransition } = yield* transitionLog
      const breaker = yield* CircuitBreaker.make({
        failureRate: { threshold: 0.5, window: "1 minute", minimumCalls: 2 },
        openFor: "1 second",
        onTransition
      })
      yield* breaker.reset("w") // closed already
      yield* Effect.exit(breaker.withBreaker("w", fail))
      yield* Effect.exit(breaker.withBreaker("w", fail))
      expect(yield* breaker.state("w")).toBe("Open")
      yield* breaker.trip("w") // open already
      yield* TestClock.adjust("1 second")
      yield* breaker.withBreaker("w", Effect.void)
      expect(yield* breaker.state("w")).toBe("Closed")
      expect(yield* breaker.info("w")).toMatchObject({ windowCalls: 0, windowFailures: 0, consecutiveFailures: 0 })
      // a single failure after the close: 1 / 1, under the minimum of two calls
      yield* Effect.exit(breaker.withBreaker("w", fail))
      expect(yield* breaker.state("w")).toBe("Closed")
      // states() reports no transition of its own when nothing is due
      yield* breaker.states
      expect(yield* Ref.get(log)).toEqual(["w:Closed->Open@0", "w:Open->HalfOpen@1000", "w:HalfOpen->Closed@1000"])
    }))

  it.scoped("the open error names the key and the time left; info shows the reopening time only while open", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ consecutiveFailures: 1, openFor: "10 seconds" })
      expect((yield* breaker.info("o")).openUntil).toEqual(Option.none())
      yield* Effect.exit(breaker.withBreaker("o", fail))
      yield* TestClock.adjust("4 seconds")
      const error = yield* Effect.flip(breaker.withBreaker("o", Effect.void))
      expect(error.message).toBe("circuit o is open")
      expect(Duration.toMillis((error as CircuitBreaker.CircuitOpen).retryAfter!)).toBe(6_000)
      yield* TestClock.adjust("6 seconds")
      expect((yield* breaker.info("o")).openUntil).toEqual(Option.none())
    }))

  it.scoped("the state gauge reads 0 closed, 2 open, 1 half-open; refusals are counted per key", () =>
    Effect.gen(function*() {
      const key = "gauge-key"
      const gauge = CircuitBreaker.stateGauge.pipe(Metric.tagged("key", key))
      const refused = CircuitBreaker.rejectionsTotal.pipe(Metric.tagged("key", key))
      const read = Effect.map(Metric.value(gauge), (s) => (s as MetricState.MetricState.Gauge<number>).value)
      const breaker = yield* CircuitBreaker.make({ consecutiveFailures: 1, openFor: "1 second" })
      yield* Effect.exit(breaker.withBreaker(key, fail))
      expect(yield* read).toBe(2)
      yield* Effect.exit(breaker.withBreaker(key, Effect.void))
      yield* Effect.exit(breaker.withBreaker(key, Effect.void))
      expect(((yield* Metric.value(refused)) as MetricState.MetricState.Counter<number>).count).toBe(2)
      yield* TestClock.adjust("1 second")
      expect(yield* read).toBe(1)
      yield* breaker.withBreaker(key, Effect.void)
      expect(yield* read).toBe(0)
    }))

  it.scoped("a key's state gauge is there (0, closed) from its first call, before any transition", () =>
    Effect.gen(function*() {
      const key = "gauge-first-call"
      const series = Effect.map(
        Metric.snapshot,
        (pairs) =>
          pairs.filter((pair) =>
            pair.metricKey.name === "sluice_breaker_state" &&
            pair.metricKey.tags.some((tag) => tag.key === "key" && tag.value === key)
          )
      )
      const breaker = yield* CircuitBreaker.make({ consecutiveFailures: 3 })
      expect(yield* series).toHaveLength(0)
      yield* breaker.withBreaker(key, Effect.void)
      const [pair] = yield* series
      expect(pair?.metricState).toMatchObject({ value: 0 })
      expect((yield* breaker.info(key)).state).toBe("Closed")
    }))

  it.effect("the metrics keep their published names", () =>
    Effect.gen(function*() {
      yield* Metric.update(CircuitBreaker.transitionsTotal.pipe(Metric.tagged("key", "names")), 1)
      yield* Metric.update(CircuitBreaker.rejectionsTotal.pipe(Metric.tagged("key", "names")), 1)
      yield* Metric.set(CircuitBreaker.stateGauge.pipe(Metric.tagged("key", "names")), 1)
      const names = new Set((yield* Metric.snapshot).map((pair) => pair.metricKey.name))
      for (
        const name of ["sluice_breaker_transitions_total", "sluice_breaker_rejections_total", "sluice_breaker_state"]
      ) {
        expect(names.has(name)).toBe(true)
      }
    }))

  // The window as a model: every counted call at time t stays in it while floor(t / slot) > floor(now / slot) - 10,
  // where a slot is a tenth of the window. A threshold above 1 keeps the breaker closed so every call is counted.
  it.effect.prop(
    "the sliding window counts what a model of its ten slots counts",
    {
      window: fc.integer({ min: 10, max: 5_000 }),
      steps: fc.array(
        fc.record({ wait: fc.integer({ min: 0, max: 3_000 }), outcome: fc.constantFrom("ok", "fail", "ignored") }),
        { minLength: 1, maxLength: 40 }
      )
    },
    ({ steps, window }) =>
      Effect.scoped(Effect.gen(function*() {
        const breaker = yield* CircuitBreaker.make({
          failureRate: { threshold: 2, window: Duration.millis(window), minimumCalls: 1 },
          isFailure: (e) => e instanceof Boom
        })
        const slot = (t: number) => Math.floor(t / Math.max(1, window / 10))
        const events: Array<{ readonly at: number; readonly failed: boolean }> = []
        let now = 0
        for (const { outcome, wait } of steps) {
          yield* TestClock.adjust(Duration.millis(wait))
          now += wait
          const call: Effect.Effect<void, unknown> = outcome === "ok"
            ? Effect.void
            : outcome === "fail"
            ? fail
            : Effect.fail("ignored")
          yield* Effect.exit(breaker.withBreaker("m", call))
          if (outcome !== "ignored") events.push({ at: now, failed: outcome === "fail" })
          const live = events.filter((e) => slot(e.at) > slot(now) - 10)
          const info = yield* breaker.info("m")
          expect(info.state).toBe("Closed")
          expect({ calls: info.windowCalls, failures: info.windowFailures }).toEqual({
            calls: live.length,
            failures: live.filter((e) => e.failed).length
          })
        }
      })),
    { fastCheck: { numRuns: 40 } }
  )
})
