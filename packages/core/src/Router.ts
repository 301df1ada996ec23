/**
 * Routing between models or deployments as a pluggable strategy, with fallbacks decided by the kind
 * of failure.
 *
 * Separate models have separate rate-limit pools: routing is how traffic uses more than one of them.
 * A {@link Candidate} is a model or deployment (the limiter scopes it charges, its organization, price,
 * context window, capabilities, weight, tags, region). When a request is routed, the router reads the
 * live {@link CandidateState} of every candidate — the estimated wait and headroom for this request's
 * cost (from `RateLimiter.peek`), the circuit breaker's state, the latency and error-rate EWMAs it keeps
 * from outcomes, and this request's price — and asks a {@link RoutingStrategy} (a plain, pure function)
 * for a {@link RoutePlan}: an ordered list of candidates and the ones skipped, with reasons.
 *
 * `run` then tries the plan in order. What happens after a failure depends on the error's `_tag`,
 * looked up in {@link FallbackRules} (data; the core knows nothing of OpenAI): try the next candidate,
 * one with a larger context window, one in another pool, one in another organization, wait for the
 * same one, or stop. Every decision is recorded: in the current span, in Effect Metrics
 * (`sluice_router_decisions_total`, `sluice_router_spills_total`) and as a {@link Decision} value.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as ExecutionPlan from "effect/ExecutionPlan"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Budget from "./Budget.js"
import type * as CircuitBreaker from "./CircuitBreaker.js"
import * as internal from "./internal/router.js"
import * as routerRun from "./internal/routerRun.js"
import * as service from "./internal/routerService.js"
import type * as RateLimiter from "./RateLimiter.js"

// -----------------------------------------------------------------------------
// candidates
// -----------------------------------------------------------------------------

/**
 * A model or deployment the router can send a request to, as data (decodable from configuration).
 *
 * - `scopes`: the limiter scopes a call to it charges (e.g. `["org:acme", "pool:gpt-4o"]`); two
 *   candidates sharing a scope share that budget.
 * - `pool`: the scope that is this candidate's own pool (default: its last scope). "Another pool" means a
 *   candidate not charging the scope that binds now (from the limiter's estimate), or else this pool.
 * - `organization`: the billing organization; quota exhaustion only falls over to another one.
 * - `price`: per input and output token, any currency.
 * - `breakerKey`: the circuit breaker key (default: `id`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Candidate = Schema.Struct({
  id: Schema.NonEmptyString,
  model: Schema.String,
  scopes: Schema.Array(Schema.String),
  organization: Schema.optional(Schema.String),
  pool: Schema.optional(Schema.String),
  breakerKey: Schema.optional(Schema.String),
  price: Schema.optional(Schema.Struct({ input: Schema.Number, output: Schema.Number })),
  contextWindow: Schema.optional(Schema.Number),
  capabilities: Schema.optional(Schema.Array(Schema.String)),
  weight: Schema.optional(Schema.Number),
  tags: Schema.optional(Schema.Array(Schema.String)),
  region: Schema.optional(Schema.String)
}).annotations({ identifier: "Candidate" })

/**
 * @since 0.1.0
 * @category models
 */
export interface Candidate extends Schema.Schema.Type<typeof Candidate> {}

/**
 * A capability a candidate offers and a request may need. Open to more names.
 *
 * @since 0.1.0
 * @category models
 */
export type Capability = "tools" | "vision" | "json" | "reasoning" | "streaming" | (string & {})

/**
 * Builds a candidate (the identity, typed).
 *
 * @since 0.1.0
 * @category constructors
 */
export const candidate = (candidate: Candidate): Candidate => candidate

// -----------------------------------------------------------------------------
// requests, states, plans
// -----------------------------------------------------------------------------

/**
 * What a caller routes: the cost the limiter will charge, the token estimates (for price and context
 * fit), what it needs, and how urgent it is.
 *
 * @since 0.1.0
 * @category models
 */
export interface RouteRequest {
  /** The limiter cost of one call (e.g. `{ requests: 1, tokens: 1_480 }`). */
  readonly cost: Budget.Cost
  readonly promptTokens?: number | undefined
  readonly outputTokens?: number | undefined
  readonly capabilities?: ReadonlyArray<Capability> | undefined
  /** A task kind, looked up in a {@link TaskTable} by {@link byTask}. */
  readonly task?: string | undefined
  /** Default `interactive`. */
  readonly priority?: RateLimiter.Lane | undefined
  /** Epoch milliseconds (or a Date) after which waiting is pointless. */
  readonly deadline?: number | Date | undefined
  readonly tags?: ReadonlyArray<string> | undefined
  readonly region?: string | undefined
  /** Whether the call streams (then {@link lowestLatency} ranks by time to first token). */
  readonly stream?: boolean | undefined
  /** A random number in [0, 1) for randomised strategies; drawn from `Random` when absent. */
  readonly random?: number | undefined
  /**
   * Scopes this request charges on whichever candidate serves it, after the candidate's own (a tenant,
   * say: `["tenant:42"]`). They are peeked with each candidate's scopes, so the live state is the state of
   * exactly the scopes the call will charge.
   */
  readonly scopes?: ReadonlyArray<string> | undefined
  /**
   * Only these candidates (by id or model) may serve the request; the others are skipped ("not
   * requested") before the strategy plans.
   */
  readonly only?: ReadonlyArray<string> | undefined
}

/**
 * The request as a strategy sees it: defaults filled in, the time of the decision and a random number.
 *
 * @since 0.1.0
 * @category models
 */
export interface Request extends RouteRequest {
  readonly priority: RateLimiter.Lane
  readonly deadline: number | undefined
  readonly random: number
  readonly now: number
}

/**
 * The live state of one candidate for one request.
 *
 * @since 0.1.0
 * @category models
 */
export interface CandidateState {
  readonly candidate: Candidate
  /** Estimated wait for admission of this request's cost (0: now, `Infinity`: never, e.g. closed). */
  readonly waitMillis: number
  /** The bucket or gate that binds, when waiting. */
  readonly binding: Option.Option<{ readonly scope: string; readonly dimension: string; readonly reason: string }>
  /** Per dimension, the smallest level left across the candidate's scopes after this request's cost. */
  readonly headroom: { readonly [dimension: string]: number }
  /** Per dimension, that smallest level as a fraction of the bucket's capacity (before the cost). */
  readonly headroomFraction: { readonly [dimension: string]: number }
  /** Waiters already queued on the candidate's buckets. */
  readonly queued: number
  /**
   * `waitMillis` including the queue ahead, assuming each queued waiter costs what this request costs:
   * the wait a new request would really see when a backlog builds.
   */
  readonly estimatedWaitMillis: number
  readonly breaker: CircuitBreaker.State
  /**
   * Latency EWMA in milliseconds (undefined until observed): the router's own attempts (the whole call,
   * including any limiter wait inside it) and what {@link Router.Service.observe} reports.
   */
  readonly latencyMillis: number | undefined
  /** Time-to-first-token EWMA for streams (undefined until observed). */
  readonly ttftMillis: number | undefined
  /** Error-rate EWMA over the router's recorded outcomes, 0–1. */
  readonly errorRate: number
  readonly calls: number
  /** This request's price on this candidate (0 without a price). */
  readonly price: number
}

/**
 * A candidate left out of a plan, and why.
 *
 * @since 0.1.0
 * @category models
 */
export interface Skipped {
  readonly state: CandidateState
  readonly reason: string
}

/**
 * What a strategy returns: candidates to try in order, and the ones skipped with a reason. `wait:
 * false` forbids the "wait" fallback for this request (default: allowed when the deadline allows).
 *
 * @since 0.2.0
 * @category models
 */
export interface RoutePlan {
  readonly order: ReadonlyArray<CandidateState>
  readonly skipped: ReadonlyArray<Skipped>
  readonly wait?: boolean | undefined
}

/**
 * The former name of {@link RoutePlan} (`Plan` is also the CLI's capacity plan).
 *
 * @since 0.1.0
 * @category models
 * @deprecated Use {@link RoutePlan}.
 */
export type Plan = RoutePlan

/**
 * A routing strategy: a plain, pure function from the request and the candidates' live state to a
 * {@link RoutePlan}. Randomised strategies use `request.random`, so they stay pure and testable.
 *
 * @since 0.1.0
 * @category models
 * @example
 * ```ts
 * import { Router } from "@sluice/core"
 *
 * // send long prompts to the candidate tagged "long", everything else in the given order
 * const longFirst: Router.RoutingStrategy = (request, states) => ({
 *   order: [...states].sort((a, b) =>
 *     (request.promptTokens ?? 0) > 50_000
 *       ? Number(b.candidate.tags?.includes("long") ?? false) - Number(a.candidate.tags?.includes("long") ?? false)
 *       : 0
 *   ),
 *   skipped: []
 * })
 * ```
 */
export type RoutingStrategy = (request: Request, states: ReadonlyArray<CandidateState>) => RoutePlan

// -----------------------------------------------------------------------------
// strategies
// -----------------------------------------------------------------------------

/**
 * Builds a strategy (the identity, typed).
 *
 * @since 0.1.0
 * @category strategies
 */
export const strategy = (f: RoutingStrategy): RoutingStrategy => f

/**
 * Priority order with fallback: the candidates in the order they were configured.
 *
 * @since 0.1.0
 * @category strategies
 */
export const priority: RoutingStrategy = (_request, states) => ({ order: states, skipped: [] })

/**
 * Least estimated wait for this request's cost (headroom-aware): by the wait including the queue ahead
 * (`estimatedWaitMillis`), then fewest queued waiters, most headroom (as a fraction of capacity), and
 * configured order.
 *
 * @since 0.1.0
 * @category strategies
 */
export const leastWait: RoutingStrategy = (_request, states) => ({
  order: internal.stableSortBy(
    internal.stableSortBy(
      internal.stableSortBy(states, (s) => -minFraction(s)),
      (s) => s.queued
    ),
    (s) => s.estimatedWaitMillis
  ),
  skipped: []
})

const minFraction = (s: CandidateState): number => {
  let min = 1
  for (const dim in s.headroomFraction) min = Math.min(min, s.headroomFraction[dim])
  return min
}

/**
 * Weighted random: the first candidate drawn by `weight` (default 1) with `request.random`, the rest by
 * descending weight as fallbacks.
 *
 * @since 0.1.0
 * @category strategies
 */
export const weightedRandom: RoutingStrategy = (request, states) => {
  if (states.length === 0) return { order: [], skipped: [] }
  const index = internal.pickWeighted(states.map((s) => s.candidate.weight ?? 1), request.random)
  const rest = internal.stableSortBy(states.filter((_, i) => i !== index), (s) => -(s.candidate.weight ?? 1))
  return { order: [states[index], ...rest], skipped: [] }
}

/**
 * Cheapest that fits now: candidates that would be admitted now by price, then the others by wait and
 * price.
 *
 * @since 0.1.0
 * @category strategies
 */
export const cheapest: RoutingStrategy = (_request, states) => {
  const now = internal.stableSortBy(states.filter((s) => s.waitMillis === 0), (s) => s.price)
  const later = internal.stableSortBy(
    internal.stableSortBy(states.filter((s) => s.waitMillis !== 0), (s) => s.price),
    (s) => s.waitMillis
  )
  return { order: [...now, ...later], skipped: [] }
}

/**
 * Lowest latency EWMA (time to first token for streams). Unobserved candidates go first, so they are
 * measured.
 *
 * @since 0.1.0
 * @category strategies
 */
export const lowestLatency: RoutingStrategy = (request, states) => ({
  order: internal.stableSortBy(states, (s) => {
    const value = request.stream === true ? s.ttftMillis ?? s.latencyMillis : s.latencyMillis
    return value === undefined ? -1 : value
  }),
  skipped: []
})

// -----------------------------------------------------------------------------
// combinators
// -----------------------------------------------------------------------------

/**
 * Keeps the candidates the predicate accepts; the others are skipped with the reason it returns (a
 * string) or `reason`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const filter: {
  (
    predicate: (request: Request, state: CandidateState) => boolean | string,
    reason?: string
  ): (self: RoutingStrategy) => RoutingStrategy
  (
    self: RoutingStrategy,
    predicate: (request: Request, state: CandidateState) => boolean | string,
    reason?: string
  ): RoutingStrategy
} = dual(
  (args) => typeof args[0] === "function" && typeof args[1] === "function",
  (
    self: RoutingStrategy,
    predicate: (request: Request, state: CandidateState) => boolean | string,
    reason = "filtered out"
  ): RoutingStrategy =>
  (request, states) => {
    const kept: Array<CandidateState> = []
    const skipped: Array<Skipped> = []
    for (const state of states) {
      const verdict = predicate(request, state)
      if (verdict === true) kept.push(state)
      else skipped.push({ state, reason: typeof verdict === "string" ? verdict : reason })
    }
    const plan = self(request, kept)
    return { ...plan, skipped: [...skipped, ...plan.skipped] }
  }
)

/**
 * Skips candidates missing a capability the request needs.
 *
 * @since 0.1.0
 * @category combinators
 */
export const requireCapabilities = (self: RoutingStrategy): RoutingStrategy =>
  filter(self, (request, state) => {
    const missing = (request.capabilities ?? []).filter((c) => !(state.candidate.capabilities ?? []).includes(c))
    return missing.length === 0 || `missing capabilities: ${missing.join(", ")}`
  })

/**
 * Skips candidates whose context window is smaller than the request's prompt plus output tokens.
 *
 * @since 0.1.0
 * @category combinators
 */
export const fitsContext = (self: RoutingStrategy): RoutingStrategy =>
  filter(self, (request, state) => {
    const needed = (request.promptTokens ?? 0) + (request.outputTokens ?? 0)
    const window = state.candidate.contextWindow
    return window === undefined || window >= needed || `context window ${window} < ${needed} tokens needed`
  })

/**
 * Skips candidates lacking any of the given tags (or, without tags, the request's tags).
 *
 * @since 0.1.0
 * @category combinators
 */
export const withTags: {
  (tags?: ReadonlyArray<string>): (self: RoutingStrategy) => RoutingStrategy
  (self: RoutingStrategy, tags?: ReadonlyArray<string>): RoutingStrategy
} = dual(
  (args) => typeof args[0] === "function",
  (self: RoutingStrategy, tags?: ReadonlyArray<string>): RoutingStrategy =>
    filter(self, (request, state) => {
      const wanted = tags ?? request.tags ?? []
      const missing = wanted.filter((t) => !(state.candidate.tags ?? []).includes(t))
      return missing.length === 0 || `missing tags: ${missing.join(", ")}`
    })
)

/**
 * Skips candidates outside the given regions (or, without regions, the request's region).
 *
 * @since 0.1.0
 * @category combinators
 */
export const inRegion: {
  (regions?: ReadonlyArray<string>): (self: RoutingStrategy) => RoutingStrategy
  (self: RoutingStrategy, regions?: ReadonlyArray<string>): RoutingStrategy
} = dual(
  (args) => typeof args[0] === "function",
  (self: RoutingStrategy, regions?: ReadonlyArray<string>): RoutingStrategy =>
    filter(self, (request, state) => {
      const allowed = regions ?? (request.region === undefined ? undefined : [request.region])
      if (allowed === undefined) return true
      const region = state.candidate.region
      return (region !== undefined && allowed.includes(region)) || `region ${region ?? "unknown"} not allowed`
    })
)

/**
 * The usual filters at once: capabilities, context window, then tags and region when the request names
 * them.
 *
 * @since 0.1.0
 * @category combinators
 */
export const eligible = (self: RoutingStrategy): RoutingStrategy =>
  inRegion(withTags(fitsContext(requireCapabilities(self))))

/**
 * Reorders a strategy's plan by an ascending score (stable: ties keep the strategy's order).
 *
 * @since 0.1.0
 * @category combinators
 */
export const orderBy: {
  (score: (request: Request, state: CandidateState) => number): (self: RoutingStrategy) => RoutingStrategy
  (self: RoutingStrategy, score: (request: Request, state: CandidateState) => number): RoutingStrategy
} = dual(
  2,
  (self: RoutingStrategy, score: (request: Request, state: CandidateState) => number): RoutingStrategy =>
  (request, states) => {
    const plan = self(request, states)
    return { ...plan, order: internal.stableSortBy(plan.order, (s) => score(request, s)) }
  }
)

/**
 * Tries `self`'s plan, then the candidates `that` plans and `self` did not. A candidate is skipped only
 * when both skip it (with `self`'s reason).
 *
 * @since 0.1.0
 * @category combinators
 */
export const fallback: {
  (that: RoutingStrategy): (self: RoutingStrategy) => RoutingStrategy
  (self: RoutingStrategy, that: RoutingStrategy): RoutingStrategy
} = dual(2, (self: RoutingStrategy, that: RoutingStrategy): RoutingStrategy => (request, states) => {
  const first = self(request, states)
  const second = that(request, states)
  const seen = new Set(first.order.map((s) => s.candidate.id))
  const order = [...first.order]
  for (const s of second.order) {
    if (!seen.has(s.candidate.id)) {
      seen.add(s.candidate.id)
      order.push(s)
    }
  }
  const skipped = [...first.skipped, ...second.skipped].filter((entry) => {
    if (seen.has(entry.state.candidate.id)) return false
    seen.add(entry.state.candidate.id)
    return true
  })
  return { order, skipped, wait: first.wait ?? second.wait }
})

/**
 * Combines strategies: the first's plan, then each next one's additions ({@link fallback} folded).
 *
 * @since 0.1.0
 * @category combinators
 */
export const combine = (first: RoutingStrategy, ...rest: ReadonlyArray<RoutingStrategy>): RoutingStrategy =>
  rest.reduce((acc, next) => fallback(acc, next), first)

/**
 * Sets whether the "wait" fallback is allowed for the plans of a strategy.
 *
 * @since 0.1.0
 * @category combinators
 */
export const allowWait: {
  (allowed: boolean): (self: RoutingStrategy) => RoutingStrategy
  (self: RoutingStrategy, allowed: boolean): RoutingStrategy
} = dual(
  2,
  (self: RoutingStrategy, allowed: boolean): RoutingStrategy => (request, states) => ({
    ...self(request, states),
    wait: allowed
  })
)

// -----------------------------------------------------------------------------
// task table
// -----------------------------------------------------------------------------

/**
 * A task table: a task kind to the candidate ids (or models) preferred for it, best first.
 *
 * @since 0.1.0
 * @category schemas
 * @example
 * ```ts
 * import { Router } from "@sluice/core"
 * import * as Schema from "effect/Schema"
 *
 * const table = Schema.decodeUnknownSync(Router.TaskTable)({
 *   classification: ["gpt-4o-mini"],
 *   "customer-facing": ["gpt-4o"],
 *   embeddings: ["text-embedding-3-small"]
 * })
 * ```
 */
export const TaskTable = Schema.Record({
  key: Schema.NonEmptyString,
  value: Schema.NonEmptyArray(Schema.NonEmptyString)
}).annotations({ identifier: "TaskTable" })

/**
 * @since 0.1.0
 * @category models
 */
export type TaskTable = Schema.Schema.Type<typeof TaskTable>

/**
 * Decodes a task table, failing with a `ParseError` that names the bad path.
 *
 * @since 0.1.0
 * @category constructors
 */
export const decodeTaskTable = Schema.decodeUnknown(TaskTable, { errors: "all" })

/**
 * Routes by task kind: for a request whose `task` is in the table, the listed candidates (matched by id
 * or model) come first in table order, planned by `self` within each preference; the others are
 * skipped ("not listed for task") unless `others: "fallback"`, which keeps them after. Requests without
 * a listed task go to `self` unchanged.
 *
 * @since 0.1.0
 * @category combinators
 */
export const byTask: {
  (table: TaskTable, options?: { readonly others?: "skip" | "fallback" }): (self: RoutingStrategy) => RoutingStrategy
  (self: RoutingStrategy, table: TaskTable, options?: { readonly others?: "skip" | "fallback" }): RoutingStrategy
} = dual(
  (args) => typeof args[0] === "function",
  (
    self: RoutingStrategy,
    table: TaskTable,
    options?: { readonly others?: "skip" | "fallback" }
  ): RoutingStrategy =>
  (request, states) => {
    // own keys only: a task named "constructor" or "toString" is not in an empty table
    const prefs = request.task === undefined || !Object.prototype.hasOwnProperty.call(table, request.task)
      ? undefined
      : table[request.task]
    if (prefs === undefined) return self(request, states)
    const rank = (s: CandidateState): number => {
      const byId = prefs.indexOf(s.candidate.id)
      return byId >= 0 ? byId : prefs.indexOf(s.candidate.model)
    }
    const listed = states.filter((s) => rank(s) >= 0)
    const others = states.filter((s) => rank(s) < 0)
    const plan = self(request, listed)
    const order = internal.stableSortBy(plan.order, rank)
    if (options?.others === "fallback") {
      const rest = self(request, others)
      return { order: [...order, ...rest.order], skipped: [...plan.skipped, ...rest.skipped], wait: plan.wait }
    }
    return {
      ...plan,
      order,
      skipped: [
        ...plan.skipped,
        ...others.map((state) => ({ state, reason: `not listed for task ${request.task}` }))
      ]
    }
  }
)

// -----------------------------------------------------------------------------
// fallback rules
// -----------------------------------------------------------------------------

/**
 * What to do after a failure (or, for `Saturated`, before a call whose pool cannot admit now):
 *
 * - `next`: the next candidate of the plan;
 * - `larger-context`: the next candidate whose context window is larger than the failed one's;
 * - `other-pool`: the next candidate not charging the scope that binds the failed one now (from the
 *   limiter's estimate: a drained bucket or a gate), or else its pool;
 * - `other-organization`: only a candidate in another organization (always reported);
 * - `wait`: the same candidate again (its limiter wait), if the plan allows and the deadline allows;
 *   otherwise as `other-pool`;
 * - `none`: fail with the error.
 *
 * @since 0.1.0
 * @category fallbacks
 */
export const Action = Schema.Literal("next", "larger-context", "other-pool", "other-organization", "wait", "none")

/**
 * @since 0.1.0
 * @category fallbacks
 */
export type Action = Schema.Schema.Type<typeof Action>

/**
 * A rule: one action, or one per lane.
 *
 * @since 0.1.0
 * @category fallbacks
 */
export const Rule = Schema.Union(Action, Schema.Struct({ interactive: Action, background: Action }))

/**
 * @since 0.1.0
 * @category fallbacks
 */
export type Rule = Schema.Schema.Type<typeof Rule>

/**
 * Fallback rules keyed by an error's `_tag`. The pseudo-tag `Saturated` applies before a call when the
 * candidate's pool cannot admit the request now (estimated wait > 0); `*` is the rule for unknown tags
 * (default `none`).
 *
 * @since 0.1.0
 * @category fallbacks
 */
export const FallbackRules = Schema.Record({ key: Schema.String, value: Rule }).annotations({
  identifier: "FallbackRules"
})

/**
 * @since 0.1.0
 * @category fallbacks
 */
export type FallbackRules = Schema.Schema.Type<typeof FallbackRules>

/**
 * The rules for what the core itself raises or decides, which every router starts from (a provider's
 * rules are passed in, merged over these: `@sluice/openai`'s `OpenAiRouter.defaultRules`, say):
 *
 * - `Saturated` (before a call: the pool cannot admit now) → wait for interactive work, another pool for
 *   background work;
 * - the limiter's `DeadlineExceeded` or a closed scope (`ScopeClosed`) → another pool;
 * - an open breaker (`CircuitOpen`) → the next candidate;
 * - any other tag (`*`) → none.
 *
 * @since 0.2.0
 * @category fallbacks
 */
export const baseRules: FallbackRules = {
  Saturated: { interactive: "wait", background: "other-pool" },
  DeadlineExceeded: "other-pool",
  ScopeClosed: "other-pool",
  CircuitOpen: "next",
  "*": "none"
}

/**
 * The action a rule set gives a tag for a lane.
 *
 * @since 0.1.0
 * @category fallbacks
 */
export const actionFor: (rules: FallbackRules, tag: string | undefined, lane: RateLimiter.Lane) => Action =
  routerRun.actionFor

// -----------------------------------------------------------------------------
// decisions
// -----------------------------------------------------------------------------

/**
 * One step of a routing decision.
 *
 * @since 0.1.0
 * @category decisions
 */
export type Step =
  | { readonly _tag: "Attempt"; readonly candidate: string; readonly at: number; readonly attempt: number }
  | {
    readonly _tag: "Succeeded"
    readonly candidate: string
    readonly at: number
    readonly latencyMillis: number
  }
  | {
    readonly _tag: "Failed"
    readonly candidate: string
    readonly at: number
    readonly error: string
    readonly action: Action
  }
  | { readonly _tag: "Skipped"; readonly candidate: string; readonly at: number; readonly reason: string }
  | {
    readonly _tag: "Spilled"
    readonly from: string
    readonly to: string
    readonly at: number
    readonly reason: string
  }
  | {
    readonly _tag: "Waited"
    readonly candidate: string
    readonly at: number
    readonly reason: string
    readonly estimatedWaitMillis: number
  }
  | { readonly _tag: "Reported"; readonly candidate: string; readonly at: number; readonly error: string }

/**
 * A routing decision: the plan, every step taken (attempts, skips, spills, waits, reports), and the
 * outcome. Available from {@link Service.runWithDecision}, the `onDecision` option and
 * {@link Service.decisions}.
 *
 * @since 0.1.0
 * @category decisions
 */
export interface Decision {
  readonly task: string | undefined
  readonly priority: RateLimiter.Lane
  readonly startedAt: number
  readonly endedAt: number
  /** The plan's order (candidate ids). */
  readonly planned: ReadonlyArray<string>
  /** Candidates skipped by the plan, and why. */
  readonly skipped: ReadonlyArray<{ readonly candidate: string; readonly reason: string }>
  readonly steps: ReadonlyArray<Step>
  /** The candidate that served the request. */
  readonly chosen: Option.Option<string>
  readonly outcome: "success" | "failure"
  /** Whether the request was served by another candidate than the plan's first. */
  readonly spilled: boolean
  /** Failures that must be reported (e.g. quota), whatever the outcome. */
  readonly reported: ReadonlyArray<{ readonly candidate: string; readonly error: string }>
}

/**
 * Totals over the decisions a router made: how much traffic each candidate served and how much
 * spilled, from where to where and why.
 *
 * @since 0.1.0
 * @category decisions
 */
export interface Summary {
  readonly decisions: number
  readonly failures: number
  readonly spilled: number
  readonly chosen: { readonly [candidate: string]: number }
  readonly spills: ReadonlyArray<{ readonly from: string; readonly to: string; readonly reason: string; count: number }>
  readonly reported: number
}

/**
 * What `run` tells the call it makes on a candidate, besides the candidate.
 *
 * `fallsOver(error)` says whether the rules move that error to another candidate (any action but `wait`
 * and `none`) and a candidate is left that would take it now (given the fallbacks so far). A call with its
 * own retry policy can then skip retrying what the router will fall over on, and retry in place only
 * what it will not: what `@sluice/openai`'s `OpenAiRouter` does.
 *
 * @since 0.1.0
 * @category models
 */
export interface Attempt {
  /** 1 for the first attempt of this request, counting every candidate. */
  readonly number: number
  readonly fallsOver: (error: unknown) => boolean
  /**
   * When the request arrived (epoch ms, `Request.now`). Passed to the limiter as `AcquireOptions.arrivedAt`, every
   * attempt waits in its lane as of then: a fallback to another pool (or a wait in place) is not queued behind
   * the calls that arrived after the request. `OpenAiRouter` does so.
   *
   * @since 0.2.0
   */
  readonly arrivedAt: number
}

// -----------------------------------------------------------------------------
// errors
// -----------------------------------------------------------------------------

/**
 * No candidate could take the request: every one was skipped, with the reasons.
 *
 * @since 0.1.0
 * @category errors
 */
export class NoCandidate extends Schema.TaggedError<NoCandidate>("@sluice/core/NoCandidate")("NoCandidate", {
  task: Schema.optional(Schema.String),
  skipped: Schema.Array(Schema.Struct({ candidate: Schema.String, reason: Schema.String }))
}) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    const reasons = this.skipped.map((s) => `${s.candidate}: ${s.reason}`).join("; ")
    return `no candidate for ${this.task === undefined ? "the request" : `task ${this.task}`}${
      reasons.length > 0 ? ` (${reasons})` : ""
    }`
  }
}

// -----------------------------------------------------------------------------
// metrics
// -----------------------------------------------------------------------------

/**
 * Routing outcomes per candidate, tagged `candidate` and `outcome` (`chosen`, `skipped`, `failed`,
 * `succeeded`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const decisionsTotal = Metric.counter("sluice_router_decisions_total", {
  description: "Router decisions per candidate and outcome",
  incremental: true
})

/**
 * Traffic moved from one candidate to another, tagged `from`, `to` and `reason` (an error tag or
 * `Saturated`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const spillsTotal = Metric.counter("sluice_router_spills_total", {
  description: "Requests the router moved to another candidate",
  incremental: true
})

/**
 * Failures reported whatever the outcome (the tags in `report` and `other-organization` fallbacks), tagged
 * `candidate` and `error`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const reportsTotal = Metric.counter("sluice_router_reports_total", {
  description: "Failures the router always reports (e.g. quota exhausted)",
  incremental: true
})

// -----------------------------------------------------------------------------
// service
// -----------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace Router {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Options {
    readonly candidates: ReadonlyArray<Candidate>
    /** Default {@link eligible}({@link priority}). */
    readonly strategy?: RoutingStrategy | undefined
    /** The provider's rules (by error `_tag`), merged over {@link baseRules}. */
    readonly rules?: FallbackRules | undefined
    /** Error tags always reported, in addition to `other-organization` actions. Default none. */
    readonly report?: ReadonlyArray<string> | undefined
    /** "wait" retries of one candidate per request. Default 3. */
    readonly maxWaits?: number | undefined
    /** Weight of the newest observation in the latency and error-rate EWMAs. Default 0.2. */
    readonly alpha?: number | undefined
    /**
     * Whether each attempt runs under the candidate's circuit breaker (when a `CircuitBreaker` is in
     * context). Set false when the call already does (the breaker's state is read for routing either
     * way). Default true.
     */
    readonly wrapBreaker?: boolean | undefined
    /** Called with every decision. */
    readonly onDecision?: ((decision: Decision) => Effect.Effect<void>) | undefined
    /** Decisions kept for {@link Service.decisions}. Default 1000. */
    readonly keepDecisions?: number | undefined
  }

  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    readonly candidates: ReadonlyArray<Candidate>
    /** The live state of every candidate for a request. */
    readonly states: (request: RouteRequest) => Effect.Effect<ReadonlyArray<CandidateState>>
    /** The plan the strategy makes now (open breakers and closed scopes moved to skipped). */
    readonly plan: (request: RouteRequest) => Effect.Effect<RoutePlan>
    /** Routes a request: tries the plan in order, with fallbacks by error kind. */
    readonly run: <A, E, R>(
      request: RouteRequest,
      f: (candidate: Candidate, attempt: Attempt) => Effect.Effect<A, E, R>
    ) => Effect.Effect<A, E | NoCandidate, R>
    /** Like `run`, and returns the decision with the value. */
    readonly runWithDecision: <A, E, R>(
      request: RouteRequest,
      f: (candidate: Candidate, attempt: Attempt) => Effect.Effect<A, E, R>
    ) => Effect.Effect<readonly [A, Decision], E | NoCandidate, R>
    /** Records an outcome observed outside `run` (e.g. a stream's time to first token). */
    readonly observe: (
      candidateId: string,
      observation: {
        readonly latencyMillis?: number | undefined
        readonly ttftMillis?: number | undefined
        readonly success?: boolean | undefined
      }
    ) => Effect.Effect<void>
    /** The most recent decisions (up to `keepDecisions`). */
    readonly decisions: Effect.Effect<ReadonlyArray<Decision>>
    /** Totals over every decision since the router was made. */
    readonly summary: Effect.Effect<Summary>
  }
}

/**
 * The router's interface.
 *
 * @since 0.1.0
 * @category models
 */
export type Service = Router.Service

/**
 * @since 0.1.0
 * @category tags
 */
export class Router extends Context.Tag("@sluice/core/Router")<Router, Router.Service>() {}

/**
 * The candidate of the current step of an `ExecutionPlan` derived by {@link toExecutionPlan}.
 *
 * @since 0.1.0
 * @category tags
 */
export class CurrentCandidate extends Context.Tag("@sluice/core/Router/CurrentCandidate")<
  CurrentCandidate,
  Candidate
>() {}

/**
 * Builds a router over the `RateLimiter` in context (and the `CircuitBreaker`, when there is one).
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import { Budget, RateLimiter, Router } from "@sluice/core"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const router = yield* Router.make({
 *     candidates: [
 *       { id: "gpt-4o", model: "gpt-4o", scopes: ["pool:gpt-4o"] },
 *       { id: "gpt-4o-mini", model: "gpt-4o-mini", scopes: ["pool:gpt-4o-mini"] }
 *     ],
 *     strategy: Router.leastWait
 *   })
 *   return yield* router.run(
 *     { cost: { requests: 1, tokens: 1_000 }, priority: "background" },
 *     (candidate) => Effect.succeed(`sent to ${candidate.model}`)
 *   )
 * }).pipe(
 *   Effect.provide(RateLimiter.layerMemory({
 *     budgets: [
 *       Budget.make("pool:gpt-4o", [Budget.Limit.perMinute("tokens", 30_000)]),
 *       Budget.make("pool:gpt-4o-mini", [Budget.Limit.perMinute("tokens", 200_000)])
 *     ]
 *   }))
 * )
 * ```
 */
export const make: (options: Router.Options) => Effect.Effect<Router.Service, never, RateLimiter.RateLimiter> =
  service.make

/**
 * The router as a layer over the `RateLimiter` in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Router.Options): Layer.Layer<Router, never, RateLimiter.RateLimiter> =>
  Layer.effect(Router, make(options))

/**
 * Routing configuration as data: the candidates, an optional task table and rules over the defaults.
 *
 * @since 0.1.0
 * @category schemas
 */
export const RouterConfig = Schema.Struct({
  candidates: Schema.Array(Candidate),
  tasks: Schema.optional(TaskTable),
  rules: Schema.optional(FallbackRules),
  report: Schema.optional(Schema.Array(Schema.String))
}).annotations({ identifier: "RouterConfig" })

/**
 * @since 0.1.0
 * @category models
 */
export type RouterConfig = Schema.Schema.Type<typeof RouterConfig>

/**
 * Router options from a {@link RouterConfig}: the strategy is {@link eligible}({@link byTask}(`base`))
 * with the task table, or {@link eligible}(`base`) without one; `base` defaults to {@link leastWait}.
 *
 * @since 0.1.0
 * @category constructors
 */
export const optionsFromConfig = (config: RouterConfig, base: RoutingStrategy = leastWait): Router.Options => ({
  candidates: config.candidates,
  strategy: config.tasks === undefined ? eligible(base) : eligible(byTask(base, config.tasks)),
  rules: config.rules,
  report: config.report
})

/**
 * The router configured from JSON (by default `SLUICE_ROUTES`), decoded with {@link RouterConfig}; a
 * bad value fails with the path of every problem.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config<string> = Config.string("SLUICE_ROUTES"),
  base?: RoutingStrategy
): Layer.Layer<Router, ConfigError.ConfigError, RateLimiter.RateLimiter> =>
  Layer.effect(
    Router,
    Effect.gen(function*() {
      const raw = yield* config
      const decoded = yield* Schema.decodeUnknown(Schema.parseJson(RouterConfig), { errors: "all" })(raw).pipe(
        Effect.mapError((error) => ConfigError.InvalidData([], ParseResult.TreeFormatter.formatErrorSync(error)))
      )
      return yield* make(optionsFromConfig(decoded, base))
    })
  )

/**
 * Routes with the router in context.
 *
 * @since 0.1.0
 * @category accessors
 */
export const run = <A, E, R>(
  request: RouteRequest,
  f: (candidate: Candidate, attempt: Attempt) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | NoCandidate, R | Router> => Effect.flatMap(Router, (router) => router.run(request, f))

// -----------------------------------------------------------------------------
// ExecutionPlan interop
// -----------------------------------------------------------------------------

/**
 * Derives an Effect `ExecutionPlan` from a routing plan: one step per planned candidate, in order, each
 * providing {@link CurrentCandidate}. A step after a failure is taken only when the rules give the
 * error a fallback (any action but `none`); `attempts` per step default to 1.
 *
 * This is the interop direction Sluice chose: the router decides (it reads live limiter, breaker and
 * latency state), and an `ExecutionPlan` can carry that decision to code built on
 * `Effect.withExecutionPlan`. It is coarser than {@link Service.run}: an ExecutionPlan's steps are fixed
 * before the first error, so `larger-context`, `other-pool` and `other-organization` degrade to
 * "next", and nothing is recorded as a {@link Decision}.
 *
 * @since 0.1.0
 * @category interop
 * @example
 * ```ts
 * import { Router } from "@sluice/core"
 * import * as Effect from "effect/Effect"
 *
 * declare const router: Router.Service
 * const program = Effect.gen(function*() {
 *   const plan = yield* router.plan({ cost: { requests: 1 } })
 *   const call = Effect.flatMap(Router.CurrentCandidate, (c) => Effect.succeed(c.model))
 *   return yield* Effect.withExecutionPlan(call, yield* Router.toExecutionPlan(plan))
 * })
 * ```
 */
export const toExecutionPlan = (
  plan: RoutePlan,
  options?: {
    readonly rules?: FallbackRules | undefined
    readonly priority?: RateLimiter.Lane | undefined
    readonly attempts?: number | undefined
  }
): Effect.Effect<
  ExecutionPlan.ExecutionPlan<{
    provides: CurrentCandidate
    input: unknown
    error: never
    requirements: never
  }>,
  NoCandidate
> =>
  Effect.suspend(() => {
    const rules: FallbackRules = { ...baseRules, ...options?.rules }
    const lane = options?.priority ?? "interactive"
    const steps = plan.order.map((state) => ({
      provide: Context.make(CurrentCandidate, state.candidate),
      attempts: Math.max(1, options?.attempts ?? 1),
      while: (error: unknown) => actionFor(rules, internal.tagOf(error), lane) !== "none"
    }))
    if (steps.length === 0) {
      return Effect.fail(
        new NoCandidate({
          skipped: plan.skipped.map((s) => ({ candidate: s.state.candidate.id, reason: s.reason }))
        })
      )
    }
    const [head, ...tail] = steps
    // `while` never fails, so the plan's error channel is empty
    return Effect.succeed(
      ExecutionPlan.make(head, ...tail) as unknown as ExecutionPlan.ExecutionPlan<{
        provides: CurrentCandidate
        input: unknown
        error: never
        requirements: never
      }>
    )
  })
