/**
 * What the simulator saw: every attempt, what was admitted against the limits, counts by status and error code,
 * attempts per request key, and the peak admitted rate in any rolling window. Tests assert on it: a client never
 * went over a limit, never retried a 400, lost nothing.
 *
 * A request key comes from the `x-sim-request-key` header, or a `[req:ID]` marker anywhere in the request body.
 *
 * @since 0.1.0
 */
import { Budget } from "@sluice/core"
import type * as SimConfig from "./SimConfig.js"

/**
 * One attempt as the simulator handled it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Attempt {
  /** Simulated time (ms since the simulator started). */
  readonly at: number
  readonly requestId: string
  readonly method: string
  readonly path: string
  readonly key: string | undefined
  readonly model: string | undefined
  /** HTTP status, or 0 for a connection reset or a connection timeout (no answer). */
  readonly status: number
  /** The error `code` (or `type` when the code is null), e.g. `rate_limit_exceeded`, `context_length_exceeded`. */
  readonly code: string | undefined
  /** Which limit rejected it, e.g. `tpm`, `rpm`, `rpd`, `tpd`, `ipm`, `request_too_large`. */
  readonly limit: string | undefined
  readonly fault: string | undefined
  /** The organization the request was judged in (undefined when its key or organization was refused). */
  readonly organization?: string | undefined
  /**
   * An answered call (200): the delay the simulator drew for its answer (ms, streaming included), so a test
   * can compute what a client could have done with the latencies this run really had.
   *
   * @since 0.2.0
   */
  readonly latencyMs?: number | undefined
}

/**
 * A charge against a scope's limits (a request admitted past the limiter), at settle time values.
 *
 * @since 0.1.0
 * @category models
 */
export interface Admission {
  readonly at: number
  readonly model: string
  /** The limit scope: the pool name for shared-pool models, else the model name. */
  readonly scope: string
  /** The `OpenAI-Project` the request named, if any. */
  readonly project: string | undefined
  /** The organization whose buckets were charged. */
  readonly organization?: string | undefined
  readonly requests: number
  /** Tokens finally charged (the estimate trued up to actual usage; 0 when refunded after a fault). */
  readonly tokens: number
  readonly images: number
}

/**
 * A snapshot of the simulator's statistics.
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  readonly attempts: ReadonlyArray<Attempt>
  readonly admissions: ReadonlyArray<Admission>
  readonly byStatus: Readonly<Record<string, number>>
  readonly byCode: Readonly<Record<string, number>>
  /** Attempts per request key. */
  readonly attemptsByKey: Readonly<Record<string, number>>
  /** Tokens admitted (finally charged) per model. */
  readonly tokensByModel: Readonly<Record<string, number>>
  /** Requests admitted per model. */
  readonly requestsByModel: Readonly<Record<string, number>>
  /** Total simulated spend in USD. */
  readonly spendUsd: number
  /** Simulated spend in USD per organization (each is held against its own `quotaUsd`). */
  readonly spendByOrganization?: Readonly<Record<string, number>> | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export type Dimension = "requests" | "tokens" | "images"

/**
 * The largest admitted amount of `dimension` within any window of `windowMs` (optionally for one model, scope,
 * project or organization). Windows are half-open `[t, t + windowMs)`.
 *
 * This is what a rolling-window limit bounds. A token bucket bounds it less tightly: a bucket of capacity `C`
 * refilling at `limit / window` admits up to `C + limit × windowMs / window` within `windowMs` (the full bucket at
 * the window's start plus what refills during it), not `limit`. The simulator's buckets have `C = limit` (a
 * sub-minute bucket a smaller `C`, which a single larger call may take below zero), so within one whole window it
 * can admit almost twice the limit. Compare `peak` with the limit to check a client that promises to stay under a
 * rolling-window limit, and with `C + limit × windowMs / window` to check the simulator itself.
 *
 * @since 0.1.0
 * @category queries
 * @example
 * ```ts
 * import { SimStats } from "@sluice/testing"
 *
 * declare const snapshot: SimStats.Snapshot
 * const peak = SimStats.peak(snapshot, { dimension: "tokens", windowMs: 60_000, model: "gpt-4o" })
 * ```
 */
export const peak = (
  snapshot: Snapshot,
  options: {
    readonly dimension: Dimension
    readonly windowMs: number
    readonly model?: string | undefined
    readonly scope?: string | undefined
    readonly project?: string | undefined
    readonly organization?: string | undefined
  }
): number => {
  const events = snapshot.admissions.filter((a) =>
    (options.model === undefined || a.model === options.model) &&
    (options.scope === undefined || a.scope === options.scope) &&
    (options.project === undefined || a.project === options.project) &&
    (options.organization === undefined || a.organization === options.organization)
  )
  let best = 0
  let sum = 0
  let start = 0
  for (let end = 0; end < events.length; end++) {
    sum += events[end][options.dimension]
    while (events[end].at - events[start].at >= options.windowMs) {
      sum -= events[start][options.dimension]
      start++
    }
    if (sum > best) best = sum
  }
  return best
}

/**
 * Attempts whose request key saw a given status more than once in a row, e.g. the keys a client retried
 * after a 400 (which it must never do).
 *
 * @since 0.1.0
 * @category queries
 */
export const retriedAfter = (snapshot: Snapshot, predicate: (attempt: Attempt) => boolean): ReadonlyArray<string> => {
  const seen = new Set<string>()
  const bad = new Set<string>()
  for (const attempt of snapshot.attempts) {
    if (attempt.key === undefined) continue
    if (seen.has(attempt.key)) bad.add(attempt.key)
    if (predicate(attempt)) seen.add(attempt.key)
  }
  return [...bad]
}

/**
 * Request keys whose last attempt succeeded (2xx).
 *
 * @since 0.1.0
 * @category queries
 */
export const succeededKeys = (snapshot: Snapshot): ReadonlySet<string> => {
  const ok = new Set<string>()
  for (const attempt of snapshot.attempts) {
    if (attempt.key !== undefined && attempt.status >= 200 && attempt.status < 300) ok.add(attempt.key)
  }
  return ok
}

/** The Budget limits a scenario's `Limits` stand for (and their sub-minute buckets, when enforced). */
const limitsOf = (limits: SimConfig.Limits, subWindowMs: number | undefined): Array<Budget.Limit> => {
  const out: Array<Budget.Limit> = []
  const perMinute = (dimension: Dimension, amount: number | undefined) => {
    if (amount === undefined) return
    out.push(Budget.Limit.perMinute(dimension, amount))
    if (subWindowMs !== undefined && subWindowMs < 60_000) {
      out.push(
        Budget.Limit.perMinute(dimension, amount, Math.min(amount, Math.max(1, (amount * subWindowMs) / 60_000)))
      )
    }
  }
  perMinute("requests", limits.rpm)
  perMinute("tokens", limits.tpm)
  perMinute("images", limits.ipm)
  if (limits.rpd !== undefined) out.push(Budget.Limit.perDay("requests", limits.rpd))
  if (limits.tpd !== undefined) out.push(Budget.Limit.perDay("tokens", limits.tpd))
  return out
}

/** An admission's limits in a scenario: its organization's override, else its pool's, else its model's. */
const scopeLimits = (
  scenario: SimConfig.Scenario,
  organization: string,
  a: { readonly scope: string; readonly model: string }
): SimConfig.Limits | undefined =>
  scenario.organizations[organization]?.limits[a.scope] ?? scenario.pools[a.scope] ??
    scenario.models[a.scope]?.limits ?? scenario.models[a.model]?.limits

const isScenario = (limits: SimConfig.Limits | SimConfig.Scenario): limits is SimConfig.Scenario =>
  "models" in limits && typeof limits.models === "object"

/**
 * The theoretical minimum of a run: the least virtual time, in milliseconds, in which what the simulator admitted
 * could have been admitted under the limits, buckets starting full (`Budget.theoreticalMinimum` for each scope's
 * charged total; the largest). A client that keeps to the limits without wasting them ends a limit-bound run a
 * little after it (the last calls' latency); compare `Simulator.elapsed` with it.
 *
 * With a scenario, each admission counts against its own organization's limits for its model or pool (an
 * organization's `limits` override, else `pools`, else the model's), and its project's when `projects` limits it;
 * `enforcement.subWindowMs` adds the sub-minute buckets. With plain `Limits`, every admission (after the filters)
 * counts against them together. Background load is not counted. Under `stats: "counts"` (no admissions kept), the
 * per-model counters stand in: the default organization, no projects.
 *
 * @since 0.1.0
 * @category queries
 * @example
 * ```ts
 * import { Scenario, SimStats } from "@sluice/testing"
 *
 * declare const snapshot: SimStats.Snapshot
 * const scenario = Scenario.tier1()
 * const minimumMs = SimStats.theoreticalMinimum(snapshot, scenario)
 * // or against one model's limits only
 * const forMini = SimStats.theoreticalMinimum(snapshot, scenario.models["gpt-4o-mini"].limits, { model: "gpt-4o-mini" })
 * ```
 */
export const theoreticalMinimum = (
  snapshot: Snapshot,
  limits: SimConfig.Limits | SimConfig.Scenario,
  options: {
    readonly model?: string | undefined
    readonly scope?: string | undefined
    readonly project?: string | undefined
    readonly organization?: string | undefined
  } = {}
): number => {
  const admissions: ReadonlyArray<Admission> = snapshot.admissions.length > 0 || snapshot.attempts.length > 0
    ? snapshot.admissions
    : Object.keys(snapshot.requestsByModel).map((model) => ({
      at: 0,
      model,
      scope: isScenario(limits) ? limits.models[model]?.pool ?? model : model,
      project: undefined,
      requests: snapshot.requestsByModel[model] ?? 0,
      tokens: snapshot.tokensByModel[model] ?? 0,
      images: 0
    }))
  const groups = new Map<string, { limits: ReadonlyArray<Budget.Limit>; charged: Record<Dimension, number> }>()
  const charge = (key: string, of: () => ReadonlyArray<Budget.Limit>, a: Admission) => {
    let group = groups.get(key)
    if (group === undefined) {
      group = { limits: of(), charged: { requests: 0, tokens: 0, images: 0 } }
      groups.set(key, group)
    }
    group.charged.requests += a.requests
    group.charged.tokens += a.tokens
    group.charged.images += a.images
  }
  for (const a of admissions) {
    if (
      (options.model !== undefined && a.model !== options.model) ||
      (options.scope !== undefined && a.scope !== options.scope) ||
      (options.project !== undefined && a.project !== options.project) ||
      (options.organization !== undefined && a.organization !== options.organization)
    ) continue
    if (!isScenario(limits)) {
      charge("", () => limitsOf(limits, undefined), a)
      continue
    }
    const sub = limits.enforcement.subWindowMs
    const organization = a.organization ?? limits.organization
    charge(`org ${organization} ${a.scope}`, () => {
      const own = scopeLimits(limits, organization, a)
      return own === undefined ? [] : limitsOf(own, sub)
    }, a)
    const project = a.project === undefined ? undefined : limits.projects[a.project]?.limits[a.scope]
    if (project !== undefined) {
      charge(`project ${organization} ${a.project} ${a.scope}`, () => limitsOf(project, sub), a)
    }
  }
  let worst = 0
  for (const group of groups.values()) worst = Math.max(worst, Budget.theoreticalMinimum(group.limits, group.charged))
  return worst
}

/**
 * A run in a few figures, for a person or a dashboard: requests by status and by error code, the 429s by what
 * they meant (the limit that refused them: `rpm`, `tpm`, `rpd`, `tpd`, `ipm`, `request_too_large`; or
 * `insufficient_quota`), and for every limit of every scope that admitted anything, the peak admitted in any
 * rolling window of the limit's own (a minute, a day) beside the limit.
 *
 * @since 0.1.0
 * @category models
 */
export interface Summary {
  readonly requests: number
  readonly byStatus: Readonly<Record<string, number>>
  readonly byCode: Readonly<Record<string, number>>
  readonly rateLimited: { readonly total: number; readonly byKind: Readonly<Record<string, number>> }
  readonly peaks: ReadonlyArray<{
    readonly organization: string
    readonly scope: string
    /** `rpm`, `tpm`, `rpd`, `tpd` or `ipm`. */
    readonly limit: string
    readonly value: number
    readonly peak: number
  }>
  readonly spendUsd: number
}

const peakLimits: ReadonlyArray<readonly [keyof SimConfig.Limits, Dimension, number]> = [
  ["rpm", "requests", 60_000],
  ["tpm", "tokens", 60_000],
  ["ipm", "images", 60_000],
  ["rpd", "requests", 86_400_000],
  ["tpd", "tokens", 86_400_000]
]

/**
 * The {@link Summary} of a snapshot, its limits read from the scenario. Peaks need the admissions (not kept under
 * `stats: "counts"`: then none are given).
 *
 * @since 0.1.0
 * @category queries
 */
export const summary = (snapshot: Snapshot, scenario: SimConfig.Scenario): Summary => {
  let requests = 0
  for (const n of Object.values(snapshot.byStatus)) requests += n
  const byKind: Record<string, number> = {}
  let limited = 0
  for (const attempt of snapshot.attempts) {
    if (attempt.status !== 429) continue
    limited++
    const kind = attempt.code === "insufficient_quota" ? "insufficient_quota" : attempt.limit ?? "rate_limit"
    byKind[kind] = (byKind[kind] ?? 0) + 1
  }
  if (snapshot.attempts.length === 0) limited = snapshot.byStatus["429"] ?? 0
  const scopes = new Map<string, { organization: string; scope: string; model: string }>()
  for (const a of snapshot.admissions) {
    const organization = a.organization ?? scenario.organization
    scopes.set(`${organization}\u0000${a.scope}`, { organization, scope: a.scope, model: a.model })
  }
  const peaks: Array<Summary["peaks"][number]> = []
  for (const { model, organization, scope } of scopes.values()) {
    const limits = scopeLimits(scenario, organization, { scope, model })
    if (limits === undefined) continue
    for (const [name, dimension, windowMs] of peakLimits) {
      const value = limits[name]
      if (value === undefined) continue
      const observed = peak(snapshot, {
        dimension,
        windowMs,
        scope,
        ...(Object.keys(scenario.organizations).length > 0 ? { organization } : {})
      })
      peaks.push({ organization, scope, limit: name, value, peak: observed })
    }
  }
  return {
    requests,
    byStatus: { ...snapshot.byStatus },
    byCode: { ...snapshot.byCode },
    rateLimited: { total: limited, byKind },
    peaks,
    spendUsd: snapshot.spendUsd
  }
}

/**
 * A {@link Summary} as lines of text (what `sluice sim` prints when it stops).
 *
 * @since 0.1.0
 * @category queries
 */
export const formatSummary = (summary: Summary): string => {
  const counts = (record: Readonly<Record<string, number>>) =>
    Object.keys(record).length === 0
      ? "none"
      : Object.entries(record).sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k} ${n}`).join(", ")
  const lines = [
    `requests: ${summary.requests} (by status: ${counts(summary.byStatus)})`,
    `error codes: ${counts(summary.byCode)}`,
    `429s: ${summary.rateLimited.total}${
      summary.rateLimited.total === 0 ? "" : ` (by kind: ${counts(summary.rateLimited.byKind)})`
    }`
  ]
  if (summary.peaks.length > 0) {
    lines.push("peak rolling rate per limit:")
    for (const p of summary.peaks) {
      const share = p.value > 0 ? ` (${((100 * p.peak) / p.value).toFixed(1)}%)` : ""
      lines.push(`  ${p.organization} ${p.scope} ${p.limit}: ${Math.round(p.peak)} of ${p.value}${share}`)
    }
  }
  lines.push(`spend: $${summary.spendUsd.toFixed(4)}`)
  return lines.join("\n")
}
