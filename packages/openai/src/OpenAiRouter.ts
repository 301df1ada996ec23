/**
 * Model routing for OpenAI: `@sluice/core`'s `Router` wired to the `OpenAi` service. (Named `Routing` in 0.1.0;
 * that name is kept, deprecated.)
 *
 * Declare **deployments** — a model in an organization (and optionally a project), reached through an
 * `OpenAI` client or client options (a `Redacted` key, a base URL), with a price, a context window,
 * capabilities, tags and a weight — plus a strategy, fallback rules and an optional task table. Then call
 * `routed.chat.completions.create(params, { task, priority, deadline, tenant, capabilities })` (or
 * `responses.create`, `embeddings.create`, `images.generate`, or `request(url, body)` for the bulk runner):
 * the router reads every deployment's live state (the limiter's estimated wait for this call's cost on
 * exactly the scopes the `OpenAi` service will charge, the deployment's circuit breaker, latency and error
 * EWMAs, price), picks one, and the `OpenAi` service of that deployment makes the governed call with the
 * deployment's model. Failures fall over by kind ({@link defaultRules}): a context-length error to a
 * larger window; a rate limit or a saturated pool to another pool for background work while interactive
 * work waits; overloads, server errors and open breakers to the next deployment; content-policy and bad
 * requests nowhere; quota exhaustion only to another organization, always reported.
 *
 * **Retries and fallbacks compose** so that nothing is retried twice and nothing falls over too early:
 * every attempt passes the `OpenAi` service a per-call retry policy (the configured one, default
 * `OpenAiRetry.defaultPolicy`) that declines to retry an error the router will fall over on — the router
 * tells the call, through `Router.Attempt.fallsOver`, whether its rules move that error to another
 * deployment and one is left to take it. So a 503 on gpt-4o goes to gpt-4o-mini at once when mini is in
 * the plan, and is retried in place (with back-off, through admission) when it is the last deployment
 * standing; a rate limit on interactive traffic (rule `wait`) is retried in place by the service's policy,
 * which honours `retry-after` and the deadline, and the router's own "wait" retries are off by default
 * (`maxWaits: 0`), so a call that exhausts the service's retries moves to another pool instead of
 * retrying again.
 *
 * @since 0.1.0
 */
import type { CircuitBreaker, LimiterStore, Retry } from "@sluice/core"
import { Budget, RateLimiter, Router } from "@sluice/core"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type OpenAIClient from "openai"
import type {
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionCreateParamsStreaming
} from "openai/resources/chat/completions"
import type { EmbeddingCreateParams } from "openai/resources/embeddings"
import type { ImageGenerateParamsNonStreaming } from "openai/resources/images"
import type { ResponseCreateParamsNonStreaming } from "openai/resources/responses/responses"
import * as internal from "./internal/routing.js"
import * as config from "./internal/routingConfig.js"
import * as OpenAi from "./OpenAi.js"
import type * as OpenAiError from "./OpenAiError.js"
import * as Tiers from "./Tiers.js"
import type * as TokenEstimator from "./TokenEstimator.js"

// -----------------------------------------------------------------------------
// deployments
// -----------------------------------------------------------------------------

/**
 * Which endpoints a deployment serves: `chat` (chat completions and the Responses API), `embedding`,
 * `image`. Inferred from the model name when not given (`text-embedding-*` → `embedding`, `dall-e-*` and
 * `gpt-image-*` → `image`, anything else → `chat`).
 *
 * @since 0.1.0
 * @category models
 */
export type Kind = "chat" | "embedding" | "image"

/**
 * The kind of a model name (see {@link Kind}).
 *
 * @since 0.1.0
 * @category deployments
 */
export const kindOf = (model: string): Kind =>
  /^(text-embedding|embedding)/.test(model) ? "embedding" : /^(dall-e|gpt-image)/.test(model) ? "image" : "chat"

/**
 * A model the router can send calls to, in code.
 *
 * - `id`: default `<organization>/<model>` (`<organization>/<project>/<model>` with a project); ids must be
 *   unique.
 * - `organization`: the limits' organization, naming the scopes (`org:<organization>`; default
 *   `"default"`). Quota exhaustion falls over only to a deployment in another organization.
 * - `client`: an `OpenAI` SDK client, or {@link OpenAi.ClientOptions} (a `Redacted` API key, a base URL,
 *   the OpenAI organization/project ids sent as headers, a `fetch`); default the router's `client`.
 *   Deployments given the same client object share one SDK client.
 * - `price`: per input and output token, any currency (for `cheapest` and decision records).
 * - `contextWindow`: tokens; a call that cannot fit is skipped, and a deployment without a window is
 *   tried (and falls over to a larger window on `ContextLengthExceeded`).
 * - `aliases`: other names a call's `model` may give to select this deployment (`"fast"`, say).
 *
 * @since 0.1.0
 * @category models
 */
export interface Deployment {
  readonly id?: string | undefined
  readonly model: string
  readonly organization?: string | undefined
  readonly project?: string | undefined
  readonly client?: OpenAIClient | OpenAi.ClientOptions | undefined
  readonly kind?: Kind | undefined
  readonly price?: { readonly input: number; readonly output: number } | undefined
  readonly contextWindow?: number | undefined
  readonly capabilities?: ReadonlyArray<Router.Capability> | undefined
  readonly tags?: ReadonlyArray<string> | undefined
  readonly weight?: number | undefined
  readonly region?: string | undefined
  readonly aliases?: ReadonlyArray<string> | undefined
}

/**
 * A deployment as the router runs it: its router candidate (with the scopes the `OpenAi` service charges)
 * and the `OpenAi` service that makes its calls.
 *
 * @since 0.1.0
 * @category models
 */
export interface Target {
  readonly id: string
  readonly model: string
  readonly organization: string
  readonly project: string | undefined
  readonly kind: Kind
  readonly aliases: ReadonlyArray<string>
  readonly candidate: Router.Candidate
  readonly openai: OpenAi.OpenAi.Service
}

/**
 * The built-in strategies by the names a routing file uses.
 *
 * @since 0.1.0
 * @category strategies
 */
export const strategies: {
  readonly priority: Router.RoutingStrategy
  readonly leastWait: Router.RoutingStrategy
  readonly weightedRandom: Router.RoutingStrategy
  readonly cheapest: Router.RoutingStrategy
  readonly lowestLatency: Router.RoutingStrategy
} = {
  priority: Router.priority,
  leastWait: Router.leastWait,
  weightedRandom: Router.weightedRandom,
  cheapest: Router.cheapest,
  lowestLatency: Router.lowestLatency
}

/**
 * @since 0.1.0
 * @category strategies
 */
export type StrategyName = keyof typeof strategies

/**
 * The fallback rules of OpenAI routing, by the kinds `OpenAiError` classifies, merged over
 * `Router.baseRules` (a saturated pool → another pool for background, wait for interactive; the
 * limiter's `DeadlineExceeded` or a closed scope → another pool; open breakers → next; unknown tags →
 * none):
 *
 * - `ContextLengthExceeded` → a larger context window;
 * - `RateLimited` → as `Saturated`: wait for interactive work, another pool for background work;
 * - `Overloaded`, `ServerError`, `Timeout`, `ConnectionError` → the next deployment;
 * - `ContentPolicy`, `BadRequest` → none (another deployment would refuse it too);
 * - `QuotaExhausted` → only another organization, always reported;
 * - `RequestTooLarge` ("Request too large … must be reduced": the call alone exceeds that pool's TPM) and
 *   `RetryDeadlineExceeded` (the service's retry would wait past the deadline) → another pool;
 * - `Unauthorized`, `PermissionDenied`, `NotFound` (a key, tier or model that one deployment lacks) →
 *   the next deployment, and reported (see {@link defaultReport}): a misconfigured deployment does not
 *   take the router down, and is not hidden either.
 *
 * @since 0.1.0
 * @category fallbacks
 */
export const defaultRules: Router.FallbackRules = {
  ...Router.baseRules,
  ContextLengthExceeded: "larger-context",
  RateLimited: { interactive: "wait", background: "other-pool" },
  Overloaded: "next",
  ServerError: "next",
  Timeout: "next",
  ConnectionError: "next",
  ContentPolicy: "none",
  BadRequest: "none",
  QuotaExhausted: "other-organization",
  RequestTooLarge: "other-pool",
  RetryDeadlineExceeded: "other-pool",
  Unauthorized: "next",
  PermissionDenied: "next",
  NotFound: "next"
}

/**
 * The error tags always reported (a warning log, `sluice_router_reports_total`, `Decision.reported`),
 * whether or not the call then succeeds elsewhere.
 *
 * @since 0.1.0
 * @category fallbacks
 */
export const defaultReport: ReadonlyArray<string> = ["QuotaExhausted", "Unauthorized", "PermissionDenied", "NotFound"]

/**
 * What a routed call can fail with: the `OpenAi` service's errors (from the last deployment tried), or
 * `NoCandidate` when no deployment could take it.
 *
 * @since 0.1.0
 * @category errors
 */
export type RoutedError = OpenAi.CallError | Router.NoCandidate

// -----------------------------------------------------------------------------
// service
// -----------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace OpenAiRouter {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Options {
    /** In order of preference (the `priority` strategy's order). */
    readonly deployments: ReadonlyArray<Deployment>
    /** The client of deployments that name none. */
    readonly client?: OpenAIClient | OpenAi.ClientOptions | undefined
    /**
     * A strategy or a built-in's name; default `"priority"` (deployments in order, falling back). It is
     * wrapped in `Router.byTask` when there is a task table and in `Router.eligible` (capabilities,
     * context window, tags, region) unless `filters: false`.
     */
    readonly strategy?: Router.RoutingStrategy | StrategyName | undefined
    readonly filters?: boolean | undefined
    /** Task kind → deployment ids, models or aliases, best first. */
    readonly tasks?: Router.TaskTable | undefined
    /** Deployments not listed for a task: skipped (default) or tried after the listed ones. */
    readonly taskOthers?: "skip" | "fallback" | undefined
    /** Merged over {@link defaultRules}. */
    readonly rules?: Router.FallbackRules | undefined
    /** Error tags always reported (default {@link defaultReport}). */
    readonly report?: ReadonlyArray<string> | undefined
    /**
     * The retry policy of each attempt (default `OpenAiRetry.defaultPolicy`), minus what the router falls
     * over on (see the module's documentation).
     */
    readonly retry?: Retry.Policy<OpenAiError.OpenAiError> | undefined
    /**
     * Circuit breakers: options for one breaker per deployment (default: the `OpenAi` service's, open
     * after 5 server errors, overloads, timeouts or connection errors in a row, for 30 s), an existing
     * breaker service shared by every deployment (keyed by model), or `false` for none.
     */
    readonly breaker?:
      | false
      | CircuitBreaker.CircuitBreaker.Options
      | CircuitBreaker.CircuitBreaker.Service
      | undefined
    /** The router's "wait" retries of one deployment per call after the service's own; default 0. */
    readonly maxWaits?: number | undefined
    /** EWMA weight of the newest latency and error observation (default 0.2). */
    readonly alpha?: number | undefined
    /** Decisions kept for `decisions` (default 1000). */
    readonly keepDecisions?: number | undefined
    readonly onDecision?: ((decision: Router.Decision) => Effect.Effect<void>) | undefined
    /** Every deployment's call events, with the deployment's id. */
    readonly onEvent?: ((deployment: string, event: OpenAi.CallEvent) => Effect.Effect<void>) | undefined
    /** Limits for {@link layer}: a usage tier for every organization… */
    readonly tier?: Tiers.Tier | undefined
    /** …or per organization (a tier and explicit budgets on its scopes)… */
    readonly organizations?:
      | {
        readonly [organization: string]: {
          readonly tier?: Tiers.Tier | undefined
          readonly budgets?: ReadonlyArray<Budget.Budget> | undefined
        }
      }
      | undefined
    /** …and explicit budgets on any scope (they win for their scope). */
    readonly budgets?: ReadonlyArray<Budget.Budget> | undefined
    /** Passed to every deployment's `OpenAi` service. */
    readonly adaptive?: OpenAi.OpenAi.Options["adaptive"]
    readonly poolOf?: ((model: string) => string) | undefined
    readonly defaultMaxOutputTokens?: number | undefined
    readonly settleUsage?: boolean | undefined
    /**
     * See `OpenAi.Options.firstContactRamp`. A deployment whose ramp holds its calls looks full to the strategies
     * (its `peek` says the ramp binds), so calls spill to the next deployment until the ramp ends: the bulk runner
     * leaves it off when it routes.
     *
     * @since 0.2.0
     */
    readonly firstContactRamp?: boolean | undefined
    /** See `OpenAi.Options.timeSlice`: a routed call waits for its turn before the router chooses. */
    readonly timeSlice?: OpenAi.OpenAi.Options["timeSlice"]
  }

  /**
   * Per-call options. `task` is looked up in the task table; `deployments` restricts the call to some
   * deployments (ids, models or aliases); `capabilities`, `tags` and `region` filter; `priority`,
   * `deadline`, `maxWait` and `tenant` are the `OpenAi` service's (the tenant's scope is peeked with every
   * deployment's); `retry` replaces the router's policy for this call (`false`: one attempt per
   * deployment).
   *
   * @since 0.1.0
   * @category models
   */
  export interface CallOptions {
    readonly task?: string | undefined
    readonly priority?: RateLimiter.Lane | undefined
    readonly deadline?: Date | number | undefined
    readonly maxWait?: Duration.DurationInput | undefined
    readonly tenant?: string | undefined
    readonly capabilities?: ReadonlyArray<Router.Capability> | undefined
    readonly tags?: ReadonlyArray<string> | undefined
    readonly region?: string | undefined
    readonly deployments?: ReadonlyArray<string> | undefined
    readonly retry?: Retry.Policy<OpenAiError.OpenAiError> | false | undefined
  }

  /**
   * A request for {@link Service.run}: the call options, the endpoint kind, an optional model (a
   * deployment's id, model or alias, or a task) and a token estimate per model.
   *
   * @since 0.1.0
   * @category models
   */
  export interface RunRequest extends CallOptions {
    readonly kind?: Kind | undefined
    readonly model?: string | undefined
    /** The estimate of the call on a model (default: one request, no tokens). */
    readonly estimate?: ((model: string) => TokenEstimator.Estimate) | undefined
    /** Whether the call streams (then `lowestLatency` ranks by time to first token). */
    readonly stream?: boolean | undefined
  }

  /**
   * What {@link Service.request} returns: the response, and which deployment served it.
   *
   * @since 0.1.0
   * @category models
   */
  export interface RequestResult {
    readonly body: unknown
    readonly requestId: string | null
    readonly status: number
    readonly deployment: string
    readonly model: string
    readonly decision: Router.Decision
    /**
     * `true` when the response cache answered it (on the deployment's model) or it shared an identical call
     * under way: nothing was sent.
     *
     * @since 0.2.0
     */
    readonly cached?: boolean | undefined
  }

  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service extends OpenAi.CallSurface<RoutedCalls> {
    /** The router (live states, plans, `observe`, decisions and summary). */
    readonly router: Router.Service
    readonly targets: ReadonlyArray<Target>
    /** Every deployment's circuit breaker, keyed by deployment id (always closed with `breaker: false`). */
    readonly breakers: CircuitBreaker.CircuitBreaker.Service
    /**
     * Any metered endpoint by its Batch-API path with a JSON body, for the bulk runner. The body's `model`
     * may be absent (route by strategy), a task, or a deployment's id, model or alias; it is replaced by
     * the chosen deployment's model.
     */
    readonly request: (
      url: string,
      body: Record<string, unknown>,
      options?: CallOptions
    ) => Effect.Effect<RequestResult, RoutedError>
    /**
     * Routes any call: `f` gets the chosen target and the `OpenAi` call options to pass (the retry policy
     * composed with the router's fallbacks).
     */
    readonly run: <A, E, R>(
      request: RunRequest,
      f: (target: Target, call: OpenAi.OpenAi.CallOptions) => Effect.Effect<A, E, R>
    ) => Effect.Effect<readonly [A, Router.Decision], E | Router.NoCandidate, R>
    readonly decisions: Effect.Effect<ReadonlyArray<Router.Decision>>
    readonly summary: Effect.Effect<Router.Summary>
  }
}

/**
 * Parameters whose `model` is optional: a deployment's id, model or alias, or a task (absent: the strategy
 * chooses).
 *
 * @since 0.2.0
 * @category models
 */
export type ModelOptional<P> = Omit<P, "model"> & { readonly model?: string | undefined }

/**
 * The routed calls: the `OpenAi` service's ({@link OpenAi.Calls}), with an optional `model` and
 * {@link OpenAiRouter.CallOptions}, failing with a {@link RoutedError}. A stream is routed at its opening: a
 * call that fails before its first chunk falls over like any other; once chunks flow, a failure ends the
 * stream. The time to the first chunk feeds the router's TTFT EWMA (what `lowestLatency` ranks streams
 * by).
 *
 * @since 0.2.0
 * @category models
 */
export interface RoutedCalls extends OpenAi.CallLambda {
  readonly type: (
    params: ModelOptional<OpenAi.Calls[this["call"]]["params"]>,
    options?: OpenAiRouter.CallOptions
  ) => this["call"] extends "chat.completions.stream" ? Stream.Stream<OpenAi.Calls[this["call"]]["result"], RoutedError>
    : Effect.Effect<OpenAi.Calls[this["call"]]["result"], RoutedError>
}

/**
 * Chat completion parameters whose `model` is optional: a deployment's id, model or alias, or a task.
 *
 * @since 0.1.0
 * @category models
 */
export type ChatParams = ModelOptional<ChatCompletionCreateParamsNonStreaming>

/**
 * Streaming chat completion parameters whose `model` is optional (as for {@link ChatParams}).
 *
 * @since 0.1.0
 * @category models
 */
export type ChatStreamParams = Omit<ChatCompletionCreateParamsStreaming, "model" | "stream"> & {
  readonly model?: string | undefined
  readonly stream?: true | undefined
}

/**
 * Responses API parameters whose `model` is optional (as for {@link ChatParams}).
 *
 * @since 0.1.0
 * @category models
 */
export type ResponsesParams = ModelOptional<ResponseCreateParamsNonStreaming>

/**
 * Embedding parameters whose `model` is optional (as for {@link ChatParams}).
 *
 * @since 0.1.0
 * @category models
 */
export type EmbeddingParams = ModelOptional<EmbeddingCreateParams>

/**
 * Image generation parameters whose `model` is optional (as for {@link ChatParams}).
 *
 * @since 0.1.0
 * @category models
 */
export type ImageParams = ModelOptional<ImageGenerateParamsNonStreaming>

/**
 * The routing service.
 *
 * @since 0.1.0
 * @category models
 */
export type Service = OpenAiRouter.Service

/**
 * The routing service's Tag. Its key is still `@sluice/openai/Routing`, the 0.1.0 key: a tree that holds 0.1.x
 * and 0.2.x of this package (or code written against the deprecated `Routing.Routing`) shares one service.
 *
 * @since 0.1.0
 * @category tags
 */
export class OpenAiRouter extends Context.Tag("@sluice/openai/Routing")<OpenAiRouter, OpenAiRouter.Service>() {}

// -----------------------------------------------------------------------------
// errors
// -----------------------------------------------------------------------------

/**
 * A routing configuration is invalid: `issues` lists every problem with its path
 * (`deployments[1].price.input`), and the message has one line per problem.
 *
 * @since 0.1.0
 * @category errors
 */
export class RoutingConfigError extends Schema.TaggedError<RoutingConfigError>("@sluice/openai/RoutingConfigError")(
  "RoutingConfigError",
  {
    source: Schema.String,
    issues: Budget.ConfigIssues
  }
) {
  /**
   * @since 0.1.0
   */
  override get message(): string {
    return `invalid routing configuration ${this.source}:\n${Budget.formatIssues(this.issues, { at: true })}`
  }
}

// -----------------------------------------------------------------------------
// constructors
// -----------------------------------------------------------------------------

/**
 * Builds the routing service over the `RateLimiter` in context (which must hold, or learn, the budgets of
 * every deployment's organization: {@link layer} builds one from the options). Each deployment gets its own
 * `OpenAi` service (and circuit breaker) on that limiter; the router's candidates carry exactly the scopes
 * those services charge (`OpenAi.scopesFor`), so its peeks read the real budgets.
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import { Budget, RateLimiter } from "@sluice/core"
 * import { OpenAiRouter } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as Redacted from "effect/Redacted"
 *
 * const program = Effect.gen(function*() {
 *   const routed = yield* OpenAiRouter.make({
 *     client: { apiKey: Redacted.make(process.env.OPENAI_API_KEY ?? "") },
 *     deployments: [
 *       { model: "gpt-4o", organization: "acme", contextWindow: 128_000, price: { input: 2.5e-6, output: 1e-5 } },
 *       { model: "gpt-4o-mini", organization: "acme", contextWindow: 128_000, price: { input: 1.5e-7, output: 6e-7 } }
 *     ],
 *     tasks: { classification: ["gpt-4o-mini"], "customer-facing": ["gpt-4o"] }
 *   })
 *   const completion = yield* routed.chat.completions.create(
 *     { messages: [{ role: "user", content: "Classify: I love it" }], max_tokens: 5 },
 *     { task: "classification", priority: "background" }
 *   )
 *   return completion.model
 * }).pipe(
 *   Effect.scoped,
 *   Effect.provide(RateLimiter.layerMemory({
 *     budgets: [
 *       Budget.make("org:acme/pool:gpt-4o", [Budget.Limit.perMinute("tokens", 30_000)]),
 *       Budget.make("org:acme/pool:gpt-4o-mini", [Budget.Limit.perMinute("tokens", 200_000)])
 *     ]
 *   }))
 * )
 * ```
 */
export const make: (
  options: OpenAiRouter.Options
) => Effect.Effect<OpenAiRouter.Service, RoutingConfigError, RateLimiter.RateLimiter | Scope.Scope> = internal.make

/**
 * The budgets the options imply for {@link layer}: per organization of the deployments, its tier's
 * presets (the organization's `tier`, else the options' `tier`) and its explicit budgets, then the
 * options' explicit budgets, which win for their scopes.
 *
 * @since 0.1.0
 * @category limits
 */
export const budgetsFor = (options: OpenAiRouter.Options): ReadonlyArray<Budget.Budget> => {
  const byScope = new Map<string, Budget.Budget>()
  const organizations = new Set(options.deployments.map((d) => d.organization ?? "default"))
  for (const organization of organizations) {
    const own = options.organizations?.[organization]
    for (
      const budget of OpenAi.budgetsFor({ organization, tier: own?.tier ?? options.tier, budgets: own?.budgets })
    ) byScope.set(budget.scope, budget)
  }
  for (const budget of options.budgets ?? []) byScope.set(budget.scope, budget)
  return Array.from(byScope.values())
}

/**
 * The routing service with its own limiter, built from {@link budgetsFor} on the `LimiterStore` in context
 * (memory, or Redis for budgets shared by many processes). Provides both `OpenAiRouter` and `RateLimiter`.
 *
 * @since 0.1.0
 * @category layers
 * @example
 * ```ts
 * import { LimiterStore } from "@sluice/core"
 * import { OpenAiRouter } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 * import * as Redacted from "effect/Redacted"
 *
 * const Live = OpenAiRouter.layer({
 *   tier: 1,
 *   deployments: [
 *     { model: "gpt-4o", organization: "acme", client: { apiKey: Redacted.make("sk-acme") } },
 *     { model: "gpt-4o", organization: "research", client: { apiKey: Redacted.make("sk-research") } }
 *   ],
 *   strategy: "leastWait"
 * }).pipe(Layer.provide(LimiterStore.layerMemory))
 *
 * const program = Effect.gen(function*() {
 *   const routed = yield* OpenAiRouter.OpenAiRouter
 *   yield* routed.chat.completions.create(
 *     { messages: [{ role: "user", content: "Summarise: …" }], max_tokens: 200 },
 *     { priority: "background" }
 *   )
 *   const summary = yield* routed.summary
 *   return `${summary.spilled} of ${summary.decisions} spilled`
 * }).pipe(Effect.provide(Live))
 * ```
 */
export const layer = (
  options: OpenAiRouter.Options
): Layer.Layer<OpenAiRouter | RateLimiter.RateLimiter, RoutingConfigError, LimiterStore.LimiterStore> => {
  const limiter = RateLimiter.layer({ budgets: budgetsFor(options), coldStartLag: OpenAi.coldStartLag })
  return Layer.merge(limiter, Layer.scoped(OpenAiRouter, make(options)).pipe(Layer.provide(limiter))).pipe(Layer.fresh)
}

// -----------------------------------------------------------------------------
// configuration as data
// -----------------------------------------------------------------------------

const NonNegative = Schema.Number.pipe(Schema.finite(), Schema.nonNegative())
const PositiveInt = Schema.Number.pipe(Schema.int(), Schema.positive())

/**
 * One deployment in a routing file. Secrets are never in the file: `apiKeyEnv` names the environment
 * variable holding the key (read as `Redacted`), and `client` names a client given in code.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DeploymentConfig = Schema.Struct({
  id: Schema.optional(Schema.NonEmptyString),
  model: Schema.NonEmptyString,
  organization: Schema.optional(Schema.NonEmptyString),
  project: Schema.optional(Schema.NonEmptyString),
  kind: Schema.optional(Schema.Literal("chat", "embedding", "image")),
  client: Schema.optional(Schema.NonEmptyString),
  baseURL: Schema.optional(Schema.NonEmptyString),
  apiKeyEnv: Schema.optional(Schema.NonEmptyString),
  organizationId: Schema.optional(Schema.NonEmptyString),
  projectId: Schema.optional(Schema.NonEmptyString),
  price: Schema.optional(Schema.Struct({ input: NonNegative, output: NonNegative })),
  contextWindow: Schema.optional(PositiveInt),
  capabilities: Schema.optional(Schema.Array(Schema.NonEmptyString)),
  tags: Schema.optional(Schema.Array(Schema.NonEmptyString)),
  weight: Schema.optional(NonNegative),
  region: Schema.optional(Schema.NonEmptyString),
  aliases: Schema.optional(Schema.Array(Schema.NonEmptyString))
}).annotations({ identifier: "DeploymentConfig" })

/**
 * @since 0.1.0
 * @category models
 */
export type DeploymentConfig = Schema.Schema.Type<typeof DeploymentConfig>

/**
 * A routing file (what `sluice run --routing file` loads). Every field but `deployments` is optional;
 * unknown fields are errors (a typo is not silently ignored).
 *
 * ```json
 * {
 *   "deployments": [
 *     { "id": "acme/gpt-4o", "model": "gpt-4o", "organization": "acme",
 *       "contextWindow": 128000, "price": { "input": 2.5e-6, "output": 1e-5 },
 *       "capabilities": ["tools", "vision", "json"], "tags": ["large"] },
 *     { "id": "acme/gpt-4o-mini", "model": "gpt-4o-mini", "organization": "acme",
 *       "contextWindow": 128000, "price": { "input": 1.5e-7, "output": 6e-7 }, "aliases": ["fast"] },
 *     { "id": "research/gpt-4o", "model": "gpt-4o", "organization": "research",
 *       "apiKeyEnv": "OPENAI_API_KEY_RESEARCH", "organizationId": "org-research", "baseURL": "https://api.openai.com/v1" }
 *   ],
 *   "strategy": "priority",
 *   "tasks": { "classification": ["gpt-4o-mini"], "long-document": ["gpt-4o"] },
 *   "taskOthers": "skip",
 *   "rules": { "Overloaded": "next", "RateLimited": { "interactive": "wait", "background": "other-pool" } },
 *   "report": ["QuotaExhausted"],
 *   "tier": 1,
 *   "organizations": { "research": { "tier": 3 } }
 * }
 * ```
 *
 * - `deployments[]`: see {@link DeploymentConfig}; a deployment with none of `client`, `baseURL`,
 *   `apiKeyEnv`, `organizationId`, `projectId` uses the default client given in code (the CLI's), and one
 *   with some of them gets its own client, the rest taken from the default client.
 * - `strategy`: `priority` (default), `leastWait`, `weightedRandom`, `cheapest`, `lowestLatency`, or a
 *   name given in code (`strategies` of {@link optionsFromConfig}).
 * - `tasks`: task kind → deployment ids, models or aliases, best first (`Router.TaskTable`);
 *   `taskOthers`: deployments not listed for a task are `skip`ped (default) or tried after, as `fallback`.
 * - `rules`: error `_tag` (or `Saturated`, `*`) → action, or `{ interactive, background }` actions
 *   (`Router.FallbackRules`), merged over {@link defaultRules}; `report`: tags always reported.
 * - `tier`, `organizations.<name>.tier`: usage-tier presets for the limits.
 *
 * @since 0.1.0
 * @category schemas
 */
export const RoutingConfig = Schema.Struct({
  deployments: Schema.NonEmptyArray(DeploymentConfig),
  strategy: Schema.optional(Schema.NonEmptyString),
  tasks: Schema.optional(Router.TaskTable),
  taskOthers: Schema.optional(Schema.Literal("skip", "fallback")),
  rules: Schema.optional(Router.FallbackRules),
  report: Schema.optional(Schema.Array(Schema.String)),
  tier: Schema.optional(Tiers.Tier),
  organizations: Schema.optional(
    Schema.Record({ key: Schema.String, value: Schema.Struct({ tier: Schema.optional(Tiers.Tier) }) })
  )
}).annotations({ identifier: "RoutingConfig" })

/**
 * @since 0.1.0
 * @category models
 */
export type RoutingConfig = Schema.Schema.Type<typeof RoutingConfig>

/**
 * Decodes a routing file's content (parsed JSON) into a {@link RoutingConfig}, failing with a
 * {@link RoutingConfigError} that names the path of every problem, including the cross-field ones
 * (duplicate ids, task entries naming no deployment, unknown strategies).
 *
 * @since 0.1.0
 * @category decoding
 * @example
 * ```ts
 * import { OpenAiRouter } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 *
 * const program = OpenAiRouter.decodeConfig({
 *   deployments: [{ model: "gpt-4o", price: { input: "cheap", output: 1e-5 } }]
 * }, "routing.json").pipe(
 *   Effect.catchTag("RoutingConfigError", (error) => Effect.succeed(error.issues[0].path))
 * )
 * // "deployments[0].price.input"
 * ```
 */
export const decodeConfig: (
  input: unknown,
  source?: string,
  options?: { readonly strategies?: Readonly<Record<string, Router.RoutingStrategy>> | undefined }
) => Effect.Effect<RoutingConfig, RoutingConfigError> = config.decodeConfig

/**
 * What code adds to a routing file: the default client (the CLI's), named clients and strategies, and any
 * other {@link OpenAiRouter.Options} (they win over the file's).
 *
 * @since 0.1.0
 * @category models
 */
export interface ConfigDefaults extends Partial<Omit<OpenAiRouter.Options, "deployments" | "strategy">> {
  readonly clients?: Readonly<Record<string, OpenAIClient | OpenAi.ClientOptions>> | undefined
  readonly strategies?: Readonly<Record<string, Router.RoutingStrategy>> | undefined
}

/**
 * Options from a decoded routing file: resolves each deployment's client (its `apiKeyEnv` read with
 * `Config.redacted`) and the strategy's name.
 *
 * @since 0.1.0
 * @category constructors
 */
export const optionsFromConfig: (
  config: RoutingConfig,
  defaults?: ConfigDefaults,
  source?: string
) => Effect.Effect<OpenAiRouter.Options, RoutingConfigError | ConfigError.ConfigError> = config.optionsFromConfig

/**
 * The routing service (and its limiter) from a routing file's content: decoded with
 * {@link decodeConfig} (errors name the path), clients resolved with {@link optionsFromConfig}.
 *
 * @since 0.1.0
 * @category layers
 * @example
 * ```ts
 * import { LimiterStore } from "@sluice/core"
 * import { OpenAiRouter } from "@sluice/openai"
 * import * as Layer from "effect/Layer"
 * import * as Redacted from "effect/Redacted"
 * import * as fs from "node:fs"
 *
 * const Live = OpenAiRouter.layerConfig(JSON.parse(fs.readFileSync("routing.json", "utf8")), {
 *   client: { apiKey: Redacted.make(process.env.OPENAI_API_KEY ?? "") },
 *   source: "routing.json"
 * }).pipe(Layer.provide(LimiterStore.layerMemory))
 * ```
 */
export const layerConfig = (
  input: unknown,
  defaults: ConfigDefaults & { readonly source?: string | undefined } = {}
): Layer.Layer<
  OpenAiRouter | RateLimiter.RateLimiter,
  RoutingConfigError | ConfigError.ConfigError,
  LimiterStore.LimiterStore
> => {
  const { source = "<routing>", ...rest } = defaults
  return Layer.unwrapEffect(
    Effect.map(
      Effect.flatMap(decodeConfig(input, source, rest), (config) => optionsFromConfig(config, rest, source)),
      layer
    )
  )
}

// -----------------------------------------------------------------------------
// decision records
// -----------------------------------------------------------------------------

/**
 * A router summary in words: what each deployment served, how much spilled from where to where and why,
 * what was reported.
 *
 * @since 0.1.0
 * @category decisions
 */
export const formatSummary = (summary: Router.Summary): string => {
  const served = Object.entries(summary.chosen).map(([id, n]) => `${id} ${n}`).join(", ")
  const lines = [
    `${summary.decisions} calls routed, ${summary.failures} failed; served: ${served === "" ? "none" : served}`,
    `spilled: ${summary.spilled}${
      summary.decisions > 0 ? ` (${((100 * summary.spilled) / summary.decisions).toFixed(1)}%)` : ""
    }`
  ]
  for (const spill of summary.spills) lines.push(`  ${spill.from} -> ${spill.to} (${spill.reason}): ${spill.count}`)
  if (summary.reported > 0) lines.push(`reported: ${summary.reported}`)
  return lines.join("\n")
}

// -----------------------------------------------------------------------------
// deprecated names
// -----------------------------------------------------------------------------

/**
 * The service's Tag under its 0.1.0 name.
 *
 * @deprecated Since 0.2.0: use {@link OpenAiRouter} (the same Tag). `Routing` beside core's `Router` read as
 * two concepts.
 * @since 0.1.0
 * @category tags
 */
export const Routing: typeof OpenAiRouter = OpenAiRouter

/**
 * @deprecated Since 0.2.0: use {@link OpenAiRouter}.
 * @since 0.1.0
 * @category tags
 */
export type Routing = OpenAiRouter

/**
 * @deprecated Since 0.2.0: use the {@link OpenAiRouter} namespace (the same interfaces).
 * @since 0.1.0
 * @category models
 */
export declare namespace Routing {
  /**
   * @deprecated Since 0.2.0: use `OpenAiRouter.Options`.
   * @since 0.1.0
   */
  export type Options = OpenAiRouter.Options
  /**
   * @deprecated Since 0.2.0: use `OpenAiRouter.CallOptions`.
   * @since 0.1.0
   */
  export type CallOptions = OpenAiRouter.CallOptions
  /**
   * @deprecated Since 0.2.0: use `OpenAiRouter.RunRequest`.
   * @since 0.1.0
   */
  export type RunRequest = OpenAiRouter.RunRequest
  /**
   * @deprecated Since 0.2.0: use `OpenAiRouter.RequestResult`.
   * @since 0.1.0
   */
  export type RequestResult = OpenAiRouter.RequestResult
  /**
   * @deprecated Since 0.2.0: use `OpenAiRouter.Service`.
   * @since 0.1.0
   */
  export type Service = OpenAiRouter.Service
}
