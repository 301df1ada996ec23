/**
 * The routing service: one `OpenAi` service (and breaker) per deployment on the shared limiter, the
 * router over their candidates, and the routed calls.
 *
 * @internal
 */
import { CircuitBreaker, Retry, Router } from "@sluice/core"
import type { RateLimiter } from "@sluice/core"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type OpenAIClient from "openai"
import type {
  ChatCompletionChunk,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionCreateParamsStreaming
} from "openai/resources/chat/completions"
import type { EmbeddingCreateParams } from "openai/resources/embeddings"
import type { ImageGenerateParamsNonStreaming } from "openai/resources/images"
import type { ResponseCreateParamsNonStreaming } from "openai/resources/responses/responses"
import * as OpenAi from "../OpenAi.js"
import * as OpenAiError from "../OpenAiError.js"
import * as OpenAiRetry from "../OpenAiRetry.js"
import type {
  ChatParams,
  EmbeddingParams,
  ImageParams,
  Kind,
  ResponsesParams,
  RoutedError,
  Target
} from "../OpenAiRouter.js"
import {
  defaultReport,
  defaultRules,
  kindOf,
  type OpenAiRouter,
  RoutingConfigError,
  strategies
} from "../OpenAiRouter.js"
import * as TokenEstimator from "../TokenEstimator.js"
import * as Endpoints from "./endpoint.js"
import * as Config from "./routingConfig.js"
import * as TimeSlice from "./timeSlice.js"

const estimateKey = (model: string, defaultMax: number | undefined): string =>
  `${TokenEstimator.encodingFor(model)}|${defaultMax ?? TokenEstimator.defaultMaxOutputTokens(model)}`

/** The kind of deployment a metered endpoint needs. */
const kindOfPath = (url: string): Kind | undefined => {
  switch (Endpoints.endpointOf(url)) {
    case "/chat/completions":
    case "/responses":
      return "chat"
    case "/embeddings":
      return "embedding"
    case "/images/generations":
      return "image"
    default:
      return undefined
  }
}

/**
 * A per-attempt policy: `base`, except that an error the router will fall over on is not retried here. Which kinds
 * fall over is fixed for the attempt (the run's tried candidates and constraints do not change during it), so the
 * policy is one object per base policy and set of such kinds: equal routed calls get the same policy, and so share
 * a call under way in the response cache (whose in-flight dedupe tells retry policies apart by identity).
 */
const composedPolicies = new WeakMap<
  Retry.Policy<OpenAiError.OpenAiError>,
  Map<string, Retry.Policy<OpenAiError.OpenAiError>>
>()
/** The kinds a policy may retry (the others are never retried, whatever it says). */
const errorKinds: ReadonlyArray<string> = OpenAiError.OpenAiError.members
  .map((member) => member._tag)
  .filter((kind) => !OpenAiError.neverRetried.has(kind))

const composed = (
  base: Retry.Policy<OpenAiError.OpenAiError>,
  attempt: Router.Attempt
): Retry.Policy<OpenAiError.OpenAiError> => {
  const fallsOver = new Set(errorKinds.filter((kind) => attempt.fallsOver({ _tag: kind })))
  const signature = Array.from(fallsOver).join(",")
  let byKinds = composedPolicies.get(base)
  if (byKinds === undefined) composedPolicies.set(base, byKinds = new Map())
  const known = byKinds.get(signature)
  if (known !== undefined) return known
  const s = base.settings
  const policy = Retry.make<OpenAiError.OpenAiError>({
    is: s.is,
    kind: s.kind,
    retryable: (error) => s.retryable(error) && !fallsOver.has(error._tag),
    retryAfter: s.retryAfter,
    kinds: s.kinds,
    maxRetries: s.maxRetries,
    maxElapsed: Number.isFinite(s.maxElapsed) ? s.maxElapsed : undefined
  })
  byKinds.set(signature, policy)
  return policy
}

const closedInfo = (key: string): CircuitBreaker.Info => ({
  key,
  state: "Closed",
  openUntil: Option.none(),
  consecutiveFailures: 0,
  windowCalls: 0,
  windowFailures: 0,
  probesInFlight: 0
})

/** @internal */
export const make = (
  options: OpenAiRouter.Options
): Effect.Effect<OpenAiRouter.Service, RoutingConfigError, RateLimiter.RateLimiter | Scope.Scope> =>
  Effect.gen(function*() {
    const source = "<options>"
    const issues: Array<{ path: string; message: string }> = []
    if (options.deployments.length === 0) issues.push({ path: "deployments", message: "no deployments" })

    // clients: one SDK client per client object given
    const clients = new Map<unknown, OpenAIClient>()
    const clientFor = (given: OpenAIClient | OpenAi.ClientOptions): OpenAIClient => {
      let client = clients.get(given)
      if (client === undefined) {
        client = Config.isClient(given) ? given : OpenAi.makeClient(given)
        clients.set(given, client)
      }
      return client
    }

    for (const issue of Config.crossFieldIssues(options)) issues.push(issue)
    options.deployments.forEach((d, i) => {
      if (d.client === undefined && options.client === undefined) {
        issues.push({ path: `deployments[${i}].client`, message: "no client, and the router has no default client" })
      }
    })
    if (issues.length > 0) return yield* Effect.fail(new RoutingConfigError({ source, issues }))

    // one OpenAi service per deployment, on the shared limiter
    const targets: Array<Target> = []
    for (const d of options.deployments) {
      const id = d.id ?? Config.defaultId(d)
      const organization = d.organization ?? "default"
      const openai = yield* OpenAi.make(clientFor(d.client ?? options.client!), {
        organization,
        project: d.project,
        retry: options.retry,
        breaker: options.breaker,
        adaptive: options.adaptive,
        poolOf: options.poolOf,
        defaultMaxOutputTokens: options.defaultMaxOutputTokens,
        settleUsage: options.settleUsage,
        firstContactRamp: options.firstContactRamp,
        timeSlice: options.timeSlice,
        onEvent: options.onEvent === undefined ? undefined : (event) => options.onEvent!(id, event)
      })
      const scopes = openai.scopesFor(d.model)
      const candidate: Router.Candidate = {
        id,
        model: d.model,
        scopes,
        organization,
        // the model's pool in the organization (a project's pool is narrower: the limiter's binding says so)
        pool: scopes[1],
        ...(d.price === undefined ? {} : { price: d.price }),
        ...(d.contextWindow === undefined ? {} : { contextWindow: d.contextWindow }),
        ...(d.capabilities === undefined ? {} : { capabilities: d.capabilities }),
        ...(d.tags === undefined ? {} : { tags: d.tags }),
        ...(d.weight === undefined ? {} : { weight: d.weight }),
        ...(d.region === undefined ? {} : { region: d.region })
      }
      targets.push({
        id,
        model: d.model,
        organization,
        project: d.project,
        kind: d.kind ?? kindOf(d.model),
        aliases: d.aliases ?? [],
        candidate,
        openai
      })
    }
    const byId = new Map(targets.map((t) => [t.id, t] as const))

    // the breakers of every deployment, keyed by deployment id, for the router to read
    const breakerOf = (key: string) => {
      const target = byId.get(key)
      return target?.openai.breakers === undefined ? undefined : { breaker: target.openai.breakers, key: target.model }
    }
    const breakers: CircuitBreaker.CircuitBreaker.Service = {
      withBreaker: (key, self) => {
        const b = breakerOf(key)
        return b === undefined ? self : b.breaker.withBreaker(b.key, self)
      },
      state: (key) => {
        const b = breakerOf(key)
        return b === undefined ? Effect.succeed("Closed" as const) : b.breaker.state(b.key)
      },
      info: (key) => {
        const b = breakerOf(key)
        return b === undefined
          ? Effect.succeed(closedInfo(key))
          : Effect.map(b.breaker.info(b.key), (i) => ({ ...i, key }))
      },
      states: Effect.map(
        Effect.forEach(targets, (t) => {
          const b = breakerOf(t.id)
          return Effect.map(
            b === undefined ? Effect.succeed("Closed" as const) : b.breaker.state(b.key),
            (s) => [t.id, s] as const
          )
        }),
        (entries) => new Map(entries)
      ),
      reset: (key) => {
        const b = breakerOf(key)
        return b === undefined ? Effect.void : b.breaker.reset(b.key)
      },
      trip: (key) => {
        const b = breakerOf(key)
        return b === undefined ? Effect.void : b.breaker.trip(b.key)
      }
    }

    // the strategy: task names may be aliases; the table lists ids and models
    const aliasIds = new Map<string, Array<string>>()
    for (const t of targets) {
      for (const alias of t.aliases) aliasIds.set(alias, [...(aliasIds.get(alias) ?? []), t.id])
    }
    const tasks: Router.TaskTable | undefined = options.tasks === undefined ? undefined : Object.fromEntries(
      Object.entries(options.tasks).map(([task, list]) => {
        const expanded = list.flatMap((name) =>
          byId.has(name) || targets.some((t) => t.model === name) ? [name] : aliasIds.get(name) ?? []
        )
        return [task, expanded as unknown as readonly [string, ...Array<string>]]
      })
    )
    const base = typeof options.strategy === "string"
      ? strategies[options.strategy]
      : options.strategy ?? Router.priority
    const tasked = tasks === undefined ? base : Router.byTask(base, tasks, { others: options.taskOthers ?? "skip" })
    const strategy = options.filters === false ? tasked : Router.eligible(tasked)

    const rules: Router.FallbackRules = { ...defaultRules, ...options.rules }
    const router = yield* Effect.provideService(
      Router.make({
        candidates: targets.map((t) => t.candidate),
        strategy,
        rules,
        report: options.report ?? defaultReport,
        maxWaits: options.maxWaits ?? 0,
        alpha: options.alpha,
        // each deployment's OpenAi service runs its calls under its breaker already
        wrapBreaker: false,
        onDecision: options.onDecision,
        keepDecisions: options.keepDecisions
      }),
      CircuitBreaker.CircuitBreaker,
      breakers
    )
    const basePolicy = options.retry ?? OpenAiRetry.defaultPolicy

    /** Which targets a call may use: its kind, its `model` (a task, or ids/models/aliases) and `deployments`. */
    const resolve = (
      request: OpenAiRouter.RunRequest
    ): Either.Either<
      { readonly task: string | undefined; readonly allowed: ReadonlyArray<Target> },
      Router.NoCandidate
    > => {
      const kind = request.kind
      let task = request.task
      let allowed: ReadonlyArray<Target> = kind === undefined ? targets : targets.filter((t) => t.kind === kind)
      const reasons: Array<{ candidate: string; reason: string }> = []
      if (kind !== undefined) {
        for (const t of targets) {
          if (t.kind !== kind) reasons.push({ candidate: t.id, reason: `serves ${t.kind} calls, not ${kind}` })
        }
      }
      const matches = (t: Target, name: string) => t.id === name || t.model === name || t.aliases.includes(name)
      const model = request.model
      if (model !== undefined && model !== "") {
        if (
          tasks !== undefined && Config.hasOwn(tasks, model) &&
          !targets.some((t) => matches(t, model))
        ) {
          task ??= model
        } else {
          for (const t of allowed) {
            if (!matches(t, model)) reasons.push({ candidate: t.id, reason: `does not serve ${JSON.stringify(model)}` })
          }
          allowed = allowed.filter((t) => matches(t, model))
        }
      }
      const only = request.deployments
      if (only !== undefined) {
        for (const t of allowed) {
          if (!only.some((name) => matches(t, name))) reasons.push({ candidate: t.id, reason: "not requested" })
        }
        allowed = allowed.filter((t) => only.some((name) => matches(t, name)))
      }
      if (allowed.length === 0) {
        return Either.left(new Router.NoCandidate({ ...(task === undefined ? {} : { task }), skipped: reasons }))
      }
      return Either.right({ task, allowed })
    }

    const sliceMillis = TimeSlice.millisOf(options.timeSlice)
    const run = <A, E, R>(
      request: OpenAiRouter.RunRequest,
      f: (target: Target, call: OpenAi.OpenAi.CallOptions) => Effect.Effect<A, E, R>
    ): Effect.Effect<readonly [A, Router.Decision], E | Router.NoCandidate, R> =>
      TimeSlice.enter(
        sliceMillis,
        Effect.suspend(() => {
          const resolved = resolve(request)
          if (Either.isLeft(resolved)) return Effect.fail(resolved.left)
          const { allowed, task } = resolved.right
          // the estimate on each kind of model allowed (encoding, default output); the largest is routed
          let estimate: TokenEstimator.Estimate | undefined
          if (request.estimate !== undefined) {
            const seen = new Set<string>()
            for (const t of allowed) {
              const key = estimateKey(t.model, options.defaultMaxOutputTokens)
              if (seen.has(key)) continue
              seen.add(key)
              const e = request.estimate(t.model)
              if (estimate === undefined || e.tokens > estimate.tokens || e.images > estimate.images) estimate = e
            }
          }
          const policy = request.retry === false ? false : request.retry ?? basePolicy
          // the router weighs waits against the call's deadline, or its `maxWait` from now
          const deadline = request.deadline === undefined
            ? undefined
            : typeof request.deadline === "number"
            ? request.deadline
            : request.deadline.getTime()
          const routerDeadline = request.maxWait === undefined
            ? Effect.succeed(deadline)
            : Effect.map(Clock.currentTimeMillis, (now) => {
              const byWait = now + Duration.toMillis(Duration.decode(request.maxWait!))
              return deadline === undefined ? byWait : Math.min(deadline, byWait)
            })
          return Effect.flatMap(routerDeadline, (routeDeadline) =>
            router.runWithDecision(
              {
                cost: estimate === undefined ? { requests: 1 } : Endpoints.costOf(estimate),
                promptTokens: estimate?.promptTokens,
                outputTokens: estimate?.maxOutputTokens,
                capabilities: request.capabilities,
                task,
                priority: request.priority,
                deadline: routeDeadline,
                tags: request.tags,
                region: request.region,
                stream: request.stream,
                scopes: request.tenant === undefined ? undefined : [`tenant:${request.tenant}`],
                only: allowed.length === targets.length ? undefined : allowed.map((t) => t.id)
              },
              (candidate, attempt) =>
                f(byId.get(candidate.id)!, {
                  priority: request.priority,
                  deadline: request.deadline,
                  maxWait: request.maxWait,
                  // as of the request's arrival: a fallback to another pool (or a wait in place) keeps the
                  // request's place in its lane, not behind the calls that arrived since
                  arrivedAt: attempt.arrivedAt,
                  tenant: request.tenant,
                  retry: policy === false ? false : composed(policy, attempt)
                })
            ))
        })
      )

    const value = <A, E, R>(effect: Effect.Effect<readonly [A, Router.Decision], E, R>) =>
      Effect.map(effect, (pair) => pair[0])

    /**
     * A routed call: routed by the params' `model` (see `resolve`) with the call's estimate on each model
     * allowed, then made by the chosen deployment's `OpenAi` service with the deployment's model.
     */
    const routed = <P, A>(
      kind: Kind,
      modelOf: (params: P) => string | undefined,
      estimate: (params: P, model: string) => TokenEstimator.Estimate,
      call: (
        openai: OpenAi.OpenAi.Service,
        params: P,
        model: string,
        options: OpenAi.OpenAi.CallOptions
      ) => Effect.Effect<A, OpenAi.CallError>
    ) =>
    (params: P, callOptions?: OpenAiRouter.CallOptions): Effect.Effect<A, RoutedError> =>
      value(run(
        { ...callOptions, kind, model: modelOf(params), estimate: (model) => estimate(params, model) },
        (target, co) => call(target.openai, params, target.model, co)
      ))
    const outputs = { defaultMaxOutputTokens: options.defaultMaxOutputTokens }

    const chatCreate = routed(
      "chat",
      (params: ChatParams) => params.model,
      (params, model) => TokenEstimator.chat({ ...params, model }, outputs),
      (openai, params, model, co) =>
        openai.chat.completions.create({ ...params, model } as ChatCompletionCreateParamsNonStreaming, co)
    )

    const chatStream: OpenAiRouter.Service["chat"]["completions"]["stream"] = (params, call) =>
      Stream.unwrapScoped(
        Effect.map(
          run(
            {
              ...call,
              kind: "chat",
              stream: true,
              model: params.model,
              estimate: (model) =>
                TokenEstimator.chat({ ...params, model }, { defaultMaxOutputTokens: options.defaultMaxOutputTokens })
            },
            (target, co) =>
              // each attempt in its own scope: a failed opening releases what it held at once
              Effect.flatMap(Effect.scope, (outer) =>
                Effect.flatMap(Scope.fork(outer, ExecutionStrategy.sequential), (scope) =>
                  Effect.gen(function*() {
                    const started = yield* Clock.currentTimeMillis
                    const pull = yield* Stream.toPull(
                      target.openai.chat.completions.stream(
                        { ...params, model: target.model } as Omit<ChatCompletionCreateParamsStreaming, "stream">,
                        co
                      )
                    )
                    const first = yield* Effect.catchAll(
                      pull,
                      (end) =>
                        Option.isNone(end) ? Effect.succeed(Chunk.empty<ChatCompletionChunk>()) : Effect.fail(end.value)
                    )
                    const now = yield* Clock.currentTimeMillis
                    yield* router.observe(target.id, { ttftMillis: now - started })
                    return { first, pull }
                  }).pipe(
                    Effect.provideService(Scope.Scope, scope),
                    Effect.onExit((exit) => Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void)
                  )))
          ),
          ([{ first, pull }]) =>
            Stream.concat(Stream.fromChunk(first), Stream.repeatEffectChunkOption(pull))
        )
      )

    const responsesCreate = routed(
      "chat",
      (params: ResponsesParams) => typeof params.model === "string" ? params.model : undefined,
      (params, model) =>
        TokenEstimator.responses({ ...params, model } as Parameters<typeof TokenEstimator.responses>[0], outputs),
      (openai, params, model, co) =>
        openai.responses.create({ ...params, model } as ResponseCreateParamsNonStreaming, co)
    )

    const embeddingsCreate = routed(
      "embedding",
      (params: EmbeddingParams) => params.model,
      (params, model) => TokenEstimator.embeddings({ ...params, model }),
      (openai, params, model, co) => openai.embeddings.create({ ...params, model } as EmbeddingCreateParams, co)
    )

    const imagesGenerate = routed(
      "image",
      (params: ImageParams) => params.model,
      (params, model) => TokenEstimator.images({ ...params, model }),
      (openai, params, model, co) => openai.images.generate({ ...params, model } as ImageGenerateParamsNonStreaming, co)
    )

    const request: OpenAiRouter.Service["request"] = (url, body, call) =>
      Effect.suspend(() => {
        const kind = kindOfPath(url)
        if (kind === undefined) {
          return Effect.fail(
            OpenAiError.classify(
              { status: 404, error: { message: `Sluice does not meter ${url}`, code: "unsupported_endpoint" } },
              { model: typeof body.model === "string" ? body.model : "unknown" }
            )
          )
        }
        return Effect.map(
          run(
            {
              ...call,
              kind,
              model: typeof body.model === "string" ? body.model : undefined,
              estimate: (model) =>
                TokenEstimator.forEndpoint(url, { ...body, model }, {
                  defaultMaxOutputTokens: options.defaultMaxOutputTokens
                }) ?? { model, promptTokens: 0, maxOutputTokens: 0, tokens: 0, images: 0 }
            },
            (target, co) =>
              Effect.map(
                target.openai.request(url, { ...body, model: target.model }, co),
                (result) => ({ ...result, deployment: target.id, model: target.model })
              )
          ),
          ([result, decision]): OpenAiRouter.RequestResult => ({ ...result, decision })
        )
      })

    return {
      router,
      targets,
      breakers,
      chat: { completions: { create: chatCreate, stream: chatStream } },
      responses: { create: responsesCreate },
      embeddings: { create: embeddingsCreate },
      images: { generate: imagesGenerate },
      request,
      run,
      decisions: router.decisions,
      summary: router.summary
    } satisfies OpenAiRouter.Service
  })
