/**
 * `sluice run`'s handler (its options: `runCommand.ts`): the run, its progress and its summary.
 *
 * @internal
 */
import type { Tiers } from "@sluice/openai"
import { BulkRunner } from "@sluice/openai"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Redacted from "effect/Redacted"
import OpenAI from "openai"
import type { Environment } from "../Cli.js"
import { defaultBatchStatePath, defaultErrorsPath, defaultRetriedPath, exitCode, renderProgress } from "../Cli.js"
import * as Batch from "./batch.js"
import * as Cache from "./cache.js"
import { atSpeed, connect } from "./connect.js"
import { parseMillis } from "./duration.js"
import { logRealTime, progressMode, usage } from "./handler.js"
import { readJson } from "./limits.js"
import * as Record from "./record.js"
import type { RunOptions } from "./runCommand.js"
import * as Telemetry from "./telemetry.js"

/** @internal */
export const handler = (env: Environment, options: RunOptions) =>
  Effect.flatMap(
    Telemetry.layer({
      otlp: Option.getOrUndefined(options.otlp),
      metricsPort: Option.getOrUndefined(options.metricsPort),
      metricsHost: options.metricsHost
    }),
    (telemetry) => Effect.scoped(atSpeed(options, runBody(env, options))).pipe(Effect.provide(telemetry))
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
    const mode = progressMode(options.progress, env)
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
        order: options.order,
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
    yield* logRealTime(options.speed, realStart)
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
