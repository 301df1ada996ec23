/**
 * A property of the OpenAi service against the in-process simulator (real `openai` SDK, TestClock):
 * whatever the batch and the limits, when the client is configured with the server's limits, the
 * server never refuses a call (invariant 1 seen from the server) and every call is sent once.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import { SimConfig, Simulator } from "@sluice/testing"
import { Effect, Exit, FastCheck } from "effect"
import { drive, filler, withService } from "./harness.js"

const MODEL = "gpt-4o"
const POOL = "org:acme/pool:gpt-4o"

/** The service over a simulator client, with its events recorded at their virtual times. */

describe("OpenAi: property", () => {
  it.effect.prop(
    "any batch, with the server's limits configured: every call succeeds, sent once, and no 429",
    {
      rpm: FastCheck.integer({ min: 20, max: 600 }),
      tpm: FastCheck.integer({ min: 8_000, max: 60_000 }),
      latency: FastCheck.integer({ min: 0, max: 1_500 }),
      fraction: FastCheck.double({ min: 0.05, max: 1, noNaN: true }),
      calls: FastCheck.array(
        FastCheck.record({
          chars: FastCheck.integer({ min: 1, max: 2_000 }),
          max: FastCheck.integer({ min: 1, max: 800 }),
          n: FastCheck.integer({ min: 1, max: 3 })
        }),
        { minLength: 1, maxLength: 40 }
      )
    },
    ({ calls, fraction, latency, rpm, tpm }) =>
      withService({
        organization: "acme",
        budgets: [Budget.make(POOL, [Budget.Limit.perMinute("requests", rpm), Budget.Limit.perMinute("tokens", tpm)])]
      }, (openai) =>
        Effect.gen(function*() {
          const { exit } = yield* drive(
            Effect.forEach(calls, ({ chars, max, n }, i) =>
              openai.chat.completions.create({
                model: MODEL,
                messages: [{ role: "user", content: `[req:${i}] ${filler(chars)}` }],
                max_tokens: max,
                n
              }), { concurrency: "unbounded" }),
            5_000
          )
          expect(Exit.isSuccess(exit)).toBe(true)
          const stats = yield* Simulator.stats
          expect(stats.byStatus).toEqual({ "200": calls.length })
          expect(Object.values(stats.attemptsByKey).every((attempts) => attempts === 1)).toBe(true)
        })).pipe(
          Effect.provide(Simulator.layer(SimConfig.make({
            seed: 1,
            models: { [MODEL]: { limits: { rpm, tpm } } },
            output: { fraction },
            latency: { request: { _tag: "fixed", ms: latency }, perOutputTokenMs: 0 }
          })))
        ),
    { fastCheck: { numRuns: 8 } }
  )
})
