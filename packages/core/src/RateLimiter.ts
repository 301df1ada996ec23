/**
 * The layered, multi-dimensional rate limiter.
 *
 * A call is charged against an ordered list of scopes (`org:acme`, `org:acme/project:search`,
 * `pool:gpt-4o`, `tenant:42`) across every dimension its cost names, atomically: all scopes and
 * dimensions at once, or none. When there is no room it waits, fairly: priority lanes, FIFO within a
 * lane for every bucket a waiter needs, so a large request is never starved by a stream of small ones.
 * Admission returns a {@link Permit}; `settle(actual)` trues the charge up or down once usage is known
 * and releasing it unused refunds it.
 *
 * Gates ("not before" times set from `retry-after` or a 429's "try again in") pause every waiter on a
 * scope; `sync` folds what the server reports (`x-ratelimit-remaining-*`) back into the buckets.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Budget from "./Budget.js"
import * as internal from "./internal/rateLimiter.js"
import * as LimiterStore from "./LimiterStore.js"

// -----------------------------------------------------------------------------
// errors
// -----------------------------------------------------------------------------

/**
 * The cost can never fit: it is larger than a limit's capacity. Raised at once, never after waiting (unless
 * a limit learned while the call waited makes it never fit, or the store answers that it can never fit it: an
 * infinite wait on a limit).
 *
 * @since 0.1.0
 * @category errors
 */
export class CostExceedsCapacity
  extends Schema.TaggedError<CostExceedsCapacity>("@sluice/core/CostExceedsCapacity")("CostExceedsCapacity", {
    scope: Schema.String,
    dimension: Schema.String,
    limit: Schema.String,
    capacity: Schema.Number,
    cost: Schema.Number
  })
{
  override get message(): string {
    return `a cost of ${this.cost} ${this.dimension} can never fit scope ${this.scope}: its limit ${this.limit} holds at most ${this.capacity}`
  }
}

/**
 * Admission would take longer than the caller's deadline or `maxWait` allows. `estimatedWaitMillis`
 * is the limiter's estimate of the wait (from the binding bucket or gate).
 *
 * @since 0.1.0
 * @category errors
 */
export class DeadlineExceeded
  extends Schema.TaggedError<DeadlineExceeded>("@sluice/core/DeadlineExceeded")("DeadlineExceeded", {
    scope: Schema.String,
    dimension: Schema.String,
    reason: Schema.Literal("limit", "gate", "queue"),
    estimatedWaitMillis: Schema.Number,
    allowedMillis: Schema.Number
  })
{
  /**
   * @since 0.1.0
   */
  get estimatedWait(): Duration.Duration {
    return Duration.millis(this.estimatedWaitMillis)
  }
  override get message(): string {
    const wait = Number.isFinite(this.estimatedWaitMillis)
      ? Duration.format(Duration.millis(this.estimatedWaitMillis))
      : "forever"
    return `admission on ${this.scope} (${this.dimension}, ${this.reason}) needs about ${wait}, more than the ${
      Duration.format(Duration.millis(Math.max(0, this.allowedMillis)))
    } allowed`
  }
}

/**
 * The scope was closed (for example after `insufficient_quota`): nothing is admitted on it until it
 * is reopened, and every waiter on it fails at once.
 *
 * @since 0.1.0
 * @category errors
 */
export class ScopeClosed extends Schema.TaggedError<ScopeClosed>("@sluice/core/ScopeClosed")("ScopeClosed", {
  scope: Schema.String,
  reason: Schema.String,
  cause: Schema.optional(Schema.Unknown)
}) {
  override get message(): string {
    return `scope ${this.scope} is closed: ${this.reason}`
  }
}

/**
 * The errors of an admission.
 *
 * @since 0.1.0
 * @category errors
 */
export type AcquireError = CostExceedsCapacity | DeadlineExceeded | ScopeClosed | LimiterStore.LimiterStoreError

// -----------------------------------------------------------------------------
// models
// -----------------------------------------------------------------------------

/**
 * A priority lane. Interactive waiters are admitted before background ones on the buckets they share.
 *
 * @since 0.1.0
 * @category models
 */
export type Lane = "interactive" | "background"

/**
 * What admission returns: the charge held against the scopes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Permit {
  readonly scopes: ReadonlyArray<string>
  /** What is charged now: the estimate until settled, the actual after. */
  readonly charged: Budget.Cost
  readonly state: "held" | "settled" | "released"
  /** When it was admitted, in the limiter's clock (epoch ms). */
  readonly admittedAt: number
  /**
   * Trues the charge to actual usage: refunds an over-estimate, charges an under-estimate (the
   * buckets may go into debt, which delays later admissions). Dimensions `actual` leaves out keep
   * their charge. On a bucket where a server's report that counted this call was adopted (see
   * `Observation.remaining`) the refund is left out: the report gave it back already. On a bucket whose
   * server reports its level in its answers (`sync` with `since`) and has not shown that it trues calls up to
   * their usage, in a store this limiter alone charges (whose level a report can raise), a settle to a
   * positive usage gives nothing back either where the reports are adopted both ways (such a server may keep what
   * it charged; its reports bring back what it gave); where they only lower (the report's limit is not the
   * budget's, a burst), the settle raises the level only as far as the latest report leaves room (replayed to now
   * in a bucket of the server's limit, the calls since at their charge). A settle to nothing (a refused or failed
   * call) refunds the whole charge. Idempotent: only the first settle or release counts.
   */
  readonly settle: (actual: Budget.Cost) => Effect.Effect<void, LimiterStore.LimiterStoreError>
  /** Refunds the whole charge (the call was not made), save on buckets an adopted report counted it on. Idempotent. */
  readonly release: Effect.Effect<void, LimiterStore.LimiterStoreError>
  /**
   * Records that the request this permit admitted has left now. A server's report is then aged by send
   * order (`Observation.since`): the calls sent after this one, and those admitted but not sent yet, are
   * the ones the server had not seen when it answered. Without it a permit counts as sent when it was
   * admitted. Only the first call counts; nothing once settled or released.
   *
   * @since 0.1.0
   */
  readonly markSent: Effect.Effect<void>
}

/**
 * One bucket's state in a {@link Snapshot} or {@link Estimate}.
 *
 * @since 0.1.0
 * @category models
 */
export interface LevelInfo {
  readonly scope: string
  readonly dimension: string
  readonly limit: Budget.Limit
  readonly learned: boolean
  /** Units available now (negative: debt). */
  readonly level: number
  /** Milliseconds until the bucket is full again. */
  readonly fullInMillis: number
}

/**
 * Every bucket and gate the limiter knows of.
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  readonly now: number
  readonly levels: ReadonlyArray<LevelInfo>
  readonly gates: ReadonlyArray<
    { readonly scope: string; readonly dimension: string; readonly remainingMillis: number }
  >
  readonly closed: ReadonlyArray<{ readonly scope: string; readonly reason: string }>
  readonly waiting: { readonly interactive: number; readonly background: number }
}

/**
 * What `peek` answers for a cost: the estimated wait and the bucket or gate that binds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Estimate {
  /** 0 when it would be admitted now; `Infinity` when it never fits or the scope is closed. */
  readonly waitMillis: number
  readonly binding: Option.Option<{ readonly scope: string; readonly dimension: string; readonly reason: string }>
  readonly levels: ReadonlyArray<LevelInfo>
  /** Waiters already queued on the same buckets (they go first). */
  readonly queued: number
}

/**
 * What a server reported for one scope and dimension (from `x-ratelimit-*` headers).
 *
 * @since 0.1.0
 * @category models
 */
export interface Observation {
  readonly dimension: Budget.Dimension
  /**
   * The limit the server enforces over `window`; learned when the scope has no limit of this dimension over
   * that window (configured or learned): a per-day limit is learned beside per-minute ones.
   */
  readonly limit?: number | undefined
  /**
   * What the server says is left. Without `since`, or when the bucket is tighter than the server's limit,
   * the local level is lowered to it, never raised. With `since`, on a bucket whose limit is the server's
   * own (`limit` equal to the bucket's amount, same window, no burst), in a store that this limiter alone charges
   * (the memory store), unless `adopt` is `false` or the answered call was part of a burst (more than 64
   * calls sent in the 250 ms before it), the level follows the replayed report both ways: the server has
   * already trued up the calls that reached it earlier (sent at least 50 ms before the answered one), so
   * the over-estimates those calls still hold here come back now, and are not refunded a second time when
   * they settle (an under-estimate is still charged then). The calls sent in those 50 ms count as not seen
   * by the server there, so that bound is adopted only where it is not below both the local level and the
   * report replayed by send order; otherwise (a burst sent in one moment, each report counting the calls
   * sent before it) adopting it would count those calls twice, and the report is folded in by send order
   * instead: the level is lowered to it, never raised, and the refunds of the calls it counted raise the
   * level only as far as it leaves room.
   *
   * Replayed, a call answered with less than it was charged counts at its charge until a report shows that
   * the server trues calls up to their usage: a report of an answered call above `limit − (charge + usage) / 2`
   * (a server that keeps its charge has at most `limit − charge` left after the call, however full its
   * bucket was; halfway, as the server's estimate may differ from this client's). From then on, on that
   * bucket, answered calls count at their usage. A server that keeps what it charged (counting `max_tokens`
   * whatever was used) is taken for one that trues up only if this client's estimate of a call exceeds the
   * server's by more than half of what the call left unused.
   */
  readonly remaining?: number | undefined
  /** The window the limit applies to (default one minute, as OpenAI's headers are). */
  readonly window?: Duration.DurationInput | undefined
  /**
   * The capacity the server really enforces on this limit, when smaller than its amount: a burst learned
   * from what the server did (a limit enforced over a shorter period than announced). A learned limit takes
   * it, and keeps it when later reports give none. A configured limit keeps its amount, but a burst smaller
   * than its capacity becomes its bucket's capacity (the server proved it: a configured figure cannot make
   * it admit more); it shows as learned in `snapshot`, and a later burst only narrows it. A cost above a
   * burst, learned or configured (any cost within the amount: however narrow a learned burst, it never
   * forbids a call the server would accept), waits, as at such a server, for the bucket to be full and takes
   * it into debt (over a store without `LimiterStore.Service.debitAboveCapacity`, a cost of at most 64 bursts). A learned bucket whose capacity grows (a higher limit, a wider burst) gains what it grew by.
   *
   * @since 0.1.0
   */
  readonly burst?: number | undefined
  /**
   * The permit of the request whose response carried this report. The server counted what it had
   * received when it answered, not the requests this limiter admitted after this one and that were still
   * on their way to it: the report is replayed from `sentAt` over the calls sent since (each arriving when
   * sent, the bucket refilling up to its capacity in between), then the calls not sent yet come off, so
   * that lowering the level to it does not forget them. Without it `remaining` is taken as current. A
   * report older than two minutes is ignored.
   *
   * @since 0.1.0
   */
  readonly since?: Permit | undefined
  /**
   * When that request left (the limiter's clock, epoch ms; default the permit's admission): the server's
   * figure is taken as of then, and the bucket's refill since is added back.
   *
   * @since 0.1.0
   */
  readonly sentAt?: number | undefined
  /**
   * The latest time (the limiter's clock, epoch ms) the server can have made its report: for an HTTP answer, when
   * it came back less the server's own time on it (OpenAI's `openai-processing-ms`). The bucket's refill is added
   * back from then rather than from `sentAt`, which the request left before it reached the server: replayed from
   * `sentAt`, a report leaves the level ahead of the server's by the refill of the request's way there, and with a
   * budget equal to the server's limit a later request that is quicker on its way is refused. Ignored when before
   * `sentAt`. With `since`, it also gives back the refill held back by `Options.coldStartLag` (all but that of the
   * time up to it), and an observation of it alone (no `limit`, no `remaining`: an answer without the server's
   * figures) is read for that.
   *
   * @since 0.2.0
   */
  readonly reportedBy?: number | undefined
  /**
   * `false`: only ever lower the level, even where the report could be adopted both ways (see
   * `remaining`) — for a caller that keeps reservations charged on purpose (reserve-only). Default `true`.
   *
   * @since 0.1.0
   */
  readonly adopt?: boolean | undefined
  /**
   * `true`: `remaining` is what the bucket that refused the `since` call held when it refused it (a 429's "Used" and
   * "try again in"), counting the calls sent before that one as the server had charged them by then, and the refused
   * one not at all. Folded in as a report that only lowers (replayed from the refused call: the calls sent after it
   * are charged on top), the refunds at settle or release of the calls sent up to it raise the level only as far as
   * the figure leaves room above it: counted twice, a herd of large calls in flight when a 429 lowered the level came
   * back as room the server did not have (400 calls against 5 s buckets, the largest first: 91 x 429). Against a
   * server that trues its calls up only when they end, what it gives back for the calls in flight at the refusal
   * comes back with the refill instead (slower, never a 429). Where the report is adopted both ways, or the call was
   * admitted before the bucket was first charged, this changes nothing.
   *
   * @since 0.2.0
   */
  readonly refusal?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace RateLimiter {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Options {
    /** The configured budgets. A scope ending in `*` is a prefix pattern (`tenant:*`). */
    readonly budgets: ReadonlyArray<Budget.Budget>
    /**
     * Random extra delay, as a fraction of the wait, before a waiter retries a denied admission. Useful
     * when several processes share a store (Redis), so they do not all retry at once. Default 0.
     */
    readonly wakeJitter?: number | undefined
    /**
     * Which scopes' buckets the level gauges (`sluice_limiter_level`, `sluice.limiter.limit`,
     * `sluice.limiter.utilization`) report. Default `Metrics.sharedScope`: every scope but a tenant's, whose
     * series would grow with the number of tenants; `() => true` reports them all.
     */
    readonly metricScopes?: ((scope: string) => boolean) | undefined
    /**
     * How much longer the first calls after a bucket was full may take to reach the server than the calls after
     * them: a cold start (connections opened, an HTTP client and an SDK loading on first use; OpenAI's layers set
     * 200 ms). A server's full bucket refills only once a call reaches it, the limiter's from the admission: with
     * a budget equal to the server's limit, that refill is what the server is short of when the limiter lets the
     * last of it out. So an admission that draws a bucket from full after a cold spell (no permit charged it for a
     * minute, or its window if longer) holds this much of its refill back, until an answer of a call admitted since
     * that says when the server made it (`Observation.reportedBy`, with or without figures) gives back all but the
     * refill up to then; without such an answer it is kept (it costs that much time where the bucket binds before
     * the first answer).
     * It is not given back where the bucket can have been full again since (which loses it at the server too), and
     * a report that lowers the level without giving it back forgets it. Only where one limiter alone charges the store
     * (the memory store: see `LimiterStore.Service.track`; a shared store's bucket may not be full), and on buckets
     * where it is at most 5% of the capacity (a short burst waits for room near full, where the hold is lost).
     * Default 0: nothing held back.
     *
     * @since 0.2.0
     * @example
     * ```ts
     * import { Budget, RateLimiter } from "@sluice/core"
     *
     * const limiter = RateLimiter.layer({
     *   budgets: [Budget.make("org:acme/pool:gpt-4o", [Budget.Limit.perMinute("tokens", 30_000)])],
     *   coldStartLag: "200 millis"
     * })
     * ```
     */
    readonly coldStartLag?: Duration.DurationInput | undefined
  }

  /**
   * A slow start (see {@link Service.ramp}).
   *
   * @since 0.2.0
   * @category models
   */
  export interface Ramp {
    /** What is let out at once; a `from` that is not a positive number ends the ramp, as `undefined` does. */
    readonly from: number
    /** How long the amount let out in all takes to double; a zero (or negative) duration ends the ramp. */
    readonly doubling: Duration.DurationInput
    /** The ramp ends once it has let out this much in all; without it, when ended by `ramp(…, undefined)`. */
    readonly to?: number | undefined
    /**
     * The ramp continues the one there was on the scope and dimension, at a new pace: `from` is the amount let out
     * in all by now (where the old one's curve is), and what the old one let out counts against it, so nothing more
     * goes at once than the old one still allowed. Default: a fresh start (`from` at once).
     */
    readonly continued?: boolean | undefined
    /**
     * A call goes while what the ramp let out is within its allowance, even one that takes it beyond (at most one
     * call over): a call larger than the allowance does not wait for the ramp to grow to it; and what a call gives
     * back at its settle or release (its estimate less its usage) comes off what the ramp let out, even where a bucket
     * holds that refund back until a report shows the server gave it (the bucket then binds, not the ramp). So a ramp whose
     * allowance grows at least as fast as the buckets refill never holds a call while they sit full (their refill
     * lost), whatever the calls' sizes and usage. Default: a call goes only once the allowance covers it, counted at
     * its admission's cost.
     *
     * @since 0.2.0
     */
    readonly overshoot?: boolean | undefined
  }

  /**
   * @since 0.1.0
   * @category models
   */
  export interface AcquireOptions {
    /** The lane; default `interactive`. */
    readonly priority?: Lane | undefined
    /** Give up when admission cannot happen by this time (a `Date`, or epoch milliseconds). */
    readonly deadline?: Date | number | undefined
    /** Give up when admission cannot happen within this long. */
    readonly maxWait?: Duration.DurationInput | undefined
    /**
     * Wait in the lane as if this call had arrived then (a `Date`, or epoch milliseconds): behind the waiters that
     * arrived before it, ahead of those that arrived after (equal times keep the order of arrival). For a retry of
     * a refused call, its first attempt's arrival: it keeps its place instead of queueing behind every call that
     * arrived meanwhile. A time in the future (or none) is now; with nobody waiting, an earlier time changes
     * nothing. The wait (its metrics, `maxWait`) still counts from this acquire. It is a place, not a priority: a
     * caller that gives an arrival earlier than its real one goes ahead of the callers in its lane (so pass only the
     * first attempt's, as the openai service does; lanes are the priorities).
     *
     * @since 0.2.0
     */
    readonly arrivedAt?: Date | number | undefined
  }
}

/**
 * The limiter's interface.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Charges `cost` against every scope at once, waiting for room. The caller owns the permit: settle
   * or release it (or use {@link Service.withPermit} / {@link Service.acquireScoped}).
   */
  readonly acquire: (
    scopes: ReadonlyArray<string>,
    cost: Budget.Cost,
    options?: RateLimiter.AcquireOptions
  ) => Effect.Effect<Permit, AcquireError>
  /** Like `acquire`, and releases the permit when the scope closes unless it was settled. */
  readonly acquireScoped: (
    scopes: ReadonlyArray<string>,
    cost: Budget.Cost,
    options?: RateLimiter.AcquireOptions
  ) => Effect.Effect<Permit, AcquireError, Scope.Scope>
  /** Runs `use` holding a permit; an unsettled permit is released when `use` ends, however it ends. */
  readonly withPermit: <A, E, R>(
    scopes: ReadonlyArray<string>,
    cost: Budget.Cost,
    use: (permit: Permit) => Effect.Effect<A, E, R>,
    options?: RateLimiter.AcquireOptions
  ) => Effect.Effect<A, E | AcquireError, R>
  /** Admits now or not at all (never waits, never jumps a queue). */
  readonly tryAcquire: (
    scopes: ReadonlyArray<string>,
    cost: Budget.Cost,
    options?: RateLimiter.AcquireOptions
  ) => Effect.Effect<Option.Option<Permit>, CostExceedsCapacity | ScopeClosed | LimiterStore.LimiterStoreError>
  /**
   * Closes a gate: admissions charging `dimension` (or any dimension, with `"*"`) on `scope` wait until
   * `until` (a `Date`, or a duration from now).
   */
  readonly block: (
    scope: string,
    dimension: Budget.Dimension | "*",
    until: Date | Duration.DurationInput
  ) => Effect.Effect<void, LimiterStore.LimiterStoreError>
  /**
   * Folds a server's report into the buckets: lowers remaining (or, on a bucket that is the server's own limit
   * in a store this limiter alone charges, adopts it both ways — see `Observation.remaining`), learns an
   * unconfigured limit.
   */
  readonly sync: (scope: string, observation: Observation) => Effect.Effect<void, LimiterStore.LimiterStoreError>
  /** Closes a scope: every waiter on it fails with `ScopeClosed`, and so does every admission until reopened. */
  readonly close: (scope: string, reason: string, cause?: unknown) => Effect.Effect<void>
  /** Reopens a closed scope. */
  readonly reopen: (scope: string) => Effect.Effect<void>
  /**
   * Starts a slow start on `scope` and `dimension` (a temporary limit beside its buckets): from now, the
   * admissions charging `dimension` on `scope` take at most `from` of it at once (with `overshoot`, one call beyond
   * what is within it), the amount let out in all
   * doubling every `doubling`, until it reaches `to` (then the ramp is gone); `undefined` ends the ramp. A call
   * it holds back waits in the queue like one a bucket holds (in order, within its deadline, failing at once
   * when its scope closes). A new ramp replaces the one there was.
   *
   * @since 0.2.0
   * @example
   * ```ts
   * import { Budget, RateLimiter } from "@sluice/core"
   * import * as Effect from "effect/Effect"
   *
   * const program = Effect.gen(function*() {
   *   const limiter = yield* RateLimiter.RateLimiter
   *   // 10 requests at once, 20 in all after 1 s, 40 after 2 s, ... up to 640 (then unramped)
   *   yield* limiter.ramp("org:acme", "requests", { from: 10, doubling: "1 second", to: 640 })
   *   yield* limiter.acquire(["org:acme"], { requests: 1 })
   * }).pipe(
   *   Effect.provide(RateLimiter.layerMemory({
   *     budgets: [Budget.make("org:acme", [Budget.Limit.perMinute("requests", 500)])]
   *   }))
   * )
   * ```
   */
  readonly ramp: (
    scope: string,
    dimension: Budget.Dimension,
    ramp: RateLimiter.Ramp | undefined
  ) => Effect.Effect<void>
  /** The estimated wait for a cost, without charging. */
  readonly peek: (
    scopes: ReadonlyArray<string>,
    cost: Budget.Cost
  ) => Effect.Effect<Estimate, LimiterStore.LimiterStoreError>
  /** Every bucket, gate and closed scope known, and how many wait; also updates the level gauges. */
  readonly snapshot: Effect.Effect<Snapshot, LimiterStore.LimiterStoreError>
  /** The limits that apply to a scope (configured, matched by pattern, or learned). */
  readonly limitsOf: (scope: string) => ReadonlyArray<Budget.Limit>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class RateLimiter extends Context.Tag("@sluice/core/RateLimiter")<RateLimiter, Service>() {}

/**
 * Builds a limiter over the `LimiterStore` in context. Its dispatcher (the fiber that admits waiters in
 * order) lives as long as the scope.
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter.make({
 *     budgets: [Budget.make("org:acme", [Budget.Limit.perMinute("requests", 500)])]
 *   })
 *   const permit = yield* limiter.acquire(["org:acme"], { requests: 1 })
 *   yield* permit.settle({ requests: 1 })
 * }).pipe(Effect.scoped, Effect.provide(LimiterStore.layerMemory))
 * ```
 */
export const make: (
  options: RateLimiter.Options
) => Effect.Effect<Service, never, LimiterStore.LimiterStore | Scope.Scope> = internal.make

/**
 * Keeps the limiter's gauges current: a snapshot every `every` (on the `Clock`) for as long as the scope is
 * open, so the levels, limits, utilisation and queue depths an exporter reads are at most that old. A snapshot
 * that fails (a store that cannot answer) is skipped; the next one tries again.
 *
 * @since 0.2.0
 * @category metrics
 * @example
 * ```ts
 * import { Budget, RateLimiter } from "@sluice/core"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter.RateLimiter
 *   yield* RateLimiter.sampleMetrics(limiter, "1 second") // until the scope closes
 *   // ... the calls
 * }).pipe(
 *   Effect.scoped,
 *   Effect.provide(RateLimiter.layerMemory({
 *     budgets: [Budget.make("org:acme", [Budget.Limit.perMinute("requests", 500)])]
 *   }))
 * )
 * ```
 */
export const sampleMetrics = (
  limiter: Service,
  every: Duration.DurationInput
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.asVoid(
    Effect.forkScoped(
      Effect.ignore(limiter.snapshot).pipe(Effect.zipRight(Effect.sleep(every)), Effect.forever, Effect.interruptible)
    )
  )

/**
 * The limiter as a layer over the `LimiterStore` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: RateLimiter.Options): Layer.Layer<RateLimiter, never, LimiterStore.LimiterStore> =>
  Layer.scoped(RateLimiter, make(options))

/**
 * The limiter with an in-memory store: budgets for one process.
 *
 * @since 0.1.0
 * @category layers
 * @example
 * ```ts
 * import { Budget, RateLimiter } from "@sluice/core"
 * import * as Effect from "effect/Effect"
 *
 * const Limits = RateLimiter.layerMemory({
 *   budgets: [
 *     Budget.make("org:acme", [Budget.Limit.perMinute("requests", 500), Budget.Limit.perMinute("tokens", 30_000)]),
 *     Budget.make("tenant:*", [Budget.Limit.perMinute("tokens", 10_000)])
 *   ]
 * })
 *
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter.RateLimiter
 *   yield* limiter.withPermit(["org:acme", "tenant:42"], { requests: 1, tokens: 1_480 }, (permit) =>
 *     permit.settle({ tokens: 620 }))
 * }).pipe(Effect.provide(Limits))
 * ```
 */
export const layerMemory = (options: RateLimiter.Options): Layer.Layer<RateLimiter> =>
  layer(options).pipe(Layer.provide(LimiterStore.layerMemory))

/**
 * The limiter's budgets read from configuration: `SLUICE_BUDGETS` (by default) holds the budgets as
 * JSON, decoded with {@link Budget.Budgets}; a bad value fails with the path of every problem.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<string> = Config.string("SLUICE_BUDGETS")
): Layer.Layer<RateLimiter, ConfigError.ConfigError, LimiterStore.LimiterStore> =>
  Layer.scoped(
    RateLimiter,
    Effect.gen(function*() {
      const raw = yield* config
      const budgets = yield* Schema.decodeUnknown(Schema.parseJson(Budget.Budgets), { errors: "all" })(raw).pipe(
        Effect.mapError((error) =>
          ConfigError.InvalidData([], Budget.issuesOf(error).map((i) => `${i.path}: ${i.message}`).join("; "))
        )
      )
      return yield* make({ budgets })
    })
  )
