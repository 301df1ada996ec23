/**
 * `sluice pipeline` across processes and machines on BullMQ (an optional peer dependency, loaded only here): one
 * BullMQ queue per stage and one for the outcomes, on the Redis that holds the budgets. A worker process runs a
 * BullMQ `Worker` per stage (the stage's concurrency): it runs the stage for the job's item and adds the item to
 * the next stage's queue (or the outcome to the run's outcomes queue) under the run's and the item's id as BullMQ
 * job id, before its own job completes, so a job redelivered after a worker's death adds nothing twice. The
 * coordinator (`pipeline run --redis`) adds the input's items to the first queue and writes each outcome before
 * acknowledging it; the run's id is kept beside the output, so a resume continues the run and a new output (or
 * `--restart`) starts a new one.
 *
 * A failure no item gets past (`stop`: an exhausted quota, a refused key, an outage), met by a job 4 times in a row
 * (1, 2 and 4 s apart, by any worker: a store slow to answer under load gets another chance), pauses the pipeline's stage
 * queues (BullMQ's pause holds for every worker: none takes another job), puts the job back (delayed, not counted
 * as an attempt) and sends a stop to the run's outcomes queue, on which the coordinator's outcomes stream fails with
 * a `PipelineFile.StageError` naming the item, the stage and the kind: the run ends "stopped" (exit 3). The next
 * coordinator of the pipeline resumes the queues.
 *
 * @internal
 */
import type * as PipelineFileModule from "@sluice/openai"
import { PipelineFile } from "@sluice/openai"
import type { Pipeline } from "@sluice/openai"
import { BulkRunner } from "@sluice/openai"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as NodeCrypto from "node:crypto"
import * as NodeFs from "node:fs"

type Spec = PipelineFileModule.PipelineFile.Spec
type Carry = PipelineFileModule.PipelineFile.Carry

/** How an item failed in a stage, as the worker's sender described it. */
interface Described {
  readonly stage: string
  readonly kind: string
  readonly code?: string | undefined
  readonly message: string
  readonly statusCode?: number | undefined
}

/** What a job carries: the run, the item and, on the outcomes queue, how it ended. */
interface JobData {
  readonly run: string
  readonly id: string
  readonly carry: Carry
  readonly skipped?: Described | undefined
  /** On a stage's queue: the failures with `stop` this job met in a row (tried again before the run stops). */
  readonly tries?: number | undefined
}

/** On the outcomes queue, a job of this name stops the run: a failure no item gets past. */
const STOP = "stop"
interface StopData {
  readonly run: string
  readonly id: string
  readonly stopped: Described
}

const stageError = (id: string, failure: Described) =>
  new PipelineFile.StageError({
    id,
    stage: failure.stage,
    kind: failure.kind,
    code: failure.code ?? failure.kind,
    message: failure.message,
    ...(failure.statusCode === undefined ? {} : { statusCode: failure.statusCode })
  })

/** What the coordinator's outcomes stream is fed: an outcome to write, or why the run stops. */
type Message = PipelineFileModule.PipelineFile.Delivery | {
  readonly error: BulkRunner.BulkFileError | PipelineFileModule.PipelineFile.StageError
}

/** BullMQ, or a usage message saying how to get it. */
const load = Effect.tryPromise({
  try: () => import("bullmq"),
  catch: (cause) =>
    `a distributed pipeline (--redis) needs the bullmq package (npm install bullmq): ${
      cause instanceof Error ? cause.message : String(cause)
    }`
})

/** Whether BullMQ can be loaded (else a usage message saying how to get it). */
export const available: Effect.Effect<void, string> = Effect.asVoid(load)

/** BullMQ's connection options from a redis:// or rediss:// URL (checked by the handlers: `checkRedisUrl`). */
const connectionOf = (url: string) => {
  const u = new URL(url)
  return {
    // `rediss://`: TLS, as ioredis reads the same URL for the budgets' store
    ...(u.protocol === "rediss:" ? { tls: {} } : {}),
    host: u.hostname,
    port: u.port === "" ? 6379 : Number(u.port),
    ...(u.password === "" ? {} : { password: decodeURIComponent(u.password) }),
    ...(u.username === "" ? {} : { username: decodeURIComponent(u.username) }),
    ...(u.pathname.length > 1 ? { db: Number(u.pathname.slice(1)) } : {}),
    maxRetriesPerRequest: null
  }
}

/** The queues of a pipeline's stages; a run's outcomes go to a queue of its own ({@link outcomesName}). */
const queueNames = (spec: Spec) => spec.stages.map((s) => `stage-${s.name}`)
const outcomesName = (run: string) => `outcomes-${run}`
const prefixOf = (spec: Spec) => `sluice-pipeline-${spec.name}`
/**
 * A BullMQ job id (no `:`, not a bare integer) for an item of a run: BullMQ ignores an add under the id of a job it
 * still holds, so a redelivered job adds nothing twice within the run, and a later run (its own id) adds anew.
 */
const jobId = (run: string, id: string) => `${run}-item-${encodeURIComponent(id)}`
/** The run's stop: one at a time (BullMQ ignores a second add), removed by the run's next coordinator. */
const stopId = (run: string) => `${run}-stop`

/** `<output>.run.json` (the `.jsonl` extension dropped first): where a distributed run keeps its id. */
export const runPath = (output: string): string =>
  `${output.endsWith(".jsonl") ? output.slice(0, -".jsonl".length) : output}.run.json`

/**
 * The run's id, kept beside the output (`<output>.run.json`, with the output's inode): the same on a resume into the
 * same output, a new one on `--restart`, into a new output, or once the output was deleted (a new file). A file
 * there that is not a run file (not `{"run", "inode"}`) is never overwritten: the run does not start.
 */
const runIdFor = (output: string, restart: boolean): Effect.Effect<string, BulkRunner.BulkPathError> =>
  Effect.suspend(() => {
    const path = runPath(output)
    const inode = NodeFs.existsSync(output) ? NodeFs.statSync(output).ino : -1
    if (NodeFs.existsSync(path)) {
      let kept: { run?: unknown; inode?: unknown } | undefined
      try {
        kept = JSON.parse(NodeFs.readFileSync(path, "utf8")) as { run?: unknown; inode?: unknown }
      } catch {
        kept = undefined
      }
      const ours = typeof kept === "object" && kept !== null && typeof kept.run === "string" &&
        /^[a-z0-9]+$/.test(kept.run) && typeof kept.inode === "number"
      if (!ours) {
        return Effect.fail(
          new BulkRunner.BulkPathError({
            reason: "not-output",
            path,
            message: `${path} is not a run file of a distributed pipeline (expected {"run", "inode"}): refusing to ` +
              "overwrite it; move it away, or give another --output"
          })
        )
      }
      if (!restart && kept!.inode === inode) return Effect.succeed(kept!.run as string)
    }
    const run = NodeCrypto.randomBytes(6).toString("hex")
    NodeFs.writeFileSync(path, JSON.stringify({ run, inode }) + "\n")
    return Effect.succeed(run)
  })

/** How long a job's lock lasts without renewal: a killed worker's jobs go back to the queue after about this. */
const LOCK_MS = 4_000

/** A job that failed (a failure no item gets past: quota, an outage) is tried again later, by any worker. */
const defaultJobOptions = { attempts: 1_000, backoff: { type: "exponential", delay: 1_000 } }

const closing = <A extends { close: () => Promise<void> }>(make: () => A) =>
  Effect.acquireRelease(Effect.sync(make), (resource) => Effect.promise(() => resource.close()))

/** A stage's job, as its processor sees it. */
interface StageJob {
  readonly data: JobData
  readonly moveToDelayed: (timestamp: number, token?: string) => Promise<void>
  readonly updateData: (data: JobData) => Promise<void>
}

/** How soon a job put back by a stop is due again (BullMQ's pause holds it until a coordinator resumes the queues). */
const STOP_DELAY_MS = 1_000

/**
 * A failure with `stop` is met this many times in a row by a job (by any worker, 1 s, 2 s, 4 s apart) before it
 * stops the run: a store that did not answer in time on a loaded machine, a passing outage, get another chance (an
 * exhausted quota costs a few refused calls more).
 */
const STOP_AFTER = 4

/**
 * A worker in this process, listening: `stopping` tells it that it is being stopped (a signal), so the failures
 * with `stop` that follow are its own (its calls cancelled), not the pipeline's: their jobs go back to the queues for
 * other workers, and the run goes on.
 */
export interface Working {
  readonly stopping: Effect.Effect<void>
}

/** The worker: every stage's BullMQ worker in this process, listening once it returns, until the scope closes. */
export const work = <E>(options: {
  readonly spec: Spec
  readonly sender: PipelineFileModule.PipelineFile.Sender<E>
  readonly redis: string
  /** How many failures with `stop` in a row stop the run ({@link STOP_AFTER}), and the first pause between them. */
  readonly stopAfter?: { readonly tries: number; readonly firstDelayMs: number } | undefined
}): Effect.Effect<Working, string, Scope.Scope> =>
  Effect.gen(function*() {
    const { DelayedError, Queue: BullQueue, Worker } = yield* load
    const { spec } = options
    const connection = connectionOf(options.redis)
    const prefix = prefixOf(spec)
    const names = queueNames(spec)
    const all = yield* Effect.forEach(
      names,
      (name) => closing(() => new BullQueue(name, { connection, prefix, defaultJobOptions }))
    )
    const queues = all.slice(1)
    let stopping = false
    // each run's outcomes queue, opened on its first outcome, closed with the worker
    const outcomeQueues = new Map<string, InstanceType<typeof BullQueue>>()
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => Promise.all([...outcomeQueues.values()].map((queue) => queue.close())))
    )
    const outcomesOf = (run: string) => {
      let queue = outcomeQueues.get(run)
      if (queue === undefined) {
        queue = new BullQueue(outcomesName(run), { connection, prefix, defaultJobOptions })
        outcomeQueues.set(run, queue)
      }
      return queue
    }
    const runtime = yield* Effect.runtime<never>()
    const decide = PipelineFile.decide(options.sender)
    const workers = yield* Effect.forEach(spec.stages, (stage, k) => {
      const run = PipelineFile.stageRun(spec, k, options.sender)
      const last = k === spec.stages.length - 1
      const processor = async (job: StageJob, token?: string): Promise<void> => {
        const outcome = await Runtime.runPromise(runtime)(
          Effect.gen(function*() {
            const { carry, id } = job.data
            const runId = job.data.run
            const exit = yield* Effect.exit(run(carry, id))
            if (Exit.isSuccess(exit)) {
              const next = last ? outcomesOf(runId) : queues[k]!
              const data: JobData = { run: runId, id, carry: exit.value }
              yield* Effect.promise(() => next.add("item", data, { jobId: jobId(runId, id) }))
              return undefined
            }
            const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
            // a defect, or this worker being stopped: the job fails and is retried later, by any worker
            if (failure === undefined || (stopping && decide(failure) === "fail")) {
              return yield* Effect.failCause(exit.cause)
            }
            const described = failure instanceof PipelineFile.MissingField
              ? { kind: "MissingField", code: "missing_field", message: failure.message }
              : options.sender.describe(failure as E)
            const failed: Described = {
              stage: stage.name,
              kind: described.kind,
              code: described.code,
              message: described.message,
              ...(described.statusCode === undefined ? {} : { statusCode: described.statusCode })
            }
            if (decide(failure) === "fail") {
              const tries = (job.data.tries ?? 0) + 1
              const { firstDelayMs, tries: stopAfter } = options.stopAfter ?? { tries: STOP_AFTER, firstDelayMs: 1_000 }
              if (tries < stopAfter) {
                // tried again later, by any worker (not a BullMQ attempt: those are for defects)
                yield* Effect.promise(() => job.updateData({ ...job.data, tries }))
                yield* Effect.promise(() => job.moveToDelayed(Date.now() + firstDelayMs * 2 ** (tries - 1), token))
                return "put back" as const
              }
              // a failure no item gets past: no worker takes another job of the pipeline, the run stops, and the
              // job waits in its queue for the rerun (its tries start again)
              yield* Effect.promise(() => job.updateData({ ...job.data, tries: 0 }))
              yield* Effect.promise(() => Promise.all(all.map((queue) => queue.pause())))
              yield* Effect.promise(() =>
                outcomesOf(runId).add(STOP, { run: runId, id, stopped: failed } satisfies StopData, {
                  jobId: stopId(runId)
                })
              )
              yield* Effect.promise(() => job.moveToDelayed(Date.now() + STOP_DELAY_MS, token))
              return "put back" as const
            }
            yield* Effect.promise(() =>
              outcomesOf(runId).add("item", { run: runId, id, carry, skipped: failed } satisfies JobData, {
                jobId: jobId(runId, id)
              })
            )
            return undefined
          })
        )
        // BullMQ's way of saying the job was moved (to delayed) by its processor: not a failure, not an attempt
        if (outcome === "put back") throw new DelayedError()
      }
      return closing(() =>
        new Worker(names[k]!, processor, {
          connection,
          prefix,
          concurrency: stage.concurrency,
          lockDuration: LOCK_MS,
          stalledInterval: LOCK_MS / 2,
          maxStalledCount: 100
        })
      )
    })
    yield* Effect.forEach(workers, (worker) => Effect.promise(() => worker.waitUntilReady()), { discard: true })
    return { stopping: Effect.sync(() => (stopping = true)) }
  })

/**
 * The coordinator's engine: adds the items to the first stage's queue (at most `window` not yet back) and hands
 * back the outcomes from the run's outcomes queue, each acknowledged once written. An item counts as delivered by
 * its id, whatever the order: an outcome of an earlier coordinator of the same run (dead before writing it) may come
 * before its item is read again, and that item is then not added again. Once every item is delivered, the run's
 * jobs are removed from the queues. A stop on the outcomes queue fails the outcomes stream with its
 * `PipelineFile.StageError`; a coordinator starting resumes the pipeline's queues (paused by a stop) and drops a stop
 * an earlier coordinator of the run left.
 */
export const engine = (spec: Spec, redis: string, output: string): PipelineFileModule.PipelineFile.Engine => ({
  paths: [{ role: "run file", path: runPath(output) }],
  start: (items, { restart }) =>
    Effect.gen(function*() {
      const { Queue: BullQueue, Worker } = yield* Effect.orDie(load)
      const connection = connectionOf(redis)
      const prefix = prefixOf(spec)
      const names = queueNames(spec)
      if (restart) {
        yield* Effect.forEach(names, (name) =>
          Effect.scoped(Effect.flatMap(
            closing(() => new BullQueue(name, { connection, prefix })),
            (queue) => Effect.promise(() => queue.obliterate({ force: true }))
          )), { discard: true })
      }
      const run = yield* runIdFor(output, restart)
      const stages = yield* Effect.forEach(
        names,
        (name) => closing(() => new BullQueue(name, { connection, prefix, defaultJobOptions }))
      )
      const first = stages[0]!
      const outcomesQueue = yield* closing(() => new BullQueue(outcomesName(run), { connection, prefix }))
      // a rerun after a stop: the stop is over (the job that stopped the run is in its queue, put back)
      yield* Effect.promise(() => outcomesQueue.remove(stopId(run)).catch(() => 0))
      yield* Effect.forEach(stages, (queue) => Effect.promise(() => queue.resume()), { discard: true })
      const window = spec.stages.reduce((n, s) => n + (s.queue ?? s.concurrency * 2) + s.concurrency, 0) * 4
      const permits = yield* Effect.makeSemaphore(window)
      const deliveries = yield* Queue.unbounded<Message | "end">()
      /** Read from the input and not yet delivered. */
      const pending = new Set<string>()
      /** Pending and holding a permit (added to the first queue). */
      const holding = new Set<string>()
      /** Delivered before the input reached them (an earlier coordinator's items): not added again. */
      const early = new Set<string>()
      /** Every id of the run read from the input: their jobs are removed at the end. */
      const all: Array<string> = []
      let inputEnded = false
      const finishIfDone = Effect.suspend(() =>
        inputEnded && pending.size === 0 ? Queue.offer(deliveries, "end") : Effect.void
      )
      const runtime = yield* Effect.runtime<never>()
      // closed without waiting for an outcome under way (its line not written when the run stops): its lock runs
      // out and the next coordinator of the run gets it again
      const outcomesWorker = yield* Effect.acquireRelease(
        Effect.sync(() =>
          new Worker(outcomesName(run), (job: { readonly name: string; readonly data: JobData | StopData }) =>
            Runtime.runPromise(runtime)(Effect.gen(function*() {
              // a stop: the run ends once its job is completed (below), so that the rerun finds it done
              if (job.name === STOP) {
                return
              }
              const { carry, id, skipped } = job.data as JobData
              const outcome: Pipeline.Outcome<Carry> = skipped === undefined
                ? { _tag: "Done", id, value: carry, resumed: false }
                : {
                  _tag: "Skipped",
                  id,
                  stage: skipped.stage,
                  kind: skipped.kind,
                  message: skipped.message,
                  attempts: 1,
                  error: stageError(id, skipped),
                  resumed: false
                }
              const written = yield* Effect.makeLatch(false)
              yield* Queue.offer(deliveries, { outcome, ack: written.open })
              yield* written.await
              if (pending.delete(id)) {
                if (holding.delete(id)) {
                  yield* permits.release(1)
                }
              } else if (!inputEnded) {
                early.add(id)
              }
              yield* finishIfDone
            })), {
            connection,
            prefix,
            concurrency: 1,
            lockDuration: LOCK_MS,
            stalledInterval: LOCK_MS / 2,
            maxStalledCount: 100
          })
        ),
        (worker) =>
          Effect.promise(() =>
            worker.close(true)
          )
      )
      outcomesWorker.on("completed", (job: { readonly name: string; readonly data: JobData | StopData }) => {
        if (job.name === STOP && "stopped" in job.data) {
          deliveries.unsafeOffer({ error: stageError(job.data.id, job.data.stopped) })
        }
      })
      yield* Effect.forkScoped(
        Stream.runForEach(items, (item) =>
          Effect.suspend(() => {
            all.push(item.id)
            if (early.delete(item.id)) return Effect.void
            pending.add(item.id)
            return Effect.flatMap(permits.take(1), () => {
              // delivered while this waited for a permit: not added again
              if (!pending.has(item.id)) return Effect.asVoid(permits.release(1))
              holding.add(item.id)
              return Effect.promise(async () => {
                await first.add("item", { run, id: item.id, carry: item.input } satisfies JobData, {
                  jobId: jobId(run, item.id)
                })
              })
            })
          })).pipe(
            Effect.tap(() => Effect.sync(() => (inputEnded = true, early.clear()))),
            Effect.zipRight(finishIfDone),
            Effect.catchAll((error) => Queue.offer(deliveries, { error }))
          )
      )
      // the run is over: its jobs go (a later run has its own ids); left as they are when the run stops early
      const cleanUp = Effect.promise(async () => {
        for (let i = 0; i < all.length; i += 256) {
          const ids = all.slice(i, i + 256).map((id) => jobId(run, id))
          await Promise.all(stages.flatMap((queue) => ids.map((id) => queue.remove(id))))
        }
        await outcomesQueue.obliterate({ force: true })
      })
      const outcomes = Stream.fromQueue(deliveries).pipe(
        Stream.takeWhile((d): d is Message => d !== "end"),
        Stream.mapEffect((d) => "error" in d ? Effect.fail(d.error) : Effect.succeed(d)),
        Stream.concat(Stream.execute(cleanUp))
      )
      return { outcomes }
    })
})
