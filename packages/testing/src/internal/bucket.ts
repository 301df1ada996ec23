/**
 * The simulator's own token bucket (independent of `@sluice/core`): capacity = the limit, continuous refill
 * of `capacity / windowMs` per millisecond. The level may go negative when actual usage exceeds the estimate
 * charged at admission (OpenAI then rejects until it refills).
 *
 * @internal
 */
export interface Bucket {
  readonly capacity: number
  /** Refill per millisecond. */
  readonly rate: number
  /** The limit this bucket enforces, as reported in headers and messages. */
  readonly limit: number
  /** Continuous consumption per millisecond by others (background load). */
  drain: number
  level: number
  updatedAt: number
}

/** @internal */
export const make = (limit: number, capacity: number, windowMs: number, now: number): Bucket => ({
  capacity,
  limit,
  rate: limit / windowMs,
  drain: 0,
  level: capacity,
  updatedAt: now
})

/** @internal */
export const refill = (bucket: Bucket, now: number): void => {
  if (now > bucket.updatedAt) {
    bucket.level = Math.min(bucket.capacity, bucket.level + (now - bucket.updatedAt) * (bucket.rate - bucket.drain))
    bucket.updatedAt = now
  }
}

/** Milliseconds until `amount` fits (0 when it fits now). @internal */
export const waitFor = (bucket: Bucket, amount: number): number =>
  bucket.level + EPSILON >= amount ? 0 : (amount - bucket.level) / bucket.rate

/** Tolerance for floating-point refill (a bucket refilled for exactly the right time counts as full). @internal */
export const EPSILON = 1e-6

/** Milliseconds until the bucket is full again (the `x-ratelimit-reset-*` value). @internal */
export const untilFull = (bucket: Bucket): number => untilFullAt(bucket, bucket.level)

/** Milliseconds until the bucket is full again from `level` (what `untilFull` says at that level). @internal */
export const untilFullAt = (bucket: Bucket, level: number): number =>
  Math.max(0, (bucket.capacity - level) / bucket.rate)
