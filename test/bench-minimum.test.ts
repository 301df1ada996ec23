/**
 * `pnpm bench:cli`'s minimum (`orderFreeMinimumMillis`, benchmarks/minimum.ts): no order of the lines ends sooner.
 * Checked against every order of small random sets of lines, one model and two (buckets starting full, each line
 * admitted as soon as its model's buckets hold what went before it; the j-th admission meets the j-th draw of one
 * sequence, whichever line it is, then its own latency), and exact with lines of one size and one model.
 */
import { describe, expect, it } from "@effect/vitest"
import { SimConfig, Simulator } from "@sluice/testing"
import { Effect, FastCheck } from "effect"
import { type Line, orderFreeMinimumMillis } from "../benchmarks/minimum.js"
import { CHAT_URL, LATENCY, outputOf, SHAPES, shapeScenario, shapeWorkload } from "../benchmarks/openai-workload.js"

const permutations = <A>(list: ReadonlyArray<A>): Array<Array<A>> =>
  list.length <= 1 ?
    [[...list]] :
    list.flatMap((item, i) => permutations([...list.slice(0, i), ...list.slice(i + 1)]).map((rest) => [item, ...rest]))

/**
 * When the last line is answered if `order` is sent in that order, one line at a time: each admitted as soon as its
 * model's buckets (full at the start) hold it and the lines before it were admitted, then the draw of its place in
 * the order plus its own latency.
 */
const endOf = (
  order: ReadonlyArray<Line>,
  draws: ReadonlyArray<number>,
  limitsOf: (model: string) => { rpm: number; tpm: number },
  share: number
) => {
  const used = new Map<string, { tokens: number; requests: number }>()
  let last = 0
  let end = 0
  order.forEach((line, j) => {
    const u = used.get(line.model) ?? { tokens: 0, requests: 0 }
    u.tokens += line.tokens
    u.requests += 1
    used.set(line.model, u)
    const limits = limitsOf(line.model)
    last = Math.max(
      last,
      ((u.tokens - limits.tpm * share) / limits.tpm) * 60_000,
      ((u.requests - limits.rpm * share) / limits.rpm) * 60_000
    )
    end = Math.max(end, last + draws[j] + line.own)
  })
  return end
}

const drawnLine = (models: ReadonlyArray<string>) =>
  FastCheck.record({
    model: FastCheck.constantFrom(...models),
    tokens: FastCheck.integer({ min: 1, max: 20_000 }),
    own: FastCheck.integer({ min: 0, max: 40_000 })
  })
const limits = FastCheck.record({
  rpm: FastCheck.integer({ min: 1, max: 10 }),
  tpm: FastCheck.integer({ min: 1_000, max: 30_000 })
})
const draws = (n: number) => FastCheck.array(FastCheck.integer({ min: 0, max: 6_000 }), { minLength: n, maxLength: n })

describe("bench:cli's order-free minimum", () => {
  for (const models of [["m"], ["m", "e"]]) {
    it(`property: no order of the lines ends sooner (up to 6 lines, ${models.length} model(s))`, () =>
      FastCheck.assert(
        FastCheck.property(
          FastCheck.array(drawnLine(models), { minLength: 1, maxLength: 6 }).chain((lines) =>
            FastCheck.tuple(FastCheck.constant(lines), draws(lines.length))
          ),
          limits,
          limits,
          FastCheck.constantFrom(1, 1 / 12),
          ([lines, drawn], m, e, share) => {
            const limitsOf = (model: string) => model === "m" ? m : e
            const best = Math.min(...permutations(lines).map((order) => endOf(order, drawn, limitsOf, share)))
            expect(orderFreeMinimumMillis(lines, drawn, limitsOf, { share })).toBeLessThanOrEqual(best + 1e-6)
          }
        ),
        { numRuns: 300, seed: 1_207 }
      ))
  }

  it("property: with lines of one size and one model it is the best order's end, exactly", () =>
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(drawnLine(["m"]), { minLength: 1, maxLength: 6 }).chain((lines) =>
          FastCheck.tuple(FastCheck.constant(lines), draws(lines.length))
        ),
        FastCheck.integer({ min: 1, max: 20_000 }),
        limits,
        FastCheck.constantFrom(1, 1 / 12),
        ([lines, drawn], size, limits, share) => {
          const same = lines.map((line) => ({ ...line, tokens: size }))
          const best = Math.min(...permutations(same).map((order) => endOf(order, drawn, () => limits, share)))
          expect(orderFreeMinimumMillis(same, drawn, () => limits, { share })).toBeCloseTo(best, 6)
        }
      ),
      { numRuns: 300, seed: 1_208 }
    ))

  it("the longest own latency goes first; models are paced apart; a line no draw reached counts with none", () => {
    const limits = { rpm: 100, tpm: 10_000 }
    const lines: Array<Line> = [
      { model: "a", tokens: 10_000, own: 1_000 },
      { model: "a", tokens: 5_000, own: 2_000 },
      { model: "b", tokens: 10_000, own: 0 }
    ]
    // a: the 2,000 ms call first (fits), then the other at 30 s (15,000 tokens against 10,000 at 10,000 a minute)
    expect(orderFreeMinimumMillis(lines, [0, 0, 0], () => limits)).toBe(31_000)
    // two models: a's second admission meets the least draw from the second on (100)
    expect(orderFreeMinimumMillis(lines, [0, 500, 100], () => limits)).toBe(31_100)
    // a second line of b, lost (three draws for four lines): 20,000 tokens of b, one admitted at 60 s, no draw
    expect(orderFreeMinimumMillis([...lines, { model: "b", tokens: 10_000, own: 0 }], [0, 0, 0], () => limits))
      .toBe(60_000)
  })

  // what the bound assumes of the simulator: the time to first byte is drawn in the order it admits the requests it
  // answers, whichever they are (a 429 draws none)
  it.effect("the simulator draws the time to first byte by admission, whichever request it is", () =>
    Effect.gen(function*() {
      const shape = SHAPES.find((s) => s.name === "few-large")!
      const requests = shapeWorkload(shape)
      const drawsIn = (order: typeof requests) =>
        Effect.gen(function*() {
          const simulator = yield* Simulator.make(SimConfig.make(shapeScenario(shape)))
          for (const request of order) {
            yield* simulator.judge({
              method: "POST",
              path: request.url,
              headers: { authorization: "Bearer sk-bench", "content-type": "application/json" },
              body: request.body
            })
          }
          const own = new Map(requests.map((r) => [
            r.id,
            r.url === CHAT_URL ? LATENCY.perOutputTokenMs * outputOf(r.body.max_tokens) : 0
          ]))
          const stats = yield* simulator.stats
          return {
            draws: stats.attempts.filter((a) => a.status === 200).map((a) => (a.latencyMs ?? 0) - own.get(a.key!)!),
            refused: stats.byStatus["429"] ?? 0
          }
        })
      const inOrder = yield* drawsIn(requests)
      const reversed = yield* drawsIn([...requests].reverse())
      // the bucket refuses some of them either way
      expect(inOrder.refused).toBeGreaterThan(0)
      expect(reversed.refused).toBeGreaterThan(0)
      const n = Math.min(inOrder.draws.length, reversed.draws.length)
      expect(n).toBeGreaterThan(30)
      for (let k = 0; k < n; k++) expect(reversed.draws[k]).toBeCloseTo(inOrder.draws[k], 6)
      // and the draws are not all alike (else the check above could not fail)
      expect(new Set(inOrder.draws.map((d) => Math.round(d))).size).toBeGreaterThan(n / 2)
    }))
})
