/**
 * Learning without headers behind a round trip (issue 13): a 429 takes a round trip to come back, and a probe paced
 * by the clock alone keeps letting calls out while the first 429s are on their way (in real time, a CPU-starved
 * client at 20× simulated speed sees 10–25 ms stalls as 200–500 simulated ms). The in-process simulator (no
 * `x-ratelimit-*` headers, bare 429s) behind a network of `d` ms each way (and one whose round trip is the herd's own
 * queue, and a model slower than the probe's patience), under TestClock, real `openai` SDK. Six runs of 400 calls:
 * about 3.5 s of CPU each, the least that shows the round trip's herd (a workload larger than the server's bucket,
 * which the probe must overflow to find).
 */
import { describe, expect, it } from "@effect/vitest"
import { SimConfig, Simulator } from "@sluice/testing"
import { Effect } from "effect"
import { fastBatch } from "./fastDrive.js"
import { behindJitter, behindQueue, filler, layerBehindNetwork, rng, sum } from "./harness.js"

const MODEL = "gpt-4o-mini"
const LIMITS = { rpm: 600, tpm: 60_000 }
const CALLS = 400
/** The model's latency (before the network's): the longest is in the bound on the finish. */
const LATENCY = { min: 300, max: 900 }

const run = (
  network: Parameters<typeof layerBehindNetwork>[0],
  latency: { readonly min: number; readonly max: number } = LATENCY
) =>
  Effect.gen(function*() {
    const layer = yield* layerBehindNetwork(network)
    const random = rng(13)
    const batch = Array.from({ length: CALLS }, (_, i) => ({
      model: MODEL,
      messages: [{ role: "user" as const, content: `[req:${i}] ${filler(80 + Math.floor(random() ** 2 * 2_400))}` }],
      max_tokens: 16 + Math.floor(random() * 240)
    }))
    const { endedAt, stats } = yield* fastBatch(layer, batch)
    const rejected = stats.byStatus["429"] ?? 0
    // the server's bucket starts full (a minute of each limit) and refills at the limit's rate
    const minimum = Math.max(
      (sum(stats.admissions.map((a) => a.tokens)) - LIMITS.tpm) / (LIMITS.tpm / 60_000),
      (sum(stats.admissions.map((a) => a.requests)) - LIMITS.rpm) / (LIMITS.rpm / 60_000)
    )
    return { attempts: stats.attempts.length, rejected, endedAt, minimum, ok: stats.byStatus["200"] ?? 0 }
  }).pipe(Effect.provide(Simulator.layer(SimConfig.make({
    seed: 3,
    models: { [MODEL]: { limits: LIMITS } },
    enforcement: { rateLimitHeaders: false, retryAfter: false, retryAfterMs: false, rateLimitMessage: "bare" },
    latency: { request: { _tag: "uniform", min: latency.min, max: latency.max }, perOutputTokenMs: 0 }
  }))))

/**
 * 429s allowed, as a share of the attempts, per one-way delay. Before the blind ramp was paced by the round trip it
 * doubled every 400 ms whatever the round trip: 5, 8, 74 and 202 × 429 (1.2%, 2.0%, 15.6%, 33.6%). Now it doubles
 * every 4 round trips (at most every 3.2 s): 4, 4, 6, 11, met only thanks to a limiter bug (a permit's refund applied
 * with the bucket spec of its admission knocked the grown learned bucket back to its start: 7, 10, 21, 55 once fixed).
 * Then every 32 round trips of a 429 (the answer's less the server's time), within 400 ms and 16 s: 7, 7, 7, 9; at
 * 500 ms each way (a 1 s round trip for a 429) the 16 s bound bound, and what the ramp and each growth back let out
 * within the round trip of their first 429 was refused: 3%. Now every 64 (over loopback HTTP the 429s fell from
 * 2.1-4.3% of the attempts to 0.2-0.9%, see learn.ts): 7, 5, 5, 8; the 16 s bound binds behind a round trip above
 * 250 ms (from 200 ms each way).
 */
const SHARE_429: Record<number, number> = { 0: 0.02, 50: 0.02, 200: 0.02, 500: 0.03 }

describe("OpenAi: learning without headers behind a round trip", () => {
  for (const oneWay of [0, 50, 200, 500]) {
    it.effect(
      `${CALLS} calls at once, ${oneWay} ms each way: the 429s on their way stop the probe`,
      () =>
        Effect.gen(function*() {
          const { attempts, rejected, endedAt, minimum, ok } = yield* run(oneWay)
          console.log(
            `${oneWay} ms each way: ${attempts} attempts, ${rejected} × 429 (${
              (100 * rejected / attempts).toFixed(1)
            }%), wall ${endedAt} ms, minimum ${Math.round(minimum)} ms, ratio ${(endedAt / minimum).toFixed(3)}`
          )
          expect(ok).toBe(CALLS)
          expect(rejected / attempts).toBeLessThanOrEqual(SHARE_429[oneWay])
          // 1.10× the minimum, plus the learning: the first answer, the slow start (from 20,000 tokens to the bucket's
          // 60,000 and its refill: under two doublings of at most 3.2 s) and the last answer
          expect(endedAt).toBeLessThanOrEqual(1.1 * minimum + 2 * (LATENCY.max + 2 * oneWay) + 2 * 3_200)
        }),
      120_000
    )
  }
})

/**
 * Each request and each answer takes this much of one serial resource (see `behindQueue`): the herd's 400 calls make a
 * queue of up to 4 s, and a 429 comes back after the queue ahead of it, as over loopback HTTP on a loaded machine (the
 * benchmark's no-headers row: 2-5 s from `fetch` to a 429 read, against the probe's 25 ms). Before the blind ramp took
 * its pace from the round trips of its latest sends (as they come, the largest of five), it kept the probe's (a fast
 * doubling from an idle path) and let the herd out faster than the queue drained: 168 × 429 in 568 attempts (29.6%);
 * then 10 in 410 (2.4%; 2 ms a call: 7 in 407) at 32 round trips a doubling; at 64, 6 in 406 (1.5%).
 */
const PER_CALL_MILLIS = 5

describe("OpenAi: learning without headers behind the herd's own queue", () => {
  it.effect(
    `${CALLS} calls at once, ${PER_CALL_MILLIS} ms a call each way in one queue: the ramp slows as its round trip grows`,
    () =>
      Effect.gen(function*() {
        const { attempts, rejected, endedAt, minimum, ok } = yield* run(
          behindQueue({ oneWay: 2, perCall: PER_CALL_MILLIS })
        )
        console.log(
          `queue of ${PER_CALL_MILLIS} ms a call: ${attempts} attempts, ${rejected} × 429 (${
            (100 * rejected / attempts).toFixed(1)
          }%), wall ${endedAt} ms, minimum ${Math.round(minimum)} ms, ratio ${(endedAt / minimum).toFixed(3)}`
        )
        expect(ok).toBe(CALLS)
        expect(rejected / attempts).toBeLessThanOrEqual(0.03)
        // as above, with the round trip of a call behind the whole queue
        expect(endedAt).toBeLessThanOrEqual(
          1.1 * minimum + 2 * (LATENCY.max + 2 * CALLS * PER_CALL_MILLIS) + 2 * 3_200
        )
      }),
    120_000
  )
})

/**
 * Round trips that differ within the herd: most calls travel 5 ms each way, one in four 150 ms (a client that reads
 * some answers late while it sends: over loopback HTTP, calls sent together came back after 12 ms and after 300 ms).
 * When the ramp took the slowest of its five latest-sent answers alone, its pace swung with each answer between the
 * fast and the slow end, and each swing to the fast end let a burst out at several times the rate: 25 × 429 in 425
 * attempts (5.9%), ratio 1.020; holding the slowest answer of the last 2 s: 5 in 405 (1.2%), 1.029 (fewer 429s for 1%
 * more time), at 32 round trips a doubling; at 64, 7 in 407 (1.7%), 1.016.
 * The slowest answer of the last 2 s holds the pace until it is that old.
 */
const JITTER = { fast: 5, slow: 150, every: 4 }

describe("OpenAi: learning without headers behind round trips that differ within the herd", () => {
  it.effect(
    `${CALLS} calls at once, ${JITTER.fast} ms each way, one call in ${JITTER.every} ${JITTER.slow} ms: the pace holds its slowest`,
    () =>
      Effect.gen(function*() {
        const { attempts, rejected, endedAt, minimum, ok } = yield* run(behindJitter(JITTER))
        console.log(
          `jitter: ${attempts} attempts, ${rejected} × 429 (${
            (100 * rejected / attempts).toFixed(1)
          }%), wall ${endedAt} ms, minimum ${Math.round(minimum)} ms, ratio ${(endedAt / minimum).toFixed(3)}`
        )
        expect(ok).toBe(CALLS)
        expect(rejected / attempts).toBeLessThanOrEqual(0.02)
        expect(endedAt).toBeLessThanOrEqual(1.1 * minimum + 2 * (LATENCY.max + 2 * JITTER.slow) + 2 * 3_200)
      }),
    120_000
  )
})

/**
 * A model slower than the probe's patience (11-14 s an answer; the few-large shape's take 30-40 s) behind 500 ms each
 * way: the herd goes out blind at 10 s, before any answer, and the probe's answer (sent alone) then shows a 429's round
 * trip of 1 s (its round trip less `openai-processing-ms`): a doubling of 16 s (its bound). When the round trips kept
 * were those of calls sent over the last 10 s, no answer counted (each came over 10 s after its call left), and a ramp
 * started before any answer was bound to 3.2 s a doubling: it kept doubling every 3.2 s, 55 × 429 in 455 attempts
 * (12.1%; 12-20 s a call: the same). Windowed on when they were answered, the first answer bounding the ramp: 12 in 412
 * (2.9%; 12-20 s: 14 in 414). At 15-30 s the ramp, blind from 10 s, overran the server's bucket before the first
 * answer came (17.6 s, a 429): 55 × 429 either way, nothing to pace by until then. (12 in 412 at 64 round trips a
 * doubling too: the 16 s bound binds behind its 1 s round trip.)
 */
const SLOW_MODEL = { min: 11_000, max: 14_000 }

describe("OpenAi: learning without headers from a slow model's answers", () => {
  it.effect(
    `${CALLS} calls at once, 11-14 s a call and 500 ms each way: the ramp doubles by the 429's round trip`,
    () =>
      Effect.gen(function*() {
        const { attempts, rejected, endedAt, minimum, ok } = yield* run(500, SLOW_MODEL)
        console.log(
          `slow model: ${attempts} attempts, ${rejected} × 429 (${
            (100 * rejected / attempts).toFixed(1)
          }%), wall ${endedAt} ms, minimum ${Math.round(minimum)} ms, ratio ${(endedAt / minimum).toFixed(3)}`
        )
        expect(ok).toBe(CALLS)
        // 3% and one 429 of room (12 in 412 now; 55 in 455 before)
        expect(rejected).toBeLessThanOrEqual(Math.floor(0.03 * attempts) + 1)
        // as above, with the ramp's slowest doubling (16 s) for the slow start
        expect(endedAt).toBeLessThanOrEqual(1.1 * minimum + 2 * (SLOW_MODEL.max + 2 * 500) + 2 * 16_000)
      }),
    120_000
  )
})
