/**
 * Checks an admission log against the token-bucket envelope: for any two admissions i <= j, the cost
 * admitted in [t_i, t_j] is at most `capacity + rate * (t_j - t_i)`. Reports the worst overshoot (<= 0
 * when the limit held) and the utilisation: admitted / envelope over the whole log.
 */
export interface EnvelopeReport {
  readonly admissions: number
  readonly admitted: number
  readonly spanMillis: number
  /** The largest `sum - (capacity + rate * span)` over all windows (<= 0 means never exceeded). */
  readonly maxOvershoot: number
  /** `admitted / (capacity + rate * span)`. */
  readonly utilisation: number
}

export const envelope = (
  log: ReadonlyArray<readonly [number, number]>,
  capacity: number,
  ratePerMs: number
): EnvelopeReport => {
  const sorted = [...log].sort((a, b) => a[0] - b[0])
  const n = sorted.length
  if (n === 0) return { admissions: 0, admitted: 0, spanMillis: 0, maxOvershoot: 0, utilisation: 0 }
  const prefix = new Float64Array(n + 1)
  for (let i = 0; i < n; i++) prefix[i + 1] = prefix[i]! + sorted[i]![1]
  // max over i <= j of (S[j+1] - S[i]) - rate * (t_j - t_i) - capacity
  //   = max_j (S[j+1] - rate * t_j) + max_{i <= j} (rate * t_i - S[i]) - capacity
  let best = Number.NEGATIVE_INFINITY
  let bestLeft = Number.NEGATIVE_INFINITY
  for (let j = 0; j < n; j++) {
    const left = ratePerMs * sorted[j]![0] - prefix[j]!
    if (left > bestLeft) bestLeft = left
    const value = prefix[j + 1]! - ratePerMs * sorted[j]![0] + bestLeft - capacity
    if (value > best) best = value
  }
  const span = sorted[n - 1]![0] - sorted[0]![0]
  return {
    admissions: n,
    admitted: prefix[n]!,
    spanMillis: span,
    maxOvershoot: best,
    utilisation: prefix[n]! / (capacity + ratePerMs * span)
  }
}

/**
 * Utilisation over a window `(from, to]` of a saturated run: the share of what the bucket made
 * available in it that was admitted, `admitted / (level(from) + rate * (to - from))`, where the level
 * is reconstructed from the log itself (the bucket is full at the log's first admission: a fresh or
 * restarted Redis has no key, and a missing key is a full bucket; every charge is in the log, nothing
 * is refunded). What it misses: the refill that overflowed a full bucket (`wasted`) and what was left
 * at `to` (`endLevel`, under one cost when waiters are queued). `minLevel` is the lowest level right
 * after an admission: >= 0 means every admission fit the bucket as the log replays it.
 */
export interface WindowReport {
  readonly from: number
  readonly to: number
  readonly admissions: number
  readonly admitted: number
  readonly available: number
  readonly utilisation: number
  readonly wasted: number
  readonly endLevel: number
  readonly minLevel: number
}

export const windowUtilisation = (
  log: ReadonlyArray<readonly [number, number]>,
  capacity: number,
  ratePerMs: number,
  from: number,
  to: number
): WindowReport => {
  const sorted = [...log].sort((a, b) => a[0] - b[0])
  let level = capacity
  let at = sorted[0]?.[0] ?? from
  let minLevel = Number.POSITIVE_INFINITY
  let wasted = 0
  let levelFrom: number | undefined
  let admitted = 0
  let admissions = 0
  const advance = (t: number, inWindow: boolean) => {
    if (t <= at) return
    const next = level + (t - at) * ratePerMs
    if (next > capacity) {
      if (inWindow) wasted += next - capacity
      level = capacity
    } else {
      level = next
    }
    at = t
  }
  for (const [t, amount] of sorted) {
    if (t > to) break
    if (t > from && levelFrom === undefined) {
      advance(from, false)
      levelFrom = level
    }
    advance(t, levelFrom !== undefined)
    level -= amount
    if (level < minLevel) minLevel = level
    if (levelFrom !== undefined) {
      admitted += amount
      admissions++
    }
  }
  if (levelFrom === undefined) {
    advance(from, false)
    levelFrom = level
  }
  advance(to, true)
  const available = levelFrom + ratePerMs * (to - from)
  return {
    from,
    to,
    admissions,
    admitted,
    available,
    utilisation: admitted / available,
    wasted,
    endLevel: level,
    minLevel
  }
}

/**
 * The log replayed through the bucket (full at the log's first admission): each admission's time and
 * the level right after it, in time order.
 */
export const replay = (
  log: ReadonlyArray<readonly [number, number]>,
  capacity: number,
  ratePerMs: number
): Array<readonly [number, number]> => {
  const sorted = [...log].sort((a, b) => a[0] - b[0])
  let level = capacity
  let at = sorted[0]?.[0] ?? 0
  return sorted.map(([t, amount]) => {
    level = Math.min(capacity, level + Math.max(0, t - at) * ratePerMs) - amount
    at = t
    return [t, level] as const
  })
}
