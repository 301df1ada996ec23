/**
 * The Batch API offload: sends Batch-format request lines through OpenAI's Batch API (half the price, a pool of
 * its own) instead of live, and delivers one output line per `custom_id` in the live runner's format
 * ({@link BulkRunner}), so a job's output reads the same whichever way each line went.
 *
 * Lines are split by model and endpoint into input files within the Batch API's limits (50,000 requests and
 * 200 MB per file) and within the model's **enqueued-token limit**: a dimension of its own (`enqueuedTokens`)
 * on Sluice's `RateLimiter`, on the scope `batch:<model>` by default ({@link budget} builds it). A file's
 * estimated tokens are held from before its upload until its batch ends, as a hold with a lease in a `HoldStore`
 * (`Options.holds`: in memory, or on Redis) renewed on the `Clock` while the batch runs, so the jobs and
 * processes that share the store share the organization's queue and never submit more than it takes; a process
 * killed while holding frees its holds after the lease (`Options.lease`, 2 minutes). Each file is uploaded (`/v1/files`), submitted (`/v1/batches`), polled with back-off on the `Clock`,
 * and its output and error files are downloaded, all through the official `openai` SDK.
 *
 * What ends how (each a typed {@link BatchProblem}, in the {@link Summary} and to `onProblem`; none loses a line):
 *
 * - `completed`: every line delivered (successes and per-request failures alike);
 * - `expired` ({@link BatchExpired}): the lines finished in the 24-hour window are delivered, the others come
 *   back in `Summary.unfinished` (reason `expired`) to requeue — live, or in a new batch with {@link Service.resume};
 * - `cancelled` ({@link BatchCancelled}): the same, with reason `cancelled`;
 * - `failed` with errors naming lines ({@link BatchValidationError}): those lines are delivered as failures that
 *   name their input line, the others go out again in a new file;
 * - `failed` with `token_limit_exceeded` ({@link EnqueuedTokenLimitExceeded}, reason `refused`): the hold is
 *   released, the same file is submitted again after a back-off (up to `tokenLimitRetries` times, then its lines
 *   come back with reason `token-limit`);
 * - `failed` otherwise ({@link BatchFailed}): its lines come back with reason `failed`;
 * - a line that alone needs more than the model's enqueued-token limit ({@link EnqueuedTokenLimitExceeded}, reason
 *   `line-too-large`) or a file's bytes ({@link BatchLineTooLarge}) is delivered as a failure at once;
 * - a line for an endpoint the Batch API does not take (images, moderations) comes back with reason `ineligible`.
 *
 * The {@link State} (batch ids, file ids, which `custom_id`s each holds) is handed to `onState` after every step
 * that creates something on the server; persist it, and {@link Service.resume} from it after a crash: a batch that
 * exists is followed, never created again (an uploaded file with no batch id recorded is looked up among the
 * organization's batches first), and every line not held by a batch is planned again from the input.
 *
 * @since 0.2.0
 */
import type { RateLimiter } from "@sluice/core"
import { Budget, HoldStore } from "@sluice/core"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import type OpenAI from "openai"
import type * as BulkRunner from "./BulkRunner.js"
import * as internal from "./internal/batchOffload.js"
import * as OpenAiService from "./OpenAi.js"

// ---------------------------------------------------------------------------------------------------------------
// limits and budgets
// ---------------------------------------------------------------------------------------------------------------

/**
 * The endpoints the Batch API takes.
 *
 * @since 0.2.0
 * @category limits
 */
export const endpoints = ["/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/completions"] as const

/**
 * The Batch API's limits per input file: 50,000 requests and 200 MB (counted as 200,000,000 bytes, the smaller
 * reading).
 *
 * @since 0.2.0
 * @category limits
 */
export const fileLimits = { maxRequests: 50_000, maxBytes: 200_000_000 } as const

/**
 * The statuses in which a batch has ended (`completed`, `failed`, `expired`, `cancelled`): its status changes no
 * more, its results (if any) can be downloaded, and its enqueued tokens no longer count against the queue.
 *
 * @example
 * import { BatchOffload } from "@sluice/openai"
 *
 * BatchOffload.isTerminal("finalizing") // false
 * BatchOffload.isTerminal("expired") // true
 *
 * @since 0.2.0
 * @category limits
 */
export const terminalStatuses = ["completed", "failed", "expired", "cancelled"] as const

const terminal: ReadonlySet<string> = new Set(terminalStatuses)

/**
 * Whether a batch status (as the Batch API or a {@link BatchRecord} gives it) is one of {@link terminalStatuses}.
 *
 * @example
 * import { BatchOffload } from "@sluice/openai"
 *
 * const open = (state: BatchOffload.State) => state.batches.filter((b) => !BatchOffload.isTerminal(b.status))
 *
 * @since 0.2.0
 * @category limits
 */
export const isTerminal = (status: string | undefined): boolean => status !== undefined && terminal.has(status)

/**
 * The limiter dimension a batch's estimated tokens are held on while it is queued or running.
 *
 * @since 0.2.0
 * @category limits
 */
export const dimension = "enqueuedTokens"

/**
 * The window of an enqueued-token budget. The limiter only tells the offload each model's limit (its
 * capacity): a batch's tokens are held in a `HoldStore` (`Options.holds`), each hold with a lease the live process
 * renews while its batch runs, given back when it ends — not on the limiter's bucket, which refills at its own rate
 * and forgets who took what (a process killed there would keep its hold forever). The window is long (1,000
 * years) so that a live call charging the dimension by mistake would not see it refill.
 *
 * @since 0.2.0
 * @category limits
 */
export const holdWindow: Duration.Duration = Duration.days(365_000)

/**
 * The default scope of a model's enqueued-token limit.
 *
 * @since 0.2.0
 * @category limits
 * @example
 * ```ts
 * import { BatchOffload } from "@sluice/openai"
 *
 * BatchOffload.scopeFor("gpt-4o-mini") // "batch:gpt-4o-mini"
 *
 * // the same scope shared by two models that one enqueued-token limit covers
 * const scopesFor = (model: string) => [BatchOffload.scopeFor(model.startsWith("gpt-4o") ? "gpt-4o" : model)]
 * ```
 */
export const scopeFor = (model: string): string => `batch:${model}`

/**
 * The budget of a model's enqueued-token limit, to give the `RateLimiter` (or `OpenAi.Options.budgets`) beside
 * the live limits. Read the figure from the organization's limits page (Settings → Limits, "Batch queue limit").
 *
 * @since 0.2.0
 * @category limits
 * @example
 * ```ts
 * import { RateLimiter } from "@sluice/core"
 * import { BatchOffload } from "@sluice/openai"
 *
 * const Limits = RateLimiter.layerMemory({
 *   budgets: [BatchOffload.budget("gpt-4o-mini", 2_000_000), BatchOffload.budget("gpt-4o", 90_000)]
 * })
 * ```
 */
export const budget = (model: string, tokens: number, scope: string = scopeFor(model)): Budget.Budget =>
  Budget.make(scope, [Budget.Limit.of(dimension, tokens, holdWindow)])

// ---------------------------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------------------------

/**
 * A batch failed validation for some of its lines: each such line is delivered as a failure naming its line in
 * the input (`line`, when known) and in the uploaded file (`fileLine`); the batch's other lines go out again.
 *
 * @since 0.2.0
 * @category errors
 */
export class BatchValidationError extends Schema.TaggedError<BatchValidationError>(
  "@sluice/openai/BatchOffload/BatchValidationError"
)("BatchValidationError", {
  batchId: Schema.String,
  customId: Schema.optional(Schema.String),
  /** 1-based line number in the caller's input. */
  line: Schema.optional(Schema.Number),
  /** 1-based line number in the uploaded file. */
  fileLine: Schema.Number,
  code: Schema.String,
  param: Schema.optional(Schema.String),
  message: Schema.String
}) {}

/** The fields of a batch that ended with some lines done and the others handed back. */
const partial = {
  batchId: Schema.String,
  model: Schema.String,
  completed: Schema.Number,
  unfinished: Schema.Number
}

/**
 * A batch expired (its 24-hour window ended first): `completed` lines were delivered, `unfinished` came back.
 *
 * @since 0.2.0
 * @category errors
 */
export class BatchExpired
  extends Schema.TaggedError<BatchExpired>("@sluice/openai/BatchOffload/BatchExpired")("BatchExpired", partial)
{
  override get message(): string {
    return `batch ${this.batchId} (${this.model}) expired: ${this.completed} lines done, ${this.unfinished} to requeue`
  }
}

/**
 * A batch was cancelled: `completed` lines were delivered, `unfinished` came back.
 *
 * @since 0.2.0
 * @category errors
 */
export class BatchCancelled
  extends Schema.TaggedError<BatchCancelled>("@sluice/openai/BatchOffload/BatchCancelled")("BatchCancelled", partial)
{
  override get message(): string {
    return `batch ${this.batchId} (${this.model}) cancelled: ${this.completed} lines done, ${this.unfinished} to requeue`
  }
}

/**
 * A batch failed as a whole (not for a line, not for the enqueued-token limit): its lines came back.
 *
 * @since 0.2.0
 * @category errors
 */
export class BatchFailed extends Schema.TaggedError<BatchFailed>("@sluice/openai/BatchOffload/BatchFailed")(
  "BatchFailed",
  { batchId: Schema.String, model: Schema.String, code: Schema.String, message: Schema.String }
) {}

/**
 * The enqueued-token limit refused work: `refused`, the server failed a batch with `token_limit_exceeded` (its
 * queue held more than this limiter knew: other jobs, keys or tools); `line-too-large`, one line alone needs
 * more than the model's limit and can never go through the Batch API (delivered as a failure).
 *
 * @since 0.2.0
 * @category errors
 */
export class EnqueuedTokenLimitExceeded extends Schema.TaggedError<EnqueuedTokenLimitExceeded>(
  "@sluice/openai/BatchOffload/EnqueuedTokenLimitExceeded"
)("EnqueuedTokenLimitExceeded", {
  reason: Schema.Literal("refused", "line-too-large"),
  model: Schema.String,
  tokens: Schema.Number,
  limit: Schema.optional(Schema.Number),
  batchId: Schema.optional(Schema.String),
  customId: Schema.optional(Schema.String),
  line: Schema.optional(Schema.Number),
  message: Schema.String
}) {}

/**
 * One line is larger than a batch input file may be (delivered as a failure).
 *
 * @since 0.2.0
 * @category errors
 */
export class BatchLineTooLarge
  extends Schema.TaggedError<BatchLineTooLarge>("@sluice/openai/BatchOffload/BatchLineTooLarge")("BatchLineTooLarge", {
    customId: Schema.String,
    line: Schema.Number,
    bytes: Schema.Number,
    limit: Schema.Number
  })
{
  override get message(): string {
    return `line ${this.line} (${this.customId}) is ${this.bytes} bytes, more than a batch input file may hold (${this.limit})`
  }
}

/**
 * What happened to a batch or a line, short of losing anything.
 *
 * @since 0.2.0
 * @category errors
 */
export type BatchProblem =
  | BatchValidationError
  | BatchExpired
  | BatchCancelled
  | BatchFailed
  | EnqueuedTokenLimitExceeded
  | BatchLineTooLarge

/**
 * A Files or Batches call failed after its retries (transient kinds are retried with back-off): the run stops.
 * The state handed to `onState` so far is what {@link Service.resume} needs.
 *
 * @since 0.2.0
 * @category errors
 */
export class BatchApiError
  extends Schema.TaggedError<BatchApiError>("@sluice/openai/BatchOffload/BatchApiError")("BatchApiError", {
    operation: Schema.String,
    /** The batch or file concerned. */
    id: Schema.optional(Schema.String),
    /** The OpenAI error kind (`Unauthorized`, `ServerError`, …). */
    kind: Schema.String,
    status: Schema.optional(Schema.Number),
    message: Schema.String
  })
{}

// ---------------------------------------------------------------------------------------------------------------
// state
// ---------------------------------------------------------------------------------------------------------------

/**
 * One input file and the batch made of it.
 *
 * @since 0.2.0
 * @category state
 */
export const BatchRecord = Schema.Struct({
  /** This job's name for the file (`<job>-<n>`), in the batch's metadata as `sluice_batch`. */
  key: Schema.String,
  model: Schema.String,
  endpoint: Schema.String,
  /** The `custom_id`s in the file, in order, and their 1-based lines in the caller's input. */
  customIds: Schema.Array(Schema.String),
  lines: Schema.Array(Schema.Number),
  /** Estimated tokens (held on the enqueued-token limit while the batch runs) and bytes. */
  tokens: Schema.Number,
  bytes: Schema.Number,
  inputFileId: Schema.String,
  /** When the file was uploaded (epoch ms). */
  uploadedAt: Schema.Number,
  /** The batch; absent until it is created. */
  batchId: Schema.optional(Schema.String),
  /** The batch's last status seen. */
  status: Schema.optional(Schema.String),
  outputFileId: Schema.optional(Schema.String),
  errorFileId: Schema.optional(Schema.String),
  /** Batches created from the file (more than one after `token_limit_exceeded` refusals). */
  attempts: Schema.Number,
  /** `custom_id`s this batch no longer answers for: handed back unfinished, or moved to a new file. */
  released: Schema.Array(Schema.String),
  /**
   * Why all of its lines were handed back, when one reason covers them (`token-limit`: refused for the
   * enqueued-token limit too often; `failed`; `cancelled` while stopping), so a resume reports them the same way.
   *
   * @since 0.2.0
   */
  handedBack: Schema.optional(Schema.Literal("expired", "cancelled", "failed", "token-limit", "ineligible")),
  /**
   * When the batch ended (epoch ms), by the Batch API's own `completed_at`, `failed_at`, `expired_at` or
   * `cancelled_at`, when it gives one: a batch that ended while no run watched it is known as such on resume.
   *
   * @since 0.2.0
   */
  endedAt: Schema.optional(Schema.Number),
  /**
   * The batch's `request_counts` as last polled: its requests, and those the Batch API has done so far (completed
   * or failed). While it runs, the lines done per batch; its results come back only when it ends.
   *
   * @since 0.2.0
   */
  requestCounts: Schema.optional(
    Schema.Struct({ total: Schema.Number, completed: Schema.Number, failed: Schema.Number })
  ),
  /** Its results are delivered and its unfinished lines handed back. */
  finished: Schema.Boolean
}).annotations({ identifier: "BatchOffload.BatchRecord" })

/**
 * @since 0.2.0
 * @category state
 */
export type BatchRecord = typeof BatchRecord.Type

/**
 * A job's durable state: persist it (as JSON: {@link encodeState}) whenever `onState` hands it over.
 *
 * @since 0.2.0
 * @category state
 */
export const State = Schema.Struct({
  version: Schema.Literal(1),
  job: Schema.String,
  batches: Schema.Array(BatchRecord)
}).annotations({ identifier: "BatchOffload.State" })

/**
 * @since 0.2.0
 * @category state
 */
export type State = typeof State.Type

/**
 * A state file that does not decode; `message` names the path of every problem.
 *
 * @since 0.2.0
 * @category errors
 */
export class StateError extends Schema.TaggedError<StateError>("@sluice/openai/BatchOffload/StateError")("StateError", {
  message: Schema.String
}) {}

/**
 * The state as JSON text.
 *
 * @since 0.2.0
 * @category state
 * @example
 * ```ts
 * import { BatchOffload } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as NodeFs from "node:fs"
 *
 * // handed to RunOptions.onState: written after every change, read back by a resume
 * const save = (state: BatchOffload.State) =>
 *   Effect.sync(() => NodeFs.writeFileSync("out.jsonl.batch-state.json", BatchOffload.encodeState(state)))
 *
 * const load = BatchOffload.decodeState(NodeFs.readFileSync("out.jsonl.batch-state.json", "utf8"))
 * ```
 */
export const encodeState = (state: State): string => JSON.stringify(Schema.encodeSync(State)(state))

/**
 * The state from JSON text.
 *
 * @since 0.2.0
 * @category state
 * @example
 * ```ts
 * import { BatchOffload } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 *
 * const state = BatchOffload.decodeState('{"version":1,"job":"nightly","batches":[]}')
 * // Effect<State, StateError>
 * ```
 */
export const decodeState = (text: string): Effect.Effect<State, StateError> =>
  Effect.mapError(
    Schema.decodeUnknown(Schema.parseJson(State), { errors: "all" })(text),
    (error) => new StateError({ message: error.message })
  )

// ---------------------------------------------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------------------------------------------

/**
 * One delivered output line (`line` is the JSON text, in the live runner's format: `id`, `custom_id`,
 * `response` or `error`).
 *
 * @since 0.2.0
 * @category models
 */
export interface Result {
  readonly customId: string
  readonly batchId: string | null
  readonly ok: boolean
  readonly line: string
}

/**
 * A line handed back, not done: requeue it (live, or through {@link Service.resume}, which plans every line no
 * batch holds).
 *
 * @since 0.2.0
 * @category models
 */
export interface Unfinished {
  readonly customId: string
  /** 1-based line number in the caller's input, when known. */
  readonly line?: number | undefined
  /**
   * The request line, as it was submitted; empty when a resume without input reports a line an earlier run handed
   * back and could not read its file back (the `customId` still names it).
   */
  readonly request: string
  readonly reason: "expired" | "cancelled" | "failed" | "token-limit" | "ineligible"
  readonly batchId: string | null
}

/**
 * The end of a run.
 *
 * @since 0.2.0
 * @category models
 */
export interface Summary {
  readonly job: string
  readonly state: State
  /** Output lines delivered: successes and failures. */
  readonly succeeded: number
  readonly failed: number
  /** Input lines skipped: in `done`, or held by a batch of the state resumed. */
  readonly skipped: number
  /** Input lines rejected (to `onInvalid`). */
  readonly invalid: number
  readonly unfinished: ReadonlyArray<Unfinished>
  readonly problems: ReadonlyArray<BatchProblem>
  /** Batch records in the state. */
  readonly batches: number
}

/**
 * What {@link Service.plan} says a job would submit.
 *
 * @since 0.2.0
 * @category models
 */
export interface PlanSummary {
  readonly files: ReadonlyArray<
    {
      readonly model: string
      readonly endpoint: string
      readonly requests: number
      readonly bytes: number
      readonly tokens: number
    }
  >
  /** Lines that can never go through the Batch API (over a limit alone). */
  readonly tooLarge: number
  /** Lines for endpoints the Batch API does not take. */
  readonly ineligible: number
}

/**
 * The offload's options.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** The SDK client (its own retries off is best: the offload retries transient failures itself). */
  readonly client: OpenAI
  /** The limiter holding the enqueued-token budgets (see {@link budget}). */
  readonly limiter: RateLimiter.Service
  /** The scopes a model's enqueued tokens are held on (default `[batch:<model>]`). */
  readonly scopesFor?: ((model: string) => ReadonlyArray<string>) | undefined
  /** The dimension (default {@link dimension}). */
  readonly dimension?: string | undefined
  /** Per-file limits (default {@link fileLimits}). */
  readonly maxRequests?: number | undefined
  readonly maxBytes?: number | undefined
  /** Polling back-off: from `initial` (default 10 s), times `factor` (1.5) after each poll, up to `max` (5 min). */
  readonly poll?: {
    readonly initial?: Duration.DurationInput | undefined
    readonly max?: Duration.DurationInput | undefined
    readonly factor?: number | undefined
  } | undefined
  /** How often a file refused with `token_limit_exceeded` is submitted again (default 20). */
  readonly tokenLimitRetries?: number | undefined
  /** A line's estimated tokens (default `TokenEstimator.forEndpoint`'s `tokens`). */
  readonly estimate?: ((url: string, body: Record<string, unknown>) => number) | undefined
  /**
   * Where batches' enqueued tokens are held, each as a hold with a lease renewed while its batch runs (default:
   * a store in memory of this service only; {@link layer} takes a `HoldStore` in context first). Share one between offloads (`HoldStore.layerMemory`) or processes
   * (`RedisLimiterStore.makeWithHolds` of `@sluice/redis`) to share the queue; the capacities are the limiter's.
   *
   * @since 0.2.0
   */
  readonly holds?: HoldStore.Service | undefined
  /**
   * How long a hold lasts unless renewed (default 2 minutes; renewed every third of it): a process killed while
   * holding frees its holds this long after its last renewal.
   *
   * @since 0.2.0
   */
  readonly lease?: Duration.DurationInput | undefined
}

/**
 * An option of {@link make} out of range: `option` names it (`poll.factor`, `maxRequests`, ...).
 *
 * @since 0.2.0
 * @category errors
 */
export class BatchOffloadConfigError extends Schema.TaggedError<BatchOffloadConfigError>(
  "@sluice/openai/BatchOffload/BatchOffloadConfigError"
)("BatchOffloadConfigError", {
  option: Schema.String,
  message: Schema.String
}) {}

/**
 * The options of one run.
 *
 * @since 0.2.0
 * @category models
 */
export interface RunOptions {
  /** The job's name (in each batch's metadata as `sluice_job`); default a random one. Kept by a resume. */
  readonly job?: string | undefined
  /** Receives each output line, once per `custom_id` in a run. */
  readonly onResult: (result: Result) => Effect.Effect<void>
  /** Receives the state after each change (persist it to resume). */
  readonly onState?: ((state: State) => Effect.Effect<void>) | undefined
  /** Receives each problem as it happens. */
  readonly onProblem?: ((problem: BatchProblem) => Effect.Effect<void>) | undefined
  /** Receives each rejected input line. */
  readonly onInvalid?: ((error: BulkRunner.BulkInputError) => Effect.Effect<void>) | undefined
  /**
   * `custom_id`s already delivered (in the output file, say): never submitted, never delivered again — a resume
   * after a crash in the middle of a batch's delivery gives each `custom_id` one line.
   */
  readonly done?: ReadonlySet<string> | undefined
  /**
   * Completing this effect cancels the run's batches: no new file goes out (its lines come back `cancelled`), every
   * batch submitted is cancelled, and the run ends once they have, with their partial results delivered.
   */
  readonly stop?: Effect.Effect<void> | undefined
}

/**
 * The offload's interface.
 *
 * @since 0.2.0
 * @category models
 */
export interface Service {
  /** Submits the lines of `input` (Batch-format JSONL, one line per element) and delivers their results. */
  readonly run: <E, R>(
    input: Stream.Stream<string, E, R>,
    options: RunOptions
  ) => Effect.Effect<Summary, BatchApiError | E, R>
  /**
   * Goes on from a recorded state: follows every batch not finished (looking up, by its input file, a batch whose
   * id was not recorded), then plans the lines of `input` (if given) that no batch holds.
   */
  readonly resume: <E = never, R = never>(
    state: State,
    options: RunOptions,
    input?: Stream.Stream<string, E, R>
  ) => Effect.Effect<Summary, BatchApiError | E, R>
  /** Cancels the batches of a state that have not finished (a running job then delivers their partial results). */
  readonly cancel: (state: State) => Effect.Effect<void, BatchApiError>
  /** The files a job would submit, without submitting anything. */
  readonly plan: <E, R>(input: Stream.Stream<string, E, R>) => Effect.Effect<PlanSummary, E, R>
  /** The enqueued-token limit in force for a model (the smallest over its scopes), if any. */
  readonly maxTokens: (model: string) => number | undefined
}

/**
 * @since 0.2.0
 * @category tags
 */
export class BatchOffload extends Context.Tag("@sluice/openai/BatchOffload")<BatchOffload, Service>() {}

/**
 * Builds the offload over an SDK client and a limiter; an option out of range fails with a
 * {@link BatchOffloadConfigError} naming it.
 *
 * @since 0.2.0
 * @category constructors
 * @example
 * ```ts
 * import { RateLimiter } from "@sluice/core"
 * import { BatchOffload } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as Stream from "effect/Stream"
 * import OpenAIClient from "openai"
 *
 * const lines = Stream.make(JSON.stringify({
 *   custom_id: "q1",
 *   method: "POST",
 *   url: "/v1/chat/completions",
 *   body: { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }], max_tokens: 20 }
 * }))
 *
 * const program = Effect.gen(function*() {
 *   const limiter = yield* RateLimiter.RateLimiter
 *   const offload = yield* BatchOffload.make({ client: new OpenAIClient(), limiter })
 *   return yield* offload.run(lines, { onResult: (result) => Effect.log(result.line) })
 * }).pipe(Effect.provide(RateLimiter.layerMemory({ budgets: [BatchOffload.budget("gpt-4o-mini", 2_000_000)] })))
 * ```
 */
export const make: (options: Options) => Effect.Effect<Service, BatchOffloadConfigError> = internal.make

/**
 * The offload as a layer over the `OpenAi` service in context: its SDK client and its limiter (give the
 * enqueued-token budgets in `OpenAi.Options.budgets`). Its holds are `options.holds`, else the `HoldStore` in
 * context if there is one (offloads, or processes on one Redis, over the same store share the queue:
 * `RedisLimiterStore.layer` of `@sluice/redis` gives one on Redis beside its `LimiterStore`), else a store in
 * memory of this offload only.
 *
 * @since 0.2.0
 * @category layers
 * @example
 * ```ts
 * import { LimiterStore } from "@sluice/core"
 * import { BatchOffload, OpenAi } from "@sluice/openai"
 * import * as Layer from "effect/Layer"
 * import OpenAIClient from "openai"
 *
 * const Live = BatchOffload.layer().pipe(
 *   Layer.provideMerge(
 *     OpenAi.layerClient(new OpenAIClient(), { tier: 1, budgets: [BatchOffload.budget("gpt-4o-mini", 2_000_000)] })
 *   ),
 *   Layer.provide(LimiterStore.layerMemory)
 * )
 * ```
 */
export const layer = (
  options: Omit<Options, "client" | "limiter"> = {}
): Layer.Layer<BatchOffload, BatchOffloadConfigError, OpenAiService.OpenAi> =>
  Layer.effect(
    BatchOffload,
    Effect.gen(function*() {
      const openai = yield* OpenAiService.OpenAi
      // `options.holds`, else a `HoldStore` in context (shared with other offloads or processes), else one in memory
      const holds = options.holds ?? Option.getOrUndefined(yield* Effect.serviceOption(HoldStore.HoldStore))
      return yield* make({ ...options, holds, client: openai.client, limiter: openai.limiter })
    })
  )
