/**
 * Ready-made scenarios from OpenAI's published 2026 figures (`reference/openai-limits-2026.md`): Tier 1 and
 * Tier 5 limits for the text, reasoning, embedding and image models, and a Free tier without image access. They
 * are a planning baseline: OpenAI revises limits without notice, so verify against your account's limits page
 * (Settings → Limits). Figures not published (TPD, Tier 5 RPD) are left unlimited.
 *
 * @since 0.1.0
 */
import * as SimConfig from "./SimConfig.js"

type ModelsInput = SimConfig.ScenarioInput["models"]

const text = (rpm: number, tpm: number, rpd: number | undefined, contextWindow: number, price: [number, number]) => ({
  kind: "chat" as const,
  limits: rpd === undefined ? { rpm, tpm } : { rpm, tpm, rpd },
  contextWindow,
  pricing: { inputPerMillion: price[0], outputPerMillion: price[1] }
})

const embedding = (rpm: number, tpm: number, rpd: number | undefined, price: number) => ({
  kind: "embedding" as const,
  limits: rpd === undefined ? { rpm, tpm } : { rpm, tpm, rpd },
  contextWindow: 8191,
  pricing: { inputPerMillion: price }
})

const tier1Models: ModelsInput = {
  "gpt-4o": text(500, 30_000, 10_000, 128_000, [2.5, 10]),
  "gpt-4o-mini": text(500, 200_000, 10_000, 128_000, [0.15, 0.6]),
  "o1": text(500, 30_000, 10_000, 200_000, [15, 60]),
  "o3": text(500, 30_000, 10_000, 200_000, [2, 8]),
  "o1-mini": text(500, 100_000, 10_000, 128_000, [1.1, 4.4]),
  "o3-mini": text(500, 100_000, 10_000, 200_000, [1.1, 4.4]),
  "text-embedding-3-large": embedding(500, 1_000_000, 10_000, 0.13),
  "text-embedding-3-small": embedding(500, 1_000_000, 10_000, 0.02),
  "gpt-image-2": { kind: "image", limits: { tpm: 100_000, ipm: 5 }, imageTokens: 1056, pricing: { perImage: 0.04 } },
  "gpt-image-1": { kind: "image", limits: { ipm: 5 }, imageTokens: 1056, pricing: { perImage: 0.04 } },
  "dall-e-3": { kind: "image", limits: { rpm: 5, ipm: 5 }, pricing: { perImage: 0.04 } }
}

const tier5Models: ModelsInput = {
  "gpt-4o": text(10_000, 800_000, undefined, 128_000, [2.5, 10]),
  "gpt-4o-mini": text(10_000, 4_000_000, undefined, 128_000, [0.15, 0.6]),
  "o1": text(10_000, 800_000, undefined, 200_000, [15, 60]),
  "o3": text(10_000, 800_000, undefined, 200_000, [2, 8]),
  "o1-mini": text(10_000, 2_000_000, undefined, 128_000, [1.1, 4.4]),
  "o3-mini": text(10_000, 2_000_000, undefined, 200_000, [1.1, 4.4]),
  "text-embedding-3-large": embedding(10_000, 10_000_000, undefined, 0.13),
  "text-embedding-3-small": embedding(10_000, 10_000_000, undefined, 0.02),
  "gpt-image-2": {
    kind: "image",
    limits: { tpm: 8_000_000, ipm: 250 },
    imageTokens: 1056,
    pricing: { perImage: 0.04 }
  },
  "dall-e-3": { kind: "image", limits: { rpm: 100, ipm: 100 }, pricing: { perImage: 0.04 } }
}

const build = (name: string, models: ModelsInput, overrides: Partial<SimConfig.ScenarioInput>): SimConfig.Scenario =>
  SimConfig.make({ name, models, ...overrides })

/**
 * Tier 1 (early 2026 defaults): gpt-4o 500 RPM / 30k TPM / 10k RPD, gpt-4o-mini 500 / 200k / 10k, embeddings
 * 500 / 1M / 10k, GPT Image 2 100k TPM / 5 IPM, DALL-E 3 5 RPM / 5 IPM. `overrides` replace top-level fields.
 *
 * @since 0.1.0
 * @category presets
 * @example
 * ```ts
 * import { Scenario } from "@sluice/testing"
 *
 * const scenario = Scenario.tier1({ seed: 42, faults: { rates: { overloaded: 0.02 } } })
 * ```
 */
export const tier1 = (overrides: Partial<SimConfig.ScenarioInput> = {}): SimConfig.Scenario =>
  build("tier1", tier1Models, overrides)

/**
 * Tier 5 (early 2026 defaults): gpt-4o 10k RPM / 800k TPM, gpt-4o-mini 10k / 4M, embeddings 10k / 10M,
 * GPT Image 2 8M TPM / 250 IPM, DALL-E 3 100 RPM / 100 IPM. RPD is not published for Tier 5 and is unlimited.
 *
 * @since 0.1.0
 * @category presets
 */
export const tier5 = (overrides: Partial<SimConfig.ScenarioInput> = {}): SimConfig.Scenario =>
  build("tier5", tier5Models, overrides)

/**
 * The Free tier as far as the reference covers it: Tier 1 text limits (the reference gives no Free figures;
 * conservative), and no image access (403).
 *
 * @since 0.1.0
 * @category presets
 */
export const free = (overrides: Partial<SimConfig.ScenarioInput> = {}): SimConfig.Scenario =>
  build(
    "free",
    Object.fromEntries(
      Object.entries(tier1Models).map(([id, spec]) => [id, spec.kind === "image" ? { ...spec, access: false } : spec])
    ),
    overrides
  )

/**
 * A one-model scenario, handy in tests: `single("gpt-4o-mini", { rpm: 3, tpm: 1000 })`.
 *
 * @since 0.1.0
 * @category presets
 */
export const single = (
  model: string,
  limits: SimConfig.ScenarioInput["models"][string]["limits"],
  overrides: Partial<SimConfig.ScenarioInput> = {}
): SimConfig.Scenario => build("single", { [model]: { limits } }, overrides)
