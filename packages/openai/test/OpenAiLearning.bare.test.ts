/**
 * Header-less discovery when a 429 names no limit (a gateway or proxy that strips the `x-ratelimit-*` headers and
 * answers "Rate limit reached … on tokens per min (TPM)." with no figures): the probe is cut on the first 429, and
 * what it is cut to must never forbid a call the server accepts. Virtual time, in-process simulator, real SDK.
 */
import { describe, expect, it } from "@effect/vitest"
import { SimConfig, Simulator } from "@sluice/testing"
import { Effect, Exit } from "effect"
import { fastDrive as drive } from "./fastDrive.js"
import { filler, withService } from "./harness.js"

const MODEL = "gpt-4o"
const POOL = "org:acme/pool:gpt-4o"

const server = (seed: number) =>
  Simulator.layer(SimConfig.make({
    seed,
    models: { [MODEL]: { limits: { rpm: 600, tpm: 60_000 } } },
    enforcement: { rateLimitHeaders: false, retryAfter: false, retryAfterMs: false, rateLimitMessage: "bare" },
    latency: { request: { _tag: "uniform", min: 20, max: 60 }, perOutputTokenMs: 0 }
  }))

describe("OpenAi: no headers and 429s that name no limit", () => {
  it.effect(
    "a call the server accepts (58,011 of its 60,000 TPM) is never refused by the limit the probe was cut to",
    () =>
      withService({ organization: "acme", timeSlice: false }, (openai) =>
        Effect.gen(function*() {
          // 30 calls of 1,153 tokens and one of about 50,000: the probe overflows the 60,000 TPM and is cut
          const small = Array.from({ length: 30 }, (_, i) => ({
            model: MODEL,
            messages: [{ role: "user" as const, content: `[req:${i}] ${filler(3_600)}` }],
            max_tokens: 500
          }))
          const large = {
            model: MODEL,
            messages: [{ role: "user" as const, content: `[req:large] ${filler(140_000)}` }],
            max_tokens: 15_000
          }
          const batch = [...small, large]
          // then one of 58,011 (the server takes up to 60,000 in one call): before the fix, CostExceedsCapacity against
          // the cut limit, for the limiter's life
          const larger = { ...large, messages: [{ role: "user" as const, content: `[req:larger] ${filler(172_000)}` }] }
          const { exit } = yield* drive(
            Effect.zipWith(
              Effect.forEach(batch, (params) => Effect.exit(openai.chat.completions.create(params)), {
                concurrency: "unbounded"
              }),
              Effect.exit(openai.chat.completions.create(larger)),
              (first, second) => [...first, second]
            )
          )
          expect(Exit.isSuccess(exit)).toBe(true)
          const results = Exit.isSuccess(exit) ? exit.value : []
          const failed = results.flatMap((result) => Exit.isFailure(result) ? [result.cause] : [])
          const stats = yield* Simulator.stats
          const tokens = openai.limiter.limitsOf(POOL).find((l) => l.dimension === "tokens")
          console.log(
            `bare 429s: ${stats.attempts.length} attempts, ${
              stats.byStatus["429"] ?? 0
            } × 429, tokens limit ${tokens?.amount}, failed ${failed.length}: ${
              failed.map(String).join("; ").slice(0, 300)
            }`
          )
          expect(stats.byStatus["429"] ?? 0).toBeGreaterThan(0) // the probe was cut
          expect(failed).toEqual([])
          expect(stats.byStatus["200"]).toBe(32)
        })).pipe(Effect.provide(server(7))),
    300_000
  )
})
