/**
 * OpenAI's usage-tier limits as budgets: a planning baseline.
 *
 * The figures are OpenAI's published defaults as of early 2026 (Tier 1 and Tier 5 for text, reasoning,
 * embedding and audio models; every tier for GPT Image 2 and DALL-E 3). Where OpenAI publishes no figure
 * for Tiers 2–4, the preset interpolates geometrically between Tier 1 and Tier 5 and rounds down, so it
 * never exceeds the next tier; such limits are marked `interpolated`. OpenAI revises limits without
 * notice and accounts can have their own: verify against your organization's limits page (Settings →
 * Limits) and prefer `sync` from response headers, which corrects the per-minute figures at run time.
 *
 * @since 0.1.0
 */
import { Budget } from "@sluice/core"
import * as Schema from "effect/Schema"

/**
 * A usage tier.
 *
 * @since 0.1.0
 * @category models
 */
export type Tier = 1 | 2 | 3 | 4 | 5

/**
 * @since 0.1.0
 * @category schemas
 */
export const Tier = Schema.Literal(1, 2, 3, 4, 5)

/**
 * One model's limits at one tier.
 *
 * @since 0.1.0
 * @category models
 */
export interface ModelLimits {
  readonly rpm?: number | undefined
  readonly tpm?: number | undefined
  readonly rpd?: number | undefined
  readonly tpd?: number | undefined
  readonly ipm?: number | undefined
  /** Whether some figures were interpolated rather than published. */
  readonly interpolated: boolean
}

interface Row {
  readonly t1: { rpm?: number; tpm?: number; rpd?: number; ipm?: number }
  readonly t5: { rpm?: number; tpm?: number; ipm?: number }
  /** Published figures for every tier, when there are. */
  readonly tiers?: ReadonlyArray<{ rpm?: number; tpm?: number; ipm?: number }>
}

const text = (t1rpm: number, t1tpm: number | undefined, t1rpd: number, t5rpm: number, t5tpm?: number): Row => ({
  t1: { rpm: t1rpm, ...(t1tpm === undefined ? {} : { tpm: t1tpm }), rpd: t1rpd },
  t5: { rpm: t5rpm, ...(t5tpm === undefined ? {} : { tpm: t5tpm }) }
})

/**
 * The published table (see `shared/reference/openai-limits-2026.md`).
 */
const table: Record<string, Row> = {
  "gpt-4o": text(500, 30_000, 10_000, 10_000, 800_000),
  "gpt-4o-mini": text(500, 200_000, 10_000, 10_000, 4_000_000),
  "o1": text(500, 30_000, 10_000, 10_000, 800_000),
  "o3": text(500, 30_000, 10_000, 10_000, 800_000),
  "o1-mini": text(500, 100_000, 10_000, 10_000, 2_000_000),
  "o3-mini": text(500, 100_000, 10_000, 10_000, 2_000_000),
  "text-embedding-3-large": text(500, 1_000_000, 10_000, 10_000, 10_000_000),
  "text-embedding-3-small": text(500, 1_000_000, 10_000, 10_000, 10_000_000),
  "whisper-1": text(50, undefined, 100, 500),
  "tts-1": text(50, undefined, 100, 500),
  "tts-1-hd": text(50, undefined, 100, 500),
  "gpt-image-2": {
    t1: { tpm: 100_000, ipm: 5 },
    t5: { tpm: 8_000_000, ipm: 250 },
    tiers: [
      { tpm: 100_000, ipm: 5 },
      { tpm: 250_000, ipm: 20 },
      { tpm: 800_000, ipm: 50 },
      { tpm: 3_000_000, ipm: 150 },
      { tpm: 8_000_000, ipm: 250 }
    ]
  },
  "dall-e-3": {
    t1: { rpm: 5, ipm: 5 },
    t5: { rpm: 100, ipm: 100 },
    tiers: [
      { rpm: 5, ipm: 5 },
      { rpm: 7, ipm: 7 },
      { rpm: 15, ipm: 15 },
      { rpm: 50, ipm: 50 },
      { rpm: 100, ipm: 100 }
    ]
  },
  // Reported at about 3–5 IPM at Tier 1; the conservative end, and GPT Image 2's schedule after.
  "gpt-image-1": {
    t1: { tpm: 100_000, ipm: 3 },
    t5: { tpm: 8_000_000, ipm: 250 },
    tiers: [
      { tpm: 100_000, ipm: 3 },
      { tpm: 250_000, ipm: 20 },
      { tpm: 800_000, ipm: 50 },
      { tpm: 3_000_000, ipm: 150 },
      { tpm: 8_000_000, ipm: 250 }
    ]
  }
}

/**
 * The models that have presets.
 *
 * @since 0.1.0
 * @category presets
 */
export const models: ReadonlyArray<string> = Object.keys(table)

const interpolate = (from: number, to: number, tier: Tier): number =>
  tier === 1 ? from : tier === 5 ? to : Math.floor(from * Math.pow(to / from, (tier - 1) / 4))

/**
 * The pool a model charges: dated snapshots and `-latest` aliases share their family's pool
 * (`gpt-4o-2024-08-06` → `gpt-4o`). Override per deployment with the service's `poolOf` option.
 *
 * @since 0.1.0
 * @category pools
 */
export const poolOf = (model: string): string =>
  model
    .replace(/-\d{4}-\d{2}-\d{2}$/, "")
    .replace(/-(\d{4}|latest|preview)$/, "")
    .replace(/^chatgpt-4o$/, "gpt-4o")
    .replace(/^tts-1-hd$/, "tts-1-hd")

/**
 * A model's limits at a tier, or `undefined` when there is no preset for its pool.
 *
 * @since 0.1.0
 * @category presets
 * @example
 * ```ts
 * import { Tiers } from "@sluice/openai"
 *
 * Tiers.limits(1, "gpt-4o") // { rpm: 500, tpm: 30_000, rpd: 10_000, interpolated: false }
 * ```
 */
export const limits = (tier: Tier, model: string): ModelLimits | undefined => {
  const row = table[poolOf(model)]
  if (row === undefined) return undefined
  if (row.tiers !== undefined) {
    const published = row.tiers[tier - 1]
    return { ...published, interpolated: false }
  }
  const pick = (key: "rpm" | "tpm" | "ipm") => {
    const from = row.t1[key]
    const to = row.t5[key]
    return from === undefined || to === undefined ? undefined : interpolate(from, to, tier)
  }
  const result: ModelLimits = {
    rpm: pick("rpm"),
    tpm: pick("tpm"),
    ...(tier === 1 && row.t1.rpd !== undefined ? { rpd: row.t1.rpd } : {}),
    interpolated: tier > 1 && tier < 5
  }
  return result
}

/**
 * A model's preset limits as `Limit`s (requests and tokens per minute, requests per day, images per
 * minute), or `undefined` when there is no preset.
 *
 * @since 0.1.0
 * @category presets
 */
export const limitList = (tier: Tier, model: string): ReadonlyArray<Budget.Limit> | undefined => {
  const found = limits(tier, model)
  if (found === undefined) return undefined
  const list: Array<Budget.Limit> = []
  if (found.rpm !== undefined) list.push(Budget.Limit.perMinute("requests", found.rpm))
  if (found.tpm !== undefined) list.push(Budget.Limit.perMinute("tokens", found.tpm))
  if (found.rpd !== undefined) list.push(Budget.Limit.perDay("requests", found.rpd))
  if (found.tpd !== undefined) list.push(Budget.Limit.perDay("tokens", found.tpd))
  if (found.ipm !== undefined) list.push(Budget.Limit.perMinute("images", found.ipm))
  return list
}

/**
 * The budgets of a tier for some models, on the scopes the `OpenAi` service charges:
 * `org:<organization>/pool:<pool>` for every model's pool.
 *
 * @since 0.1.0
 * @category presets
 */
export const budgets = (
  tier: Tier,
  options: { readonly organization: string; readonly models?: ReadonlyArray<string> | undefined }
): ReadonlyArray<Budget.Budget> => {
  const pools = new Set((options.models ?? models).map(poolOf))
  const result: Array<Budget.Budget> = []
  for (const pool of pools) {
    const list = limitList(tier, pool)
    if (list !== undefined && list.length > 0) {
      result.push(Budget.make(`org:${options.organization}/pool:${pool}`, list))
    }
  }
  return result
}
