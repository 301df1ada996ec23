/**
 * Internal: the limiter's mechanism behind `RateLimiter.make` — budgets resolved per scope (configured and
 * learned), the wait queue in two lanes and its dispatcher, permits (settle, refund, mark sent) and report
 * adoption (`sync`). The public module (`../RateLimiter.ts`) holds the models, errors and documentation.
 *
 * @internal
 */
import * as Arr from "effect/Array"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import type * as Scope from "effect/Scope"
import * as Budget from "../Budget.js"
import * as LimiterStore from "../LimiterStore.js"
import * as Metrics from "../Metrics.js"
import type { AcquireError, Lane, LevelInfo, Permit, RateLimiter, Service } from "../RateLimiter.js"
import { CostExceedsCapacity, DeadlineExceeded, ScopeClosed } from "../RateLimiter.js"
import * as Bucket from "./bucket.js"
import { fullPasses } from "./dispatch.js"
import { Ledger, LEDGER_RETENTION_MILLIS, refundOn, REPORT_SKEW_MILLIS, type SendPoint } from "./ledger.js"
import * as InternalMetrics from "./metrics.js"
import { Ramps } from "./ramp.js"
import * as Slot from "./slot.js"

/**
 * A generator of effects run as far as it goes without one (`yield effect` hands back the effect's success): its
 * result at once when it yields none, else an effect that runs the rest. The dispatcher's pass needs an effect only
 * for an asynchronous store, a jitter or a refund; an `Effect.gen` per pass (its generator wrapped in effects, an
 * effect and a wrapper per `yield*`) was most of what a pass allocated.
 */
const runSteps = (body: () => Generator<Effect.Effect<unknown>, number, unknown>): number | Effect.Effect<number> => {
  const steps = body()
  const first = steps.next()
  return first.done ? first.value : resumeSteps(steps, first.value)
}
const resumeSteps = (
  steps: Generator<Effect.Effect<unknown>, number, unknown>,
  effect: Effect.Effect<unknown>
): Effect.Effect<number> =>
  Effect.flatMap(effect, (value) => {
    const step = steps.next(value)
    return step.done ? Effect.succeed(step.value) : resumeSteps(steps, step.value)
  })

const laneIndex = (lane: Lane | undefined): number => lane === "background" ? 1 : 0
const laneNames: ReadonlyArray<Lane> = ["interactive", "background"]

interface Resolved {
  readonly limit: Budget.Limit
  readonly spec: LimiterStore.BucketSpec
  readonly learned: boolean
}

const PermitSend = Symbol.for("@sluice/core/RateLimiter/PermitSend")
/** A debit's own amount (a permit's charge moved into the send order as it is). */
const amountOf = (debit: LimiterStore.Debit): number => debit.amount

/**
 * A report is adopted both ways only when at most this many calls left in the `BURST_WINDOW_MILLIS`
 * before and after the answered one: in a burst, requests wait for connections and reach the server in an
 * order nobody can tell, so a report then only lowers the level (counting the calls sent with the answered
 * one as seen: see `sync`).
 */
const BURST_CALLS = 64
/** The shortest timed wait of the dispatcher, in ms (see `dispatcher`). */
const MIN_WAIT_MILLIS = 0.001
const BURST_WINDOW_MILLIS = 250
/**
 * For a store without `debitAboveCapacity` (the 0.1.0 contract): a cost above a burst is charged in at most
 * this many parts, each within the bucket's capacity (so each fits a full bucket); above, it fails.
 */
const MAX_DEBT_PARTS = 64

interface Prepared {
  readonly scopes: ReadonlyArray<string>
  readonly cost: Budget.Cost
  readonly debits: ReadonlyArray<LimiterStore.Debit>
  readonly gates: ReadonlyArray<LimiterStore.GateKey>
  /**
   * The (scope, dimension) keys it needs, for queue fairness: the gates' ids, each once. A waiter denied on a scope
   * and dimension blocks the later waiters that need it (every waiter needs its scopes' `*` key).
   */
  readonly keys: ReadonlyArray<string>
  readonly resolved: ReadonlyArray<Resolved>
}

interface Waiter {
  /** The buckets it asks for, as the limits were when it was prepared (see `version`). */
  prepared: Prepared
  keys: ReadonlyArray<string>
  /** The limits' version `prepared` was made for: a waiter queued before a limit changed is prepared again. */
  version: number
  readonly lane: number
  /** When this acquire started: its wait (the metrics, the deadline's estimate) is measured from here. */
  readonly enqueuedAt: number
  /**
   * Its place in its lane (epoch ms): when it arrived, or the earlier arrival it was given
   * (`AcquireOptions.arrivedAt`, a retry keeping its first attempt's place). A lane is in this order.
   */
  order: number
  readonly deadline: number
  /** Completed when it is admitted or refused (made when it starts to wait: a fast-path placeholder has none). */
  deferred: Slot.Slot<Permit, AcquireError> | undefined
  done: boolean
  cancelled: boolean
  permit: Permit | undefined
  /** The last estimated wait (milliseconds), for the deadline error. */
  lastEstimate: number
  /**
   * The store is answering this waiter's first attempt (the fast path). It holds its place at the head
   * of the queue meanwhile, so a later arrival cannot overtake it while an asynchronous store answers.
   */
  inFlight: boolean
  /** The dispatcher pass that counted it as visited (see `pass`). */
  seen: number
}

const specOf = (scope: string, limit: Budget.Limit): LimiterStore.BucketSpec => {
  const windowMillis = limit.windowMillis
  return {
    id: `${scope}\u0000${limit.dimension}\u0000${windowMillis}`,
    scope,
    dimension: limit.dimension,
    windowMillis,
    capacity: limit.capacity,
    refillPerMs: limit.amount / windowMillis
  }
}

/**
 * How long a bucket goes without a charge before the next draw from full counts as a cold start (`coldHolds`): a
 * minute, at least its window. An HTTP client closes an idle connection within seconds (undici: 4 s by default).
 */
const COLD_IDLE_MILLIS = 60_000

/** The largest share of a bucket's capacity a cold start's hold may be (`coldHolds`). */
const COLD_HOLD_SHARE = 0.05

/** The limiter: see `RateLimiter.make`. */
export const make = (
  options: RateLimiter.Options
): Effect.Effect<Service, never, LimiterStore.LimiterStore | Scope.Scope> =>
  Effect.gen(function*() {
    const store = yield* LimiterStore.LimiterStore
    const jitter = Math.max(0, options.wakeJitter ?? 0)
    const coldStartLag = options.coldStartLag === undefined
      ? 0
      : Duration.toMillis(Duration.decode(options.coldStartLag))
    // Stryker disable next-line all: whether a pass may stop early changes only how much it visits (see `covered`)
    const alwaysFull = (options as { readonly [fullPasses]?: boolean })[fullPasses] === true

    // --- budgets -----------------------------------------------------------
    const exact = new Map<string, Budget.Budget>()
    const patterns: Array<Budget.Budget> = []
    for (const budget of options.budgets) {
      if (budget.scope.endsWith("*")) patterns.push(budget)
      else exact.set(budget.scope, budget)
    }
    patterns.sort((a, b) => b.scope.length - a.scope.length)
    const learned = new Map<string, Array<Budget.Limit>>()
    /**
     * Bursts learned on configured limits (per scope, dimension and window): the configured figure stands, but a
     * server that proved a smaller bucket (a 429 while the configured one had room) is honoured.
     */
    const configuredBursts = new Map<string, number>()
    const burstKey = (scope: string, limit: { readonly dimension: string; readonly windowMillis: number }) =>
      `${scope}\u0000${limit.dimension}\u0000${limit.windowMillis}`
    const resolvedCache = new Map<string, ReadonlyArray<Resolved>>()

    const configuredLimits = (scope: string): ReadonlyArray<Budget.Limit> => {
      const budget = exact.get(scope) ?? patterns.find((pattern) => Budget.matches(pattern.scope, scope))
      return budget?.limits ?? []
    }

    const resolve = (scope: string): ReadonlyArray<Resolved> => {
      let resolved = resolvedCache.get(scope)
      if (resolved === undefined) {
        const list: Array<Resolved> = configuredLimits(scope).map((configured) => {
          const burst = configuredBursts.get(burstKey(scope, configured))
          const limit = burst === undefined || burst >= configured.capacity
            ? configured
            : Budget.Limit.of(configured.dimension, configured.amount, configured.window, burst)
          return { limit, spec: specOf(scope, limit), learned: limit !== configured }
        })
        for (const limit of learned.get(scope) ?? []) list.push({ limit, spec: specOf(scope, limit), learned: true })
        resolved = list
        resolvedCache.set(scope, resolved)
      }
      return resolved
    }

    const gateKeyCache = new Map<string, LimiterStore.GateKey>()
    const gateKey = (scope: string, dimension: string): LimiterStore.GateKey => {
      const id = `${scope}\u0000${dimension}`
      let key = gateKeyCache.get(id)
      if (key === undefined) {
        key = { scope, dimension }
        gateKeyCache.set(id, key)
      }
      return key
    }

    /** The gates a cost's dimensions need (its scopes' `*`, then each dimension's) and their keys, each once. */
    interface Shape {
      readonly gates: ReadonlyArray<LimiterStore.GateKey>
      readonly keys: ReadonlyArray<string>
    }
    interface ScopePlan {
      readonly resolved: ReadonlyArray<Resolved>
      readonly star: ReadonlyArray<LimiterStore.GateKey>
      /** Per list of the dimensions a cost charges (in its order), the gates and keys: made once, shared. */
      readonly shapes: Map<string, Shape>
    }
    const planCache = new Map<string, ScopePlan>()
    /** Temporary limits: slow starts (`ramp`), checked before the store. */
    const ramps = new Ramps()
    /** Bumped whenever a limit is learned or changes (sync): queued waiters are prepared again. */
    let limitsVersion = 0
    /** Admissions so far, and sends so far (permits marked sent, or settled unmarked). */
    let admissions = 0
    let sends = 0
    /** Per bucket, what this limiter sent lately, so a server's report can be aged (`Observation.since`). */
    const ledgers = new Map<string, Ledger>()
    const ledgerOf = (id: string, admission: number): Ledger => {
      let ledger = ledgers.get(id)
      if (ledger === undefined) {
        ledger = new Ledger(admission)
        ledgers.set(id, ledger)
      }
      return ledger
    }
    /**
     * What an admission at `now` holds back of the refill of the buckets it would draw from full (`Ledger.coldHold`),
     * charged with it: those of a store this limiter alone charges (`track`) that no permit charged for a whole
     * window, and at least COLD_IDLE_MILLIS (full again since, and idle long enough for the way to the server to
     * be cold again). The server's bucket, full too, refills only once a call reaches it, and a cold start's first
     * calls are the slowest on their way (seen from the packed packages: 1 x 429 in 91, "Used 195682, Requested
     * 4625. Please try again in 92ms", 1.8 s into a run whose first calls reached the server ~90 ms after their
     * admission). Not every draw from full: the calls after the first are no slower on their way than the later
     * ones, and a bucket of a one-second burst is full again before every call of a steady stream (holding back at
     * each, 14 such calls ended 2.2 s late in the pacing property, #109). The first answer of a call admitted since
     * that says when the server made it gives it back (`sync`).
     */
    const coldHolds = (prepared: Prepared, now: number): Array<LimiterStore.Debit> | undefined => {
      if (coldStartLag <= 0 || store.track === undefined) return undefined
      let holds: Array<LimiterStore.Debit> | undefined
      for (const debit of prepared.debits) {
        const spec = debit.bucket
        if (!(debit.amount > 0 && spec.refillPerMs > 0)) continue
        // a bucket of a short burst (the hold above 5% of it) is left alone: waiting for room for a call of nearly
        // its size, it comes back near full, where the server's, which has the refill the hold kept back, is capped,
        // and the hold is lost there too; given back later, it was counted twice (the pacing property's #150, a 1 s
        // burst of 1.1 requests: a 429)
        const amount = spec.refillPerMs * coldStartLag
        if (amount > COLD_HOLD_SHARE * spec.capacity) continue
        const ledger = ledgers.get(spec.id)
        if (
          ledger !== undefined &&
          now - ledger.chargedAt < Math.max(COLD_IDLE_MILLIS, spec.capacity / spec.refillPerMs)
        ) continue
        if (holds !== undefined && holds.some((hold) => hold.bucket.id === spec.id)) continue
        ;(holds ??= []).push({ bucket: spec, amount })
      }
      return holds
    }
    /** The debits an admission asks the store for: its own, and the refill it holds back (`coldHolds`). */
    const withHolds = (
      prepared: Prepared,
      holds: ReadonlyArray<LimiterStore.Debit> | undefined
    ): ReadonlyArray<LimiterStore.Debit> => holds === undefined ? prepared.debits : prepared.debits.concat(holds)
    /** Notes the refill held back by the permit just admitted (`coldHolds`). */
    const noteHolds = (holds: ReadonlyArray<LimiterStore.Debit> | undefined, permit: Permit): Permit => {
      if (holds === undefined) return permit
      const admission = (permit as LimiterPermit)[PermitSend].admission
      for (const hold of holds) {
        const ledger = ledgerOf(hold.bucket.id, admission)
        ledger.coldHold = hold.amount
        ledger.coldFrom = admission
        ledger.coldAt = permit.admittedAt
        ledger.coldCapacity = hold.bucket.capacity
        ledger.coldCharged = ledger.charged
        ledger.coldSlack = 0
      }
      return permit
    }
    /**
     * Counts a charge (or a correction, negative) on a bucket (`Ledger.charged`), after noting how far the refill
     * since its cold start's hold had run ahead of the net charge since, just before it (`Ledger.coldSlack`).
     */
    const noteCharge = (ledger: Ledger, spec: LimiterStore.BucketSpec, amount: number, at: number): void => {
      if (coldStartLag <= 0) return
      if (ledger.coldHold > 0) {
        const slack = (at - ledger.coldAt) * spec.refillPerMs - (ledger.charged - ledger.coldCharged)
        if (slack > ledger.coldSlack) ledger.coldSlack = slack
      }
      ledger.charged += amount
    }
    const planOf = (scopes: ReadonlyArray<string>): ScopePlan => {
      const id = scopes.length === 1 ? scopes[0] : scopes.join("\u0001")
      let plan = planCache.get(id)
      if (plan === undefined) {
        plan = {
          resolved: scopes.flatMap(resolve),
          star: scopes.map((scope) => gateKey(scope, "*")),
          shapes: new Map()
        }
        planCache.set(id, plan)
      }
      return plan
    }

    /**
     * Whether a cost above a bucket's capacity can be admitted (waiting for a full bucket, into debt): only
     * above a burst, within the limit's amount; with a store without `debitAboveCapacity`, in at most
     * `MAX_DEBT_PARTS` parts.
     */
    const aboveBurstFits = (resolved: Resolved, amount: number): boolean =>
      resolved.limit.burst !== undefined && amount <= resolved.limit.amount &&
      (store.debitAboveCapacity === true || Math.ceil(amount / resolved.spec.capacity) <= MAX_DEBT_PARTS)

    const prepare = (
      scopes: ReadonlyArray<string>,
      cost: Budget.Cost
    ): Prepared | CostExceedsCapacity => {
      const plan = planOf(scopes)
      const debits: Array<LimiterStore.Debit> = []
      // the dimensions charged, in the cost's order (one dimension: its name, no string built); a name that could
      // make two lists look alike (empty, or with the separator) is not cached
      let signature = ""
      let cached = true
      for (const dimension in cost) {
        if (!(cost[dimension] > 0)) continue
        if (dimension === "" || dimension.includes("\u0001")) cached = false
        signature = signature === "" ? dimension : `${signature}\u0001${dimension}`
      }
      let shape = cached ? plan.shapes.get(signature) : undefined
      if (shape === undefined) {
        const gates: Array<LimiterStore.GateKey> = plan.star.slice()
        for (const dimension in cost) {
          if (!(cost[dimension] > 0)) continue
          for (const scope of scopes) gates.push(gateKey(scope, dimension))
        }
        shape = { gates, keys: Array.from(new Set(gates.map(LimiterStore.gateId))) }
        if (cached) plan.shapes.set(signature, shape)
      }
      for (const resolved of plan.resolved) {
        const raw = cost[resolved.limit.dimension]
        if (raw === undefined || !(raw > 0)) continue
        if (raw > resolved.spec.capacity) {
          // A burst is a server's (a limit enforced over a shorter period than announced, learned or given):
          // like it, a cost above the burst but within the amount waits for the bucket to be full, then takes
          // it into debt. A store that admits a debit above its capacity so takes it as one debit: however
          // narrow a learned burst, it never forbids a call the server would accept, and only a cost above the
          // amount fails (the server's "Request too large"). Another store (the 0.1.0 contract) takes it in
          // parts of at most the capacity, each of which fits a full bucket.
          if (!aboveBurstFits(resolved, raw)) {
            return new CostExceedsCapacity({
              scope: resolved.spec.scope,
              dimension: resolved.limit.dimension,
              limit: resolved.limit.label,
              capacity: resolved.spec.capacity,
              cost: raw
            })
          }
          if (!store.debitAboveCapacity) {
            const parts = Math.ceil(raw / resolved.spec.capacity)
            debits.push({ bucket: resolved.spec, amount: resolved.spec.capacity })
            const rest = (raw - resolved.spec.capacity) / (parts - 1)
            for (let part = 1; part < parts; part++) debits.push({ bucket: resolved.spec, amount: rest })
            continue
          }
        }
        debits.push({ bucket: resolved.spec, amount: raw })
      }
      return { scopes, cost, debits, gates: shape.gates, keys: shape.keys, resolved: plan.resolved }
    }

    // --- closed scopes ---------------------------------------------------------
    const closed = new Map<string, ScopeClosed>()
    const closedFor = (scopes: ReadonlyArray<string>): ScopeClosed | undefined => {
      if (closed.size === 0) return undefined
      for (const scope of scopes) {
        const error = closed.get(scope)
        if (error !== undefined) return error
      }
      return undefined
    }

    // --- the queue and the dispatcher ----------------------------------------
    const lanes: Array<Array<Waiter>> = [[], []]
    let queued = 0
    /*
     * For the pass's early stop: per (scope, dimension) key, how many queued waiters need it; how many queued
     * waiters have a finite deadline; finished waiters still in the lanes. `epoch` counts what can change a
     * waiter that is merely blocked (a limit learned or changed, a scope closed, a waiter prepared for older
     * limits): `verified` is the epoch the last full pass started at.
     */
    const keyCounts = new Map<string, number>()
    let finite = 0
    let finished = 0
    let epoch = 0
    let verified = -1
    let passes = 0
    let passing = false
    /** Where the pass under way is (its lane, the index of the waiter it visits): `push` keeps it on that waiter. */
    let cursorLane = -1
    let cursor = -1
    /** This pass's counts over the waiters it visited that are still queued. */
    const seenKeys = new Map<string, number>()
    let seenWaiters = 0
    let seenFinite = 0
    const countKeys = (keys: ReadonlyArray<string>, by: number) => {
      for (const key of keys) {
        const count = (keyCounts.get(key) ?? 0) + by
        if (count === 0) keyCounts.delete(key)
        else keyCounts.set(key, count)
      }
    }
    const unsee = (waiter: Waiter) => {
      // Stryker disable next-line LogicalOperator: unseeing an unseen waiter only makes the early stop rarer
      if (!passing || waiter.seen !== passes) return
      waiter.seen = 0
      seenWaiters--
      if (waiter.deadline !== Number.POSITIVE_INFINITY) seenFinite--
      for (const key of waiter.keys) seenKeys.set(key, seenKeys.get(key)! - 1)
    }
    /** Takes a waiter out of the queue's counts (it stays in its lane, marked done, until `compact`). */
    const finish = (waiter: Waiter) => {
      unsee(waiter)
      waiter.done = true
      queued--
      finished++
      countKeys(waiter.keys, -1)
      if (waiter.deadline !== Number.POSITIVE_INFINITY) finite--
    }
    let wakeup = Slot.make<void>()
    const signal = () => {
      if (queued > 0) Slot.done(wakeup, Exit.void)
    }
    /**
     * Drops finished waiters from the lanes (once a few have gathered), in place and in order. They are mostly
     * at a lane's front (FIFO): that run goes in one `splice`, and the rest of the lane is walked only while
     * finished waiters are left to find (a long queue behind admitted ones is not copied at every compaction).
     * Only at the end of a pass, or when nothing is queued: no pass is walking the lanes then.
     */
    const compact = () => {
      // Equivalent mutants (mutation/sample.mjs, eighth session): when to compact, the front's splice and the walk's
      // shortcut change only memory and pass time. Passes, peek, snapshot and `leave` skip finished waiters, and a
      // lane is emptied whenever nothing is queued.
      // Stryker disable next-line ConditionalExpression,EqualityOperator,LogicalOperator: when to compact (memory and
      // pass time only, see above)
      if (finished === 0 || (queued > 0 && finished < 64)) return
      let left = finished
      for (const lane of lanes) {
        // Stryker disable next-line BlockStatement: the walk below drops the same finished waiters (a shortcut)
        if (queued === 0) {
          lane.length = 0
          continue
        }
        let front = 0
        while (front < lane.length && lane[front].done) front++
        // Stryker disable next-line ConditionalExpression,EqualityOperator: a fast path (finished waiters left, above)
        if (front > 0) lane.splice(0, front)
        left -= front
        // Stryker disable next-line ConditionalExpression,EqualityOperator: a shortcut (the walk checks `left > 0`)
        if (left <= 0) continue
        let kept = 0
        let read = 0
        for (; read < lane.length && left > 0; read++) {
          const waiter = lane[read]
          if (waiter.done) left--
          else lane[kept++] = waiter
        }
        if (kept < read) {
          lane.copyWithin(kept, read)
          lane.length -= read - kept
        }
      }
      finished = 0
    }

    /**
     * A bucket as its limit is now. A permit's corrections (its settle, its release) go to its buckets as they are
     * when they are made, not as they were at its admission: a limit that changed since (learned, grown, a burst
     * found) has the same bucket with another capacity and refill, and the store takes the spec it is given as
     * the bucket's (a refund capped at the old capacity would empty a bucket that grew: a learned 393,356 TPM
     * fell to the 20,000 it started at on the first answer of a call admitted before it grew).
     */
    const currentSpec = (bucket: LimiterStore.BucketSpec): LimiterStore.BucketSpec => {
      for (const resolved of resolve(bucket.scope)) if (resolved.spec.id === bucket.id) return resolved.spec
      return bucket
    }

    /** A permit's place in the send order (`SendPoint`), written as it is marked sent, settled or absorbed. */
    interface Point {
      admission: number
      sequence: number
      entry: number | undefined
      absorbed: Array<string> | undefined
      counted: Array<string> | undefined
      unseen: Map<string, number> | undefined
      readonly debits: ReadonlyArray<LimiterStore.Debit>
      readonly owner: object
    }

    /**
     * Whether a settle's refund on this bucket waits for the server's reports (see `LimiterPermit.#refund`), in a store
     * whose level a report can raise (`track`: this limiter alone charges it) while the server is not known to true
     * calls up to their usage: `keep` where its reports are adopted both ways (`Ledger.reported`: they bring back
     * what it gave back), `cap` where they only lower (`Ledger.lowered`: the refund raises the level only as far as
     * the latest report leaves room, as they never bring back what a settle held back). In a shared store the refund
     * is the only way back up.
     */
    const holdOf = (bucket: string): "keep" | "cap" | undefined => {
      if (store.track === undefined) return undefined
      const ledger = ledgers.get(bucket)
      if (ledger === undefined || ledger.truesUp) return undefined
      return ledger.reported ? "keep" : ledger.lowered !== undefined ? "cap" : undefined
    }

    /**
     * A permit: its state in fields, its operations on the prototype (`settle` is an own arrow, so that it can be
     * passed around unbound). One object and its send point per admission: a permit made of closures (five, an
     * object literal's two getters, two effects made in advance) cost a simulated day ~23 MB and ~0.13 s.
     */
    class LimiterPermit implements Permit {
      readonly [PermitSend]: Point
      readonly scopes: ReadonlyArray<string>
      readonly admittedAt: number
      readonly #prepared: Prepared
      /** The limits this permit was admitted under (see `currentSpec`). */
      readonly #version: number
      #state: Permit["state"] = "held"
      #charged: Budget.Cost

      constructor(prepared: Prepared, admittedAt: number) {
        const admission = ++admissions
        this.#prepared = prepared
        this.#version = limitsVersion
        this.#charged = prepared.cost
        this.scopes = prepared.scopes
        this.admittedAt = admittedAt
        ramps.charge(prepared.scopes, prepared.cost)
        for (const debit of prepared.debits) {
          const ledger = ledgerOf(debit.bucket.id, admission)
          ledger.unsent += debit.amount
          ledger.chargedAt = admittedAt
          noteCharge(ledger, debit.bucket, debit.amount, admittedAt)
        }
        this[PermitSend] = {
          admission,
          sequence: sends,
          entry: undefined,
          absorbed: undefined,
          counted: undefined,
          unseen: undefined,
          debits: prepared.debits,
          owner: ledgers
        }
      }

      get charged(): Budget.Cost {
        return this.#charged
      }

      get state(): Permit["state"] {
        return this.#state
      }

      /**
       * Moves this permit's charge from `unsent` into the send order, as `current` (per debit). Marked sent:
       * that is its point. Settled unmarked: its point stays its admission (it counts as sent then).
       */
      #send(at: number, current: (debit: LimiterStore.Debit) => number, marked: boolean): void {
        const point = this[PermitSend]
        const sequence = ++sends
        point.entry = sequence
        if (marked) point.sequence = sequence
        for (const debit of this.#prepared.debits) {
          const ledger = ledgers.get(debit.bucket.id)
          if (ledger === undefined) continue
          ledger.unsent -= debit.amount
          const amount = current(debit)
          if (amount !== 0) ledger.record(sequence, at, amount, debit.amount, marked)
        }
      }

      /** Its answer came (settled or released): a call marked sent is no longer on its way (`Ledger.openAt`). */
      #answered(now: number): void {
        const point = this[PermitSend]
        if (point.entry === undefined || point.entry !== point.sequence) return
        for (const debit of this.#prepared.debits) ledgers.get(debit.bucket.id)?.answered(point.entry, now)
      }

      /** What this permit charged the bucket at admission. */
      #chargedOn(bucket: string): number {
        let amount = 0
        for (const debit of this.#prepared.debits) if (debit.bucket.id === bucket) amount += debit.amount
        return amount
      }

      /**
       * Applies corrections; `refunded` is what goes back per dimension (once per call, not per scope; counted
       * in the refunds metric as the caller's usage gave it back). `answered`: a settle to an answer's usage (not a release, nor a settle to nothing): where it gives back part
       * of the charge on a bucket whose server reports its level and is not known to true up (`Ledger.reported`,
       * `Ledger.truesUp`), that part is not given back here — a server that keeps its charge still has it, and
       * its reports bring back what one that trues up gave.
       */
      #refund(
        debits: ReadonlyArray<LimiterStore.Debit>,
        refunded: Budget.Cost,
        now: number,
        answered = false
      ): Effect.Effect<void, LimiterStore.LimiterStoreError> {
        const point = this[PermitSend]
        const prepared = this.#prepared
        ramps.refund(prepared.scopes, refunded, this.admittedAt)
        if (debits.length === 0) {
          if (point.entry === undefined && this.#state === "settled") this.#send(now, amountOf, false)
          return Effect.void
        }
        let any = false
        for (const debit of debits) if (debit.amount < 0) any = true
        // the refunds a reporting bucket holds back or caps (`holdOf`)
        let holds: Array<"keep" | "cap" | undefined> | undefined
        let capped: Array<LimiterStore.BucketSpec> | undefined
        if (answered && any) {
          for (let i = 0; i < debits.length; i++) {
            const debit = debits[i]
            if (!(debit.amount < 0 && debit.amount > -this.#chargedOn(debit.bucket.id))) continue
            const hold = holdOf(debit.bucket.id)
            if (hold === undefined) continue
            // Stryker disable next-line ArrayDeclaration: an entry that is neither keep nor cap counts as none
            holds ??= []
            holds[i] = hold
            if (hold === "cap") (capped ??= []).push(debit.bucket)
          }
        }
        if (point.entry !== undefined) {
          for (const debit of debits) {
            const ledger = ledgers.get(debit.bucket.id)
            if (ledger !== undefined && ledger.adjust(point.entry, debit.amount)) continue
            if (debit.amount > 0) ledgerOf(debit.bucket.id, point.admission).record(++sends, now, debit.amount)
          }
        } else if (this.#state === "settled") {
          // answered, so sent by now: into the send order at its actual charge, as of now (the latest it
          // can have arrived: a report replayed over it assumes the least refill before it)
          this.#send(now, (debit) => {
            let amount = debit.amount
            for (const correction of debits) if (correction.bucket.id === debit.bucket.id) amount += correction.amount
            return amount
          }, false)
          // a charge on a bucket the estimate left out (an under-estimate of a dimension estimated at 0)
          for (const correction of debits) {
            if (correction.amount <= 0) continue
            if (prepared.debits.some((debit) => debit.bucket.id === correction.bucket.id)) continue
            ledgerOf(correction.bucket.id, point.admission).record(point.entry!, now, correction.amount)
          }
        } else {
          for (const debit of prepared.debits) {
            const ledger = ledgers.get(debit.bucket.id)
            if (ledger !== undefined) ledger.unsent -= debit.amount
          }
        }
        // An adopted report counted this call as the server charged it then: a refund there is left out (the
        // server trued it up already, or a later report brings it back); one folded in by send order leaves
        // in what it has room for (`refundOn`). A charge is applied all the same: a server that trues up only
        // later has not counted it yet, and one that has is merely charged twice.
        // Where the reports only lower, a refund raises the level only up to the latest report replayed to now (in a
        // bucket of the server's limit, the calls since at their charge): a server that keeps its charges has that.
        const stale = this.#version !== limitsVersion
        const apply = (levels: ReadonlyArray<number> | undefined) => {
          let applied: Array<LimiterStore.Debit> | ReadonlyArray<LimiterStore.Debit> = debits
          /** What goes back per bucket, held back or capped (`refundOn` aside): the refunds metric counts it. */
          const given: Array<number> = []
          let c = 0
          for (let i = 0; i < debits.length; i++) {
            const debit = debits[i]
            const bucket = stale ? currentSpec(debit.bucket) : debit.bucket
            let amount = debit.amount
            const hold = holds?.[i]
            if (hold === "keep") amount = 0
            else if (hold === "cap") {
              const ledger = ledgers.get(debit.bucket.id)!
              const lowered = ledger.lowered!
              const level = levels![c++]
              // the report replayed to now in a bucket of the server's limit, the calls since at their charge (the
              // settling one too): a server that keeps its charges has that much, one that trues up more
              const replayed = ledger.replay(
                lowered.sequence,
                lowered.from,
                lowered.level,
                now,
                lowered.bucket,
                undefined,
                0
              )
              if (replayed !== undefined) {
                const room = Math.min(bucket.capacity, replayed)
                amount = -Math.min(-amount, Math.max(0, room - level))
              }
            }
            given[i] = amount < 0 ? -amount : 0
            if (amount < 0) amount = refundOn(point, ledgers, debit.bucket.id, amount)
            if (amount === debit.amount && bucket === debit.bucket) continue
            if (applied === debits) applied = debits.slice()
            ;(applied as Array<LimiterStore.Debit>)[i] = { bucket, amount }
          }
          let counted: Effect.Effect<void> | undefined
          for (const dimension in refunded) {
            let back = refunded[dimension]
            if (!(back > 0)) continue
            if (holds !== undefined) {
              // held back or capped on every bucket it goes back to: counted as far as it went back
              let most: number | undefined
              for (let i = 0; i < debits.length; i++) {
                if (debits[i].amount < 0 && debits[i].bucket.dimension === dimension) {
                  most = Math.max(most ?? 0, holds[i] === undefined ? back : given[i])
                }
              }
              if (most !== undefined) back = Math.min(back, most)
              if (!(back > 0)) continue
            }
            const amount = back
            const update = Effect.sync(() => Metrics.refunds.unsafeUpdate(amount, refundLabelsOf(dimension)))
            counted = counted === undefined ? update : Effect.zipRight(counted, update)
          }
          // the net charge since a cold start's hold (`coldHolds`): what says whether the bucket can have been full since
          if (coldStartLag > 0) {
            for (const debit of applied) {
              const ledger = ledgers.get(debit.bucket.id)
              if (ledger !== undefined) noteCharge(ledger, debit.bucket, debit.amount, now)
            }
          }
          const adjusted = counted === undefined
            ? store.adjust(applied)
            : Effect.zipRight(store.adjust(applied), counted)
          return any ? Effect.ensuring(adjusted, Effect.sync(signal)) : adjusted
        }
        return capped === undefined ? apply(undefined) : Effect.flatMap(
          // Stryker disable next-line ArrayDeclaration: the gates' answers are not read
          store.levels(capped, []),
          (levels) => apply(levels.levels)
        )
      }

      readonly settle = (actual: Budget.Cost): Effect.Effect<void, LimiterStore.LimiterStoreError> =>
        Effect.clockWith((clock) => {
          if (this.#state !== "held") return Effect.void
          const now = clock.unsafeCurrentTimeMillis()
          this.#state = "settled"
          this.#answered(now)
          const prepared = this.#prepared
          const corrections: Array<LimiterStore.Debit> = []
          for (const resolved of prepared.resolved) {
            const dimension = resolved.limit.dimension
            const raw = actual[dimension]
            if (raw === undefined) continue
            const before = prepared.cost[dimension] > 0 ? prepared.cost[dimension] : 0
            const after = raw > 0 && Number.isFinite(raw) ? raw : 0
            if (after !== before) corrections.push({ bucket: resolved.spec, amount: after - before })
          }
          const next: Record<string, number> = Object.assign({}, prepared.cost)
          const refunded: Record<string, number> = {}
          for (const dimension in actual) {
            const raw = actual[dimension]
            next[dimension] = raw > 0 && Number.isFinite(raw) ? raw : 0
            const before = prepared.cost[dimension] > 0 ? prepared.cost[dimension] : 0
            if (next[dimension] < before) refunded[dimension] = before - next[dimension]
          }
          this.#charged = next
          return this.#refund(corrections, refunded, now, true)
        })

      get release(): Effect.Effect<void, LimiterStore.LimiterStoreError> {
        return Effect.clockWith((clock) => {
          if (this.#state !== "held") return Effect.void
          const now = clock.unsafeCurrentTimeMillis()
          this.#state = "released"
          this.#answered(now)
          this.#charged = {}
          return this.#refund(
            this.#prepared.debits.map((debit) => ({ bucket: debit.bucket, amount: -debit.amount })),
            this.#prepared.cost,
            now
          )
        })
      }

      get markSent(): Effect.Effect<void> {
        return Effect.suspend(() => {
          if (this.#state !== "held" || this[PermitSend].entry !== undefined) return Effect.void
          return Effect.clockWith((clock) => {
            if (this.#state === "held" && this[PermitSend].entry === undefined) {
              this.#send(clock.unsafeCurrentTimeMillis(), amountOf, true)
            }
            return Effect.void
          })
        })
      }
    }

    const makePermit = (prepared: Prepared, admittedAt: number): Permit => new LimiterPermit(prepared, admittedAt)

    /*
     * The dispatcher counts its admissions and rejections in place (`unsafeUpdate`), with the metric labels of
     * the fiber that made the limiter, which the dispatcher's fiber inherits and never changes: the same series
     * `Metric.increment` would update there, without an effect per waiter. Each series' labels are one array
     * throughout, so the metric's hook is looked up once (a `Metric.tagged` looks it up at every update).
     */
    const labels = yield* FiberRef.get(FiberRef.currentMetricLabels)
    const labelled = (key: string, value: string) => Arr.union([MetricLabel.make(key, value)], labels)
    const admittedLabels = laneNames.map((lane) => labelled("lane", lane))
    const secondsLabels = admittedLabels.map((lane) => Arr.union([InternalMetrics.unitSeconds], lane))
    /**
     * An admission that did not wait: counted, and a zero in the wait histograms, on the series a waiter's admission
     * updates (the labels in force at `make`). Updated in place: an effect per metric cost the admission path about
     * a fifth of its throughput (`pnpm bench`).
     */
    const admittedAtOnce = (lane: number): void => {
      Metrics.admissions.unsafeUpdate(1, admittedLabels[lane])
      Metrics.waitMillis.unsafeUpdate(0, admittedLabels[lane])
      InternalMetrics.waitSeconds.unsafeUpdate(0, secondsLabels[lane])
    }
    const rejectedLabels = {
      capacity: labelled("reason", "capacity"),
      deadline: labelled("reason", "deadline"),
      closed: labelled("reason", "closed"),
      store: labelled("reason", "store")
    }
    /**
     * A rejection on the fast path, a refund and a gate are counted in the caller's fiber: on the series of the
     * labels in force at `make` too (as the dispatcher's), not the caller's (a fiber of another service or tenant).
     */
    const countRejection = (reason: keyof typeof rejectedLabels): void =>
      Metrics.rejections.unsafeUpdate(1, rejectedLabels[reason])
    /** Fails an acquire on its fast path (in the caller's fiber), counted as the dispatcher counts its refusals. */
    const refusedAtOnce = <E extends AcquireError>(
      reason: keyof typeof rejectedLabels,
      error: E
    ): Effect.Effect<never, E> =>
      Effect.suspend(() => {
        countRejection(reason)
        return Effect.fail(error)
      })
    const refundLabels = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
    const refundLabelsOf = (dimension: string): ReadonlyArray<MetricLabel.MetricLabel> => {
      let found = refundLabels.get(dimension)
      if (found === undefined) {
        found = labelled("dimension", dimension)
        refundLabels.set(dimension, found)
      }
      return found
    }

    /** Admits a waiter (in the dispatcher's pass). */
    const deliver = (
      waiter: Waiter,
      now: number,
      holds: ReadonlyArray<LimiterStore.Debit> | undefined
    ): Effect.Effect<void> | undefined => {
      finish(waiter)
      const permit = noteHolds(holds, makePermit(waiter.prepared, now))
      if (waiter.cancelled) return Effect.ignore(permit.release)
      waiter.permit = permit
      Slot.done(waiter.deferred!, Exit.succeed(permit))
      Metrics.admissions.unsafeUpdate(1, admittedLabels[waiter.lane])
      const waited = now - waiter.enqueuedAt
      Metrics.waitMillis.unsafeUpdate(waited, admittedLabels[waiter.lane])
      InternalMetrics.waitSeconds.unsafeUpdate(waited / 1000, secondsLabels[waiter.lane])
      if (waited > 0) Metrics.admissionsWaited.unsafeUpdate(1, admittedLabels[waiter.lane])
      return undefined
    }

    /**
     * A store's "limit" denial that can never be met (an infinite wait: a store may answer so for a debit it
     * could never admit) as the error it means, so that the call fails at once instead of being queued for
     * ever, and every later call on that bucket behind it.
     */
    const neverFits = (
      prepared: Prepared,
      answer: LimiterStore.Admission & { _tag: "Denied" }
    ): CostExceedsCapacity | undefined => {
      if (answer.reason !== "limit" || answer.waitMillis < Number.POSITIVE_INFINITY) return undefined
      // the bucket it names (of its scope and dimension, the narrowest: the one a cost exceeds first)
      let entry: Resolved | undefined
      for (const resolved of prepared.resolved) {
        if (resolved.spec.scope !== answer.scope || resolved.spec.dimension !== answer.dimension) continue
        if (entry === undefined || resolved.spec.capacity < entry.spec.capacity) entry = resolved
      }
      return new CostExceedsCapacity({
        scope: answer.scope,
        dimension: answer.dimension,
        limit: entry?.limit.label ?? answer.dimension,
        capacity: entry?.spec.capacity ?? 0,
        cost: prepared.cost[answer.dimension] ?? 0
      })
    }

    /** Refuses a waiter (in the dispatcher's pass). */
    const reject = (waiter: Waiter, error: AcquireError): void => {
      finish(waiter)
      Slot.done(waiter.deferred!, Exit.fail(error))
      const reason = error._tag === "DeadlineExceeded"
        ? "deadline"
        : error._tag === "ScopeClosed"
        ? "closed"
        : error._tag === "CostExceedsCapacity"
        ? "capacity"
        : "store"
      countRejection(reason)
    }

    /**
     * The pass's (scope, dimension) keys an earlier waiter is denied on, with when that waiter is next due, and the
     * same keys in a list (walked by `covered` at every waiter visited, without an iterator). One of each for every
     * pass (passes never overlap: the dispatcher runs one at a time), emptied as a pass starts.
     */
    const blocked = new Map<string, number>()
    const blockedKeys: Array<string> = []
    const blockKey = (key: string, due: number): void => {
      const was = blocked.get(key)
      // Stryker disable next-line ConditionalExpression,EqualityOperator: a key missing or twice: fewer early stops
      if (was === undefined) blockedKeys.push(key)
      if (was === undefined || was < due) blocked.set(key, due)
    }

    /**
     * One pass over the queue at `now`; returns when the next pass is due (epoch ms), Infinity for "on signal": at
     * once when the pass needed no effect (a synchronous store, no jitter, no refund), else as an effect.
     */
    const pass = (now: number): number | Effect.Effect<number> =>
      runSteps(function*() {
        blocked.clear()
        blockedKeys.length = 0
        let next = Number.POSITIVE_INFINITY
        passes++
        passing = true
        seenKeys.clear()
        seenWaiters = 0
        seenFinite = 0
        const start = epoch
        const mayStop = !alwaysFull && verified === start
        /**
         * Whether every waiter not visited yet is merely blocked: none has a finite deadline, nothing changed
         * since the last full pass that a blocked waiter must see (`epoch`), and one blocked key is needed by
         * all of them. Visiting them would change nothing (a blocked waiter without a deadline only waits).
         */
        const covered = (): boolean => {
          if (!mayStop || epoch !== start || finite !== seenFinite || blockedKeys.length === 0) return false
          // Stryker disable next-line ArithmeticOperator: more unvisited only makes the early stop rarer
          const unvisited = queued - seenWaiters
          for (let i = 0; i < blockedKeys.length; i++) {
            const key = blockedKeys[i]
            if ((keyCounts.get(key) ?? 0) - (seenKeys.get(key) ?? 0) === unvisited) return true
          }
          return false
        }
        let stopped = false
        scan: for (let l = 0; l < lanes.length; l++) {
          const lane = lanes[l]
          cursorLane = l
          // by index, as a `for…of` would (a waiter queued while an asynchronous store answers is visited too, if
          // placed after the cursor; one placed before it moves the cursor on with it, see `push`)
          for (cursor = 0; cursor < lane.length; cursor++) {
            const waiter = lane[cursor]
            if (waiter.done) continue
            // Stryker disable next-line BlockStatement: a pass that never stops early does the same (see `covered`)
            if (covered()) {
              stopped = true
              break scan
            }
            visit: {
              if (waiter.inFlight) {
                // its first attempt is at the store: nothing behind it may take its buckets meanwhile
                for (const debit of waiter.prepared.debits) {
                  const key = `${debit.bucket.scope}\u0000${debit.bucket.dimension}`
                  if (!blocked.has(key)) blockKey(key, now)
                }
                break visit
              }
              const closedError = closedFor(waiter.prepared.scopes)
              if (closedError !== undefined) {
                reject(waiter, closedError)
                break visit
              }
              if (waiter.version !== limitsVersion) {
                // a limit was learned or changed while it waited: ask for today's buckets
                const again = prepare(waiter.prepared.scopes, waiter.prepared.cost)
                if (again instanceof CostExceedsCapacity) {
                  reject(waiter, again)
                  break visit
                }
                waiter.prepared = again
                countKeys(waiter.keys, -1)
                waiter.keys = again.keys
                countKeys(waiter.keys, 1)
                waiter.version = limitsVersion
              }
              let blockedBy: string | undefined
              let aheadDue = Number.NEGATIVE_INFINITY
              for (let k = 0; k < waiter.keys.length; k++) {
                const key = waiter.keys[k]
                const due = blocked.get(key)
                if (due !== undefined && due > aheadDue) {
                  blockedBy = key
                  aheadDue = due
                }
              }
              if (blockedBy !== undefined) {
                // Behind an earlier waiter on a shared bucket: FIFO, so it waits its turn — at least until
                // that waiter is admitted. A deadline that cannot be met even then fails now, with that wait.
                const atLeast = Math.max(0, aheadDue - now, waiter.lastEstimate - (now - waiter.enqueuedAt))
                waiter.lastEstimate = Math.max(waiter.lastEstimate, atLeast)
                if (now + atLeast > waiter.deadline || now >= waiter.deadline) {
                  const [scope, dimension] = blockedBy.split("\u0000")
                  reject(
                    waiter,
                    new DeadlineExceeded({
                      scope,
                      dimension,
                      reason: "queue",
                      estimatedWaitMillis: atLeast,
                      allowedMillis: Math.max(0, waiter.deadline - now)
                    })
                  )
                } else if (waiter.deadline < next) {
                  next = waiter.deadline
                }
                break visit
              }
              // a temporary limit (a ramp) that holds it denies it as the store would
              let answer: LimiterStore.Admission | undefined = ramps.held(
                waiter.prepared.scopes,
                waiter.prepared.cost,
                now
              )
              const holds = answer === undefined ? coldHolds(waiter.prepared, now) : undefined
              if (answer === undefined && store.unsafeTryAcquire !== undefined) {
                // a synchronous store answers in place (no effect per waiter visited)
                answer = store.unsafeTryAcquire(withHolds(waiter.prepared, holds), waiter.prepared.gates, now)
              } else if (answer === undefined) {
                const admission = (yield Effect.either(
                  store.tryAcquire(withHolds(waiter.prepared, holds), waiter.prepared.gates)
                )) as Either.Either<LimiterStore.Admission, LimiterStore.LimiterStoreError>
                if (admission._tag === "Left") {
                  reject(waiter, admission.left)
                  break visit
                }
                answer = admission.right
              }
              if (waiter.done) {
                // cancelled while an asynchronous store answered: refund what it admitted
                if (answer._tag === "Admitted") {
                  yield Effect.ignore(
                    store.adjust(
                      withHolds(waiter.prepared, holds).map((debit) => ({
                        bucket: debit.bucket,
                        amount: -debit.amount
                      }))
                    )
                  )
                }
                break visit
              }
              if (answer._tag === "Admitted") {
                const cancelled = deliver(waiter, now, holds)
                if (cancelled !== undefined) yield cancelled
                break visit
              }
              const never = neverFits(waiter.prepared, answer)
              if (never !== undefined) {
                reject(waiter, never)
                break visit
              }
              waiter.lastEstimate = answer.waitMillis
              if (now + answer.waitMillis > waiter.deadline) {
                reject(
                  waiter,
                  new DeadlineExceeded({
                    scope: answer.scope,
                    dimension: answer.dimension,
                    reason: answer.reason,
                    estimatedWaitMillis: answer.waitMillis,
                    allowedMillis: waiter.deadline - now
                  })
                )
                break visit
              }
              // FIFO on what binds: later waiters needing this scope and dimension queue behind this one
              // (so a large request is not starved by small ones); traffic that has room elsewhere flows.
              let due = now + answer.waitMillis
              if (jitter > 0) due += Math.ceil(answer.waitMillis * jitter * ((yield Random.next) as number))
              const key = `${answer.scope}\u0000${answer.dimension}`
              blockKey(key, due)
              if (due < next) next = due
              if (waiter.deadline < next) next = waiter.deadline
            }
            if (!waiter.done && waiter.seen !== passes) {
              waiter.seen = passes
              seenWaiters++
              if (waiter.deadline !== Number.POSITIVE_INFINITY) seenFinite++
              for (let k = 0; k < waiter.keys.length; k++) {
                const key = waiter.keys[k]
                // Stryker disable next-line LogicalOperator: uncounted seen keys only make the early stop rarer
                seenKeys.set(key, (seenKeys.get(key) ?? 0) + 1)
              }
            }
          }
        }
        passing = false
        cursorLane = -1
        if (!stopped) verified = start
        compact()
        return next
      })

    /**
     * The dispatcher's timer: one fiber that sleeps on the dispatcher's clock to `due` (epoch ms), then wakes the
     * dispatcher if it wants to be woken by then (`wanted`), sleeps on to `wanted` if that is later, or parks until
     * the dispatcher hands it the next instant. A fiber forked per timed wait and interrupted when a signal came
     * first cost a fiber's start and end (its `FiberRefs` copied, a child registered and removed) at each of a
     * simulated day's ~9,500 timed waits. A new one is forked only when a wait must end before the instant the
     * current one sleeps to; the old one is interrupted and, being no longer `timer`, does nothing if it wakes.
     */
    interface Timer {
      /** The instant its sleep (the current one, or the last) ends at. */
      due: number
      /** While it is parked: resumes it (it then sleeps to `due`). */
      parked: ((effect: Effect.Effect<void>) => void) | undefined
    }
    let timer: Timer | undefined
    let timerFiber: Fiber.RuntimeFiber<never> | undefined
    /**
     * The latest instant the dispatcher is to be woken at (epoch ms): set as it starts to wait after a pass, Infinity
     * while it is awake or waits for a signal only.
     */
    let wanted = Number.POSITIVE_INFINITY
    const runTimer = (state: Timer, clock: Clock.Clock): Effect.Effect<never> => {
      const woken = Effect.async<void>((resume) => {
        // replaced by an earlier wait's timer (and interrupted): nothing is left to it
        if (timer !== state) return
        if (wanted <= state.due) Slot.done(wakeup, Exit.void)
        else if (wanted !== Number.POSITIVE_INFINITY) {
          state.due = wanted
          return resume(Effect.void)
        }
        state.parked = resume
      })
      const round = Effect.suspend(() =>
        Effect.zipRight(
          clock.sleep(Duration.millis(Math.max(0, state.due - clock.unsafeCurrentTimeMillis()))),
          woken
        )
      )
      // round after round, without `Effect.forever`'s yield between them (each round waits on the clock anyway)
      const loop: Effect.Effect<never> = Effect.flatMap(round, () => loop)
      return loop
    }

    const dispatcher: Effect.Effect<never> = Effect.gen(function*() {
      const self = yield* Effect.fiberId
      // the dispatcher's clock, read in place (its fiber's services never change)
      const clock = yield* Effect.clock
      while (true) {
        wakeup = Slot.make<void>()
        const passed = queued > 0 ? pass(clock.unsafeCurrentTimeMillis()) : Number.POSITIVE_INFINITY
        let next = typeof passed === "number" ? passed : yield* passed
        // An instant a rounding error ahead (a gate's end computed by another sum than the clock's reading: seen
        // 2e-12 ms ahead under TestClock) is a wait the clock cannot tell from now: slept, it left the clock where
        // it was and every pass found the same wait (a spin, the test's timeout never firing). At least a
        // microsecond, which the clock can tell (epoch milliseconds step by 2.4e-4).
        const current = clock.unsafeCurrentTimeMillis()
        if (next > current && next - current < MIN_WAIT_MILLIS) next = current + MIN_WAIT_MILLIS
        if (queued > 0 && next !== Number.POSITIVE_INFINITY) {
          // woken by a signal or at `next`, whichever comes first
          wanted = next
          const state = timer
          if (state !== undefined && state.parked !== undefined) {
            const resume = state.parked
            state.parked = undefined
            state.due = next
            resume(Effect.void)
          } else if (state === undefined || state.due > next) {
            // none yet, or it sleeps past `next`: a fresh one
            if (timerFiber !== undefined) timerFiber.unsafeInterruptAsFork(self)
            const fresh: Timer = { due: next, parked: undefined }
            timer = fresh
            timerFiber = yield* Effect.fork(runTimer(fresh, clock))
          }
          // else it sleeps to an instant before `next`, and sleeps on to `next` from there
        } else if (queued === 0 && timer !== undefined && timer.parked === undefined) {
          // nothing queued: an idle limiter holds no timer (on the live clock, a timeout that keeps the process up)
          timerFiber!.unsafeInterruptAsFork(self)
          timer = undefined
          timerFiber = undefined
        }
        yield* Slot.waitOwned(wakeup)
        wanted = Number.POSITIVE_INFINITY
      }
    }) as Effect.Effect<never>
    yield* Effect.forkScoped(Effect.interruptible(dispatcher))

    const deadlineOf = (options: RateLimiter.AcquireOptions | undefined, now: number): number => {
      let deadline = Number.POSITIVE_INFINITY
      if (options?.deadline !== undefined) {
        deadline = typeof options.deadline === "number" ? options.deadline : options.deadline.getTime()
      }
      if (options?.maxWait !== undefined) {
        deadline = Math.min(deadline, now + Duration.toMillis(Duration.decode(options.maxWait)))
      }
      return deadline
    }

    /** A waiter's place in its lane (see `Waiter.order`): its `arrivedAt` when earlier than now, else now. */
    const arrivalOf = (options: RateLimiter.AcquireOptions | undefined, now: number): number => {
      const arrivedAt = options?.arrivedAt
      if (arrivedAt === undefined) return now
      const millis = typeof arrivedAt === "number" ? arrivedAt : arrivedAt.getTime()
      return millis < now ? millis : now
    }

    const sharesQueue = (prepared: Prepared): boolean => {
      if (queued === 0) return false
      for (const key of prepared.keys) if (keyCounts.has(key)) return true
      return false
    }

    const deadlineFailure = (answer: LimiterStore.Admission & { _tag: "Denied" }, deadline: number, now: number) =>
      refusedAtOnce(
        "deadline",
        new DeadlineExceeded({
          scope: answer.scope,
          dimension: answer.dimension,
          reason: answer.reason,
          estimatedWaitMillis: answer.waitMillis,
          allowedMillis: deadline - now
        })
      )

    // Stryker disable next-line ArrayDeclaration: a placeholder's keys are counted, never looked up
    const noKeys: ReadonlyArray<string> = []
    const newWaiter = (
      prepared: Prepared,
      lane: number,
      now: number,
      order: number,
      deadline: number,
      estimate: number,
      placeholder = false
    ): Waiter => ({
      prepared,
      keys: placeholder ? noKeys : prepared.keys,
      version: limitsVersion,
      lane,
      enqueuedAt: now,
      order,
      deadline,
      deferred: placeholder ? undefined : Slot.make<Permit, AcquireError>(),
      done: false,
      cancelled: false,
      permit: undefined,
      lastEstimate: estimate,
      inFlight: false,
      seen: 0
    })
    /**
     * Puts a waiter in its lane by its place (`order`): after every waiter placed at or before it, so that equal
     * places keep the order of arrival. Nearly all arrive in order: the search runs from the end, and one that
     * arrived now goes at the end at once (placed no earlier than the last: a clock set back does not reorder the
     * lane). One given an earlier arrival (a retry keeping its first attempt's place) goes in the middle: a pass
     * under way keeps its cursor on the waiter it visits (else it would visit that one again, as if blocked by
     * itself), and the new one, behind the cursor, is visited by the next pass, which the caller's `signal` starts.
     * No `epoch` bump: a pass's early stop holds in any order (it stops only where every waiter not visited yet
     * needs a key an earlier waiter in the pass is denied on, and the new one is counted among those).
     */
    const push = (waiter: Waiter) => {
      const lane = lanes[waiter.lane]
      const last = lane.length === 0 ? undefined : lane[lane.length - 1]
      if (last === undefined || waiter.order >= last.order || waiter.order >= waiter.enqueuedAt) {
        if (last !== undefined && last.order > waiter.order) waiter.order = last.order
        lane.push(waiter)
      } else {
        let at = lane.length - 1
        while (at > 0 && lane[at - 1].order > waiter.order) at--
        lane.splice(at, 0, waiter)
        if (passing && cursorLane === waiter.lane && at <= cursor) cursor++
      }
      queued++
      countKeys(waiter.keys, 1)
      if (waiter.deadline !== Number.POSITIVE_INFINITY) finite++
    }

    const awaitWaiter = (waiter: Waiter) =>
      Slot.wait(waiter.deferred!, () => {
        // Stryker disable next-line BooleanLiteral: read only by `deliver`, which never sees an interrupted waiter
        waiter.cancelled = true
        if (!waiter.done) {
          finish(waiter)
          signal()
          return Effect.void
        }
        return waiter.permit !== undefined ? Effect.ignore(waiter.permit.release) : Effect.void
      })

    /** Queues a waiter now (called as `acquire` runs) and waits for it. */
    const enqueue = (
      prepared: Prepared,
      lane: number,
      now: number,
      order: number,
      deadline: number,
      estimate: number
    ) => {
      const waiter = newWaiter(prepared, lane, now, order, deadline, estimate)
      push(waiter)
      signal()
      return awaitWaiter(waiter)
    }

    /** Ends a fast-path placeholder that did not become a waiter. */
    const leave = (waiter: Waiter) => {
      finish(waiter)
      const lane = lanes[waiter.lane]
      if (lane[lane.length - 1] === waiter) {
        lane.pop()
        finished--
      }
      // Stryker disable next-line ConditionalExpression,EqualityOperator: when to compact (memory only, see compact)
      if (queued === 0) compact()
      signal()
    }

    const acquire: Service["acquire"] = (scopes, cost, options) =>
      Effect.suspend(() => {
        const prepared = prepare(scopes, cost)
        if (prepared instanceof CostExceedsCapacity) {
          return refusedAtOnce("capacity", prepared)
        }
        const closedError = closedFor(scopes)
        if (closedError !== undefined) {
          return refusedAtOnce("closed", closedError)
        }
        const lane = laneIndex(options?.priority)
        return Effect.clockWith((clock): Effect.Effect<Permit, AcquireError> => {
          const now = clock.unsafeCurrentTimeMillis()
          const deadline = deadlineOf(options, now)
          const order = arrivalOf(options, now)
          if (queued > 0) return enqueue(prepared, lane, now, order, deadline, 0)
          const ramped = ramps.held(scopes, cost, now)
          if (ramped !== undefined) {
            if (now + ramped.waitMillis > deadline) return deadlineFailure(ramped, deadline, now)
            return enqueue(prepared, lane, now, order, deadline, ramped.waitMillis)
          }
          if (store.unsafeTryAcquire !== undefined) {
            // A synchronous store answers in this very step: nothing can come between its admission and the
            // permit, and no one can arrive meanwhile.
            const holds = coldHolds(prepared, now)
            const answer = store.unsafeTryAcquire(withHolds(prepared, holds), prepared.gates, now)
            if (answer._tag === "Admitted") {
              admittedAtOnce(lane)
              return Effect.succeed(noteHolds(holds, makePermit(prepared, now)))
            }
            const never = neverFits(prepared, answer)
            if (never !== undefined) {
              return refusedAtOnce("capacity", never)
            }
            if (now + answer.waitMillis > deadline) {
              return deadlineFailure(answer, deadline, now)
            }
            return enqueue(prepared, lane, now, order, deadline, answer.waitMillis)
          }
          // The fast path of an asynchronous store: ask at once, holding a place at the head of the queue
          // meanwhile.
          const waiter = newWaiter(prepared, lane, now, order, deadline, 0, true)
          waiter.inFlight = true
          push(waiter)
          const holds = coldHolds(prepared, now)
          return Effect.uninterruptibleMask((restore) =>
            Effect.matchEffect(store.tryAcquire(withHolds(prepared, holds), prepared.gates), {
              onFailure: (error) => {
                leave(waiter)
                return refusedAtOnce("store", error)
              },
              onSuccess: (answer): Effect.Effect<Permit, AcquireError> => {
                if (answer._tag === "Admitted") {
                  leave(waiter)
                  const admitted = noteHolds(holds, makePermit(prepared, now))
                  // An interruption that arrived while the store answered lands here, and refunds it.
                  admittedAtOnce(lane)
                  return restore(Effect.succeed(admitted)).pipe(
                    Effect.onInterrupt(() => Effect.ignore(admitted.release))
                  )
                }
                const never = neverFits(prepared, answer)
                if (never !== undefined) {
                  leave(waiter)
                  return refusedAtOnce("capacity", never)
                }
                if (now + answer.waitMillis > deadline) {
                  leave(waiter)
                  return deadlineFailure(answer, deadline, now)
                }
                // Denied: it stays where it is in the queue, now a waiter like the others.
                // counted as not visited yet by a pass under way (conservative for its early stop)
                unsee(waiter)
                waiter.keys = prepared.keys
                countKeys(waiter.keys, 1)
                // prepared for limits that changed meanwhile: the next pass is a full one, and prepares it again
                if (waiter.version !== limitsVersion) epoch++
                waiter.deferred = Slot.make<Permit, AcquireError>()
                waiter.inFlight = false
                waiter.lastEstimate = answer.waitMillis
                signal()
                return restore(awaitWaiter(waiter))
              }
            })
          )
        })
      })

    const acquireScoped: Service["acquireScoped"] = (scopes, cost, options) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.tap(
          restore(acquire(scopes, cost, options)),
          (permit) => Effect.addFinalizer(() => Effect.ignore(permit.release))
        )
      )

    const withPermit: Service["withPermit"] = (scopes, cost, use, options) =>
      Effect.scoped(Effect.flatMap(acquireScoped(scopes, cost, options), use))

    const tryAcquire: Service["tryAcquire"] = (scopes, cost, options) =>
      Effect.suspend((): ReturnType<Service["tryAcquire"]> => {
        const prepared = prepare(scopes, cost)
        if (prepared instanceof CostExceedsCapacity) return Effect.fail(prepared)
        const closedError = closedFor(scopes)
        if (closedError !== undefined) return Effect.fail(closedError)
        if (sharesQueue(prepared)) return Effect.succeed(Option.none())
        return Effect.flatMap(Clock.currentTimeMillis, (now) => {
          if (ramps.held(scopes, cost, now) !== undefined) return Effect.succeed(Option.none())
          const holds = coldHolds(prepared, now)
          return Effect.flatMap(store.tryAcquire(withHolds(prepared, holds), prepared.gates), (answer) =>
            answer._tag === "Denied"
              ? Effect.suspend(() => {
                const never = neverFits(prepared, answer)
                return never === undefined ? Effect.succeed(Option.none()) : Effect.fail(never)
              })
              : Effect.map(Clock.currentTimeMillis, (at) => {
                Metrics.admissions.unsafeUpdate(1, admittedLabels[laneIndex(options?.priority)])
                return Option.some(noteHolds(holds, makePermit(prepared, at)))
              }))
        })
      })

    const block: Service["block"] = (scope, dimension, until) =>
      Effect.gen(function*() {
        const millis = until instanceof Date
          ? until.getTime() - (yield* Clock.currentTimeMillis)
          : Duration.toMillis(Duration.decode(until))
        if (!(millis > 0)) {
          return
        }
        yield* store.block(gateKey(scope, dimension), millis)
        Metrics.gates.unsafeUpdate(
          1,
          Arr.union([MetricLabel.make("scope", scope), MetricLabel.make("dimension", dimension)], labels)
        )
        signal()
      })

    const sync: Service["sync"] = (scope, observation) =>
      Effect.gen(function*() {
        const windowMillis = observation.window === undefined
          ? 60_000
          : Duration.toMillis(Duration.decode(observation.window))
        let matching = resolve(scope).filter((resolved) =>
          resolved.limit.dimension === observation.dimension
        )
        /** The burst to learn with `amount`: the report's (at most the amount), else `kept`. */
        const burstFor = (amount: number, kept: number | undefined): number | undefined => {
          const burst = observation.burst !== undefined && observation.burst > 0 && Number.isFinite(observation.burst)
            ? observation.burst
            : kept
          return burst === undefined || burst >= amount ? undefined : burst
        }
        // Learned per dimension and window: a per-day limit the server reports (a daily 429) is a bucket of
        // its own beside the per-minute ones, not a figure folded into them.
        if (
          !matching.some((resolved) => resolved.spec.windowMillis === windowMillis) &&
          observation.limit !== undefined && observation.limit > 0 && Number.isFinite(observation.limit)
        ) {
          const limit = Budget.Limit.of(
            observation.dimension,
            observation.limit,
            Duration.millis(windowMillis),
            burstFor(observation.limit, undefined)
          )
          const list = learned.get(scope) ?? []
          list.push(limit)
          learned.set(scope, list)
          resolvedCache.delete(scope)
          planCache.clear()
          limitsVersion++
          epoch++
          signal()
          matching = resolve(scope).filter((resolved) => resolved.limit.dimension === observation.dimension)
        } else if (
          (observation.limit !== undefined && observation.limit > 0 && Number.isFinite(observation.limit)) ||
          observation.burst !== undefined
        ) {
          // A learned limit follows what the server says it is now (its learned burst kept unless a new one comes).
          const list = learned.get(scope)
          const index = list?.findIndex((limit) =>
            limit.dimension === observation.dimension && limit.windowMillis === windowMillis
          ) ?? -1
          const current = list !== undefined && index >= 0 ? list[index] : undefined
          const amount = observation.limit !== undefined && observation.limit > 0 && Number.isFinite(observation.limit)
            ? observation.limit
            : current?.amount
          const burst = amount === undefined ? undefined : burstFor(amount, current?.burst)
          const configured = current === undefined && observation.burst !== undefined
            ? configuredLimits(scope).find((limit) =>
              limit.dimension === observation.dimension && limit.windowMillis === windowMillis
            )
            : undefined
          const smaller = configured === undefined ? undefined : burstFor(
            configured.amount,
            configuredBursts.get(burstKey(scope, configured)) ?? configured.burst
          )
          if (
            configured !== undefined && smaller !== undefined &&
            smaller < (configuredBursts.get(burstKey(scope, configured)) ?? configured.capacity)
          ) {
            // a configured limit keeps its amount; the server's smaller burst becomes its bucket's capacity
            configuredBursts.set(burstKey(scope, configured), smaller)
            resolvedCache.delete(scope)
            planCache.clear()
            limitsVersion++
            epoch++
            matching = resolve(scope).filter((resolved) =>
              resolved.limit.dimension === observation.dimension
            )
            signal()
          } else if (
            list !== undefined && current !== undefined && amount !== undefined &&
            (current.amount !== amount || current.burst !== burst)
          ) {
            const grown = list[index] = Budget.Limit.of(
              observation.dimension,
              amount,
              Duration.millis(windowMillis),
              burst
            )
            resolvedCache.delete(scope)
            planCache.clear()
            limitsVersion++
            epoch++
            matching = resolve(scope).filter((resolved) => resolved.limit.dimension === observation.dimension)
            // a bucket that grows gains what it grew by (a limit raised: that much more room now)
            if (grown.capacity > current.capacity) {
              yield* store.adjust([{ bucket: specOf(scope, grown), amount: current.capacity - grown.capacity }])
            }
            signal()
          }
        }
        // Without the server's figures an answer still says the latest its call can have reached the server
        // (`reportedBy`): read for that alone (`coldHolds`).
        const figures = observation.remaining !== undefined && Number.isFinite(observation.remaining)
        if (!figures && (observation.reportedBy === undefined || observation.since === undefined)) return
        // The server's remaining applies to its per-window limit: the bucket with the closest window.
        let target: Resolved | undefined
        for (const resolved of matching) {
          if (
            target === undefined ||
            Math.abs(resolved.spec.windowMillis - windowMillis) < Math.abs(target.spec.windowMillis - windowMillis)
          ) target = resolved
        }
        if (target === undefined) return
        let remaining = figures ? Math.max(0, observation.remaining!) : 0
        const since = observation.since as (Permit & { readonly [PermitSend]?: SendPoint }) | undefined
        const point = since?.[PermitSend]
        const ledger = ledgers.get(target.spec.id)
        // a report of this limiter's own call, on a bucket it keeps a ledger of
        if (since !== undefined && point !== undefined && point.owner === ledgers && ledger !== undefined) {
          const now = yield* Clock.currentTimeMillis
          const from = observation.sentAt ?? since.admittedAt
          if (now - from > LEDGER_RETENTION_MILLIS) return // older than the ledger keeps: stale
          // the report is the server's as of its arrival there, at the latest `reportedBy`: the refill is added
          // back from then (a request slower on its way than the next would otherwise leave the level ahead)
          const at = observation.reportedBy !== undefined && observation.reportedBy > from
            ? Math.min(now, observation.reportedBy)
            : from
          // The first answer that says when the server made it (`reportedBy`; with or without its figures) of a call
          // admitted since the bucket was drawn from full gives back the refill held back then (`coldHolds`) but that
          // of the time up to it: the server's full bucket lost its refill until the first of those calls reached it,
          // at the latest then. (A report's figure does not say it: of a herd, it counts the calls sent with it as
          // seen.)
          // Any report with figures forgets it here (kept in the level; adopted or lowered to, the level is the
          // server's, which has what its bucket lost): given back after that, the hold would be counted twice.
          // Nor is it given back where the bucket can have been full since (its refill since covers the hold and the
          // least net charge since), which lost it (at the server too), or where its limit changed.
          // Each such answer may say the first arrival was earlier than the ones before it did: what it gives back is
          // what its bound keeps less than the hold left.
          if (ledger.coldHold > 0) {
            const spec = target.spec
            const slack = (now - ledger.coldAt) * spec.refillPerMs - (ledger.charged - ledger.coldCharged)
            const full = Math.max(ledger.coldSlack, slack) >= ledger.coldHold
            if (full || spec.capacity !== ledger.coldCapacity) {
              ledger.coldHold = 0
            } else if (point.admission >= ledger.coldFrom && observation.reportedBy !== undefined) {
              const kept = Math.max(0, Math.min(ledger.coldHold, (at - ledger.coldAt) * spec.refillPerMs))
              const given = ledger.coldHold - kept
              ledger.coldHold = figures ? 0 : kept
              if (given > 0) yield* store.adjust([{ bucket: spec, amount: -given }])
            } else if (figures) {
              ledger.coldHold = 0
            }
          }
          if (!figures) return
          // The report is about the limit's own bucket: with a burst, the bucket here is smaller (the burst, at
          // the limit's rate), so the report is replayed in a bucket of the limit's size and only lowers this
          // one. Replayed in the burst's, it would be capped there at once and lose the reported call's refund
          // and the refill since: the level sank below the server's with every report.
          const reported = target.limit.burst === undefined
            ? target.spec
            : { capacity: target.limit.amount, refillPerMs: target.spec.refillPerMs }
          // the report counts the call itself: settled unmarked, its entry is after its point; held
          // unmarked, it is in `unsent`
          let ownUnsent = 0
          if (point.entry === undefined && since.state === "held") {
            for (const debit of point.debits) if (debit.bucket.id === target.spec.id) ownUnsent += debit.amount
          }
          const replayFrom = (start: number) =>
            ledger.replay(
              start,
              at,
              remaining,
              now,
              reported,
              point.entry !== undefined && point.entry > start ? point.entry : undefined,
              ownUnsent
            )
          if (ledger.firstAdmission > point.admission) {
            // The call was admitted before this bucket was first charged (a limit learned while it was out: the
            // adaptive mode's probe answered after its patience let the herd out on guessed limits): the calls the
            // ledger holds that left after it are not in the report, made as of the server's admission of it.
            // Taken as the level now, it left the level above the server's by what they charged: a probe answered
            // at 10.8 s with 197,607 TPM left as of 23 ms let a herd out on it while 22,790 tokens of later probes
            // were out (a shrinking learned limit had capped the level at full; 2 x 429 in 92, `pnpm bench:openai
            // --shapes few-large-kept`, learned). Replayed over them, it only lowers.
            const aged = replayFrom(point.sequence)
            if (aged === undefined) return
            remaining = Math.max(-target.spec.capacity, aged)
          } else {
            // aged only when the permit charged this bucket (a bucket learned since has no record of the others)
            // its report came: the call reached the server (a stream's headers come long before its end)
            if (point.entry !== undefined && point.entry === point.sequence) ledger.arrived(point.sequence)
            // how long the call took to reach the server, at most (and its answer to come back, less the server's time)
            if (observation.reportedBy !== undefined) ledger.noteLag(now, at - from)
            // Adopted both ways when the bucket is the server's own limit, this limiter alone charges the
            // store and the call was not part of a burst (BURST_CALLS, the calls sent around it, before and after):
            // replayed from the calls sent a little before this one (see REPORT_SKEW_MILLIS), those
            // sent earlier are counted by the server as it charged them, so their corrections are not applied
            // a second time (`Ledger.absorbed`).
            // the bucket is the server's own limit, charged by this limiter alone: its level carries every call this
            // limiter sent, as the server's will once they have arrived
            const own = store.track !== undefined && observation.limit === target.limit.amount &&
              target.spec.windowMillis === windowMillis
            // (only asked where it matters: on the server's own limit)
            const herd = own &&
              ledger.sentAfter(from - BURST_WINDOW_MILLIS, point.sequence) +
                    ledger.sentSince(point.sequence, from + BURST_WINDOW_MILLIS) > BURST_CALLS
            const cut = own && observation.adopt !== false &&
                // a bucket with a burst is tighter than the limit the report is about: it only lowers
                target.limit.burst === undefined && !herd
              ? ledger.sentBy(from - REPORT_SKEW_MILLIS, point.sequence)
              : undefined
            // Whether the server trues calls up to their usage, from its report of this one (see
            // `Ledger.learnCharging`): until a report shows it, the calls replayed below count at their charge where
            // they were answered with less (a server that keeps it still has them so), and a settle's refund waits
            // for the reports: held back where they are adopted both ways (`cut`, `Ledger.reported`), capped to the
            // latest report where they only lower (`Ledger.lowered`: with a budget below the server's limit, or a
            // burst, a server that trues up but whose bucket is never near full would leave every call at its
            // estimate for good were it held back).
            if (
              observation.limit !== undefined && observation.limit > 0 && point.entry !== undefined &&
              since.state === "settled"
            ) {
              ledger.learnCharging(point.entry, observation.limit, remaining, cut !== undefined)
              // (a refusal's figures do not count: a refused call settles to nothing)
              if (cut === undefined && ledger.amountOf(point.entry) > 0) {
                ledger.lowered = {
                  sequence: point.sequence,
                  from: at,
                  level: remaining,
                  bucket: { capacity: observation.limit, refillPerMs: observation.limit / windowMillis }
                }
              }
            }
            // about calls that reached the server before those of a report adopted already: it knows less (and
            // would take back what that one gave, as it counts their over-estimates)
            if (cut !== undefined && cut < ledger.absorbed) return
            // Of a herd, the report only lowers, and on the server's own limit (`own`) the calls sent with this one
            // (within REPORT_SKEW_MILLIS after it, and before the latest the report was made) count as seen by the
            // server: they may have reached it first (the order a herd arrives in is nobody's). Counted as not seen,
            // every report of a herd but its first arrival's lowered the level by the calls that did: behind a
            // network that reorders a herd of 300, the level sank 264 below the server's and the calls after it
            // waited 53 s (OpenAiWayThere.test.ts). Lowered to the report taken so, the level goes only as low as the
            // server's certainly is; the last of the herd to arrive reports the rest, and the level already carries
            // the herd. Elsewhere (a budget above or below the server's limit, a shared store) the level is not the
            // server's, and a report is the only news of what it holds: the herd's calls after this one count as not
            // seen (a herd that arrives in order is the common case; one that does not leaves the level low).
            const aged = replayFrom(
              cut ?? (herd
                ? Math.max(
                  point.sequence,
                  ledger.sentBy(Math.min(from + REPORT_SKEW_MILLIS, at), Number.MAX_SAFE_INTEGER)
                )
                : point.sequence)
            )
            if (aged === undefined) return
            if (cut !== undefined) {
              // Adopted, the calls sent just before this one (after `cut`) count as not seen by the server, though
              // it has most likely seen them (they left first): a lower bound, which raises the level only where
              // it is above the local one. Where it is not, adopting it would count those calls twice, and every
              // later report of the same burst (the same cut) would again: the level would sink by all the calls
              // answered so far. Then the report is folded in by send order (as one that only lowers): lowered to
              // it where it is lower, and the refunds of the calls it counted raise the level only up to it.
              const ordered = cut === point.sequence ? aged : replayFrom(point.sequence)
              // what the calls sent up to `cut`, within the reports' longest recent lag before the answered one (at least
              // REPORT_SKEW_MILLIS), that had no answer when it left charged (see below); where the dimension is not
              // exact, only the share of them the same answer's exact report showed unseen
              const share = ledger.exact ? 1 : point.unseen?.get(scope) ?? 0
              const windowStart = from - Math.max(REPORT_SKEW_MILLIS, ledger.lagAt(now))
              // and those sent before it that are stranded (`Ledger.stranded`: no report of theirs, nor a first one of a
              // call sent before them, has come since they left, so none shows how long their way is)
              const stranded = share > 0 ? ledger.stranded(cut, windowStart) : 0
              const unanswered = share > 0 ? ledger.openAt(cut, from, windowStart) + stranded : 0
              const local = (ordered === undefined || ordered === aged) && !(unanswered > 0)
                ? undefined
                : (yield* store.levels([target.spec], [])).levels[0]
              let open = 0
              if (local !== undefined && unanswered > 0) {
                if (ledger.exact) {
                  // the rise above the level: where a call costs the server what it costs here, only calls it had not
                  // counted explain it, that many of those (at most all of them: see below)
                  open = Math.min(unanswered, Math.max(0, aged - local))
                  ;((point as { unseen: Map<string, number> | undefined }).unseen ??= new Map()).set(
                    scope,
                    open / unanswered
                  )
                } else {
                  open = share * unanswered
                }
              }
              if (ordered !== undefined && ordered !== aged && local !== undefined && aged < Math.min(local, ordered)) {
                ledger.counted = point.sequence
                ledger.credit = Math.max(0, ordered - local)
                if (point.entry === undefined || point.entry !== point.sequence) {
                  const counted = (point as { counted: Array<string> | undefined }).counted ??= []
                  if (!counted.includes(target.spec.id)) counted.push(target.spec.id)
                }
                return yield* store.observe(target.spec, Math.max(-target.spec.capacity, ordered))
              }
              remaining = Math.max(-target.spec.capacity, aged)
              // Raised, only as far as the calls sent before `cut` and not answered when the answered one left leave
              // room, on a dimension counted exactly (`Ledger.exact`: requests): counted as seen by the server, they may
              // still be on their way (requests queued for connections or behind the client's CPU reach it seconds
              // after calls sent later on an open connection), and where each call costs the server what it costs
              // here, a report above the level is news of calls the server has not seen, not of room. Only the calls
              // sent within the longest lag the reports showed over the last 2 s (a call's departure to the latest its
              // report can have been made, `Ledger.lagAt`; at least REPORT_SKEW_MILLIS) count: a call sent longer ago
              // has had the time the others took to arrive (counting every call on its way left the level low for good
              // once a report had lowered it: 1.05x -> 1.07-1.09x with limits given). Over HTTP under load, a call sent
              // after a herd of 1,050 was answered with 893 requests left while ~900 of the herd, sent 2 s before it,
              // were still on their way: adopted, the level rose from 1 to 879 and the calls let out on it met ~75 × 429
              // (`pnpm bench:openai --shapes many-small`, learned). On a dimension a server trues up (tokens), the calls
              // on their way are at their usage there and at their estimate here, and a report above the level is
              // mostly that room (few large calls: `OpenAiFewLarge.test.ts`): there only the share of them that the same
              // answer's exact report showed unseen is held back (`SendPoint.unseen`: the requests are synced first). Lowered, the
              // report is taken as it is.
              // Their refunds then raise the level back only as far as it was held back (as a report folded in by send
              // order: `Ledger.counted`, `Ledger.credit`).
              const held = open > 0 && local !== undefined && remaining > local
              if (held) {
                if (remaining - open <= local) return
                remaining -= open
                // the calls sent before the window (before its oldest stranded call, where any counted: it is at or
                // before those) the report counts as the server charged them (their refunds are its already); those
                // after, as far as they were held back
                ledger.absorbed = Math.max(
                  ledger.absorbed,
                  stranded > 0 ? ledger.firstStranded() - 1 : ledger.sentBy(windowStart, cut)
                )
                ledger.counted = cut
                ledger.credit = open
              } else {
                ledger.absorbed = cut
                ledger.counted = cut
                ledger.credit = 0
              }
              const absorbed = (point as { absorbed: Array<string> | undefined }).absorbed ??= []
              if (!absorbed.includes(target.spec.id)) absorbed.push(target.spec.id)
              yield* store.track!(target.spec, remaining)
              // the level may have risen: waiters planned on the old one look again
              return signal()
            }
            remaining = Math.max(-target.spec.capacity, aged)
            if (observation.refusal === true && ledger.counted < point.sequence) {
              // the refusing bucket's figure, the calls sent up to the refused one at the server's charge (the refused
              // one not at all, and replayed from after it): their refunds are in it already, so they raise the
              // level only as far as it leaves room above the level (as a report folded in by send order)
              const local = (yield* store.levels([target.spec], [])).levels[0]
              ledger.counted = point.sequence
              ledger.credit = Math.max(0, remaining - local)
            }
          }
        }
        if (!figures) return
        // a report lowers the level to the server's, which has what its bucket lost: a hold given back after it
        // would count that twice (`coldHolds`)
        if (ledger !== undefined) ledger.coldHold = 0
        yield* store.observe(target.spec, remaining)
      })

    const close: Service["close"] = (scope, reason, cause) =>
      Effect.sync(() => {
        closed.set(scope, new ScopeClosed(cause === undefined ? { scope, reason } : { scope, reason, cause }))
        epoch++
        signal()
      })

    const reopen: Service["reopen"] = (scope) =>
      Effect.sync(() => {
        closed.delete(scope)
      })

    const ramp: Service["ramp"] = (scope, dimension, slowStart) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        ramps.set(
          scope,
          dimension,
          slowStart === undefined ? undefined : {
            from: slowStart.from,
            doublingMillis: Duration.toMillis(Duration.decode(slowStart.doubling)),
            to: slowStart.to,
            continued: slowStart.continued,
            overshoot: slowStart.overshoot
          },
          now
        )
        // the waiters it held (or the ones a new ramp holds) look again
        epoch++
        signal()
      })

    /** Which scopes' buckets the level gauges report (see `RateLimiter.Options.metricScopes`). */
    const metricScope = options.metricScopes ?? Metrics.sharedScope
    /** Each bucket's series labels, made once (the gauges' hooks are cached by the labels array). */
    const bucketLabelCache = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
    const bucketLabels = (scope: string, dimension: string, window: Duration.Duration) => {
      const key = `${scope}\u0000${dimension}\u0000${Duration.toMillis(window)}`
      let tags = bucketLabelCache.get(key)
      if (tags === undefined) {
        tags = Arr.union(
          [
            MetricLabel.make("scope", scope),
            MetricLabel.make("dimension", dimension),
            MetricLabel.make("window", Duration.format(window))
          ],
          labels
        )
        bucketLabelCache.set(key, tags)
      }
      return tags
    }

    const levelInfos = (resolved: ReadonlyArray<Resolved>, levels: ReadonlyArray<number>): Array<LevelInfo> =>
      resolved.map((entry, i) => ({
        scope: entry.spec.scope,
        dimension: entry.spec.dimension,
        limit: entry.limit,
        learned: entry.learned,
        level: levels[i],
        fullInMillis: levels[i] >= entry.spec.capacity
          ? 0
          : Math.ceil((entry.spec.capacity - levels[i]) / entry.spec.refillPerMs)
      }))

    const peek: Service["peek"] = (scopes, cost) =>
      Effect.gen(function*() {
        const resolved = scopes.flatMap(resolve)
        const gates: Array<LimiterStore.GateKey> = []
        for (const scope of scopes) {
          gates.push(gateKey(scope, "*"))
          for (const dimension in cost) if (cost[dimension] > 0) gates.push(gateKey(scope, dimension))
        }
        const read = yield* store.levels(resolved.map((entry) => entry.spec), gates)
        let waitMillis = 0
        let binding: Option.Option<{ scope: string; dimension: string; reason: string }> = Option.none()
        const closedError = closedFor(scopes)
        if (closedError !== undefined) {
          waitMillis = Number.POSITIVE_INFINITY
          binding = Option.some({ scope: closedError.scope, dimension: "*", reason: "closed" })
        }
        gates.forEach((gate, i) => {
          if (read.gates[i] > waitMillis) {
            waitMillis = read.gates[i]
            binding = Option.some({ scope: gate.scope, dimension: gate.dimension, reason: "gate" })
          }
        })
        resolved.forEach((entry, i) => {
          const amount = cost[entry.limit.dimension] ?? 0
          if (!(amount > 0)) return
          // a cost above a burst (within the amount) waits for a full bucket, as `acquire` does
          const wait = amount <= entry.spec.capacity || aboveBurstFits(entry, amount)
            ? Bucket.waitForDebit(read.levels[i], amount, entry.spec.capacity, entry.spec.refillPerMs)
            : Bucket.waitFor(read.levels[i], amount, entry.spec.capacity, entry.spec.refillPerMs)
          if (wait > waitMillis) {
            waitMillis = wait
            binding = Option.some({ scope: entry.spec.scope, dimension: entry.spec.dimension, reason: "limit" })
          }
        })
        const ramped = ramps.held(scopes, cost, yield* Clock.currentTimeMillis)
        if (ramped !== undefined && ramped.waitMillis > waitMillis) {
          waitMillis = ramped.waitMillis
          binding = Option.some({ scope: ramped.scope, dimension: ramped.dimension, reason: "ramp" })
        }
        let ahead = 0
        if (queued > 0) {
          const keys = new Set(resolved.map((entry) => entry.spec.id))
          for (const lane of lanes) {
            for (const waiter of lane) {
              if (!waiter.done && waiter.prepared.debits.some((debit) => keys.has(debit.bucket.id))) ahead++
            }
          }
        }
        return { waitMillis, binding, levels: levelInfos(resolved, read.levels), queued: ahead }
      })

    const knownScopes = (): Array<string> => {
      const scopes = new Set<string>(exact.keys())
      for (const scope of resolvedCache.keys()) scopes.add(scope)
      for (const scope of learned.keys()) scopes.add(scope)
      return Array.from(scopes)
    }

    const snapshot: Service["snapshot"] = Effect.gen(function*() {
      const scopes = knownScopes()
      const resolved = scopes.flatMap(resolve)
      const gates = Array.from(gateKeyCache.values())
      const read = yield* store.levels(resolved.map((entry) => entry.spec), gates)
      const levels = levelInfos(resolved, read.levels)
      for (let i = 0; i < levels.length; i++) {
        const info = levels[i]
        if (!metricScope(info.scope)) continue
        const tags = bucketLabels(info.scope, info.dimension, info.limit.window)
        const capacity = resolved[i].spec.capacity
        Metrics.level.unsafeUpdate(info.level, tags)
        Metrics.limit.unsafeUpdate(capacity, tags)
        // a capacity is positive (a Limit's amount and burst are): the guard only keeps a NaN out of the gauge if not
        // Stryker disable next-line ConditionalExpression,EqualityOperator: equivalent while capacities are positive
        Metrics.utilization.unsafeUpdate(capacity > 0 ? 1 - info.level / capacity : 0, tags)
      }
      let interactive = 0
      let background = 0
      for (const waiter of lanes[0]) if (!waiter.done && !waiter.inFlight) interactive++
      for (const waiter of lanes[1]) if (!waiter.done && !waiter.inFlight) background++
      Metrics.queueDepth.unsafeUpdate(interactive, admittedLabels[0])
      Metrics.queueDepth.unsafeUpdate(background, admittedLabels[1])
      return {
        now: read.now,
        levels,
        gates: gates
          .map((gate, i) => ({ scope: gate.scope, dimension: gate.dimension, remainingMillis: read.gates[i] }))
          .filter((gate) => gate.remainingMillis > 0),
        closed: Array.from(closed.values(), (error) => ({ scope: error.scope, reason: error.reason })),
        waiting: { interactive, background }
      }
    })

    const limitsOf: Service["limitsOf"] = (scope) => resolve(scope).map((entry) => entry.limit)

    return {
      acquire,
      acquireScoped,
      withPermit,
      tryAcquire,
      block,
      sync,
      close,
      reopen,
      ramp,
      peek,
      snapshot,
      limitsOf
    } satisfies Service
  })
