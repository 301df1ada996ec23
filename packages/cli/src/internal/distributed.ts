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
 * Figures: each worker adds a job's figures (done, skipped or put back, its calls, retries, 429s, admission waits,
 * what was charged where, its time) to a hash of the run beside the queues; the coordinator's `stats` read it with
 * the stage queues' job counts (`statsOf`), for the progress line and the summary, and remove it with the run's jobs.
 *
 * @internal
 */
import type { RateLimiter } from "@sluice/core"
import { Budget } from "@sluice/core"
import type * as PipelineFileModule from "@sluice/openai"
import { Pipeline, PipelineFile } from "@sluice/openai"
import { BulkRunner } from "@sluice/openai"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
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
    // an IPv6 host without its brackets (`redis://[::1]:6379`), as ioredis reads it
    host: u.hostname.replace(/^\[(.*)\]$/, "$1"),
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

/**
 * The run's per-stage figures, beside its queues: a hash the workers add to job by job (before the job's item goes
 * on, so that nothing is added once the run's coordinator removed it), its fields `<counter>\0<stage>[\0...]`:
 * `done`, `skipped`, `putBack` (jobs), `calls`, `callRetries`, `rateLimited`, `admissionWaitMillis`, `busyMillis`
 * and `charged\0<stage>\0<scope>\0<dimension>`; `limits\0<scope>` holds the limits the workers admit under there.
 * A job run again (its worker died mid-job) counts again: its calls were made again.
 */
const statsKey = (spec: Spec, run: string) => `${prefixOf(spec)}:stats-${run}`
const SEP = "\u0000"

/**
 * How a stage's job ended, as its counter in the run's hash: none when it failed (it is tried again).
 *
 * @internal
 */
export type JobEnd = "done" | "skipped" | "putBack" | undefined

/** How long a run's figures outlive their last write when no coordinator removes them (a run never resumed). */
const STATS_TTL_SECONDS = 7 * 24 * 3600

/**
 * A Redis client as BullMQ's connection gives it (ioredis): the few commands the figures use.
 *
 * @internal
 */
export interface StatsClient {
  readonly multi: () => {
    hincrby(key: string, field: string, by: number): unknown
    hincrbyfloat(key: string, field: string, by: number): unknown
    hset(key: string, fields: Record<string, string>): unknown
    expire(key: string, seconds: number): unknown
    exec(): Promise<unknown>
  }
  readonly hgetall: (key: string) => Promise<Record<string, string>>
  readonly del: (...keys: Array<string>) => Promise<number>
  readonly scan: (
    cursor: string,
    match: "MATCH",
    pattern: string,
    count: "COUNT",
    n: number
  ) => Promise<[string, Array<string>]>
}

/**
 * A job's figures into the run's hash, in one transaction; a failure is logged, never the job's. The hash lasts a
 * week after its last write ({@link STATS_TTL_SECONDS}) if no coordinator removes it (a run never resumed).
 *
 * @internal
 */
export const record = (
  client: StatsClient,
  key: string,
  stage: string,
  end: JobEnd,
  tally: Pipeline.CallTally,
  busyMillis: number,
  limiter: Pick<RateLimiter.Service, "limitsOf"> | undefined
) => {
  const multi = client.multi()
  const field = (counter: string) => `${counter}${SEP}${stage}`
  if (end !== undefined) multi.hincrby(key, field(end), 1)
  if (tally.calls > 0) multi.hincrby(key, field("calls"), tally.calls)
  if (tally.callRetries > 0) multi.hincrby(key, field("callRetries"), tally.callRetries)
  if (tally.rateLimited > 0) multi.hincrby(key, field("rateLimited"), tally.rateLimited)
  if (tally.admissionWaitMillis > 0) multi.hincrbyfloat(key, field("admissionWaitMillis"), tally.admissionWaitMillis)
  multi.hincrbyfloat(key, field("busyMillis"), busyMillis)
  const scopes = new Set<string>()
  for (const c of tally.charged) {
    multi.hincrbyfloat(key, [field("charged"), c.scope, c.dimension].join(SEP), c.amount)
    scopes.add(c.scope)
  }
  if (limiter !== undefined) {
    for (const scope of scopes) {
      const limits = limiter.limitsOf(scope).map((l) => ({
        dimension: l.dimension,
        amount: l.amount,
        windowMillis: Duration.toMillis(l.window),
        ...(l.burst === undefined ? {} : { burst: l.burst })
      }))
      // a field and its value as an object (the three-argument form reached Redis as the field name spelled out)
      multi.hset(key, { [`limits${SEP}${scope}`]: JSON.stringify(limits) })
    }
  }
  multi.expire(key, STATS_TTL_SECONDS)
  // best effort: the figures are only figures, and a job whose calls succeeded must go on whatever Redis says to
  // them (a defect here would fail the job, and BullMQ would run it again: its calls sent and charged twice)
  return Effect.tryPromise(() => multi.exec()).pipe(
    Effect.catchAll((error) =>
      Effect.logWarning(`a pipeline job's figures were not recorded (stage ${stage}): ${error.cause}`)
    ),
    Effect.asVoid
  )
}

/** A stage queue's jobs now: waiting (or paused, or delayed to be tried again) and active, for every run on it. */
export interface QueueCounts {
  readonly queued: number
  readonly active: number
  /** The worker processes listening on the queue (BullMQ's client names); undefined when Redis would not say. */
  readonly workers: number | undefined
}

/**
 * The coordinator's stats of a distributed run ({@link Pipeline.Stats} with `distributed`): the workers' hash of the
 * run, the stage queues' job counts and the coordinator's own counts.
 *
 * @internal
 */
export const statsOf = (input: {
  readonly spec: Spec
  readonly hash: Readonly<Record<string, string>>
  readonly counts: ReadonlyArray<QueueCounts>
  /** The most each stage's queue held when read (this read's counts included by the caller). */
  readonly maxQueued: ReadonlyArray<number>
  readonly elapsedMillis: number
  readonly entered: number
  readonly delivered: number
  readonly maxHeld: number
  readonly window: number
}): Pipeline.Stats => {
  const { counts, hash, spec } = input
  const number = (field: string) => {
    const value = Number(hash[field] ?? 0)
    return Number.isFinite(value) ? value : 0
  }
  const charged = new Map<string, Array<Pipeline.Charged>>()
  const limits = new Map<string, ReadonlyArray<Budget.Limit>>()
  for (const [field, value] of Object.entries(hash)) {
    const parts = field.split(SEP)
    if (parts[0] === "charged" && parts.length === 4) {
      const list = charged.get(parts[1]!) ?? []
      list.push({ scope: parts[2]!, dimension: parts[3]!, amount: Number(value) })
      charged.set(parts[1]!, list)
    } else if (parts[0] === "limits" && parts.length === 2) {
      try {
        const decoded = JSON.parse(value) as ReadonlyArray<
          { dimension: string; amount: number; windowMillis: number; burst?: number }
        >
        limits.set(
          parts[1]!,
          decoded.map((l) => Budget.Limit.of(l.dimension as Budget.Dimension, l.amount, l.windowMillis, l.burst))
        )
      } catch {
        // a value this version cannot read: that scope's limits are not known
      }
    }
  }
  const stages = spec.stages.map((stage, k): Pipeline.StageStats => {
    const of = (counter: string) => number(`${counter}${SEP}${stage.name}`)
    const count = counts[k] ?? { queued: 0, active: 0, workers: undefined }
    const done = of("done")
    const skipped = of("skipped")
    return {
      name: stage.name,
      concurrency: stage.concurrency * (count.workers ?? 1),
      capacity: input.window,
      queued: count.queued,
      maxQueued: Math.max(input.maxQueued[k] ?? 0, count.queued),
      inFlight: count.active,
      entered: done + skipped + count.queued + count.active,
      done,
      skipped,
      retried: of("putBack"),
      calls: of("calls"),
      callRetries: of("callRetries"),
      rateLimited: of("rateLimited"),
      admissionWaitMillis: of("admissionWaitMillis"),
      busyMillis: of("busyMillis"),
      idleMillis: 0,
      blockedMillis: 0,
      charged: charged.get(stage.name) ?? []
    }
  })
  return {
    pipeline: spec.name,
    elapsedMillis: input.elapsedMillis,
    entered: input.entered,
    resumed: 0,
    delivered: input.delivered,
    held: input.entered - input.delivered,
    maxHeld: input.maxHeld,
    bound: input.window,
    stages,
    binding: Pipeline.binding(stages, input.elapsedMillis, { limitsOf: (scope) => limits.get(scope) ?? [] }),
    callEvents: stages.some((stage) => stage.calls > 0),
    distributed: true
  }
}

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

/**
 * How long a job's lock lasts without renewal unless told (`--job-lock`; BullMQ's own default): a killed worker's
 * jobs go back to the queue after about this, and a worker alive but stalled longer than it (a loaded machine, a GC
 * pause) loses its job to another, which makes the call again. 4 s made that happen at load 17 (33 jobs for 32
 * items), so the default leaves room for stalls; a test that kills workers passes a shorter one.
 *
 * @internal
 */
export const DEFAULT_LOCK_MS = 30_000

/** BullMQ's lock options for a lock of `lockMs`: renewed, and stalled jobs looked for, every half of it. */
const lockOptions = (lockMs: number) => ({ lockDuration: lockMs, stalledInterval: lockMs / 2, maxStalledCount: 100 })

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

/**
 * How long a coordinator letting go (its run over, stopped, or interrupted) waits for its outcomes worker to give back
 * the outcome it holds before closing it anyway (Redis not answering): that outcome then waits for its lock to run out.
 */
const LET_GO_MS = 2_000

/** A job of a run's outcomes queue, as the coordinator's worker sees it. */
interface OutcomeJob {
  readonly name: string
  readonly data: JobData | StopData
  readonly moveToDelayed: (timestamp: number, token?: string) => Promise<void>
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
  /** The limiter the sender admits through: its limits on the scopes charged go to the run's figures (the binding budget). */
  readonly limiter?: Pick<RateLimiter.Service, "limitsOf"> | undefined
  /** How long a job's lock lasts without renewal ({@link DEFAULT_LOCK_MS} unless given). */
  readonly lockMs?: number | undefined
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
    const client = (yield* Effect.promise(() => all[0]!.client)) as unknown as StatsClient
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
            const began = yield* Clock.currentTimeMillis
            // the calls' events (`onEvent: Pipeline.onEvent` on the sender's OpenAi service) counted for this job
            const [exit, tally] = yield* Pipeline.tallyCalls(run(carry, id))
            const busy = (yield* Clock.currentTimeMillis) - began
            // the job's figures go to the run's hash before its item goes on (the end of the run removes the hash)
            const ended = (end: JobEnd) =>
              record(client, statsKey(spec, runId), stage.name, end, tally, busy, options.limiter)
            if (Exit.isSuccess(exit)) {
              const next = last ? outcomesOf(runId) : queues[k]!
              const data: JobData = { run: runId, id, carry: exit.value }
              yield* ended("done")
              yield* Effect.promise(() => next.add("item", data, { jobId: jobId(runId, id) }))
              return undefined
            }
            const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
            // a defect, or this worker being stopped: the job fails and is retried later, by any worker
            if (failure === undefined || (stopping && decide(failure) === "fail")) {
              yield* ended(undefined)
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
              yield* ended("putBack")
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
            yield* ended("skipped")
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
          ...lockOptions(options.lockMs ?? DEFAULT_LOCK_MS)
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
export const engine = (
  spec: Spec,
  redis: string,
  output: string,
  lockMs: number = DEFAULT_LOCK_MS
): PipelineFileModule.PipelineFile.Engine => ({
  paths: [{ role: "run file", path: runPath(output) }],
  start: (items, { restart }) =>
    Effect.gen(function*() {
      const { DelayedError, Queue: BullQueue, Worker } = yield* Effect.orDie(load)
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
      const client = (yield* Effect.promise(() => first.client)) as unknown as StatsClient
      const key = statsKey(spec, run)
      yield* Effect.promise(async () => {
        if (restart) {
          // the figures of the runs whose queues were obliterated above
          let cursor = "0"
          do {
            const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}:stats-*`, "COUNT", 100)
            if (keys.length > 0) await client.del(...keys)
            cursor = next
          } while (cursor !== "0")
        }
        // this coordinator's figures from now on (as a process's own stats: an earlier coordinator's are not counted)
        await client.del(key)
      })
      const startedAt = yield* Clock.currentTimeMillis
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
      let delivered = 0
      let maxHeld = 0
      const maxQueued = spec.stages.map(() => 0)
      /** The figures as the run ended (read before its hash is removed), or as last read. */
      let final: Pipeline.Stats | undefined
      let lastRead: Pipeline.Stats | undefined
      const readStats = Effect.gen(function*() {
        const [hash, counts] = yield* Effect.promise(() =>
          Promise.all([
            client.hgetall(key),
            Promise.all(stages.map(async (queue): Promise<QueueCounts> => {
              const c = await queue.getJobCounts("waiting", "paused", "prioritized", "delayed", "active")
              // CLIENT LIST: a managed Redis may refuse it
              const workers = await queue.getWorkersCount().catch(() => undefined)
              return {
                queued: (c.waiting ?? 0) + (c.paused ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0),
                active: c.active ?? 0,
                workers
              }
            }))
          ])
        )
        counts.forEach((c, k) => (maxQueued[k] = Math.max(maxQueued[k]!, c.queued)))
        const now = yield* Clock.currentTimeMillis
        lastRead = statsOf({
          spec,
          hash,
          counts,
          maxQueued,
          elapsedMillis: now - startedAt,
          entered: all.length,
          delivered,
          maxHeld,
          window
        })
        return lastRead
      })
      const stats: Effect.Effect<Pipeline.Stats> = Effect.suspend(() =>
        final !== undefined ? Effect.succeed(final) : readStats
      ).pipe(
        // Redis did not answer: the figures as last read
        Effect.catchAllCause(() =>
          Effect.succeed(
            lastRead ??
              statsOf({
                spec,
                hash: {},
                counts: [],
                maxQueued,
                elapsedMillis: 0,
                entered: 0,
                delivered,
                maxHeld,
                window
              })
          )
        )
      )
      const finishIfDone = Effect.suspend(() =>
        inputEnded && pending.size === 0 ? Queue.offer(deliveries, "end") : Effect.void
      )
      const runtime = yield* Effect.runtime<never>()
      /**
       * Done once this coordinator lets go (the run over, stopped, or interrupted): an outcome its worker holds whose
       * line was not written goes back to the queue at once, for the next coordinator of the run. Left active, it
       * would wait for its lock to run out (30 s by default, then up to half of that for the stalled check): the
       * outcome taken just after a stop made the rerun wait that long for it.
       */
      const lettingGo = yield* Deferred.make<void>()
      // a coordinator that dies (kill -9) gives nothing back: its outcome's lock runs out and the next coordinator of
      // the run gets it again
      const outcomesWorker = yield* Effect.acquireRelease(
        Effect.sync(() =>
          new Worker(outcomesName(run), async (job: OutcomeJob, token?: string) => {
            const given = await Runtime.runPromise(runtime)(Effect.gen(function*() {
              // a stop: the run ends once its job is completed (below), so that the rerun finds it done
              if (job.name === STOP) {
                return false
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
              let acked = false
              yield* Queue.offer(deliveries, {
                outcome,
                ack: Effect.zipRight(Effect.sync(() => (acked = true)), written.open)
              })
              yield* Effect.raceFirst(written.await, Deferred.await(lettingGo))
              if (!acked) {
                // let go before its line was written: due again now (not an attempt), for the next coordinator; if
                // Redis will not take it back, its lock runs out as after a death
                yield* Effect.promise(() => job.moveToDelayed(Date.now(), token).then(() => true, () => false))
                return true
              }
              if (pending.delete(id)) {
                delivered++
                if (holding.delete(id)) {
                  yield* permits.release(1)
                }
              } else if (!inputEnded) {
                early.add(id)
              }
              yield* finishIfDone
              return false
            }))
            // BullMQ's way of saying the job was moved (back, due now) by its processor: not a failure, not an attempt
            if (given) throw new DelayedError()
          }, {
            connection,
            prefix,
            concurrency: 1,
            ...lockOptions(lockMs)
          })
        ),
        (worker) =>
          Deferred.succeed(lettingGo, void 0).pipe(
            // the worker takes no further outcome and its processor gives back the one it holds; then it closes
            // without waiting for anything else (nothing is written once the run stops)
            Effect.zipRight(
              Effect.promise(() => worker.pause()).pipe(
                Effect.interruptible,
                Effect.timeoutOption(LET_GO_MS)
              )
            ),
            Effect.zipRight(Effect.promise(() => worker.close(true)))
          )
      )
      outcomesWorker.on("completed", (job: OutcomeJob) => {
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
            maxHeld = Math.max(maxHeld, pending.size)
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
      const cleanUp = Effect.zipRight(
        Effect.flatMap(stats, (last) => Effect.sync(() => (final = last))),
        Effect.promise(async () => {
          for (let i = 0; i < all.length; i += 256) {
            const ids = all.slice(i, i + 256).map((id) => jobId(run, id))
            await Promise.all(stages.flatMap((queue) => ids.map((id) => queue.remove(id))))
          }
          await outcomesQueue.obliterate({ force: true })
          await client.del(key)
        })
      )
      const outcomes = Stream.fromQueue(deliveries).pipe(
        Stream.takeWhile((d): d is Message => d !== "end"),
        Stream.mapEffect((d) => "error" in d ? Effect.fail(d.error) : Effect.succeed(d)),
        Stream.concat(Stream.execute(cleanUp))
      )
      return { outcomes, stats }
    })
})
