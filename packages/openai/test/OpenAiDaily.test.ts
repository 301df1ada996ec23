/**
 * Daily limits (RPD, TPD) are never in the headers: the first 429 that names one ("… per day (RPD): Limit L,
 * Used U …") teaches the pool a per-day bucket of its own, beside its per-minute ones, at what the server has
 * left. After that the pool sends nothing the day's bucket has no room for: no further 429. Real `openai` SDK
 * against the in-process simulator, under TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import { Scenario, Simulator } from "@sluice/testing"
import { Clock, Effect, Exit } from "effect"
import { drive, withService } from "./harness.js"

const MODEL = "gpt-4o"
const POOL = "org:default/pool:gpt-4o"
const DAY = 86_400_000

const call = (i: number, words: number) => ({
  model: MODEL,
  messages: [{ role: "user" as const, content: `[req:${i}] ${"lorem ipsum dolor sit amet ".repeat(words)}` }],
  max_tokens: 100
})

/**
 * Runs `count` calls at once (each may wait up to three days), and returns what the simulator saw and the
 * pool's per-day buckets in the limiter's snapshot once the first daily 429 has been answered and at the end.
 */
const runDaily = (options: Parameters<typeof withService>[0], count: number, words: number) =>
  withService({ timeSlice: false, ...options }, (openai, events) =>
    Effect.gen(function*() {
      const start = yield* Clock.currentTimeMillis
      const deadline = start + 3 * DAY
      let atFirst429: ReadonlyArray<
        { readonly dimension: string; readonly amount: number; readonly learned: boolean }
      > = []
      const perDay = Effect.map(openai.limiter.snapshot, (snapshot) =>
        snapshot.levels
          .filter((level) => level.scope === POOL && level.limit.windowMillis === DAY)
          .map((level) => ({ dimension: level.dimension, amount: level.limit.amount, learned: level.learned })))
      const { endedAt, exit } = yield* drive(
        Effect.forEach(
          Array.from({ length: count }, (_, i) => call(i, words)),
          (params) =>
            // the first attempt alone, to look at the snapshot as its 429 has been taken in; then the default
            // policy (which waits the 429's hint out, then goes back through admission)
            openai.chat.completions.create(params, { deadline, retry: false }).pipe(
              Effect.catchTag("RateLimited", () =>
                Effect.zipRight(
                  atFirst429.length === 0 ? Effect.map(perDay, (levels) => (atFirst429 = levels)) : Effect.void,
                  openai.chat.completions.create(params, { deadline })
                ))
            ),
          { concurrency: "unbounded" }
        ),
        DAY
      )
      expect(Exit.isSuccess(exit)).toBe(true)
      const stats = yield* Simulator.stats
      const refused = stats.attempts.filter((a) => a.status === 429)
      const failed = events.filter((e) => e._tag === "Failed")
      return { wall: endedAt - start, stats, refused, failed, atFirst429, atEnd: yield* perDay }
    }))

describe("OpenAi: daily limits", () => {
  it.effect("RPD-bound, per-minute budgets: the first daily 429s teach a per-day requests bucket; no 429 after them", () =>
    Effect.gen(function*() {
      // 4 requests a day; 8 calls at once: the first 4 pass, the 4 others (in flight together) are refused
      const run = yield* runDaily(
        {
          budgets: [
            Budget.make(POOL, [Budget.Limit.perMinute("requests", 500), Budget.Limit.perMinute("tokens", 30_000)])
          ]
        },
        8,
        20
      ).pipe(Effect.provide(Simulator.layer(Scenario.single(MODEL, { rpm: 500, tpm: 30_000, rpd: 4 }, { seed: 3 }))))
      console.log(
        `RPD: ${run.stats.byStatus["200"]} × 200, ${run.refused.length} × 429 (all at ${
          [...new Set(run.refused.map((a) => a.at))].join(", ")
        } ms), ended at ${(run.wall / 3_600_000).toFixed(2)} h; per-day buckets ${JSON.stringify(run.atEnd)}`
      )
      expect(run.stats.byStatus["200"]).toBe(8)
      // the four refused were sent with the first four, before any answer: none is refused after
      expect(run.refused.map((a) => a.limit)).toEqual(["rpd", "rpd", "rpd", "rpd"])
      expect(new Set(run.refused.map((a) => a.at)).size).toBe(1)
      expect(run.refused[0].at).toBe(0)
      // learned from the first 429, beside the per-minute buckets, and in the snapshot
      expect(run.atFirst429).toEqual([{ dimension: "requests", amount: 4, learned: true }])
      expect(run.atEnd).toEqual([{ dimension: "requests", amount: 4, learned: true }])
      // the day's bucket refills one request every 6 hours: the 4 refused go at 6, 12, 18 and 24 hours
      const sent = run.stats.attempts.filter((a) => a.status === 200).map((a) => a.at).sort((a, b) => a - b)
      expect(sent.slice(4).map((at) => Math.round(at / 3_600_000))).toEqual([6, 12, 18, 24])
    }))

  it.effect("TPD-bound, adaptive: the first daily 429 teaches a per-day tokens bucket; no 429 after it", () =>
    Effect.gen(function*() {
      // ~650 tokens a call (estimate ~760), 4,000 tokens a day: 5 pass, the sixth is refused
      const run = yield* runDaily({}, 8, 80).pipe(
        Effect.provide(
          Simulator.layer(
            Scenario.single(MODEL, { rpm: 500, tpm: 30_000, tpd: 4_000 }, {
              seed: 5,
              latency: { request: { _tag: "uniform", min: 100, max: 600 }, perOutputTokenMs: 0 }
            })
          )
        )
      )
      console.log(
        `TPD: ${run.stats.byStatus["200"]} × 200, ${run.refused.length} × 429 at ${
          run.refused.map((a) => a.at).join(", ")
        } ms, ended at ${(run.wall / 3_600_000).toFixed(2)} h; per-day buckets ${JSON.stringify(run.atEnd)}`
      )
      expect(run.stats.byStatus["200"]).toBe(8)
      expect(run.refused.length).toBeGreaterThan(0)
      expect(run.refused.every((a) => a.limit === "tpd")).toBe(true)
      // every refused call was sent before the first refusal was answered: none after the pool learned
      const firstAnswer = Math.min(...run.failed.map((e) => e.at))
      expect(run.refused.every((a) => a.at <= firstAnswer)).toBe(true)
      expect(run.atFirst429).toEqual([{ dimension: "tokens", amount: 4_000, learned: true }])
      expect(run.atEnd).toEqual([{ dimension: "tokens", amount: 4_000, learned: true }])
    }))
})
