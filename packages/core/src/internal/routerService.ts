/**
 * The router service: the live state of each candidate (from the limiter's peeks, the breaker and the
 * router's own statistics), plans, decision records, and `runWithDecision` (the steps of one request
 * are in `routerRun.ts`).
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as CircuitBreaker from "../CircuitBreaker.js"
import * as RateLimiter from "../RateLimiter.js"
import type {
  Attempt,
  Candidate,
  CandidateState,
  Decision,
  FallbackRules,
  NoCandidate,
  Request,
  RoutePlan,
  Router,
  RouteRequest,
  Skipped,
  Step,
  Summary
} from "../Router.js"
import { baseRules, decisionsTotal, eligible, priority } from "../Router.js"
import * as internal from "./router.js"
import * as Run from "./routerRun.js"

/** One line per step, for the span. */
const describeStep = (step: Step): string => {
  switch (step._tag) {
    case "Attempt":
      return `attempt ${step.candidate}#${step.attempt}`
    case "Succeeded":
      return `succeeded ${step.candidate}`
    case "Failed":
      return `failed ${step.candidate} ${step.error} -> ${step.action}`
    case "Skipped":
      return `skipped ${step.candidate} (${step.reason})`
    case "Spilled":
      return `spilled ${step.from} -> ${step.to} (${step.reason})`
    case "Waited":
      return `waited ${step.candidate} (${step.reason})`
    case "Reported":
      return `reported ${step.candidate} ${step.error}`
  }
}

/**
 * The live state of one candidate for one request: the limiter's estimate on exactly the scopes the call
 * will charge (with the queue ahead, scope by scope), the breaker, and the router's statistics.
 */
const liveState = (
  limiter: RateLimiter.Service,
  breaker: Option.Option<CircuitBreaker.CircuitBreaker.Service>,
  stats: internal.Stats,
  c: Candidate,
  request: RouteRequest
): Effect.Effect<CandidateState> =>
  Effect.gen(function*() {
    const scopes = internal.scopesOf(c, request)
    const estimate = yield* limiter.peek(scopes, request.cost).pipe(Effect.option)
    const breakerState: CircuitBreaker.State = Option.isSome(breaker)
      ? yield* breaker.value.state(c.breakerKey ?? c.id)
      : "Closed"
    const headroom: Record<string, number> = {}
    const headroomFraction: Record<string, number> = {}
    if (Option.isSome(estimate)) {
      for (const info of estimate.value.levels) {
        const left = info.level - (request.cost[info.dimension] ?? 0)
        headroom[info.dimension] = Math.min(headroom[info.dimension] ?? Number.POSITIVE_INFINITY, left)
        const fraction = info.limit.capacity > 0 ? info.level / info.limit.capacity : 0
        headroomFraction[info.dimension] = Math.min(
          headroomFraction[info.dimension] ?? Number.POSITIVE_INFINITY,
          fraction
        )
      }
    }
    let estimatedWaitMillis = Option.isSome(estimate) ? estimate.value.waitMillis : 0
    if (Option.isSome(estimate) && estimate.value.queued > 0 && Number.isFinite(estimatedWaitMillis)) {
      // the queue ahead, scope by scope: a queue on a shared organization bucket is not this pool's
      for (const scope of scopes) {
        const perScope = yield* limiter.peek([scope], request.cost).pipe(Effect.option)
        if (Option.isNone(perScope) || perScope.value.queued === 0) continue
        for (const info of perScope.value.levels) {
          const amount = request.cost[info.dimension] ?? 0
          const refill = info.limit.amount / info.limit.windowMillis
          if (!(amount > 0) || !(refill > 0)) continue
          const behind = ((perScope.value.queued + 1) * amount - info.level) / refill
          estimatedWaitMillis = Math.max(estimatedWaitMillis, behind)
        }
      }
    }
    return {
      candidate: c,
      estimatedWaitMillis,
      waitMillis: Option.isSome(estimate) ? estimate.value.waitMillis : 0,
      binding: Option.isSome(estimate) ? estimate.value.binding : Option.none(),
      headroom,
      headroomFraction,
      queued: Option.isSome(estimate) ? estimate.value.queued : 0,
      breaker: breakerState,
      latencyMillis: stats.latency,
      ttftMillis: stats.ttft,
      errorRate: stats.errorRate,
      calls: stats.calls,
      price: internal.priceOf(c, request)
    } satisfies CandidateState
  })

/** The request as strategies see it: defaults filled in, the time and a random number. */
const toRequest = (request: RouteRequest): Effect.Effect<Request> =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const random = request.random ?? (yield* Random.next)
    return {
      ...request,
      priority: request.priority ?? "interactive",
      deadline: internal.deadlineOf(request.deadline),
      random,
      now
    }
  })

/**
 * The strategy's plan over the requested candidates (`only`), normalised (every candidate ordered or
 * skipped once), with open breakers and scopes that never admit moved to skipped.
 */
const planFor = (
  strategy: Router.Options["strategy"] & {},
  req: Request,
  all: ReadonlyArray<CandidateState>
): RoutePlan => {
  const only = req.only
  const requested = only === undefined
    ? all
    : all.filter((s) => only.includes(s.candidate.id) || only.includes(s.candidate.model))
  const raw = strategy(req, requested)
  const normal = internal.normalize(requested, raw.order, raw.skipped)
  const order: Array<CandidateState> = []
  const skipped: Array<Skipped> = [...normal.skipped]
  if (only !== undefined) {
    for (const s of all) if (!requested.includes(s)) skipped.push({ state: s, reason: "not requested" })
  }
  for (const s of normal.order) {
    if (s.breaker === "Open") skipped.push({ state: s, reason: "circuit breaker open" })
    else if (s.waitMillis === Number.POSITIVE_INFINITY) skipped.push({ state: s, reason: Run.neverAdmitted(s) })
    else order.push(s)
  }
  return { order, skipped, wait: raw.wait }
}

/** The totals of every decision, for `summary`. */
class Totals {
  decisions = 0
  failures = 0
  spilled = 0
  reported = 0
  readonly chosen: Record<string, number> = {}
  readonly spills = new Map<string, { from: string; to: string; reason: string; count: number }>()

  add(decision: Decision): void {
    this.decisions++
    if (decision.outcome === "failure") this.failures++
    if (decision.spilled) this.spilled++
    this.reported += decision.reported.length
    if (Option.isSome(decision.chosen)) {
      this.chosen[decision.chosen.value] = (this.chosen[decision.chosen.value] ?? 0) + 1
    }
    for (const step of decision.steps) {
      if (step._tag !== "Spilled") continue
      const key = `${step.from}\u0000${step.to}\u0000${step.reason}`
      const entry = this.spills.get(key)
      if (entry === undefined) {
        this.spills.set(key, { from: step.from, to: step.to, reason: step.reason, count: 1 })
      } else entry.count++
    }
  }

  summary(): Summary {
    return {
      decisions: this.decisions,
      failures: this.failures,
      spilled: this.spilled,
      reported: this.reported,
      chosen: { ...this.chosen },
      spills: Array.from(this.spills.values(), (entry) => ({ ...entry }))
    }
  }
}

/** The span attributes of a decision. */
const annotate = (decision: Decision) =>
  Effect.annotateCurrentSpan({
    "sluice.router.planned": decision.planned.join(","),
    "sluice.router.skipped": decision.skipped.map((s) => `${s.candidate}: ${s.reason}`).join("; "),
    "sluice.router.chosen": Option.getOrElse(decision.chosen, () => ""),
    "sluice.router.outcome": decision.outcome,
    "sluice.router.spilled": decision.spilled,
    "sluice.router.steps": decision.steps.map(describeStep).join("; ")
  })

/** @internal */
export const make = (options: Router.Options): Effect.Effect<Router.Service, never, RateLimiter.RateLimiter> =>
  Effect.gen(function*() {
    const limiter = yield* RateLimiter.RateLimiter
    const breaker = yield* Effect.serviceOption(CircuitBreaker.CircuitBreaker)
    const candidates = options.candidates
    const strategy = options.strategy ?? eligible(priority)
    const rules: FallbackRules = { ...baseRules, ...options.rules }
    const alpha = options.alpha ?? 0.2
    const wrapBreaker = options.wrapBreaker ?? true
    const keep = Math.max(0, options.keepDecisions ?? 1000)
    const stats = new Map<string, internal.Stats>()
    const statsOf = (id: string): internal.Stats => {
      let s = stats.get(id)
      if (s === undefined) {
        s = new internal.Stats(alpha)
        stats.set(id, s)
      }
      return s
    }
    const recent: Array<Decision> = []
    const totals = new Totals()

    const stateOf = (c: Candidate, request: RouteRequest) => liveState(limiter, breaker, statsOf(c.id), c, request)
    const states = (request: RouteRequest) => Effect.forEach(candidates, (c) => stateOf(c, request))
    const count = (candidateId: string, outcome: string) =>
      Metric.update(decisionsTotal.pipe(Metric.tagged("candidate", candidateId), Metric.tagged("outcome", outcome)), 1)

    const finish = (decision: Decision): Effect.Effect<void> =>
      Effect.suspend(() => {
        totals.add(decision)
        if (keep > 0) {
          recent.push(decision)
          if (recent.length > keep) recent.splice(0, recent.length - keep)
        }
        const annotated = annotate(decision)
        return options.onDecision === undefined ? annotated : Effect.zipRight(annotated, options.onDecision(decision))
      })

    const env: Run.Env = {
      rules,
      report: new Set(options.report ?? []),
      maxWaits: Math.max(0, options.maxWaits ?? 3),
      stateOf,
      count,
      finish,
      statsOf,
      guard: (c, call) =>
        wrapBreaker && Option.isSome(breaker) ? breaker.value.withBreaker(c.breakerKey ?? c.id, call) : call
    }

    const observe: Router.Service["observe"] = (candidateId, observation) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const s = statsOf(candidateId)
        if (observation.latencyMillis !== undefined) s.latencyObserved(observation.latencyMillis)
        if (observation.ttftMillis !== undefined) s.ttftObserved(observation.ttftMillis)
        if (observation.success !== undefined) s.outcome(observation.success, now)
      })

    const runWithDecision = <A, E, R>(
      request: RouteRequest,
      f: (candidate: Candidate, attempt: Attempt) => Effect.Effect<A, E, R>
    ): Effect.Effect<readonly [A, Decision], E | NoCandidate, R> =>
      Effect.gen(function*() {
        const req = yield* toRequest(request)
        const all = yield* states(req)
        const plan = planFor(strategy, req, all)
        const skipped = plan.skipped.map((s) => ({ candidate: s.state.candidate.id, reason: s.reason }))
        for (const s of skipped) yield* count(s.candidate, "skipped")
        return yield* Run.runPlan(env, new Run.Run<E>(req, all, plan, skipped), f)
      }).pipe(
        Effect.withSpan("Router.run", {
          // a stack trace per call costs more than the rest of the span; the attributes say what it was
          captureStackTrace: false,
          attributes: {
            "sluice.router.task": request.task ?? "",
            "sluice.router.priority": request.priority ?? "interactive"
          }
        })
      )

    return {
      candidates,
      states: (request) => Effect.flatMap(toRequest(request), states),
      plan: (request) =>
        Effect.flatMap(toRequest(request), (req) => Effect.map(states(req), (all) => planFor(strategy, req, all))),
      run: (request, f) => Effect.map(runWithDecision(request, f), (pair) => pair[0]),
      runWithDecision,
      observe,
      decisions: Effect.sync(() => recent.slice()),
      summary: Effect.sync(() => totals.summary())
    } satisfies Router.Service
  })
