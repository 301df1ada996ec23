// The bulk runner's ETA by weight (`BulkRunner.view` with `ProgressStats.weights`), as properties over random
// snapshots: exact where its model holds (a constant rate of weight, the lines not sent yet at the sent ones' mean),
// the ETA by lines where every line weighs the same and none failed, unchanged by the unit of weight, never longer
// once more weight has finished, never negative, infinite or NaN for any snapshot of counts >= 0 (weights finite), and
// none before any time has passed. The examples are in BulkRun.mutants.test.ts.
import { describe, expect, it } from "@effect/vitest"
import { BulkRunner } from "@sluice/openai"
import * as FastCheck from "effect/FastCheck"
import * as BulkProgress from "../src/internal/bulkProgress.js"

const STARTED = 0

/** A snapshot: `weights` of the lines handed, the first `finished` of them succeeded; `failed` lines failed (their
 * weight left the count), `notSent` lines not handed yet; `elapsed` ms since the start. */
const snapshot = (input: {
  readonly weights: ReadonlyArray<number>
  readonly finished: number
  readonly failed: number
  readonly notSent: number
  readonly alreadyDone?: number
  readonly invalid?: number
}) => {
  const handedWeight = input.weights.reduce((a, b) => a + b, 0)
  const finishedWeight = input.weights.slice(0, input.finished).reduce((a, b) => a + b, 0)
  const left = input.weights.length - input.finished
  const alreadyDone = input.alreadyDone ?? 0
  const invalid = input.invalid ?? 0
  const stats: BulkRunner.ProgressStats = {
    ...BulkProgress.empty(STARTED),
    total: alreadyDone + invalid + input.finished + input.failed + left + input.notSent,
    alreadyDone,
    invalid,
    succeeded: input.finished,
    failed: input.failed,
    weights: { handed: input.weights.length, handedWeight, finished: input.finished, finishedWeight }
  }
  return { stats, handedWeight, finishedWeight }
}

const lines = FastCheck.array(FastCheck.integer({ min: 1, max: 1_000_000 }), { minLength: 1, maxLength: 200 })
  .chain((weights) =>
    FastCheck.record({
      weights: FastCheck.constant(weights),
      finished: FastCheck.integer({ min: 1, max: weights.length }),
      failed: FastCheck.integer({ min: 0, max: 20 }),
      notSent: FastCheck.integer({ min: 0, max: 500 }),
      alreadyDone: FastCheck.integer({ min: 0, max: 50 }),
      invalid: FastCheck.integer({ min: 0, max: 5 }),
      // weight finished a millisecond
      rate: FastCheck.double({ min: 0.001, max: 1_000, noNaN: true })
    })
  )

const close = (actual: number | undefined, expected: number) => {
  expect(actual).toBeDefined()
  expect(Math.abs(actual! - expected)).toBeLessThanOrEqual(1e-7 * Math.max(1, expected))
}

describe("BulkRunner.view: the ETA by weight (properties)", () => {
  it("exact at a constant rate of weight: the handed lines left as they weigh, those not handed at the handed mean", () => {
    FastCheck.assert(
      FastCheck.property(lines, (drawn) => {
        const { finishedWeight, handedWeight, stats } = snapshot(drawn)
        const elapsed = finishedWeight / drawn.rate
        const mean = handedWeight / drawn.weights.length
        const leftWeight = handedWeight - finishedWeight + drawn.notSent * mean
        close(BulkRunner.view(stats, STARTED + elapsed).etaMs, leftWeight / drawn.rate)
      }),
      { numRuns: 1_000, seed: 4_211 }
    )
  })

  it("lines that all weigh the same, none failed: the ETA by lines", () => {
    FastCheck.assert(
      FastCheck.property(
        lines,
        FastCheck.integer({ min: 1, max: 1_000_000 }),
        FastCheck.integer({ min: 1, max: 10_000_000 }),
        (drawn, weight, elapsed) => {
          const same = { ...drawn, weights: drawn.weights.map(() => weight), failed: 0 }
          const { stats } = snapshot(same)
          const byWeight = BulkRunner.view(stats, STARTED + elapsed).etaMs
          const byLines = BulkRunner.view({ ...stats, weights: undefined }, STARTED + elapsed).etaMs!
          close(byWeight, byLines)
        }
      ),
      { numRuns: 1_000, seed: 4_212 }
    )
  })

  it("the unit of weight does not matter; more weight finished in the same time never makes it longer", () => {
    FastCheck.assert(
      FastCheck.property(
        lines,
        FastCheck.integer({ min: 2, max: 1_000 }),
        FastCheck.integer({ min: 1, max: 10_000_000 }),
        (drawn, scale, elapsed) => {
          const { stats } = snapshot(drawn)
          const weights = stats.weights!
          const eta = BulkRunner.view(stats, STARTED + elapsed).etaMs!
          const scaled = BulkRunner.view({
            ...stats,
            weights: {
              ...weights,
              handedWeight: weights.handedWeight * scale,
              finishedWeight: weights.finishedWeight * scale
            }
          }, STARTED + elapsed).etaMs
          close(scaled, eta)
          // the next handed line done too, in the same time
          if (drawn.finished < drawn.weights.length) {
            const more = snapshot({ ...drawn, finished: drawn.finished + 1 })
            expect(BulkRunner.view(more.stats, STARTED + elapsed).etaMs!).toBeLessThanOrEqual(eta * (1 + 1e-12))
          }
        }
      ),
      { numRuns: 1_000, seed: 4_213 }
    )
  })

  it("any snapshot, consistent or not (read between two updates): an ETA that is a finite number >= 0, or none before any time has passed", () => {
    const count = FastCheck.integer({ min: 0, max: 1_000 })
    const weight = FastCheck.oneof(FastCheck.integer({ min: -1_000, max: 1_000_000_000 }), FastCheck.constant(0))
    FastCheck.assert(
      FastCheck.property(
        FastCheck.record({
          total: FastCheck.option(count, { nil: undefined }),
          alreadyDone: count,
          invalid: count,
          succeeded: count,
          failed: count,
          weights: FastCheck.option(
            FastCheck.record({ handed: count, handedWeight: weight, finished: count, finishedWeight: weight }),
            { nil: undefined }
          ),
          elapsed: FastCheck.oneof(FastCheck.constant(0), FastCheck.integer({ min: 0, max: 100_000_000 }))
        }),
        ({ elapsed, ...over }) => {
          const view = BulkRunner.view({ ...BulkProgress.empty(STARTED), ...over }, STARTED + elapsed)
          if (view.etaMs !== undefined) {
            expect(Number.isFinite(view.etaMs)).toBe(true)
            expect(view.etaMs).toBeGreaterThanOrEqual(0)
          }
          if (view.remaining === 0) expect(view.etaMs).toBe(0)
          // no time has passed: no rate of any kind, so no ETA (not 0: nothing says the rest takes no time)
          else if (elapsed === 0) expect(view.etaMs).toBeUndefined()
        }
      ),
      { numRuns: 2_000, seed: 4_214 }
    )
  })
})
