/**
 * `sluice pipeline run`'s and `sluice pipeline worker`'s handlers (their options: `pipelineCommand.ts`).
 *
 * @internal
 */
import { BulkExecutor, BulkRunner, Pipeline, PipelineFile } from "@sluice/openai"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ChildProcess from "node:child_process"
import type { Environment } from "../Cli.js"
import { defaultErrorsPath, exitCode } from "../Cli.js"
import { atSpeed, connect } from "./connect.js"
import * as Distributed from "./distributed.js"
import { parseMillis } from "./duration.js"
import { checkRedisUrl, logRealTime, progressMode, usage } from "./handler.js"
import type { ConnectOptions } from "./options.js"
import type { PipelineRunOptions, PipelineWorkerOptions } from "./pipelineCommand.js"
import type { UsageError } from "./usageError.js"

/** @internal */
export const runHandler = (env: Environment, options: PipelineRunOptions) =>
  Effect.scoped(atSpeed(options, pipelineRunBody(env, options)))

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
 * (it may hold a password) goes by {@link WORKER_REDIS_ENV}, the API key by its variable and `--base-url` (a gateway's
 * URL may hold a token too) by `OPENAI_BASE_URL` ({@link workerEnv}): `ps` shows arguments.
 *
 * @internal
 */
export const connectArgs = (options: ConnectOptions): Array<string> => [
  "--redis-env",
  WORKER_REDIS_ENV,
  "--api-key-env",
  options.apiKeyEnv,
  ...Option.match(options.tier, { onNone: () => [], onSome: (tier) => ["--tier", tier] }),
  ...Option.match(options.limits, { onNone: () => [], onSome: (path) => ["--limits", path] }),
  ...Option.match(options.simulate, { onNone: () => [], onSome: (name) => ["--simulate", name] }),
  ...(options.speed === 1 ? [] : ["--speed", String(options.speed)])
]

/**
 * A worker process's environment: this one's, with the Redis URL and `--base-url` (read as `OPENAI_BASE_URL`).
 *
 * @internal
 */
export const workerEnv = (options: ConnectOptions, redis: string): NodeJS.ProcessEnv => ({
  ...process.env,
  [WORKER_REDIS_ENV]: redis,
  ...Option.match(options.baseUrl, { onNone: () => ({}), onSome: (url) => ({ OPENAI_BASE_URL: url }) })
})

/** `--job-lock`'s duration, at least a second (BullMQ renews a lock every half of it). */
const jobLockMs = (text: string): Effect.Effect<number, UsageError> => {
  const ms = parseMillis(text)
  return ms !== undefined && ms >= 1_000 && Number.isFinite(ms)
    ? Effect.succeed(ms)
    : Effect.fail(usage(`--job-lock: cannot parse ${JSON.stringify(text)} (a duration of at least 1s, e.g. 30s)`))
}

const pipelineRunBody = (env: Environment, options: PipelineRunOptions) =>
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
      const redis = yield* checkRedisUrl(options.redis.value, "--redis")
      const lockMs = yield* jobLockMs(options.jobLock)
      engine = Distributed.engine(spec, redis, options.output, lockMs)
      const args = ["pipeline", "worker", options.file, ...connectArgs(options), "--job-lock", `${lockMs}ms`]
      yield* Effect.forEach(
        Array.from({ length: distributed }),
        () =>
          Effect.acquireRelease(
            Effect.sync(() =>
              ChildProcess.spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...args], {
                env: workerEnv(options, redis),
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
    const mode = progressMode(options.progress, env)
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
    yield* logRealTime(options.speed, realStart)
    if (summary.invalid > 0) yield* Console.log(`rejected input lines: see ${errors}`)
    env.setExitCode(exitCode(summary))
  })

/** @internal */
export const workerHandler = (env: Environment, options: PipelineWorkerOptions) =>
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
    const redis = fromEnv === undefined
      ? yield* checkRedisUrl(Option.getOrThrow(options.redis), "--redis")
      : yield* checkRedisUrl(fromEnv, `--redis-env ${Option.getOrThrow(options.redisEnv)}`)
    const connectTo = { ...options, redis: Option.some(redis) }
    const lockMs = yield* jobLockMs(options.jobLock)
    const body = Effect.gen(function*() {
      // each pipeline with its own executor (its stages' budgets), all on the one Redis
      const executors = yield* Effect.forEach(specs, (spec) =>
        Effect.flatMap(
          pipelineExecutor(connectTo, spec),
          (executor) =>
            Effect.map(
              Effect.mapError(
                Distributed.work({ spec, sender: executor, redis, limiter: executor.limiter, lockMs }),
                usage
              ),
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
    yield* atSpeed(connectTo, body)
  }))
