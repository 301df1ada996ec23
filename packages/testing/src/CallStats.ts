/**
 * What a client saw of its own calls, counted from the `OpenAi` service's events (`onEvent`): the 429s it got,
 * by kind; the retries it made, by the kind of failure each retried; how many admissions waited for the limiter,
 * and for how long. The simulator's `Simulator.stats` says what the server saw; this says what the client did
 * about it.
 *
 * It reads `@sluice/openai`'s `CallEvent` structurally (no dependency on that package): pass `recorder.onEvent`
 * as the service's (or `wrapOpenAI`'s) `onEvent` option.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * The part of an `OpenAi.CallEvent` the recorder reads.
 *
 * @since 0.1.0
 * @category models
 */
export type Event =
  | {
    readonly _tag: "Admitted"
    readonly model: string
    readonly attempt: number
    readonly waitedMillis: number
    /** On a retry: the kind of the failure it retries. */
    readonly retryOf?: string | undefined
  }
  | { readonly _tag: "Succeeded"; readonly model: string; readonly attempt: number }
  | {
    readonly _tag: "Failed"
    readonly model: string
    readonly attempt: number
    readonly error: {
      readonly _tag: string
      readonly status?: number | undefined
      readonly dimension?: "requests" | "tokens" | "images" | undefined
      readonly window?: "minute" | "day" | undefined
    }
  }

/**
 * What a 429 meant: a per-minute limit (`rpm`, `tpm`, `ipm`), a daily one (`rpd`, `tpd`), a rate limit the
 * answer did not say more of (`rate_limit`), a request larger than a limit (`request_too_large`) or the billing
 * quota (`insufficient_quota`).
 *
 * @since 0.1.0
 * @category models
 */
export type RateLimitKind =
  | "rpm"
  | "tpm"
  | "ipm"
  | "rpd"
  | "tpd"
  | "rate_limit"
  | "request_too_large"
  | "insufficient_quota"

/**
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  /** Calls admitted for their first attempt. */
  readonly calls: number
  /** Attempts admitted (first attempts and retries). */
  readonly attempts: number
  readonly succeeded: number
  /** Failed attempts (retried or not), by the error's kind (`_tag`): `RateLimited`, `Overloaded`, … */
  readonly failed: Readonly<Record<string, number>>
  /** HTTP 429 answers, in all and by what they meant. */
  readonly rateLimited: { readonly total: number; readonly byKind: Readonly<Partial<Record<RateLimitKind, number>>> }
  /** Retries (attempts above the first), in all and by the kind of the failure each retried. */
  readonly retries: { readonly total: number; readonly byKind: Readonly<Record<string, number>> }
  /** Admissions that waited for the limiter (a wait of 0 is not one), their total and longest wait. */
  readonly waited: { readonly admissions: number; readonly totalMillis: number; readonly maxMillis: number }
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Recorder {
  /** Pass as the `onEvent` option of `OpenAi` or `wrapOpenAI`. */
  readonly onEvent: (event: Event) => Effect.Effect<void>
  /** The counts so far. */
  readonly snapshot: Effect.Effect<Snapshot>
}

/**
 * The recorder as a service, for code that builds its `OpenAi` layer from context.
 *
 * @since 0.1.0
 * @category tags
 */
export class CallStats extends Context.Tag("@sluice/testing/CallStats")<CallStats, Recorder>() {}

/** What a 429 meant (`undefined`: not a 429). */
const rateLimitKind = (error: Extract<Event, { _tag: "Failed" }>["error"]): RateLimitKind | undefined => {
  if (error.status !== 429) return undefined
  switch (error._tag) {
    case "QuotaExhausted":
      return "insufficient_quota"
    case "RequestTooLarge":
      return "request_too_large"
    case "RateLimited": {
      if (error.dimension === undefined) return "rate_limit"
      if (error.window === "day") return error.dimension === "tokens" ? "tpd" : "rpd"
      return error.dimension === "tokens" ? "tpm" : error.dimension === "images" ? "ipm" : "rpm"
    }
    default:
      return "rate_limit"
  }
}

const bump = <K extends string>(record: Partial<Record<K, number>>, key: K) => {
  record[key] = (record[key] ?? 0) + 1
}

/**
 * A new recorder, all counts at zero.
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import { LimiterStore } from "@sluice/core"
 * import { OpenAi } from "@sluice/openai"
 * import { CallStats } from "@sluice/testing"
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 * import OpenAI from "openai"
 *
 * declare const client: OpenAI
 * const program = Effect.gen(function*() {
 *   const stats = yield* CallStats.make
 *   const layer = OpenAi.layerClient(client, { tier: 1, onEvent: stats.onEvent }).pipe(
 *     Layer.provide(LimiterStore.layerMemory)
 *   )
 *   // … run the application on `layer`, then:
 *   const { rateLimited, retries, waited } = yield* stats.snapshot
 * })
 * ```
 */
export const make: Effect.Effect<Recorder> = Effect.sync(() => {
  let calls = 0
  let attempts = 0
  let succeeded = 0
  const failed: Record<string, number> = {}
  let limited = 0
  const limitedByKind: Partial<Record<RateLimitKind, number>> = {}
  let retries = 0
  const retriesByKind: Record<string, number> = {}
  let waitedAdmissions = 0
  let waitedTotal = 0
  let waitedMax = 0
  const record = (event: Event) => {
    switch (event._tag) {
      case "Admitted": {
        attempts++
        if (event.attempt <= 1) calls++
        else {
          retries++
          bump(retriesByKind, event.retryOf ?? "unknown")
        }
        if (event.waitedMillis > 0) {
          waitedAdmissions++
          waitedTotal += event.waitedMillis
          if (event.waitedMillis > waitedMax) waitedMax = event.waitedMillis
        }
        return
      }
      case "Succeeded":
        succeeded++
        return
      case "Failed": {
        bump(failed, event.error._tag)
        const kind = rateLimitKind(event.error)
        if (kind !== undefined) {
          limited++
          bump(limitedByKind, kind)
        }
        return
      }
    }
  }
  return {
    onEvent: (event) => Effect.sync(() => record(event)),
    snapshot: Effect.sync(() => ({
      calls,
      attempts,
      succeeded,
      failed: { ...failed },
      rateLimited: { total: limited, byKind: { ...limitedByKind } },
      retries: { total: retries, byKind: { ...retriesByKind } },
      waited: { admissions: waitedAdmissions, totalMillis: waitedTotal, maxMillis: waitedMax }
    }))
  }
})

/**
 * A fresh recorder as the {@link CallStats} service.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<CallStats> = Layer.effect(CallStats, make)

/**
 * The counts of the {@link CallStats} recorder in context.
 *
 * @since 0.1.0
 * @category accessors
 */
export const snapshot: Effect.Effect<Snapshot, never, CallStats> = Effect.flatMap(CallStats, (r) => r.snapshot)
