/**
 * Splitting lines into Batch API input files, as a property over random line sizes and limits: every file holds
 * one model and one endpoint, at most `maxRequests` lines, `maxBytes` bytes and the model's enqueued-token limit;
 * every line is in exactly one file, in its order, unless it alone is over a limit; and a file is closed only
 * when the next line would not fit it.
 */
import { describe, expect, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import * as Plan from "../src/internal/batchPlan.js"

const models = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
const urls = ["/v1/chat/completions", "/v1/embeddings"]

const arbitrary = FastCheck.record({
  items: FastCheck.array(
    FastCheck.record({
      model: FastCheck.integer({ min: 0, max: 2 }),
      url: FastCheck.integer({ min: 0, max: 1 }),
      bytes: FastCheck.integer({ min: 1, max: 1_200 }),
      tokens: FastCheck.integer({ min: 0, max: 6_000 })
    }),
    { maxLength: 300 }
  ),
  maxRequests: FastCheck.integer({ min: 1, max: 25 }),
  maxBytes: FastCheck.integer({ min: 400, max: 6_000 }),
  // a limit per model, or none
  maxTokens: FastCheck.array(FastCheck.option(FastCheck.integer({ min: 500, max: 20_000 }), { nil: undefined }), {
    minLength: 3,
    maxLength: 3
  })
})

describe("batch planning", () => {
  it("respects every limit, loses no line, keeps order, closes a file only when the next line does not fit", () => {
    FastCheck.assert(
      FastCheck.property(arbitrary, (input) => {
        const items: Array<Plan.Item> = input.items.map((raw, i) => ({
          customId: `id-${i}`,
          line: i + 1,
          url: urls[raw.url],
          model: models[raw.model],
          text: "",
          bytes: raw.bytes,
          tokens: raw.tokens
        }))
        const maxTokens = (model: string) => input.maxTokens[models.indexOf(model)]
        const limits: Plan.Limits = { maxRequests: input.maxRequests, maxBytes: input.maxBytes, maxTokens }
        const { files, tooLarge } = Plan.plan(items, limits)

        const alone = (item: Plan.Item) =>
          item.bytes > input.maxBytes || (maxTokens(item.model) !== undefined && item.tokens > maxTokens(item.model)!)
        expect(tooLarge.map((t) => t.item.customId)).toEqual(items.filter(alone).map((i) => i.customId))

        for (const file of files) {
          expect(file.items.length).toBeGreaterThan(0)
          expect(file.items.length).toBeLessThanOrEqual(input.maxRequests)
          expect(file.items.every((i) => i.model === file.model && i.url === file.url)).toBe(true)
          expect(file.bytes).toBe(file.items.reduce((a, i) => a + i.bytes, 0))
          expect(file.tokens).toBe(file.items.reduce((a, i) => a + i.tokens, 0))
          expect(file.bytes).toBeLessThanOrEqual(input.maxBytes)
          const limit = maxTokens(file.model)
          if (limit !== undefined) expect(file.tokens).toBeLessThanOrEqual(limit)
        }

        // every line that fits alone is in exactly one file, in its group's order
        const groups = new Map<string, Array<Plan.File>>()
        for (const file of files) {
          const key = `${file.model} ${file.url}`
          groups.set(key, [...(groups.get(key) ?? []), file])
        }
        for (const [key, group] of groups) {
          const expected = items.filter((i) => `${i.model} ${i.url}` === key && !alone(i)).map((i) => i.customId)
          expect(group.flatMap((f) => f.items.map((i) => i.customId))).toEqual(expected)
          // greedy: each closed file could not take the first line of the next
          for (let g = 0; g + 1 < group.length; g++) {
            const [file, next] = [group[g], group[g + 1].items[0]]
            const limit = maxTokens(file.model)
            const fits = file.items.length + 1 <= input.maxRequests && file.bytes + next.bytes <= input.maxBytes &&
              (limit === undefined || file.tokens + next.tokens <= limit)
            expect(fits).toBe(false)
          }
        }
        const planned = files.reduce((a, f) => a + f.items.length, 0)
        expect(planned + tooLarge.length).toBe(items.length)
      }),
      { numRuns: 300, seed: 18 }
    )
  })
})
