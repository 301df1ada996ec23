/**
 * Learning what the server enforces but does not announce (issue 13, items 2 and 3), against the
 * in-process simulator under TestClock (real `openai` SDK): a server whose buckets hold only a few seconds
 * of each per-minute limit, and a server that sends no rate-limit headers at all.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import { OpenAi } from "@sluice/openai"
import { SimConfig, Simulator } from "@sluice/testing"
import { Effect, Exit } from "effect"
import { fastDrive as drive } from "./fastDrive.js"
import { mixedBatch, sum, withService } from "./harness.js"

const MODEL = "gpt-4o"
const POOL = "org:acme/pool:gpt-4o"

/**
 * The least time the server's buckets allow: each starts full (its capacity: the burst when the server
 * enforces one, else the limit) and refills at the limit's rate.
 */
const minimumOf = (
  stats: { readonly admissions: ReadonlyArray<{ readonly tokens: number; readonly requests: number }> },
  limits: { readonly rpm: number; readonly tpm: number },
  burstShare = 1
) =>
  Math.max(
    0,
    (sum(stats.admissions.map((a) => a.tokens)) - limits.tpm * burstShare) / (limits.tpm / 60_000),
    (sum(stats.admissions.map((a) => a.requests)) - limits.rpm * burstShare) / (limits.rpm / 60_000)
  )

// Long virtual-time runs through the real SDK: one to several minutes of real time on a loaded machine.
describe("OpenAi: learning what the server does not announce", () => {
  /**
   * 250 calls at once against a server whose buckets hold 5 s of its announced 500 RPM / 30,000 TPM, with the
   * budgets given (what `sluice run --limits` configures) or none (learned).
   */
  const subMinute = (budgets: ReadonlyArray<Budget.Budget> | undefined, name: string) =>
    withService({ organization: "acme", timeSlice: false, budgets }, (openai) =>
      Effect.gen(function*() {
        const batch = mixedBatch(250, 5, MODEL)
        const { endedAt, exit } = yield* drive(
          Effect.forEach(batch, (params) => openai.chat.completions.create(params), { concurrency: "unbounded" })
        )
        expect(Exit.isSuccess(exit)).toBe(true)
        const stats = yield* Simulator.stats
        const rejected = stats.byStatus["429"] ?? 0
        const minimum = minimumOf(stats, { rpm: 500, tpm: 30_000 }, 5_000 / 60_000)
        const snapshot = yield* openai.limiter.snapshot
        console.log(
          `sub-minute, ${name}: ${stats.attempts.length} attempts, ${rejected} × 429, wall ${endedAt} ms, minimum ${
            Math.round(minimum)
          } ms, ratio ${(endedAt / minimum).toFixed(3)}; ${
            JSON.stringify(
              snapshot.levels.filter((l) => l.scope === POOL).map((l) => [l.dimension, l.limit.amount, l.limit.burst])
            )
          }`
        )
        expect(stats.byStatus["200"]).toBe(250)
        expect(Object.keys(stats.attemptsByKey)).toHaveLength(250)
        // the tokens bucket holds 5 s of the 30,000 TPM announced
        const tokens = snapshot.levels.find((l) => l.scope === POOL && l.dimension === "tokens")!
        expect(tokens.limit.amount).toBe(30_000)
        expect(tokens.limit.burst).toBe(2_500)
        return {
          tokens,
          rejected,
          rejectedAt: stats.attempts.filter((a) => a.status === 429).map((a) => a.at),
          firstAnswerAt: Math.min(...stats.attempts.map((a) => a.at + (a.latencyMs ?? 0))),
          attempts: stats.attempts.length,
          endedAt,
          minimum,
          learned: yield* openai.learned
        }
      })).pipe(Effect.provide(Simulator.layer(SimConfig.make({
        seed: 3,
        models: { [MODEL]: { limits: { rpm: 500, tpm: 30_000 } } },
        enforcement: { subWindowMs: 5_000 },
        latency: { request: { _tag: "uniform", min: 200, max: 800 }, perOutputTokenMs: 1 }
      }))))

  it.effect(
    "item 2: 250 calls against sub-minute enforcement (5 s buckets): learns the burst",
    () =>
      Effect.gen(function*() {
        const run = yield* subMinute(undefined, "learned")
        expect(run.tokens.learned).toBe(true)
        expect(run.rejected / run.attempts).toBeLessThanOrEqual(0.01)
        expect(run.endedAt).toBeLessThanOrEqual(1.1 * run.minimum + 800)
        // the probes (up to 5,000 tokens before any answer) overflow the 2,500-token bucket: the two 429s that
        // teach it are theirs, sent before any answer came (a 429 is one); with one probe, 1 × 429
        expect(run.rejected).toBe(2)
        for (const at of run.rejectedAt) expect(at).toBeLessThanOrEqual(run.firstAnswerAt)
        expect(OpenAi.describeLearned(run.learned)).toEqual([
          "tokens burst 2,500 on org:acme/pool:gpt-4o after 2 429s"
        ])
      }),
    900_000
  )

  /**
   * The budgets given: the announced per-minute figures, with or without their bursts. Before configured pools
   * learned bursts, the announced figures alone never learned one: this run failed (calls gave up after their
   * 429s), and the bench's 400 lines drew 993 × 429 in 1,393 attempts.
   */
  const subMinuteConfigured = (burst: boolean) =>
    subMinute(
      [Budget.make(POOL, [
        Budget.Limit.perMinute("requests", 500, burst ? 500 * 5 / 60 : undefined),
        Budget.Limit.perMinute("tokens", 30_000, burst ? 2_500 : undefined)
      ])],
      burst ? "budgets given with their bursts" : "budgets given"
    )

  it.effect(
    "item 2 with the announced limits given: a configured pool learns the burst too (its amount stands)",
    () =>
      Effect.gen(function*() {
        const run = yield* subMinuteConfigured(false)
        expect(OpenAi.describeLearned(run.learned)).toEqual([
          `tokens burst 2,500 on org:acme/pool:gpt-4o after ${run.rejected} 429s`
        ])
        // the herd sent at once, before any answer could tell, overflows the 5 s bucket; once the first 429s have
        // taught the burst, at most two more
        expect(run.rejectedAt.filter((at) => at > 0).length).toBeLessThanOrEqual(2)
        expect(run.rejected / run.attempts).toBeLessThanOrEqual(0.12)
        expect(run.endedAt).toBeLessThanOrEqual(1.1 * run.minimum + 800)
      }),
    900_000
  )

  it.effect(
    "item 2 with the limits and their bursts given: no 429",
    () =>
      Effect.gen(function*() {
        const run = yield* subMinuteConfigured(true)
        expect(run.rejected).toBe(0)
        expect(run.learned).toEqual([])
        expect(run.endedAt).toBeLessThanOrEqual(1.1 * run.minimum + 800)
      }),
    900_000
  )

  it.effect(
    "item 3: 1,000 calls, no rate-limit headers and no retry-after: probes up to the limit",
    () =>
      withService({ organization: "acme", timeSlice: false }, (openai) =>
        Effect.gen(function*() {
          const batch = Array.from({ length: 1_000 }, (_, i) => ({
            model: MODEL,
            messages: [{ role: "user" as const, content: `[req:${i}] ${"lorem ipsum dolor sit amet ".repeat(3)}` }],
            max_tokens: 40
          }))
          const { endedAt, exit } = yield* drive(
            Effect.forEach(batch, (params) => openai.chat.completions.create(params), { concurrency: "unbounded" })
          )
          expect(Exit.isSuccess(exit)).toBe(true)
          const stats = yield* Simulator.stats
          const rejected = stats.byStatus["429"] ?? 0
          const minimum = minimumOf(stats, { rpm: 600, tpm: 60_000 })
          const snapshot = yield* openai.limiter.snapshot
          console.log(
            `no headers: ${stats.attempts.length} attempts, ${rejected} × 429, wall ${endedAt} ms, minimum ${
              Math.round(minimum)
            } ms, ratio ${(endedAt / minimum).toFixed(3)}; ${
              JSON.stringify(
                snapshot.levels.filter((l) => l.scope === POOL).map((l) => [l.dimension, l.limit.amount, l.limit.burst])
              )
            }`
          )
          expect(stats.byStatus["200"]).toBe(1_000)
          expect(Object.keys(stats.attemptsByKey)).toHaveLength(1_000)
          // the requests limit binds: named by the 429 that stopped the probe
          expect(openai.limiter.limitsOf(POOL).find((l) => l.dimension === "requests")?.amount).toBe(600)
          expect(rejected / stats.attempts.length).toBeLessThanOrEqual(0.03)
          expect(endedAt).toBeLessThanOrEqual(1.15 * minimum + 800)
        })).pipe(Effect.provide(Simulator.layer(SimConfig.make({
          seed: 3,
          models: { [MODEL]: { limits: { rpm: 600, tpm: 60_000 } } },
          enforcement: { rateLimitHeaders: false, retryAfter: false, retryAfterMs: false },
          latency: { request: { _tag: "uniform", min: 200, max: 800 }, perOutputTokenMs: 1 }
        })))),
    900_000
  )
})
