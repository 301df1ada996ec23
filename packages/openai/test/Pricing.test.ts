/**
 * Prices with OpenAI's prompt caching: `cached_tokens` (chat and Responses field names) at the cached-input
 * price.
 */
import { describe, expect, it } from "@effect/vitest"
import { Pricing } from "@sluice/openai"
import { FastCheck } from "effect"

describe("Pricing", () => {
  it("reads cached_tokens from chat and Responses usage", () => {
    expect(
      Pricing.billed({ prompt_tokens: 2000, completion_tokens: 100, prompt_tokens_details: { cached_tokens: 1536 } })
    )
      .toEqual({ input: 2000, cachedInput: 1536, output: 100 })
    expect(Pricing.billed({ input_tokens: 1200, output_tokens: 7, input_tokens_details: { cached_tokens: 1024 } }))
      .toEqual({ input: 1200, cachedInput: 1024, output: 7 })
    expect(Pricing.billed({ prompt_tokens: 10, completion_tokens: 2 })).toEqual({
      input: 10,
      cachedInput: 0,
      output: 2
    })
    expect(Pricing.billed(undefined)).toBeUndefined()
  })

  it("prices cached input at the cached-input rate", () => {
    // gpt-4o: $2.50 input, $1.25 cached, $10 output per million
    expect(Pricing.dollars("gpt-4o-2024-08-06", { input: 2000, cachedInput: 1536, output: 100 }))
      .toBeCloseTo((464 * 2.5 + 1536 * 1.25 + 100 * 10) / 1e6, 12)
    expect(Pricing.dollarsOfAnswer("gpt-4o-mini", {
      usage: { prompt_tokens: 2000, completion_tokens: 0, prompt_tokens_details: { cached_tokens: 2000 } }
    })).toBeCloseTo(2000 * 0.075 / 1e6, 12)
    expect(Pricing.dollarsOfAnswer("dall-e-3", { data: [{}, {}] })).toBeCloseTo(0.08, 12)
    expect(Pricing.dollars("no-such-model", { input: 1, cachedInput: 0, output: 1 })).toBeUndefined()
  })

  it.prop(
    "more of the prompt cached never costs more, and never below the all-cached price",
    {
      input: FastCheck.integer({ min: 0, max: 100_000 }),
      a: FastCheck.integer({ min: 0, max: 100_000 }),
      b: FastCheck.integer({ min: 0, max: 100_000 }),
      output: FastCheck.integer({ min: 0, max: 10_000 }),
      model: FastCheck.constantFrom("gpt-4o", "gpt-4o-mini", "o1", "o3", "o3-mini")
    },
    ({ a, b, input, model, output }) => {
      const [less, more] = [Math.min(a, b, input), Math.min(Math.max(a, b), input)]
      const at = (cached: number) =>
        Pricing.dollars(
          model,
          Pricing.billed({
            prompt_tokens: input,
            completion_tokens: output,
            prompt_tokens_details: { cached_tokens: cached }
          })!
        )!
      expect(at(more)).toBeLessThanOrEqual(at(less) + 1e-12)
      expect(at(more)).toBeGreaterThanOrEqual(at(input) - 1e-12)
    }
  )
})
