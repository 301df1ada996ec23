/**
 * Learning a sub-minute bucket when answers take a round trip (issue 13): the real-time benchmark's learned
 * row had 38% 429s where virtual time had none, because the in-process simulator answers a 429 in the instant
 * the call is sent, and over HTTP it comes back a round trip later (the network, and on a loaded machine the
 * queue the herd itself makes). The first-contact ramp let the whole herd out in 150 ms, long before the first
 * 429 was read; every call it let out meanwhile was refused too. Here the same in-process simulator sits behind
 * a network of 100 ms each way, under TestClock (real `openai` SDK).
 */
import { describe, expect, it } from "@effect/vitest"
import { OpenAi } from "@sluice/openai"
import { SimConfig, Simulator } from "@sluice/testing"
import { Effect, Exit } from "effect"
import { drive, layerBehindNetwork, mixedBatch, sum } from "./harness.js"

const MODEL = "gpt-4o"
const POOL = "org:acme/pool:gpt-4o"
const LIMITS = { rpm: 5_000, tpm: 120_000 }
/** The server's buckets hold 5 s of each limit: 10,000 tokens under 120,000 TPM. */
const SUB_WINDOW = 5_000
const ONE_WAY_MILLIS = 100

describe("OpenAi: a sub-minute bucket learned over a round trip", () => {
  it.effect(
    "300 calls at once, 100 ms each way: the herd after the first answer does not outrun the first 429",
    () =>
      Effect.gen(function*() {
        const layer = yield* layerBehindNetwork(ONE_WAY_MILLIS)
        // the service lives as long as the run (its limiter's dispatcher with it)
        yield* Effect.flatMap(OpenAi.OpenAi, (openai) => run(openai)).pipe(Effect.provide(layer))
      }).pipe(Effect.provide(Simulator.layer(SimConfig.make({
        seed: 5,
        models: { [MODEL]: { limits: LIMITS } },
        enforcement: { subWindowMs: SUB_WINDOW },
        latency: { request: { _tag: "uniform", min: 200, max: 800 }, perOutputTokenMs: 1 }
      })))),
    300_000
  )
})

const run = (openai: OpenAi.OpenAi.Service) =>
  Effect.gen(function*() {
    const batch = mixedBatch(300, 11, MODEL)
    const { endedAt, exit } = yield* drive(
      Effect.forEach(batch, (params) => openai.chat.completions.create(params), { concurrency: "unbounded" })
    )
    expect(Exit.isSuccess(exit)).toBe(true)
    const stats = yield* Simulator.stats
    const rejected = stats.byStatus["429"] ?? 0
    // each server bucket starts full at its capacity (the burst) and refills at the limit's rate
    const share = SUB_WINDOW / 60_000
    const minimum = Math.max(
      (sum(stats.admissions.map((a) => a.tokens)) - LIMITS.tpm * share) / (LIMITS.tpm / 60_000),
      (sum(stats.admissions.map((a) => a.requests)) - LIMITS.rpm * share) / (LIMITS.rpm / 60_000)
    )
    const burst = openai.limiter.limitsOf(POOL).find((l) => l.dimension === "tokens")?.burst
    console.log(
      `round trip 2 × ${ONE_WAY_MILLIS} ms: ${stats.attempts.length} attempts, ${rejected} × 429, wall ${endedAt} ms,` +
        ` minimum ${Math.round(minimum)} ms, ratio ${(endedAt / minimum).toFixed(3)}, burst learned ${burst}`
    )
    expect(stats.byStatus["200"]).toBe(300)
    expect(burst).toBeGreaterThanOrEqual(9_900)
    expect(burst).toBeLessThanOrEqual(10_000)
    // with the earlier 150 ms ramp: 103 × 429 in 403 attempts (26%), ×1.018; now 4 in 304 (1.3%), ×1.025
    expect(rejected / stats.attempts.length).toBeLessThanOrEqual(0.02)
    // the minimum, the first answer and the 2 × 100 ms of the last call, and 10% more
    expect(endedAt).toBeLessThanOrEqual(1.1 * minimum + 2 * 1_000 + 4 * ONE_WAY_MILLIS)
  })
