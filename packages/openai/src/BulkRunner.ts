/**
 * The bulk runner: reads a Batch API request file (JSONL) as a stream, runs every request through an
 * executor you provide (the rate limiting is the executor's job; the runner keeps enough work in flight
 * that the limiter, not the runner, is the bottleneck), and appends one Batch API output line per
 * `custom_id`. Rerunning with the same output file resumes: every `custom_id` already there is skipped
 * and a torn last line is repaired first, so across crashes every `custom_id` ends in exactly one line.
 * Before anything is opened for writing, the input, output and errors paths must be distinct files (by real
 * path and by device and inode), the output must be an output file, and the run takes the output's lock
 * (`<output>.lock`), so two runs never send the same lines, and the errors file's (`<errors>.lock`), so two
 * runs never write one errors file.
 *
 * For OpenAI, `BulkExecutor.make` builds the executor (`execute` and `describe`) that `sluice run` uses: every
 * line through the `OpenAi` service, its progress fed to the run's {@link Progress}.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as Files from "./internal/bulkFiles.js"
import * as Input from "./internal/bulkInput.js"
import * as Stats from "./internal/bulkProgress.js"
import * as internal from "./internal/bulkRun.js"

// ---------------------------------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------------------------------

/**
 * Why an input line was rejected.
 *
 * @since 0.1.0
 * @category errors
 */
export const InputErrorReason = Schema.Literal(
  "malformed-json",
  "not-an-object",
  "missing-custom-id",
  "duplicate-custom-id",
  "unsupported-url",
  "unsupported-method",
  "invalid-line"
)

/**
 * @since 0.1.0
 * @category errors
 */
export type InputErrorReason = typeof InputErrorReason.Type

/**
 * A bad input line: reported (to the errors sink) with its line number; the rest of the file proceeds.
 *
 * @since 0.1.0
 * @category errors
 */
export class BulkInputError
  extends Schema.TaggedError<BulkInputError>("@sluice/openai/BulkInputError")("BulkInputError", {
    /** 1-based line number in the input file. */
    line: Schema.Number,
    reason: InputErrorReason,
    customId: Schema.optional(Schema.String),
    message: Schema.String
  })
{}

/**
 * The input or output file cannot be opened, read or written. Lines already written stay written.
 *
 * @since 0.1.0
 * @category errors
 */
export class BulkFileError extends Schema.TaggedError<BulkFileError>("@sluice/openai/BulkFileError")("BulkFileError", {
  path: Schema.String,
  operation: Schema.String,
  message: Schema.String
}) {}

/**
 * A run that must not start, refused before any file is opened for writing:
 *
 * - `same-file`: two of the input, output, errors (and lock, retried-failures) paths are one file — by real
 *   path, through symbolic links, or by device and inode (hard links);
 * - `locked`: another run holds the output's lock (`<output>.lock`) or the errors file's (`<errors>.lock`); the
 *   message names its pid and host;
 * - `not-output`: the output exists but is not a Batch API output file (it would be damaged by appending).
 *
 * @since 0.1.0
 * @category errors
 */
export class BulkPathError extends Schema.TaggedError<BulkPathError>("@sluice/openai/BulkPathError")("BulkPathError", {
  reason: Schema.Literal("same-file", "locked", "not-output"),
  path: Schema.String,
  message: Schema.String
}) {}

// ---------------------------------------------------------------------------------------------------------------
// executor contract
// ---------------------------------------------------------------------------------------------------------------

/**
 * The endpoints the runner accepts.
 *
 * @since 0.1.0
 * @category models
 */
export type Endpoint = (typeof Input.supportedUrls)[number]

/**
 * @since 0.1.0
 * @category models
 */
export const endpoints: ReadonlyArray<Endpoint> = Input.supportedUrls

/**
 * One request handed to the executor.
 *
 * @since 0.1.0
 * @category models
 */
export interface Request {
  readonly customId: string
  readonly url: Endpoint
  /** The Batch API `body`, as decoded (it carries the `model`). */
  readonly body: Readonly<Record<string, unknown>>
  /** 1-based line number in the input file. */
  readonly line: number
}

/**
 * What the executor returns for a finished request (any HTTP status the caller considers final and
 * successful enough to record as a `response`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Response {
  readonly statusCode: number
  readonly requestId: string | null
  readonly body: unknown
}

/**
 * How the runner records a typed executor failure. With `stop: true` (e.g. `insufficient_quota`) the
 * request is NOT written (it was not done: a rerun retries it) and the runner stops taking new lines.
 *
 * @since 0.1.0
 * @category models
 */
export interface Failure {
  readonly kind: string
  readonly code: string
  readonly message: string
  readonly statusCode?: number | undefined
  readonly stop?: boolean | undefined
}

/**
 * Why a run stopped early.
 *
 * @since 0.1.0
 * @category models
 */
export type StopReason =
  | {
    readonly _tag: "Executor"
    readonly kind: string
    readonly code: string
    readonly message: string
    readonly customId: string
    readonly line: number
  }
  | { readonly _tag: "Signal" }
  | { readonly _tag: "Defect"; readonly customId: string; readonly line: number; readonly message: string }
  /** The {@link Offload} left lines not done (handed back by the Batch API, cancelled, or its API failed). */
  | { readonly _tag: "Offload"; readonly message: string }

/**
 * Another way through for some of a run's lines — the Batch API (`BatchOffload`), as `sluice run --via batch`
 * uses it: every line not yet done that `accepts` takes is handed to `run` instead of the executor, and `run`
 * writes their output lines through the run's own writer (`OffloadIo.write`), in the same output file, under the
 * same lock, resumed the same way. Interrupted (not waited for) when the run's `stop` completes: what it records
 * (its state) must let a rerun go on.
 *
 * @since 0.2.0
 * @category models
 * @example
 * ```ts
 * import type { BulkRunner } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as Stream from "effect/Stream"
 *
 * // embeddings lines go another way: each answered with a failure line (a real offload would send them)
 * const elsewhere: BulkRunner.Offload = {
 *   accepts: (request) => request.url === "/v1/embeddings",
 *   // checked with the run's own paths before anything is opened
 *   paths: [{ role: "offload state", path: "results.elsewhere.json" }],
 *   // locked for the run's whole length, like the output: a second run on it is refused, naming this one
 *   locks: ["results.elsewhere.json"],
 *   run: (io) =>
 *     Effect.as(
 *       Stream.runForEach(Stream.filter(io.lines, (text) => text !== ""), (text) => {
 *         const customId = String(JSON.parse(text).custom_id)
 *         const error = { kind: "Elsewhere", code: "not_sent", message: "not sent" }
 *         return io.write(JSON.stringify({ custom_id: customId, response: null, error }), error)
 *       }),
 *       {}
 *     )
 * }
 * ```
 */
export interface Offload<R = never> {
  /** Whether this line goes to the offload. Asked once per valid line not yet in the output, in input order. */
  readonly accepts: (request: Request) => boolean
  /** Files the offload writes (its state file), checked with the run's paths before anything is opened. */
  readonly paths?: ReadonlyArray<{ readonly role: string; readonly path: string }> | undefined
  /**
   * Files the run locks for its whole length as it does the output (`<path>.lock`), before `prepare`: its state
   * file, which other outputs may map to. A second run on one of them is refused, naming the run that holds it.
   *
   * @since 0.2.0
   */
  readonly locks?: ReadonlyArray<string> | undefined
  /** Runs once the output's lock is held and the output resumed, before any line is asked about (read state here). */
  readonly prepare?: Effect.Effect<void, BulkFileError, R> | undefined
  /**
   * Runs the lines accepted, started once the output's lock is held and the output resumed. Ends with `stop` set
   * when lines it took are left not done (the run's outcome is then `stopped`).
   */
  readonly run: (io: OffloadIo) => Effect.Effect<{ readonly stop?: string | undefined }, BulkFileError, R>
}

/**
 * What an {@link Offload} gets from the run.
 *
 * @since 0.2.0
 * @category models
 */
export interface OffloadIo {
  /**
   * The input's lines in order, each line the offload did not take as an empty string (so a line's 1-based
   * number is its position in the stream); it ends with the input.
   */
  readonly lines: Stream.Stream<string>
  /** The `custom_id`s already in the output (never to be written again). */
  readonly done: ReadonlySet<string>
  /** Appends one output line (its JSON text); `failure`, when it records one (its `kind` is counted). */
  readonly write: (line: string, failure: { readonly kind: string } | null) => Effect.Effect<void, BulkFileError>
}

// ---------------------------------------------------------------------------------------------------------------
// progress
// ---------------------------------------------------------------------------------------------------------------

/**
 * A snapshot of a run's progress: its {@link Counts} so far, the input's size once counted, the requests in
 * flight and when the run started.
 *
 * @since 0.1.0
 * @category progress
 */
export interface ProgressStats extends Counts {
  /** Non-blank input lines, once counted (`countTotal`); `undefined` until then. */
  readonly total: number | undefined
  readonly inFlight: number
  /**
   * The lines sent to the workers' queue so far and what they weigh (the output each may ask for plus a quarter of
   * its length: about the tokens it takes, without tokenizing), and of them those that succeeded (a line that failed
   * leaves both: a call refused at once did not take the time its weight says). The ETA weighs the lines left by them
   * ({@link view}): a run sent largest first ends its heavy lines first, and counting lines alone would say it has
   * longer to go than it has. `undefined` with an offload (the Batch API takes lines unweighed).
   *
   * @since 0.2.0
   */
  readonly weights?: {
    readonly handed: number
    readonly handedWeight: number
    readonly finished: number
    readonly finishedWeight: number
  } | undefined
  /** When the run started (`Clock` milliseconds). */
  readonly startedAt: number
}

/**
 * Live progress: a `Ref` of {@link ProgressStats} plus the hooks an executor feeds (waits, 429s, retries,
 * the binding budget, tokens reserved versus used, the theoretical minimum wall time).
 *
 * @since 0.1.0
 * @category progress
 */
export interface Progress {
  readonly stats: Ref.Ref<ProgressStats>
  /** The executor waited `ms` for admission. */
  readonly recordWait: (ms: number) => Effect.Effect<void>
  /** The provider answered 429. */
  readonly recordRateLimited: Effect.Effect<void>
  /** The executor retried a request. */
  readonly recordRetry: Effect.Effect<void>
  /** The dimension/budget currently binding, e.g. `"tokens/min gpt-4o-mini"`. */
  readonly setBinding: (binding: string | undefined) => Effect.Effect<void>
  /** The theoretical minimum wall time for the limits in force. */
  readonly setTheoreticalMinimum: (ms: number) => Effect.Effect<void>
  /** Tokens reserved at admission and actually used (settled). */
  readonly recordTokens: (tokens: { readonly reserved: number; readonly used: number }) => Effect.Effect<void>
  /** A one-line rendering of the current state. */
  readonly line: Effect.Effect<string>
}

/**
 * Creates a {@link Progress} (its clock starts now; `run` restarts it when the run starts).
 *
 * @since 0.1.0
 * @category progress
 */
export const makeProgress: Effect.Effect<Progress> = Stats.make

/**
 * Derived figures of a snapshot: done in this run, remaining, rate (per second), ETA (by the lines' weight when the
 * snapshot has {@link ProgressStats.weights} and some of it has succeeded, else by lines).
 *
 * @since 0.1.0
 * @category progress
 */
export const view: (stats: ProgressStats, now: number) => ProgressView = Stats.view

/**
 * What {@link view} derives from a snapshot.
 *
 * @since 0.2.0
 * @category progress
 */
export interface ProgressView {
  /** Requests finished (succeeded or failed) in this run. */
  readonly done: number
  /** Requests left, once the input is counted. */
  readonly remaining: number | undefined
  readonly elapsedMs: number
  /** Requests finished per second in this run. */
  readonly rate: number
  readonly etaMs: number | undefined
}

/**
 * Reports progress until interrupted (fork it next to {@link run}): `report` gets the progress line
 * ({@link Progress}'s `line`) every `interval`, and once more with `last: true` when interrupted. Time goes
 * through `Clock`. What to do with the line — a log, a terminal, a metric — is the caller's: the `sluice`
 * command rewrites one terminal line in place (`Cli.renderProgress`).
 *
 * @since 0.2.0
 * @category progress
 * @example
 * ```ts
 * import { BulkRunner } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as Fiber from "effect/Fiber"
 *
 * const program = Effect.gen(function*() {
 *   const progress = yield* BulkRunner.makeProgress
 *   const reporter = yield* Effect.fork(
 *     BulkRunner.reportProgress(progress, {
 *       interval: "10 seconds",
 *       report: (line) => Effect.logInfo(line)
 *     })
 *   )
 *   return yield* BulkRunner.run({
 *     input: "requests.jsonl",
 *     output: "results.jsonl",
 *     progress,
 *     execute: (request) =>
 *       Effect.succeed({ statusCode: 200, requestId: null, body: { object: "list", data: [], id: request.customId } }),
 *     describe: (error: never) => error
 *   }).pipe(Effect.ensuring(Fiber.interrupt(reporter)))
 * })
 * ```
 */
export const reportProgress = (
  progress: Progress,
  options: {
    readonly interval: Duration.DurationInput
    readonly report: (line: string, last: boolean) => Effect.Effect<void>
  }
): Effect.Effect<void> => Stats.every(progress, options.interval, options.report)

/**
 * Renders progress until interrupted: on a terminal a single live line rewritten with `\r` every `intervalMs`
 * (default 250 ms); otherwise a log line every `intervalMs` (default 5 s).
 *
 * @deprecated Since 0.2.0: terminal output is the command's. Use `Cli.renderProgress(progress, tty ? "line" :
 * "log", write)` of `@sluice/cli` (the same output at the default intervals), or {@link reportProgress} with your
 * own output.
 * @since 0.1.0
 * @category progress
 */
export const render = (
  progress: Progress,
  options: {
    readonly tty: boolean
    readonly write: (text: string) => Effect.Effect<void>
    readonly interval?: Duration.DurationInput | undefined
  }
): Effect.Effect<void> =>
  Stats.every(
    progress,
    options.interval ?? (options.tty ? "250 millis" : "5 seconds"),
    (text, last) => options.write(options.tty ? `\r${text}\x1b[K${last ? "\n" : ""}` : `${text}\n`)
  )

// ---------------------------------------------------------------------------------------------------------------
// summary
// ---------------------------------------------------------------------------------------------------------------

/**
 * The end of a run.
 *
 * - `completed`: every valid `custom_id` has its line and none failed;
 * - `completed-with-failures`: every valid `custom_id` has its line, some with `error`, or some input
 *   lines were invalid;
 * - `stopped`: stopped early (quota, signal, executor defect); rerun with the same output to resume.
 *
 * @since 0.1.0
 * @category models
 */
export type Outcome = "completed" | "completed-with-failures" | "stopped"

/**
 * What a run has done so far, as the live progress and the summary report it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Counts {
  /** Skipped: already in the output file. */
  readonly alreadyDone: number
  readonly succeeded: number
  readonly failed: number
  readonly failuresByKind: Readonly<Record<string, number>>
  readonly invalid: number
  readonly invalidByReason: Readonly<Record<string, number>>
  /** Admissions that waited for room, and for how long in all. */
  readonly waits: number
  readonly waitMs: number
  readonly rateLimited: number
  readonly retries: number
  /** Filled by the executor through the progress hooks. */
  readonly binding: string | undefined
  readonly theoreticalMinimumMs: number | undefined
  readonly tokensReserved: number
  readonly tokensUsed: number
}

/**
 * The end of a run: its {@link Counts} and how it ended.
 *
 * @since 0.1.0
 * @category models
 */
export interface Summary extends Counts {
  readonly outcome: Outcome
  readonly stop: StopReason | undefined
  /** Non-blank input lines. */
  readonly total: number
  /** Valid requests with no output line yet (resumable). */
  readonly notDone: number
  /** Of `alreadyDone`, those whose line records a failure (they make the outcome `completed-with-failures`). */
  readonly alreadyFailed: number
  /** Failure lines taken out of the output to be resent (the `retryFailed` option). */
  readonly superseded: number
  /** Bytes of a torn last output line removed before appending. */
  readonly repairedBytes: number
  readonly wallMs: number
}

/**
 * Process exit codes: 0 all done, 1 some failed (or invalid input lines), 2 bad usage (the CLI's), 3 stopped
 * early (resumable).
 *
 * @deprecated Since 0.2.0: exit codes are the command's. Use `Cli.ExitCode` of `@sluice/cli` (the same values).
 * @since 0.1.0
 * @category models
 */
export const ExitCode = { Done: 0, SomeFailed: 1, BadUsage: 2, Stopped: 3 } as const

/**
 * The exit code for a summary: 3 when it stopped, 1 when it completed with failures, else 0.
 *
 * @deprecated Since 0.2.0: exit codes are the command's. Use `Cli.exitCode` of `@sluice/cli` (the same mapping),
 * or read the summary's `outcome`.
 * @since 0.1.0
 * @category models
 */
export const exitCode = (summary: Summary): 0 | 1 | 3 =>
  summary.outcome === "stopped" ? 3 : summary.outcome === "completed-with-failures" ? 1 : 0

/**
 * A multi-line human summary.
 *
 * @since 0.1.0
 * @category models
 */
export const formatSummary: (summary: Summary) => string = Stats.formatSummary

// ---------------------------------------------------------------------------------------------------------------
// run
// ---------------------------------------------------------------------------------------------------------------

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace BulkRunner {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Options<E, R> {
    /** The Batch API request file (JSONL). */
    readonly input: string
    /** The output file (Batch API output format); appended to, and resumed from when it exists. */
    readonly output: string
    /** An errors file (JSONL, one line per rejected input line); truncated at the start of each run. */
    readonly errors?: string | undefined
    /** Runs one request; rate limiting, retries and admission are its job. */
    readonly execute: (request: Request) => Effect.Effect<Response, E, R>
    /** Describes a typed terminal failure of `execute`. */
    readonly describe: (error: E) => Failure
    /** How many requests may be in flight at once (default 256). */
    readonly concurrency?: number | undefined
    /**
     * The order the lines go to `execute` in. `largest-first` (the default) takes the lines to send `orderWindow` at a
     * time (or fewer, once they reach 8 MiB of text; the rest when the input ends) and hands each window over largest
     * first: by the output a line may ask for as the estimator reserves it (`TokenEstimator.maxOutputOf`: `n` ×
     * `max_tokens` / `max_completion_tokens` / `max_output_tokens`, else the model's default, for each prompt of a
     * completions list; embeddings and moderations none; an image counts as 4,096 tokens), then by its length; lines of
     * one size keep the file's order. An answer takes about as long as its output, so the long calls start first and
     * the short ones fill the budget after them: the run does not end on a long call sent last (`sluice run --limits`
     * on 90 calls of `max_tokens` 2,048-8,192 at 200,000 TPM: 72.5 s in the file's order, 65.7 s largest first, over
     * HTTP). In the run's first window, each model's smallest line moves to the front: a pool whose limits are learned
     * (none given) lets its herd out after its first answer, and the smallest line's comes soonest (650 mixed calls
     * with no limits, in virtual time: 22.9 s with the largest as the probe, 20.9 s with the smallest, against a
     * minimum of 20.6 s). `input` keeps the file's order and hands each line over as soon as it is read (for an input
     * still being written, a pipe). Either way lines are classified in the file's order (line numbers, duplicates,
     * rejected lines), output lines are written as their calls end, and a rerun resumes by `custom_id`. The default was
     * the file's order before 0.2.0. The model's default output is `TokenEstimator.defaultMaxOutputTokens` of the
     * line's `model` (a task or an alias that a router resolves counts 1,024).
     *
     * @since 0.2.0
     */
    readonly order?: "input" | "largest-first" | undefined
    /**
     * How many lines to send `order: "largest-first"` sorts at once (default 1,024): a line waits behind at most that
     * many read after it, and up to that many decoded lines wait for the window to fill beside those in the queue.
     *
     * @since 0.2.0
     */
    readonly orderWindow?: number | undefined
    /** Completing this effect stops the run gracefully (no new lines; in-flight work finishes). */
    readonly stop?: Effect.Effect<void> | undefined
    /** Progress to feed (create with {@link makeProgress} to render it or to give its hooks to the executor). */
    readonly progress?: Progress | undefined
    /** Called for each rejected input line (default: one line to stderr through `Console.error`). */
    readonly onInputError?: ((error: BulkInputError) => Effect.Effect<void>) | undefined
    /** fsync the output every this many lines (default 256), at least once a second while writing, and at the end. */
    readonly fsyncEvery?: number | undefined
    /** Count the input lines first for the progress total and ETA (default true). */
    readonly countTotal?: boolean | undefined
    /**
     * Check each 2xx response's body against its endpoint's shape (default true): a mismatch is written as
     * an {@link invalidResponse} failure instead of a success.
     */
    readonly checkResponses?: boolean | undefined
    /** Start over: empty the output (after the path checks and the lock) instead of resuming from it. */
    readonly restart?: boolean | undefined
    /**
     * Resend the lines whose output line records a failure: those lines are first appended to this file (a
     * history, never truncated) and taken out of the output, so each `custom_id` still ends in exactly one
     * output line. Without it, earlier failures count as done (and make the outcome `completed-with-failures`).
     */
    readonly retryFailed?: string | undefined
    /** Lines to send another way (the Batch API): see {@link Offload}. */
    readonly offload?: Offload<R> | undefined
  }
}

/**
 * The failure written for a line whose `body` does not have its endpoint's shape (a field of the wrong type,
 * a required field missing): `kind: "InvalidBody"`, `code: "invalid_body"`, the message naming the field
 * (`body.messages: expected ReadonlyArray<Message>, got an object`). The request is not sent.
 *
 * @since 0.1.0
 * @category models
 */
export const invalidBody = (message: string): Failure => ({ kind: "InvalidBody", code: "invalid_body", message })

/**
 * The failure written for a 2xx response whose body is not the endpoint's JSON (an HTML page, a bare array,
 * a chat completion without `choices`): `kind: "InvalidResponse"`, `code: "invalid_response"`, with the
 * status code. Not retried by the runner (the executor's retry policy decides that before answering).
 *
 * @since 0.1.0
 * @category models
 */
export const invalidResponse = (message: string, statusCode: number): Failure => ({
  kind: "InvalidResponse",
  code: "invalid_response",
  message,
  statusCode
})

/**
 * Runs a bulk file. Fails only when it must not start (`BulkPathError`: two paths name one file, the output is
 * locked by another run or is not an output file) or a file cannot be opened, read or written
 * (`BulkFileError`); every other problem is recorded in the output (typed executor failures), reported with its
 * line number (bad input lines) or ends the run early with `outcome: "stopped"` (a `stop` failure, the `stop` signal, an executor
 * defect). Interrupting the fiber abandons in-flight requests without writing them: a rerun retries them.
 *
 * @since 0.1.0
 * @category running
 * @example
 * ```ts
 * import { BulkRunner } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 *
 * const program = BulkRunner.run({
 *   input: "requests.jsonl",
 *   output: "results.jsonl",
 *   errors: "errors.jsonl",
 *   execute: (request) =>
 *     Effect.succeed({ statusCode: 200, requestId: null, body: { id: request.customId, choices: [], data: [] } }),
 *   describe: (error: never) => error
 * }).pipe(Effect.tap((summary) => Effect.log(BulkRunner.formatSummary(summary))))
 * ```
 */
export const run: <E, R>(
  options: BulkRunner.Options<E, R>
) => Effect.Effect<Summary, BulkFileError | BulkPathError, R> = (options) => internal.run(options)

/**
 * The check {@link run} makes before it opens anything, for files a caller writes beside a run (a run record):
 * fails with `BulkPathError` (`same-file`) naming the first pair of roles that lead to one file, by real path
 * (through symbolic links) or by device and inode (hard links). Nothing is opened.
 *
 * @since 0.2.0
 * @category running
 * @example
 * ```ts
 * import { BulkRunner } from "@sluice/openai"
 *
 * const check = BulkRunner.checkPaths([
 *   { role: "input", path: "requests.jsonl" },
 *   { role: "output", path: "results.jsonl" },
 *   { role: "run record", path: "run.record.jsonl" }
 * ])
 * ```
 */
export const checkPaths = (
  files: ReadonlyArray<{ readonly role: string; readonly path: string }>
): Effect.Effect<void, BulkPathError> =>
  Effect.suspend(() => {
    const problem = Files.checkPaths(files)
    return problem === undefined
      ? Effect.void
      : Effect.fail(new BulkPathError({ reason: problem.reason, path: problem.path, message: problem.message }))
  })

/**
 * The lock {@link run} takes on its output, for another file a caller writes (a run record): `<path>.lock` is
 * held for the scope, a second holder is refused (`BulkPathError`, `locked`, naming the pid and host), a lock
 * left by a dead process of this host is taken over.
 *
 * @since 0.2.0
 * @category running
 * @example
 * ```ts
 * import { BulkRunner } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.scoped(Effect.zipRight(BulkRunner.lock("run.record.jsonl"), Effect.log("locked")))
 * ```
 */
export const lock = (path: string): Effect.Effect<void, BulkPathError | BulkFileError, Scope.Scope> =>
  Files.acquireLock(path).pipe(Effect.mapError((e) =>
    e instanceof Files.PathProblem
      ? new BulkPathError({ reason: e.reason, path: e.path, message: e.message })
      : new BulkFileError({ path: e.path, operation: e.operation, message: e.message })
  ))

/**
 * The lock file of a path {@link lock} takes: `<path>.lock`.
 *
 * @since 0.2.0
 * @category running
 * @example
 * ```ts
 * import { BulkRunner } from "@sluice/openai"
 *
 * BulkRunner.lockPath("results.jsonl") // "results.jsonl.lock"
 * ```
 */
export const lockPath: (path: string) => string = Files.lockPath
