/**
 * `sluice pipeline` across processes and machines on BullMQ (an optional peer dependency, loaded only here): one
 * BullMQ queue per stage and one for the outcomes, on the Redis that holds the budgets. A worker process runs a
 * BullMQ `Worker` per stage (the stage's concurrency): it runs the stage for the job's item and adds the item to
 * the next stage's queue (or the outcome to the outcomes queue) under the item's id as BullMQ job id, before its own
 * job completes, so a job redelivered after a worker's death adds nothing twice. The coordinator (`pipeline run
 * --redis`) adds the input's items to the first queue and writes each outcome before acknowledging it.
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

type Spec = PipelineFileModule.PipelineFile.Spec
type Carry = PipelineFileModule.PipelineFile.Carry

/** What a job carries: the item and, on the outcomes queue, how it ended. */
interface JobData {
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

/** The queues of a pipeline: one per stage, then the outcomes'. */
const queueNames = (spec: Spec) => [...spec.stages.map((s) => `stage-${s.name}`), "outcomes"]
const prefixOf = (spec: Spec) => `sluice-pipeline-${spec.name}`
/** A BullMQ job id (no `:`, not a bare integer) for an item id. */
const jobId = (id: string) => `item-${encodeURIComponent(id)}`

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
    const runtime = yield* Effect.runtime<never>()
    const decide = PipelineFile.decide(options.sender)
    const workers = yield* Effect.forEach(spec.stages, (stage, k) => {
      const run = PipelineFile.stageRun(spec, k, options.sender)
      const next = queues[k]!
      const outcomes = queues[queues.length - 1]!
      const processor = (job: { readonly data: JobData }) =>
        Runtime.runPromise(runtime)(
          Effect.gen(function*() {
            const { carry, id } = job.data
            const exit = yield* Effect.exit(run(carry, id))
            if (Exit.isSuccess(exit)) {
              yield* Effect.promise(() => next.add("item", { id, carry: exit.value }, { jobId: jobId(id) }))
              return
            }
            const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
            // a failure no item gets past (stop), or a defect: the job fails and is retried later, by any worker
            if (failure === undefined || decide(failure) === "fail") return yield* Effect.failCause(exit.cause)
            const described = failure instanceof PipelineFile.MissingField
              ? { kind: "MissingField", message: failure.message }
              : options.sender.describe(failure as E)
            yield* Effect.promise(() =>
              outcomes.add("item", {
                id,
                carry,
                skipped: { stage: stage.name, kind: described.kind, message: described.message }
              }, { jobId: jobId(id) })
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
 * back the outcomes from the outcomes queue, each acknowledged once written.
 */
export const engine = (spec: Spec, redis: string): PipelineFileModule.PipelineFile.Engine => ({
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
      const first = yield* closing(() => new BullQueue(names[0]!, { connection, prefix, defaultJobOptions }))
      const window = spec.stages.reduce((n, s) => n + (s.queue ?? s.concurrency * 2) + s.concurrency, 0) * 4
      const permits = yield* Effect.makeSemaphore(window)
      const deliveries = yield* Queue.unbounded<PipelineFileModule.PipelineFile.Delivery | "end">()
      let added = 0
      let delivered = 0
      let inputEnded = false
      const finishIfDone = Effect.suspend(() =>
        inputEnded && delivered >= added ? Queue.offer(deliveries, "end") : Effect.void
      )
      const runtime = yield* Effect.runtime<never>()
      const pending = new Set<string>()
      yield* closing(() =>
        new Worker(names[names.length - 1]!, (job: { readonly data: JobData }) =>
          Runtime.runPromise(runtime)(Effect.gen(function*() {
            const { carry, id, skipped } = job.data
            const outcome: Pipeline.Outcome<Carry> = skipped === undefined
              ? { _tag: "Done", id, value: carry, resumed: false }
              : { _tag: "Skipped", ...skipped, id, attempts: 1, error: undefined, resumed: false }
            const written = yield* Effect.makeLatch(false)
            yield* Queue.offer(deliveries, { outcome, ack: written.open })
            yield* written.await
            if (pending.delete(id)) {
              delivered++
              yield* permits.release(1)
            }
            yield* finishIfDone
          })), { connection, prefix, concurrency: 1, lockDuration: LOCK_MS, stalledInterval: LOCK_MS / 2 })
      )
      yield* Effect.forkScoped(
        Stream.runForEach(items, (item) =>
          Effect.zipRight(
            permits.take(1),
            Effect.promise(() =>
              first.add("item", { id: item.id, carry: item.input }, { jobId: jobId(item.id) })
            ).pipe(Effect.tap(() =>
              Effect.sync(() => (added++, pending.add(item.id)))
            ))
          )).pipe(
            Effect.tap(() =>
              Effect.sync(() => (inputEnded = true))
            ),
            Effect.zipRight(finishIfDone),
            Effect.catchAll((error) => Queue.offer(deliveries, { error } as never))
          )
      )
      const outcomes = Stream.fromQueue(deliveries).pipe(
        Stream.takeWhile((d): d is PipelineFileModule.PipelineFile.Delivery => d !== "end"),
        Stream.mapEffect((d) =>
          "error" in d ? Effect.fail((d as unknown as { error: BulkRunner.BulkFileError }).error) : Effect.succeed(d)
        )
      )
      return { outcomes }
    })
})
