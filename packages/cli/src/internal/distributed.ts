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
 * @internal
 */
import type * as PipelineFileModule from "@sluice/openai"
import { PipelineFile } from "@sluice/openai"
import type { Pipeline } from "@sluice/openai"
import type { BulkRunner } from "@sluice/openai"
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

/** What a job carries: the run, the item and, on the outcomes queue, how it ended. */
interface JobData {
  readonly run: string
  readonly id: string
  readonly carry: Carry
  readonly skipped?: { readonly stage: string; readonly kind: string; readonly message: string } | undefined
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

/** BullMQ's connection options from a redis:// URL. */
const connectionOf = (url: string) => {
  const u = new URL(url)
  return {
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

/**
 * The run's id, kept beside the output (`<output>.run.json`, with the output's inode): the same on a resume into the
 * same output, a new one on `--restart`, into a new output, or once the output was deleted (a new file).
 */
const runIdFor = (output: string, restart: boolean): Effect.Effect<string> =>
  Effect.sync(() => {
    const ext = output.endsWith(".jsonl") ? output.slice(0, -".jsonl".length) : output
    const path = `${ext}.run.json`
    const inode = NodeFs.existsSync(output) ? NodeFs.statSync(output).ino : -1
    if (!restart) {
      try {
        const kept = JSON.parse(NodeFs.readFileSync(path, "utf8")) as { run?: unknown; inode?: unknown }
        if (typeof kept.run === "string" && /^[a-z0-9]+$/.test(kept.run) && kept.inode === inode) return kept.run
      } catch {
        // none yet, or unreadable: a new run
      }
    }
    const run = NodeCrypto.randomBytes(6).toString("hex")
    NodeFs.writeFileSync(path, JSON.stringify({ run, inode }) + "\n")
    return run
  })

/** How long a job's lock lasts without renewal: a killed worker's jobs go back to the queue after about this. */
const LOCK_MS = 4_000

/** A job that failed (a failure no item gets past: quota, an outage) is tried again later, by any worker. */
const defaultJobOptions = { attempts: 1_000, backoff: { type: "exponential", delay: 1_000 } }

const closing = <A extends { close: () => Promise<void> }>(make: () => A) =>
  Effect.acquireRelease(Effect.sync(make), (resource) => Effect.promise(() => resource.close()))

/** The worker: every stage's BullMQ worker in this process, listening once it returns, until the scope closes. */
export const work = <E>(options: {
  readonly spec: Spec
  readonly sender: PipelineFileModule.PipelineFile.Sender<E>
  readonly redis: string
}): Effect.Effect<void, string, Scope.Scope> =>
  Effect.gen(function*() {
    const { Queue: BullQueue, Worker } = yield* load
    const { spec } = options
    const connection = connectionOf(options.redis)
    const prefix = prefixOf(spec)
    const names = queueNames(spec)
    const queues = yield* Effect.forEach(
      names.slice(1),
      (name) => closing(() => new BullQueue(name, { connection, prefix, defaultJobOptions }))
    )
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
      const processor = (job: { readonly data: JobData }) =>
        Runtime.runPromise(runtime)(
          Effect.gen(function*() {
            const { carry, id } = job.data
            const runId = job.data.run
            const exit = yield* Effect.exit(run(carry, id))
            if (Exit.isSuccess(exit)) {
              const next = last ? outcomesOf(runId) : queues[k]!
              const data: JobData = { run: runId, id, carry: exit.value }
              yield* Effect.promise(() => next.add("item", data, { jobId: jobId(runId, id) }))
              return
            }
            const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
            // a failure no item gets past (stop), or a defect: the job fails and is retried later, by any worker
            if (failure === undefined || decide(failure) === "fail") return yield* Effect.failCause(exit.cause)
            const described = failure instanceof PipelineFile.MissingField
              ? { kind: "MissingField", message: failure.message }
              : options.sender.describe(failure as E)
            yield* Effect.promise(() =>
              outcomesOf(runId).add(
                "item",
                {
                  run: runId,
                  id,
                  carry,
                  skipped: { stage: stage.name, kind: described.kind, message: described.message }
                } satisfies JobData,
                { jobId: jobId(runId, id) }
              )
            )
          })
        )
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
  })

/**
 * The coordinator's engine: adds the items to the first stage's queue (at most `window` not yet back) and hands
 * back the outcomes from the run's outcomes queue, each acknowledged once written. An item counts as delivered by
 * its id, whatever the order: an outcome of an earlier coordinator of the same run (dead before writing it) may come
 * before its item is read again, and that item is then not added again. Once every item is delivered, the run's
 * jobs are removed from the queues.
 */
export const engine = (spec: Spec, redis: string, output: string): PipelineFileModule.PipelineFile.Engine => ({
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
      const window = spec.stages.reduce((n, s) => n + (s.queue ?? s.concurrency * 2) + s.concurrency, 0) * 4
      const permits = yield* Effect.makeSemaphore(window)
      const deliveries = yield* Queue.unbounded<PipelineFileModule.PipelineFile.Delivery | "end">()
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
      yield* Effect.acquireRelease(
        Effect.sync(() =>
          new Worker(outcomesName(run), (job: { readonly data: JobData }) =>
            Runtime.runPromise(runtime)(Effect.gen(function*() {
              const { carry, id, skipped } = job.data
              const outcome: Pipeline.Outcome<Carry> = skipped === undefined
                ? { _tag: "Done", id, value: carry, resumed: false }
                : { _tag: "Skipped", ...skipped, id, attempts: 1, error: undefined, resumed: false }
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
            Effect.catchAll((error) => Queue.offer(deliveries, { error } as never))
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
        Stream.takeWhile((d): d is PipelineFileModule.PipelineFile.Delivery => d !== "end"),
        Stream.mapEffect((d) =>
          "error" in d ? Effect.fail((d as unknown as { error: BulkRunner.BulkFileError }).error) : Effect.succeed(d)
        ),
        Stream.concat(Stream.execute(cleanUp))
      )
      return { outcomes }
    })
})
