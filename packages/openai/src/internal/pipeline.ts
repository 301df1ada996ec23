/**
 * The pipeline's mechanism: one bounded queue and a fixed set of workers per stage, a source fiber that
 * reads the input (resumed items enter at the stage they reached), and the bookkeeping behind `stats`.
 *
 * Backpressure: every hand-over is a blocking `offer` on a bounded queue, so a full downstream queue stops
 * the upstream workers, which stops the source, which stops reading the input. At any moment the items the
 * pipeline holds are at most one in the source's hand, each queue's capacity, one per worker and the output
 * buffer: {@link boundOf}.
 *
 * Ending: the source, once the input is read, puts one `End` per worker into the first queue; the last worker
 * of a stage to meet its `End` puts one per worker into the next queue (or one into the output). Queues are
 * FIFO, so every item is ahead of the `End`s.
 */
import type { RateLimiter } from "@sluice/core"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Take from "effect/Take"
import * as OpenAiModule from "../OpenAi.js"
import * as OpenAiError from "../OpenAiError.js"
import type {
  Binding,
  CallTally,
  Charged,
  Checkpoint,
  Decision,
  Outcome,
  PipelineStoreError,
  Stage,
  StageStats,
  Stats,
  Store
} from "../Pipeline.js"
import { PipelineConfigError, PipelineInputError, StageFailed } from "../Pipeline.js"

// ---------------------------------------------------------------------------------------------------------------
// models (the public ones are defined in Pipeline.ts)
// ---------------------------------------------------------------------------------------------------------------

/** @internal */
export type AnyStage = Stage<any, any, any, any>

/** @internal */
export const errorMessage = (error: unknown): string => {
  const message = (error as { readonly message?: unknown } | null | undefined)?.message
  return typeof message === "string" ? message : ""
}

// ---------------------------------------------------------------------------------------------------------------
// validation
// ---------------------------------------------------------------------------------------------------------------

/** @internal */
export const validate = (
  name: string,
  stages: ReadonlyArray<AnyStage>,
  outputBuffer: number
): Effect.Effect<void, PipelineConfigError> =>
  Effect.gen(function*() {
    const fail = (path: string, message: string) =>
      Effect.fail(new PipelineConfigError({ pipeline: name, path, message }))
    if (stages.length === 0) return yield* fail("stages", "a pipeline needs at least one stage")
    const seen = new Set<string>()
    for (const [i, stage] of stages.entries()) {
      const at = `stages[${i}]`
      if (stage.name.length === 0) return yield* fail(`${at}.name`, "a stage needs a name")
      if (seen.has(stage.name)) return yield* fail(`${at}.name`, `two stages are named "${stage.name}"`)
      seen.add(stage.name)
      if (!Number.isInteger(stage.concurrency) || stage.concurrency < 1) {
        return yield* fail(`${at}.concurrency`, `must be a positive integer, got ${stage.concurrency}`)
      }
      if (!Number.isInteger(stage.queue) || stage.queue < 1) {
        return yield* fail(`${at}.queue`, `must be a positive integer, got ${stage.queue}`)
      }
      if (stage.retries !== undefined && (!Number.isInteger(stage.retries) || stage.retries < 0)) {
        return yield* fail(`${at}.retries`, `must be a non-negative integer, got ${stage.retries}`)
      }
    }
    if (!Number.isInteger(outputBuffer) || outputBuffer < 1) {
      return yield* fail("outputBuffer", `must be a positive integer, got ${outputBuffer}`)
    }
  })

/** @internal */
export const boundOf = (stages: ReadonlyArray<AnyStage>, outputBuffer: number): number =>
  1 + stages.reduce((n, s) => n + s.queue + s.concurrency, 0) + outputBuffer

// ---------------------------------------------------------------------------------------------------------------
// errors by kind
// ---------------------------------------------------------------------------------------------------------------

const skipKinds = new Set([
  "RequestTooLarge",
  "ContextLengthExceeded",
  "ContentPolicy",
  "BadRequest",
  "CostExceedsCapacity"
])
const failKinds = new Set([
  "QuotaExhausted",
  "Unauthorized",
  "PermissionDenied",
  "NotFound",
  "ScopeClosed",
  "LimiterStoreError"
])
const retryKinds = new Set([
  "RateLimited",
  "Overloaded",
  "ServerError",
  "Timeout",
  "ConnectionError",
  "Conflict",
  "UnknownError",
  "CircuitOpen",
  "DeadlineExceeded",
  "RetryDeadlineExceeded"
])

/** @internal */
export const kindOf = (error: unknown): string => {
  const tag = (error as { readonly _tag?: unknown } | null | undefined)?._tag
  return typeof tag === "string"
    ? tag
    : typeof error === "object" && error !== null
    ? error.constructor.name
    : typeof error
}

/** @internal */
export const defaultDecision = (error: unknown): Decision => {
  if (OpenAiError.isOpenAiError(error) && error._tag === "RateLimited" && error.window === "day") return "fail"
  const kind = kindOf(error)
  if (skipKinds.has(kind)) return "skip"
  if (failKinds.has(kind)) return "fail"
  if (retryKinds.has(kind)) return "retry"
  return "fail"
}

// ---------------------------------------------------------------------------------------------------------------
// per-stage bookkeeping
// ---------------------------------------------------------------------------------------------------------------

type WorkerState = "idle" | "busy" | "blocked"

/** What the calls' events tell ({@link onEvent}): a stage's in one process, or one job's (`tallyCalls`). */
class CallBook {
  calls = 0
  callRetries = 0
  rateLimited = 0
  admissionWaitMillis = 0
  readonly charged = new Map<string, Charged>()
  charge(scope: string, dimension: string, amount: number) {
    const key = `${scope}\u0000${dimension}`
    const prior = this.charged.get(key)
    this.charged.set(key, { scope, dimension, amount: (prior?.amount ?? 0) + amount })
  }
}

class StageBook extends CallBook {
  entered = 0
  done = 0
  skipped = 0
  retried = 0
  inFlight = 0
  maxQueued = 0
  readonly totals: Record<WorkerState, number> = { idle: 0, busy: 0, blocked: 0 }
  readonly workers: Array<{ state: WorkerState; since: number; ended: boolean }> = []
  constructor(readonly stage: AnyStage, readonly index: number) {
    super()
  }

  enter(worker: number, state: WorkerState, now: number) {
    const w = this.workers[worker]!
    this.totals[w.state] += now - w.since
    w.state = state
    w.since = now
  }
  end(worker: number, now: number) {
    this.enter(worker, "idle", now)
    this.workers[worker]!.ended = true
  }
  time(state: WorkerState, now: number) {
    let total = this.totals[state]
    for (const w of this.workers) if (!w.ended && w.state === state) total += now - w.since
    return total
  }
}

/** What `Pipeline.onEvent` reports into: the stage that made the call (or the job `tallyCalls` counts). */
const currentStage = FiberRef.unsafeMake<CallBook | undefined>(undefined)

/** @internal */
export const tallyCalls = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<[Exit.Exit<A, E>, CallTally], never, R> =>
  Effect.suspend(() => {
    const book = new CallBook()
    return Effect.map(Effect.exit(Effect.locally(effect, currentStage, book)), (exit): [Exit.Exit<A, E>, CallTally] => [
      exit,
      {
        calls: book.calls,
        callRetries: book.callRetries,
        rateLimited: book.rateLimited,
        admissionWaitMillis: book.admissionWaitMillis,
        charged: [...book.charged.values()]
      }
    ])
  })

/** @internal */
export const onEvent = (event: OpenAiModule.CallEvent): Effect.Effect<void> =>
  Effect.flatMap(FiberRef.get(currentStage), (book) =>
    Effect.sync(() => {
      if (book === undefined) return
      switch (event._tag) {
        case "Admitted": {
          book.calls++
          if (event.attempt > 1) book.callRetries++
          book.admissionWaitMillis += event.waitedMillis
          for (const scope of event.scopes) {
            for (const [dimension, amount] of Object.entries(event.cost)) {
              if (amount > 0) book.charge(scope, dimension, amount)
            }
          }
          return
        }
        case "Failed": {
          if (event.error._tag === "RateLimited") book.rateLimited++
          return
        }
        case "Succeeded": {
          // what the call used in the end instead of what it reserved (settled to its usage)
          return
        }
      }
    }))

// ---------------------------------------------------------------------------------------------------------------
// metrics
// ---------------------------------------------------------------------------------------------------------------

/** @internal */
export const metrics = {
  items: Metric.counter("sluice_pipeline_items_total", {
    description: "Items through a pipeline stage, tagged pipeline, stage and outcome (done, skipped, retried)",
    incremental: true
  }),
  queueDepth: Metric.gauge("sluice_pipeline_queue_depth", {
    description: "Items waiting in a stage's queue, tagged pipeline and stage"
  }),
  inFlight: Metric.gauge("sluice_pipeline_in_flight", {
    description: "Items a stage's workers are processing, tagged pipeline and stage"
  }),
  stageMillis: Metric.histogram(
    "sluice_pipeline_stage_ms",
    MetricBoundaries.exponential({ start: 1, factor: 2, count: 24 }),
    "Time one item spent in a stage's function, its retries included (ms), tagged pipeline and stage"
  )
}

// ---------------------------------------------------------------------------------------------------------------
// the stage's view of the OpenAi service: its lane and tenant on every call
// ---------------------------------------------------------------------------------------------------------------

/** @internal */
export const stageService = (
  base: OpenAiModule.OpenAi.Service,
  defaults: { readonly priority?: "interactive" | "background" | undefined; readonly tenant?: string | undefined }
): OpenAiModule.OpenAi.Service => {
  if (defaults.priority === undefined && defaults.tenant === undefined) return base
  const fixed: OpenAiModule.OpenAi.CallOptions = {
    ...(defaults.priority === undefined ? {} : { priority: defaults.priority }),
    ...(defaults.tenant === undefined ? {} : { tenant: defaults.tenant })
  }
  const o = (options: OpenAiModule.OpenAi.CallOptions | undefined): OpenAiModule.OpenAi.CallOptions => ({
    ...fixed,
    ...options
  })
  type S = OpenAiModule.OpenAi.Service
  return {
    ...base,
    chat: {
      ...base.chat,
      completions: {
        ...base.chat.completions,
        create:
          ((params, options) => base.chat.completions.create(params, o(options))) as S["chat"]["completions"]["create"],
        stream:
          ((params, options) => base.chat.completions.stream(params, o(options))) as S["chat"]["completions"]["stream"]
      }
    },
    responses: {
      ...base.responses,
      create: ((params, options) => base.responses.create(params, o(options))) as S["responses"]["create"]
    },
    embeddings: {
      ...base.embeddings,
      create: ((params, options) => base.embeddings.create(params, o(options))) as S["embeddings"]["create"]
    },
    images: {
      ...base.images,
      generate: ((params, options) => base.images.generate(params, o(options))) as S["images"]["generate"]
    },
    request: (url, body, options) => base.request(url, body, o(options))
  }
}

// ---------------------------------------------------------------------------------------------------------------
// running
// ---------------------------------------------------------------------------------------------------------------

type Entry = { readonly _tag: "Item"; readonly id: string; readonly value: unknown } | { readonly _tag: "End" }
const END: Entry = { _tag: "End" }

/** @internal */
export interface Running<Out, E> {
  readonly outcomes: Stream.Stream<Outcome<Out>, E>
  readonly stats: Effect.Effect<Stats>
}

/** @internal */
export interface StartOptions {
  readonly store?: Store | undefined
  readonly limiter?: Pick<RateLimiter.Service, "limitsOf"> | undefined
  readonly outputBuffer?: number | undefined
}

/** @internal */
export const start = <In, Out, E, R, EIn, RIn>(
  name: string,
  stages: ReadonlyArray<AnyStage>,
  items: Stream.Stream<{ readonly id: string; readonly input: In }, EIn, RIn>,
  options: StartOptions = {}
): Effect.Effect<
  Running<Out, E | EIn | StageFailed | PipelineInputError | PipelineStoreError>,
  PipelineConfigError,
  R | RIn | Scope.Scope
> =>
  Effect.gen(function*() {
    const last = stages.length - 1
    const outputBuffer = options.outputBuffer ?? stages[last]?.concurrency ?? 1
    yield* validate(name, stages, outputBuffer)
    const store = options.store
    const startedAt = yield* Clock.currentTimeMillis
    let endedAt: number | undefined
    const openai = yield* Effect.serviceOption(OpenAiModule.OpenAi)
    const queues = yield* Effect.forEach(stages, (stage) => Queue.bounded<Entry>(stage.queue))
    const output = yield* Queue.bounded<
      Take.Take<Outcome<Out>, E | EIn | StageFailed | PipelineInputError | PipelineStoreError>
    >(
      outputBuffer
    )
    const books = stages.map((stage, index) => new StageBook(stage, index))
    const counts = { entered: 0, resumed: 0, delivered: 0, maxHeld: 0 }
    const tag = <Type, In, Out>(metric: Metric.Metric<Type, In, Out>, stage: string) =>
      Metric.tagged(Metric.tagged(metric, "pipeline", name), "stage", stage)
    const depthGauges = stages.map((s) => tag(metrics.queueDepth, s.name))
    const flightGauges = stages.map((s) => tag(metrics.inFlight, s.name))
    const outcomeCounters = stages.map((s) => {
      const items = tag(metrics.items, s.name)
      return {
        retried: Metric.tagged(items, "outcome", "retried"),
        skipped: Metric.tagged(items, "outcome", "skipped"),
        done: Metric.tagged(items, "outcome", "done")
      }
    })
    const stageTimers = stages.map((s) => tag(metrics.stageMillis, s.name))
    const services = stages.map((stage) =>
      Option.map(openai, (base) => stageService(base, { priority: stage.lane, tenant: stage.tenant }))
    )
    const remaining = stages.map((s) => s.concurrency)
    const bound = boundOf(stages, outputBuffer)

    /** Items in the queue (`Queue.size` also counts the offers waiting for room, and takers as negative). */
    const sizeOf = (k: number) =>
      Effect.map(Queue.size(queues[k]!), (size) => Math.min(Math.max(size, 0), stages[k]!.queue))
    const depth = (k: number) =>
      Effect.flatMap(sizeOf(k), (size) => {
        const book = books[k]!
        if (size > book.maxQueued) book.maxQueued = size
        return Metric.set(depthGauges[k]!, size)
      })
    const emit = (outcome: Outcome<Out>) => Queue.offer(output, Take.of(outcome))
    const handTo = (k: number, id: string, value: unknown) =>
      Effect.gen(function*() {
        yield* Queue.offer(queues[k]!, { _tag: "Item", id, value })
        books[k]!.entered++
        yield* depth(k)
      })

    const put = (checkpoint: Checkpoint) => store === undefined ? Effect.void : store.put(checkpoint)

    // ------------------------------------------------------------------ the source
    const seen = new Set<string>()
    const inputError = (id: string, reason: PipelineInputError["reason"], message: string) =>
      new PipelineInputError({ pipeline: name, id, reason, message })
    const admit = (item: { readonly id: string; readonly input: In }) =>
      Effect.gen(function*() {
        const id = item.id
        if (typeof id !== "string" || id.length === 0) {
          return yield* inputError(String(id), "empty-id", `item ${counts.entered + 1} has no id`)
        }
        if (seen.has(id)) return yield* inputError(id, "duplicate-id", `the id "${id}" appears twice in the input`)
        seen.add(id)
        counts.entered++
        const held = counts.entered - counts.delivered
        if (held > counts.maxHeld) counts.maxHeld = held
        const checkpoint = store === undefined ? Option.none() : yield* store.get(id)
        if (Option.isNone(checkpoint)) return yield* handTo(0, id, item.input)
        const c = checkpoint.value
        counts.resumed++
        const at = stages.findIndex((s) => s.name === c.stage)
        if (at < 0) {
          return yield* inputError(
            id,
            "unknown-stage",
            `the checkpoint of "${id}" names the stage "${c.stage}", which this pipeline does not have (${
              stages.map((s) => s.name).join(", ")
            })`
          )
        }
        if (c._tag === "Skipped") {
          return yield* emit({
            _tag: "Skipped",
            id,
            stage: c.stage,
            kind: c.kind,
            message: c.message,
            attempts: c.attempts,
            error: undefined,
            resumed: true
          })
        }
        const decoded = yield* Schema.decodeUnknown(stages[at]!.output)(c.value).pipe(
          Effect.mapError((error) =>
            inputError(id, "undecodable-checkpoint", `the checkpoint of "${id}" at stage ${c.stage}: ${error.message}`)
          )
        )
        if (at === last) return yield* emit({ _tag: "Done", id, value: decoded as Out, resumed: true })
        return yield* handTo(at + 1, id, decoded)
      })
    const source = Effect.gen(function*() {
      yield* Stream.runForEach(items, admit)
      for (let i = 0; i < stages[0]!.concurrency; i++) yield* Queue.offer(queues[0]!, END)
    })

    // ------------------------------------------------------------------ one item through one stage
    const process = (k: number, id: string, input: unknown) =>
      Effect.gen(function*() {
        const stage = stages[k]!
        const book = books[k]!
        const retries = stage.retries ?? 2
        const delay = Duration.decode(stage.retryDelay ?? Duration.seconds(1))
        const service = services[k]!
        for (let attempt = 1;; attempt++) {
          const body = stage.run(input, { id, stage: stage.name, attempt }).pipe(
            Effect.locally(currentStage, book)
          )
          const run = Option.isSome(service) ? Effect.provideService(body, OpenAiModule.OpenAi, service.value) : body
          // the call and its checkpoint are one step: an interruption lands before the call ends or after the
          // checkpoint is written, never between: a resume never loses a completed stage's result nor runs that
          // stage again (a call interrupted while in flight may have reached the server and is made again)
          const result: Either.Either<unknown, unknown> = yield* Effect.uninterruptibleMask((restore) =>
            Effect.flatMap(Effect.either(restore(run)), (either) =>
              Either.isLeft(either) || store === undefined
                ? Effect.succeed(either)
                : Schema.encode(stage.output)(either.right).pipe(
                  Effect.mapError((error) =>
                    new StageFailed({
                      pipeline: name,
                      stage: stage.name,
                      id,
                      kind: "OutputSchema",
                      attempts: attempt,
                      error: new Error(
                        `the stage's output does not encode with its \`output\` schema: ${error.message}`
                      )
                    })
                  ),
                  Effect.flatMap((value) => put({ _tag: "Reached", id, stage: stage.name, value })),
                  Effect.as(either)
                ))
          )
          if (Either.isRight(result)) return Either.right(result.right)
          const error = result.left
          const decision = stage.onError?.(error) ?? defaultDecision(error)
          if (decision === "fail") {
            return yield* new StageFailed({
              pipeline: name,
              stage: stage.name,
              id,
              kind: kindOf(error),
              attempts: attempt,
              error
            })
          }
          if (decision === "retry" && attempt <= retries) {
            book.retried++
            yield* Metric.increment(outcomeCounters[k]!.retried)
            yield* Effect.sleep(Duration.times(delay, 2 ** (attempt - 1)))
            continue
          }
          const message = errorMessage(error)
          const kind = kindOf(error)
          yield* put({ _tag: "Skipped", id, stage: stage.name, kind, message, attempts: attempt })
          return Either.left<Outcome<Out>>({
            _tag: "Skipped",
            id,
            stage: stage.name,
            kind,
            message,
            attempts: attempt,
            error,
            resumed: false
          })
        }
      })

    // ------------------------------------------------------------------ the workers
    const worker = (k: number, w: number) =>
      Effect.gen(function*() {
        const book = books[k]!
        const queue = queues[k]!
        book.workers[w] = { state: "idle", since: yield* Clock.currentTimeMillis, ended: false }
        while (true) {
          const entry = yield* Queue.take(queue)
          yield* depth(k)
          if (entry._tag === "End") break
          const began = yield* Clock.currentTimeMillis
          book.enter(w, "busy", began)
          book.inFlight++
          yield* Metric.set(flightGauges[k]!, book.inFlight)
          const result = yield* process(k, entry.id, entry.value)
          const finished = yield* Clock.currentTimeMillis
          book.inFlight--
          yield* Metric.set(flightGauges[k]!, book.inFlight)
          yield* Metric.update(stageTimers[k]!, finished - began)
          book.enter(w, "blocked", finished)
          if (Either.isLeft(result)) {
            book.skipped++
            yield* Metric.increment(outcomeCounters[k]!.skipped)
            yield* emit(result.left)
          } else {
            book.done++
            yield* Metric.increment(outcomeCounters[k]!.done)
            if (k === last) yield* emit({ _tag: "Done", id: entry.id, value: result.right as Out, resumed: false })
            else yield* handTo(k + 1, entry.id, result.right)
          }
          book.enter(w, "idle", yield* Clock.currentTimeMillis)
        }
        book.end(w, yield* Clock.currentTimeMillis)
        if (--remaining[k]! === 0) {
          if (k === last) {
            endedAt = yield* Clock.currentTimeMillis
            yield* Queue.offer(output, Take.end)
          } else {
            for (let i = 0; i < stages[k + 1]!.concurrency; i++) yield* Queue.offer(queues[k + 1]!, END)
          }
        }
      })

    const all = Effect.all(
      [source, ...stages.flatMap((stage, k) => Array.from({ length: stage.concurrency }, (_, w) => worker(k, w)))],
      { concurrency: "unbounded", discard: true }
    ).pipe(
      Effect.catchAllCause((cause) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          endedAt ??= now
          return Queue.offer(output, Take.failCause(cause))
        })
      )
    )
    yield* Effect.forkScoped(all as Effect.Effect<void, never, R | RIn>)

    // ------------------------------------------------------------------ stats
    const stats = Effect.gen(function*() {
      const now = endedAt ?? (yield* Clock.currentTimeMillis)
      const elapsedMillis = now - startedAt
      const sizes = yield* Effect.forEach(stages, (_, k) => sizeOf(k))
      const stageStats = books.map((book, k): StageStats => ({
        name: book.stage.name,
        concurrency: book.stage.concurrency,
        capacity: book.stage.queue,
        queued: sizes[k]!,
        maxQueued: book.maxQueued,
        inFlight: book.inFlight,
        entered: book.entered,
        done: book.done,
        skipped: book.skipped,
        retried: book.retried,
        calls: book.calls,
        callRetries: book.callRetries,
        rateLimited: book.rateLimited,
        admissionWaitMillis: book.admissionWaitMillis,
        busyMillis: book.time("busy", now),
        idleMillis: book.time("idle", now),
        blockedMillis: book.time("blocked", now),
        charged: [...book.charged.values()]
      }))
      return {
        pipeline: name,
        elapsedMillis,
        entered: counts.entered,
        resumed: counts.resumed,
        delivered: counts.delivered,
        held: counts.entered - counts.delivered,
        maxHeld: counts.maxHeld,
        bound,
        stages: stageStats,
        binding: bindingOf(
          stageStats,
          elapsedMillis,
          options.limiter === undefined ? Option.map(openai, (o) => o.limiter) : Option.some(options.limiter)
        ),
        callEvents: books.some((b) => b.calls > 0)
      } satisfies Stats
    })

    const outcomes = Stream.fromQueue(output).pipe(
      Stream.mapChunks((chunk) => {
        counts.delivered += chunk.length
        return chunk
      }),
      Stream.flattenTake
    )
    return { outcomes, stats }
  })

/** @internal */
export const bindingOf = (
  stages: ReadonlyArray<Pick<StageStats, "name" | "charged">>,
  elapsedMillis: number,
  limiterOption: Option.Option<Pick<RateLimiter.Service, "limitsOf">>
): Option.Option<Binding> => {
  if (Option.isNone(limiterOption) || elapsedMillis <= 0) return Option.none()
  const limiter = limiterOption.value
  const totals = new Map<string, { scope: string; dimension: string; amount: number; byStage: Map<string, number> }>()
  for (const stage of stages) {
    for (const c of stage.charged) {
      const key = `${c.scope}\u0000${c.dimension}`
      const total = totals.get(key) ?? { scope: c.scope, dimension: c.dimension, amount: 0, byStage: new Map() }
      total.amount += c.amount
      total.byStage.set(stage.name, (total.byStage.get(stage.name) ?? 0) + c.amount)
      totals.set(key, total)
    }
  }
  let best: Binding | undefined
  for (const total of totals.values()) {
    for (const limit of limiter.limitsOf(total.scope)) {
      if (limit.dimension !== total.dimension) continue
      const windowMillis = Duration.toMillis(limit.window)
      const allowed = (limit.burst ?? limit.amount) + limit.amount * elapsedMillis / windowMillis
      const utilization = total.amount / allowed
      if (best === undefined || utilization > best.utilization) {
        const stage = [...total.byStage.entries()].reduce((a, b) => (b[1] > a[1] ? b : a))[0]
        best = { stage, scope: total.scope, dimension: total.dimension, windowMillis, utilization }
      }
    }
  }
  return Option.fromNullable(best)
}

// ---------------------------------------------------------------------------------------------------------------
// the summary
// ---------------------------------------------------------------------------------------------------------------

const windowName = (millis: number) =>
  millis === 1_000 ? "s" : millis === 60_000 ? "min" : millis === 3_600_000 ? "h" : millis === 86_400_000 ?
    "day" :
    Duration.format(Duration.millis(millis))

/** `org:acme/project:x/pool:gpt-image-1` → `gpt-image-1`; other scopes as they are. */
const scopeName = (scope: string) => {
  const at = scope.lastIndexOf("pool:")
  return at >= 0 ? scope.slice(at + 5) : scope
}

const percent = (part: number, whole: number) => (whole <= 0 ? 0 : Math.round((100 * part) / whole))

/** @internal */
export const bindingText = (binding: Binding) =>
  `${binding.dimension}/${windowName(binding.windowMillis)} ${scopeName(binding.scope)} in stage ${binding.stage}`

/** @internal */
export const summary = (stats: Stats): string => {
  const done = stats.stages.length === 0 ? 0 : stats.stages[stats.stages.length - 1]!.done
  const skipped = stats.stages.reduce((n, s) => n + s.skipped, 0)
  const lines = [
    `pipeline ${stats.pipeline}: ${stats.entered} items${
      stats.resumed > 0 ? ` (${stats.resumed} resumed from their checkpoints)` : ""
    }, ${done} through the last stage in this run, ${skipped} skipped in ${
      Duration.format(Duration.millis(Math.round(stats.elapsedMillis)))
    }; items held at most ${stats.maxHeld} (bound ${stats.bound})`
  ]
  const clauses: Array<string> = []
  if (Option.isSome(stats.binding)) {
    const b = stats.binding.value
    clauses.push(`binding: ${bindingText(b)} (${percent(b.utilization, 1)}% used)`)
  } else if (!stats.callEvents) {
    clauses.push(
      "binding: unknown (give the OpenAi service `onEvent: Pipeline.onEvent` to see budgets, waits and 429s)"
    )
  } else {
    clauses.push("binding: none of the charged budgets is known to the limiter")
  }
  // across processes the workers' idle time is not known: no "waiting on" clauses
  if (stats.distributed !== true) {
    stats.stages.forEach((stage, k) => {
      const workerTime = stage.busyMillis + stage.idleMillis + stage.blockedMillis
      const blocked = percent(stage.blockedMillis, workerTime)
      const idle = percent(stage.idleMillis, workerTime)
      const next = stats.stages[k + 1]
      const previous = stats.stages[k - 1]
      if (next !== undefined && blocked >= 10) {
        clauses.push(`${stage.name} stage idle ${blocked}% waiting on ${next.name}`)
      } else if (previous !== undefined && idle >= 10) {
        clauses.push(`${stage.name} stage idle ${idle}% waiting for ${previous.name}`)
      }
    })
  }
  lines.push(clauses.join("; "))
  for (const stage of stats.stages) {
    const waits = `admission waits ${Duration.format(Duration.millis(Math.round(stage.admissionWaitMillis)))} in all`
    if (stats.distributed === true) {
      lines.push(
        `  ${stage.name}: ${stage.done} done, ${stage.skipped} skipped, ${stage.retried} put back; ${stage.calls} calls, ${stage.callRetries} retried, ${stage.rateLimited} × 429; queue ${stage.queued} (max ${stage.maxQueued} seen), ${stage.inFlight}/${stage.concurrency} in flight (the workers' slots); jobs busy ${
          Duration.format(Duration.millis(Math.round(stage.busyMillis)))
        } in all (idle time not known across processes); ${waits}`
      )
      continue
    }
    const workerTime = stage.busyMillis + stage.idleMillis + stage.blockedMillis
    lines.push(
      `  ${stage.name}: ${stage.done} done, ${stage.skipped} skipped, ${stage.retried} rerun; ${stage.calls} calls, ${stage.callRetries} retried, ${stage.rateLimited} × 429; queue ${stage.queued}/${stage.capacity} (max ${stage.maxQueued}), ${stage.inFlight}/${stage.concurrency} in flight; busy ${
        percent(stage.busyMillis, workerTime)
      }%, waiting for input ${percent(stage.idleMillis, workerTime)}%, on the next stage ${
        percent(stage.blockedMillis, workerTime)
      }%; ${waits}`
    )
  }
  return lines.join("\n")
}
