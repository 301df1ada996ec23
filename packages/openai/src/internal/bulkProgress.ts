/**
 * Progress arithmetic and formatting for the bulk runner.
 *
 * @internal
 */
import type { Counts } from "../BulkRunner.js"

/** @internal */
export interface Stats extends Counts {
  readonly total: number | undefined
  readonly inFlight: number
  readonly startedAt: number
}

/** @internal */
export const empty = (startedAt: number): Stats => ({
  total: undefined,
  alreadyDone: 0,
  succeeded: 0,
  failed: 0,
  failuresByKind: {},
  invalid: 0,
  invalidByReason: {},
  inFlight: 0,
  startedAt,
  waits: 0,
  waitMs: 0,
  rateLimited: 0,
  retries: 0,
  binding: undefined,
  theoreticalMinimumMs: undefined,
  tokensReserved: 0,
  tokensUsed: 0
})

/** @internal */
export const bump = (record: Readonly<Record<string, number>>, key: string): Record<string, number> => ({
  ...record,
  [key]: (record[key] ?? 0) + 1
})

/** @internal */
export interface View {
  readonly done: number
  readonly remaining: number | undefined
  readonly elapsedMs: number
  /** Requests finished per second in this run. */
  readonly rate: number
  readonly etaMs: number | undefined
}

/** @internal */
export const view = (stats: Stats, now: number): View => {
  const done = stats.succeeded + stats.failed
  const elapsedMs = Math.max(0, now - stats.startedAt)
  const rate = elapsedMs > 0 ? done / (elapsedMs / 1000) : 0
  const remaining = stats.total === undefined
    ? undefined
    : Math.max(0, stats.total - stats.alreadyDone - stats.invalid - done)
  const etaMs = remaining === undefined
    ? undefined
    : remaining === 0
    ? 0
    : rate > 0
    ? (remaining / rate) * 1000
    : undefined
  return { done, remaining, elapsedMs, rate, etaMs }
}

/** @internal */
export const formatDuration = (ms: number): string => {
  if (!Number.isFinite(ms)) return "?"
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`
}

/** @internal */
export const line = (stats: Stats, now: number): string => {
  const v = view(stats, now)
  const finished = v.done + stats.alreadyDone
  const total = stats.total === undefined ? "?" : String(stats.total - stats.invalid)
  const parts = [
    `${finished}/${total} done`,
    `${v.rate.toFixed(1)}/s`,
    `ETA ${v.etaMs === undefined ? "?" : formatDuration(v.etaMs)}`,
    `in flight ${stats.inFlight}`,
    `failed ${stats.failed}`
  ]
  if (stats.binding !== undefined) parts.push(`binding ${stats.binding}`)
  parts.push(`waits ${stats.waits}`, `429s ${stats.rateLimited}`, `retries ${stats.retries}`)
  return parts.join(" | ")
}
