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
  /** The most reserved in one window (a minute for per-minute limits), and the most demanded (see `compute`). */
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

/** Calls `f(index, share)` for each window of `windowMs` the span `[from, to]` covers, with the share of it there. */
const spread = (from: number, to: number, windowMs: number, f: (index: number, share: number) => void) => {
  if (!(to > from)) return f(Math.floor(to / windowMs), 1)
  for (let index = Math.floor(from / windowMs); index * windowMs < to; index++) {
    const overlap = Math.min(to, (index + 1) * windowMs) - Math.max(from, index * windowMs)
    if (overlap > 0) f(index, overlap / (to - from))
  }
}

/**
 * The mean latency (ms) of the calls answered in the records: exact from `latencyMs` where a second has it, else
 * from the histogram (each bucket's geometric middle); `undefined` when nothing was answered.
 */
const meanLatency = (seconds: ReadonlyArray<Record.SecondEntry>): number | undefined => {
  let count = 0
  let total = 0
  for (const s of seconds) {
    const n = s.latency.reduce((a, [, k]) => a + k, 0)
    count += n
    total += s.latencyMs ?? s.latency.reduce((a, [b, k]) => a + k * (b < 0 ? 0.5 : 2 ** ((b + 0.5) / 4)), 0)
  }
  return count === 0 ? undefined : total / count
}

/**
 * The evidence of the records' entries (several records' entries concatenated: each starts with its `run`).
 *
 * Demand, the units the runs would have sent without the limit: in a second with calls queued at the limiter,
 * by Little's law the lines in flight (each a worker: sent or waiting) over the mean latency of an answered call,
 * times the scope's share of the calls and its mean cost per call (never below what was reserved); in a second
 * with nothing queued, what was reserved. A record without latencies (nothing answered) falls back to the units
 * reserved in the window plus the most calls queued in it times the mean cost. Each sample's figures are spread
 * over the windows the time it covers falls in (a starved run samples less often than every second).
 */
export const compute = (entries: ReadonlyArray<Record.Entry>) => {
  type Window = { used: number; queued: number; demand: number }
  const limits = new Map<string, {
    scope: string
    dimension: string
    windowMs: number
    amount: number
    observedMs: number
    atLimitMs: number
    peakQueued: number
    perDay: globalThis.Record<string, number>
    /** the samples of this limit's bucket: when, the time covered, reserved, queued and in flight */
    samples: Array<{ t: number; span: number; used: number; queued: number; inFlight: number }>
    calls: number
    units: number
  }>()
  const models = new Map<string, { rateLimited: number; lines: Array<Record.LineEntry> }>()
  const model = (name: string) => {
    let m = models.get(name)
    if (m === undefined) models.set(name, m = { rateLimited: 0, lines: [] })
    return m
  }
  const seconds: Array<Record.SecondEntry> = []
  let admitted = 0
  let retriedAfter429 = 0
  let previous: number | undefined
  for (const entry of entries) {
    if (entry.type === "run") previous = entry.t
    if (entry.type === "line") model(entry.model ?? "unknown").lines.push(entry)
    if (entry.type !== "second") continue
    seconds.push(entry)
    admitted += entry.admitted
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
            samples: [],
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
      l.samples.push({ t: entry.t, span, used, queued: entry.queued, inFlight: entry.inFlight })
    }
  }
  const latency = meanLatency(seconds)
  const byLimit: Array<LimitEvidence> = Array.from(limits.values()).map((l) => {
    const perCall = l.calls === 0 ? 0 : l.units / l.calls
    const share = admitted === 0 ? 0 : Math.min(1, l.calls / admitted)
    const windows = new Map<number, Window>()
    for (const s of l.samples) {
      const littles = latency === undefined || !(latency > 0) || s.queued === 0
        ? 0
        : (s.inFlight * share * perCall * s.span) / latency
      const demand = Math.max(s.used, littles)
      spread(s.t - s.span, s.t, l.windowMs, (index, part) => {
        const w = windows.get(index) ?? { used: 0, queued: 0, demand: 0 }
        w.used += s.used * part
        w.demand += demand * part
        w.queued = Math.max(w.queued, s.queued)
        windows.set(index, w)
      })
    }
    let peakUsed = 0
    let peakDemand = 0
    for (const w of windows.values()) {
      peakUsed = Math.max(peakUsed, w.used)
      peakDemand = Math.max(peakDemand, latency === undefined ? w.used + w.queued * perCall : w.demand)
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
    "| scope | limit | current | time at the limit | peak used in a window | peak demand in a window (without the limit) | peak queue | requested |",
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
