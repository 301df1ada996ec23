import { describe, expect, it } from "@effect/vitest"
import { Tiers } from "@sluice/openai"

describe("Tiers", () => {
  it("gives the published Tier 1 and Tier 5 figures", () => {
    expect(Tiers.limits(1, "gpt-4o")).toEqual({ rpm: 500, tpm: 30_000, rpd: 10_000, interpolated: false })
    expect(Tiers.limits(5, "gpt-4o-mini")).toEqual({ rpm: 10_000, tpm: 4_000_000, interpolated: false })
    expect(Tiers.limits(3, "gpt-image-2")).toEqual({ tpm: 800_000, ipm: 50, interpolated: false })
    expect(Tiers.limits(2, "dall-e-3")).toEqual({ rpm: 7, ipm: 7, interpolated: false })
    expect(Tiers.limits(1, "whisper-1")).toMatchObject({ rpm: 50, rpd: 100 })
  })

  it("interpolates tiers 2–4 monotonically, never above the next tier", () => {
    for (const model of ["gpt-4o", "gpt-4o-mini", "o3-mini", "text-embedding-3-small"]) {
      let previous = Tiers.limits(1, model)!
      for (const tier of [2, 3, 4, 5] as const) {
        const current = Tiers.limits(tier, model)!
        expect(current.tpm!).toBeGreaterThanOrEqual(previous.tpm!)
        expect(current.rpm!).toBeGreaterThanOrEqual(previous.rpm!)
        expect(current.interpolated).toBe(tier < 5)
        previous = current
      }
    }
  })

  it("maps snapshots to their family pool", () => {
    expect(Tiers.poolOf("gpt-4o-2024-08-06")).toBe("gpt-4o")
    expect(Tiers.poolOf("gpt-4o-mini-2024-07-18")).toBe("gpt-4o-mini")
    expect(Tiers.poolOf("o3-mini")).toBe("o3-mini")
    expect(Tiers.limits(1, "gpt-4o-2024-11-20")?.tpm).toBe(30_000)
    expect(Tiers.limits(1, "my-fine-tune")).toBeUndefined()
  })

  it("builds budgets on the service's pool scopes", () => {
    const budgets = Tiers.budgets(1, { organization: "acme", models: ["gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-mini"] })
    expect(budgets.map((budget) => budget.scope)).toEqual(["org:acme/pool:gpt-4o", "org:acme/pool:gpt-4o-mini"])
    expect(budgets[0].limits.map((limit) => limit.label)).toEqual([
      "500 requests / 1m",
      "30000 tokens / 1m",
      "10000 requests / 1d"
    ])
  })
})
