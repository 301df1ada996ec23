/**
 * The OpenAI executor's mechanism: the limiter and the `OpenAi` service (or the router) it sends through,
 * progress fed from the call events (waits, 429s, retries, the binding budget, tokens, the theoretical
 * minimum), and cancelling (a signal, an outage) without interrupting a call on the wire. The documentation
 * and the policy (`retryPolicy`, `describeError`) are in `BulkExecutor.ts`.
 *
 * @internal
 */
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import * as Clock from "effect/Clock"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type * as BulkExecutor from "../BulkExecutor.js"
import { Cancelled, describeError, retryPolicy } from "../BulkExecutor.js"
import type * as BulkRunner from "../BulkRunner.js"
import * as OpenAi from "../OpenAi.js"
import * as OpenAiRouter from "../OpenAiRouter.js"
import * as ResponseCache from "../ResponseCache.js"
import * as TokenEstimator from "../TokenEstimator.js"

/** Failures after which a call would be retried: while the run stops, a call that failed one is given up. */
const transient = new Set(["RateLimited", "Overloaded", "ServerError", "Timeout", "ConnectionError", "Conflict"])

/** How the process, not the line, is at fault: before any answer, these mean the server is not reachable. */
const unreachable = new Set(["ConnectionError", "Timeout", "CircuitOpen"])

/**
 * The call a fiber runs for, so that `onEvent` (which runs in that fiber) can tell whether it is on the wire.
 */
interface CallState {
  sending: boolean
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
  cancelled: Cancelled | undefined
}
const currentCall = FiberRef.unsafeMake<CallState | undefined>(undefined)

const windowName = (limit: Budget.Limit): string => {
  const ms = limit.windowMillis
  return ms === 60_000 ? "min" : ms === 86_400_000 ? "day" : ms === 1_000 ? "s" : `${ms}ms`
}

/** @internal */
export const make = (
  options: BulkExecutor.Options
): Effect.Effect<
  BulkExecutor.Executor,
  OpenAiRouter.RoutingConfigError | ConfigError.ConfigError | Error,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const organization = options.organization ?? "default"
    const progress = options.progress
    const explicit = options.budgets ?? []
    // a bulk job is long: the first-contact ramp costs it nothing, and spares its first herd the 429s of a limit
    // enforced over a shorter period than announced (see `OpenAi.Options.firstContactRamp`); not when routed, where a
    // deployment held by its ramp would look full and its calls spill to the next one
    const serviceOptions: OpenAi.OpenAi.Options = {
      organization,
      tier: options.tier,
      budgets: explicit,
      firstContactRamp: true
    }
    const clientOptions: OpenAi.ClientOptions = {
      apiKey: options.apiKey,
      baseURL: options.baseUrl,
      organizationId: options.organizationId,
      projectId: options.projectId,
      fetch: options.fetch as typeof globalThis.fetch | undefined
    }
    const routingOptions = options.routing === undefined ? undefined : yield* Effect.flatMap(
      OpenAiRouter.decodeConfig(options.routing.config, options.routing.path),
      (config) =>
        OpenAiRouter.optionsFromConfig(config, {
          client: clientOptions,
          tier: options.tier,
          budgets: explicit,
          retry: retryPolicy,
          onEvent: (_deployment, event) => onEvent(event)
        }, options.routing!.path)
    )
    const budgets = routingOptions === undefined
      ? OpenAi.budgetsFor(serviceOptions)
      : OpenAiRouter.budgetsFor(routingOptions)
    // built in the executor's scope: a Redis store's connection lives as long as the run
    const store = yield* Layer.build(options.store ?? LimiterStore.layerMemory)
    const limiter = yield* RateLimiter.make({ budgets, coldStartLag: OpenAi.coldStartLag }).pipe(Effect.provide(store))

    // Charged totals per scope and dimension in this run, for the theoretical minimum.
    const charged = new Map<string, Map<string, number>>()
    let minimumMs = 0
    let lastBinding = 0
    const bindingCounts = new Map<string, number>()

    const minimumFor = (scope: string): number => {
      const totals = charged.get(scope)
      return totals === undefined ? 0 : Budget.theoreticalMinimum(limiter.limitsOf(scope), Object.fromEntries(totals))
    }

    const charge = (scopes: ReadonlyArray<string>, cost: Budget.Cost) =>
      Effect.suspend(() => {
        for (const scope of scopes) {
          let totals = charged.get(scope)
          if (totals === undefined) {
            totals = new Map()
            charged.set(scope, totals)
          }
          for (const [dimension, amount] of Object.entries(cost)) {
            if (amount > 0) totals.set(dimension, (totals.get(dimension) ?? 0) + amount)
          }
          minimumMs = Math.max(minimumMs, minimumFor(scope))
        }
        return progress.setTheoreticalMinimum(minimumMs)
      })

    /** After a wait, which bucket or gate held it up (sampled at most every 500 ms). */
    const sampleBinding = (scopes: ReadonlyArray<string>, cost: Budget.Cost) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        if (now - lastBinding < 500) return
        lastBinding = now
        const estimate = yield* Effect.orElseSucceed(limiter.peek(scopes, cost), () => undefined)
        if (estimate === undefined || Option.isNone(estimate.binding)) return
        const { dimension, reason, scope } = estimate.binding.value
        const limit = limiter.limitsOf(scope).find((l) => l.dimension === dimension)
        const where = scope.replace(/^org:[^/]+\/pool:/, "").replace(/^org:/, "org ")
        const label = reason === "ramp"
          ? `${dimension} first-contact ramp ${where}`
          : reason === "gate" || limit === undefined
          ? `${dimension} gate ${where}`
          : `${dimension}/${windowName(limit)} ${where}`
        bindingCounts.set(label, (bindingCounts.get(label) ?? 0) + 1)
        let top = label
        for (const [name, count] of bindingCounts) if (count > (bindingCounts.get(top) ?? 0)) top = name
        yield* progress.setBinding(top)
      })

    // --- cancelling: Ctrl-C, and an outage (no connection to the server ever succeeded) --------------------
    const calls = new Set<CallState>()
    let cancelling: Cancelled | undefined
    let answered = false
    let unreachableFailures = 0
    /** A failure to reach the server while no call has ever been answered: an outage. */
    const isOutage = (error: { readonly _tag: string }) => !answered && unreachable.has(error._tag)
    /**
     * Interrupts a call's fiber from a daemon (it may be this very fiber, in its `onEvent`), unless the call is on
     * the wire by then: an interrupted request could have reached the server, and a rerun would send it twice.
     */
    const interrupt = (state: CallState): Effect.Effect<void> =>
      Effect.suspend(() => {
        const fiber = state.fiber
        if (state.cancelled !== undefined || fiber === undefined || cancelling === undefined) return Effect.void
        const reason = cancelling
        return Effect.asVoid(Effect.forkDaemon(Effect.suspend(() => {
          if (state.sending || state.cancelled !== undefined) return Effect.void
          state.cancelled = reason
          return Fiber.interrupt(fiber)
        })))
      })
    const cancelAll = (reason: Cancelled) =>
      Effect.suspend(() => {
        if (cancelling !== undefined) return Effect.void
        cancelling = reason
        return Effect.forEach(Array.from(calls).filter((state) => !state.sending), interrupt, { discard: true })
      })
    const outage = (error: { readonly _tag: string; readonly message: string }) =>
      new Cancelled({
        kind: "Outage",
        message: `no connection to ${options.baseUrl} has succeeded (${error._tag}: ${error.message}); ` +
          `the lines are left to a rerun`
      })

    /** Tracks the call's state (on the wire or not), whether the server ever answered, and outages. */
    const track = (event: OpenAi.CallEvent): Effect.Effect<void> =>
      Effect.flatMap(FiberRef.get(currentCall), (state) =>
        Effect.suspend(() => {
          if (event._tag === "Admitted") {
            if (state !== undefined) state.sending = true
            return Effect.void
          }
          if (state !== undefined) state.sending = false
          if (event._tag === "Succeeded") {
            answered = true
            return Effect.void
          }
          const error = event.error
          // the server answered (a 429, a 5xx): not an outage; after a cancel the call is not retried either
          if (error.status !== undefined) answered = true
          // the server never answered, and a retry or five attempts could not reach it: an outage, not the lines'
          // fault (the circuit breaker holds retries back, so they alone may not come soon)
          if (isOutage(error) && (event.attempt > 1 || ++unreachableFailures >= 5)) {
            // this call too, when the outage was found before it failed (it was on the wire then, so the cancel
            // passed it by): else it goes on retrying, and the run waits for it
            return Effect.zipRight(cancelAll(outage(error)), state === undefined ? Effect.void : interrupt(state))
          }
          return cancelling !== undefined && state !== undefined && transient.has(error._tag)
            ? interrupt(state)
            : Effect.void
        }))

    const extra = options.onEvent
    const onEvent = (event: OpenAi.CallEvent): Effect.Effect<void> =>
      extra === undefined
        ? Effect.zipRight(track(event), report(event))
        : Effect.zipRight(Effect.zipRight(track(event), report(event)), extra(event))
    const report = (event: OpenAi.CallEvent): Effect.Effect<void> => {
      switch (event._tag) {
        case "Admitted":
          return Effect.all([
            event.attempt > 1 ? progress.recordRetry : Effect.void,
            event.waitedMillis > 0
              ? Effect.zipRight(progress.recordWait(event.waitedMillis), sampleBinding(event.scopes, event.cost))
              : Effect.void
          ], { discard: true })
        case "Succeeded":
          return progress.recordTokens({ reserved: event.reserved.tokens ?? 0, used: event.used.tokens ?? 0 })
        case "Failed":
          return event.error._tag === "RateLimited" ? progress.recordRateLimited : Effect.void
      }
    }

    // the cache, when given, for the service or each deployment's service (they read it from context)
    const withLimiter = <A, E>(effect: Effect.Effect<A, E, RateLimiter.RateLimiter | Scope.Scope>) =>
      Effect.provide(
        options.cache === undefined
          ? effect
          : Effect.provideService(effect, ResponseCache.ResponseCache, options.cache),
        Layer.succeed(RateLimiter.RateLimiter, limiter)
      )
    const routed = routingOptions === undefined ? undefined : yield* withLimiter(OpenAiRouter.make(routingOptions))
    const openai = routed !== undefined ? undefined : yield* withLimiter(
      OpenAi.make(OpenAi.makeClient(clientOptions), { ...serviceOptions, onEvent })
    )

    /** Sends a line: through the router when there is one, else straight to the `OpenAi` service. */
    const send = (
      request: BulkRunner.Request,
      deadline: number | undefined,
      call: BulkExecutor.CallOptions | undefined
    ) => {
      const priority = call?.priority ?? options.priority
      const body = request.body as Record<string, unknown>
      if (routed !== undefined) {
        return Effect.map(
          routed.request(request.url, body, { priority, deadline }),
          (result) => ({
            ...result,
            scopes: routed.targets.find((t) => t.id === result.deployment)?.candidate.scopes ?? []
          })
        )
      }
      const service = openai!
      return Effect.map(
        service.request(request.url, body, {
          retry: retryPolicy,
          priority,
          deadline,
          ...(call?.tenant === undefined ? {} : { tenant: call.tenant })
        }),
        (result) => ({
          ...result,
          scopes: typeof body.model === "string" ? service.scopesFor(body.model) : []
        })
      )
    }

    /** Sends a line in its own fiber, which a cancel interrupts unless it is on the wire. */
    const cancellable = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E | Cancelled> =>
      Effect.suspend(() => {
        if (cancelling !== undefined) return Effect.fail(cancelling)
        const state: CallState = { sending: false, fiber: undefined, cancelled: undefined }
        return Effect.flatMap(Effect.fork(Effect.locally(effect, currentCall, state)), (fiber) => {
          state.fiber = fiber
          calls.add(state)
          return Effect.flatMap(
            Effect.ensuring(
              Effect.zipRight(interrupt(state), Fiber.await(fiber)),
              Effect.sync(() => calls.delete(state))
            ),
            (exit): Effect.Effect<A, E | Cancelled> =>
              state.cancelled !== undefined && Exit.isInterrupted(exit) ? Effect.fail(state.cancelled) : exit
          )
        })
      })

    const execute = (request: BulkRunner.Request, call?: BulkExecutor.CallOptions) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const result = yield* cancellable(
          send(request, options.deadlineMs === undefined ? undefined : now + options.deadlineMs, call)
        ).pipe(
          // a line that gave up on a server that never answered: every other line would too
          Effect.tapError((error) => isOutage(error) ? cancelAll(outage(error)) : Effect.void)
        )
        // a line the cache answered was charged nothing
        if (result.scopes.length > 0 && result.cached !== true) {
          const usage = (result.body as { usage?: Record<string, unknown> } | null)?.usage
          const total = typeof usage?.total_tokens === "number"
            ? usage.total_tokens
            : (Number(usage?.prompt_tokens ?? usage?.input_tokens ?? 0) +
              Number(usage?.completion_tokens ?? usage?.output_tokens ?? 0))
          const images = request.url === "/v1/images/generations"
            ? ((result.body as { data?: ReadonlyArray<unknown> } | null)?.data?.length ?? 1)
            : 0
          yield* charge(result.scopes, { requests: 1, tokens: total, images })
        }
        return { statusCode: result.status, requestId: result.requestId, body: result.body }
      })

    const routingSummary = routed === undefined
      ? Effect.succeed(undefined)
      : Effect.map(routed.summary, OpenAiRouter.formatSummary)

    const describe = (error: BulkExecutor.ExecuteError): BulkRunner.Failure => {
      if (error._tag === "Cancelled") {
        return {
          kind: error.kind,
          code: error.kind === "Signal" ? "signal" : "outage",
          message: error.message,
          stop: true
        }
      }
      // a line that could not reach a server that never answered is not the line's failure: stop, resumable
      if (isOutage(error)) {
        const reason = outage(error)
        return { kind: reason.kind, code: "outage", message: reason.message, stop: true }
      }
      return describeError(error)
    }

    const cancel = (kind: "Signal", message: string) => cancelAll(new Cancelled({ kind, message }))

    // what the OpenAi service learned of its pools (bursts, limits without headers), then the daily limits a 429
    // taught the limiter (per-day buckets it was not given: also through a router, and with per-minute limits)
    const learnedDaily = Effect.map(
      Effect.orElseSucceed(limiter.snapshot, () => undefined),
      (snapshot) =>
        (snapshot?.levels ?? []).filter((level) => level.learned && windowName(level.limit) === "day").map((level) =>
          `${level.dimension} limit ${Math.round(level.limit.amount).toLocaleString("en-US")}/day on ${level.scope}`
        )
    )
    const learned = Effect.zipWith(
      openai === undefined ? Effect.succeed([]) : Effect.map(openai.learned, OpenAi.describeLearned),
      learnedDaily,
      (service, daily) => [...service, ...daily]
    )

    // Every line is estimated: both vocabularies are loaded here, before the run starts, not on the first line of
    // each encoding, where the load (a few hundred ms of CPU, blocking) would stall every call in flight — at
    // `--speed 10` a 1.2 s load mid-run was 12 s of simulated time without dispatch.
    yield* Effect.sync(() => TokenEstimator.load())

    return { execute, describe, cancel, limiter, routingSummary, learned }
  })
