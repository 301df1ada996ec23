/**
 * `pnpm bench:cli`'s minimum (`orderFreeMinimumMillis`, benchmarks/cli-harness.ts): the longest latencies first is
 * the order that ends soonest. Checked against every order of small random sets of requests (buckets starting full,
 * each request admitted as soon as the buckets hold what went before it, then its latency).
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { orderFreeMinimumMillis, type Served } from "../benchmarks/cli-harness.js"

const permutations = <A>(list: ReadonlyArray<A>): Array<Array<A>> =>
  list.length <= 1 ?
    [[...list]] :
    list.flatMap((item, i) => permutations([...list.slice(0, i), ...list.slice(i + 1)]).map((rest) => [item, ...rest]))

/**
 * When the last request is answered if `order` is sent in that order: the k-th admitted as soon as the buckets (full
 * at the start) hold the first k, then the k-th draw plus its own latency.
 */
const endOf = (
  order: ReadonlyArray<{ readonly tokens: number; readonly own: number }>,
  draws: ReadonlyArray<number>,
  limits: { rpm: number; tpm: number },
  share: number
) => {
  let tokens = 0
  let end = 0
  order.forEach((request, k) => {
    tokens += request.tokens
    const admitted = Math.max(
      0,
      ((tokens - limits.tpm * share) / limits.tpm) * 60_000,
      ((k + 1 - limits.rpm * share) / limits.rpm) * 60_000
    )
    end = Math.max(end, admitted + draws[k] + request.own)
  })
  return end
}

const request = FastCheck.record({
  tokens: FastCheck.integer({ min: 1, max: 20_000 }),
  own: FastCheck.integer({ min: 0, max: 40_000 }),
  draw: FastCheck.integer({ min: 0, max: 6_000 })
})
const limits = FastCheck.record({
  rpm: FastCheck.integer({ min: 1, max: 10 }),
  tpm: FastCheck.integer({ min: 1_000, max: 30_000 })
})

/** The run as the server saw it: the k-th drawn request admitted k-th, with the k-th draw. */
const servedOf = (drawn: ReadonlyArray<{ tokens: number; own: number; draw: number }>): Array<Served> =>
  drawn.map((d, k) => ({ model: "m", tokens: d.tokens, position: k, latency: d.draw + d.own, own: d.own }))

describe("bench:cli's order-free minimum", () => {
  it("property: no order of the requests ends sooner (up to 6 requests, one model, the draws by admission)", () =>
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(request, { minLength: 1, maxLength: 6 }),
        limits,
        FastCheck.constantFrom(1, 1 / 12),
        (drawn, limits, share) => {
          const draws = drawn.map((d) => d.draw)
          const best = Math.min(...permutations(drawn).map((order) => endOf(order, draws, limits, share)))
          expect(orderFreeMinimumMillis(servedOf(drawn), () => limits, { share })).toBeLessThanOrEqual(best + 1e-6)
        }
      ),
      { numRuns: 300, seed: 1_207 }
    ))

  it("property: with calls of one size it is the best order's end, exactly", () =>
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(request, { minLength: 1, maxLength: 6 }),
        FastCheck.integer({ min: 1, max: 20_000 }),
        limits,
        FastCheck.constantFrom(1, 1 / 12),
        (drawn, size, limits, share) => {
          const same = drawn.map((d) => ({ ...d, tokens: size }))
          const draws = same.map((d) => d.draw)
          const best = Math.min(...permutations(same).map((order) => endOf(order, draws, limits, share)))
          expect(orderFreeMinimumMillis(servedOf(same), () => limits, { share })).toBeCloseTo(best, 6)
        }
      ),
      { numRuns: 300, seed: 1_208 }
    ))

  it("the longest own latency goes first; models are paced apart; a line never answered counts its tokens", () => {
    const limits = { rpm: 100, tpm: 10_000 }
    const served: Array<Served> = [
      { model: "a", tokens: 10_000, position: 0, latency: 1_000, own: 1_000 },
      { model: "a", tokens: 5_000, position: 1, latency: 2_000, own: 2_000 },
      { model: "b", tokens: 10_000, position: 0, latency: 500, own: 0 }
    ]
    // a: the 2,000 ms call first (fits), then the other at 30 s (15,000 tokens against 10,000 at 10,000 a minute)
    expect(orderFreeMinimumMillis(served, () => limits)).toBe(31_000)
    // a line of b never answered: 20,000 tokens of b, so one of them admitted at 60 s (no draw, no latency)
    expect(orderFreeMinimumMillis(
      [...served, { model: "b", tokens: 10_000, position: Number.POSITIVE_INFINITY, latency: 0, own: 0 }],
      () => limits
    )).toBe(60_000)
  })
})
