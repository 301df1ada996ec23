/**
 * `sluice run`'s path (the `BulkExecutor`, lines taken up by a pool of 256 workers) against a server that sends no
 * `x-ratelimit-*` headers and no `retry-after` and is bound by its requests limit alone (issue 13): the pool starts
 * at the cautious 60 RPM and probes upward (the blind ramp, doubling every 400 ms) until the server pushes back,
 * then holds at the limit its 429 names. In-process simulator, TestClock, real `openai` SDK.
 *
 * The README's earlier figure for this shape (900 lines in 3m19s of simulated time, no 429, the limit never
 * found) was `sluice run --speed 5` on a machine at load ~20: simulated time sped up past what the CPU could
 * serve (the limiter never bound: "the limits in force did not bind"), not the probe. In virtual time, and in
 * real time at `--speed 1` (32 s, 3 × 429), the probe finds the limit at once.
 */
import { describe, expect, it } from "@effect/vitest"
import type { BulkRunner } from "@sluice/openai"
import { SimConfig, Simulator, VirtualTime } from "@sluice/testing"
import { Clock, Effect, Exit } from "effect"
import { simExecutor, sum } from "./harness.js"

const MODEL = "gpt-4o-mini"
const POOL = "org:default/pool:gpt-4o-mini"
const LINES = 900
const RPM = 600
const WORKERS = 256
const MAX_LATENCY = 800

describe("BulkExecutor: a requests-bound server without rate-limit headers", () => {
  it.effect(
    `${LINES} lines, ${WORKERS} workers, ${RPM} RPM, no headers: the limit is found from the first 429`,
    () =>
      Effect.gen(function*() {
        const executor = yield* simExecutor()
        const lines: ReadonlyArray<BulkRunner.Request> = Array.from({ length: LINES }, (_, i) => ({
          customId: `l-${i}`,
          url: "/v1/chat/completions",
          line: i + 1,
          body: {
            model: MODEL,
            messages: [{ role: "user", content: `[req:l-${i}] Ticket ${i}: the billing portal times out.` }],
            max_tokens: 16
          }
        }))
        // virtual time stepped by @sluice/testing's driver (the harness's `drive` waits three real timer turns a step)
        const exit = yield* VirtualTime.run(
          Effect.exit(Effect.forEach(lines, (line) => executor.execute(line), { concurrency: WORKERS })),
          { seed: "sluice-tests" }
        )
        const endedAt = yield* Clock.currentTimeMillis
        expect(Exit.isSuccess(exit)).toBe(true)
        const stats = yield* Simulator.stats
        const rejected = stats.byStatus["429"] ?? 0
        // the server's requests bucket starts full (600) and refills at 10 a second
        const minimum = (sum(stats.admissions.map((a) => a.requests)) - RPM) / (RPM / 60_000)
        const learned = yield* executor.learned
        console.log(
          `no headers, ${RPM} RPM: ${stats.attempts.length} attempts, ${rejected} × 429, ended ${
            Math.round(endedAt)
          } ms,` +
            ` minimum ${Math.round(minimum)} ms (×${(endedAt / minimum).toFixed(3)}); learned: ${learned.join("; ")}`
        )
        expect(stats.byStatus["200"]).toBe(LINES)
        expect(executor.limiter.limitsOf(POOL).find((l) => l.dimension === "requests")?.amount).toBe(RPM)
        expect(learned).toContain(`requests limit 600/min on ${POOL} after 1 429`)
        expect(rejected / stats.attempts.length).toBeLessThanOrEqual(0.01)
        // within 1.05× the minimum plus the slowest answer (the probe's first answer, the slow start and the 429
        // that named the limit take well under a second)
        expect(endedAt).toBeLessThanOrEqual(1.05 * minimum + MAX_LATENCY)
      }).pipe(
        Effect.scoped,
        Effect.provide(Simulator.layer(SimConfig.make({
          seed: 3,
          models: { [MODEL]: { limits: { rpm: RPM, tpm: 10_000_000 } } },
          enforcement: { rateLimitHeaders: false, retryAfter: false, retryAfterMs: false },
          latency: { request: { _tag: "uniform", min: 200, max: MAX_LATENCY }, perOutputTokenMs: 1 }
        })))
      ),
    900_000
  )
})
