import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Runtime from "effect/Runtime"
import * as TestClock from "effect/TestClock"
import { Scenario, SimConfig, SimStats, Simulator } from "../src/index.js"
import { chat, client } from "./helpers.js"

const request = (content: string, maxTokens: number) => ({
  method: "POST",
  path: "/v1/chat/completions",
  headers: { authorization: "Bearer sk" },
  body: { model: "m", messages: [{ role: "user", content }], max_tokens: maxTokens }
})

describe("the simulated limiter", () => {
  // A token bucket admits at most capacity + rate × w in any window of length w (estimates are charged at
  // admission, then trued down to actual usage, which is never above the estimate). A sub-minute bucket admits a
  // call larger than its capacity once it is full and goes into debt, so its bound is max(capacity, the largest
  // call) + rate × w; the minute bucket's bound holds as well.
  it.effect("never admits more than capacity + refill in any window (property)", () =>
    Effect.gen(function*() {
      const runtime = yield* Effect.runtime<never>()
      const property = FastCheck.asyncProperty(
        FastCheck.array(
          FastCheck.record({
            gap: FastCheck.integer({ min: 0, max: 3_000 }),
            chars: FastCheck.integer({ min: 0, max: 800 }),
            max: FastCheck.integer({ min: 1, max: 300 })
          }),
          { minLength: 1, maxLength: 120 }
        ),
        FastCheck.boolean(),
        async (steps, sub) => {
          const scenario = SimConfig.make({
            models: { m: { limits: { rpm: 20, tpm: 2_000 } } },
            enforcement: sub ? { subWindowMs: 5_000 } : {}
          })
          const snapshot = await Runtime.runPromise(runtime)(
            Effect.gen(function*() {
              const sim = yield* Simulator.make(scenario)
              for (const step of steps) {
                yield* TestClock.adjust(step.gap)
                yield* sim.judge(request("x".repeat(step.chars), step.max))
              }
              return yield* sim.stats
            })
          )
          for (const windowMs of [1_000, 5_000, 60_000]) {
            const capReq = sub ? 20 * 5_000 / 60_000 : 20
            const capTok = sub ? 2_000 * 5_000 / 60_000 : 2_000
            expect(SimStats.peak(snapshot, { dimension: "requests", windowMs })).toBeLessThanOrEqual(
              Math.floor(capReq + (20 * windowMs) / 60_000 + 1e-9)
            )
            const largest = Math.max(0, ...snapshot.admissions.map((a) => a.tokens))
            expect(SimStats.peak(snapshot, { dimension: "tokens", windowMs })).toBeLessThanOrEqual(
              Math.min(2_000, Math.max(capTok, largest)) + (2_000 * windowMs) / 60_000 + 1e-6
            )
          }
        }
      )
      yield* Effect.promise(() => FastCheck.assert(property, { numRuns: 60 }))
    }))

  it.effect("200 concurrent SDK calls against 50 RPM: exactly 50 admitted, the rest 429", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const fiber = yield* Effect.fork(Effect.promise(() =>
        Promise.allSettled(Array.from({ length: 200 }, (_, i) => c.chat.completions.create(chat(`[req:${i}] hi`))))
      ))
      yield* TestClock.adjust(1)
      const results = yield* Fiber.join(fiber)
      expect(results.filter((r) =>
        r.status === "fulfilled"
      )).toHaveLength(50)
      const stats = yield* Simulator.stats
      expect(stats.byStatus).toEqual({ "200": 50, "429": 150 })
      expect(Object.keys(stats.attemptsByKey)).toHaveLength(200)
    }).pipe(Effect.provide(Simulator.layer(Scenario.single("gpt-4o-mini", { rpm: 50 })))))
})
