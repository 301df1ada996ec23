/**
 * A 429's own figures ("Limit L, Used U, Requested R") are folded in like its headers, with the same `adopt`:
 * a reserve-only service (`settleUsage: false`) and a stream only ever lower the level from the server's
 * figures; otherwise the level may follow them up (the server has trued up the calls it counted).
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { OpenAiError } from "@sluice/openai"
import { Effect } from "effect"
import * as Call from "../src/internal/call.js"

const POOL = "org:o/pool:m"

const levelAfter = (adopt: boolean | undefined) =>
  Effect.scoped(Effect.gen(function*() {
    const limiter = yield* RateLimiter.make({
      budgets: [Budget.make(POOL, [Budget.Limit.perMinute("tokens", 10_000)])]
    })
    // a call of 6,000 tokens admitted and sent: 4,000 left here
    const permit = yield* limiter.acquire([POOL], { tokens: 6_000 })
    yield* permit.markSent
    // refused: the server had used 2,000 of 10,000 when it arrived (it had trued up what it counted), so it has
    // 8,000 left, more than the 4,000 this limiter holds
    const error = new OpenAiError.RateLimited({
      message: "Rate limit reached for m on tokens per min (TPM): Limit 10000, Used 2000, Requested 9000.",
      retryable: true,
      dimension: "tokens",
      limit: 10_000,
      used: 2_000,
      requested: 9_000
    })
    yield* Call.feedback(limiter, { org: "org:o", poolScope: POOL, scopes: ["org:o", POOL] }, error, {
      permit,
      sentAt: 0,
      adopt
    })
    const estimate = yield* limiter.peek([POOL], {})
    return estimate.levels.find((level) => level.dimension === "tokens")!.level
  })).pipe(Effect.provide(LimiterStore.layerMemory))

describe("Call.feedback: a 429's figures and adopt", () => {
  it.effect("with adopt false (reserve-only, streams) the level is only lowered, never raised to the message's", () =>
    Effect.gen(function*() {
      expect(yield* levelAfter(false)).toBeLessThanOrEqual(4_000)
    }))

  it.effect("by default the message's figures are adopted both ways (what this test would miss if never)", () =>
    Effect.gen(function*() {
      expect(yield* levelAfter(undefined)).toBeGreaterThan(4_000)
    }))
})
