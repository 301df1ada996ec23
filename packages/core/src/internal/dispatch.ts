/**
 * Internal: set to `true` on `RateLimiter.make`'s options to make every dispatcher pass a full scan of the
 * queue (the reference the early-stopping pass is tested against).
 *
 * @internal
 */
export const fullPasses: unique symbol = Symbol.for("@sluice/core/RateLimiter/fullPasses")
