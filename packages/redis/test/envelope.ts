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
