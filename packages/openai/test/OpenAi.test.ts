/**
 * The OpenAi service against the in-process simulator, with the real `openai` SDK (its own retries
 * off), under TestClock: throughput at the limit, deadlines, events, retries through admission, and
 * no key in any error.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore } from "@sluice/core"
import { OpenAi, TokenEstimator } from "@sluice/openai"
import { SimFetch, Simulator } from "@sluice/testing"
import { Cause, Clock, Duration, Effect, Exit, Layer, Option, Redacted } from "effect"
import { API_KEY, drive, filler, mixedBatch, sum, theoreticalMinimum, tier1, withService } from "./harness.js"

const MODEL = "gpt-4o"
const POOL = "org:acme/pool:gpt-4o"

// -----------------------------------------------------------------------------
// tests
// -----------------------------------------------------------------------------

describe("OpenAi: a TPM-bound batch at the limit", () => {
  it.effect("500 mixed chat calls with the tier configured: zero 429s, each key once, ≤ 1.10× the minimum", () =>
    withService({ organization: "acme", tier: 1 }, (openai) =>
      Effect.gen(function*() {
        const batch = mixedBatch(500, 42)
        expect(batch.filter((p) => (p.n ?? 1) > 1).length).toBeGreaterThan(40)
        const { endedAt, exit } = yield* drive(
          Effect.forEach(batch, (params) => openai.chat.completions.create(params), { concurrency: "unbounded" })
        )
        expect(Exit.isSuccess(exit)).toBe(true)
        const stats = yield* Simulator.stats
        expect(stats.byStatus).toEqual({ "200": 500 })
        expect(Object.keys(stats.attemptsByKey)).toHaveLength(500)
        expect(Object.values(stats.attemptsByKey).every((attempts) => attempts === 1)).toBe(true)
        const minimum = theoreticalMinimum(stats, { rpm: 500, tpm: 30_000 })
        const ratio = endedAt / minimum
        console.log(
          `configured: 500 calls, ${sum(stats.admissions.map((a) => a.tokens))} tokens charged, wall ${endedAt} ms, ` +
            `minimum ${Math.round(minimum)} ms, ratio ${ratio.toFixed(4)}, 429s 0`
        )
        expect(minimum).toBeGreaterThan(120_000) // TPM-bound: minutes of tokens beyond the first bucket
        expect(ratio).toBeLessThanOrEqual(1.1)
      })).pipe(Effect.provide(tier1())))
})

describe("OpenAi: deadlines", () => {
  it.effect("a call that cannot be admitted in time fails at once with the estimated wait", () =>
    withService({
      organization: "acme",
      budgets: [Budget.make(POOL, [Budget.Limit.perMinute("requests", 500), Budget.Limit.perMinute("tokens", 6_000)])]
    }, (openai) =>
      Effect.gen(function*() {
        const call = (key: string, maxWait?: Duration.DurationInput) =>
          openai.chat.completions.create(
            { model: MODEL, messages: [{ role: "user", content: `[req:${key}] hello` }], max_tokens: 4_000 },
            maxWait === undefined ? undefined : { maxWait }
          )
        // the first call uses 4,000+ of the 6,000 tokens (all its max_tokens); the next one needs ~20 s of refill
        const first = yield* drive(call("first"))
        expect(Exit.isSuccess(first.exit)).toBe(true)
        const start = yield* Clock.currentTimeMillis
        const snapshot = yield* openai.limiter.snapshot
        const level = snapshot.levels.find((l) => l.scope === POOL && l.dimension === "tokens")!.level
        const { exit } = yield* drive(call("late", "5 seconds"))
        expect((yield* Clock.currentTimeMillis) - start).toBe(0) // failed fast, no waiting
        expect(Exit.isFailure(exit)).toBe(true)
        const error = Exit.isFailure(exit) ? Option.getOrThrow(Cause.failureOption(exit.cause)) : undefined
        expect(error?._tag).toBe("DeadlineExceeded")
        if (error?._tag !== "DeadlineExceeded") return
        const estimate = TokenEstimator.chat({
          model: MODEL,
          messages: [{ role: "user", content: "[req:late] hello" }],
          max_tokens: 4_000
        }).tokens
        const expected = Math.ceil((estimate - level) / (6_000 / 60_000))
        console.log(`deadline: estimated wait ${error.estimatedWaitMillis} ms (expected ${expected}), allowed 5000 ms`)
        expect(error.scope).toBe(POOL)
        expect(error.dimension).toBe("tokens")
        expect(Math.abs(error.estimatedWaitMillis - expected)).toBeLessThanOrEqual(1)
        expect(error.allowedMillis).toBeCloseTo(5_000, 6)
        const stats = yield* Simulator.stats
        expect(stats.attemptsByKey["late"]).toBeUndefined() // never sent
      })).pipe(Effect.provide(tier1({ output: { fraction: 1 } }))))
})

describe("OpenAi: interruption", () => {
  it.effect("a call interrupted in flight (a timeout) keeps its prompt charged and releases the rest at once", () =>
    withService({
      organization: "acme",
      budgets: [Budget.make(POOL, [Budget.Limit.perMinute("requests", 500), Budget.Limit.perMinute("tokens", 6_000)])]
    }, (openai, events) =>
      Effect.gen(function*() {
        const params = {
          model: MODEL,
          messages: [{ role: "user" as const, content: `[req:slow] ${filler(8_000)}` }],
          max_tokens: 3_000
        }
        const estimate = TokenEstimator.chat(params)
        const { endedAt, exit } = yield* drive(Effect.timeout(openai.chat.completions.create(params), "500 millis"))
        expect(Exit.isFailure(exit) && Cause.isFailType(exit.cause) && exit.cause.error._tag).toBe("TimeoutException")
        const level = (yield* openai.limiter.snapshot).levels.find((l) => l.scope === POOL && l.dimension === "tokens")!
        const admittedAt = events.find((e) => e._tag === "Admitted")!.at
        // less the cold start's hold (`OpenAi.coldStartLag`: 200 ms of the refill of the bucket it drew from full,
        // kept, as no answer said when the server had it)
        const hold = (6_000 / 60_000) * Duration.toMillis(OpenAi.coldStartLag)
        const expected = 6_000 - estimate.promptTokens - hold + (6_000 / 60_000) * (endedAt - admittedAt)
        console.log(
          `interrupted call: reserved ${estimate.tokens} (prompt ${estimate.promptTokens}), level after ${level.level} ` +
            `(expected ${expected}; a leak would leave ${expected - estimate.maxOutputTokens})`
        )
        expect(level.level).toBeCloseTo(expected, 6)
        expect(yield* Simulator.stats).toMatchObject({ attemptsByKey: { slow: 1 } })
      })).pipe(Effect.provide(tier1({ latency: { request: { _tag: "fixed", ms: 2_000 }, perOutputTokenMs: 0 } }))))
})

describe("OpenAi: retries go back through admission", () => {
  const burst = tier1({
    latency: { request: { _tag: "fixed", ms: 100 }, perOutputTokenMs: 0 },
    incidents: [{ fromMs: 0, toMs: 5_000, fault: "overloaded", models: [MODEL] }]
  })
  const call = (openai: OpenAi.OpenAi.Service, key: string) =>
    openai.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: `[req:${key}] hi` }],
      max_tokens: 50
    })

  it.effect("a 503 burst is recovered; every attempt is admitted and reported by onEvent", () =>
    withService({ organization: "acme", tier: 1, breaker: false }, (openai, events) =>
      Effect.gen(function*() {
        const keys = Array.from({ length: 10 }, (_, i) => `burst-${i}`)
        const { exit } = yield* drive(Effect.forEach(keys, (key) => call(openai, key), { concurrency: "unbounded" }))
        expect(Exit.isSuccess(exit)).toBe(true)
        const stats = yield* Simulator.stats
        const admitted = events.filter((e) => e._tag === "Admitted")
        const failed = events.filter((e) => e._tag === "Failed")
        const succeeded = events.filter((e) => e._tag === "Succeeded")
        const retries = admitted.filter((e) => e.attempt > 1)
        console.log(
          `503 burst: ${stats.attempts.length} attempts (${stats.byStatus["503"]} × 503), ${retries.length} retries, ` +
            `last success at ${Math.max(...succeeded.map((e) => e.at))} ms`
        )
        // every attempt the simulator saw was admitted by the limiter first, and reported
        expect(admitted).toHaveLength(stats.attempts.length)
        expect(failed).toHaveLength(stats.byStatus["503"])
        expect(failed.every((e) => e._tag === "Failed" && e.error._tag === "Overloaded")).toBe(true)
        expect(retries).toHaveLength(stats.byStatus["503"])
        expect(succeeded).toHaveLength(10)
        expect(stats.byStatus["200"]).toBe(10)
        for (const key of keys) {
          const attempts = stats.attempts.filter((a) => a.key === key)
          expect(attempts.length).toBeGreaterThan(1)
          expect(attempts.length).toBeLessThanOrEqual(5) // Overloaded: at most 4 retries
          expect(attempts.at(-1)!.status).toBe(200)
          expect(attempts.at(-1)!.at).toBeGreaterThanOrEqual(5_000)
          // the policy's backoff (≥ 2 s for Overloaded) separates the attempts
          for (let i = 1; i < attempts.length; i++) {
            expect(attempts[i].at - attempts[i - 1].at).toBeGreaterThanOrEqual(2_000)
          }
        }
        // each retry was charged its request again: the limiter's request bucket saw them all
        const requests = admitted.reduce((total, e) => total + (e._tag === "Admitted" ? e.cost.requests : 0), 0)
        expect(requests).toBe(stats.attempts.length)
      })).pipe(Effect.provide(burst)))

  it.effect("with the default breaker, the burst opens the circuit: nothing is sent while it is open, then all recover", () =>
    withService({ organization: "acme", tier: 1 }, (openai, events) =>
      Effect.gen(function*() {
        const keys = Array.from({ length: 10 }, (_, i) => `open-${i}`)
        const { exit } = yield* drive(
          Effect.forEach(keys, (key) => Effect.either(call(openai, key)), { concurrency: "unbounded" })
        )
        expect(Exit.isSuccess(exit)).toBe(true)
        if (!Exit.isSuccess(exit)) return
        const stats = yield* Simulator.stats
        const tags = exit.value.map((r) => (r._tag === "Left" ? r.left._tag : "ok"))
        const times = stats.attempts.map((a) => a.at)
        console.log(
          `503 burst with breaker: ${stats.attempts.length} attempts at ${JSON.stringify(times)}, outcomes ${
            JSON.stringify(tags)
          }`
        )
        // the first 10 attempts were all sent at t=0 and failed; after 5 in a row the circuit opened for 30 s
        expect(stats.attempts.filter((a) => a.at === 0 && a.status === 503)).toHaveLength(10)
        // while it was open nothing was sent; the waiting calls were retried once it let probes through
        expect(stats.attempts.filter((a) => a.at > 0 && a.at < 30_000)).toEqual([])
        expect(tags.every((tag) => tag === "ok")).toBe(true)
        expect(stats.attempts).toHaveLength(20)
        expect(events.filter((e) => e._tag === "Admitted")).toHaveLength(20)
        expect(Option.isSome(Option.fromNullable(openai.breakers))).toBe(true)
      })).pipe(Effect.provide(burst)))
})

describe("OpenAi: a retry budget", () => {
  // half of all calls fail with 503 for a minute: without a budget every failure is retried up to four times
  const incident = tier1({
    latency: { request: { _tag: "fixed", ms: 100 }, perOutputTokenMs: 0 },
    incidents: [{ fromMs: 0, toMs: 60_000, fault: "overloaded", rate: 0.5, models: [MODEL] }]
  })
  const calls = (openai: OpenAi.OpenAi.Service) =>
    Effect.forEach(
      Array.from({ length: 100 }, (_, i) => `storm-${i}`),
      (key) =>
        Effect.either(openai.chat.completions.create({
          model: MODEL,
          messages: [{ role: "user", content: `[req:${key}] hi` }],
          max_tokens: 20
        })),
      { concurrency: "unbounded" }
    )

  it.effect("keeps a 50%-503 incident's retries within floor + ratio × first attempts", () =>
    Effect.gen(function*() {
      const budgeted = {
        organization: "acme",
        tier: 1,
        breaker: false,
        retryBudget: { ratio: 0.1, minRetries: 5, window: "5 minutes" }
      } as const
      const { exit } = yield* withService(budgeted, (openai) => drive(calls(openai)))
      expect(Exit.isSuccess(exit)).toBe(true)
      if (!Exit.isSuccess(exit)) return
      const stats = yield* Simulator.stats
      const retries = stats.attempts.length - 100
      const failed = exit.value.filter((r) => r._tag === "Left")
      console.log(
        `retry budget: 100 calls, ${stats.attempts.length} attempts (${retries} retries), ${failed.length} returned a 503`
      )
      expect(retries).toBeLessThanOrEqual(5 + 0.1 * 100)
      expect(retries).toBeGreaterThan(0)
      expect(failed.length).toBeGreaterThan(0)
      expect(failed.every((r) => r._tag === "Left" && r.left._tag === "Overloaded")).toBe(true)
    }).pipe(Effect.provide(incident)))

  it.effect("without a budget the same incident is retried to success, through admission", () =>
    Effect.gen(function*() {
      const { exit } = yield* withService(
        { organization: "acme", tier: 1, breaker: false },
        (openai) => drive(calls(openai))
      )
      expect(Exit.isSuccess(exit)).toBe(true)
      if (!Exit.isSuccess(exit)) return
      const stats = yield* Simulator.stats
      console.log(`no budget: 100 calls, ${stats.attempts.length} attempts`)
      expect(stats.attempts.length - 100).toBeGreaterThan(15)
    }).pipe(Effect.provide(incident)))
})

describe("OpenAi: secrets", () => {
  const leaks = (text: string) => {
    // no 8-character run of the key (the simulator, like OpenAI, shows only its ends, masked)
    for (let i = 0; i + 8 <= API_KEY.length; i++) {
      if (i > 0 && i + 8 < API_KEY.length - 4 && text.includes(API_KEY.slice(i, i + 8))) return true
    }
    return text.includes(API_KEY)
  }

  it.effect("the API key never appears in an error's message, JSON or cause (invariant 8)", () =>
    Effect.gen(function*() {
      const fetch = yield* SimFetch.make
      const layer = OpenAi.layer({
        apiKey: Redacted.make(API_KEY),
        baseURL: "http://sim.local/v1",
        fetch,
        organization: "acme",
        budgets: [Budget.make(POOL, [Budget.Limit.perMinute("requests", 500), Budget.Limit.perMinute("tokens", 6_000)])]
      }).pipe(Layer.provide(LimiterStore.layerMemory))
      const failures = yield* Effect.gen(function*() {
        const openai = yield* OpenAi.OpenAi
        const unauthorized = yield* drive(
          openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "[req:k] hi" }] })
        )
        const tooBig = yield* drive(
          openai.chat.completions.create({
            model: MODEL,
            messages: [{ role: "user", content: "hi" }],
            max_tokens: 50_000
          })
        )
        return [unauthorized.exit, tooBig.exit]
      }).pipe(Effect.provide(layer))
      const stats = yield* Simulator.stats
      expect(stats.byStatus).toEqual({ "401": 1 }) // a 401 is never retried
      for (const exit of failures) {
        expect(Exit.isFailure(exit)).toBe(true)
        if (!Exit.isFailure(exit)) continue
        const error = Option.getOrThrow(Cause.failureOption(exit.cause))
        const texts = [
          error.message,
          String(error),
          JSON.stringify(error),
          JSON.stringify((error as any).toJSON?.()),
          Cause.pretty(exit.cause),
          JSON.stringify(exit)
        ]
        for (const text of texts) expect(leaks(text)).toBe(false)
      }
      const first = Exit.isFailure(failures[0]) ? Option.getOrThrow(Cause.failureOption(failures[0].cause)) : undefined
      expect(first?._tag).toBe("Unauthorized")
      expect(first?.message).toContain("Incorrect API key provided")
      const second = Exit.isFailure(failures[1]) ? Option.getOrThrow(Cause.failureOption(failures[1].cause)) : undefined
      expect(second?._tag).toBe("CostExceedsCapacity")
    }).pipe(Effect.provide(tier1({ apiKeys: ["sk-the-right-one"] }))))
})
