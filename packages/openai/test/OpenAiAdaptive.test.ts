/**
 * The OpenAi service's adaptive mode against the in-process simulator (real `openai` SDK, TestClock):
 * with no tier and no budgets, a pool's limits are learned from the first answer's `x-ratelimit-*`
 * headers before the herd is admitted.
 */
import { describe, expect, it } from "@effect/vitest"
import { SimConfig, Simulator } from "@sluice/testing"
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
          // the first calls went as probes (at most 8, whose estimates sum to at most a quarter of the cautious
          // 20,000 tokens, the first alone whatever its size); the rest were admitted after the first answer
          const firstAnswer = Math.min(...events.filter((e) => e._tag !== "Admitted").map((e) => e.at))
          const probes = events.flatMap((e) => e._tag === "Admitted" && e.at < firstAnswer ? [e] : [])
          expect(probes[0]?.at).toBe(0)
          expect(probes.length).toBeGreaterThan(1)
          expect(probes.length).toBeLessThanOrEqual(8)
          expect(probes.reduce((sum, e) => sum + (e.cost.tokens ?? 0), 0)).toBeLessThanOrEqual(5_000)
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

  it.effect("the herd goes at the quickest probe's answer, not the first call's (a slow first call, quick ones behind it)", () =>
    withService({ organization: "acme" }, (openai, events) =>
      Effect.gen(function*() {
        // the first call generates 750 tokens (7.6 s), the others 10 (200 ms)
        const { exit } = yield* drive(Effect.forEach(
          Array.from({ length: 40 }, (_, i) => i),
          (i) =>
            openai.chat.completions.create({
              model: "gpt-4o",
              messages: [{ role: "user", content: `[req:${i}] hello` }],
              max_tokens: i === 0 ? 1_500 : 20
            }),
          { concurrency: "unbounded" }
        ))
        expect(Exit.isSuccess(exit)).toBe(true)
        const stats = yield* Simulator.stats
        expect(stats.byStatus).toEqual({ "200": 40 })
        const admitted = events.flatMap((e) => e._tag === "Admitted" ? [e.at] : []).sort((a, b) => a - b)
        const firstAnswer = Math.min(...events.flatMap((e) => e._tag === "Succeeded" ? [e.at] : []))
        // eight probes at once (1,600 tokens in all, within a quarter of the cautious 20,000), the rest after the
        // first answer, a quick probe's at 200 ms; with the first call probing alone the herd waited 7.6 s for it
        expect(admitted.filter((at) => at === 0)).toHaveLength(8)
        expect(firstAnswer).toBe(200)
        expect(admitted.slice(8).every((at) => at >= firstAnswer)).toBe(true)
        expect(admitted[8]).toBeLessThan(300)
      })).pipe(Effect.provide(Simulator.layer(SimConfig.make({
        seed: 1,
        models: { "gpt-4o": { limits: { rpm: 500, tpm: 30_000 } } },
        output: { fraction: 0.5 },
        latency: { request: { _tag: "fixed", ms: 100 }, perOutputTokenMs: 10 }
      })))))

  it.effect("the probes' estimates stay within a quarter of the cautious tokens: calls of 2,000 tokens send two", () =>
    withService({ organization: "acme" }, (openai, events) =>
      Effect.gen(function*() {
        const { exit } = yield* drive(Effect.forEach(
          Array.from({ length: 12 }, (_, i) => i),
          (i) =>
            openai.chat.completions.create({
              model: "gpt-4o",
              messages: [{ role: "user", content: `[req:${i}] hello` }],
              max_tokens: 1_990
            }),
          { concurrency: "unbounded" }
        ))
        expect(Exit.isSuccess(exit)).toBe(true)
        const admitted = events.flatMap((e) => e._tag === "Admitted" ? [e] : [])
        const firstAnswer = Math.min(...events.flatMap((e) => e._tag === "Succeeded" ? [e.at] : []))
        const probes = admitted.filter((e) => e.at < firstAnswer)
        // two calls of about 2,000 tokens fit in 5,000, a third does not: two probes, the rest after the answer
        expect(probes.map((e) => e.at)).toEqual([0, 0])
        expect(probes.every((e) => (e.cost.tokens ?? 0) > 1_990 && (e.cost.tokens ?? 0) < 2_100)).toBe(true)
        expect(admitted).toHaveLength(12)
      })).pipe(Effect.provide(Simulator.layer(SimConfig.make({
        seed: 1,
        models: { "gpt-4o": { limits: { rpm: 500, tpm: 100_000 } } },
        latency: { request: { _tag: "fixed", ms: 100 }, perOutputTokenMs: 0 }
      })))))
})
