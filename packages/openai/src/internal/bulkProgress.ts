/**
 * The bulk runner's progress: the hooks over a `Ref` of stats, its arithmetic (rate, ETA), the progress line,
 * the periodic report, and the text of a summary.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import type { Progress, ProgressStats as Stats, ProgressView as View, Summary } from "../BulkRunner.js"

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
export const view = (stats: Stats, now: number): View => {
  const done = stats.succeeded + stats.failed
  const elapsedMs = Math.max(0, now - stats.startedAt)
  const rate = elapsedMs > 0 ? done / (elapsedMs / 1000) : 0
  const remaining = stats.total === undefined
    ? undefined
    : Math.max(0, stats.total - stats.alreadyDone - stats.invalid - done)
  const byWeight = remaining === undefined ? undefined : etaByWeight(stats.weights, remaining, elapsedMs)
  const etaMs = remaining === undefined
    ? undefined
    : remaining === 0
    ? 0
    : byWeight !== undefined
    ? byWeight
    : rate > 0
    ? (remaining / rate) * 1000
    : undefined
  return { done, remaining, elapsedMs, rate, etaMs }
}

/**
 * The ETA by weight, once some weight has finished: the weight left (the lines sent and not finished as they weigh,
 * the lines not sent yet at the sent ones' mean; never below 0) over the weight finished per millisecond.
 */
const etaByWeight = (weights: Stats["weights"], remaining: number, elapsedMs: number): number | undefined => {
  if (weights === undefined || weights.handed === 0 || weights.finishedWeight <= 0 || elapsedMs <= 0) return undefined
  const notSent = Math.max(0, remaining - (weights.handed - weights.finished))
  const left = weights.handedWeight - weights.finishedWeight + notSent * (weights.handedWeight / weights.handed)
  return Math.max(0, left) / (weights.finishedWeight / elapsedMs)
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

/** @internal */
export const make: Effect.Effect<Progress> = Effect.gen(function*() {
  const now = yield* Clock.currentTimeMillis
  const stats = yield* Ref.make(empty(now))
  const update = (f: (s: Stats) => Stats) => Ref.update(stats, f)
  return {
    stats,
    recordWait: (ms) => update((s) => ({ ...s, waits: s.waits + 1, waitMs: s.waitMs + ms })),
    recordRateLimited: update((s) => ({ ...s, rateLimited: s.rateLimited + 1 })),
    recordRetry: update((s) => ({ ...s, retries: s.retries + 1 })),
    setBinding: (binding) => update((s) => ({ ...s, binding })),
    setTheoreticalMinimum: (ms) => update((s) => ({ ...s, theoreticalMinimumMs: ms })),
    recordTokens: ({ reserved, used }) =>
      update((s) => ({ ...s, tokensReserved: s.tokensReserved + reserved, tokensUsed: s.tokensUsed + used })),
    line: Effect.zipWith(Ref.get(stats), Clock.currentTimeMillis, line)
  }
})

/** @internal */
export const every = (
  progress: Progress,
  interval: Duration.DurationInput,
  report: (line: string, last: boolean) => Effect.Effect<void>
): Effect.Effect<void> =>
  Effect.forever(Effect.delay(Effect.flatMap(progress.line, (text) => report(text, false)), interval)).pipe(
    Effect.onInterrupt(() => Effect.flatMap(progress.line, (text) => report(text, true)))
  )

/** @internal */
export const formatSummary = (summary: Summary): string => {
  const kinds = (record: Readonly<Record<string, number>>) =>
    Object.entries(record).map(([k, n]) => `${k} ${n}`).join(", ")
  const rows: Array<string> = [
    `outcome: ${summary.outcome}${summary.outcome === "stopped" ? " (rerun with the same --output to resume)" : ""}`
  ]
  if (summary.stop !== undefined) {
    rows.push(
      `stopped by: ${
        summary.stop._tag === "Signal"
          ? "signal"
          : summary.stop._tag === "Executor"
          ? `${summary.stop.kind} (${summary.stop.code}) at line ${summary.stop.line}: ${summary.stop.message}`
          : summary.stop._tag === "Offload"
          ? summary.stop.message
          : `defect at line ${summary.stop.line}: ${summary.stop.message}`
      }`
    )
  }
  rows.push(
    `lines: ${summary.total}; already done ${summary.alreadyDone}${
      summary.alreadyFailed > 0 ? ` (${summary.alreadyFailed} of them failed)` : ""
    }; succeeded ${summary.succeeded}; failed ${summary.failed}${
      summary.failed > 0 ? ` (${kinds(summary.failuresByKind)})` : ""
    }; invalid ${summary.invalid}${
      summary.invalid > 0 ? ` (${kinds(summary.invalidByReason)})` : ""
    }; not done ${summary.notDone}`
  )
  // The ratio only means something when the limits bound the run (a minimum of at least a second).
  const minimum = summary.theoreticalMinimumMs === undefined
    ? ""
    : summary.theoreticalMinimumMs < 1000
    ? " (the limits in force did not bind)"
    : ` (theoretical minimum for the limits in force ${formatDuration(summary.theoreticalMinimumMs)}, ratio ${
      (summary.wallMs / summary.theoreticalMinimumMs).toFixed(2)
    })`
  rows.push(`wall time: ${formatDuration(summary.wallMs)}${minimum}`)
  const waits = summary.waits === 0
    ? "no admission waits"
    : `${summary.waits} admissions waited (${formatDuration(summary.waitMs / summary.waits)} on average)`
  rows.push(
    `binding: ${summary.binding ?? "none"}; ${waits}; 429s ${summary.rateLimited}; retries ${summary.retries}`
  )
  if (summary.tokensReserved > 0 || summary.tokensUsed > 0) {
    const share = summary.tokensReserved > 0
      ? ` (${
        ((summary.tokensUsed / summary.tokensReserved) * 100).toFixed(0)
      }% of the reservations; the rest was refunded at settle)`
      : ""
    rows.push(`tokens reserved ${summary.tokensReserved}, used ${summary.tokensUsed}${share}`)
  }
  if (summary.superseded > 0) {
    rows.push(`resent ${summary.superseded} earlier failures (their old lines moved out of the output)`)
  }
  if (summary.repairedBytes > 0) rows.push(`repaired a torn last output line (${summary.repairedBytes} bytes)`)
  return rows.join("\n")
}
