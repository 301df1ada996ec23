/**
 * `sluice run`'s path (the `BulkExecutor`, 256 workers) with the announced per-minute limits given (what `--limits`
 * without `burst` configures) against a server that enforces them over 5 s buckets: the executor turns the
 * first-contact ramp on (`OpenAi.Options.firstContactRamp`), so its first herd goes out over the ramp until the first
 * 429, which teaches the burst (3 x 429 in 403 attempts; before, 228 in 628, ending as late). In-process simulator, TestClock, real `openai` SDK.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import type { BulkRunner } from "@sluice/openai"
import { SimConfig, Simulator, VirtualTime } from "@sluice/testing"
import { Clock, Effect, Exit } from "effect"
import { simExecutor, sum } from "./harness.js"

const MODEL = "gpt-4o-mini"
const POOL = "org:default/pool:gpt-4o-mini"
const LINES = 400
const RPM = 5_000
const TPM = 450_000

describe("BulkExecutor: the first-contact ramp", () => {
  it.effect(
    `${LINES} lines, the announced ${RPM} RPM / ${TPM} TPM given, 5 s buckets at the server: 429s within 2% (228 in 628 without the ramp)`,
    () =>
      Effect.gen(function*() {
        const executor = yield* simExecutor({
          budgets: [Budget.make(POOL, [
            Budget.Limit.perMinute("requests", RPM),
            Budget.Limit.perMinute("tokens", TPM)
          ])]
        })
        const lines: ReadonlyArray<BulkRunner.Request> = Array.from({ length: LINES }, (_, i) => ({
          customId: `l-${i}`,
          url: "/v1/chat/completions",
          line: i + 1,
          body: {
            model: MODEL,
            messages: [{
              role: "user",
              content: `[req:l-${i}] ${"lorem ipsum dolor sit amet ".repeat(20 + (i % 7) * 30)}`
            }],
            max_tokens: 64 + (i % 5) * 112
          }
        }))
        const exit = yield* VirtualTime.run(
          Effect.exit(Effect.forEach(lines, (line) => executor.execute(line), { concurrency: 256 })),
          { seed: "sluice-tests" }
        )
        const endedAt = yield* Clock.currentTimeMillis
        expect(Exit.isSuccess(exit)).toBe(true)
        const stats = yield* Simulator.stats
        const rejected = stats.byStatus["429"] ?? 0
        // the server's tokens bucket holds 5 s of the limit and refills at the limit's rate
        const minimum = (sum(stats.admissions.map((a) => a.tokens)) - TPM / 12) / (TPM / 60_000)
        const learned = yield* executor.learned
        console.log(
          `first contact, sluice run's path: ${stats.attempts.length} attempts, ${rejected} x 429, ended ${
            Math.round(endedAt)
          } ms, minimum ${Math.round(minimum)} ms; learned: ${learned.join("; ")}`
        )
        expect(stats.byStatus["200"]).toBe(LINES)
        // the ramp releases its calls at its timer's steps, several in one virtual instant: the first overflow of the
        // bucket is one such step (3 x 429 here); sent all at once (before the ramp), 228 x 429 in 628 attempts
        expect(rejected / stats.attempts.length).toBeLessThanOrEqual(0.02)
        expect(learned.some((line) => line.startsWith(`tokens burst`))).toBe(true)
        expect(endedAt).toBeLessThanOrEqual(1.1 * minimum + 800)
      }).pipe(
        Effect.scoped,
        Effect.provide(Simulator.layer(SimConfig.make({
          seed: 3,
          models: { [MODEL]: { limits: { rpm: RPM, tpm: TPM } } },
          enforcement: { subWindowMs: 5_000 },
          latency: { request: { _tag: "uniform", min: 200, max: 800 }, perOutputTokenMs: 1 }
        })))
      ),
    900_000
  )
})
