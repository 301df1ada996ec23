/**
 * The `sluice` command: `run` (bulk Batch API JSONL at the provider's limit, resumable), `sim` (the simulated
 * OpenAI over HTTP), `plan` (capacity planning) and `report` (run records as an HTML page).
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import type * as CliApp from "@effect/cli/CliApp"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import type * as ValidationError from "@effect/cli/ValidationError"
import type * as FileSystem from "@effect/platform/FileSystem"
import type { Budget } from "@sluice/core"
import { HoldStore } from "@sluice/core"
import type { Tiers } from "@sluice/openai"
import { BatchOffload, BulkExecutor, BulkRunner, Pipeline, PipelineFile } from "@sluice/openai"
import type { SimConfig, SimStats } from "@sluice/testing"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as ChildProcess from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import OpenAI from "openai"
import * as Batch from "./internal/batch.js"
import * as Cache from "./internal/cache.js"
import * as Distributed from "./internal/distributed.js"
import { parseMillis } from "./internal/duration.js"
import * as Evidence from "./internal/evidence.js"
import { budgetsOfLimits, enqueuedOfLimits, loadLimits, readJson, unknownModels } from "./internal/limits.js"
import * as Record from "./internal/record.js"
import * as Report from "./internal/report.js"
import * as Telemetry from "./internal/telemetry.js"
import * as Plan from "./Plan.js"

/**
 * Bad usage (exit code 2): a missing key, a bad limits file, an unknown scenario.
 *
 * @since 0.1.0
 * @category errors
 */
export class UsageError extends Schema.TaggedError<UsageError>("@sluice/cli/UsageError")("UsageError", {
  message: Schema.String
}) {}

/**
 * What the process entry point gives the commands.
 *
 * @since 0.1.0
 * @category models
 */
export interface Environment {
  /** Completes on the first SIGINT/SIGTERM: `run` stops gracefully, `sim` shuts down. */
  readonly stop: Effect.Effect<void>
  /** Sets the process exit code. */
  readonly setExitCode: (code: number) => void
  /** Whether stdout is a terminal (live progress line). */
  readonly isTTY: boolean
  /** Writes progress text as is (no newline added). */
  readonly writeProgress: (text: string) => Effect.Effect<void>
}

const usage = (message: string) => new UsageError({ message })

// `--version`: the version in this package's package.json, one directory above src/ (the workspace) or two above
// dist/esm and dist/cjs (an installed package).
const packageVersion = (): string => {
  for (const path of ["../package.json", "../../package.json"]) {
    try {
      const pkg: unknown = JSON.parse(NodeFs.readFileSync(new URL(path, import.meta.url), "utf8"))
      if (Predicate.isRecord(pkg) && pkg.name === "@sluice/cli" && typeof pkg.version === "string") return pkg.version
    } catch {
      // not at this level
    }
  }
  return "unknown"
}

/**
 * The logger of the `sluice` process: Effect's default format, to stderr (stdout carries only the summary).
 *
 * @since 0.1.0
 * @category commands
 * @example
 * ```ts
 * import { Cli } from "@sluice/cli"
 * import * as Effect from "effect/Effect"
 *
 * Effect.logError("to stderr").pipe(Effect.provide(Cli.logToStderr), Effect.runSync)
 * ```
 */
export const logToStderr: Layer.Layer<never> = Logger.replace(
  Logger.defaultLogger,
  Logger.withConsoleError(Logger.stringLogger)
)

// The simulator is loaded only when used (it is not needed by `run` against a real server or by `plan`).
const testing = Effect.promise(() => import("@sluice/testing"))
const testingNode = Effect.promise(() => import("@sluice/testing/node"))

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

const scenarioOf = (name: string): Effect.Effect<SimConfig.Scenario, UsageError, FileSystem.FileSystem> =>
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

const tierOption = Options.choice("tier", ["1", "2", "3", "4", "5"])

/** A whole-number option with a description and a default. */
/** An option that may be left out, with its description. */
const optional = <A>(option: Options.Options<A>, description: string) =>
  option.pipe(Options.withDescription(description), Options.optional)

const count = (name: string, description: string, fallback: number) =>
  Options.integer(name).pipe(Options.withDescription(description), Options.withDefault(fallback))

// -----------------------------------------------------------------------------------------------------------
// run
// -----------------------------------------------------------------------------------------------------------

const runOptions = {
  input: Options.file("input", { exists: "yes" }).pipe(
    Options.withDescription("Batch API request file (JSONL: {custom_id, method: \"POST\", url, body} a line)")
  ),
  output: Options.file("output").pipe(
    Options.withDescription("Output file (Batch API output format); rerun with the same file to resume")
  ),
  errors: optional(
    Options.file("errors"),
    "Errors file for rejected input lines (JSONL); default <output>.errors.jsonl"
  ),
  baseUrl: optional(
    Options.text("base-url"),
    "OpenAI-compatible base URL (default $OPENAI_BASE_URL, else https://api.openai.com/v1)"
  ),
  apiKeyEnv: Options.text("api-key-env").pipe(
    Options.withDescription("Name of the environment variable holding the API key"),
    Options.withDefault("OPENAI_API_KEY")
  ),
  tier: optional(tierOption, "Usage tier presets for the limits (1-5)"),
  limits: optional(
    Options.file("limits", { exists: "yes" }),
    "Limits file (JSON: {models: {<model>: {rpm, tpm, rpd, tpd, ipm, enqueuedTokens}}})"
  ),
  routing: optional(Options.file("routing", { exists: "yes" }), "Routing table file (JSON)"),
  concurrency: count("concurrency", "Requests in flight at most (the rate limiter paces them)", 256),
  priority: optional(Options.choice("priority", ["interactive", "background"]), "Priority lane for admission"),
  deadline: optional(
    Options.text("deadline"),
    "Per-request admission deadline (e.g. 30s, 5m, 1h30m); with --via auto, the whole job's deadline (e.g. 48h)"
  ),
  via: Options.choice("via", ["live", "batch", "auto"]).pipe(
    Options.withDescription(
      "live: every line at the rate limit; batch: every line the Batch API takes through it (half price, " +
        "state in <output>.batch.json); auto: by batch what fits --deadline, the rest live"
    ),
    Options.withDefault("live" as const)
  ),
  cancel: Options.boolean("cancel").pipe(
    Options.withDescription("Cancel this output's Batch API batches (its lines not done stay resumable)")
  ),
  batchPoll: Options.text("batch-poll").pipe(
    Options.withDescription("Batch API: poll a batch first after this (then x1.5, up to 5 min)"),
    Options.withDefault("10s")
  ),
  batchLease: Options.text("batch-lease").pipe(
    Options.withDescription(
      "Batch API: a batch's enqueued-token hold lapses this long after its run's last renewal (renewed every third)"
    ),
    Options.withDefault("2m")
  ),
  redis: optional(
    Options.text("redis"),
    "Keep the budgets on Redis (redis://host:port) so that several sluice processes share one set of limits; needs @sluice/redis"
  ),
  cache: optional(
    Options.text("cache"),
    "Keep every answer in a response cache (a directory, or redis://host:port with @sluice/redis): a line whose " +
      "body is already there, or under way, is not sent again"
  ),
  simulate: optional(
    Options.text("simulate"),
    "Run against the embedded simulator: tier1 | tier5 | free | <scenario.json>"
  ),
  speed: Options.float("speed").pipe(
    Options.withDescription(
      "With --simulate: run simulated time this many times faster than real time (figures are in simulated time)"
    ),
    Options.withDefault(1)
  ),
  restart: Options.boolean("restart").pipe(
    Options.withDescription("Start over: truncate the output instead of resuming from it")
  ),
  retryFailed: Options.boolean("retry-failed").pipe(
    Options.withDescription(
      "Resend the lines whose output line is a failure; their old lines move to <output>.retried.jsonl"
    )
  ),
  record: optional(
    Options.file("record"),
    "Append a record of the run to this file (JSONL: per second and per line; each rerun adds a segment) for " +
      "`sluice report`"
  ),
  progress: Options.choice("progress", ["auto", "line", "log", "off"]).pipe(
    Options.withDescription("Progress display: live line on a terminal, log lines otherwise (auto)"),
    Options.withDefault("auto")
  ),
  otlp: optional(
    Options.text("otlp"),
    "Export the run's traces and metrics over OTLP/HTTP (JSON) to this URL (e.g. http://localhost:4318); needs " +
      "@effect/opentelemetry"
  ),
  metricsPort: optional(
    Options.integer("metrics-port"),
    "Serve the run's metrics for Prometheus at http://<metrics-host>:N/metrics while it lasts; needs " +
      "@effect/opentelemetry, @opentelemetry/exporter-prometheus and @opentelemetry/sdk-metrics"
  ),
  metricsHost: Options.text("metrics-host").pipe(
    Options.withDescription("The interface --metrics-port listens on"),
    Options.withDefault("127.0.0.1")
  )
} as const

type RunOptions = Command.Command.ParseConfig<typeof runOptions>

/** The options `run` and `pipeline run` share: where the calls go and under which limits. */
const connectOptions = {
  baseUrl: runOptions.baseUrl,
  apiKeyEnv: runOptions.apiKeyEnv,
  tier: runOptions.tier,
  limits: runOptions.limits,
  redis: runOptions.redis,
  simulate: runOptions.simulate,
  speed: runOptions.speed
} as const

type ConnectOptions = Command.Command.ParseConfig<typeof connectOptions>

/**
 * The executor of a command: the limits (`--tier`, `--limits`), the server (`--simulate`'s embedded simulator, or
 * `--base-url` with the key from `--api-key-env`), the budgets' store (`--redis`).
 */
const connect = (
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

    const redis = Option.isSome(options.redis) ? yield* redisStore(options.redis.value) : undefined
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

const runHandler = (env: Environment) => (options: RunOptions) =>
  Effect.flatMap(
    Telemetry.layer({
      otlp: Option.getOrUndefined(options.otlp),
      metricsPort: Option.getOrUndefined(options.metricsPort),
      metricsHost: options.metricsHost
    }),
    (telemetry) =>
      Effect.scoped(
        options.speed !== 1 && Option.isSome(options.simulate) && options.speed > 0 && Number.isFinite(options.speed)
          ? Effect.flatMap(testing, ({ SimClock }) => SimClock.withSpeed(runBody(env, options), options.speed))
          : runBody(env, options)
      ).pipe(Effect.provide(telemetry))
  ).pipe(Effect.catchIf(Predicate.isString, (message) => Effect.fail(usage(message))))

const runBody = (env: Environment, options: RunOptions) =>
  Effect.gen(function*() {
    if (options.concurrency < 1) return yield* usage("--concurrency must be at least 1")
    const deadlineMs = Option.isSome(options.deadline) ? parseMillis(options.deadline.value) : undefined
    if (Option.isSome(options.deadline) && deadlineMs === undefined) {
      return yield* usage(`--deadline: cannot parse ${JSON.stringify(options.deadline.value)}`)
    }
    const via = options.cancel ? "batch" : options.via
    if (via === "auto" && deadlineMs === undefined) {
      return yield* usage("--via auto needs --deadline: the whole job's deadline (e.g. 48h)")
    }
    const batchPollMs = parseMillis(options.batchPoll)
    if (batchPollMs === undefined || !(batchPollMs > 0)) {
      return yield* usage(`--batch-poll: cannot parse ${JSON.stringify(options.batchPoll)}`)
    }
    const statePath = defaultBatchStatePath(options.output)
    // a first look (the run reads it again under the output's lock): batches in progress must not be forgotten
    // a state a live run cannot read is named and left alone (only --via batch|auto needs it): it never stops one
    const open = Batch.openBatches(
      yield* via === "live"
        ? Effect.catchAll(Batch.readState(statePath), (e) =>
          Effect.as(
            Console.error(`sluice: warning: ${e.message}\n(not read: a --via live run does not need it)`),
            undefined
          ))
        : Batch.readState(statePath)
    )
    if (open > 0 && via === "live") {
      return yield* usage(
        `${statePath} records ${open} Batch API batches of this output not finished: rerun with --via batch or ` +
          `--via auto to collect them, or --cancel them (a live run could send their lines twice)`
      )
    }
    if (open > 0 && options.restart) {
      return yield* usage(
        `--restart: ${statePath} records ${open} Batch API batches not finished; --cancel them first`
      )
    }
    const cache = Option.isSome(options.cache)
      ? yield* Effect.mapError(
        Cache.open(options.cache.value, Option.isSome(options.simulate) ? options.speed : 1),
        usage
      )
      : undefined
    if (Option.isSome(options.record)) {
      // checked against every file the run writes or reads before anything is built (the tokenizer's load)
      const errorsPath = Option.getOrElse(options.errors, () => defaultErrorsPath(options.output))
      const path = options.record.value
      yield* BulkRunner.checkPaths([
        { role: "input", path: options.input },
        { role: "output", path: options.output },
        { role: "errors file", path: errorsPath },
        { role: "lock file", path: BulkRunner.lockPath(options.output) },
        { role: "errors lock file", path: BulkRunner.lockPath(errorsPath) },
        ...(options.retryFailed ? [{ role: "retried-failures file", path: defaultRetriedPath(options.output) }] : []),
        ...(via === "live" ? [] : [{ role: "batch state file", path: statePath }]),
        { role: "run record", path },
        { role: "run record lock file", path: BulkRunner.lockPath(path) }
      ]).pipe(Effect.mapError((e) => usage(e.message)))
    }
    const progress = yield* BulkRunner.makeProgress
    let recorder: Record.Recorder | undefined
    const { apiKey, baseUrl, enqueued, executor, fetch, holds, limits, organization, projectId, simulatorStats } =
      yield* connect(
        options,
        {
          progress,
          priority: Option.getOrUndefined(options.priority),
          // with --via auto, --deadline is the job's
          deadlineMs: via === "auto" ? undefined : deadlineMs,
          routing: Option.isSome(options.routing)
            ? { config: yield* readJson(options.routing.value), path: options.routing.value }
            : undefined,
          cache,
          onEvent: Option.isSome(options.record) ? (event) => recorder?.onEvent(event) ?? Effect.void : undefined
        }
      )
    const errors = Option.getOrElse(options.errors, () => defaultErrorsPath(options.output))
    let batch: Batch.Batch | undefined
    if (via !== "live") {
      const plan = via === "auto"
        ? yield* Batch.planAuto({
          input: options.input,
          deadlineMs: deadlineMs!,
          tier: Option.isSome(options.tier) ? (Number(options.tier.value) as Tiers.Tier) : undefined,
          limits,
          enqueued
        })
        : undefined
      if (plan !== undefined) yield* Console.log(plan.message)
      batch = yield* Batch.make({
        client: new OpenAI({
          apiKey: Redacted.value(apiKey),
          baseURL: baseUrl,
          organization: organization ?? null,
          project: Option.getOrNull(projectId),
          maxRetries: 0,
          ...(fetch === undefined ? {} : { fetch })
        }),
        limiter: executor.limiter,
        holds,
        statePath,
        accepts: plan === undefined ? () => true : (request) => plan.batch.has(request.customId),
        cancel: options.cancel,
        restart: options.restart,
        poll: batchPollMs,
        lease: options.batchLease,
        report: (text) => Console.error(`sluice: ${text}`)
      }).pipe(Effect.mapError((e) => usage(e.message)))
    }
    const mode = options.progress === "auto" ? (env.isTTY ? "line" : "log") : options.progress
    const renderer = mode === "off" ? undefined : yield* Effect.fork(
      renderProgress(progress, mode, env.writeProgress, batch?.progress)
    )
    // Ctrl-C: calls waiting for admission (or for a retry) fail at once, unsent; those on the wire finish
    yield* Effect.forkScoped(Effect.zipRight(env.stop, executor.cancel("Signal", "stopped by a signal")))
    const retried = options.retryFailed ? defaultRetriedPath(options.output) : undefined
    if (Option.isSome(options.record)) {
      yield* BulkRunner.lock(options.record.value).pipe(Effect.mapError((e) => usage(e.message)))
      recorder = yield* Record.make({
        path: options.record.value,
        run: {
          input: options.input,
          output: options.output,
          simulate: Option.getOrNull(options.simulate),
          speed: options.speed
        },
        progress,
        limiter: executor.limiter
      }).pipe(Effect.mapError((e) => usage(`--record ${e.path}: ${e.message}`)))
    }
    const execute = recorder === undefined ? executor.execute : recorder.execute(executor.execute, executor.describe)
    const realStart = Date.now()
    const runWith = (offload: BulkRunner.Offload | undefined, first: boolean) =>
      BulkRunner.run({
        input: options.input,
        output: options.output,
        errors,
        execute,
        describe: executor.describe,
        concurrency: options.concurrency,
        stop: env.stop,
        progress,
        // a second pass goes on from the first's output: never truncated, its failures never moved again
        restart: first && options.restart,
        retryFailed: first ? retried : undefined,
        offload
      })
    const passes = Effect.gen(function*() {
      const first = yield* runWith(batch?.offload, true)
      // auto: the lines the Batch API handed back (expired, failed, refused) go live now; the others stay for a rerun
      const requeue = via === "auto" && batch !== undefined ? yield* batch.requeue : new Set<string>()
      if (requeue.size === 0 || first.stop?._tag !== "Offload") return first
      yield* Console.log(BulkRunner.formatSummary(first))
      yield* Console.log(`auto: ${requeue.size} lines came back from the Batch API: sending them live`)
      return yield* runWith(Batch.holdBack(requeue), false)
    })
    const summary = yield* passes.pipe(
      Effect.ensuring(renderer === undefined ? Effect.void : Fiber.interrupt(renderer)),
      // a run refused (a path or lock, an unreadable input) still ends its record's segment
      Effect.tapError((error) => recorder === undefined ? Effect.void : Effect.ignore(recorder.refused(error.message)))
    )
    if (recorder !== undefined) {
      const sim = simulatorStats === undefined ? undefined : yield* simulatorStats
      yield* recorder.end(summary, sim === undefined ? undefined : { byStatus: sim.byStatus, byCode: sim.byCode })
        .pipe(Effect.catchAll((e) => Console.error(`sluice: warning: --record ${e.path}: ${e.message}`)))
    }
    yield* Console.log(BulkRunner.formatSummary(summary))
    if (batch !== undefined) yield* Console.log((yield* batch.summary).join("\n"))
    if (cache !== undefined) yield* Console.log(Cache.summary(yield* cache.stats))
    const learned = yield* executor.learned
    if (learned.length > 0) yield* Console.log(`learned: ${learned.join("; ")}`)
    const routed = yield* executor.routingSummary
    if (routed !== undefined) yield* Console.log(`routing: ${routed.split("\n").join("\n  ")}`)
    if (options.speed !== 1) {
      yield* Console.log(
        `simulated time ${options.speed}x: ${((Date.now() - realStart) / 1000).toFixed(1)}s of real time`
      )
    }
    if (summary.invalid > 0) yield* Console.log(`rejected input lines: see ${errors}`)
    if (summary.alreadyFailed > 0) {
      yield* Console.log(
        `${summary.alreadyFailed} lines failed in an earlier run (exit 1): --retry-failed resends them`
      )
    }
    if (retried !== undefined && summary.superseded > 0) {
      yield* Console.log(`the ${summary.superseded} failure lines resent were moved to ${retried}`)
    }
    env.setExitCode(exitCode(summary))
  })

/**
 * The exit codes of `sluice`: 0 all done, 1 some lines failed (or input lines were invalid), 2 bad usage (a
 * missing key, a bad option or file, a path or lock refused), 3 stopped early (resumable: rerun with the same
 * `--output`).
 *
 * @since 0.2.0
 * @category run
 */
export const ExitCode = { Done: 0, SomeFailed: 1, BadUsage: 2, Stopped: 3 } as const

/**
 * @since 0.2.0
 * @category run
 */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

const exitCodes: { readonly [outcome in BulkRunner.Outcome]: ExitCode } = {
  completed: ExitCode.Done,
  "completed-with-failures": ExitCode.SomeFailed,
  stopped: ExitCode.Stopped
}

/**
 * The exit code of `sluice run` for a run's summary, by its outcome.
 *
 * @since 0.2.0
 * @category run
 * @example
 * ```ts
 * import { Cli } from "@sluice/cli"
 * import type { BulkRunner } from "@sluice/openai"
 *
 * const done = (summary: BulkRunner.Summary) => Cli.exitCode(summary) === Cli.ExitCode.Done
 * ```
 */
export const exitCode = (summary: BulkRunner.Summary): ExitCode => exitCodes[summary.outcome]

/**
 * Shows a run's progress until interrupted (fork it next to the run), as `sluice run --progress` does: `line`
 * rewrites one terminal line in place every 250 ms (`\r`, erase to the end) and ends it with a newline when
 * interrupted; `log` writes a line every 5 seconds, and one more when interrupted. `extra` (since 0.2.0), when it
 * gives a text, is appended after ` | ` (the Batch API's batches, with `--via batch`).
 *
 * @since 0.2.0
 * @category run
 * @example
 * ```ts
 * import { Cli } from "@sluice/cli"
 * import { BulkRunner } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const progress = yield* BulkRunner.makeProgress
 *   yield* Effect.fork(Cli.renderProgress(progress, "line", (text) => Effect.sync(() => process.stderr.write(text))))
 * })
 * ```
 */
export const renderProgress = (
  progress: BulkRunner.Progress,
  mode: "line" | "log",
  write: (text: string) => Effect.Effect<void>,
  extra?: Effect.Effect<string | undefined>
): Effect.Effect<void> => {
  const withExtra = (text: string) =>
    extra === undefined
      ? Effect.succeed(text)
      : Effect.map(extra, (more) => (more === undefined ? text : `${text} | ${more}`))
  return mode === "line"
    ? BulkRunner.reportProgress(progress, {
      interval: "250 millis",
      report: (text, last) => Effect.flatMap(withExtra(text), (line) => write(`\r${line}\x1b[K${last ? "\n" : ""}`))
    })
    : BulkRunner.reportProgress(progress, {
      interval: "5 seconds",
      report: (text) => Effect.flatMap(withExtra(text), (line) => write(`${line}\n`))
    })
}

/**
 * Checks a base URL before anything is sent (a key must never go to a URL nobody meant): absolute, `http:` or
 * `https:`, not empty.
 *
 * @since 0.1.0
 * @category run
 */
export const checkBaseUrl = (
  source: { readonly text: string; readonly from: string }
): Effect.Effect<string, UsageError> => {
  const text = source.text.trim()
  if (text.length === 0) {
    return Effect.fail(usage(`${source.from} is empty: give the server's URL, e.g. https://api.openai.com/v1`))
  }
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return Effect.fail(
      usage(`${source.from}: ${JSON.stringify(source.text)} is not an absolute URL (e.g. https://api.openai.com/v1)`)
    )
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return Effect.fail(usage(`${source.from}: ${JSON.stringify(source.text)} must be an http:// or https:// URL`))
  }
  return Effect.succeed(text)
}

/**
 * `<output>.retried.jsonl` next to the output: where `--retry-failed` keeps the failure lines it resends.
 *
 * @since 0.1.0
 * @category run
 */
export const defaultRetriedPath = (output: string): string => besideOutput(output, "retried")

/**
 * `<output>.batch.json` next to the output (`results.jsonl` → `results.batch.json`): the Batch API job's state
 * with `--via batch|auto` (batch ids, file ids, which lines each holds), read and written under the output's lock
 * and its own (`results.batch.json.lock`: outputs `results.jsonl` and `results` share one state file).
 *
 * @since 0.2.0
 * @category run
 * @example
 * ```ts
 * import { Cli } from "@sluice/cli"
 *
 * Cli.defaultBatchStatePath("results.jsonl") // "results.batch.json"
 * ```
 */
export const defaultBatchStatePath = (output: string): string => {
  const ext = NodePath.extname(output)
  return `${ext === ".jsonl" ? output.slice(0, -ext.length) : output}.batch.json`
}

/**
 * `<output>.errors.jsonl` next to the output (`results.jsonl` → `results.errors.jsonl`).
 *
 * @since 0.1.0
 * @category run
 */
export const defaultErrorsPath = (output: string): string => besideOutput(output, "errors")

/** `<output>.<name>.jsonl`, the output's `.jsonl` extension (if any) dropped first. */
const besideOutput = (output: string, name: string): string => {
  const ext = NodePath.extname(output)
  return `${ext === ".jsonl" ? output.slice(0, -ext.length) : output}.${name}.jsonl`
}

// -----------------------------------------------------------------------------------------------------------
// pipeline run
// -----------------------------------------------------------------------------------------------------------

const pipelineRunOptions = {
  input: Options.file("input", { exists: "yes" }).pipe(
    Options.withDescription("Input file (JSONL: one JSON object a line, its id in the pipeline file's \"id\" field)")
  ),
  output: Options.file("output").pipe(
    Options.withDescription("Output file (one Batch API output line per id); rerun with the same file to resume")
  ),
  errors: runOptions.errors,
  ...connectOptions,
  restart: Options.boolean("restart").pipe(
    Options.withDescription("Start over: truncate the output and the stages' checkpoints instead of resuming")
  ),
  progress: runOptions.progress,
  workers: optional(
    Options.integer("workers"),
    "Run the stages on BullMQ queues on --redis, in N worker processes started here (0: only workers started " +
      "elsewhere with `sluice pipeline worker`); needs bullmq and @sluice/redis"
  )
} as const

type PipelineRunOptions = Command.Command.ParseConfig<typeof pipelineRunOptions>

const pipelineFileArg = Args.file({ name: "FILE.json", exists: "yes" }).pipe(
  Args.withDescription(
    "The pipeline file (JSON: {name, id?, stages: [{name, url, body, concurrency?, queue?, lane?, budget?}]})"
  )
)

const pipelineRunHandler = (env: Environment) => (options: PipelineRunOptions & { readonly file: string }) =>
  Effect.scoped(
    options.speed !== 1 && Option.isSome(options.simulate) && options.speed > 0 && Number.isFinite(options.speed)
      ? Effect.flatMap(testing, ({ SimClock }) => SimClock.withSpeed(pipelineRunBody(env, options), options.speed))
      : pipelineRunBody(env, options)
  )

/** The executor of a pipeline's stages: the stages' own budgets with the limits, its events to the stages' stats. */
const pipelineExecutor = (options: ConnectOptions, spec: PipelineFile.Spec) =>
  Effect.map(
    Effect.flatMap(BulkRunner.makeProgress, (progress) =>
      connect(options, {
        progress,
        priority: undefined,
        deadlineMs: undefined,
        // the stages' own budgets, on their tenant scopes
        budgets: PipelineFile.budgets(spec),
        onEvent: Pipeline.onEvent
      })),
    ({ executor }) => executor
  )

/** The variable a worker started by `pipeline run --workers N` reads the Redis URL from (not on its command line). */
const WORKER_REDIS_ENV = "SLUICE_PIPELINE_REDIS_URL"

/**
 * The options a worker process started by `pipeline run --workers N` is given: where the calls go. The Redis URL
 * (it may hold a password) goes by {@link WORKER_REDIS_ENV}, as the API key by its variable: `ps` shows arguments.
 */
const connectArgs = (options: ConnectOptions): Array<string> => [
  "--redis-env",
  WORKER_REDIS_ENV,
  "--api-key-env",
  options.apiKeyEnv,
  ...Option.match(options.baseUrl, { onNone: () => [], onSome: (url) => ["--base-url", url] }),
  ...Option.match(options.tier, { onNone: () => [], onSome: (tier) => ["--tier", tier] }),
  ...Option.match(options.limits, { onNone: () => [], onSome: (path) => ["--limits", path] }),
  ...Option.match(options.simulate, { onNone: () => [], onSome: (name) => ["--simulate", name] }),
  ...(options.speed === 1 ? [] : ["--speed", String(options.speed)])
]

const pipelineRunBody = (env: Environment, options: PipelineRunOptions & { readonly file: string }) =>
  Effect.gen(function*() {
    const spec = yield* Effect.mapError(PipelineFile.load(options.file), (e) => usage(e.message))
    const distributed = Option.getOrUndefined(options.workers)
    if (distributed !== undefined && (distributed < 0 || Option.isNone(options.redis))) {
      return yield* usage("--workers N (0 or more) runs the stages on BullMQ queues on Redis: give --redis URL too")
    }
    const executor = distributed === undefined ? yield* pipelineExecutor(options, spec) : undefined
    const sender: PipelineFile.Sender<BulkExecutor.ExecuteError> = executor ?? {
      execute: () => Effect.die("the coordinator of a distributed pipeline sends nothing"),
      describe: BulkExecutor.describeError as (error: BulkExecutor.ExecuteError) => BulkRunner.Failure
    }
    let engine: PipelineFile.Engine | undefined
    if (distributed !== undefined && Option.isSome(options.redis)) {
      yield* Effect.mapError(Distributed.available, usage)
      const redis = options.redis.value
      engine = Distributed.engine(spec, redis, options.output)
      const args = ["pipeline", "worker", options.file, ...connectArgs(options)]
      yield* Effect.forEach(
        Array.from({ length: distributed }),
        () =>
          Effect.acquireRelease(
            Effect.sync(() =>
              ChildProcess.spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...args], {
                env: { ...process.env, [WORKER_REDIS_ENV]: redis },
                stdio: ["ignore", "ignore", "inherit"]
              })
            ),
            (child) => Effect.sync(() => child.kill("SIGTERM"))
          ),
        { discard: true }
      )
    }
    const errors = Option.getOrElse(options.errors, () => defaultErrorsPath(options.output))
    if (executor !== undefined) {
      yield* Effect.forkScoped(Effect.zipRight(env.stop, executor.cancel("Signal", "stopped by a signal")))
    }
    const mode = options.progress === "auto" ? (env.isTTY ? "line" : "log") : options.progress
    // as `Cli.renderProgress` shows `sluice run`'s: one terminal line rewritten in place, or a log line
    const show = (stats: Pipeline.Stats, last: boolean) => {
      const text = Pipeline.progressLine(stats)
      return env.writeProgress(mode === "line" ? `\r${text}\x1b[K${last ? "\n" : ""}` : `${text}\n`)
    }
    const realStart = Date.now()
    const summary = yield* PipelineFile.run({
      spec,
      sender,
      limiter: executor?.limiter,
      engine,
      input: options.input,
      output: options.output,
      errors,
      restart: options.restart,
      stop: env.stop,
      progress: mode === "off"
        ? undefined
        : { every: mode === "line" ? "250 millis" : "5 seconds", report: (stats) => show(stats, false) }
    }).pipe(Effect.mapError((e) => usage(e.message)))
    if (mode !== "off" && summary.stats !== undefined) yield* show(summary.stats, true)
    yield* Console.log(PipelineFile.formatSummary(summary))
    if (options.speed !== 1) {
      yield* Console.log(
        `simulated time ${options.speed}x: ${((Date.now() - realStart) / 1000).toFixed(1)}s of real time`
      )
    }
    if (summary.invalid > 0) yield* Console.log(`rejected input lines: see ${errors}`)
    env.setExitCode(exitCodes[summary.outcome])
  })

const pipelineWorkerOptions = {
  ...connectOptions,
  redisEnv: optional(
    Options.text("redis-env"),
    "Read the Redis URL from this environment variable instead of --redis (kept off the command line, which ps shows)"
  )
} as const

const pipelineWorkerHandler =
  (env: Environment) =>
  (options: Command.Command.ParseConfig<typeof pipelineWorkerOptions> & { readonly files: ReadonlyArray<string> }) =>
    Effect.scoped(Effect.gen(function*() {
      const specs = yield* Effect.forEach(
        options.files,
        (file) => Effect.mapError(PipelineFile.load(file), (e) => usage(e.message))
      )
      const fromEnv = Option.isSome(options.redisEnv)
        ? yield* Config.string(options.redisEnv.value).pipe(
          Effect.mapError(() => usage(`no Redis URL: set ${Option.getOrThrow(options.redisEnv)}`))
        )
        : undefined
      if (fromEnv === undefined && Option.isNone(options.redis)) {
        return yield* usage(
          "a pipeline worker takes its items from BullMQ queues on Redis: give --redis URL (or --redis-env NAME)"
        )
      }
      const redis = fromEnv ?? Option.getOrThrow(options.redis)
      const connectTo = { ...options, redis: Option.some(redis) }
      const body = Effect.gen(function*() {
        // each pipeline with its own executor (its stages' budgets), all on the one Redis
        const executors = yield* Effect.forEach(specs, (spec) =>
          Effect.flatMap(
            pipelineExecutor(connectTo, spec),
            (executor) =>
              Effect.map(
                Effect.mapError(Distributed.work({ spec, sender: executor, redis }), usage),
                (working) => ({ executor, working })
              )
          ))
        yield* Console.error(
          `sluice: worker ready (pid ${process.pid}): pipeline ${specs.map((spec) => spec.name).join(", ")}`
        )
        yield* env.stop
        // the calls cancelled now fail with a stop of this worker's own: their jobs go back to the queues
        yield* Effect.forEach(
          executors,
          ({ executor, working }) => Effect.zipRight(working.stopping, executor.cancel("Signal", "stopped by a signal"))
        )
      })
      yield* options.speed !== 1 && Option.isSome(options.simulate)
        ? Effect.flatMap(testing, ({ SimClock }) => SimClock.withSpeed(body, options.speed))
        : body
    }))

// -----------------------------------------------------------------------------------------------------------
// sim
// -----------------------------------------------------------------------------------------------------------

const simOptions = {
  scenario: Options.text("scenario").pipe(
    Options.withDescription("tier1 | tier5 | free | <scenario.json>"),
    Options.withDefault("tier1")
  ),
  port: count("port", "Port (0 picks a free one)", 4010),
  host: Options.text("host").pipe(
    Options.withDescription("Interface (loopback by default)"),
    Options.withDefault("127.0.0.1")
  )
} as const

const simHandler = (env: Environment) => (options: Command.Command.ParseConfig<typeof simOptions>) =>
  Effect.scoped(
    Effect.gen(function*() {
      const { SimStats, Simulator } = yield* testing
      const { SimServer } = yield* testingNode
      const scenario = yield* scenarioOf(options.scenario)
      const simulator = yield* Simulator.make(scenario)
      const address = yield* SimServer.serve({ port: options.port, host: options.host }).pipe(
        Effect.provideService(Simulator.Simulator, simulator),
        Effect.mapError((e) => usage(`cannot serve on ${options.host}:${options.port}: ${String(e)}`))
      )
      yield* Console.log(`simulated OpenAI (${scenario.name}) at ${address.url}  (OPENAI_BASE_URL=${address.url})`)
      yield* Console.log(`stats: GET ${address.url.replace(/\/v1$/, SimServer.STATS_PATH)}`)
      yield* env.stop
      yield* Console.log(
        `simulator stopped\n${SimStats.formatSummary(SimStats.summary(yield* simulator.stats, scenario))}`
      )
    })
  )

// -----------------------------------------------------------------------------------------------------------
// plan
// -----------------------------------------------------------------------------------------------------------

const planOptions = {
  tier: tierOption.pipe(Options.withDescription("Usage tier (1-5)"), Options.withDefault("1" as const)),
  mix: Options.text("mix").pipe(
    Options.withDescription("Model mix: model=share,... (e.g. gpt-4o-mini=0.8,gpt-4o=0.2)"),
    Options.withDefault("gpt-4o-mini=1")
  ),
  requests: count("requests", "Number of requests", 10_000),
  inputTokens: count("input-tokens", "Input tokens per request", 500),
  cachedTokens: count(
    "cached-tokens",
    "Of the input tokens, those OpenAI's prompt caching serves (a shared prefix): priced at the cached-input rate",
    0
  ),
  outputTokens: count(
    "output-tokens",
    "Output tokens per request (max_tokens; ignored for embeddings and images)",
    200
  ),
  images: count("images", "Images per request for image models", 1),
  peakPerMinute: optional(
    Options.integer("peak-per-minute"),
    "Requests in the busiest minute (for the headroom check)"
  ),
  batch: Options.boolean("batch").pipe(Options.withDescription("Price at the Batch API's half price")),
  json: Options.boolean("json").pipe(Options.withDescription("Print the plan as JSON"))
} as const

/**
 * Parses `--mix` (`model=share,...`; a bare model means share 1).
 *
 * @since 0.1.0
 * @category plan
 */
export const parseMix = (
  text: string
): ReadonlyArray<{ readonly model: string; readonly share: number }> | undefined => {
  const entries = text.split(",").map((s) => s.trim()).filter((s) => s.length > 0).map((part) => {
    const [model, share] = part.split("=")
    return { model: model!.trim(), share: share === undefined ? 1 : Number(share) }
  })
  return entries.length === 0 || entries.some((e) => e.model.length === 0 || !(e.share > 0)) ? undefined : entries
}

const planHandler = (options: Command.Command.ParseConfig<typeof planOptions>) =>
  Effect.gen(function*() {
    const mix = parseMix(options.mix)
    if (mix === undefined) return yield* usage(`--mix: expected model=share,... got ${JSON.stringify(options.mix)}`)
    if (
      options.requests < 0 || options.inputTokens < 0 || options.outputTokens < 0 || options.images < 0 ||
      options.cachedTokens < 0
    ) {
      return yield* usage(
        "--requests, --input-tokens, --cached-tokens, --output-tokens and --images must not be negative"
      )
    }
    if (options.cachedTokens > options.inputTokens) {
      return yield* usage(`--cached-tokens (${options.cachedTokens}) exceeds --input-tokens (${options.inputTokens})`)
    }
    const workload: Plan.Workload = {
      tier: Number(options.tier) as Tiers.Tier,
      mix,
      requests: options.requests,
      inputTokens: options.inputTokens,
      cachedInputTokens: options.cachedTokens,
      outputTokens: options.outputTokens,
      images: options.images,
      peakPerMinute: Option.getOrUndefined(options.peakPerMinute),
      batch: options.batch
    }
    const plan = Plan.compute(workload)
    yield* Console.log(options.json ? JSON.stringify(plan, null, 2) : Plan.format(workload, plan))
  })

// -----------------------------------------------------------------------------------------------------------
// report
// -----------------------------------------------------------------------------------------------------------

const reportArgs = Args.file({ name: "record", exists: "yes" }).pipe(
  Args.withDescription("A run record (sluice run --record FILE)"),
  Args.atLeast(1)
)

const reportOptions = {
  html: optional(Options.file("html"), "Write the report to this HTML file (self-contained)"),
  evidence: optional(
    Options.file("evidence"),
    "Write the limit-increase evidence per model and limit to this Markdown file, and as CSV beside it (.csv)"
  )
} as const

const reportHandler = (
  { evidence, html, records }: {
    readonly html: Option.Option<string>
    readonly evidence: Option.Option<string>
    readonly records: ReadonlyArray<string>
  }
) =>
  Effect.gen(function*() {
    if (Option.isNone(html) && Option.isNone(evidence)) {
      return yield* usage("report: give --html FILE, --evidence FILE or both")
    }
    let entries: ReadonlyArray<Record.Entry> = []
    for (const path of records) {
      entries = entries.concat(
        yield* Effect.mapError(Record.read(path), (e) => usage(`${e.path}:${e.line}: ${e.message}`))
      )
    }
    const csvPath = Option.map(evidence, (path) => `${path.replace(/\.md$/, "")}.csv`)
    yield* BulkRunner.checkPaths([
      ...records.map((path) => ({ role: "run record", path })),
      ...Option.toArray(Option.map(html, (path) => ({ role: "report", path }))),
      ...Option.toArray(Option.map(evidence, (path) => ({ role: "evidence", path }))),
      ...Option.toArray(Option.map(csvPath, (path) => ({ role: "evidence CSV", path })))
    ]).pipe(Effect.mapError((e) => usage(e.message)))
    const write = (path: string, text: string) =>
      Effect.try({
        try: () => NodeFs.writeFileSync(path, text),
        catch: (cause) => usage(`${path}: ${cause instanceof Error ? cause.message : String(cause)}`)
      })
    if (Option.isSome(html)) {
      yield* write(html.value, Report.html(entries, records.join(", ")))
      yield* Console.log(`report: ${html.value} (${entries.length} entries of ${records.length} record(s))`)
    }
    if (Option.isSome(evidence) && Option.isSome(csvPath)) {
      const figures = Evidence.compute(entries)
      yield* write(evidence.value, Evidence.markdown(figures))
      yield* write(csvPath.value, Evidence.csv(figures))
      yield* Console.log(`evidence: ${evidence.value}, ${csvPath.value}`)
    }
  })

// -----------------------------------------------------------------------------------------------------------
// the command
// -----------------------------------------------------------------------------------------------------------

/**
 * The `sluice` command tree.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = (env: Environment) =>
  Command.make("sluice").pipe(
    Command.withDescription("Keep OpenAI calls at the provider's rate limit"),
    Command.withSubcommands([
      Command.make("run", runOptions, runHandler(env)).pipe(
        Command.withDescription("Run a Batch API JSONL file at the provider's limit (resumable)")
      ),
      Command.make("pipeline").pipe(
        Command.withDescription("Stage pipelines: each item through every stage, each stage with its own budget"),
        Command.withSubcommands([
          Command.make("run", { ...pipelineRunOptions, file: pipelineFileArg }, pipelineRunHandler(env)).pipe(
            Command.withDescription("Run a pipeline file over an input JSONL into an output JSONL (resumable)")
          ),
          Command.make(
            "worker",
            { ...pipelineWorkerOptions, files: Args.atLeast(pipelineFileArg, 1) },
            pipelineWorkerHandler(env)
          ).pipe(
            Command.withDescription(
              "Work a distributed pipeline's stages from its BullMQ queues on --redis, until stopped"
            )
          )
        ])
      ),
      Command.make("sim", simOptions, simHandler(env)).pipe(
        Command.withDescription("Serve the simulated OpenAI over HTTP (loopback)")
      ),
      Command.make("plan", planOptions, planHandler).pipe(
        Command.withDescription("Capacity plan: binding limit, time to drain, peak headroom, cost")
      ),
      Command.make("report", { ...reportOptions, records: reportArgs }, reportHandler).pipe(
        Command.withDescription("Render run records (sluice run --record) as one self-contained HTML page")
      )
    ])
  )

/**
 * Runs the CLI on `argv` (as `process.argv`).
 *
 * @since 0.1.0
 * @category commands
 * @example
 * ```ts
 * import { Cli } from "@sluice/cli"
 * import { NodeContext, NodeRuntime } from "@effect/platform-node"
 * import * as Effect from "effect/Effect"
 *
 * Cli.run(process.argv, {
 *   stop: Effect.never,
 *   setExitCode: (code) => { process.exitCode = code },
 *   isTTY: false,
 *   writeProgress: (text) => Effect.sync(() => process.stderr.write(text))
 * }).pipe(Effect.provide(NodeContext.layer), NodeRuntime.runMain)
 * ```
 */
export const run = (
  argv: ReadonlyArray<string>,
  env: Environment
): Effect.Effect<void, unknown | ValidationError.ValidationError, CliApp.CliApp.Environment> =>
  Command.run(command(env), { name: "sluice", version: packageVersion() })(argv).pipe(Effect.provide(logToStderr))
