/**
 * Token-bucket arithmetic shared by the stores. A bucket holds `level` units at time `at`; it refills
 * at `refillPerMs` up to `capacity`. The level may be negative (debt from an under-estimate settled
 * later), which delays later admissions until it has refilled.
 *
 * @internal
 */

/** @internal */
export interface BucketState {
  level: number
  at: number
}

/** Tolerance so that floating-point refill never leaves a bucket a hair short of an exact fit. */
const EPSILON = 1e-9

/** @internal */
export const levelAt = (state: BucketState | undefined, capacity: number, refillPerMs: number, now: number): number => {
  if (state === undefined) return capacity
  const elapsed = now > state.at ? now - state.at : 0
  const level = state.level + elapsed * refillPerMs
  return level > capacity ? capacity : level
}

/** @internal */
export const fits = (level: number, amount: number, capacity: number): boolean =>
  level + EPSILON * (capacity > 1 ? capacity : 1) >= amount

/**
 * Milliseconds until `amount` fits a bucket at `level` (whole milliseconds, rounded up, so that a
 * sleep of that long always finds room when nothing else has been charged).
 *
 * @internal
 */
export const waitFor = (level: number, amount: number, capacity: number, refillPerMs: number): number => {
  if (amount > capacity + EPSILON * capacity) return Number.POSITIVE_INFINITY
  if (fits(level, amount, capacity)) return 0
  if (refillPerMs <= 0) return Number.POSITIVE_INFINITY
  return Math.max(1, Math.ceil((amount - level) / refillPerMs - EPSILON))
}

/**
 * Milliseconds until a debit of `amount` is admitted by a bucket at `level`: a debit above the capacity (a cost
 * above a burst: see `RateLimiter`) needs the bucket full, then takes it below zero, as a server that enforces
 * a burst below its limit does; one within it needs room for itself (`waitFor`).
 *
 * @internal
 */
export const waitForDebit = (level: number, amount: number, capacity: number, refillPerMs: number): number =>
  waitFor(level, amount > capacity ? capacity : amount, capacity, refillPerMs)
