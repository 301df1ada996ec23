/**
 * Settling to `usage` against the in-process simulator (real `openai` SDK, TestClock): when real
 * outputs are far shorter than `max_tokens`, the refund reaches the next waiters and the batch gets
 * through much faster than with the reservation kept (`settleUsage: false`).
 */
import { describe, expect, it } from "@effect/vitest"
import { Scenario, Simulator } from "@sluice/testing"
import { Clock, Effect, Exit } from "effect"
import { drive, sum, withService } from "./harness.js"

const MODEL = "gpt-4o"

/** The service over a simulator client, with its events recorded at their virtual times. */

/** 200 calls of ~110 prompt tokens reserving 1,000 output tokens each; the model writes 5% of that. */
const batch = Array.from({ length: 200 }, (_, i) => ({
  model: MODEL,
  messages: [{ role: "user" as const, content: `[req:${i}] ${"Summarise this paragraph in one line. ".repeat(11)}` }],
  max_tokens: 1_000
}))

const runBatch = (settleUsage: boolean) =>
  withService({ organization: "acme", tier: 1, settleUsage }, (openai, events) =>
    Effect.gen(function*() {
      const start = yield* Clock.currentTimeMillis
      const { endedAt, exit } = yield* drive(
        Effect.forEach(batch, (params) => openai.chat.completions.create(params), { concurrency: "unbounded" })
      )
      expect(Exit.isSuccess(exit)).toBe(true)
      const stats = yield* Simulator.stats
      const succeeded = events.filter((e) => e._tag === "Succeeded")
      return {
        wall: endedAt - start,
        stats,
        reserved: sum(succeeded.map((e) => (e._tag === "Succeeded" ? e.reserved.tokens ?? 0 : 0))),
        used: sum(succeeded.map((e) => (e._tag === "Succeeded" ? e.used.tokens ?? 0 : 0)))
      }
    })).pipe(
      Effect.provide(Simulator.layer(Scenario.tier1({
        seed: 3,
        output: { fraction: 0.05 },
        latency: { request: { _tag: "fixed", ms: 400 }, perOutputTokenMs: 2 }
      })))
    )

describe("OpenAi: settling to usage", () => {
  it.effect("outputs far shorter than max_tokens: settling gets the batch through ≥ 5× faster than reserving", () =>
    Effect.gen(function*() {
      const settled = yield* runBatch(true)
      const reserving = yield* runBatch(false)
      const speedUp = reserving.wall / settled.wall
      const charged = sum(settled.stats.admissions.map((a) => a.tokens))
      console.log(
        `settle: ${settled.wall.toFixed(0)} ms with settling (used ${settled.used} of ${settled.reserved} reserved), ` +
          `${reserving.wall.toFixed(0)} ms reserving only (charged ${reserving.used}); speed-up ${
            speedUp.toFixed(2)
          }×; ` +
          `429s ${settled.stats.byStatus["429"] ?? 0} / ${reserving.stats.byStatus["429"] ?? 0}`
      )
      for (const run of [settled, reserving]) {
        expect(run.stats.byStatus).toEqual({ "200": 200 })
        expect(Object.values(run.stats.attemptsByKey).every((n) => n === 1)).toBe(true)
      }
      // settled to the server's own accounting
      expect(settled.used).toBe(charged)
      expect(settled.used).toBeLessThan(settled.reserved / 5)
      // without settling, every call stays charged its whole reservation
      expect(reserving.used).toBe(reserving.reserved)
      expect(speedUp).toBeGreaterThanOrEqual(5)
      // the reserving run is bound by its reservations: beyond the first 30k, 500 tokens a second
      expect(reserving.wall).toBeGreaterThanOrEqual(((reserving.reserved - 30_000) / 500) * 1_000 * 0.98)
    }))
})
