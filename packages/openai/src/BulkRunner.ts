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
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import type * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import * as NodeFs from "node:fs"
import * as Files from "./internal/bulkFiles.js"
import * as Input from "./internal/bulkInput.js"
import * as Stats from "./internal/bulkProgress.js"
import * as Endpoints from "./internal/endpoint.js"

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

const fileError = (failure: Files.FileFailure) =>
  new BulkFileError({ path: failure.path, operation: failure.operation, message: failure.message })

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

// ---------------------------------------------------------------------------------------------------------------
// progress
// ---------------------------------------------------------------------------------------------------------------

/**
 * A snapshot of a run's progress.
 *
 * @since 0.1.0
 * @category progress
 */
export type ProgressStats = Stats.Stats

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
export const makeProgress: Effect.Effect<Progress> = Effect.gen(function*() {
  const now = yield* Clock.currentTimeMillis
  const stats = yield* Ref.make(Stats.empty(now))
  const update = (f: (s: ProgressStats) => ProgressStats) => Ref.update(stats, f)
  return {
    stats,
    recordWait: (ms) => update((s) => ({ ...s, waits: s.waits + 1, waitMs: s.waitMs + ms })),
    recordRateLimited: update((s) => ({ ...s, rateLimited: s.rateLimited + 1 })),
    recordRetry: update((s) => ({ ...s, retries: s.retries + 1 })),
    setBinding: (binding) => update((s) => ({ ...s, binding })),
    setTheoreticalMinimum: (ms) => update((s) => ({ ...s, theoreticalMinimumMs: ms })),
    recordTokens: ({ reserved, used }) =>
      update((s) => ({ ...s, tokensReserved: s.tokensReserved + reserved, tokensUsed: s.tokensUsed + used })),
    line: Effect.zipWith(Ref.get(stats), Clock.currentTimeMillis, Stats.line)
  }
})

/**
 * Derived figures of a snapshot: done in this run, remaining, rate (per second), ETA.
 *
 * @since 0.1.0
 * @category progress
 */
export const view: (stats: ProgressStats, now: number) => {
  readonly done: number
  readonly remaining: number | undefined
  readonly elapsedMs: number
  readonly rate: number
  readonly etaMs: number | undefined
} = Stats.view

/**
 * Renders progress until interrupted (fork it next to `run`): on a terminal a single live line rewritten
 * with `\r` every `intervalMs` (default 250 ms); otherwise a log line every `intervalMs` (default 5 s).
 * Time goes through `Clock`.
 *
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
): Effect.Effect<void> => {
  const interval = options.interval ?? (options.tty ? "250 millis" : "5 seconds")
  const once = Effect.flatMap(progress.line, (text) => options.write(options.tty ? `\r${text}\x1b[K` : `${text}\n`))
  return Effect.repeat(Effect.delay(once, interval), Schedule.forever).pipe(
    Effect.asVoid,
    Effect.onInterrupt(() => options.tty ? Effect.flatMap(progress.line, (t) => options.write(`\r${t}\x1b[K\n`)) : once)
  )
}

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
 * @since 0.1.0
 * @category models
 */
export const ExitCode = { Done: 0, SomeFailed: 1, BadUsage: 2, Stopped: 3 } as const

/**
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
export const formatSummary = (summary: Summary): string => {
  const kinds = (record: Readonly<Record<string, number>>) =>
    Object.entries(record).map(([k, n]) => `${k} ${n}`).join(", ")
  const rows: Array<string> = [
    `outcome: ${summary.outcome}${summary.outcome === "stopped" ? " (rerun with the same --output to resume)" : ""}`
  ]
  if (summary.stop !== undefined) {
    rows.push(
      `stopped by: ${
        summary.stop._tag === "Signal"
          ? "signal"
          : summary.stop._tag === "Executor"
          ? `${summary.stop.kind} (${summary.stop.code}) at line ${summary.stop.line}: ${summary.stop.message}`
          : `defect at line ${summary.stop.line}: ${summary.stop.message}`
      }`
    )
  }
  rows.push(
    `lines: ${summary.total}; already done ${summary.alreadyDone}${
      summary.alreadyFailed > 0 ? ` (${summary.alreadyFailed} of them failed)` : ""
    }; succeeded ${summary.succeeded}; failed ${summary.failed}${
      summary.failed > 0 ? ` (${kinds(summary.failuresByKind)})` : ""
    }; invalid ${summary.invalid}${
      summary.invalid > 0 ? ` (${kinds(summary.invalidByReason)})` : ""
    }; not done ${summary.notDone}`
  )
  // The ratio only means something when the limits bound the run (a minimum of at least a second).
  const minimum = summary.theoreticalMinimumMs === undefined
    ? ""
    : summary.theoreticalMinimumMs < 1000
    ? " (the limits in force did not bind)"
    : ` (theoretical minimum for the limits in force ${Stats.formatDuration(summary.theoreticalMinimumMs)}, ratio ${
      (summary.wallMs / summary.theoreticalMinimumMs).toFixed(2)
    })`
  rows.push(`wall time: ${Stats.formatDuration(summary.wallMs)}${minimum}`)
  const waits = summary.waits === 0
    ? "no admission waits"
    : `${summary.waits} admissions waited (${Stats.formatDuration(summary.waitMs / summary.waits)} on average)`
  rows.push(
    `binding: ${summary.binding ?? "none"}; ${waits}; 429s ${summary.rateLimited}; retries ${summary.retries}`
  )
  if (summary.tokensReserved > 0 || summary.tokensUsed > 0) {
    const share = summary.tokensReserved > 0
      ? ` (${
        ((summary.tokensUsed / summary.tokensReserved) * 100).toFixed(0)
      }% of the reservations; the rest was refunded at settle)`
      : ""
    rows.push(`tokens reserved ${summary.tokensReserved}, used ${summary.tokensUsed}${share}`)
  }
  if (summary.superseded > 0) {
    rows.push(`resent ${summary.superseded} earlier failures (their old lines moved out of the output)`)
  }
  if (summary.repairedBytes > 0) rows.push(`repaired a torn last output line (${summary.repairedBytes} bytes)`)
  return rows.join("\n")
}

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
  }
}

type Classified =
  | { readonly _tag: "Work"; readonly request: Request }
  | { readonly _tag: "Skip"; readonly alreadyDone?: boolean }
  | { readonly _tag: "InvalidBody"; readonly request: Request; readonly message: string }

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
 * }).pipe(Effect.map(BulkRunner.exitCode))
 * ```
 */
export const run = <E, R>(
  options: BulkRunner.Options<E, R>
): Effect.Effect<Summary, BulkFileError | BulkPathError, R> =>
  Effect.scoped(
    Effect.gen(function*() {
      const progress = options.progress ?? (yield* makeProgress)
      const startedAt = yield* Clock.currentTimeMillis
      yield* Ref.update(progress.stats, (s) => ({
        ...Stats.empty(startedAt),
        binding: s.binding,
        theoreticalMinimumMs: s.theoreticalMinimumMs
      }))
      const update = (f: (s: ProgressStats) => ProgressStats) => Ref.update(progress.stats, f)

      // 0. before anything is opened for writing: distinct files, then the output's lock
      const collision = Files.checkPaths([
        { role: "input", path: options.input },
        { role: "output", path: options.output },
        ...(options.errors === undefined ? [] : [{ role: "errors file", path: options.errors }]),
        { role: "lock file", path: Files.lockPath(options.output) },
        ...(options.errors === undefined ? [] : [{ role: "errors lock file", path: Files.lockPath(options.errors) }]),
        ...(options.retryFailed === undefined ? [] : [{ role: "retried-failures file", path: options.retryFailed }])
      ])
      if (collision !== undefined) return yield* Effect.fail(collision)
      yield* Files.acquireLock(options.output)
      // the errors file is truncated and written too: two runs with distinct outputs but one errors path would
      // interleave or wipe each other's lines
      if (options.errors !== undefined) yield* Files.acquireLock(options.errors)
      if (options.restart === true && NodeFs.existsSync(options.output)) {
        yield* Effect.try({
          try: () => NodeFs.truncateSync(options.output, 0),
          catch: (cause) => new Files.FileFailure(options.output, "truncate", cause)
        })
      }

      // 1. resume: check the output is one, repair a torn tail, collect the custom_ids already written
      const { done, failed: failedBefore, repairedBytes, superseded } = yield* Files.resume(options.output, {
        retryFailed: options.retryFailed
      })
      let alreadyFailed = 0

      // Count the input in the background (for the total and ETA) while the work starts.
      const counting = options.countTotal === false ? undefined : yield* Effect.forkScoped(
        Effect.flatMap(Files.countLines(options.input), (total) => update((s) => ({ ...s, total })))
      )

      const out = yield* Files.lineWriter(options.output, { fsyncEvery: options.fsyncEvery ?? 256 })
      const errs = options.errors === undefined
        ? undefined
        : yield* Files.lineWriter(options.errors, { truncate: true, fsyncEvery: 64 })
      const report = options.onInputError ??
        ((e: BulkInputError) =>
          Console.error(
            `${options.input}:${e.line}: ${e.reason}${e.customId === undefined ? "" : ` (${e.customId})`}: ${e.message}`
          ))

      let stopReason: StopReason | undefined
      if (options.stop !== undefined) {
        yield* Effect.forkScoped(
          Effect.tap(options.stop, () =>
            Effect.sync(() => {
              if (stopReason === undefined) stopReason = { _tag: "Signal" }
            }))
        )
      }

      // 2. classify lines in order (so duplicates and line numbers are deterministic)
      const seen = new Map<string, number>()
      /** What a line is: work, a skip (blank, or already in the output), or a rejected line. Synchronous. */
      const classify = ({ invalidUtf8, line, text }: Files.NumberedLine): Classified | BulkInputError => {
        if (Files.isBlank(text)) return { _tag: "Skip" }
        const decoded = Input.decode(text)
        if (decoded._tag === "Invalid") {
          return new BulkInputError({
            line,
            reason: decoded.reason,
            message: decoded.message,
            ...(decoded.customId === undefined ? {} : { customId: decoded.customId })
          })
        }
        const first = seen.get(decoded.customId)
        if (first !== undefined) {
          return new BulkInputError({
            line,
            reason: "duplicate-custom-id",
            customId: decoded.customId,
            message: `custom_id ${JSON.stringify(decoded.customId)} already used at line ${first}`
          })
        }
        if (invalidUtf8 === true) {
          // U+FFFD stands where the bad bytes were: sending it (or recording the id) would alter the line
          return new BulkInputError({
            line,
            reason: "invalid-line",
            customId: decoded.customId,
            message: "the line is not valid UTF-8"
          })
        }
        seen.set(decoded.customId, line)
        if (done.has(decoded.customId)) {
          if (failedBefore.has(decoded.customId)) alreadyFailed++
          return { _tag: "Skip", alreadyDone: true }
        }
        const request: Request = { customId: decoded.customId, url: decoded.url, body: decoded.body, line }
        // decoded per endpoint before anything estimates it: a wrong field fails this line, not the run
        const endpoint = Endpoints.endpointOf(decoded.url)
        const problem = endpoint === undefined ? undefined : Endpoints.bodyProblem(endpoint, decoded.body)
        return problem === undefined ? { _tag: "Work", request } : { _tag: "InvalidBody", request, message: problem }
      }

      const reject = (error: BulkInputError): Effect.Effect<void, Files.FileFailure> => {
        const record = errs === undefined ? Effect.void : errs.write(JSON.stringify({
          line: error.line,
          reason: error.reason,
          custom_id: error.customId ?? null,
          message: error.message
        }))
        return record.pipe(
          Effect.zipRight(report(error)),
          Effect.zipRight(update((s) => ({
            ...s,
            invalid: s.invalid + 1,
            invalidByReason: Stats.bump(s.invalidByReason, error.reason)
          })))
        )
      }

      /** A chunk of lines, in order: the work goes to the queue (waiting for room), the rest is recorded. */
      const classifyChunk = (chunk: Chunk.Chunk<Files.NumberedLine>): Effect.Effect<void, Files.FileFailure, R> =>
        Effect.suspend(() => {
          const work: Array<Request | null> = []
          const rejected: Array<BulkInputError> = []
          const invalid: Array<{ readonly request: Request; readonly message: string }> = []
          let alreadyDone = 0
          for (const line of chunk) {
            if (stopReason !== undefined) break
            const classified = classify(line)
            if (classified instanceof BulkInputError) rejected.push(classified)
            else if (classified._tag === "Work") work.push(classified.request)
            else if (classified._tag === "InvalidBody") invalid.push(classified)
            else if (classified.alreadyDone === true) alreadyDone++
          }
          const steps: Array<Effect.Effect<void, Files.FileFailure, R>> = []
          if (alreadyDone > 0) steps.push(update((s) => ({ ...s, alreadyDone: s.alreadyDone + alreadyDone })))
          for (const error of rejected) steps.push(reject(error))
          for (const { message, request } of invalid) steps.push(fail(request, invalidBody(message)))
          if (work.length > 0) {
            steps.push(Effect.zipRight(grow(work.length), Effect.asVoid(Queue.offerAll(queue, work))))
          }
          return Effect.all(steps, { discard: true })
        })

      // 3. execute with bounded concurrency; write each finished request at once
      const write = (request: Request, response: Response | null, failure: Failure | null) =>
        out.write(JSON.stringify({
          id: `batch_req_${randomUUID().replace(/-/g, "")}`,
          custom_id: request.customId,
          response: response === null
            ? null
            : { status_code: response.statusCode, request_id: response.requestId, body: response.body },
          error: failure === null ? null : {
            code: failure.code,
            message: failure.message,
            kind: failure.kind,
            ...(failure.statusCode === undefined ? {} : { status_code: failure.statusCode })
          }
        }))

      /** Writes a terminal failure of a request. */
      const fail = (request: Request, failure: Failure): Effect.Effect<void, Files.FileFailure> =>
        Effect.zipRight(
          write(request, null, failure),
          update((s) => ({ ...s, failed: s.failed + 1, failuresByKind: Stats.bump(s.failuresByKind, failure.kind) }))
        )

      const checkResponses = options.checkResponses !== false
      /** What is wrong with a 2xx response's body for the request's endpoint, if anything. */
      const responseProblem = (request: Request, response: Response): string | undefined => {
        if (!checkResponses || response.statusCode < 200 || response.statusCode > 299) return undefined
        const endpoint = Endpoints.endpointOf(request.url)
        return endpoint === undefined ? undefined : Endpoints.responseProblem(endpoint, response.body)
      }

      const work = (request: Request): Effect.Effect<void, Files.FileFailure, R> =>
        Effect.suspend(() => {
          if (stopReason !== undefined) return Effect.void
          return update((s) => ({ ...s, inFlight: s.inFlight + 1 })).pipe(
            Effect.zipRight(Effect.exit(options.execute(request))),
            Effect.ensuring(update((s) => ({ ...s, inFlight: s.inFlight - 1 }))),
            Effect.flatMap((exit): Effect.Effect<void, Files.FileFailure> => {
              if (Exit.isSuccess(exit)) {
                const problem = responseProblem(request, exit.value)
                if (problem !== undefined) return fail(request, invalidResponse(problem, exit.value.statusCode))
                return Effect.zipRight(
                  write(request, exit.value, null),
                  update((s) => ({ ...s, succeeded: s.succeeded + 1 }))
                )
              }
              const failure = Cause.failureOption(exit.cause)
              if (Option.isSome(failure)) {
                const described = options.describe(failure.value)
                if (described.stop === true) {
                  if (stopReason === undefined) {
                    stopReason = {
                      _tag: "Executor",
                      kind: described.kind,
                      code: described.code,
                      message: described.message,
                      customId: request.customId,
                      line: request.line
                    }
                  }
                  return Effect.void
                }
                return fail(request, described)
              }
              if (Cause.isInterruptedOnly(exit.cause)) return Effect.failCause(exit.cause as Cause.Cause<never>)
              if (stopReason === undefined) {
                stopReason = {
                  _tag: "Defect",
                  customId: request.customId,
                  line: request.line,
                  message: Cause.pretty(exit.cause)
                }
              }
              return Effect.logError("bulk executor defect; stopping", exit.cause)
            })
          )
        })

      // A pool of workers over a bounded queue (Stream.mapEffect's per-element fibers cost far more). The pool
      // grows only while lines wait and no worker is idle, up to `concurrency`: memory follows the work in
      // flight, not the option (a million on a three-line file starts three workers).
      const concurrency = Math.max(1, Math.floor(options.concurrency ?? 256))
      const queue = yield* Queue.bounded<Request | null>(Math.min(concurrency, 1024))
      const workers = yield* FiberSet.make<void, Files.FileFailure>()
      let started = 0
      let idle = 0
      const worker: Effect.Effect<void, Files.FileFailure, R> = Effect.flatMap(
        Queue.take(queue),
        (request) => {
          idle--
          return request === null
            ? Effect.void
            : Effect.zipRight(work(request), Effect.suspend(() => (idle++, worker)))
        }
      )
      /** Starts workers for `count` more lines, as many as are not met by an idle worker, up to `concurrency`. */
      const grow = (count: number) =>
        Effect.flatMap(Queue.size(queue), (queued) => {
          const more = Math.min(concurrency - started, queued + count - idle)
          if (more <= 0) return Effect.void
          started += more
          idle += more
          return Effect.forEach(Array.from({ length: more }), () => FiberSet.run(workers, worker), { discard: true })
        })
      const producer = Files.lines(options.input).pipe(
        Stream.takeWhile(() => stopReason === undefined),
        Stream.runForEachChunk(classifyChunk),
        Effect.zipRight(Effect.suspend(() => Queue.offerAll(queue, Array.from({ length: started }, () => null)))),
        Effect.zipRight(FiberSet.awaitEmpty(workers))
      )
      // a worker's failure (a write that failed) ends the run at once
      yield* Effect.raceFirst(producer, FiberSet.join(workers))

      if (counting !== undefined) yield* Fiber.join(counting)
      const finishedAt = yield* Clock.currentTimeMillis
      const s = yield* Ref.get(progress.stats)
      const total = s.total ?? (s.alreadyDone + s.invalid + s.succeeded + s.failed)
      const notDone = Math.max(0, total - s.alreadyDone - s.invalid - s.succeeded - s.failed)
      const outcome: Outcome = stopReason !== undefined && (notDone > 0 || s.total === undefined)
        ? "stopped"
        : s.failed > 0 || s.invalid > 0 || alreadyFailed > 0
        ? "completed-with-failures"
        : "completed"
      const summary: Summary = {
        outcome,
        stop: stopReason,
        total,
        alreadyDone: s.alreadyDone,
        alreadyFailed,
        superseded,
        succeeded: s.succeeded,
        failed: s.failed,
        failuresByKind: s.failuresByKind,
        invalid: s.invalid,
        invalidByReason: s.invalidByReason,
        notDone,
        repairedBytes,
        wallMs: finishedAt - startedAt,
        waits: s.waits,
        waitMs: s.waitMs,
        rateLimited: s.rateLimited,
        retries: s.retries,
        binding: s.binding,
        theoreticalMinimumMs: s.theoreticalMinimumMs,
        tokensReserved: s.tokensReserved,
        tokensUsed: s.tokensUsed
      }
      return summary
    })
  ).pipe(Effect.mapError((e) =>
    e instanceof Files.FileFailure
      ? fileError(e)
      : e instanceof Files.PathProblem
      ? new BulkPathError({ reason: e.reason, path: e.path, message: e.message })
      : e
  ))
