/**
 * Holds with a lease: capacity taken by a live process for as long as it keeps saying so. Each hold is a record
 * (id, amount, expiry) on one or more scopes; a scope's free capacity is its capacity minus the amounts of its
 * unexpired holds, checked and taken atomically. The process that took a hold renews it (on the `Clock`) before
 * it expires and releases it when its work ends; a process that dies (`kill -9`) stops renewing, so its holds
 * expire after the lease and their capacity is free for everyone again.
 *
 * This is what the Batch API offload holds a batch's enqueued tokens with (`BatchOffload` of `@sluice/openai`).
 * It is not a `RateLimiter` dimension: a limiter's bucket refills at its own rate and forgets who took what, so a
 * hold there is either given back by time (wrong: a batch holds its tokens until it ends) or never (a killed
 * process's hold stays forever); a hold needs its own record and expiry.
 *
 * Taking a hold with an id that already holds replaces it (its amount is not counted twice): a resumed job that
 * takes the holds of its batches again, under the same ids, takes over those of the process that died.
 *
 * {@link makeMemory} keeps the holds in the process; `RedisLimiterStore.layerWithHolds` of `@sluice/redis` keeps
 * them on Redis, shared by every process there.
 *
 * @since 0.2.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"

/**
 * A store could not be reached or answered something it should not have.
 *
 * @since 0.2.0
 * @category errors
 */
export class HoldStoreError extends Schema.TaggedError<HoldStoreError>("@sluice/core/HoldStore/HoldStoreError")(
  "HoldStoreError",
  { operation: Schema.String, message: Schema.String, cause: Schema.optional(Schema.Defect) }
) {}

/**
 * A scope a hold is taken on, with the capacity its unexpired holds may add up to.
 *
 * @since 0.2.0
 * @category models
 */
export interface Claim {
  readonly scope: string
  readonly capacity: number
}

/**
 * @since 0.2.0
 * @category models
 */
export interface Service {
  /**
   * Takes `amount` under `id` on every claim's scope, if on each the amount fits beside the unexpired holds of
   * other ids (an earlier hold of the same id is replaced); all or none. The hold expires `leaseMillis` from now
   * unless renewed. `false` when it does not fit.
   */
  readonly take: (
    id: string,
    claims: ReadonlyArray<Claim>,
    amount: number,
    leaseMillis: number
  ) => Effect.Effect<boolean, HoldStoreError>
  /** Moves the hold's expiry to `leaseMillis` from now. `false` when it is gone (expired or released). */
  readonly renew: (
    id: string,
    scopes: ReadonlyArray<string>,
    leaseMillis: number
  ) => Effect.Effect<boolean, HoldStoreError>
  /** Gives the hold back (nothing when it is gone). */
  readonly release: (id: string, scopes: ReadonlyArray<string>) => Effect.Effect<void, HoldStoreError>
  /** The sum of a scope's unexpired holds. */
  readonly held: (scope: string) => Effect.Effect<number, HoldStoreError>
}

/**
 * The store as a service.
 *
 * @since 0.2.0
 * @category tags
 */
export class HoldStore extends Context.Tag("@sluice/core/HoldStore")<HoldStore, Service>() {}

const EPSILON = 1e-9

/**
 * Whether `amount` fits beside `used` in `capacity`, with the limiter's tolerance for rounding (what a store's
 * `take` checks on each scope).
 *
 * @since 0.2.0
 * @category utils
 * @example
 * ```ts
 * import { HoldStore } from "@sluice/core"
 *
 * HoldStore.fits(60_000, 30_000, 90_000) // true
 * HoldStore.fits(60_000, 30_001, 90_000) // false
 * ```
 */
export const fits = (used: number, amount: number, capacity: number): boolean =>
  used + amount <= capacity + EPSILON * Math.max(capacity, 1)

interface Entry {
  readonly amount: number
  readonly expires: number
}

/**
 * Holds kept in this process (a `Ref`, on the `Clock`): shared by whatever uses the same service.
 *
 * @since 0.2.0
 * @category constructors
 * @example
 * ```ts
 * import { HoldStore } from "@sluice/core"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const holds = yield* HoldStore.makeMemory
 *   const claims = [{ scope: "batch:gpt-4o", capacity: 90_000 }]
 *   yield* holds.take("job-1", claims, 60_000, 120_000) // true: held for 2 minutes
 *   yield* holds.take("job-2", claims, 60_000, 120_000) // false: 120,000 > 90,000
 *   yield* holds.renew("job-1", ["batch:gpt-4o"], 120_000) // true: 2 more minutes
 *   yield* holds.release("job-1", ["batch:gpt-4o"])
 *   return yield* holds.held("batch:gpt-4o") // 0
 * })
 * ```
 */
export const makeMemory: Effect.Effect<Service> = Effect.map(
  Ref.make(new Map<string, ReadonlyMap<string, Entry>>()),
  (ref): Service => {
    const live = (entries: ReadonlyMap<string, Entry> | undefined, now: number): Map<string, Entry> => {
      const out = new Map<string, Entry>()
      if (entries !== undefined) { for (const [id, e] of entries) if (e.expires > now) out.set(id, e) }
      return out
    }
    const sum = (entries: ReadonlyMap<string, Entry>, except?: string) => {
      let total = 0
      for (const [id, e] of entries) if (id !== except) total += e.amount
      return total
    }
    const withNow = <A>(f: (now: number) => Effect.Effect<A>) => Effect.flatMap(Clock.currentTimeMillis, f)
    return {
      take: (id, claims, amount, leaseMillis) =>
        withNow((now) =>
          Ref.modify(ref, (scopes) => {
            const next = new Map(scopes)
            for (const claim of claims) {
              const entries = live(next.get(claim.scope), now)
              if (!fits(sum(entries, id), amount, claim.capacity)) return [false, scopes]
              next.set(claim.scope, entries)
            }
            for (const claim of claims) {
              ;(next.get(claim.scope) as Map<string, Entry>).set(id, { amount, expires: now + leaseMillis })
            }
            return [true, next]
          })
        ),
      renew: (id, scopes, leaseMillis) =>
        withNow((now) =>
          Ref.modify(ref, (all) => {
            for (const scope of scopes) {
              const e = all.get(scope)?.get(id)
              if (e === undefined || e.expires <= now) return [false, all]
            }
            const next = new Map(all)
            for (const scope of scopes) {
              const entries = new Map(next.get(scope))
              entries.set(id, { amount: entries.get(id)!.amount, expires: now + leaseMillis })
              next.set(scope, entries)
            }
            return [true, next]
          })
        ),
      release: (id, scopes) =>
        Ref.update(ref, (all) => {
          const next = new Map(all)
          for (const scope of scopes) {
            const entries = new Map(next.get(scope))
            entries.delete(id)
            next.set(scope, entries)
          }
          return next
        }),
      held: (scope) => withNow((now) => Effect.map(Ref.get(ref), (all) => sum(live(all.get(scope), now))))
    }
  }
)

/**
 * {@link makeMemory} as the {@link HoldStore} service.
 *
 * @since 0.2.0
 * @category layers
 * @example
 * ```ts
 * import { HoldStore } from "@sluice/core"
 * import * as Effect from "effect/Effect"
 *
 * const used = Effect.flatMap(HoldStore.HoldStore, (holds) => holds.held("batch:gpt-4o")).pipe(
 *   Effect.provide(HoldStore.layerMemory)
 * )
 * ```
 */
export const layerMemory: Layer.Layer<HoldStore> = Layer.effect(HoldStore, makeMemory)
