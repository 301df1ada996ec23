/**
 * List prices, and what a call cost in dollars from its `usage`, with OpenAI's prompt caching: the input tokens
 * an answer reports as `cached_tokens` (`usage.prompt_tokens_details` in chat completions,
 * `usage.input_tokens_details` in the Responses API) are billed at the discounted cached-input price.
 *
 * Prompt caching is automatic for prompts of 1,024 tokens or more: the longest previously seen prefix (in steps of
 * 128 tokens) is read from the cache. It does not change rate limits (cached tokens still count toward TPM), only
 * the bill, so Sluice's limiter keeps charging every prompt token and only the dollar figures use this.
 *
 * @since 0.2.0
 */
import * as Tiers from "./Tiers.js"

/**
 * A model's list prices in USD: per million input, cached-input and output tokens, or per image.
 *
 * @since 0.2.0
 * @category models
 */
export interface Price {
  readonly inputPerMTok?: number | undefined
  /** The price of an input token read from OpenAI's prompt cache (`cached_tokens`); else `inputPerMTok`. */
  readonly cachedInputPerMTok?: number | undefined
  readonly outputPerMTok?: number | undefined
  readonly perImage?: number | undefined
}

/**
 * List prices in USD, standard (non-Batch) processing, by pool (`Tiers.poolOf`: a snapshot has its family's
 * price). Sources: openai.com/api/pricing and the model pages on platform.openai.com/docs/models as published
 * in 2025 (cached input at half the input price for the GPT-4o and o1 families, a quarter for o3); image prices
 * for DALL-E 3 from `shared/reference/openai-limits-2026.md`, which has no token prices (so the token and
 * cached-input prices here were not checked against a 2026 list). Prices change: treat as an estimate.
 *
 * @since 0.2.0
 * @category prices
 * @example
 * ```ts
 * import { Pricing } from "@sluice/openai"
 *
 * Pricing.prices["gpt-4o-mini"]
 * // { inputPerMTok: 0.15, cachedInputPerMTok: 0.075, outputPerMTok: 0.6 }
 * ```
 */
export const prices: Readonly<Record<string, Price>> = {
  "gpt-4o": { inputPerMTok: 2.5, cachedInputPerMTok: 1.25, outputPerMTok: 10 },
  "gpt-4o-mini": { inputPerMTok: 0.15, cachedInputPerMTok: 0.075, outputPerMTok: 0.6 },
  "o1": { inputPerMTok: 15, cachedInputPerMTok: 7.5, outputPerMTok: 60 },
  "o3": { inputPerMTok: 2, cachedInputPerMTok: 0.5, outputPerMTok: 8 },
  "o1-mini": { inputPerMTok: 1.1, cachedInputPerMTok: 0.55, outputPerMTok: 4.4 },
  "o3-mini": { inputPerMTok: 1.1, cachedInputPerMTok: 0.55, outputPerMTok: 4.4 },
  "text-embedding-3-small": { inputPerMTok: 0.02 },
  "text-embedding-3-large": { inputPerMTok: 0.13 },
  // standard quality 1024×1024
  "dall-e-3": { perImage: 0.04 },
  // medium quality 1024×1024
  "gpt-image-1": { perImage: 0.042 }
}

/**
 * A model's price (its pool's), or `undefined` when not known.
 *
 * @since 0.2.0
 * @category prices
 * @example
 * ```ts
 * import { Pricing } from "@sluice/openai"
 *
 * Pricing.priceOf("gpt-4o-mini-2024-07-18") // a snapshot: its family's price, Pricing.prices["gpt-4o-mini"]
 * Pricing.priceOf("my-fine-tune") // undefined
 * ```
 */
export const priceOf = (model: string): Price | undefined => prices[Tiers.poolOf(model)]

/**
 * The token counts of an answer's `usage`, for billing: input (all of it, cached included), the part of it read
 * from the prompt cache, and output. Chat completions' and the Responses API's field names alike.
 *
 * @since 0.2.0
 * @category models
 */
export interface Billed {
  readonly input: number
  readonly cachedInput: number
  readonly output: number
}

const count = (value: unknown): number | undefined =>
  typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : undefined

const field = (record: unknown, name: string): unknown =>
  record !== null && typeof record === "object" ? (record as Record<string, unknown>)[name] : undefined

/**
 * What a `usage` object bills, or `undefined` without one.
 *
 * @since 0.2.0
 * @category prices
 * @example
 * ```ts
 * import { Pricing } from "@sluice/openai"
 *
 * Pricing.billed({ prompt_tokens: 2000, completion_tokens: 100, prompt_tokens_details: { cached_tokens: 1536 } })
 * // { input: 2000, cachedInput: 1536, output: 100 }
 * ```
 */
export const billed = (usage: unknown): Billed | undefined => {
  if (usage === null || typeof usage !== "object") return undefined
  const input = count(field(usage, "prompt_tokens")) ?? count(field(usage, "input_tokens")) ?? 0
  const output = count(field(usage, "completion_tokens")) ?? count(field(usage, "output_tokens")) ?? 0
  const cached = count(field(field(usage, "prompt_tokens_details"), "cached_tokens")) ??
    count(field(field(usage, "input_tokens_details"), "cached_tokens")) ?? 0
  return { input, cachedInput: Math.min(cached, input), output }
}

/**
 * The dollars of `billed` tokens (and `images`) on `model` at list price: uncached input at the input price,
 * cached input at the cached-input price, output at the output price; `undefined` when the model has no price.
 *
 * @since 0.2.0
 * @category prices
 * @example
 * ```ts
 * import { Pricing } from "@sluice/openai"
 *
 * // 2,000 prompt tokens of which 1,536 cached, 100 output tokens on gpt-4o-mini
 * Pricing.dollars("gpt-4o-mini", { input: 2000, cachedInput: 1536, output: 100 })
 * // (464 × 0.15 + 1536 × 0.075 + 100 × 0.6) / 1e6 = 0.0002448
 * ```
 */
export const dollars = (model: string, tokens: Billed, images = 0): number | undefined => {
  const price = priceOf(model)
  if (price === undefined) return undefined
  const input = price.inputPerMTok ?? 0
  const cached = price.cachedInputPerMTok ?? input
  return ((tokens.input - tokens.cachedInput) * input + tokens.cachedInput * cached +
        tokens.output * (price.outputPerMTok ?? 0)) / 1e6 + images * (price.perImage ?? 0)
}

/**
 * What an answer cost: {@link dollars} of its `usage` ({@link billed}), plus its images for an image
 * generation (`data`'s length); `undefined` when the answer has no usage and no images, or the model no price.
 *
 * @since 0.2.0
 * @category prices
 * @example
 * ```ts
 * import { Pricing } from "@sluice/openai"
 *
 * Pricing.dollarsOfAnswer("gpt-4o-mini", { usage: { prompt_tokens: 1000, completion_tokens: 500 } })
 * // (1000 × 0.15 + 500 × 0.6) / 1e6 = 0.00045
 * Pricing.dollarsOfAnswer("dall-e-3", { data: [{ url: "…" }, { url: "…" }] }) // 2 × 0.04 = 0.08
 * ```
 */
export const dollarsOfAnswer = (model: string, answer: unknown): number | undefined => {
  const images = Array.isArray(field(answer, "data")) && /image|dall-e/.test(model)
    ? (field(answer, "data") as ReadonlyArray<unknown>).length
    : 0
  const tokens = billed(field(answer, "usage"))
  if (tokens === undefined && images === 0) return undefined
  return dollars(model, tokens ?? { input: 0, cachedInput: 0, output: 0 }, images)
}
