/**
 * `sluice plan` with OpenAI's prompt caching: a cached prefix is priced at the cached-input rate (`Pricing`), and
 * leaves the limits (and so the time to drain) as they were.
 */
import { describe, expect, it } from "@effect/vitest"
import { Plan } from "@sluice/cli"

describe("Plan: prompt caching", () => {
  it("sluice plan: a cached prefix lowers the cost, not the limits", () => {
    const workload = {
      tier: 1 as const,
      mix: [{ model: "gpt-4o-mini", share: 1 }],
      requests: 10_000,
      inputTokens: 3_000,
      outputTokens: 200,
      images: 0
    }
    const plain = Plan.compute(workload)
    const cached = Plan.compute({ ...workload, cachedInputTokens: 2_048 })
    expect(plain.cost).toBeCloseTo((10_000 * 3_000 * 0.15 + 10_000 * 200 * 0.6) / 1e6, 9)
    expect(cached.cost).toBeCloseTo((10_000 * (952 * 0.15 + 2_048 * 0.075) + 10_000 * 200 * 0.6) / 1e6, 9)
    expect(cached.minutes).toBe(plain.minutes)
    expect(Plan.format({ ...workload, cachedInputTokens: 2_048 }, cached)).toContain("2048 from the prompt cache")
  })
})
