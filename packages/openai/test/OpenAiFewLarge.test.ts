/**
 * Few large calls with budgets equal to the server's limits (issue 13; the `few-large` shape of `pnpm bench:cli
 * --shapes`, where `sluice run --limits` took 1.52× the minimum and a bare SDK with p-limit(64) 1.29×): 90 calls
 * of 200–400 prompt words with `max_tokens` 2,048–8,192, all at once, against 5,000 RPM / 200,000 TPM; the model
 * writes half the maximum at 10 ms a token (10–41 s a call). Real `openai` SDK against the in-process simulator,
 * under TestClock: the same admissions every run.
 *
 * What was found (the cause, by tracing `RateLimiter.sync` on the bench's own 90 lines; the figures below are
 * theirs, this test's lines are alike): the client reserves each call's estimate (prompt +
 * `max_tokens`, about twice what the simulator charges: it settles a call to its usage the moment it admits it)
 * until the call's answer, 10–41 s later. So 38 calls go at once where the server would take 64, and the rest
 * wait for the refill and for the refunds that come with the answers. The server's reports that would correct
 * the over-estimate come back with those answers too, and every call of the first instant was sent together
 * with 37 others: its report cannot say which of them the server had counted already (they may reach it in
 * any order), so it is folded in only to lower the level (`REPORT_SKEW_MILLIS`). The first report adopted both
 * ways is that of a call sent alone (at 187 ms), answered at 21.1 s: 14 calls were admitted at that instant.
 * Refunds are applied at settle and wake the next waiter at once (admissions follow each answer); the queue
 * is FIFO, so no call overtakes a large one at its head, which costs no capacity.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import { SimConfig, SimStats, Simulator } from "@sluice/testing"
import { Clock, Effect, Exit } from "effect"
import { drive, rng, withService } from "./harness.js"

const MODEL = "gpt-4o-mini"
const POOL = "org:default/pool:gpt-4o-mini"
const LIMITS = { rpm: 5_000, tpm: 200_000 }

const scenario = SimConfig.make({
  seed: 20_261_206,
  models: { [MODEL]: { kind: "chat", limits: LIMITS, contextWindow: 128_000 } },
  latency: { request: { _tag: "lognormal", median: 500, sigma: 0.5, max: 6_000 }, perOutputTokenMs: 10 },
  output: { fraction: 0.5 }
})

/** 90 calls of 200–400 prompt words ("lorem ipsum dolor sit amet ": about 6.75 tokens per 5 words), seeded. */
const calls = (() => {
  const random = rng(90)
  return Array.from({ length: 90 }, (_, i) => ({
    model: MODEL,
    messages: [{
      role: "user" as const,
      content: `[req:${i}] ${"lorem ipsum dolor sit amet ".repeat(Math.round((200 + random() * 200) / 5))}`
    }],
    max_tokens: [2_048, 4_096, 6_144, 8_192][Math.floor(random() * 4)]
  }))
})()

/** The server's minimum for what it charged (its buckets start full) plus the largest latency it served. */
const boundOf = (stats: SimStats.Snapshot) => {
  const latency = Math.max(...stats.attempts.map((a) => a.latencyMs ?? 0))
  return { minimum: SimStats.theoreticalMinimum(stats, LIMITS), latency }
}

const sluice = withService({
  timeSlice: false,
  budgets: [
    Budget.make(POOL, [Budget.Limit.perMinute("requests", LIMITS.rpm), Budget.Limit.perMinute("tokens", LIMITS.tpm)])
  ]
}, (openai, events) =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const { endedAt, exit } = yield* drive(
      Effect.forEach(calls, (params) => openai.chat.completions.create(params), { concurrency: 256 })
    )
    expect(Exit.isSuccess(exit)).toBe(true)
    const stats = yield* Simulator.stats
    const admitted = events.filter((e) => e._tag === "Admitted").map((e) => e.at - start)
    return { wall: endedAt - start, stats, atOnce: admitted.filter((at) => at === 0).length, ...boundOf(stats) }
  })).pipe(Effect.provide(Simulator.layer(scenario)))

const report = (name: string, run: { wall: number; minimum: number; latency: number }) =>
  console.log(
    `few-large, ${name}: ${Math.round(run.wall)} ms; minimum ${Math.round(run.minimum)} ms + largest latency ${
      Math.round(run.latency)
    } ms: ${(run.wall / (run.minimum + run.latency)).toFixed(3)}×`
  )

describe("OpenAi: few large calls, budgets equal to the server's", () => {
  it.effect("every call succeeds with no 429; the estimates fill the bucket at 36 calls", () =>
    Effect.gen(function*() {
      const ours = yield* sluice
      report("budgets equal to the server's", ours)
      expect(ours.stats.byStatus).toEqual({ "200": 90 })
      // the cause above: 36 estimates fill the 200,000-token bucket, where what the server charged for the
      // first 64 calls (prompt + half the maximum) fits it
      expect(ours.atOnce).toBe(36)
      const first64 = ours.stats.admissions.slice(0, 64).reduce((sum, a) => sum + a.tokens, 0)
      expect(first64).toBeLessThanOrEqual(LIMITS.tpm)
    }), 300_000)

  // Issue 13's goal (within 1.10× the minimum plus the largest latency) is not met yet: 82.8 s against
  // 22.8 s + 42.2 s, 1.27×. The run is deterministic, so the band is pinned: a change that makes it worse fails
  // here, and one that meets the goal fails too (then the bound becomes `≤ 1.10` and the lower one goes).
  it.effect(
    "ends at 1.27× the minimum plus the largest latency (goal 1.10×, not met: see the cause above)",
    () =>
      Effect.map(sluice, (ours) => {
        const ratio = ours.wall / (ours.minimum + ours.latency)
        expect(ratio).toBeGreaterThan(1.1)
        expect(ratio).toBeLessThanOrEqual(1.3)
      }),
    300_000
  )
})
