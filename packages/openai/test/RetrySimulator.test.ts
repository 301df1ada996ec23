/**
 * Retry policies and circuit breakers against the in-process simulator, with the real `openai` SDK
 * (its own retries off), under TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { CircuitBreaker, Retry } from "@sluice/core"
import { OpenAiError, OpenAiRetry } from "@sluice/openai"
import { Scenario, SimFetch, Simulator } from "@sluice/testing"
import { Clock, Effect, Exit, Fiber, Option, Ref, TestClock } from "effect"
import OpenAIClient from "openai"

type Overrides = Parameters<typeof Scenario.single>[2]
type Limits = Parameters<typeof Scenario.single>[1]

const MODEL = "gpt-4o-mini"

const withSim = <A, E>(
  limits: Limits,
  overrides: Overrides,
  body: (
    call: (key: string, content?: string) => Effect.Effect<unknown, OpenAiError.OpenAiError>
  ) => Effect.Effect<A, E, Simulator.Simulator>
) =>
  Effect.gen(function*() {
    const fetch = yield* SimFetch.make
    const client = new OpenAIClient({
      apiKey: "sk-test",
      baseURL: "http://sim.local/v1",
      fetch: fetch as any,
      maxRetries: 0
    })
    const call = (key: string, content = "Say hello.") =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.tryPromise({
          try: (signal) =>
            client.chat.completions.create(
              { model: MODEL, messages: [{ role: "user", content }], max_tokens: 20 },
              { signal, headers: { "x-sim-request-key": key } }
            ),
          catch: (error) => OpenAiError.classify(error, { model: MODEL, now })
        }))
    return yield* body(call)
  }).pipe(Effect.provide(Simulator.layer(Scenario.single(MODEL, limits, overrides))))

/** Runs the effects concurrently while virtual time advances in steps. */
const drive = <A, E>(effects: ReadonlyArray<Effect.Effect<A, E>>, stepMillis = 100, maxSteps = 100_000) =>
  Effect.gen(function*() {
    const fibers = yield* Effect.forEach(effects, (effect) => Effect.fork(effect))
    let steps = 0
    while (steps++ < maxSteps) {
      yield* Effect.yieldNow()
      let done = true
      for (const fiber of fibers) {
        if (Option.isNone(yield* Fiber.poll(fiber))) {
          done = false
          break
        }
      }
      if (done) break
      // let the SDK's promises settle before time moves
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      yield* TestClock.adjust(stepMillis)
    }
    return yield* Effect.forEach(fibers, Fiber.await)
  })

const attemptsOf = (key: string) => Effect.map(Simulator.stats, (s) => s.attempts.filter((a) => a.key === key))

describe("Retry against the simulator (real SDK)", () => {
  it.effect("a burst of 503s is recovered within the policy", () =>
    withSim({ rpm: 1000, tpm: 1_000_000 }, {
      incidents: [{ fromMs: 0, toMs: 5_000, fault: "overloaded" }]
    }, (call) =>
      Effect.gen(function*() {
        const [exit] = yield* drive([Retry.retry(call("burst"), OpenAiRetry.defaultPolicy)])
        expect(Exit.isSuccess(exit)).toBe(true)
        const attempts = yield* attemptsOf("burst")
        expect(attempts.length).toBeGreaterThan(1)
        expect(attempts.length).toBeLessThanOrEqual(5)
        expect(attempts.slice(0, -1).every((a) => a.status === 503)).toBe(true)
        expect(attempts[attempts.length - 1].status).toBe(200)
        expect(attempts[attempts.length - 1].at).toBeGreaterThanOrEqual(5_000)
      })))

  it.effect("insufficient_quota stops at once, after one attempt", () =>
    withSim({ rpm: 1000, tpm: 1_000_000 }, { faults: { quotaUsd: 0 } }, (call) =>
      Effect.gen(function*() {
        const [exit] = yield* drive([Retry.retry(call("quota"), OpenAiRetry.defaultPolicy)])
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) expect(String(exit.cause)).toContain("QuotaExhausted")
        expect(yield* attemptsOf("quota")).toHaveLength(1)
      })))

  it.effect("a 400 is attempted exactly once", () =>
    withSim({ rpm: 1000, tpm: 1_000_000 }, {}, (call) =>
      Effect.gen(function*() {
        const [exit] = yield* drive([
          Retry.retry(call("bad", "please [sim:content-policy] this"), OpenAiRetry.defaultPolicy)
        ])
        expect(Exit.isFailure(exit)).toBe(true)
        const attempts = yield* attemptsOf("bad")
        expect(attempts).toHaveLength(1)
        expect(attempts[0].status).toBe(400)
      })))

  it.effect("a retry-after is never undercut", () =>
    withSim({ rpm: 3, tpm: 1_000_000 }, {}, (call) =>
      Effect.gen(function*() {
        // three calls use the minute's requests; the fourth is told to wait
        const retryAfters = yield* Ref.make<Array<number>>([])
        const observed = (key: string) =>
          call(key).pipe(
            Effect.tapError((e) =>
              Ref.update(
                retryAfters,
                (xs) => [...xs, e.retryAfter === undefined ? -1 : OpenAiError.retryAfterMillis(e)]
              )
            )
          )
        const exits = yield* drive(
          ["a", "b", "c", "d"].map((k) => Retry.retry(observed(k), OpenAiRetry.defaultPolicy)),
          100
        )
        expect(exits.every(Exit.isSuccess)).toBe(true)
        const attempts = yield* attemptsOf("d")
        const waits = yield* Ref.get(retryAfters)
        expect(waits.length).toBeGreaterThan(0)
        expect(waits[0]).toBeGreaterThan(1_000)
        for (let i = 1; i < attempts.length; i++) {
          expect(attempts[i].at - attempts[i - 1].at).toBeGreaterThanOrEqual(waits[i - 1])
        }
        expect(attempts[0].status).toBe(429)
      })))

  it.effect("a daily-limit 429 fails fast with its wait when beyond the deadline", () =>
    withSim({ rpm: 1000, tpm: 1_000_000, rpd: 1 }, {}, (call) =>
      Effect.gen(function*() {
        yield* drive([call("first")])
        const start = yield* Clock.currentTimeMillis
        const [exit] = yield* drive([
          Retry.retry(call("daily"), OpenAiRetry.defaultPolicy, { timeout: "10 minutes" })
        ])
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) {
          const text = String(exit.cause)
          expect(text).toContain("RetryDeadlineExceeded")
        }
        expect(yield* attemptsOf("daily")).toHaveLength(1)
        expect((yield* Clock.currentTimeMillis) - start).toBeLessThan(10 * 60_000)
      })))

  it.effect("a 50%-503 incident stays within the retry budget", () =>
    withSim({ rpm: 100_000, tpm: 100_000_000 }, {
      seed: 7,
      incidents: [{ fromMs: 0, toMs: 600_000, fault: "overloaded", rate: 0.5 }]
    }, (call) =>
      Effect.gen(function*() {
        const budget = yield* Retry.makeBudget({ ratio: 0.1, minRetries: 5, window: "5 minutes" })
        const n = 200
        yield* drive(
          Array.from({ length: n }, (_, i) => Retry.retry(call(`k${i}`), OpenAiRetry.defaultPolicy, { budget })),
          500
        )
        const stats = yield* Simulator.stats
        const retries = stats.attempts.length - n
        // without the budget: up to 4 retries each (≈ 200 retries in all)
        expect(retries).toBeLessThanOrEqual(5 + 0.1 * n)
        expect(retries).toBeGreaterThan(0)
      })))

  it.effect("the breaker opens, probes and closes on the expected virtual times", () =>
    withSim({ rpm: 100_000, tpm: 100_000_000 }, {
      incidents: [{ fromMs: 0, toMs: 15_000, fault: "server_error" }]
    }, (call) =>
      Effect.scoped(Effect.gen(function*() {
        const transitions = yield* Ref.make<Array<string>>([])
        const breaker = yield* CircuitBreaker.make({
          consecutiveFailures: 3,
          openFor: "10 seconds",
          isFailure: OpenAiRetry.breakerCounts(),
          onTransition: (t) => Ref.update(transitions, (xs) => [...xs, `${t.to}@${t.at}`])
        })
        // one call a second for 30 seconds, no retries: the breaker alone decides
        const results: Array<string> = []
        for (let second = 0; second < 30; second++) {
          const [exit] = yield* drive([breaker.withBreaker(MODEL, call(`s${second}`))])
          results.push(
            Exit.isSuccess(exit) ? "ok" : String(exit.cause).includes("CircuitOpen") ? "refused" : "failed"
          )
          const now = yield* Clock.currentTimeMillis
          yield* TestClock.adjust((second + 1) * 1000 - now)
        }
        // fails at 0, 1, 2 s → open at 2 s; half-open at 12 s; the probe fails (incident until 15 s) → open
        // until 22 s; the probe at 22 s succeeds → closed
        expect(yield* Ref.get(transitions)).toEqual([
          "Open@2000",
          "HalfOpen@12000",
          "Open@12000",
          "HalfOpen@22000",
          "Closed@22000"
        ])
        expect(results.slice(0, 3)).toEqual(["failed", "failed", "failed"])
        expect(results.slice(3, 12).every((r) => r === "refused")).toBe(true)
        expect(results[12]).toBe("failed")
        expect(results.slice(13, 22).every((r) => r === "refused")).toBe(true)
        expect(results.slice(22).every((r) => r === "ok")).toBe(true)
        // the simulator saw only the calls the breaker let through
        expect((yield* Simulator.stats).attempts).toHaveLength(3 + 1 + 8)
      }))))
})
