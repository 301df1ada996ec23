/**
 * One routed request, as named steps: {@link pick} the next candidate (re-reading its live state: an open
 * breaker, a closed scope or a saturated pool is skipped, parked or waited on), {@link attempt} it, and on
 * failure {@link afterFailure} applies the rule for the error's `_tag` (retry in place, constrain the next
 * candidate, or stop). When the plan runs out, {@link waitOnParked} waits where the wait is least, or the
 * request fails. The state of the request lives in one {@link Run}.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as CircuitBreaker from "../CircuitBreaker.js"
import type * as RateLimiter from "../RateLimiter.js"
import type {
  Action,
  Attempt,
  Candidate,
  CandidateState,
  Decision,
  FallbackRules,
  Request,
  RoutePlan,
  Step
} from "../Router.js"
import { NoCandidate, reportsTotal, spillsTotal } from "../Router.js"
import * as internal from "./router.js"

// -----------------------------------------------------------------------------
// the router a run uses
// -----------------------------------------------------------------------------

/** @internal */
export interface Env {
  readonly rules: FallbackRules
  readonly report: ReadonlySet<string>
  readonly maxWaits: number
  /** The live state of a candidate for the request. */
  readonly stateOf: (c: Candidate, request: Request) => Effect.Effect<CandidateState>
  /** Counts a routing outcome of a candidate (`sluice_router_decisions_total`). */
  readonly count: (candidateId: string, outcome: string) => Effect.Effect<void>
  /** Records a finished decision (totals, recent decisions, span, `onDecision`). */
  readonly finish: (decision: Decision) => Effect.Effect<void>
  readonly statsOf: (candidateId: string) => internal.Stats
  /** Runs a call under the candidate's breaker, when the router wraps it. */
  readonly guard: <A, E, R>(
    c: Candidate,
    call: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | CircuitBreaker.CircuitOpen, R>
}

// -----------------------------------------------------------------------------
// rules
// -----------------------------------------------------------------------------

/**
 * The action a rule set gives a tag for a lane.
 *
 * @internal
 */
export const actionFor = (rules: FallbackRules, tag: string | undefined, lane: RateLimiter.Lane): Action => {
  const rule = (tag === undefined ? undefined : rules[tag]) ?? rules["*"] ?? "none"
  return typeof rule === "string" ? rule : rule[lane]
}

/**
 * The scope a candidate is saturated or gated on now, or else its own pool.
 *
 * @internal
 */
export const blockedScopes = (state: CandidateState): ReadonlyArray<string> =>
  Option.match(state.binding, {
    onSome: (b) => [b.scope],
    onNone: () => {
      const pool = internal.poolOf(state.candidate)
      return pool === undefined ? [] : [pool]
    }
  })

/**
 * Why a candidate that can never be admitted now is skipped.
 *
 * @internal
 */
export const neverAdmitted = (state: CandidateState): string =>
  Option.match(state.binding, {
    onNone: () => "never admitted",
    onSome: (b) => b.reason === "closed" ? `scope ${b.scope} closed` : `never admitted on ${b.scope}`
  })

// -----------------------------------------------------------------------------
// the state of one request
// -----------------------------------------------------------------------------

/**
 * What one request has been through: the steps so far, the candidates tried, and the constraints the
 * fallbacks have set on the next candidate.
 *
 * @internal
 */
export class Run<E> {
  readonly steps: Array<Step> = []
  readonly reported: Array<{ candidate: string; error: string }> = []
  readonly tried = new Set<string>()
  /** "wait" retries per candidate. */
  readonly waits = new Map<string, number>()
  /** After `larger-context`: the next candidate's window must be larger than this. */
  minContext = -1
  /** Scopes avoided after an "other-pool" fallback: the binding scope, or the failed candidate's pool. */
  readonly avoidScopes: Array<string> = []
  /** The part of them avoided after a failure (not merely because a pool was saturated). */
  readonly failedScopes: Array<string> = []
  readonly avoidOrganizations = new Set<string>()
  requireOtherOrg = false
  /** The candidate traffic is leaving, and why: recorded as a spill by the next attempt elsewhere. */
  pending: { readonly from: string; readonly reason: string } | undefined = undefined
  lastError: Option.Option<E> = Option.none()
  /** Saturated candidates passed over for another pool: waited on if nothing else serves. */
  readonly parked: Array<CandidateState> = []
  /** The candidate to call again next (after a "wait"). */
  retry: Candidate | undefined = undefined

  constructor(
    readonly req: Request,
    /** Every candidate's state when the request was planned. */
    readonly all: ReadonlyArray<CandidateState>,
    readonly plan: RoutePlan,
    readonly skipped: ReadonlyArray<{ readonly candidate: string; readonly reason: string }>
  ) {}

  get lane(): RateLimiter.Lane {
    return this.req.priority
  }

  /**
   * Whether `c` meets the constraints the fallbacks so far have set (tried or not); `scopes` are the
   * scopes to avoid (all of them for the next candidate, only those of failures for a wait).
   */
  meetsConstraints(c: Candidate, scopes: ReadonlyArray<string> = this.avoidScopes): boolean {
    if (this.minContext >= 0 && !((c.contextWindow ?? 0) > this.minContext)) return false
    if (internal.sharesScope(internal.scopesOf(c, this.req), scopes)) return false
    if (this.requireOtherOrg && (c.organization === undefined || this.avoidOrganizations.has(c.organization))) {
      return false
    }
    return true
  }

  eligibleNext(c: Candidate): boolean {
    return !this.tried.has(c.id) && this.meetsConstraints(c)
  }

  /** Whether the rules move `error` on `c` to another candidate, and one is left that takes it. */
  fallsOver(rules: FallbackRules, c: Candidate, error: unknown): boolean {
    const action = actionFor(rules, internal.tagOf(error), this.lane)
    if (action === "none" || action === "wait") return false
    const pool = internal.poolOf(c)
    return this.plan.order.some(({ candidate: o }) => {
      if (o.id === c.id || !this.eligibleNext(o)) return false
      switch (action) {
        case "next":
          return true
        case "larger-context":
          return (o.contextWindow ?? 0) > Math.max(this.minContext, c.contextWindow ?? 0)
        case "other-pool":
          return pool === undefined || !internal.sharesScope(internal.scopesOf(o, this.req), [pool])
        case "other-organization":
          return o.organization !== undefined && o.organization !== c.organization &&
            !this.avoidOrganizations.has(o.organization)
      }
    })
  }

  /** Whether waiting `waitMillis` from `now` is allowed: by the plan, and within the deadline. */
  deadlineAllows(waitMillis: number, now: number): boolean {
    return this.plan.wait !== false && Number.isFinite(waitMillis) &&
      (this.req.deadline === undefined || now + waitMillis <= this.req.deadline)
  }

  /** Whether another pool's candidate is left for `state` to spill to. */
  hasOtherPool(state: CandidateState, blocked: ReadonlyArray<string>): boolean {
    return this.plan.order.some((o) =>
      o.candidate.id !== state.candidate.id && this.eligibleNext(o.candidate) &&
      !internal.sharesScope(internal.scopesOf(o.candidate, this.req), blocked)
    )
  }

  noCandidate(): NoCandidate {
    return new NoCandidate({
      ...(this.req.task === undefined ? {} : { task: this.req.task }),
      skipped: [
        ...this.skipped,
        ...this.steps.flatMap((s) =>
          s._tag === "Skipped"
            ? [{ candidate: s.candidate, reason: s.reason }]
            : s._tag === "Failed"
            ? [{ candidate: s.candidate, reason: `failed with ${s.error} (${s.action})` }]
            : []
        )
      ]
    })
  }
}

// -----------------------------------------------------------------------------
// steps
// -----------------------------------------------------------------------------

/** What {@link pick} found: a candidate to call, nothing yet (look again), or the plan's end. */
type Next =
  | { readonly _tag: "Call"; readonly candidate: Candidate }
  | { readonly _tag: "Again" }
  | { readonly _tag: "Exhausted" }

const again: Next = { _tag: "Again" }
const exhausted: Next = { _tag: "Exhausted" }

/** The decision so far, ended now. */
const decision = <E>(run: Run<E>, outcome: "success" | "failure", chosen: Option.Option<string>) =>
  Effect.map(Clock.currentTimeMillis, (endedAt): Decision => ({
    task: run.req.task,
    priority: run.lane,
    startedAt: run.req.now,
    endedAt,
    planned: run.plan.order.map((s) => s.candidate.id),
    skipped: run.skipped,
    steps: run.steps,
    chosen,
    outcome,
    spilled: Option.isSome(chosen) && chosen.value !== run.plan.order[0]?.candidate.id,
    reported: run.reported
  }))

/** Ends the request: records its decision, and returns it. */
const finish = <E>(env: Env, run: Run<E>, outcome: "success" | "failure", chosen: Option.Option<string>) =>
  Effect.tap(decision(run, outcome, chosen), env.finish)

/** Passes over a candidate before calling it; traffic leaving it is a spill. */
const skip = <E>(env: Env, run: Run<E>, c: Candidate, at: number, reason: string, spill: string) =>
  Effect.suspend(() => {
    run.tried.add(c.id)
    run.steps.push({ _tag: "Skipped", candidate: c.id, at, reason })
    run.pending ??= { from: c.id, reason: spill }
    return env.count(c.id, "skipped")
  })

/**
 * The next candidate: the one to call again after a "wait", else the plan's next eligible one, checked
 * against its live state ({@link admitNow}).
 *
 * @internal
 */
export const pick = <E>(env: Env, run: Run<E>): Effect.Effect<Next> =>
  Effect.suspend(() => {
    const retry = run.retry
    if (retry !== undefined) {
      run.retry = undefined
      const candidate = run.all.find((s) => s.candidate.id === retry.id)?.candidate ?? retry
      return Effect.succeed<Next>({ _tag: "Call", candidate })
    }
    const next = run.plan.order.find((s) => run.eligibleNext(s.candidate))
    return next === undefined ? Effect.succeed(exhausted) : admitNow(env, run, next)
  })

/**
 * Re-reads a candidate's live state (a pool may have filled since the plan was made): an open breaker
 * or a scope that never admits is skipped; a saturated pool is left for another pool when the rule for
 * `Saturated` says so and one is left, else waited on (where the wait is least, if other pools were
 * passed over as saturated too).
 */
const admitNow = <E>(env: Env, run: Run<E>, planned: CandidateState): Effect.Effect<Next> =>
  Effect.gen(function*() {
    const candidate = planned.candidate
    const fresh = yield* env.stateOf(candidate, run.req)
    const at = yield* Clock.currentTimeMillis
    if (fresh.breaker === "Open") {
      yield* skip(env, run, candidate, at, "circuit breaker open", "CircuitOpen")
      return again
    }
    if (fresh.waitMillis === Number.POSITIVE_INFINITY) {
      // closed (e.g. after a quota error) or never admitted since the plan was made
      yield* skip(env, run, candidate, at, neverAdmitted(fresh), "ScopeClosed")
      return again
    }
    if (fresh.waitMillis > 0) return yield* saturated(env, run, planned, fresh, at)
    return { _tag: "Call", candidate }
  })

/** A candidate whose pool cannot admit the request now: spill, or wait (see {@link admitNow}). */
const saturated = <E>(
  env: Env,
  run: Run<E>,
  planned: CandidateState,
  fresh: CandidateState,
  at: number
): Effect.Effect<Next> =>
  Effect.gen(function*() {
    const c = fresh.candidate
    const action = actionFor(env.rules, "Saturated", run.lane)
    const blocked = blockedScopes(fresh)
    const wantsWait = action === "wait" && run.deadlineAllows(fresh.waitMillis, at)
    if (!wantsWait && action !== "none" && run.hasOtherPool(fresh, blocked)) {
      run.parked.push(fresh)
      const binding = Option.match(fresh.binding, {
        onNone: () => "",
        onSome: (b) => ` on ${b.scope} ${b.dimension} (${b.reason})`
      })
      yield* skip(env, run, c, at, `saturated: about ${Math.ceil(fresh.waitMillis)}ms wait${binding}`, "Saturated")
      if (action !== "next") { for (const scope of blocked) run.avoidScopes.push(scope) }
      return again
    }
    if (wantsWait || run.parked.length === 0) {
      run.steps.push({
        _tag: "Waited",
        candidate: c.id,
        at,
        reason: wantsWait ? "Saturated" : "no other pool",
        estimatedWaitMillis: fresh.estimatedWaitMillis
      })
      return { _tag: "Call", candidate: c }
    }
    // every other pool is saturated too: wait where the wait (queue included) is least
    const fresher = yield* Effect.forEach(run.parked, (p) => env.stateOf(p.candidate, run.req))
    const best = internal.stableSortBy([fresh, ...fresher], (x) => x.estimatedWaitMillis)[0]
    // the estimate recorded is the chosen parked candidate's now, or this one's as planned
    let chosen = planned
    if (best.candidate.id !== c.id) {
      run.tried.add(c.id)
      run.tried.delete(best.candidate.id)
      run.parked.splice(run.parked.findIndex((p) => p.candidate.id === best.candidate.id), 1, fresh)
      chosen = best
    }
    run.steps.push({
      _tag: "Waited",
      candidate: chosen.candidate.id,
      at,
      reason: "least wait of the saturated pools",
      estimatedWaitMillis: chosen.estimatedWaitMillis
    })
    return { _tag: "Call", candidate: chosen.candidate }
  })

/**
 * Nothing left in the plan: wait on the least-loaded parked candidate if allowed, else fail. A parked
 * candidate still has to meet what the fallbacks since require (a larger window, another organization,
 * another pool): a spill target's 503 should not lose the request when the pool it spilled from will
 * admit it after a wait.
 *
 * @internal
 */
export const waitOnParked = <E>(env: Env, run: Run<E>): Effect.Effect<void, E | NoCandidate> =>
  Effect.gen(function*() {
    const at = yield* Clock.currentTimeMillis
    const fresher = yield* Effect.forEach(
      run.parked.filter((p) => run.meetsConstraints(p.candidate, run.failedScopes)),
      (p) => env.stateOf(p.candidate, run.req)
    )
    const best = internal.stableSortBy(
      fresher.filter((s) => s.breaker !== "Open" && Number.isFinite(s.waitMillis)),
      (s) => s.estimatedWaitMillis
    )[0]
    if (best !== undefined && run.deadlineAllows(best.waitMillis, at)) {
      run.parked.length = 0
      run.tried.delete(best.candidate.id)
      run.steps.push({
        _tag: "Waited",
        candidate: best.candidate.id,
        at,
        reason: "no other pool could admit now",
        estimatedWaitMillis: best.waitMillis
      })
      run.retry = best.candidate
      return
    }
    yield* finish(env, run, "failure", Option.none())
    return yield* (Option.isSome(run.lastError) ? Effect.fail(run.lastError.value) : Effect.fail(run.noCandidate()))
  })

/**
 * Calls `f` on a candidate (under its breaker when the router wraps it), recording the spill that led
 * here, the attempt and its outcome (the candidate's latency and error-rate statistics).
 *
 * @internal
 */
export const attempt = <A, E, R>(
  env: Env,
  run: Run<E>,
  c: Candidate,
  f: (candidate: Candidate, attempt: Attempt) => Effect.Effect<A, E, R>
): Effect.Effect<Either.Either<A, E | CircuitBreaker.CircuitOpen>, never, R> =>
  Effect.gen(function*() {
    const at = yield* Clock.currentTimeMillis
    const pending = run.pending
    if (pending !== undefined && pending.from !== c.id) {
      run.steps.push({ _tag: "Spilled", from: pending.from, to: c.id, at, reason: pending.reason })
      yield* Metric.update(
        spillsTotal.pipe(
          Metric.tagged("from", pending.from),
          Metric.tagged("to", c.id),
          Metric.tagged("reason", pending.reason)
        ),
        1
      )
    }
    run.pending = undefined
    run.tried.add(c.id)
    const n = run.steps.filter((s) => s._tag === "Attempt" && s.candidate === c.id).length + 1
    const number = run.steps.filter((s) => s._tag === "Attempt").length + 1
    run.steps.push({ _tag: "Attempt", candidate: c.id, at, attempt: n })
    yield* env.count(c.id, "chosen")
    const call = f(c, { number, fallsOver: (error) => run.fallsOver(env.rules, c, error), arrivedAt: run.req.now })
    const result = yield* Effect.either(
      env.guard(c, call).pipe(Effect.withSpan("Router.attempt", {
        attributes: { "sluice.router.candidate": c.id },
        captureStackTrace: false
      }))
    )
    const end = yield* Clock.currentTimeMillis
    const s = env.statsOf(c.id)
    if (Either.isRight(result)) {
      s.latencyObserved(end - at)
      s.outcome(true, end)
      run.steps.push({ _tag: "Succeeded", candidate: c.id, at: end, latencyMillis: end - at })
      yield* env.count(c.id, "succeeded")
    } else {
      s.outcome(false, end)
      yield* env.count(c.id, "failed")
    }
    return result
  })

/**
 * A success ends the request with its decision.
 *
 * @internal
 */
export const succeed = <A, E>(env: Env, run: Run<E>, c: Candidate, value: A) =>
  Effect.map(finish(env, run, "success", Option.some(c.id)), (d) => [value, d] as const)

/**
 * After a failed attempt: the rule for the error's `_tag` either calls the same candidate again (`wait`,
 * within `maxWaits` and the deadline; past them it is `other-pool`), stops with the error (`none`), or
 * constrains the next candidate (a larger window, another pool, another organization). Reportable
 * failures are reported whatever happens next.
 *
 * @internal
 */
export const afterFailure = <E>(env: Env, run: Run<E>, c: Candidate, error: E): Effect.Effect<void, E> =>
  Effect.gen(function*() {
    run.lastError = Option.some(error)
    const tag = internal.tagOf(error)
    const name = tag ?? "unknown"
    const at = yield* Clock.currentTimeMillis
    let action = actionFor(env.rules, tag, run.lane)
    if (action === "wait") {
      if (yield* waitInPlace(env, run, c, name, at)) return
      action = "other-pool"
    }
    run.steps.push({ _tag: "Failed", candidate: c.id, at, error: name, action })
    if (action === "other-organization" || (tag !== undefined && env.report.has(tag))) {
      yield* report(run, c, tag, at)
    }
    if (action === "none") {
      yield* finish(env, run, "failure", Option.none())
      return yield* Effect.fail(error)
    }
    yield* constrain(env, run, c, action)
    run.pending = { from: c.id, reason: name }
  })

/** A "wait" on the same candidate, if its waits and the deadline allow: the call is made again. */
const waitInPlace = <E>(env: Env, run: Run<E>, c: Candidate, name: string, at: number) =>
  Effect.map(env.stateOf(c, run.req), (estimate) => {
    const used = run.waits.get(c.id) ?? 0
    if (!(used < env.maxWaits && run.deadlineAllows(estimate.waitMillis, at))) return false
    run.waits.set(c.id, used + 1)
    run.steps.push({ _tag: "Failed", candidate: c.id, at, error: name, action: "wait" })
    run.steps.push({ _tag: "Waited", candidate: c.id, at, reason: name, estimatedWaitMillis: estimate.waitMillis })
    run.retry = c
    return true
  })

/** Records a failure that is always reported: the decision, a metric and a warning. */
const report = <E>(run: Run<E>, c: Candidate, tag: string | undefined, at: number) =>
  Effect.suspend(() => {
    const name = tag ?? "unknown"
    run.reported.push({ candidate: c.id, error: name })
    run.steps.push({ _tag: "Reported", candidate: c.id, at, error: name })
    return Effect.zipRight(
      Metric.update(reportsTotal.pipe(Metric.tagged("candidate", c.id), Metric.tagged("error", name)), 1),
      Effect.logWarning(`router: ${tag ?? "unknown error"} on candidate ${c.id}`).pipe(
        Effect.annotateLogs({ candidate: c.id, organization: c.organization ?? "" })
      )
    )
  })

/** What a fallback requires of the next candidate. */
const constrain = <E>(env: Env, run: Run<E>, c: Candidate, action: Action): Effect.Effect<void> => {
  switch (action) {
    case "larger-context":
      run.minContext = Math.max(run.minContext, c.contextWindow ?? 0)
      return Effect.void
    case "other-pool":
      return Effect.map(env.stateOf(c, run.req), (state) => {
        for (const scope of blockedScopes(state)) {
          run.avoidScopes.push(scope)
          run.failedScopes.push(scope)
        }
      })
    case "other-organization":
      run.requireOtherOrg = true
      if (c.organization !== undefined) run.avoidOrganizations.add(c.organization)
      return Effect.void
    default:
      return Effect.void
  }
}

/**
 * Routes one request through its plan: pick, attempt, and after a failure apply the rules, until a
 * candidate succeeds or the request fails.
 *
 * @internal
 */
export const runPlan = <A, E, R>(
  env: Env,
  run: Run<E>,
  f: (candidate: Candidate, attempt: Attempt) => Effect.Effect<A, E, R>
): Effect.Effect<readonly [A, Decision], E | NoCandidate, R> =>
  Effect.gen(function*() {
    while (true) {
      const next = yield* pick(env, run)
      if (next._tag === "Again") continue
      if (next._tag === "Exhausted") {
        yield* waitOnParked(env, run)
        continue
      }
      const result = yield* attempt(env, run, next.candidate, f)
      if (Either.isRight(result)) return yield* succeed(env, run, next.candidate, result.right)
      // a `CircuitOpen` from the router's own breaker is handled by the rules like the call's errors
      yield* afterFailure(env, run, next.candidate, result.left as E)
    }
  })
