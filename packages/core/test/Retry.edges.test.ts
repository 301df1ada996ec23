// Edges of the retry policies found by mutation testing (`pnpm mutate:retry`): defaults and how kinds inherit them,
// exact time-cap boundaries, unbounded waits, what a stop reports (steps, metrics, the deadline error), and the
// retry budget's sliding window against a model.
import { describe, expect, it } from "@effect/vitest"
import { Retry } from "@sluice/core"
import type { MetricState } from "effect"
import {
  Chunk,
  Duration,
  Effect,
  Either,
  FastCheck as fc,
  Fiber,
  Metric,
  Option,
  Random,
  Ref,
  Schedule,
  TestClock
} from "effect"

class Failure {
  readonly retryable: boolean | undefined = undefined
  constructor(
    readonly _tag: string,
    readonly retryAfter: Duration.Duration | undefined = undefined
  ) {}
}

const fail = (tag: string, retryAfter?: Duration.DurationInput) =>
  new Failure(tag, retryAfter === undefined ? undefined : Duration.decode(retryAfter))

const policy = (kinds: Retry.Options<Failure>["kinds"], extra: Partial<Retry.Options<Failure>> = {}) =>
  Retry.make<Failure>({ ...Retry.tagged, kinds, ...extra })

const millis = (ds: ReadonlyArray<Duration.Duration>) => ds.map(Duration.toMillis)

const run = (p: Schedule.Schedule<Retry.Step, Failure>, errors: ReadonlyArray<Failure>, at = 0) =>
  Effect.map(Schedule.run(p, at, errors), Chunk.toReadonlyArray)

const count = (metric: Metric.Metric.Counter<number>) =>
  Effect.map(Metric.value(metric), (s) => (s as MetricState.MetricState.Counter<number>).count)

describe("Retry edges", () => {
  it("defaults: 1 s base, factor 2, full jitter, five retries, a 30 s cap, the server's hint honoured", () => {
    const p = Retry.make<Failure>({ kind: (e) => e._tag, kinds: { K: true } })
    const six = Array.from({ length: 6 }, () => fail("K"))
    expect(Retry.delays(p, six)).toEqual({
      delays: [500, 1000, 2000, 4000, 8000].map((n) => Duration.millis(n)),
      stop: Option.some("MaxRetries")
    })
    // no draws given (or none at all): 0.5
    expect(Retry.delays(p, six, { random: [] })).toEqual(Retry.delays(p, six))
    expect(millis(Retry.delays(p, six, { random: [0.999999] }).delays).map(Math.round)).toEqual([
      1000,
      2000,
      4000,
      8000,
      16_000
    ])
    const capped = Retry.make<Failure>({ kind: (e) => e._tag, kinds: { K: { maxRetries: 7, jitter: "none" } } })
    expect(millis(Retry.delays(capped, Array.from({ length: 7 }, () => fail("K"))).delays)).toEqual([
      1000,
      2000,
      4000,
      8000,
      16_000,
      30_000,
      30_000
    ])
    // without `tagged`, the error's own retryAfter is not read: the hint comes only from `retryAfter`
    expect(millis(Retry.delays(p, [fail("K", "1 minute")]).delays)).toEqual([500])
    const hinted = Retry.make<Failure>({ kind: (e) => e._tag, retryAfter: (e) => e.retryAfter, kinds: { K: true } })
    expect(millis(Retry.delays(hinted, [fail("K", "1 minute")]).delays)).toEqual([60_000])
  })

  it("a kind takes each setting it leaves out from `defaults`, and overrides the ones it gives", () => {
    const p = policy(
      { Inherits: true, Overrides: { base: "10 millis", factor: 3, maxRetries: 1, honorRetryAfter: true } },
      {
        defaults: {
          base: "100 millis",
          factor: 10,
          maxDelay: "5 seconds",
          maxRetries: 3,
          jitter: "none",
          honorRetryAfter: false
        }
      }
    )
    expect(Retry.delays(p, Array.from({ length: 4 }, () => fail("Inherits", "1 minute")))).toEqual({
      delays: [100, 1000, 5000].map((n) => Duration.millis(n)),
      stop: Option.some("MaxRetries")
    })
    expect(Retry.delays(p, [fail("Overrides"), fail("Overrides")])).toEqual({
      delays: [Duration.millis(10)],
      stop: Option.some("MaxRetries")
    })
    expect(millis(Retry.delays(p, [fail("Overrides", "2 seconds")]).delays)).toEqual([2000])
  })

  it("a kind named like an Object method is not configured by the prototype", () => {
    const p = policy({ Busy: true })
    for (const kind of ["constructor", "toString", "hasOwnProperty", "__proto__"]) {
      expect(Retry.delays(p, [fail(kind)]).stop).toEqual(Option.some("NotConfigured"))
    }
  })

  it("a custom `retryable` refuses on its own; `tagged` reads retryable and retryAfter", () => {
    const p = policy({ Busy: true }, { retryable: (e) => e.retryAfter === undefined })
    expect(Retry.delays(p, [fail("Busy")]).delays).toHaveLength(1)
    expect(Retry.delays(p, [fail("Busy", "1 second")]).stop).toEqual(Option.some("NotRetryable"))
    expect(Retry.tagged.kind({ _tag: "X" })).toBe("X")
    expect(Retry.tagged.retryable({})).toBe(true)
    expect(Retry.tagged.retryable({ retryable: true })).toBe(true)
    expect(Retry.tagged.retryable({ retryable: false })).toBe(false)
    expect(Retry.tagged.retryAfter({ retryAfter: Duration.seconds(3) })).toEqual(Duration.seconds(3))
    expect(Retry.tagged.retryAfter({})).toBeUndefined()
  })

  it("time caps: a wait ending exactly at the cap is waited; one millisecond past stops", () => {
    const p = policy({ K: { base: "10 seconds", jitter: "none", maxRetries: 10 } }, { maxElapsed: "30 seconds" })
    // 10 s then 20 s: the second ends at 30 s exactly
    expect(Retry.delays(p, Array.from({ length: 5 }, () => fail("K")))).toEqual({
      delays: [Duration.seconds(10), Duration.seconds(20)],
      stop: Option.some("MaxElapsed")
    })
    // the cap counts from the first failure, not from time zero
    expect(millis(Retry.delays(p, [fail("K"), fail("K")], { now: 1_000_000 }).delays)).toEqual([10_000, 20_000])
    const tight = policy({ K: { base: "10 seconds", jitter: "none" } }, { maxElapsed: "29999 millis" })
    expect(millis(Retry.delays(tight, [fail("K"), fail("K")]).delays)).toEqual([10_000])
    const q = policy({ K: { base: "10 seconds", jitter: "none" } })
    expect(millis(Retry.delays(q, [fail("K")], { now: 5000, deadline: 15_000 }).delays)).toEqual([10_000])
    expect(Retry.delays(q, [fail("K")], { now: 5001, deadline: 15_000 }).stop).toEqual(Option.some("Deadline"))
    // a deadline replaces maxElapsed
    expect(millis(Retry.delays(p, [fail("K"), fail("K"), fail("K")], { deadline: 1_000_000 }).delays)).toEqual([
      10_000,
      20_000,
      30_000
    ])
  })

  it("an unbounded wait stops as MaxElapsed, or Deadline when there is one; a negative hint counts as none", () => {
    const p = policy({ K: { base: "1 second", jitter: "none" } })
    expect(Retry.delays(p, [fail("K", Duration.infinity)])).toEqual({ delays: [], stop: Option.some("MaxElapsed") })
    expect(Retry.delays(p, [fail("K", Duration.infinity)], { deadline: 1e12 }).stop).toEqual(Option.some("Deadline"))
    const unboundedBackoff = policy({ K: { base: Duration.infinity, maxDelay: Duration.infinity, jitter: "none" } })
    expect(Retry.delays(unboundedBackoff, [fail("K")]).stop).toEqual(Option.some("MaxElapsed"))
    const negative = Retry.make<Failure>({
      kind: (e) => e._tag,
      retryAfter: () => Duration.millis(-5000),
      kinds: { K: { jitter: "none" } }
    })
    expect(millis(Retry.delays(negative, [fail("K")]).delays)).toEqual([1000])
  })

  it("decorrelated jitter grows from the previous backoff, not from a server hint", () => {
    const p = policy({ K: { base: "1 second", maxDelay: "1 hour", jitter: "decorrelated", maxRetries: 3 } })
    // u = 1 draws the top of [base, 3 × previous]: 3 s, then 9 s, although the first wait was 60 s
    expect(millis(Retry.delays(p, [fail("K", "1 minute"), fail("K"), fail("K")], { random: [1] }).delays)).toEqual([
      60_000,
      9000,
      27_000
    ])
    // the draws given are used in turn, cycling
    expect(millis(Retry.delays(p, [fail("K"), fail("K"), fail("K")], { random: [0, 1] }).delays)).toEqual([
      1000,
      3000,
      1000
    ])
  })

  it.effect("a step says the attempt, the backoff and the server's hint; a stop says why, after how many", () =>
    Effect.gen(function*() {
      const p = policy({ K: { base: "1 second", jitter: "none", maxRetries: 2 } })
      const steps = yield* run(p, [fail("K", "3 seconds"), fail("K"), fail("K")])
      expect(steps).toEqual([
        {
          _tag: "Retrying",
          kind: "K",
          attempt: 1,
          delay: Duration.seconds(3),
          backoff: Duration.seconds(1),
          retryAfter: Option.some(Duration.seconds(3))
        },
        {
          _tag: "Retrying",
          kind: "K",
          attempt: 2,
          delay: Duration.seconds(2),
          backoff: Duration.seconds(2),
          retryAfter: Option.none()
        },
        { _tag: "Stopped", kind: "K", reason: "MaxRetries", retries: 2, wait: Option.none() }
      ])
      const guarded = Retry.make<Failure>({
        ...Retry.tagged,
        is: (u): u is Failure => u instanceof Failure,
        kinds: { K: true }
      })
      expect(yield* run(guarded, [{ _tag: "K" } as unknown as Failure])).toEqual([
        { _tag: "Stopped", kind: "unknown", reason: "NotRetryable", retries: 0, wait: Option.none() }
      ])
      const late = Retry.schedule(p, { deadline: 10_000 })
      expect(yield* run(late, [fail("K", "20 seconds")], 1000)).toEqual([
        { _tag: "Stopped", kind: "K", reason: "Deadline", retries: 0, wait: Option.some(Duration.seconds(20)) }
      ])
    }))

  it.effect("retries and stops are counted by kind and reason", () =>
    Effect.gen(function*() {
      const p = policy({ MetricKind: { jitter: "none", maxRetries: 1 } })
      const retries = Retry.retriesTotal.pipe(Metric.tagged("kind", "MetricKind"))
      const stops = Retry.stopsTotal.pipe(Metric.tagged("reason", "MaxRetries"), Metric.tagged("kind", "MetricKind"))
      const before = [yield* count(retries), yield* count(stops)]
      yield* run(p, [fail("MetricKind"), fail("MetricKind")])
      expect([yield* count(retries), yield* count(stops)]).toEqual([before[0] + 1, before[1] + 1])
      const names = new Set((yield* Metric.snapshot).map((pair) => pair.metricKey.name))
      expect(names.has("sluice_retry_attempts_total")).toBe(true)
      expect(names.has("sluice_retry_stops_total")).toBe(true)
    }))

  it.effect("a spent budget stops the schedule with reason Budget", () =>
    Effect.gen(function*() {
      const budget = yield* Retry.makeBudget({ ratio: 0, minRetries: 1 })
      const p = policy({ BudgetKind: { jitter: "none" } })
      const steps = yield* run(Retry.schedule(p, { budget }), [fail("BudgetKind"), fail("BudgetKind")])
      expect(steps.map((s) => s._tag === "Stopped" ? `stop:${s.reason}:${s.retries}` : "retry")).toEqual([
        "retry",
        "stop:Budget:1"
      ])
      const stops = Retry.stopsTotal.pipe(Metric.tagged("reason", "Budget"), Metric.tagged("kind", "BudgetKind"))
      expect(yield* count(stops)).toBe(1)
    }))

  it.effect("a budget's defaults: ten retries, plus a fifth of the first attempts, over ten seconds", () =>
    Effect.gen(function*() {
      const budget = yield* Retry.makeBudget()
      expect(yield* budget.snapshot).toEqual({ firstAttempts: 0, retries: 0, available: 10 })
      for (let i = 0; i < 12; i++) yield* budget.recordFirstAttempt
      expect((yield* budget.snapshot).available).toBe(12)
      for (let i = 0; i < 12; i++) expect(yield* budget.tryRetry).toBe(true)
      expect(yield* budget.tryRetry).toBe(false)
      yield* TestClock.adjust("9999 millis")
      expect((yield* budget.snapshot).retries).toBe(12)
      yield* TestClock.adjust("1 millis")
      expect(yield* budget.snapshot).toEqual({ firstAttempts: 0, retries: 0, available: 10 })
    }))

  // The budget's window as a model: an event at t counts while floor(t / slot) > floor(now / slot) - 10, where a
  // slot is a tenth of the window; a retry is allowed while retries + 1 ≤ floor + ratio × first attempts.
  it.effect.prop(
    "the retry budget allows what a model of its window allows",
    {
      window: fc.integer({ min: 10, max: 5000 }),
      ratio: fc.constantFrom(0, 0.1, 0.5, 1),
      floor: fc.integer({ min: 0, max: 4 }),
      steps: fc.array(
        fc.record({ wait: fc.integer({ min: 0, max: 2000 }), op: fc.constantFrom("first", "retry", "retry") }),
        { minLength: 1, maxLength: 50 }
      )
    },
    ({ floor, ratio, steps, window }) =>
      Effect.gen(function*() {
        const budget = yield* Retry.makeBudget({ ratio, minRetries: floor, window: Duration.millis(window) })
        const slot = (t: number) => Math.floor(t / Math.max(1, window / 10))
        const firsts: Array<number> = []
        const retries: Array<number> = []
        let now = 0
        for (const { op, wait } of steps) {
          yield* TestClock.adjust(Duration.millis(wait))
          now += wait
          const live = (xs: ReadonlyArray<number>) => xs.filter((t) => slot(t) > slot(now) - 10).length
          if (op === "first") {
            yield* budget.recordFirstAttempt
            firsts.push(now)
          } else {
            const allowed = live(retries) + 1 <= floor + ratio * live(firsts)
            expect(yield* budget.tryRetry).toBe(allowed)
            if (allowed) retries.push(now)
          }
          expect(yield* budget.snapshot).toEqual({
            firstAttempts: live(firsts),
            retries: live(retries),
            available: Math.max(0, Math.floor(floor + ratio * live(firsts) - live(retries)))
          })
        }
      }),
    { fastCheck: { numRuns: 40 } }
  )

  it.effect("Retry.retry: an explicit deadline wins over a timeout; a timeout counts from the call", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("1 minute")
      const p = policy({ K: { base: "10 seconds", jitter: "none" } })
      const calls = yield* Ref.make(0)
      const once = Effect.zipRight(Ref.update(calls, (n) => n + 1), Effect.fail(fail("K")))
      const byTimeout = yield* Effect.flip(Retry.retry(once, p, { timeout: "5 seconds" }))
      expect(byTimeout).toBeInstanceOf(Retry.RetryDeadlineExceeded)
      expect(byTimeout).toMatchObject({ deadline: 65_000, retries: 0, kind: "K" })
      expect((byTimeout as Retry.RetryDeadlineExceeded).message).toBe("retry of K needs 10s, beyond the deadline")
      const both = yield* Effect.flip(Retry.retry(once, p, { timeout: "1 hour", deadline: 65_000 }))
      expect(both).toMatchObject({ _tag: "RetryDeadlineExceeded", deadline: 65_000 })
      expect(yield* Ref.get(calls)).toBe(2)
    }))

  it.effect("Retry.retry with a deadline still returns the error itself when the policy stops for another reason", () =>
    Effect.gen(function*() {
      const p = policy({ K: { base: "1 second", jitter: "none", maxRetries: 1 } })
      const fiber = yield* Effect.fork(Effect.flip(Retry.retry(Effect.fail(fail("K")), p, { timeout: "1 hour" })))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toBeInstanceOf(Failure)
      const notConfigured = yield* Effect.either(Retry.retry(Effect.fail(fail("Other")), p, { deadline: 1e12 }))
      expect(Either.isLeft(notConfigured) && notConfigured.left).toBeInstanceOf(Failure)
    }))

  it.effect("Retry.retry records each call as a first attempt in the budget, and draws jitter from Random", () =>
    Effect.gen(function*() {
      const budget = yield* Retry.makeBudget({ ratio: 0, minRetries: 0 })
      yield* Retry.retry(Effect.succeed(1), policy({ K: true }), { budget })
      yield* Retry.retry(Effect.succeed(2), policy({ K: true }), { budget })
      expect((yield* budget.snapshot).firstAttempts).toBe(2)
      const attempts = yield* Ref.make<Array<number>>([])
      const flaky = Effect.flatMap(
        Effect.flatMap(TestClock.currentTimeMillis, (now) => Ref.updateAndGet(attempts, (xs) => [...xs, now])),
        (xs) => xs.length < 3 ? Effect.fail(fail("K")) : Effect.succeed("ok")
      )
      const fiber = yield* Effect.fork(
        Retry.retry(flaky, policy({ K: { base: "1 second" } })).pipe(Effect.withRandom(Random.fixed([0.25])))
      )
      yield* TestClock.adjust("1 minute")
      expect(yield* Fiber.join(fiber)).toBe("ok")
      expect(yield* Ref.get(attempts)).toEqual([0, 250, 750])
    }))
})
