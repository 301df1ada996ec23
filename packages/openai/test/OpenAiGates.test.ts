/**
 * Server feedback shared by the herd, against the in-process simulator (real `openai` SDK, TestClock):
 * a 429's `retry-after` closes the pool's gate so no fiber sends to that pool until it opens, and
 * `insufficient_quota` closes the organization so every waiting call fails at once, unsent.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import type { OpenAi } from "@sluice/openai"
import { SimConfig, Simulator } from "@sluice/testing"
import { Clock, Duration, Effect, Exit } from "effect"
import { drive, withService } from "./harness.js"

/** The service over a simulator client, with its events recorded at their virtual times. */

const call = (openai: OpenAi.OpenAi.Service, model: string, key: string, max = 50) =>
  openai.chat.completions.create({
    model,
    messages: [{ role: "user", content: `[req:${key}] hello` }],
    max_tokens: max
  })

describe("OpenAi: a 429's retry-after pauses the herd", () => {
  // The server allows 20 requests a minute on gpt-4o-mini; the client was told 60 (a wrong budget),
  // so it sends more than the server takes, and learns from each 429.
  const scenario = Simulator.layer(SimConfig.make({
    seed: 9,
    models: {
      "gpt-4o-mini": { limits: { rpm: 20, tpm: 1_000_000 } },
      "gpt-4o": { limits: { rpm: 500, tpm: 30_000 } }
    },
    latency: { request: { _tag: "fixed", ms: 0 }, perOutputTokenMs: 0 }
  }))
  const options: OpenAi.OpenAi.Options = {
    organization: "acme",
    budgets: [
      Budget.make("org:acme/pool:gpt-4o-mini", [Budget.Limit.perMinute("requests", 60)]),
      Budget.make("org:acme/pool:gpt-4o", [Budget.Limit.perMinute("requests", 500)])
    ]
  }

  it.effect("no fiber sends to the pool while its gate is closed; other pools flow; every call succeeds", () =>
    withService(options, (openai, events) =>
      Effect.gen(function*() {
        const mini = Array.from({ length: 40 }, (_, i) => call(openai, "gpt-4o-mini", `mini-${i}`))
        // calls on another pool, sent while the first gate is closed
        const other = Array.from(
          { length: 5 },
          (_, i) => Effect.delay(call(openai, "gpt-4o", `other-${i}`), "1 second")
        )
        const { exit } = yield* drive(Effect.all([...mini, ...other], { concurrency: "unbounded" }))
        expect(Exit.isSuccess(exit)).toBe(true)
        const stats = yield* Simulator.stats
        const refusals = events.flatMap((e) =>
          e._tag === "Failed" && e.error._tag === "RateLimited" && e.error.retryAfter !== undefined
            ? [{ at: e.at, until: e.at + Duration.toMillis(e.error.retryAfter) }]
            : []
        )
        const miniAttempts = stats.attempts.filter((a) => a.model === "gpt-4o-mini")
        const inGate = miniAttempts.filter((a) => refusals.some((r) => a.at > r.at && a.at < r.until))
        const firstGate = refusals[0]
        console.log(
          `retry-after: ${miniAttempts.length} attempts on gpt-4o-mini for 40 calls, ${stats.byStatus["429"]} × 429 ` +
            `(${refusals.length} with retry-after), first gate ${firstGate.at}–${firstGate.until} ms, ` +
            `attempts inside a gate: ${inGate.length}; gpt-4o attempts at ` +
            JSON.stringify(stats.attempts.filter((a) => a.model === "gpt-4o").map((a) => a.at))
        )
        expect(refusals.length).toBe(stats.byStatus["429"])
        expect(firstGate.until - firstGate.at).toBeGreaterThanOrEqual(1_000)
        // the herd paused: after each refusal, nothing was sent to the pool until its gate opened
        expect(inGate).toEqual([])
        // the first 20 went out at once (headers said "0 remaining" after them); from the first refusal
        // on, the pool's traffic moves from gate to gate
        expect(miniAttempts.filter((a) => a.at === 0).map((a) => a.status)).toEqual(Array(20).fill(200))
        const afterFirst = miniAttempts.filter((a) => a.at > firstGate.at)
        expect(afterFirst.every((a) => a.at >= firstGate.until)).toBe(true)
        // another pool is not paused by this one's gate
        const others = stats.attempts.filter((a) => a.model === "gpt-4o")
        expect(others.map((a) => a.at)).toEqual([1_000, 1_000, 1_000, 1_000, 1_000])
        expect(others.every((a) => a.status === 200)).toBe(true)
        // nothing lost, and every retry came back through admission
        const keys = Object.keys(stats.attemptsByKey)
        expect(keys).toHaveLength(45)
        for (const key of keys) expect(stats.attempts.filter((a) => a.key === key).at(-1)!.status).toBe(200)
        expect(events.filter((e) => e._tag === "Admitted")).toHaveLength(stats.attempts.length)
        // the server was never asked for more than it allows once it had said so
        expect(stats.byStatus["200"]).toBe(45)
      })).pipe(Effect.provide(scenario)))
})

describe("OpenAi: insufficient_quota closes the organization", () => {
  // gpt-4o at $2.50 / $10 per million tokens; each call costs ~$0.0053, so the 7th finds the quota spent.
  const scenario = Simulator.layer(SimConfig.make({
    seed: 2,
    models: {
      "gpt-4o": { limits: { rpm: 500, tpm: 30_000 }, pricing: { inputPerMillion: 2.5, outputPerMillion: 10 } }
    },
    faults: { quotaUsd: 0.03 },
    latency: { request: { _tag: "fixed", ms: 300 }, perOutputTokenMs: 0 }
  }))
  // a tight local budget, so most calls are waiting in the limiter when the quota runs out
  const options: OpenAi.OpenAi.Options = {
    organization: "acme",
    budgets: [Budget.make("org:acme/pool:gpt-4o", [Budget.Limit.perMinute("tokens", 6_000)])]
  }

  it.effect("every waiting call fails at once with QuotaExhausted, without being sent", () =>
    withService(options, (openai, events) =>
      Effect.gen(function*() {
        const outcomes = yield* drive(
          Effect.forEach(
            Array.from({ length: 30 }, (_, i) => i),
            (i) =>
              Effect.either(call(openai, "gpt-4o", `q-${i}`, 1_000)).pipe(
                Effect.zip(Clock.currentTimeMillis),
                Effect.map(([result, at]) => ({ result, at }))
              ),
            { concurrency: "unbounded" }
          )
        )
        expect(Exit.isSuccess(outcomes.exit)).toBe(true)
        if (!Exit.isSuccess(outcomes.exit)) return
        const results = outcomes.exit.value
        const stats = yield* Simulator.stats
        const quota = stats.attempts.filter((a) => a.code === "insufficient_quota")
        const failed = results.filter((r) => r.result._tag === "Left")
        const sentKeys = new Set(stats.attempts.map((a) => a.key))
        const unsent = results.filter((_, i) => !sentKeys.has(`q-${i}`))
        console.log(
          `quota: ${stats.attempts.length} attempts (${
            stats.byStatus["200"]
          } × 200, ${quota.length} × insufficient_quota), ` +
            `${failed.length} calls failed, ${unsent.length} of them never sent, all at ` +
            JSON.stringify([...new Set(failed.map((r) => r.at))])
        )
        expect(quota).toHaveLength(1)
        expect(stats.byStatus["200"]).toBe(6)
        expect(stats.attempts).toHaveLength(7) // what was sent before the quota ran out, and the one refused
        expect(failed).toHaveLength(24)
        expect(unsent).toHaveLength(23)
        for (const r of failed) {
          expect(r.result._tag === "Left" && r.result.left._tag).toBe("QuotaExhausted")
          expect(r.at).toBe(quota[0].at) // at once, when the refusal came back
        }
        // the refusal was not retried, and nothing else was admitted after it
        expect(events.filter((e) => e._tag === "Admitted")).toHaveLength(7)
        const snapshot = yield* openai.limiter.snapshot
        expect(snapshot.closed).toEqual([{ scope: "org:acme", reason: "insufficient_quota" }])
        // later calls fail at once too, unsent
        const later = yield* drive(Effect.either(call(openai, "gpt-4o", "late")))
        expect(Exit.isSuccess(later.exit) && later.exit.value._tag === "Left" && later.exit.value.left._tag).toBe(
          "QuotaExhausted"
        )
        expect((yield* Simulator.stats).attempts).toHaveLength(7)
      })).pipe(Effect.provide(scenario)))
})
