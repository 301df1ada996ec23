/**
 * Memory stores for the limiter's tests: one answering asynchronously (as Redis does), one counting the calls made
 * to it (a call is a round trip for a remote store).
 */
import { LimiterStore } from "@sluice/core"
import type { Duration } from "effect"
import { Effect, Layer } from "effect"

/**
 * The memory store answering admissions `millis` of virtual time after it is asked: no `unsafeTryAcquire`, so the
 * limiter takes its asynchronous paths (the fast path's place in the queue, the dispatcher's effect per waiter).
 * `adjust: true`: its adjustments (settles, refunds) answer as late, as Redis's do.
 */
export const slowStore = (
  millis: Duration.DurationInput,
  options?: { readonly adjust?: boolean }
): Layer.Layer<LimiterStore.LimiterStore> =>
  Layer.effect(
    LimiterStore.LimiterStore,
    Effect.map(LimiterStore.LimiterStore, (inner): LimiterStore.Service => ({
      ...inner,
      tryAcquire: (debits, gates) => Effect.zipRight(Effect.sleep(millis), inner.tryAcquire(debits, gates)),
      unsafeTryAcquire: undefined,
      ...(options?.adjust === true
        ? { adjust: (debits) => Effect.zipRight(Effect.sleep(millis), inner.adjust(debits)) }
        : {})
    }))
  ).pipe(Layer.provide(LimiterStore.layerMemory))

/** The memory store, counting in `calls` each `adjust` and `levels` made to it. */
export const countingStore = (
  calls: { adjust: number; levels: number }
): Layer.Layer<LimiterStore.LimiterStore> =>
  Layer.effect(
    LimiterStore.LimiterStore,
    Effect.map(LimiterStore.LimiterStore, (inner): LimiterStore.Service => ({
      ...inner,
      adjust: (debits) => Effect.suspend(() => (calls.adjust++, inner.adjust(debits))),
      levels: (specs, gates) => Effect.suspend(() => (calls.levels++, inner.levels(specs, gates)))
    }))
  ).pipe(Layer.provide(LimiterStore.layerMemory))

/**
 * The memory store, except that it says a debit of `scope`'s `dimension` can never fit (a `limit` denial with an
 * infinite wait), as a store whose buckets are smaller than the limiter's may (shared by processes with other limits).
 */
export const neverStore = (
  scope: string,
  dimension: string,
  synchronous = true
): Layer.Layer<LimiterStore.LimiterStore> =>
  Layer.effect(
    LimiterStore.LimiterStore,
    Effect.map(LimiterStore.LimiterStore, (inner): LimiterStore.Service => {
      const never: LimiterStore.Admission = {
        _tag: "Denied",
        waitMillis: Number.POSITIVE_INFINITY,
        scope,
        dimension,
        reason: "limit"
      }
      return {
        ...inner,
        tryAcquire: () => Effect.succeed(never),
        unsafeTryAcquire: synchronous ? () => never : undefined
      }
    })
  ).pipe(Layer.provide(LimiterStore.layerMemory))
