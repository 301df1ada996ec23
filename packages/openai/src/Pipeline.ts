/**
 * Stage pipelines in one process: each item flows through every stage (prompt enrichment → image
 * rendering → captions, say), each stage with its own calls through {@link OpenAi}, its own lane and
 * budget scope, its own concurrency and its own bounded queue.
 *
 * - **Backpressure**: a stage hands its result to the next stage's queue and waits while that queue is
 *   full, so a slow stage slows the ones before it (down to the reading of the input) instead of piling
 *   items up: the items held at any moment are at most {@link bound} (one in the source's hand, each queue's
 *   capacity, one per worker, the output buffer).
 * - **Failures by kind**: per item and stage, an error is retried (the stage runs again for that item,
 *   after the `OpenAi` service's own retries are spent), skips the item (its outcome says where and why) or
 *   fails the whole run — {@link defaultDecision}, or a stage's `onError`.
 * - **Visibility**: {@link Stats} per stage (queue depth, in flight, worker time busy, waiting for input and
 *   waiting on the next stage, admission waits, calls, retries, 429s, what was charged on which scope) and
 *   the binding budget; {@link summary} says it in words ("binding: images/min gpt-image-1 in stage render;
 *   prompt stage idle 61% waiting on render"); Effect metrics `sluice_pipeline_*`. The calls' own figures
 *   reach the pipeline through the `OpenAi` service's `onEvent` option: give it {@link onEvent}.
 * - **Resume**: with a {@link Store}, every item's progress is written as a {@link Checkpoint} the moment a
 *   stage completes for it (the stage's output encoded with its `output` schema); a run over the same
 *   input with the same store starts each item at the stage after the one it reached. A stage's result and
 *   its checkpoint are one step, so an interrupted run neither loses a result nor makes a call twice.
 *
 * Everything runs on the `Clock` (the retry pauses, the stats' times), so a pipeline runs in virtual time
 * under `TestClock` like every other part of Sluice.
 *
 * @since 0.2.0
 */
import type { RateLimiter } from "@sluice/core"
import { Budget } from "@sluice/core"
import * as Chunk from "effect/Chunk"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import { dual } from "effect/Function"
import * as Option from "effect/Option"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as internal from "./internal/pipeline.js"
import type * as OpenAi from "./OpenAi.js"

// ---------------------------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------------------------

/**
 * What to do with an item whose stage failed: run the stage again for it (up to the stage's `retries`,
 * after which the item is skipped), skip the item (it ends as a `Skipped` outcome), or fail the run.
 *
 * @since 0.2.0
 * @category models
 */
export type Decision = "retry" | "skip" | "fail"

/**
 * Who the stage is running for: the item's id, the stage's name and the attempt (above 1 on the pipeline's
 * own retries).
 *
 * @since 0.2.0
 * @category models
 */
export interface ItemInfo {
  readonly id: string
  readonly stage: string
  /** 1 on the first run of the stage for this item; above 1 on the pipeline's own retries. */
  readonly attempt: number
}

/**
 * One stage, as data and a function.
 *
 * @since 0.2.0
 * @category models
 */
export interface Stage<In, Out, E = never, R = never> {
  /** Unique within the pipeline: it names the stage in stats, metrics, checkpoints and outcomes. */
  readonly name: string
  /** How many items the stage works on at once (its workers). */
  readonly concurrency: number
  /** The capacity of the stage's input queue: how many items may wait for it. */
  readonly queue: number
  /** The lane of the stage's calls through `OpenAi` (a call's own `priority` wins). */
  readonly lane?: RateLimiter.Lane | undefined
  /**
   * A tenant scope (`tenant:<tenant>`) the stage's calls are charged against besides the service's scopes
   * (a call's own `tenant` wins). Default: `<pipeline>/<stage>` when the stage has a `budget`, none otherwise.
   */
  readonly tenant?: string | undefined
  /** The stage's own limits, on its tenant scope: {@link budgets} lists them for the limiter. */
  readonly budget?: ReadonlyArray<Budget.Limit> | undefined
  /** How the stage's output is written to a checkpoint and read back on resume. */
  readonly output: Schema.Schema<Out, any>
  /**
   * The work for one item. An `OpenAi` service taken from context inside it charges the stage's lane
   * and tenant on every call.
   */
  readonly run: (input: In, item: ItemInfo) => Effect.Effect<Out, E, R>
  /** The decision for an error; default {@link defaultDecision}. */
  readonly onError?: ((error: E) => Decision) | undefined
  /** How many times the stage runs again for an item on a `retry` decision (default 2). */
  readonly retries?: number | undefined
  /** The pause before the first rerun, doubled for each later one (default 1 second). */
  readonly retryDelay?: Duration.DurationInput | undefined
}

/**
 * One input item: its id (unique in the input; outcomes and checkpoints are keyed by it) and its input
 * for the first stage.
 *
 * @since 0.2.0
 * @category models
 */
export interface Item<In> {
  readonly id: string
  readonly input: In
}

/**
 * What became of an item: `Done` with the last stage's output, or `Skipped` in a stage (its error's kind
 * and message, and the error itself unless it was skipped in an earlier run). `resumed`: known from the
 * store, not worked on in this run.
 *
 * @since 0.2.0
 * @category models
 */
export type Outcome<Out> =
  | { readonly _tag: "Done"; readonly id: string; readonly value: Out; readonly resumed: boolean }
  | {
    readonly _tag: "Skipped"
    readonly id: string
    readonly stage: string
    readonly kind: string
    readonly message: string
    readonly attempts: number
    /** The error itself (`undefined` for an item skipped in an earlier run, known from its checkpoint). */
    readonly error: unknown
    readonly resumed: boolean
  }

/**
 * What was charged on one scope and dimension by a stage's calls (at admission, every attempt).
 *
 * @since 0.2.0
 * @category models
 */
export interface Charged {
  readonly scope: string
  readonly dimension: string
  readonly amount: number
}

/**
 * What the calls of one piece of work told through their events ({@link onEvent}): the calls admitted,
 * those that were retries, the 429s, the admission waits and what was charged on which scope
 * ({@link tallyCalls}).
 *
 * @since 0.2.0
 * @category models
 */
export interface CallTally {
  readonly calls: number
  readonly callRetries: number
  readonly rateLimited: number
  readonly admissionWaitMillis: number
  readonly charged: ReadonlyArray<Charged>
}

/**
 * One stage's figures. Worker time is split three ways: `busyMillis` (working on an item, its calls'
 * admission waits and the pipeline's retry pauses included), `idleMillis` (waiting for an item) and
 * `blockedMillis` (holding a finished item while the next stage's queue is full). `calls`, `callRetries`,
 * `rateLimited` (429s), `admissionWaitMillis` and `charged` come from the calls' events ({@link onEvent}).
 *
 * @since 0.2.0
 * @category models
 */
export interface StageStats {
  readonly name: string
  readonly concurrency: number
  readonly capacity: number
  readonly queued: number
  readonly maxQueued: number
  readonly inFlight: number
  readonly entered: number
  readonly done: number
  readonly skipped: number
  readonly retried: number
  readonly calls: number
  readonly callRetries: number
  readonly rateLimited: number
  readonly admissionWaitMillis: number
  readonly busyMillis: number
  readonly idleMillis: number
  readonly blockedMillis: number
  readonly charged: ReadonlyArray<Charged>
}

/**
 * The budget that held the run back: of every limit the stages' calls were charged against, the one they
 * used the largest share of (what it allowed over the run: a full bucket at the start plus its refill), and
 * the stage that charged most of it.
 *
 * @since 0.2.0
 * @category models
 */
export interface Binding {
  readonly stage: string
  readonly scope: string
  readonly dimension: string
  readonly windowMillis: number
  /** The share of what the limit allowed over the run (a full bucket at the start plus its refill) that was used. */
  readonly utilization: number
}

/**
 * A run's figures: per stage, the items held now and at most, and {@link bound}.
 *
 * @since 0.2.0
 * @category models
 */
export interface Stats {
  readonly pipeline: string
  readonly elapsedMillis: number
  readonly entered: number
  /** Items whose checkpoint was in the store: done or skipped before, or entering at a later stage. */
  readonly resumed: number
  readonly delivered: number
  readonly held: number
  readonly maxHeld: number
  readonly bound: number
  readonly stages: ReadonlyArray<StageStats>
  readonly binding: Option.Option<Binding>
  /** Whether the OpenAi calls' events reached the pipeline (`onEvent: Pipeline.onEvent`). */
  readonly callEvents: boolean
  /**
   * The stages ran in worker processes elsewhere (a distributed queue; since 0.2.0), so some figures mean less
   * or are not known: `busyMillis` is the stage's jobs' time summed over every worker, `idleMillis` and
   * `blockedMillis` are not known (0); `queued` and `inFlight` are the stage queue's job counts (every run of
   * the pipeline on it), `maxQueued` the most `queued` seen when the stats were read, `concurrency` the slots
   * of the workers listening now; `retried` counts jobs put back to be tried again later; `capacity` and
   * `bound` are the run's window (the items it lets into the queues at once).
   */
  readonly distributed?: boolean | undefined
}

/**
 * A pipeline: its name and its stages, from the input type `In` to the last stage's output `Out`.
 *
 * @since 0.2.0
 * @category models
 */
export interface Pipeline<in In, out Out, out E = never, out R = never> extends Pipeable {
  readonly name: string
  readonly stages: ReadonlyArray<Stage<any, any, any, any>>
  /** @internal */
  readonly _types?: { readonly in: (_: In) => void; readonly out: Out; readonly e: E; readonly r: R }
}

/**
 * What {@link run} returns: every item's outcome by id, the final stats and their summary.
 *
 * @since 0.2.0
 * @category models
 */
export interface Result<Out> {
  readonly outcomes: ReadonlyMap<string, Outcome<Out>>
  readonly stats: Stats
  readonly summary: string
}

/**
 * A started run ({@link start}): its outcomes as they come (pull them: the last stage waits while the
 * output buffer is full) and its stats at any moment.
 *
 * @since 0.2.0
 * @category models
 */
export interface Running<Out, E> {
  readonly outcomes: Stream.Stream<Outcome<Out>, E>
  readonly stats: Effect.Effect<Stats>
}

/**
 * @since 0.2.0
 * @category models
 */
export declare namespace Pipeline {
  /**
   * @since 0.2.0
   * @category models
   */
  export interface RunOptions {
    /** Where progress is written and read back (resume); default none. */
    readonly store?: Store | undefined
    /**
     * The limiter whose limits the binding budget is judged against, when the stages' calls do not go through
     * an `OpenAi` service in context (whose limiter is the default). Since 0.2.0.
     */
    readonly limiter?: Pick<RateLimiter.Service, "limitsOf"> | undefined
    /** Outcomes finished but not yet pulled (default: the last stage's concurrency). */
    readonly outputBuffer?: number | undefined
    /** Reports the stats every `every` while the run goes on ({@link progressLine} says them in one line). */
    readonly progress?: {
      readonly every: Duration.DurationInput
      readonly report: (stats: Stats) => Effect.Effect<void>
    } | undefined
  }
}

// ---------------------------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------------------------

/**
 * An item's error decided `fail`: the run stops (items in flight are interrupted; what completed is in the
 * store). `kind` is the error's `_tag`, `error` the error itself.
 *
 * @since 0.2.0
 * @category errors
 */
export class StageFailed extends Schema.TaggedError<StageFailed>("@sluice/openai/Pipeline/StageFailed")(
  "StageFailed",
  {
    pipeline: Schema.String,
    stage: Schema.String,
    id: Schema.String,
    kind: Schema.String,
    attempts: Schema.Number,
    error: Schema.Unknown
  }
) {
  override get message(): string {
    const cause = internal.errorMessage(this.error)
    return `pipeline ${this.pipeline}: item ${this.id} failed the run in stage ${this.stage} after ${this.attempts} attempt(s): ${this.kind}${
      cause === "" ? "" : ` (${cause})`
    }`
  }
}

/**
 * A bad input item (`empty-id`, `duplicate-id`) or checkpoint (`unknown-stage`: the store names a stage this
 * pipeline does not have; `undecodable-checkpoint`: a value the stage's `output` schema rejects). It fails
 * the run; the message names the item.
 *
 * @since 0.2.0
 * @category errors
 */
export class PipelineInputError
  extends Schema.TaggedError<PipelineInputError>("@sluice/openai/Pipeline/PipelineInputError")("PipelineInputError", {
    pipeline: Schema.String,
    id: Schema.String,
    reason: Schema.Literal("duplicate-id", "empty-id", "unknown-stage", "undecodable-checkpoint"),
    message: Schema.String
  })
{}

/**
 * A store could not read or write a checkpoint; the run fails (what it wrote stays written).
 *
 * @since 0.2.0
 * @category errors
 */
export class PipelineStoreError
  extends Schema.TaggedError<PipelineStoreError>("@sluice/openai/Pipeline/PipelineStoreError")("PipelineStoreError", {
    operation: Schema.Literal("get", "put"),
    id: Schema.String,
    message: Schema.String
  })
{}

/**
 * A pipeline that cannot run (no stages, two stages with one name, a concurrency, queue or retries that is
 * not a positive integer); `path` says where (`stages[1].queue`).
 *
 * @since 0.2.0
 * @category errors
 */
export class PipelineConfigError
  extends Schema.TaggedError<PipelineConfigError>("@sluice/openai/Pipeline/PipelineConfigError")(
    "PipelineConfigError",
    { pipeline: Schema.String, path: Schema.String, message: Schema.String }
  )
{}

// ---------------------------------------------------------------------------------------------------------------
// checkpoints
// ---------------------------------------------------------------------------------------------------------------

/**
 * An item's progress, as a store keeps it: `Reached` (the last stage it completed and that stage's output,
 * encoded with the stage's `output` schema) or `Skipped` (where and why). JSON-safe when the stages' output
 * schemas encode to JSON.
 *
 * @since 0.2.0
 * @category checkpoints
 */
export const Checkpoint = Schema.Union(
  Schema.TaggedStruct("Reached", {
    id: Schema.String,
    /** The last stage the item completed. */
    stage: Schema.String,
    /** That stage's output, encoded with the stage's `output` schema. */
    value: Schema.Unknown
  }),
  Schema.TaggedStruct("Skipped", {
    id: Schema.String,
    stage: Schema.String,
    kind: Schema.String,
    message: Schema.String,
    attempts: Schema.Number
  })
)

/**
 * @since 0.2.0
 * @category checkpoints
 */
export type Checkpoint = typeof Checkpoint.Type

/**
 * Where a run writes its checkpoints (`put`, once per item and stage completed or skipped) and a resumed
 * run reads them (`get`, once per input item). A file, a table, a Redis hash: anything that returns what
 * was put.
 *
 * @since 0.2.0
 * @category checkpoints
 */
export interface Store {
  readonly get: (id: string) => Effect.Effect<Option.Option<Checkpoint>, PipelineStoreError>
  readonly put: (checkpoint: Checkpoint) => Effect.Effect<void, PipelineStoreError>
}

/**
 * A store in memory (for tests, and for a run resumed in the same process); `checkpoints` lists what it
 * holds.
 *
 * @since 0.2.0
 * @category checkpoints
 * @example
 * ```ts
 * import { Pipeline } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 *
 * Effect.gen(function*() {
 *   const store = yield* Pipeline.memoryStore
 *   yield* store.put({ _tag: "Reached", id: "brief-1", stage: "prompt", value: "a red bicycle at dawn" })
 *   const held = yield* store.checkpoints // [{ _tag: "Reached", id: "brief-1", ... }]
 * })
 * ```
 */
export const memoryStore: Effect.Effect<Store & { readonly checkpoints: Effect.Effect<ReadonlyArray<Checkpoint>> }> =
  Effect.sync(() => {
    const held = new Map<string, Checkpoint>()
    return {
      get: (id: string) => Effect.sync(() => Option.fromNullable(held.get(id))),
      put: (checkpoint: Checkpoint) => Effect.sync(() => void held.set(checkpoint.id, checkpoint)),
      checkpoints: Effect.sync(() => [...held.values()])
    }
  })

// ---------------------------------------------------------------------------------------------------------------
// constructors
// ---------------------------------------------------------------------------------------------------------------

const Proto = {
  pipe() {
    // eslint-disable-next-line prefer-rest-params
    return pipeArguments(this, arguments)
  }
}

const makePipeline = (name: string, stages: ReadonlyArray<Stage<any, any, any, any>>): Pipeline<any, any, any, any> =>
  Object.assign(Object.create(Proto), { name, stages })

/**
 * A pipeline with no stages yet, for items of type `In`; add stages with {@link stage}.
 *
 * @since 0.2.0
 * @category constructors
 * @example
 * ```ts
 * import { OpenAi, Pipeline } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as Schema from "effect/Schema"
 *
 * interface Brief { readonly product: string }
 *
 * const campaign = Pipeline.make<Brief>("campaign").pipe(
 *   Pipeline.stage({
 *     name: "prompt",
 *     concurrency: 4,
 *     queue: 8,
 *     output: Schema.String,
 *     run: (brief: Brief) =>
 *       Effect.gen(function*() {
 *         const openai = yield* OpenAi.OpenAi
 *         const answer = yield* openai.chat.completions.create({
 *           model: "gpt-4o-mini",
 *           messages: [{ role: "user", content: `An image prompt for ${brief.product}` }],
 *           max_tokens: 200
 *         })
 *         return answer.choices[0]?.message.content ?? ""
 *       })
 *   }),
 *   Pipeline.stage({
 *     name: "render",
 *     concurrency: 2,
 *     queue: 4,
 *     lane: "background",
 *     output: Schema.String,
 *     run: (prompt: string) =>
 *       Effect.flatMap(OpenAi.OpenAi, (openai) => openai.images.generate({ model: "gpt-image-1", prompt })).pipe(
 *         Effect.map((image) => image.data?.[0]?.b64_json ?? "")
 *       )
 *   })
 * )
 * ```
 */
export const make = <In>(name: string): Pipeline<In, In> => makePipeline(name, []) as Pipeline<In, In>

/**
 * Adds a stage at the end: its input is the output of the stage before it (the item's input for the
 * first).
 *
 * @since 0.2.0
 * @category constructors
 * @example
 * ```ts
 * import { Pipeline } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as Schema from "effect/Schema"
 *
 * const lengths = Pipeline.make<string>("lengths").pipe(
 *   Pipeline.stage({ name: "measure", concurrency: 2, queue: 4, output: Schema.Number, run: (s: string) => Effect.succeed(s.length) })
 * )
 * ```
 */
export const stage: {
  <Mid, Out, E2, R2>(
    stage: Stage<Mid, Out, E2, R2>
  ): <In, E, R>(self: Pipeline<In, Mid, E, R>) => Pipeline<In, Out, E | E2, R | R2>
  <In, Mid, E, R, Out, E2, R2>(
    self: Pipeline<In, Mid, E, R>,
    stage: Stage<Mid, Out, E2, R2>
  ): Pipeline<In, Out, E | E2, R | R2>
} = dual(2, (self: Pipeline<any, any, any, any>, added: Stage<any, any, any, any>) =>
  makePipeline(self.name, [
    ...self.stages,
    added.tenant === undefined && added.budget !== undefined
      ? { ...added, tenant: `${self.name}/${added.name}` }
      : added
  ]))

// ---------------------------------------------------------------------------------------------------------------
// budgets, errors, events
// ---------------------------------------------------------------------------------------------------------------

/**
 * The budgets of the stages that declare one, on their tenant scopes (`tenant:<tenant>`): add them to the
 * `OpenAi` service's (or the limiter's) budgets.
 *
 * @since 0.2.0
 * @category budgets
 * @example
 * ```ts
 * import { Budget } from "@sluice/core"
 * import { Pipeline } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as Schema from "effect/Schema"
 *
 * const p = Pipeline.make<string>("p").pipe(Pipeline.stage({
 *   name: "embed", concurrency: 2, queue: 4, output: Schema.Number,
 *   budget: [Budget.Limit.perMinute("tokens", 50_000)],
 *   run: (s: string) => Effect.succeed(s.length)
 * }))
 * Pipeline.budgets(p) // [Budget { scope: "tenant:p/embed", limits: [50,000 tokens / 1 minute] }]
 * ```
 */
export const budgets = (pipeline: Pipeline<any, any, any, any>): ReadonlyArray<Budget.Budget> =>
  pipeline.stages.flatMap((s) =>
    s.budget === undefined || s.tenant === undefined ? [] : [Budget.make(`tenant:${s.tenant}`, s.budget)]
  )

/**
 * The decision by the error's kind: the caller's own mistakes on one item (`BadRequest`,
 * `ContextLengthExceeded`, `ContentPolicy`, `RequestTooLarge`, `CostExceedsCapacity`) skip the item;
 * what no item can get past (`QuotaExhausted`, `Unauthorized`, `PermissionDenied`, `NotFound`, a daily
 * limit, a closed scope, a store failure) fails the run; passing trouble (rate limits, overloads, server
 * errors, timeouts, connection errors, conflicts, an open breaker, a deadline) is retried. Any other error
 * (a stage's own) fails the run.
 *
 * @since 0.2.0
 * @category errors
 * @example
 * ```ts
 * import { OpenAiError, Pipeline } from "@sluice/openai"
 *
 * Pipeline.defaultDecision(new OpenAiError.ContentPolicy({ message: "flagged", retryable: false })) // "skip"
 * ```
 */
export const defaultDecision: (error: unknown) => Decision = internal.defaultDecision

/**
 * Give it to the `OpenAi` service (`onEvent: Pipeline.onEvent`) so each stage's calls report into the stage's
 * stats: admissions and their waits, what they charged, retries and 429s. A call made outside a pipeline
 * reports nothing. To keep an `onEvent` of your own, call both.
 *
 * @since 0.2.0
 * @category events
 * @example
 * ```ts
 * import { LimiterStore } from "@sluice/core"
 * import { OpenAi, Pipeline } from "@sluice/openai"
 * import * as Layer from "effect/Layer"
 * import OpenAI from "openai"
 *
 * declare const client: OpenAI
 * const openai = OpenAi.layerClient(client, { onEvent: Pipeline.onEvent }).pipe(Layer.provide(LimiterStore.layerMemory))
 * ```
 */
export const onEvent: (event: OpenAi.CallEvent) => Effect.Effect<void> = internal.onEvent

/**
 * Runs `effect` and counts what its calls' events tell ({@link onEvent} given to the `OpenAi` service, as
 * for a stage): for work done outside {@link start}, such as a worker process running one stage's job of a
 * distributed pipeline. Returns how the effect ended and the tally (its calls count, failed or not).
 *
 * @since 0.2.0
 * @category stats
 * @example
 * ```ts
 * import { Pipeline } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 *
 * Effect.gen(function*() {
 *   const [exit, tally] = yield* Pipeline.tallyCalls(Effect.succeed("no calls"))
 *   tally.calls // 0
 * })
 * ```
 */
export const tallyCalls: <A, E, R>(
  effect: Effect.Effect<A, E, R>
) => Effect.Effect<[Exit.Exit<A, E>, CallTally], never, R> = internal.tallyCalls

/**
 * The binding budget of a run's stages ({@link Binding}): of the limits `limiter` knows for the scopes the
 * stages were charged on, the one they used the largest share of over `elapsedMillis` (a full bucket at the
 * start plus its refill). For stats assembled elsewhere (a distributed run's); {@link start}'s do it already.
 *
 * @since 0.2.0
 * @category stats
 * @example
 * ```ts
 * import { Budget } from "@sluice/core"
 * import { Pipeline } from "@sluice/openai"
 * import * as Option from "effect/Option"
 *
 * const limits = [Budget.Limit.perSecond("requests", 10)]
 * const stage = { name: "vector", charged: [{ scope: "tenant:p/vector", dimension: "requests", amount: 100 }] }
 * Pipeline.binding([stage], 10_000, { limitsOf: () => limits })
 * // Option.some({ stage: "vector", scope: "tenant:p/vector", dimension: "requests", windowMillis: 1000, utilization: 100 / 110 })
 * ```
 */
export const binding = (
  stages: ReadonlyArray<Pick<StageStats, "name" | "charged">>,
  elapsedMillis: number,
  limiter: Pick<RateLimiter.Service, "limitsOf">
): Option.Option<Binding> => internal.bindingOf(stages, elapsedMillis, Option.some(limiter))

/**
 * The most items a run of the pipeline holds at once: one in the source's hand, each stage's queue and
 * workers, and the output buffer (default the last stage's concurrency).
 *
 * @since 0.2.0
 * @category stats
 */
export const bound = (pipeline: Pipeline<any, any, any, any>, outputBuffer?: number): number =>
  internal.boundOf(pipeline.stages, outputBuffer ?? pipeline.stages[pipeline.stages.length - 1]?.concurrency ?? 1)

/**
 * The stats in words: the totals, the binding budget and the stages that wait on their neighbours ("binding:
 * images/min gpt-image-1 in stage render (99% used); prompt stage idle 61% waiting on render"), then one
 * line per stage.
 *
 * @since 0.2.0
 * @category stats
 */
export const summary: (stats: Stats) => string = internal.summary

/**
 * One progress line: per stage, done / entered, queue depth and in flight, and the binding budget.
 *
 * @since 0.2.0
 * @category stats
 */
export const progressLine = (stats: Stats): string => {
  const stages = stats.stages.map((s) =>
    `${s.name} ${s.done + s.skipped}/${s.entered} q${s.queued}/${s.capacity} ▶${s.inFlight}${
      s.rateLimited > 0 ? ` 429×${s.rateLimited}` : ""
    }`
  )
  const binding = stats.binding._tag === "Some" ? ` | binding ${internal.bindingText(stats.binding.value)}` : ""
  return `${stats.pipeline} ${Math.round(stats.elapsedMillis / 1000)}s | ${stages.join(" | ")}${binding}`
}

/**
 * The pipeline's metrics, tagged `pipeline` and `stage`: `sluice_pipeline_items_total` (and `outcome`:
 * `done`, `skipped`, `retried`), `sluice_pipeline_queue_depth`, `sluice_pipeline_in_flight` and
 * `sluice_pipeline_stage_ms` (an item's time in a stage).
 *
 * @since 0.2.0
 * @category stats
 */
export const metrics = internal.metrics

// ---------------------------------------------------------------------------------------------------------------
// running
// ---------------------------------------------------------------------------------------------------------------

/**
 * What a run reads: the items as a `Stream` (read as the first stage takes them) or any iterable.
 *
 * @since 0.2.0
 * @category running
 */
export type Input<In, EIn = never, RIn = never> = Stream.Stream<Item<In>, EIn, RIn> | Iterable<Item<In>>

/**
 * How a run can fail: a stage's error decided `fail` ({@link StageFailed}, which carries it), the input's own
 * error, a bad item or checkpoint, a store that failed.
 *
 * @since 0.2.0
 * @category running
 */
export type RunError<E, EIn> = E | EIn | StageFailed | PipelineInputError | PipelineStoreError

const toStream = <In, EIn, RIn>(items: Input<In, EIn, RIn>): Stream.Stream<Item<In>, EIn, RIn> =>
  (Stream.StreamTypeId in items ? items : Stream.fromIterable(items)) as Stream.Stream<Item<In>, EIn, RIn>

/**
 * Starts a run in the current scope: the stages' workers, the reading of the input and the progress reports
 * are forked there (and stopped with it). Pull the outcomes to keep it going.
 *
 * @since 0.2.0
 * @category running
 */
export const start = <In, Out, E, R, EIn = never, RIn = never>(
  pipeline: Pipeline<In, Out, E, R>,
  items: Input<In, EIn, RIn>,
  options: Pipeline.RunOptions = {}
): Effect.Effect<Running<Out, RunError<E, EIn>>, PipelineConfigError, R | RIn | Scope.Scope> =>
  Effect.tap(
    internal.start<In, Out, E, R, EIn, RIn>(pipeline.name, pipeline.stages, toStream(items), options),
    (running) => {
      if (options.progress === undefined) return Effect.void
      const { every, report } = options.progress
      return Effect.forkScoped(
        Effect.forever(Effect.zipRight(Effect.sleep(every), Effect.flatMap(running.stats, report)))
      )
    }
  )

/**
 * The outcomes as a stream (for runs too large to keep every result): the run starts when the stream is
 * pulled and stops when it ends; the last stage waits while the consumer is behind.
 *
 * @since 0.2.0
 * @category running
 */
export const stream = <In, Out, E, R, EIn = never, RIn = never>(
  pipeline: Pipeline<In, Out, E, R>,
  items: Input<In, EIn, RIn>,
  options: Pipeline.RunOptions = {}
): Stream.Stream<Outcome<Out>, RunError<E, EIn> | PipelineConfigError, R | RIn> =>
  Stream.unwrapScoped(Effect.map(start(pipeline, items, options), (running) => running.outcomes))

/**
 * Runs every item through the pipeline; returns each item's outcome by id, the stats and their summary.
 *
 * @since 0.2.0
 * @category running
 * @example
 * ```ts
 * import { Pipeline } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as Schema from "effect/Schema"
 *
 * const shout = Pipeline.make<string>("shout").pipe(
 *   Pipeline.stage({ name: "upper", concurrency: 2, queue: 4, output: Schema.String, run: (s: string) => Effect.succeed(s.toUpperCase()) })
 * )
 * Effect.gen(function*() {
 *   const result = yield* Pipeline.run(shout, [{ id: "a", input: "hello" }])
 *   result.outcomes.get("a") // { _tag: "Done", id: "a", value: "HELLO", resumed: false }
 * })
 * ```
 */
export const run = <In, Out, E, R, EIn = never, RIn = never>(
  pipeline: Pipeline<In, Out, E, R>,
  items: Input<In, EIn, RIn>,
  options: Pipeline.RunOptions = {}
): Effect.Effect<Result<Out>, RunError<E, EIn> | PipelineConfigError, R | RIn> =>
  Effect.scoped(Effect.gen(function*() {
    const running = yield* start(pipeline, items, options)
    const outcomes = new Map<string, Outcome<Out>>()
    yield* Stream.runForEachChunk(running.outcomes, (chunk) =>
      Effect.sync(() => {
        for (const outcome of Chunk.toReadonlyArray(chunk)) outcomes.set(outcome.id, outcome)
      }))
    const stats = yield* running.stats
    return { outcomes, stats, summary: summary(stats) }
  }))
