/**
 * How fast an adaptive pool starts without rate-limit headers (issue 13, the learned rows' time): the blind ramp
 * doubles by the round trip a 429 takes (an answer's less its `openai-processing-ms`), not by the answer's whole
 * round trip, which a model's generation makes 0.4–2.9 s here. In-process simulator, TestClock, real SDK; 120 calls.
 */
import { describe, expect, it } from "@effect/vitest"
import { SimConfig, Simulator } from "@sluice/testing"
import { Effect } from "effect"
import { fastBatch } from "./fastDrive.js"
import { filler, layerBehindNetwork, rng } from "./harness.js"

const MODEL = "gpt-4o-mini"
const LIMITS = { rpm: 5_000, tpm: 40_000 }
const CALLS = 120
/** The probe's answer: 300 ms, 10 ms for each of its 256 output tokens, 2 ms each way. */
const PROBE_ANSWER_MILLIS = 300 + 10 * 256 + 4

const run = () =>
  Effect.gen(function*() {
    const layer = yield* layerBehindNetwork(2)
    const random = rng(5)
    // the first call (the probe) asks the most output tokens: its answer takes 2.9 s
    const batch = Array.from({ length: CALLS }, (_, i) => ({
      model: MODEL,
      messages: [{ role: "user" as const, content: `[req:${i}] ${filler(400 + Math.floor(random() * 800))}` }],
      max_tokens: i === 0 ? 512 : i === 7 ? 16 : 64 + Math.floor(random() * 448)
    }))
    const { endedAt, stats } = yield* fastBatch(layer, batch)
    const tokens = stats.admissions.reduce((sum, a) => sum + a.tokens, 0)
    // the server's bucket starts full and refills at the limit's rate: no schedule sends the last call earlier
    const refill = Math.max(0, (tokens - LIMITS.tpm) / (LIMITS.tpm / 60_000))
    const answered = stats.attempts.filter((a) => a.status === 200)
    // the pacing's own measure: when the last call left (which call goes last, and so whose latency ends the run, is
    // the server's order of answers, not the limiter's choice)
    const lastSent = Math.max(...answered.map((a) => a.at))
    return {
      rejected: stats.byStatus["429"] ?? 0,
      attempts: stats.attempts.length,
      endedAt,
      lastSent,
      refill
    }
  }).pipe(Effect.provide(Simulator.layer(SimConfig.make({
    seed: 11,
    models: { [MODEL]: { limits: LIMITS } },
    enforcement: { rateLimitHeaders: false, retryAfter: false, retryAfterMs: false },
    // an answer takes 300 ms plus 10 ms per generated token (half of max_tokens): 0.4-2.9 s
    latency: { request: { _tag: "fixed", ms: 300 }, perOutputTokenMs: 10 },
    output: { fraction: 0.5 }
  }))))

describe("OpenAi: an adaptive pool's start", () => {
  it.effect("without headers, the ramp doubles by a 429's round trip (an answer's less the server's time)", () =>
    Effect.gen(function*() {
      const { attempts, endedAt, lastSent, refill, rejected } = yield* run()
      console.log(
        `no headers: ${rejected} × 429 in ${attempts}, last sent at ${lastSent} ms, ended at ${endedAt} ms ` +
          `against a refill of ${Math.round(refill)} ms`
      )
      expect(rejected / attempts).toBeLessThanOrEqual(0.02)
      // the herd waits for the probe's answer (2.9 s), then the ramp; before: doubling every 3.2 s (4 answer round
      // trips of 0.4-2.9 s), from 20,000 tokens: 10,811 ms. The last call leaves within 1.15x the refill after that
      // wait; the run's end follows within the largest latency (issue 13's bound: "plus the largest latency")
      expect(lastSent).toBeLessThanOrEqual(1.15 * refill + PROBE_ANSWER_MILLIS)
    }))
})
