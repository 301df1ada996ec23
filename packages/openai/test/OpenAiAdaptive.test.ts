/**
 * The OpenAi service's adaptive mode against the in-process simulator (real `openai` SDK, TestClock):
 * with no tier and no budgets, a pool's limits are learned from the first answer's `x-ratelimit-*`
 * headers before the herd is admitted.
 */
import { describe, expect, it } from "@effect/vitest"
import { Simulator } from "@sluice/testing"
import { Effect, Exit } from "effect"
import { drive, mixedBatch, theoreticalMinimum, tier1, withService } from "./harness.js"

const POOL = "org:acme/pool:gpt-4o"

describe("OpenAi: adaptive mode (limits unknown)", () => {
  it.effect(
    "500 mixed chat calls: learns the pool's limits from headers, 429s under 2%, near the minimum",
    () =>
      withService({ organization: "acme" }, (openai, events) =>
        Effect.gen(function*() {
          expect(openai.limiter.limitsOf(POOL)).toEqual([]) // nothing configured
          const batch = mixedBatch(500, 7)
          const { endedAt, exit } = yield* drive(
            Effect.forEach(batch, (params) => openai.chat.completions.create(params), { concurrency: "unbounded" })
          )
          expect(Exit.isSuccess(exit)).toBe(true)
          const stats = yield* Simulator.stats
          const rejected = stats.byStatus["429"] ?? 0
          const share = rejected / stats.attempts.length
          const minimum = theoreticalMinimum(stats, { rpm: 500, tpm: 30_000 })
          const ratio = endedAt / minimum
          // converged: the pool's limits are the server's, learned from its headers
          const learned = openai.limiter.limitsOf(POOL).map((
            limit
          ) => [limit.dimension, limit.amount, limit.windowMillis])
          const snapshot = yield* openai.limiter.snapshot
          console.log(
            `adaptive: 500 calls, ${stats.attempts.length} attempts, ${rejected} × 429 (${
              (share * 100).toFixed(2)
            }%), ` +
              `wall ${Math.round(endedAt)} ms, minimum ${Math.round(minimum)} ms, ratio ${ratio.toFixed(4)}, ` +
              `learned ${JSON.stringify(learned)}`
          )
          expect(learned).toEqual(expect.arrayContaining([["requests", 500, 60_000], ["tokens", 30_000, 60_000]]))
          expect(learned).toHaveLength(2)
          expect(snapshot.levels.filter((l) => l.scope === POOL).every((l) => l.learned)).toBe(true)
          expect(share).toBeLessThan(0.02)
          expect(stats.byStatus["200"]).toBe(500)
          expect(Object.keys(stats.attemptsByKey)).toHaveLength(500)
          expect(ratio).toBeLessThanOrEqual(1.1)
          // the first call went alone (the probe); the rest were admitted after its answer
          const admitted = events.filter((e) => e._tag === "Admitted").map((e) => e.at).sort((a, b) => a - b)
          const firstAnswer = Math.min(...events.filter((e) => e._tag !== "Admitted").map((e) => e.at))
          expect(admitted[0]).toBe(0)
          expect(admitted[1]).toBeGreaterThanOrEqual(firstAnswer)
        })).pipe(Effect.provide(tier1())),
    180_000
  )

  it.effect("a server without rate-limit headers: after the probe the pool starts cautious (60 RPM, 20k TPM) and probes upward", () =>
    withService({ organization: "acme" }, (openai) =>
      Effect.gen(function*() {
        const batch = mixedBatch(20, 3)
        const { exit } = yield* drive(
          Effect.forEach(batch, (params) => openai.chat.completions.create(params), { concurrency: "unbounded" })
        )
        expect(Exit.isSuccess(exit)).toBe(true)
        const learned = Object.fromEntries(
          openai.limiter.limitsOf(POOL).map((limit) => [limit.dimension, limit.amount])
        )
        // the probes start at the cautious limits and grow only as the slow start lets calls out (20 calls:
        // far from the server's 500 requests a minute)
        expect(learned.requests).toBeGreaterThanOrEqual(60)
        expect(learned.requests).toBeLessThan(500)
        expect(learned.tokens).toBeGreaterThanOrEqual(20_000)
        const stats = yield* Simulator.stats
        expect(stats.byStatus).toEqual({ "200": 20 })
      })).pipe(Effect.provide(tier1({ enforcement: { rateLimitHeaders: false } }))))
})
