/**
 * The enqueued-token limit is never exceeded, end to end, as a property over random line sizes, file limits and
 * queue limits: the simulator (which enforces the limit as OpenAI does, refusing a batch with
 * `token_limit_exceeded`) never refuses one; at no moment do this job's running batches hold more than the limit
 * (their created and ended times from the server, their tokens from the state); every file keeps its limits; every
 * `custom_id` ends in exactly one line.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as FastCheck from "effect/FastCheck"
import { chatLine, parse, runLines, scenario, simBatches, Simulator } from "./batchHarness.js"

const arbitrary = FastCheck.record({
  lines: FastCheck.array(
    FastCheck.record({
      words: FastCheck.integer({ min: 1, max: 600 }),
      maxTokens: FastCheck.integer({ min: 10, max: 400 }),
      mini: FastCheck.boolean()
    }),
    { minLength: 8, maxLength: 40 }
  ),
  maxRequests: FastCheck.integer({ min: 1, max: 12 }),
  limit: FastCheck.integer({ min: 300, max: 5_000 }),
  perRequestMs: FastCheck.integer({ min: 100, max: 120_000 })
})

const cases = FastCheck.sample(arbitrary, { numRuns: 6, seed: Number(process.env.SLUICE_BATCH_SEED ?? 18) })

describe("BatchOffload: the enqueued-token limit", () => {
  cases.forEach((c, n) =>
    it.effect(`is never exceeded (case ${n}: ${c.lines.length} lines, limit ${c.limit}, files of ${c.maxRequests})`, () =>
      Effect.gen(function*() {
        const lines = c.lines.map((l, i) =>
          chatLine(`p-${i}`, `${i} ${"word ".repeat(l.words)}`, l.mini ? "gpt-4o-mini" : "gpt-4o", l.maxTokens)
        )
        const queue = { "gpt-4o-mini": c.limit, "gpt-4o": c.limit }
        const { exit, recorded } = yield* runLines(lines, queue, {}, { maxRequests: c.maxRequests })
        expect(Exit.isSuccess(exit)).toBe(true)
        if (!Exit.isSuccess(exit)) return
        const summary = exit.value
        // every custom_id in exactly one line; none handed back
        const delivered = recorded.results.map((r) => r.customId).sort()
        expect(delivered).toEqual(lines.map((l) => parse(l).custom_id).sort())
        expect(summary.unfinished).toEqual([])
        // the server never refused a batch for its queue, and the lines over the limit alone failed at once
        expect(summary.problems.filter((p) => p._tag === "EnqueuedTokenLimitExceeded" && p.reason === "refused"))
          .toEqual([])
        const tooLarge = summary.problems.filter((p) => p._tag === "EnqueuedTokenLimitExceeded")
        expect(recorded.results.filter((r) => !r.ok).length).toBe(tooLarge.length)
        // files within their limits
        for (const record of summary.state.batches) {
          expect(record.customIds.length).toBeLessThanOrEqual(c.maxRequests)
          expect(record.tokens).toBeLessThanOrEqual(c.limit)
        }
        // at every batch's creation, the batches of its model then running hold at most the limit
        const batches = yield* simBatches
        const tokens = new Map(summary.state.batches.map((r) => [r.batchId, r] as const))
        const spans = batches.map((b) => ({
          model: tokens.get(b.id)!.model,
          tokens: tokens.get(b.id)!.tokens,
          from: b.created_at,
          to: b.completed_at ?? b.failed_at ?? b.expired_at ?? b.cancelled_at ?? Number.POSITIVE_INFINITY
        }))
        for (const at of spans) {
          const held = spans.filter((s) => s.model === at.model && s.from <= at.from && at.from < s.to)
            .reduce((a, s) => a + s.tokens, 0)
          expect(held).toBeLessThanOrEqual(c.limit)
        }
      }).pipe(
        Effect.provide(Simulator.layer(scenario(
          { "gpt-4o-mini": c.limit, "gpt-4o": c.limit },
          { inProgressMs: 0, perRequestMs: c.perRequestMs }
        )))
      ))
  )
})
