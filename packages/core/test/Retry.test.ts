import { describe, expect, it } from "@effect/vitest"
import { Retry } from "@sluice/core"
import {
  Chunk,
  Duration,
  Effect,
  Either,
  FastCheck as fc,
  Fiber,
  Option,
  Random,
  Ref,
  Schedule,
  TestClock
} from "effect"

class Failure {
  constructor(
    readonly _tag: string,
    readonly retryable: boolean = true,
    readonly retryAfter: Duration.Duration | undefined = undefined
  ) {}
}

const fail = (tag: string, retryAfter?: Duration.DurationInput) =>
  new Failure(tag, true, retryAfter === undefined ? undefined : Duration.decode(retryAfter))

const policy = (kinds: Retry.Options<Failure>["kinds"], extra: Partial<Retry.Options<Failure>> = {}) =>
  Retry.make<Failure>({ ...Retry.tagged, kinds, ...extra })

const retrying = (steps: Chunk.Chunk<Retry.Step>): ReadonlyArray<Retry.Retrying> =>
  Chunk.toReadonlyArray(steps).filter((s): s is Retry.Retrying => s._tag === "Retrying")

const runDelays = (
  p: Retry.Policy<Failure>,
  errors: ReadonlyArray<Failure>,
  random: [number, ...Array<number>] = [0.5]
) =>
  Schedule.run(p, 0, errors).pipe(
    Effect.map((steps) => retrying(steps).map((s) => Duration.toMillis(s.delay))),
    Effect.withRandom(Random.fixed(random))
  )

describe("Retry", () => {
  describe("delay sequences (Schedule.run, no clock)", () => {
    it.effect("exponential without jitter, capped at maxDelay, stopping at maxRetries", () =>
      Effect.gen(function*() {
        const p = policy({
          Busy: { base: "1 second", factor: 2, maxDelay: "10 seconds", maxRetries: 5, jitter: "none" }
        })
        const delays = yield* runDelays(p, Array.from({ length: 8 }, () => fail("Busy")))
        expect(delays).toEqual([1000, 2000, 4000, 8000, 10_000])
      }))

    it.effect("full jitter scales the exponential delay by the random draw", () =>
      Effect.gen(function*() {
        const p = policy({ Busy: { base: "1 second", maxRetries: 4, jitter: "full" } })
        const delays = yield* runDelays(p, Array.from({ length: 4 }, () => fail("Busy")), [0.5, 0.25, 1, 0])
        expect(delays).toEqual([500, 500, 4000, 0])
      }))

    it.effect("decorrelated jitter draws between base and three times the previous delay", () =>
      Effect.gen(function*() {
        const p = policy({ Busy: { base: "1 second", maxDelay: "20 seconds", maxRetries: 4, jitter: "decorrelated" } })
        const delays = yield* runDelays(p, Array.from({ length: 4 }, () => fail("Busy")), [1, 1, 1, 0])
        expect(delays).toEqual([3000, 9000, 20_000, 1000])
      }))

    it.effect("retryAfter is a floor, never capped at 60 seconds or by maxDelay", () =>
      Effect.gen(function*() {
        const p = policy({ Limited: { base: "1 second", maxDelay: "30 seconds", maxRetries: 5, jitter: "none" } })
        const delays = yield* runDelays(p, [
          fail("Limited", "20 seconds"),
          fail("Limited", "100 millis"),
          fail("Limited", "2 hours"),
          fail("Limited")
        ])
        expect(delays).toEqual([20_000, 2000, 7_200_000, 8000])
      }))

    it.effect("honorRetryAfter: false ignores the hint", () =>
      Effect.gen(function*() {
        const p = policy({ Limited: { base: "1 second", jitter: "none", honorRetryAfter: false } })
        expect(yield* runDelays(p, [fail("Limited", "20 seconds")])).toEqual([1000])
      }))

    it.effect("kinds left out are not retried; non-retryable errors never are, whatever the configuration", () =>
      Effect.gen(function*() {
        const p = policy({ Busy: true, Invalid: true })
        expect(yield* runDelays(p, [fail("Other")])).toEqual([])
        expect(yield* runDelays(p, [new Failure("Invalid", false)])).toEqual([])
        expect(yield* runDelays(p, [fail("Busy"), new Failure("Busy", false), fail("Busy")])).toHaveLength(1)
      }))

    it.effect("per-kind caps count each kind; the global cap counts all", () =>
      Effect.gen(function*() {
        const p = policy({ A: { maxRetries: 2, jitter: "none" }, B: { maxRetries: 2, jitter: "none" } }, {
          maxRetries: 3
        })
        const steps = yield* Schedule.run(p, 0, [fail("A"), fail("B"), fail("A"), fail("B"), fail("A")])
        expect(retrying(steps).map((s) => `${s.kind}#${s.attempt}`)).toEqual(["A#1", "B#2", "A#3"])
        expect(Chunk.unsafeLast(steps)).toMatchObject({ _tag: "Stopped", reason: "MaxRetries", retries: 3, kind: "B" })
        const q = policy({ A: { maxRetries: 2, jitter: "none" }, B: { maxRetries: 2, jitter: "none" } })
        const r = yield* Schedule.run(q, 0, [fail("A"), fail("A"), fail("A")])
        expect(retrying(r)).toHaveLength(2)
        // the backoff exponent is per kind
        expect(Retry.delays(q, [fail("A"), fail("B"), fail("A")]).delays.map(Duration.toMillis)).toEqual([
          1000,
          1000,
          2000
        ])
      }))

    it.effect("maxElapsed stops a wait that would end past it, at once", () =>
      Effect.gen(function*() {
        const p = policy({ Busy: { base: "10 seconds", jitter: "none", maxRetries: 10 } }, { maxElapsed: "59 seconds" })
        expect(yield* runDelays(p, Array.from({ length: 10 }, () => fail("Busy")))).toEqual([10_000, 20_000])
        const result = Retry.delays(p, [fail("Busy", "2 minutes")])
        expect(result).toEqual({ delays: [], stop: Option.some("MaxElapsed") })
      }))

    it("delays() reports why a policy stopped", () => {
      const p = policy({ Busy: { maxRetries: 1, jitter: "none" } })
      expect(Retry.delays(p, [fail("Busy"), fail("Busy")]).stop).toEqual(Option.some("MaxRetries"))
      expect(Retry.delays(p, [fail("Nope")]).stop).toEqual(Option.some("NotConfigured"))
      expect(Retry.delays(p, [new Failure("Busy", false)]).stop).toEqual(Option.some("NotRetryable"))
      expect(Retry.delays(p, [fail("Busy", "1 hour")], { deadline: 60_000 }).stop).toEqual(Option.some("Deadline"))
    })
  })

  describe("jitter bounds (properties)", () => {
    const arbKind = fc.record({
      base: fc.integer({ min: 1, max: 5000 }),
      factor: fc.double({ min: 1, max: 4, noNaN: true }),
      maxDelay: fc.integer({ min: 1, max: 120_000 }),
      retryAfter: fc.option(fc.integer({ min: 0, max: 10_000_000 }), { nil: undefined })
    })
    const randoms = fc.array(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), {
      minLength: 1,
      maxLength: 12
    })

    it("full jitter: 0 ≤ delay ≤ min(maxDelay, base·factor^n), floored by retryAfter", () => {
      fc.assert(
        fc.property(arbKind, randoms, (k, rs) => {
          const p = policy({
            K: { base: k.base, factor: k.factor, maxDelay: k.maxDelay, jitter: "full", maxRetries: 12 }
          })
          const errs = rs.map(() => fail("K", k.retryAfter))
          const { delays } = Retry.delays(p, errs, { random: rs })
          expect(delays).toHaveLength(rs.length)
          delays.forEach((d, n) => {
            const ms = Duration.toMillis(d)
            const cap = Math.min(k.maxDelay, k.base * Math.pow(k.factor, n))
            const floor = k.retryAfter ?? 0
            expect(ms).toBeGreaterThanOrEqual(floor)
            expect(ms).toBeLessThanOrEqual(Math.max(cap, floor) + 1e-6)
          })
        })
      )
    })

    it("decorrelated jitter: base ≤ backoff ≤ min(maxDelay, 3·previous backoff)", () => {
      fc.assert(
        fc.property(arbKind, randoms, (k, rs) => {
          const maxDelay = Math.max(k.base, k.maxDelay)
          const p = policy({ K: { base: k.base, maxDelay, jitter: "decorrelated", maxRetries: 12 } })
          const steps = Effect.runSync(
            Schedule.run(p, 0, rs.map(() => fail("K"))).pipe(
              Effect.withRandom(Random.fixed(rs as [number, ...Array<number>]))
            )
          )
          // A step's backoff is read back from a Duration, whole nanoseconds: the previous backoff read here may be up
          // to half a nanosecond from the one the schedule used, which 3 x previous triples (the bound's slack: 1e-5 ms;
          // 1e-6 failed about once in 4,500 cases, e.g. base 1, maxDelay 4, draws [0.0616…, 4.92e-7, 0.9999999999999996]).
          let previous = k.base
          for (const step of retrying(steps)) {
            const ms = Duration.toMillis(step.backoff)
            expect(ms).toBeGreaterThanOrEqual(k.base - 1e-5)
            expect(ms).toBeLessThanOrEqual(Math.min(maxDelay, 3 * previous) + 1e-5)
            previous = ms
          }
        })
      )
    })

    it("no configuration retries a non-retryable error", () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 100 }), (maxRetries, base) => {
          const p = policy({ K: { maxRetries, base } }, { maxRetries: 100 })
          return Retry.delays(p, [new Failure("K", false)]).delays.length === 0
        })
      )
    })

    it("an error that says it is not retryable is never retried, even by a policy with no `retryable`", () => {
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 20 }), fc.boolean(), (maxRetries, customSaysYes) => {
          const p = Retry.make<{ readonly _tag: string; readonly retryable?: boolean }>({
            kind: (e) => e._tag,
            kinds: { ContentPolicy: { maxRetries, base: 1 } },
            ...(customSaysYes ? { retryable: () => true } : {})
          })
          const never = Retry.delays(p, [{ _tag: "ContentPolicy", retryable: false }]).delays.length === 0
          const unsaid = Retry.delays(p, [{ _tag: "ContentPolicy" }, { _tag: "ContentPolicy" }]).delays.length > 0
          return never && unsaid
        })
      )
    })
  })

  describe("under TestClock", () => {
    const flaky = (failures: ReadonlyArray<Failure>, attempts: Ref.Ref<Array<number>>) =>
      Effect.gen(function*() {
        const now = yield* TestClock.currentTimeMillis
        const seen = yield* Ref.updateAndGet(attempts, (xs) => [...xs, now])
        const failure = failures[seen.length - 1]
        if (failure !== undefined) return yield* Effect.fail(failure)
        return "ok"
      })

    it.effect("Effect.retry takes a policy directly and sleeps exactly the delays", () =>
      Effect.gen(function*() {
        const attempts = yield* Ref.make<Array<number>>([])
        const p = policy({ Busy: { base: "1 second", jitter: "none" } })
        const fiber = yield* Effect.fork(
          Effect.retry(flaky([fail("Busy"), fail("Busy"), fail("Busy", "10 seconds")], attempts), p)
        )
        yield* TestClock.adjust("1 minute")
        expect(yield* Fiber.join(fiber)).toBe("ok")
        expect(yield* Ref.get(attempts)).toEqual([0, 1000, 3000, 13_000])
      }))

    it.effect("Retry.retry: a wait beyond the deadline fails at once with the time it would take", () =>
      Effect.gen(function*() {
        const attempts = yield* Ref.make<Array<number>>([])
        const p = policy({ Daily: { base: "1 minute", jitter: "none" } })
        const result = yield* flaky([fail("Daily", "5 hours")], attempts).pipe(
          Retry.retry(p, { timeout: "10 minutes" }),
          Effect.either
        )
        expect(Either.isLeft(result)).toBe(true)
        if (Either.isRight(result)) return
        const error = result.left
        expect(error._tag).toBe("RetryDeadlineExceeded")
        if (!(error instanceof Retry.RetryDeadlineExceeded)) return
        expect(Duration.toMillis(error.wait)).toBe(5 * 3_600_000)
        expect(error.deadline).toBe(600_000)
        expect(error.kind).toBe("Daily")
        expect(error.cause).toBeInstanceOf(Failure)
        expect(yield* Ref.get(attempts)).toEqual([0])
        expect(yield* TestClock.currentTimeMillis).toBe(0)
      }))

    it.effect("Retry.retry: a wait within the deadline is waited, however long", () =>
      Effect.gen(function*() {
        const attempts = yield* Ref.make<Array<number>>([])
        const p = policy({ Daily: { base: "1 minute", jitter: "none" } }, { maxElapsed: "1 minute" })
        const fiber = yield* flaky([fail("Daily", "5 hours")], attempts).pipe(
          Retry.retry(p, { deadline: 6 * 3_600_000 }),
          Effect.fork
        )
        yield* TestClock.adjust("5 hours")
        expect(yield* Fiber.join(fiber)).toBe("ok")
        expect(yield* Ref.get(attempts)).toEqual([0, 5 * 3_600_000])
      }))

    it.effect("Retry.retry without a deadline returns the last error when the policy gives up", () =>
      Effect.gen(function*() {
        const attempts = yield* Ref.make<Array<number>>([])
        const p = policy({ Busy: { base: "1 second", jitter: "none", maxRetries: 2 } })
        const fiber = yield* flaky([fail("Busy"), fail("Busy"), fail("Busy")], attempts).pipe(
          Retry.retry(p),
          Effect.flip,
          Effect.fork
        )
        yield* TestClock.adjust("1 minute")
        const error = yield* Fiber.join(fiber)
        expect(error).toBeInstanceOf(Failure)
        expect(yield* Ref.get(attempts)).toEqual([0, 1000, 3000])
      }))

    it.effect("failures outside the policy's type are not retried when it has a guard", () =>
      Effect.gen(function*() {
        const p = Retry.make<Failure>({
          ...Retry.tagged,
          is: (u): u is Failure => u instanceof Failure,
          kinds: { Busy: true }
        })
        const calls = yield* Ref.make(0)
        const other = { _tag: "Busy", retryable: true }
        const error = yield* Ref.update(calls, (n) => n + 1).pipe(
          Effect.zipRight(Effect.fail(other)),
          Retry.retry(p),
          Effect.flip
        )
        expect(error).toBe(other)
        expect(yield* Ref.get(calls)).toBe(1)
      }))

    it.effect("a retry budget keeps a storm within floor + ratio × first attempts", () =>
      Effect.gen(function*() {
        const budget = yield* Retry.makeBudget({ ratio: 0.1, minRetries: 3, window: "10 seconds" })
        const p = policy({ Busy: { base: "100 millis", jitter: "none", maxRetries: 5 } })
        const attempts = yield* Ref.make(0)
        const call = Ref.update(attempts, (n) => n + 1).pipe(Effect.zipRight(Effect.fail(fail("Busy"))))
        const fiber = yield* Effect.fork(
          Effect.forEach(Array.from({ length: 50 }), () => Effect.either(Retry.retry(call, p, { budget })), {
            concurrency: "unbounded"
          })
        )
        yield* TestClock.adjust("5 seconds")
        yield* Fiber.join(fiber)
        // 50 first attempts; retries ≤ 3 + 0.1 × 50 = 8 (without the budget: 250)
        expect(yield* Ref.get(attempts)).toBe(58)
        const snapshot = yield* budget.snapshot
        expect(snapshot).toEqual({ firstAttempts: 50, retries: 8, available: 0 })
        // the window slides: ten seconds later the budget is back to its floor
        yield* TestClock.adjust("11 seconds")
        expect((yield* budget.snapshot).available).toBe(3)
      }))
  })
})
