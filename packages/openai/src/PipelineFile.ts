/**
 * A {@link Pipeline} declared in a JSON file, as `sluice pipeline run FILE.json` runs it: stages of OpenAI calls
 * whose request bodies are templates over the input line's fields and the earlier stages' results, each stage
 * with its concurrency, queue, lane and budget; and the file runner that takes an input JSONL to an output JSONL
 * with the conventions of {@link BulkRunner.run} (distinct paths, the output's lock, resume, `restart`, one output
 * line per `custom_id`).
 *
 * ```json
 * {
 *   "name": "campaign",
 *   "stages": [
 *     { "name": "prompt", "url": "/v1/chat/completions", "concurrency": 4, "queue": 8,
 *       "body": { "model": "gpt-4o-mini", "max_tokens": 160,
 *                 "messages": [{ "role": "user", "content": "A product shot of a {{product}} for {{audience}}" }] } },
 *     { "name": "render", "url": "/v1/images/generations", "concurrency": 3, "queue": 4, "lane": "background",
 *       "body": { "model": "gpt-image-1", "prompt": "{{prompt}}", "size": "1024x1024" } }
 *   ]
 * }
 * ```
 *
 * A template `{{name}}` (or `{{name.field}}`) names an earlier stage's result (the text of a chat completion
 * or a response, an image's URL or base64, an embedding) or else a field of the input line; a string that is
 * only one template takes the value itself (an array, a number), any other string the value's text.
 *
 * @since 0.2.0
 */
import { Budget } from "@sluice/core"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type * as BulkExecutor from "./BulkExecutor.js"
import type * as BulkRunner from "./BulkRunner.js"
import * as Input from "./internal/bulkInput.js"
import * as internal from "./internal/pipelineFile.js"
import type * as Pipeline from "./Pipeline.js"

// ---------------------------------------------------------------------------------------------------------------
// the file
// ---------------------------------------------------------------------------------------------------------------

const PositiveInt = Schema.Int.pipe(Schema.positive({ message: () => "expected a whole number above 0" }))
const Name = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z][A-Za-z0-9_-]*$/, { message: () => "a name like prompt, render_1 or captions" })
)

/**
 * One stage of a pipeline file.
 *
 * @since 0.2.0
 * @category models
 */
export const StageSpec = Schema.Struct({
  /** Unique in the file; `{{name}}` in a later stage's body is this stage's result. */
  name: Name,
  /** The endpoint, as in a Batch API line. */
  url: Schema.Literal(...Input.supportedUrls).annotations({
    message: (issue) => ({
      message: `expected one of ${Input.supportedUrls.join(", ")}, got ${JSON.stringify(issue.actual)}`,
      override: true
    })
  }),
  /** The request body; every string in it may hold templates. `model` is a plain string. */
  body: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  /** The stage's workers: items it works on at once (default 4). */
  concurrency: Schema.optionalWith(PositiveInt, { default: () => 4 }),
  /** The stage's input queue: items that may wait for it (default twice its concurrency). */
  queue: Schema.optional(PositiveInt),
  /** The lane its calls are admitted in. */
  lane: Schema.optional(Schema.Literal("interactive", "background")),
  /** The stage's own limits (`[{ "dimension": "images", "amount": 3, "window": "minute" }]`), on its tenant scope. */
  budget: Schema.optional(Schema.Array(Budget.Limit)),
  /** How many times an item's stage runs again after a passing failure its calls' own retries did not get past. */
  retries: Schema.optional(Schema.Int.pipe(Schema.nonNegative()))
})

/**
 * @since 0.2.0
 * @category models
 */
export type StageSpec = typeof StageSpec.Type

/**
 * A pipeline file, decoded: its name, the input field holding each line's id (default `custom_id`) and its
 * stages in order.
 *
 * @since 0.2.0
 * @category models
 */
export const Spec = Schema.Struct({
  name: Name,
  id: Schema.optionalWith(Schema.String.pipe(Schema.minLength(1)), { default: () => "custom_id" }),
  stages: Schema.NonEmptyArray(StageSpec)
}).pipe(Schema.filter(internal.checkSpec))

/**
 * @since 0.2.0
 * @category models
 */
export type Spec = typeof Spec.Type

/**
 * A pipeline file that cannot be used: not JSON, or a value out of place; each issue says where
 * (`stages[1].body.prompt`).
 *
 * @since 0.2.0
 * @category errors
 */
export class PipelineFileError extends Schema.TaggedError<PipelineFileError>("@sluice/openai/PipelineFileError")(
  "PipelineFileError",
  {
    source: Schema.String,
    issues: Budget.ConfigIssues
  }
) {
  override get message(): string {
    return `invalid pipeline file ${this.source}:\n${Budget.formatIssues(this.issues)}`
  }
}

/**
 * Decodes a pipeline file's parsed JSON; the error names the path of every bad value.
 *
 * @since 0.2.0
 * @category decoding
 * @example
 * ```ts
 * import { PipelineFile } from "@sluice/openai"
 *
 * const spec = PipelineFile.decode({
 *   name: "embed",
 *   stages: [{ name: "vector", url: "/v1/embeddings", body: { model: "text-embedding-3-small", input: "{{text}}" } }]
 * }, "embed.json")
 * ```
 */
export const decode = (input: unknown, source: string): Effect.Effect<Spec, PipelineFileError> =>
  Effect.mapError(
    Schema.decodeUnknown(Spec, { errors: "all", onExcessProperty: "error" })(input),
    (error) => new PipelineFileError({ source, issues: Budget.issuesOf(error, { concise: true }) })
  )

/**
 * Reads and decodes a pipeline file.
 *
 * @since 0.2.0
 * @category decoding
 */
export const load = (path: string): Effect.Effect<Spec, PipelineFileError> =>
  Effect.flatMap(internal.readJson(path), (json) => decode(json, path))

// ---------------------------------------------------------------------------------------------------------------
// the pipeline
// ---------------------------------------------------------------------------------------------------------------

/**
 * What flows between stages: the input line's fields and the results of the stages so far, by stage name.
 *
 * @since 0.2.0
 * @category models
 */
export interface Carry {
  readonly fields: Readonly<Record<string, unknown>>
  readonly results: Readonly<Record<string, unknown>>
}

/**
 * An item's template named a field its input line does not have: the item is skipped in that stage.
 *
 * @since 0.2.0
 * @category errors
 */
export class MissingField extends Schema.TaggedError<MissingField>("@sluice/openai/PipelineFile/MissingField")(
  "MissingField",
  { stage: Schema.String, field: Schema.String, message: Schema.String }
) {}

/**
 * An item's failure in a stage, as the stages' sender described it (`kind`, `code`, `message`), where the error
 * itself is not at hand, for instance because a worker on another machine ran the stage. A run that a failure
 * with `stop` ended (an exhausted quota, a refused key, an outage) names it in {@link Summary}'s `stoppedBy`; an
 * {@link Engine}'s outcomes stream fails with it to stop the run, and carries it as a skipped outcome's `error`.
 *
 * @since 0.2.0
 * @category errors
 * @example
 * ```ts
 * import { PipelineFile } from "@sluice/openai"
 *
 * const stopped = new PipelineFile.StageError({
 *   id: "brief-7",
 *   stage: "render",
 *   kind: "QuotaExhausted",
 *   code: "insufficient_quota",
 *   message: "You exceeded your current quota"
 * })
 * stopped.toString() // QuotaExhausted in stage render (item brief-7): You exceeded your current quota
 * ```
 */
export class StageError extends Schema.TaggedError<StageError>("@sluice/openai/PipelineFile/StageError")(
  "StageError",
  {
    id: Schema.String,
    stage: Schema.String,
    kind: Schema.String,
    code: Schema.String,
    message: Schema.String,
    statusCode: Schema.optional(Schema.Number)
  }
) {
  override toString(): string {
    return `${this.kind} in stage ${this.stage} (item ${this.id}): ${this.message}`
  }
}

/**
 * How the stages send: an executor's `execute` and `describe` (`BulkExecutor.make`'s).
 *
 * @since 0.2.0
 * @category models
 */
export interface Sender<E> {
  readonly execute: (
    request: BulkRunner.Request,
    call?: BulkExecutor.CallOptions
  ) => Effect.Effect<BulkRunner.Response, E>
  /** A failure with `stop` set fails the run (resumable); any other skips the item. */
  readonly describe: (error: E) => BulkRunner.Failure
}

/**
 * The {@link Pipeline} of a file: one stage per stage of the file, each rendering its body for the item and
 * sending it through `sender`. Give the executor `onEvent: Pipeline.onEvent` and the budgets
 * `Pipeline.budgets(pipeline)` lists.
 *
 * @since 0.2.0
 * @category constructors
 * @example
 * ```ts
 * import { Pipeline, PipelineFile } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const spec = yield* PipelineFile.load("campaign.json")
 *   const pipeline = PipelineFile.make(spec, {
 *     execute: (request) => Effect.succeed({ statusCode: 200, requestId: null, body: { data: [{ url: request.customId }] } }),
 *     describe: (error: never) => error
 *   })
 *   return Pipeline.budgets(pipeline)
 * })
 * ```
 */
export const make = <E>(
  spec: Spec,
  sender: Sender<E>
): Pipeline.Pipeline<Carry, Carry, E | MissingField> => internal.make(spec, sender)

/**
 * The stages' own budgets (a stage's `budget`, on its tenant scope `tenant:<pipeline>/<stage>`), for the limiter
 * the stages' calls go through: `Pipeline.budgets` of {@link make}'s pipeline.
 *
 * @since 0.2.0
 * @category constructors
 * @example
 * ```ts
 * import { PipelineFile } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 *
 * const budgets = Effect.map(PipelineFile.load("campaign.json"), PipelineFile.budgets)
 * ```
 */
export const budgets = (spec: Spec): ReadonlyArray<Budget.Budget> =>
  spec.stages.flatMap((stage) => {
    const tenant = internal.tenantOf(spec, stage)
    return stage.budget === undefined || tenant === undefined ? [] : [Budget.make(`tenant:${tenant}`, stage.budget)]
  })

/**
 * One stage's work for one item, as {@link make}'s pipeline runs it (the body rendered from the carry, the call,
 * the result added), for a worker that runs the stages itself (a distributed queue's). `decide` is the pipeline's
 * decision for its errors: `fail` (stop the run, resumable) for a failure with `stop`, else `skip`.
 *
 * @since 0.2.0
 * @category constructors
 * @example
 * ```ts
 * import { PipelineFile } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 *
 * declare const spec: PipelineFile.Spec
 * declare const sender: PipelineFile.Sender<never>
 * const first = PipelineFile.stageRun(spec, 0, sender)
 * const next = first({ fields: { product: "lamp" }, results: {} }, "brief-1")
 * ```
 */
export const stageRun: <E>(
  spec: Spec,
  index: number,
  sender: Sender<E>
) => (carry: Carry, id: string) => Effect.Effect<Carry, E | MissingField> = internal.stageRun

/**
 * The decision for a stage's error: `fail` for a failure with `stop`, `skip` for any other (and `MissingField`).
 *
 * @since 0.2.0
 * @category constructors
 */
export const decide: <E>(sender: Sender<E>) => (error: E | MissingField) => Pipeline.Decision = internal.decide

// ---------------------------------------------------------------------------------------------------------------
// the file runner
// ---------------------------------------------------------------------------------------------------------------

/**
 * The end of a file run. `outcome` as {@link BulkRunner.Outcome}: `completed-with-failures` when an item was
 * skipped (its output line records the error) or an input line rejected, `stopped` when a failure with `stop`
 * or the `stop` signal ended it early (rerun to resume).
 *
 * @since 0.2.0
 * @category models
 */
export interface Summary {
  readonly outcome: BulkRunner.Outcome
  /** Why it stopped early. */
  readonly stop: string | undefined
  /** The failure with `stop` that ended the run, if one did: the item, the stage and the error's kind (since 0.2.0). */
  readonly stoppedBy?: StageError | undefined
  /** Items with a line in the output before this run. */
  readonly alreadyDone: number
  /** Of those, the lines recording a failure. */
  readonly alreadyFailed: number
  /** Items through every stage in this run. */
  readonly succeeded: number
  /** Items skipped in this run (an error line written). */
  readonly failed: number
  readonly failuresByKind: Readonly<Record<string, number>>
  /** Input lines rejected (written to the errors file). */
  readonly invalid: number
  /** Items that went on from the stage their checkpoint recorded. */
  readonly resumedAtStage: number
  /** Items left without an output line (resumable). */
  readonly notDone: number
  readonly repairedBytes: number
  readonly wallMs: number
  /** The pipeline's final figures: per stage, and the binding budget (none with an {@link Engine}'s that has none). */
  readonly stats: Pipeline.Stats | undefined
}

/**
 * @since 0.2.0
 * @category models
 */
export declare namespace PipelineFile {
  /**
   * @since 0.2.0
   * @category models
   */
  export interface RunOptions<E> {
    readonly spec: Spec
    /** The pipeline, if built already ({@link make} of `spec` and `sender`). */
    readonly pipeline?: Pipeline.Pipeline<Carry, Carry, E | MissingField> | undefined
    readonly sender: Sender<E>
    /** Input JSONL: one JSON object a line, its id in the field `spec.id`. */
    readonly input: string
    /** Output JSONL (one Batch API output line per id); rerun with the same file to resume. */
    readonly output: string
    /** Rejected input lines (JSONL), truncated at the start of each run. */
    readonly errors?: string | undefined
    /**
     * Where each item's progress through the stages is kept (`<output>.stages.jsonl` by default: see
     * {@link checkpointsPath}): a rerun starts each item at the stage after the one it reached.
     */
    readonly checkpoints?: string | undefined
    /** Start over: empty the output and the checkpoints. */
    readonly restart?: boolean | undefined
    /** Completing it stops the run: no new items; the calls under way fail with `stop` (cancel the executor). */
    readonly stop?: Effect.Effect<void> | undefined
    /** The limiter the sender admits through (`executor.limiter`): the binding budget is judged by its limits. */
    readonly limiter?: Pipeline.Pipeline.RunOptions["limiter"]
    readonly progress?: {
      readonly every: Duration.DurationInput
      readonly report: (stats: Pipeline.Stats) => Effect.Effect<void>
    } | undefined
    /** Where the stages run, when not in this process (a distributed queue): see {@link Engine}. */
    readonly engine?: Engine | undefined
  }
}

/**
 * An outcome an {@link Engine} hands the runner, and what to do once its output line is written (a queue
 * engine's acknowledgement: a crash before it redelivers the outcome, which the runner then only acknowledges).
 *
 * @since 0.2.0
 * @category models
 */
export interface Delivery {
  readonly outcome: Pipeline.Outcome<Carry>
  readonly ack: Effect.Effect<void>
}

/**
 * Runs the stages somewhere else (workers on other machines, behind a distributed queue): it takes the items
 * not yet in the output and hands back every one's outcome, the stream ending once each has one, or failing with
 * a {@link StageError} when a failure with `stop` ends the run (resumable). `restart`: the run starts over (drop
 * what the engine holds of earlier runs). `paths`: the files it keeps beside the output (since 0.2.0), checked with
 * the run's own before anything is written, so that no two name one file.
 *
 * @since 0.2.0
 * @category models
 */
export interface Engine {
  readonly paths?: ReadonlyArray<{ readonly role: string; readonly path: string }> | undefined
  readonly start: (
    items: Stream.Stream<Pipeline.Item<Carry>, BulkRunner.BulkFileError>,
    options: { readonly restart: boolean }
  ) => Effect.Effect<
    {
      readonly outcomes: Stream.Stream<Delivery, BulkRunner.BulkFileError | StageError>
      readonly stats?: Effect.Effect<Pipeline.Stats> | undefined
    },
    BulkRunner.BulkFileError | BulkRunner.BulkPathError,
    Scope.Scope
  >
}

/**
 * `<output>.stages.jsonl` (the `.jsonl` extension dropped first): a file run's checkpoints.
 *
 * @since 0.2.0
 * @category running
 * @example
 * ```ts
 * import { PipelineFile } from "@sluice/openai"
 *
 * PipelineFile.checkpointsPath("out.jsonl") // "out.stages.jsonl"
 * ```
 */
export const checkpointsPath = (output: string): string => internal.beside(output, "stages")

/**
 * Runs a pipeline file over an input JSONL into an output JSONL. Every id ends in exactly one output line:
 * `{"id", "custom_id", "response": {"results": {<stage>: <result>, ...}}, "error": null}` once through every
 * stage, or `"response": null, "error": {"stage", "kind", "code", "message"}` when skipped. Fails only when the
 * run must not start (`BulkPathError`: paths naming one file, the output locked or not an output file) or a file
 * cannot be read or written (`BulkFileError`).
 *
 * @since 0.2.0
 * @category running
 * @example
 * ```ts
 * import { PipelineFile } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const spec = yield* PipelineFile.load("campaign.json")
 *   const summary = yield* PipelineFile.run({
 *     spec,
 *     sender: {
 *       execute: () => Effect.succeed({ statusCode: 200, requestId: null, body: { choices: [{ message: { content: "ok" } }] } }),
 *       describe: (error: never) => error
 *     },
 *     input: "briefs.jsonl",
 *     output: "assets.jsonl"
 *   })
 *   yield* Effect.log(PipelineFile.formatSummary(summary))
 * })
 * ```
 */
export const run: <E>(
  options: PipelineFile.RunOptions<E>
) => Effect.Effect<Summary, BulkRunner.BulkFileError | BulkRunner.BulkPathError> = internal.run

/**
 * A summary in words: the items, the failures by kind, then the pipeline's own summary (the binding budget and
 * the stage that charged it, the stages waiting on their neighbours).
 *
 * @since 0.2.0
 * @category running
 */
export const formatSummary: (summary: Summary) => string = internal.formatSummary
