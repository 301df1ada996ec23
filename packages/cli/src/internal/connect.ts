/**
 * Where a command's calls go and under which limits: the executor `run`, `pipeline run` and `pipeline worker`
 * build from the options they share (`connectOptions` in `options.ts`): the limits file, the embedded simulator or a
 * real server with its key, the budgets on Redis.
 *
 * @internal
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import type { Budget } from "@sluice/core"
import { HoldStore } from "@sluice/core"
import type { Tiers } from "@sluice/openai"
import { BatchOffload, BulkExecutor } from "@sluice/openai"
import type { SimConfig, SimStats } from "@sluice/testing"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { checkBaseUrl } from "../Cli.js"
import { checkRedisUrl, usage } from "./handler.js"
import { budgetsOfLimits, enqueuedOfLimits, loadLimits, unknownModels } from "./limits.js"
import type { ConnectOptions } from "./options.js"
import type { UsageError } from "./usageError.js"

/**
 * The simulator, loaded only when used (`run` against a real server and `plan` do not need it).
 *
 * @internal
 */
export const testing = Effect.promise(() => import("@sluice/testing"))

/** @internal */
export const testingNode = Effect.promise(() => import("@sluice/testing/node"))

/**
 * A scenario by name (`tier1`, `tier5`, `free`) or from a scenario file.
 *
 * @internal
 */
export const scenarioOf = (name: string): Effect.Effect<SimConfig.Scenario, UsageError, FileSystem.FileSystem> =>
  Effect.flatMap(testing, ({ Scenario, SimConfig }) => {
    switch (name) {
      case "tier1":
        return Effect.succeed(Scenario.tier1())
      case "tier5":
        return Effect.succeed(Scenario.tier5())
      case "free":
        return Effect.succeed(Scenario.free())
      default:
        return Effect.mapError(SimConfig.load(name), (e) => usage(e.message))
    }
  })

// `--redis`: @sluice/redis (and ioredis) is an optional peer dependency, loaded only when asked for.
const redisStore = (url: string) =>
  Effect.tryPromise({
    try: () => import("@sluice/redis"),
    catch: (cause) =>
      usage(
        `--redis needs the @sluice/redis package (npm install @sluice/redis): ${
          cause instanceof Error ? cause.message : String(cause)
        }`
      )
  }).pipe(
    // one connection for the limiter's store and the Batch API offload's holds, open as long as the run
    Effect.flatMap(({ RedisLimiterStore }) =>
      Effect.mapError(
        Layer.build(RedisLimiterStore.layerWithHolds({ url: Redacted.make(url) })),
        (e) => usage(`--redis: ${e.message}`)
      )
    ),
    Effect.map((context) => ({
      layer: Layer.succeedContext(context),
      holds: Context.get(context, HoldStore.HoldStore)
    }))
  )

/**
 * `body` in simulated time `--speed` times faster than real time, with `--simulate` and a valid speed (else as
 * is: {@link connect} names a bad `--speed`).
 *
 * @internal
 */
export const atSpeed = <A, E, R>(options: ConnectOptions, body: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  options.speed !== 1 && Option.isSome(options.simulate) && options.speed > 0 && Number.isFinite(options.speed)
    ? Effect.flatMap(testing, ({ SimClock }) => SimClock.withSpeed(body, options.speed))
    : body

/**
 * The executor of a command: the limits (`--tier`, `--limits`), the server (`--simulate`'s embedded simulator, or
 * `--base-url` with the key from `--api-key-env`), the budgets' store (`--redis`).
 *
 * @internal
 */
export const connect = (
  options: ConnectOptions,
  rest:
    & Pick<
      BulkExecutor.Options,
      "progress" | "priority" | "deadlineMs" | "routing" | "cache" | "onEvent"
    >
    & { readonly budgets?: ReadonlyArray<Budget.Budget> | undefined }
) =>
  Effect.gen(function*() {
    const limits = Option.isSome(options.limits) ? yield* loadLimits(options.limits.value) : undefined
    const enqueued = enqueuedOfLimits(limits)
    if (limits !== undefined && Option.isSome(options.limits)) {
      for (const model of unknownModels(limits)) {
        yield* Console.error(
          `sluice: warning: ${options.limits.value}: models.${model} is not a model sluice knows (no tier preset); ` +
            `its limits apply only to lines whose body.model is ${JSON.stringify(model)}`
        )
      }
    }

    if (!(options.speed > 0) || !Number.isFinite(options.speed)) {
      return yield* usage("--speed must be above 0")
    }
    if (options.speed !== 1 && Option.isNone(options.simulate)) {
      return yield* usage("--speed only applies with --simulate (a real API runs in real time)")
    }

    let fetch: BulkExecutor.Fetch | undefined
    let baseUrl: string
    let apiKey: Redacted.Redacted<string>
    let simulated: { readonly name: string } | undefined
    let simulatorStats: Effect.Effect<SimStats.Snapshot> | undefined
    if (Option.isSome(options.simulate)) {
      const { SimFetch, Simulator } = yield* testing
      // counters only: a run of a million lines must not keep a record of every attempt
      const scenario = { ...(yield* scenarioOf(options.simulate.value)), stats: "counts" as const }
      const simulator = yield* Simulator.make(scenario)
      fetch = yield* Effect.provideService(SimFetch.make, Simulator.Simulator, simulator)
      baseUrl = "http://simulator.invalid/v1"
      apiKey = Redacted.make("sk-simulated")
      simulated = { name: scenario.name }
      simulatorStats = simulator.stats
    } else {
      baseUrl = yield* checkBaseUrl(
        Option.isSome(options.baseUrl)
          ? { text: options.baseUrl.value, from: "--base-url" }
          : Option.match(yield* Config.option(Config.string("OPENAI_BASE_URL")), {
            onNone: () => ({ text: "https://api.openai.com/v1", from: "the default" }),
            onSome: (text) => ({ text, from: "OPENAI_BASE_URL" })
          })
      )
      apiKey = yield* Config.redacted(options.apiKeyEnv).pipe(
        Effect.mapError(() => usage(`no API key: set ${options.apiKeyEnv} (or pass --api-key-env NAME)`))
      )
      if (Redacted.value(apiKey).trim().length === 0) {
        return yield* usage(`the API key in ${options.apiKeyEnv} is empty: set it (or pass --api-key-env NAME)`)
      }
    }
    const organizationId = yield* Config.option(Config.string("OPENAI_ORG_ID"))
    const projectId = yield* Config.option(Config.string("OPENAI_PROJECT_ID"))

    const redis = Option.isSome(options.redis)
      ? yield* redisStore(yield* checkRedisUrl(options.redis.value, "--redis"))
      : undefined
    const organization = Option.getOrUndefined(organizationId)
    const executor = yield* BulkExecutor.make({
      store: redis?.layer,
      baseUrl,
      apiKey,
      organization,
      organizationId: organization,
      projectId: Option.getOrUndefined(projectId),
      tier: Option.isSome(options.tier) ? (Number(options.tier.value) as Tiers.Tier) : undefined,
      budgets: limits === undefined && rest.budgets === undefined ? undefined : [
        ...(limits === undefined ? [] : budgetsOfLimits(limits, organization ?? "default")),
        ...Array.from(enqueued, ([model, tokens]) => BatchOffload.budget(model, tokens)),
        ...(rest.budgets ?? [])
      ],
      ...rest,
      fetch
    }).pipe(Effect.mapError((error) => usage(error.message)))
    if (simulated !== undefined) {
      yield* Console.error(
        `sluice: simulated OpenAI (${simulated.name}) in this process${
          options.speed === 1 ? "" : `, time ${options.speed}x faster than real`
        }; no API key, no network`
      )
    }
    return {
      apiKey,
      baseUrl,
      enqueued,
      executor,
      fetch,
      holds: redis?.holds,
      limits,
      organization,
      projectId,
      simulatorStats
    }
  })
