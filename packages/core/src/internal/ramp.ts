/**
 * Internal: the limiter's ramps (`RateLimiter.Service.ramp`), temporary limits that let a scope's admissions
 * out over a slow start. By `t` ms after a ramp started, admissions charging its dimension on its scope have
 * taken at most `from · 2^(t / doubling)` of it in all; a ramp with an end (`to`) is gone once that much is
 * let out. A waiter held by a ramp waits in the limiter's queue like one denied by a bucket (in order, with its
 * deadline, failing at once when its scope closes).
 *
 * @internal
 */
import type * as Budget from "../Budget.js"
import type * as LimiterStore from "../LimiterStore.js"

interface Ramp {
  readonly startedAt: number
  readonly from: number
  readonly doublingMillis: number
  /** When it has let out `to` (its end), or `Infinity`. */
  readonly endsAt: number
  /** Charged by the admissions since it started. */
  given: number
  /** A call goes while `given` is within the allowance, even one that takes it beyond. */
  readonly overshoot: boolean
}

/** A waiter's denial by a ramp, as a store's (the same queue handling). */
export type Held = LimiterStore.Admission & { readonly _tag: "Denied" }

/** The ramps of one limiter, by `scope\u0000dimension`. */
export class Ramps {
  private readonly ramps = new Map<string, Ramp>()

  /** Starts (or restarts) a ramp at `now`; `undefined` ends it. */
  set(
    scope: string,
    dimension: string,
    ramp:
      | {
        readonly from: number
        readonly doublingMillis: number
        readonly to?: number | undefined
        readonly continued?: boolean | undefined
        readonly overshoot?: boolean | undefined
      }
      | undefined,
    now: number
  ): void {
    const key = `${scope}\u0000${dimension}`
    if (ramp === undefined || !(ramp.from > 0) || !(ramp.doublingMillis > 0)) {
      this.ramps.delete(key)
      return
    }
    const to = ramp.to
    // a ramp that continues the one there was (a new pace): what that one let out counts against `from`
    const given = ramp.continued === true ? (this.live(scope, dimension, now)?.given ?? 0) : 0
    this.ramps.set(key, {
      startedAt: now,
      from: ramp.from,
      doublingMillis: ramp.doublingMillis,
      endsAt: to === undefined || !Number.isFinite(to)
        ? Number.POSITIVE_INFINITY
        : now + ramp.doublingMillis * Math.max(0, Math.log2(to / ramp.from)),
      given,
      overshoot: ramp.overshoot === true
    })
  }

  /** The ramps in force at `now` on `scope` (those that ended are dropped). */
  private live(scope: string, dimension: string, now: number): Ramp | undefined {
    const key = `${scope}\u0000${dimension}`
    const ramp = this.ramps.get(key)
    if (ramp !== undefined && now >= ramp.endsAt) {
      this.ramps.delete(key)
      return undefined
    }
    return ramp
  }

  /** Whether a ramp holds `cost` on `scopes` back at `now`, and for how long (the longest). */
  held(scopes: ReadonlyArray<string>, cost: Budget.Cost, now: number): Held | undefined {
    if (this.ramps.size === 0) return undefined
    let worst: Held | undefined
    for (const scope of scopes) {
      for (const dimension in cost) {
        const amount = cost[dimension]
        if (!(amount > 0)) continue
        const ramp = this.live(scope, dimension, now)
        if (ramp === undefined) continue
        // overshooting, a call goes once what was let out is within the allowance (then at most one call beyond)
        const need = ramp.overshoot ? ramp.given : ramp.given + amount
        if (need <= ramp.from * 2 ** (Math.max(0, now - ramp.startedAt) / ramp.doublingMillis)) continue
        const due = Math.min(ramp.endsAt, ramp.startedAt + ramp.doublingMillis * Math.log2(need / ramp.from))
        const waitMillis = Math.max(1, Math.ceil(due - now))
        if (worst === undefined || waitMillis > worst.waitMillis) {
          worst = { _tag: "Denied", waitMillis, scope, dimension, reason: "limit" }
        }
      }
    }
    return worst
  }

  /**
   * What an admission made at `admittedAt` gave back at its settle or release: an overshooting ramp it was charged to
   * counts what its calls were charged in the end (as the buckets do), so that a call using far less than its estimate
   * does not hold the next ones back while the buckets, refunded, sit full.
   */
  refund(scopes: ReadonlyArray<string>, refunded: Budget.Cost, admittedAt: number): void {
    this.each(scopes, refunded, (ramp, amount) => {
      if (ramp.overshoot && admittedAt >= ramp.startedAt) ramp.given = Math.max(0, ramp.given - amount)
    })
  }

  /** An admission of `cost` on `scopes`: charged to their ramps. */
  charge(scopes: ReadonlyArray<string>, cost: Budget.Cost): void {
    this.each(scopes, cost, (ramp, amount) => {
      ramp.given += amount
    })
  }

  /** Each ramp on `scopes` of a dimension `cost` charges, with that amount. */
  private each(scopes: ReadonlyArray<string>, cost: Budget.Cost, f: (ramp: Ramp, amount: number) => void): void {
    if (this.ramps.size === 0) return
    for (const scope of scopes) {
      for (const dimension in cost) {
        const amount = cost[dimension]
        if (!(amount > 0)) continue
        const ramp = this.ramps.get(`${scope}\u0000${dimension}`)
        if (ramp !== undefined) f(ramp, amount)
      }
    }
  }
}
