/**
 * `sluice report FILE… --evidence OUT.md`: the figures a limit-increase request asks for, per model (pool) and
 * limit, over one or many run records: as Markdown (OUT.md) and CSV (OUT.csv).
 *
 * @internal
 */
import type * as Record from "./record.js"

/** One limit of one scope, over the records. */
export interface LimitEvidence {
  readonly scope: string
  readonly limit: string
  readonly amount: number
  /** Sampled time (ms) and the share of it the bucket was at the limit (under 5% of it left). */
  readonly observedMs: number
  readonly atLimitShare: number
  /** Calls queued at the limiter: the most at once, and the mean while at the limit. */
  readonly peakQueued: number
  /** The most reserved in one window (a minute for per-minute limits), and that plus the queue's cost. */
  readonly peakUsed: number
  readonly peakDemand: number
  /** The limit that would have taken the peak demand with 20% to spare (two significant digits, rounded up). */
  readonly requested: number
  /** Units reserved per UTC day (`YYYY-MM-DD`). */
  readonly perDay: Readonly<globalThis.Record<string, number>>
}

/** One model, over the records. */
export interface ModelEvidence {
  readonly model: string
  readonly lines: number
  readonly rateLimited: number
  /** Lines that ended on a 429 (lost to the run; the 429s retried are counted over all models). */
  readonly linesLostTo429: number
  readonly retriesPerLine: number
  readonly meanFirstWaitMs: number
  readonly p95FirstWaitMs: number
}

const windowName = (ms: number): string =>
  ms === 60_000 ? "min" : ms === 86_400_000 ? "day" : ms === 1_000 ? "s" : `${ms}ms`

const roundUp2 = (n: number): number => {
  if (!(n > 0)) return 0
  const p = 10 ** (Math.floor(Math.log10(n)) - 1)
  return Math.ceil(n / p) * p
}

const day = (t: number) => new Date(t).toISOString().slice(0, 10)

/** The evidence of the records' entries (several records' entries concatenated: each starts with its `run`). */
export const compute = (entries: ReadonlyArray<Record.Entry>) => {
  const limits = new Map<string, {
    scope: string
    dimension: string
    windowMs: number
    amount: number
    observedMs: number
    atLimitMs: number
    peakQueued: number
    perDay: globalThis.Record<string, number>
    /** reserved and calls per window index */
    windows: Map<number, { used: number; queued: number }>
    calls: number
    units: number
  }>()
  const models = new Map<string, { rateLimited: number; lines: Array<Record.LineEntry> }>()
  const model = (name: string) => {
    let m = models.get(name)
    if (m === undefined) models.set(name, m = { rateLimited: 0, lines: [] })
    return m
  }
  let retriedAfter429 = 0
  let previous: number | undefined
  for (const entry of entries) {
    if (entry.type === "run") previous = entry.t
    if (entry.type === "line") model(entry.model ?? "unknown").lines.push(entry)
    if (entry.type !== "second") continue
    const span = Math.max(0, entry.t - (previous ?? entry.t))
    previous = entry.t
    for (const [name, kinds] of Object.entries(entry.rateLimited)) {
      model(name).rateLimited += Object.values(kinds).reduce((a, b) => a + b, 0)
    }
    retriedAfter429 += entry.retries["RateLimited"] ?? 0
    for (const [scope, dimension, windowMs, level, amount] of entry.levels) {
      const key = `${scope}\u0000${dimension}\u0000${windowMs}`
      let l = limits.get(key)
      if (l === undefined) {
        limits.set(
          key,
          l = {
            scope,
            dimension,
            windowMs,
            amount,
            observedMs: 0,
            atLimitMs: 0,
            peakQueued: 0,
            perDay: {},
            windows: new Map(),
            calls: 0,
            units: 0
          }
        )
      }
      l.amount = amount
      l.observedMs += span
      if (level <= amount * 0.05) l.atLimitMs += span
      l.peakQueued = Math.max(l.peakQueued, entry.queued)
      const used = entry.reserved[scope]?.[dimension] ?? 0
      l.units += used
      l.calls += entry.reserved[scope]?.requests ?? 0
      if (used > 0) l.perDay[day(entry.t)] = (l.perDay[day(entry.t)] ?? 0) + used
      const index = Math.floor(entry.t / windowMs)
      const w = l.windows.get(index) ?? { used: 0, queued: 0 }
      w.used += used
      w.queued = Math.max(w.queued, entry.queued)
      l.windows.set(index, w)
    }
  }
  const byLimit: Array<LimitEvidence> = Array.from(limits.values()).map((l) => {
    const perCall = l.calls === 0 ? 0 : l.units / l.calls
    let peakUsed = 0
    let peakDemand = 0
    for (const w of l.windows.values()) {
      peakUsed = Math.max(peakUsed, w.used)
      peakDemand = Math.max(peakDemand, w.used + w.queued * perCall)
    }
    return {
      scope: l.scope,
      limit: `${l.dimension}/${windowName(l.windowMs)}`,
      amount: l.amount,
      observedMs: l.observedMs,
      atLimitShare: l.observedMs === 0 ? 0 : l.atLimitMs / l.observedMs,
      peakQueued: l.peakQueued,
      peakUsed: Math.round(peakUsed),
      peakDemand: Math.round(peakDemand),
      requested: Math.max(l.amount, roundUp2(peakDemand * 1.2)),
      perDay: l.perDay
    }
  })
  const byModel: Array<ModelEvidence> = Array.from(models, ([name, m]) => {
    const waits = m.lines.map((l) => l.firstWaitMs).sort((a, b) => a - b)
    return {
      model: name,
      lines: m.lines.length,
      rateLimited: m.rateLimited,
      linesLostTo429: m.lines.filter((l) => l.outcome === "RateLimited").length,
      retriesPerLine: m.lines.length === 0
        ? 0
        : m.lines.reduce((a, l) => a + Math.max(0, l.attempts - 1), 0) / m.lines.length,
      meanFirstWaitMs: waits.length === 0 ? 0 : waits.reduce((a, b) => a + b, 0) / waits.length,
      p95FirstWaitMs: waits.length === 0 ? 0 : waits[Math.max(0, Math.ceil(0.95 * waits.length) - 1)]!
    }
  })
  return { byLimit, byModel, retriedAfter429 }
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`
const n = (x: number) => Math.round(x).toLocaleString("en-US")

/** The evidence as Markdown. */
export const markdown = (evidence: ReturnType<typeof compute>): string => {
  const rows = evidence.byLimit.filter((l) => l.observedMs > 0)
  return [
    "# Rate-limit increase: evidence from sluice run records",
    "",
    "| scope | limit | current | time at the limit | peak used in a window | peak demand (used + queued) | peak queue | requested |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
    ...rows.map((l) =>
      `| ${l.scope} | ${l.limit} | ${n(l.amount)} | ${pct(l.atLimitShare)} | ${n(l.peakUsed)} | ${n(l.peakDemand)} | ${
        n(l.peakQueued)
      } | ${n(l.requested)} |`
    ),
    "",
    "| model | lines | 429s | 429s retried (all models) | lines lost to 429s | retries per line | wait before first dispatch (mean / p95) |",
    "|---|---:|---:|---:|---:|---:|---:|",
    ...evidence.byModel.map((m) =>
      `| ${m.model} | ${n(m.lines)} | ${n(m.rateLimited)} | ${n(evidence.retriedAfter429)} | ${n(m.linesLostTo429)} | ${
        m.retriesPerLine.toFixed(2)
      } | ${n(m.meanFirstWaitMs)} ms / ${n(m.p95FirstWaitMs)} ms |`
    ),
    "",
    "Usage per day (units reserved):",
    "",
    "| scope | limit | day | used |",
    "|---|---|---|---:|",
    ...rows.flatMap((l) => Object.entries(l.perDay).map(([d, u]) => `| ${l.scope} | ${l.limit} | ${d} | ${n(u)} |`)),
    ""
  ].join("\n")
}

/** The per-limit evidence as CSV. */
export const csv = (evidence: ReturnType<typeof compute>): string =>
  [
    "scope,limit,current,observed_s,at_limit_share,peak_used,peak_demand,peak_queue,requested",
    ...evidence.byLimit.map((l) =>
      [
        JSON.stringify(l.scope),
        l.limit,
        l.amount,
        (l.observedMs / 1000).toFixed(1),
        l.atLimitShare.toFixed(4),
        l.peakUsed,
        l.peakDemand,
        l.peakQueued,
        l.requested
      ].join(",")
    ),
    ""
  ].join("\n")
