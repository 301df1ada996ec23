import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import { Duration, Effect, Either, Schema } from "effect"

describe("Budget", () => {
  it.effect("decodes budgets from configuration with windows as aliases, strings or milliseconds", () =>
    Effect.gen(function*() {
      const budgets = yield* Budget.decodeBudgets([
        {
          scope: "org:acme",
          limits: [
            { dimension: "requests", amount: 500, window: "minute" },
            { dimension: "tokens", amount: 30_000, window: "1 minute", burst: 5000 },
            { dimension: "requests", amount: 10_000, window: 86_400_000 }
          ]
        },
        { scope: "tenant:*", limits: [{ dimension: "tokens", amount: 10_000, window: "10 seconds" }] }
      ])
      expect(budgets[0].limits.map((limit) => Duration.toMillis(limit.window))).toEqual([60_000, 60_000, 86_400_000])
      expect(budgets[0].limits[1].capacity).toBe(5000)
      expect(budgets[0].limits[0].capacity).toBe(500)
      expect(budgets[1].limits[0].label).toBe("10000 tokens / 10s")
    }))

  it.effect("names the path of every bad value", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Budget.decodeBudgets([
        {
          scope: "org:acme",
          limits: [
            { dimension: "requests", amount: -5, window: "minute" },
            { dimension: "tokens", amount: 100, window: "fortnightly" },
            { dimension: "tokens", amount: 100, window: "minute", burst: 200 }
          ]
        }
      ], "limits.json"))
      expect(error._tag).toBe("BudgetConfigError")
      expect(error.issues.map((issue) => issue.path)).toEqual([
        "[0].limits[0].amount",
        "[0].limits[1].window",
        "[0].limits[2].burst"
      ])
      expect(error.message).toContain("invalid budgets in limits.json")
      expect(error.message).toContain("[0].limits[1].window: expected a positive window")
      expect(error.message).toContain("burst (200) must not exceed amount (100)")
    }))

  it("refuses duplicate limits and duplicate scopes", () => {
    const duplicateLimit = Schema.decodeUnknownEither(Budget.Budgets)([
      {
        scope: "org:a",
        limits: [{ dimension: "tokens", amount: 1, window: "minute" }, {
          dimension: "tokens",
          amount: 2,
          window: 60_000
        }]
      }
    ])
    expect(Either.isLeft(duplicateLimit) && duplicateLimit.left.message).toContain("duplicate limit for tokens")
    const duplicateScope = Schema.decodeUnknownEither(Budget.Budgets)([
      { scope: "org:a", limits: [] },
      { scope: "org:a", limits: [] }
    ])
    expect(Either.isLeft(duplicateScope) && duplicateScope.left.message).toContain("duplicate budget for scope org:a")
  })

  it("matches scope patterns by prefix", () => {
    expect(Budget.matches("tenant:*", "tenant:42")).toBe(true)
    expect(Budget.matches("tenant:*", "org:acme")).toBe(false)
    expect(Budget.matches("org:acme", "org:acme")).toBe(true)
  })
})
