/**
 * The state behind the {@link RateLimiter}: token buckets per scope, dimension and window, and gates
 * ("not before" times) per scope and dimension. The store is deliberately small and atomic: every
 * operation is one step (one Lua script on Redis), so the limiter's fairness and waiting logic is the
 * same whichever store is behind it.
 *
 * Stores keep no configuration: every call carries the bucket specs it touches (capacity and refill
 * rate), so a store can serve any number of limiters and processes.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Bucket from "./internal/bucket.js"

/**
 * A token bucket as the store sees it. `id` is stable for a scope, dimension and window.
 *
 * @since 0.1.0
 * @category models
 */
export interface BucketSpec {
  readonly id: string
  readonly scope: string
  readonly dimension: string
  readonly windowMillis: number
  /** The most the bucket holds (the limit's burst, else its amount). */
  readonly capacity: number
  /** Units per millisecond (`amount / window`). */
  readonly refillPerMs: number
}

/**
 * An amount charged to (positive) or refunded to (negative) one bucket.
 *
 * @since 0.1.0
 * @category models
 */
export interface Debit {
  readonly bucket: BucketSpec
  readonly amount: number
}

/**
 * A gate key: a scope and a dimension, or `"*"` for every dimension of the scope.
 *
 * @since 0.1.0
 * @category models
 */
export interface GateKey {
  readonly scope: string
  readonly dimension: string
}

/**
 * The answer to an admission attempt. `Denied` says how long until the attempt could succeed if
 * nothing else were charged in between, and which scope and dimension bind.
 *
 * @since 0.1.0
 * @category models
 */
export type Admission =
  | { readonly _tag: "Admitted" }
  | {
    readonly _tag: "Denied"
    readonly waitMillis: number
    readonly scope: string
    readonly dimension: string
    readonly reason: "limit" | "gate"
  }

/**
 * Levels of some buckets and the remaining time on some gates, read at one instant.
 *
 * @since 0.1.0
 * @category models
 */
export interface Levels {
  /** The store's clock, in epoch milliseconds. */
  readonly now: number
  /** One level per bucket asked for, in the same order (may be negative: debt). */
  readonly levels: ReadonlyArray<number>
  /** One remaining gate time per gate asked for, in milliseconds (0 when open). */
  readonly gates: ReadonlyArray<number>
}

/**
 * A store failed (unreachable, timed out, returned garbage).
 *
 * @since 0.1.0
 * @category errors
 */
export class LimiterStoreError
  extends Schema.TaggedError<LimiterStoreError>("@sluice/core/LimiterStoreError")("LimiterStoreError", {
    operation: Schema.String,
    message: Schema.String,
    cause: Schema.optional(Schema.Defect)
  })
{}

/**
 * The store interface.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Admits all debits at once, or none; checks the gates first. Each debit is checked on its own against its
   * bucket's level (several debits on one bucket each need room for themselves, then all are charged).
   * Denied, `waitMillis` is the longest of the waits (a gate's remaining time; for a debit, the time until it
   * fits), and names the gate or bucket it belongs to.
   *
   * A debit of at most its bucket's capacity fits when the level holds it. A debit **above** the capacity
   * (a cost above a burst, which the limiter lets through within the limit's amount) is sent only to a store
   * that sets {@link Service.debitAboveCapacity}: it fits once the bucket is full, then takes it below zero
   * (debt). A store without that flag (the 0.1.0 contract) never receives one (the limiter charges such a
   * cost in parts of at most the capacity); it may answer `Infinity` for a debit it could never admit, which
   * the limiter refuses at once with `CostExceedsCapacity` rather than queue the call for ever.
   */
  readonly tryAcquire: (
    debits: ReadonlyArray<Debit>,
    gates: ReadonlyArray<GateKey>
  ) => Effect.Effect<Admission, LimiterStoreError>
  /**
   * Applies corrections: a positive amount charges (the level may go below zero: debt), a negative one
   * refunds (the level never rises above capacity).
   */
  readonly adjust: (debits: ReadonlyArray<Debit>) => Effect.Effect<void, LimiterStoreError>
  /** Closes a gate for `millis` from the store's now; a later "not before" wins over an earlier one. */
  readonly block: (gate: GateKey, millis: number) => Effect.Effect<void, LimiterStoreError>
  /** Lowers a bucket to what the server reports remaining (never raises it). */
  readonly observe: (bucket: BucketSpec, remaining: number) => Effect.Effect<void, LimiterStoreError>
  /**
   * Sets a bucket to a level, up or down (capped at its capacity): the limiter adopts a server's report
   * with it (see `RateLimiter.Observation.remaining`). Only a store whose buckets one limiter alone
   * charges offers it — the memory store; a store shared by many processes (Redis) leaves it out, as a
   * process cannot know what the others have on their way to the server.
   */
  readonly track?: ((bucket: BucketSpec, level: number) => Effect.Effect<void, LimiterStoreError>) | undefined
  /** Reads levels and gates without changing anything. */
  readonly levels: (
    buckets: ReadonlyArray<BucketSpec>,
    gates: ReadonlyArray<GateKey>
  ) => Effect.Effect<Levels, LimiterStoreError>
  /**
   * `true` when `tryAcquire` admits a debit above its bucket's capacity once the bucket is full, taking it
   * into debt (the memory store and `@sluice/redis` from 0.2.0 do). The limiter then charges a cost above a
   * burst (within the limit's amount) as one debit, whatever its ratio to the burst. Without it (a store
   * written to the 0.1.0 contract, which answers `Infinity` for such a debit), the limiter charges that cost
   * in parts of at most the capacity, each of which fits a full bucket, and a cost above 64 bursts fails with
   * `CostExceedsCapacity`, as in 0.1.0. A store that wraps another should pass the flag on (`...inner`).
   *
   * @since 0.2.0
   * @example
   * ```ts
   * import { LimiterStore } from "@sluice/core"
   * import * as Effect from "effect/Effect"
   *
   * // true: the memory store admits a debit above its bucket's capacity once the bucket is full
   * const takesLargeDebits = Effect.map(LimiterStore.makeMemory, (store) => store.debitAboveCapacity === true)
   * ```
   */
  readonly debitAboveCapacity?: boolean | undefined
  /**
   * A store that answers in memory, synchronously, may also offer `tryAcquire` as a plain function of the
   * time (`now`, from the limiter's `Clock`). The limiter then admits in one step: no asynchronous gap in
   * which a later arrival could overtake the call or an interruption could lose the admission, and none of
   * the bookkeeping an asynchronous store needs. Stores over a network (Redis) leave it out.
   */
  readonly unsafeTryAcquire?:
    | ((debits: ReadonlyArray<Debit>, gates: ReadonlyArray<GateKey>, now: number) => Admission)
    | undefined
}

/**
 * @since 0.1.0
 * @category tags
 */
export class LimiterStore extends Context.Tag("@sluice/core/LimiterStore")<LimiterStore, Service>() {}

/**
 * The key of a gate.
 *
 * @since 0.1.0
 * @category utils
 */
export const gateId = (gate: GateKey): string => `${gate.scope}\u0000${gate.dimension}`

/**
 * An in-memory store for one process. Time comes from `Clock`, so it runs under `TestClock`.
 * Buckets that have refilled to capacity and expired gates are swept once the maps grow, so idle
 * scopes (tenants, say) do not accumulate. A clock set back (the live `Clock` is the wall clock) does not stall a
 * bucket: one written later than now refills from now, at the level it was written with.
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import { LimiterStore } from "@sluice/core"
 * import * as Effect from "effect/Effect"
 *
 * const store = Effect.runSync(LimiterStore.makeMemory)
 * ```
 */
export const makeMemory: Effect.Effect<Service> = Effect.sync(() => {
  const buckets = new Map<string, Bucket.BucketState>()
  const gates = new Map<string, number>()
  const specs = new Map<string, BucketSpec>()
  let sweepAt = 4096

  const sweep = (now: number) => {
    if (buckets.size + gates.size < sweepAt) return
    for (const [id, state] of buckets) {
      const spec = specs.get(id)
      if (spec === undefined || Bucket.levelAt(state, spec.capacity, spec.refillPerMs, now) >= spec.capacity) {
        buckets.delete(id)
        specs.delete(id)
      }
    }
    for (const [id, until] of gates) if (until <= now) gates.delete(id)
    sweepAt = Math.max(4096, 2 * (buckets.size + gates.size))
  }

  /**
   * A bucket's state, its time moved back to `now` when it was written later than that: the wall clock
   * (`Clock.currentTimeMillis`) was set back (an NTP step, a machine resumed). The level stands as it was written and
   * refills from now; left in the future, the bucket would not refill until the clock caught up with it, and its
   * waiters would wait for the step on top of their refill.
   */
  const stateOf = (id: string, now: number): Bucket.BucketState | undefined => {
    const state = buckets.get(id)
    if (state === undefined || state.at <= now) return state
    const rebased = { level: state.level, at: now }
    buckets.set(id, rebased)
    return rebased
  }

  const charge = (spec: BucketSpec, amount: number, now: number) => {
    const level = Bucket.levelAt(stateOf(spec.id, now), spec.capacity, spec.refillPerMs, now) - amount
    buckets.set(spec.id, { level: level > spec.capacity ? spec.capacity : level, at: now })
    specs.set(spec.id, spec)
  }

  const tryAcquire = (debits: ReadonlyArray<Debit>, gateKeys: ReadonlyArray<GateKey>, now: number): Admission => {
    let worst: Admission = { _tag: "Admitted" }
    let worstWait = 0
    if (gates.size > 0) {
      for (const gate of gateKeys) {
        const until = gates.get(gateId(gate))
        if (until !== undefined && until > now && until - now > worstWait) {
          worstWait = until - now
          worst = {
            _tag: "Denied",
            waitMillis: worstWait,
            scope: gate.scope,
            dimension: gate.dimension,
            reason: "gate"
          }
        }
      }
    }
    for (const debit of debits) {
      const { bucket } = debit
      const level = Bucket.levelAt(stateOf(bucket.id, now), bucket.capacity, bucket.refillPerMs, now)
      const wait = Bucket.waitForDebit(level, debit.amount, bucket.capacity, bucket.refillPerMs)
      if (wait > worstWait) {
        worstWait = wait
        worst = { _tag: "Denied", waitMillis: wait, scope: bucket.scope, dimension: bucket.dimension, reason: "limit" }
      }
    }
    if (worst._tag === "Admitted") {
      for (const debit of debits) charge(debit.bucket, debit.amount, now)
      sweep(now)
    }
    return worst
  }

  return {
    debitAboveCapacity: true,
    tryAcquire: (debits, gateKeys) => Effect.map(Clock.currentTimeMillis, (now) => tryAcquire(debits, gateKeys, now)),
    unsafeTryAcquire: tryAcquire,
    adjust: (debits) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        for (const debit of debits) charge(debit.bucket, debit.amount, now)
      }),
    block: (gate, millis) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const id = gateId(gate)
        const until = now + Math.max(0, millis)
        const current = gates.get(id)
        if (current === undefined || current < until) gates.set(id, until)
      }),
    observe: (bucket, remaining) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const level = Bucket.levelAt(stateOf(bucket.id, now), bucket.capacity, bucket.refillPerMs, now)
        if (remaining < level) {
          buckets.set(bucket.id, { level: remaining, at: now })
          specs.set(bucket.id, bucket)
        }
      }),
    track: (bucket, level) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        buckets.set(bucket.id, { level: Math.min(bucket.capacity, level), at: now })
        specs.set(bucket.id, bucket)
      }),
    levels: (bucketSpecs, gateKeys) =>
      Effect.map(Clock.currentTimeMillis, (now) => ({
        now,
        levels: bucketSpecs.map((spec) => Bucket.levelAt(stateOf(spec.id, now), spec.capacity, spec.refillPerMs, now)),
        gates: gateKeys.map((gate) => {
          const until = gates.get(gateId(gate))
          return until !== undefined && until > now ? until - now : 0
        })
      }))
  }
})

/**
 * The in-memory store as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<LimiterStore> = Layer.effect(LimiterStore, makeMemory)
