/**
 * Capacity planning (`sluice plan`): for a tier, a model mix and a workload, the binding limit per pool, the
 * time to drain, the peak-minute headroom and the cost. Limits come from `Tiers` in `@sluice/openai` (a
 * planning baseline: verify against your organization's limits page).
 *
 * @since 0.1.0
 */
import { Pricing, Tiers } from "@sluice/openai"

/**
 * List prices in USD, standard (non-Batch) processing: `Pricing.prices` of `@sluice/openai` (with the cached-input
 * price of OpenAI's prompt caching). Prices change: treat as an estimate. `undefined` = not known.
 *
 * @since 0.1.0
 * @category prices
 */
export const prices: Readonly<Record<string, Pricing.Price>> = Pricing.prices

/**
 * @since 0.1.0
 * @category models
 */
export interface Workload {
  readonly tier: Tiers.Tier
  /** Model → share of the requests (normalised). */
  readonly mix: ReadonlyArray<{ readonly model: string; readonly share: number }>
  readonly requests: number
  readonly inputTokens: number
  /**
   * Of `inputTokens`, those OpenAI's prompt caching serves (a shared prefix of 1,024 tokens or more: see the
   * openai README), billed at the cached-input price. They still count toward TPM. Default 0.
   *
   * @since 0.2.0
   */
  readonly cachedInputTokens?: number | undefined
  readonly outputTokens: number
  /** Images per request, for image models. */
  readonly images: number
  /** Requests in the busiest minute, if known. */
  readonly peakPerMinute?: number | undefined
  /** Batch API: half price (the limits differ and are not modelled). */
  readonly batch?: boolean | undefined
  /**
   * Limits that replace the tier's presets for a pool (`sluice run --limits`); a pool it gives `undefined` for
   * keeps the tier's.
   *
   * @since 0.2.0
   */
  readonly limitsOf?: ((pool: string) => Tiers.ModelLimits | undefined) | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface PoolPlan {
  readonly pool: string
  readonly models: ReadonlyArray<string>
  readonly requests: number
  readonly tokens: number
  readonly images: number
  readonly limits: Tiers.ModelLimits | undefined
  /** Minutes to drain per dimension at the limit. */
  readonly minutesBy: Readonly<Record<string, number>>
  readonly binding: string | undefined
  readonly minutes: number | undefined
  /** Requests per minute this pool sustains with 30% headroom. */
  readonly sustainablePerMinute: number | undefined
  /** 1 − peak usage / limit on the tightest dimension, when a peak is given. */
  readonly peakHeadroom: number | undefined
  readonly cost: number | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Plan {
  readonly pools: ReadonlyArray<PoolPlan>
  /** Pools drain in parallel: the slowest pool. */
  readonly minutes: number | undefined
  readonly binding: string | undefined
  readonly cost: number | undefined
  readonly warnings: ReadonlyArray<string>
}

const isImage = (model: string) => /image|dall-e/.test(model)
const isEmbedding = (model: string) => model.includes("embedding")

/**
 * Computes a plan.
 *
 * @since 0.1.0
 * @category planning
 * @example
 * ```ts
 * import { Plan } from "@sluice/cli"
 *
 * const plan = Plan.compute({
 *   tier: 1,
 *   mix: [{ model: "gpt-4o-mini", share: 1 }],
 *   requests: 10_000,
 *   inputTokens: 500,
 *   outputTokens: 200,
 *   images: 1
 * })
 * ```
 */
export const compute = (workload: Workload): Plan => {
  const warnings: Array<string> = []
  const totalShare = workload.mix.reduce((sum, m) => sum + m.share, 0) || 1
  const byPool = new Map<string, Array<{ model: string; share: number }>>()
  for (const entry of workload.mix) {
    const pool = Tiers.poolOf(entry.model)
    byPool.set(pool, [...(byPool.get(pool) ?? []), { model: entry.model, share: entry.share / totalShare }])
  }
  const pools: Array<PoolPlan> = []
  for (const [pool, entries] of byPool) {
    let requests = 0
    let tokens = 0
    let images = 0
    let cost: number | undefined = 0
    for (const { model, share } of entries) {
      const n = workload.requests * share
      const outputTokens = isEmbedding(model) || isImage(model) ? 0 : workload.outputTokens
      const imageCount = isImage(model) ? n * workload.images : 0
      requests += n
      tokens += n * (workload.inputTokens + outputTokens)
      images += imageCount
      const input = isImage(model) ? 0 : workload.inputTokens
      const dollars = Pricing.dollars(
        model,
        {
          input: n * input,
          cachedInput: n * Math.min(input, isEmbedding(model) ? 0 : workload.cachedInputTokens ?? 0),
          output: n * outputTokens
        },
        imageCount
      )
      if (dollars === undefined || cost === undefined) {
        if (dollars === undefined) warnings.push(`no price for ${model}: cost not computed`)
        cost = undefined
      } else {
        cost += dollars
      }
    }
    if (cost !== undefined && workload.batch === true) cost /= 2
    const limits = workload.limitsOf?.(pool) ?? Tiers.limits(workload.tier, pool)
    if (limits === undefined) warnings.push(`no tier preset for ${pool}: pass --limits`)
    if (limits?.interpolated === true) warnings.push(`${pool}: tier ${workload.tier} limits are interpolated`)
    const minutesBy: Record<string, number> = {}
    const perRequest: Record<string, [number, number | undefined]> = {
      "requests/min": [1, limits?.rpm],
      "tokens/min": [requests > 0 ? tokens / requests : 0, limits?.tpm],
      "images/min": [requests > 0 ? images / requests : 0, limits?.ipm]
    }
    if (limits !== undefined) {
      for (const [dimension, [unit, limit]] of Object.entries(perRequest)) {
        if (limit !== undefined && unit > 0) minutesBy[dimension] = (requests * unit) / limit
      }
      if (limits.rpd !== undefined && requests > limits.rpd) {
        // a daily cap: full days at the cap, then the rest
        minutesBy["requests/day"] = Math.floor(requests / limits.rpd) * 1440
      }
      if (limits.tpd !== undefined && tokens > limits.tpd) {
        minutesBy["tokens/day"] = Math.floor(tokens / limits.tpd) * 1440
      }
    }
    const entriesBy = Object.entries(minutesBy).sort((a, b) => b[1] - a[1])
    const binding = entriesBy[0]?.[0]
    const minutes = entriesBy[0]?.[1]
    let sustainable: number | undefined
    let peakHeadroom: number | undefined
    if (limits !== undefined) {
      for (const [unit, limit] of Object.values(perRequest)) {
        if (limit === undefined || unit <= 0) continue
        const perMinute = (0.7 * limit) / unit
        sustainable = sustainable === undefined ? perMinute : Math.min(sustainable, perMinute)
        if (workload.peakPerMinute !== undefined) {
          const share = requests / Math.max(1, workload.requests)
          const headroom = 1 - (workload.peakPerMinute * share * unit) / limit
          peakHeadroom = peakHeadroom === undefined ? headroom : Math.min(peakHeadroom, headroom)
        }
      }
    }
    if (peakHeadroom !== undefined && peakHeadroom < 0.3) {
      warnings.push(
        `${pool}: peak minute leaves ${(peakHeadroom * 100).toFixed(0)}% headroom (keep about 30%)`
      )
    }
    pools.push({
      pool,
      models: entries.map((e) => e.model),
      requests,
      tokens,
      images,
      limits,
      minutesBy,
      binding,
      minutes,
      sustainablePerMinute: sustainable,
      peakHeadroom,
      cost
    })
  }
  const slowest = [...pools].filter((p) => p.minutes !== undefined).sort((a, b) => b.minutes! - a.minutes!)[0]
  const cost = pools.every((p) => p.cost !== undefined) ? pools.reduce((sum, p) => sum + p.cost!, 0) : undefined
  return {
    pools,
    minutes: slowest?.minutes,
    binding: slowest === undefined ? undefined : `${slowest.binding} (${slowest.pool})`,
    cost,
    warnings
  }
}

/**
 * Minutes as the plan prints them: `45s`, `8.0 min`, `3.5 h`, `2.1 days`, `n/a`.
 *
 * @since 0.2.0
 * @category planning
 * @example
 * ```ts
 * import { Plan } from "@sluice/cli"
 *
 * Plan.formatMinutes(90) // "90.0 min"
 * ```
 */
export const formatMinutes = (minutes: number | undefined) => {
  if (minutes === undefined) return "n/a"
  if (minutes < 1) return `${Math.ceil(minutes * 60)}s`
  if (minutes < 120) return `${minutes.toFixed(1)} min`
  if (minutes < 2 * 1440) return `${(minutes / 60).toFixed(1)} h`
  return `${(minutes / 1440).toFixed(1)} days`
}

/**
 * A text rendering of a plan.
 *
 * @since 0.1.0
 * @category planning
 */
export const format = (workload: Workload, plan: Plan): string => {
  const rows: Array<string> = [
    `tier ${workload.tier}, ${workload.requests} requests, ${workload.inputTokens} input${
      (workload.cachedInputTokens ?? 0) > 0 ? ` (${workload.cachedInputTokens} from the prompt cache)` : ""
    } + ${workload.outputTokens} output tokens each`
  ]
  for (const p of plan.pools) {
    const l = p.limits
    const limits = l === undefined
      ? "no preset"
      : [
        l.rpm && `${l.rpm} RPM`,
        l.tpm && `${l.tpm} TPM`,
        l.rpd && `${l.rpd} RPD`,
        l.ipm && `${l.ipm} IPM`
      ].filter(Boolean).join(", ")
    rows.push(
      `pool ${p.pool} (${p.models.join(", ")}): ${Math.round(p.requests)} requests, ${Math.round(p.tokens)} tokens${
        p.images > 0 ? `, ${Math.round(p.images)} images` : ""
      }; limits ${limits}`,
      `  binding ${p.binding ?? "n/a"}; drain ${formatMinutes(p.minutes)}; sustainable ${
        p.sustainablePerMinute === undefined ? "n/a" : `${Math.floor(p.sustainablePerMinute)} req/min at 30% headroom`
      }${p.peakHeadroom === undefined ? "" : `; peak-minute headroom ${(p.peakHeadroom * 100).toFixed(0)}%`}; cost ${
        p.cost === undefined ? "n/a" : `$${p.cost.toFixed(2)}`
      }`
    )
  }
  rows.push(
    `binding limit: ${plan.binding ?? "n/a"}`,
    `time to drain: ${formatMinutes(plan.minutes)}`,
    `cost: ${plan.cost === undefined ? "n/a" : `$${plan.cost.toFixed(2)}`}${
      workload.batch === true ? " (Batch API price)" : ""
    }`
  )
  for (const w of plan.warnings) rows.push(`note: ${w}`)
  rows.push("note: limits are OpenAI's published defaults; verify on your organization's limits page.")
  return rows.join("\n")
}
