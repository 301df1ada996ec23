/**
 * `sluice pipeline run` and `sluice pipeline worker`: a pipeline file's stages over an input JSONL, in this
 * process or on BullMQ queues on Redis worked by worker processes (started here with `--workers N`, or elsewhere).
 * Their options; the handlers (`pipelineHandler.ts`) are loaded when the command runs.
 *
 * @internal
 */
import * as Args from "@effect/cli/Args"
import type * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import type { Environment } from "../Cli.js"
import { connectOptions, errorsOption, inputOption, optional, outputOption, progressOption } from "./options.js"
import type { Handled } from "./options.js"
import { loadHandler } from "./usageError.js"

const pipelineFileArg = Args.file({ name: "FILE.json", exists: "yes" }).pipe(
  Args.withDescription(
    "The pipeline file (JSON: {name, id?, stages: [{name, url, body, concurrency?, queue?, lane?, budget?}]})"
  )
)

/**
 * `--job-lock`: how long a BullMQ job's lock lasts without renewal (renewed every half of it while its worker runs
 * it). A worker killed mid-job has its jobs taken by another after about this; a worker alive but stalled longer
 * (a loaded machine, a long GC pause) loses its job to another and the call is made twice: not shorter than the
 * stalls the machines can have.
 *
 * @internal
 */
export const jobLockOption = Options.text("job-lock").pipe(
  Options.withDescription(
    "With --redis: how long a stage job's lock lasts without renewal (a killed worker's jobs go to another after " +
      "about this; a worker stalled longer loses its job and the call is made again); a duration, e.g. 30s"
  ),
  Options.withDefault("30s")
)

/**
 * `pipeline run FILE.json`'s options.
 *
 * @internal
 */
export const runOptions = {
  input: inputOption("Input file (JSONL: one JSON object a line, its id in the pipeline file's \"id\" field)"),
  output: outputOption("Output file (one Batch API output line per id); rerun with the same file to resume"),
  errors: errorsOption,
  ...connectOptions,
  restart: Options.boolean("restart").pipe(
    Options.withDescription("Start over: truncate the output and the stages' checkpoints instead of resuming")
  ),
  progress: progressOption,
  jobLock: jobLockOption,
  workers: optional(
    Options.integer("workers"),
    "Run the stages on BullMQ queues on --redis, in N worker processes started here (0: only workers started " +
      "elsewhere with `sluice pipeline worker`); needs bullmq and @sluice/redis"
  ),
  file: pipelineFileArg
} as const

/** @internal */
export type PipelineRunOptions = Command.Command.ParseConfig<typeof runOptions>

/** @internal */
export const runHandler = (env: Environment) => (options: PipelineRunOptions): Handled =>
  Effect.flatMap(
    loadHandler("pipeline run", () => import("./pipelineHandler.js")),
    (pipeline) => pipeline.runHandler(env, options)
  )

/**
 * `pipeline worker FILE.json...`'s options.
 *
 * @internal
 */
export const workerOptions = {
  ...connectOptions,
  jobLock: jobLockOption,
  redisEnv: optional(
    Options.text("redis-env"),
    "Read the Redis URL from this environment variable instead of --redis (kept off the command line, which ps shows)"
  ),
  files: Args.atLeast(pipelineFileArg, 1)
} as const

/** @internal */
export type PipelineWorkerOptions = Command.Command.ParseConfig<typeof workerOptions>

/** @internal */
export const workerHandler = (
  env: Environment
) =>
(options: PipelineWorkerOptions): Handled =>
  Effect.flatMap(
    loadHandler("pipeline worker", () => import("./pipelineHandler.js")),
    (pipeline) => pipeline.workerHandler(env, options)
  )
