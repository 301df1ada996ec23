import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import * as FastCheck from "effect/FastCheck"

const limitArb = FastCheck.record({
  dimension: FastCheck.constantFrom("requests", "tokens", "images"),
  amount: FastCheck.integer({ min: 1, max: 1_000_000 }),
  windowMillis: FastCheck.constantFrom(1_000, 60_000, 86_400_000),
  burstShare: FastCheck.option(FastCheck.double({ min: 0.01, max: 1, noNaN: true }), { nil: undefined })
}).map(({ amount, burstShare, dimension, windowMillis }) =>
  Budget.Limit.of(
    dimension,
    amount,
    windowMillis,
    burstShare === undefined ? undefined : Math.max(1e-9, amount * burstShare)
  )
)
const chargedArb = FastCheck.record({
  requests: FastCheck.integer({ min: 0, max: 5_000_000 }),
  tokens: FastCheck.integer({ min: 0, max: 5_000_000 }),
  images: FastCheck.integer({ min: 0, max: 5_000_000 })
})

describe("Budget.theoreticalMinimum", () => {
  it("is what the docs say: capacity at once, the rest at the refill rate", () => {
    expect(Budget.theoreticalMinimum([Budget.Limit.perMinute("tokens", 30_000)], { tokens: 80_000 })).toBe(100_000)
    expect(Budget.theoreticalMinimum([Budget.Limit.perMinute("tokens", 30_000)], { tokens: 30_000 })).toBe(0)
    expect(Budget.theoreticalMinimum([Budget.Limit.perMinute("tokens", 600, 10)], { tokens: 20 })).toBe(1_000)
    expect(Budget.theoreticalMinimum([], { tokens: 1e9 })).toBe(0)
    // the binding limit wins
    const limits = [Budget.Limit.perMinute("requests", 500), Budget.Limit.perDay("requests", 10_000)]
    expect(Budget.theoreticalMinimum(limits, { requests: 20_000 })).toBe(86_400_000)
  })

  it("the least time at which every limit's full bucket plus its refill covers the charge (property)", () => {
    FastCheck.assert(
      FastCheck.property(FastCheck.array(limitArb, { maxLength: 5 }), chargedArb, (limits, charged: Budget.Cost) => {
        const t = Budget.theoreticalMinimum(limits, charged)
        expect(t).toBeGreaterThanOrEqual(0)
        const room = (limit: Budget.Limit, at: number) => limit.capacity + (limit.amount * at) / limit.windowMillis
        // by then every limit has had room for its dimension's charge ...
        for (const limit of limits) {
          expect(room(limit, t)).toBeGreaterThanOrEqual((charged[limit.dimension] ?? 0) * (1 - 1e-12))
        }
        // ... and any earlier one of them had not (the bound is tight), where a millionth of t is room a double can
        // tell from the charge (a burst 2e-9 short of a 20-token charge needs 9e-8 ms: a millionth of it is 2e-15
        // tokens, below the rounding of 20)
        const telling = limits.some((limit) =>
          (limit.amount * t * 1e-6) / limit.windowMillis > (charged[limit.dimension] ?? 0) * 1e-12
        )
        if (t > 0 && telling) {
          expect(limits.some((limit) => room(limit, t * (1 - 1e-6)) < (charged[limit.dimension] ?? 0))).toBe(true)
        }
      })
    )
  })

  it("never decreases as more is charged (property)", () => {
    FastCheck.assert(
      FastCheck.property(FastCheck.array(limitArb, { maxLength: 5 }), chargedArb, chargedArb, (limits, a, b) => {
        const more = { requests: a.requests + b.requests, tokens: a.tokens + b.tokens, images: a.images + b.images }
        expect(Budget.theoreticalMinimum(limits, more)).toBeGreaterThanOrEqual(Budget.theoreticalMinimum(limits, a))
      })
    )
  })
})
