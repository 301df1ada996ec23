/**
 * `sluice run --record FILE`: a compact, append-only JSONL record of a run. Each run (a rerun, a resume) appends
 * a segment: a `run` entry, then one `second` entry per second of the Clock (what happened in that second, and the
 * limiter's buckets and queue at its end), the `line` entries of the lines finished in it, and an `end` entry with
 * the summary. A torn last line (a crash mid-write) is cut before appending and skipped when read.
 *
 * @internal
 */
import type { RateLimiter } from "@sluice/core"
import type { BulkRunner, OpenAi } from "@sluice/openai"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as NodeFs from "node:fs"

/** The record format's version, in every `run` entry. */
export const VERSION = 1

const Counts = Schema.Record({ key: Schema.String, value: Schema.Number })

/** The start of a segment: one run of `sluice run` appending to the record. */
export const RunEntry = Schema.Struct({
  type: Schema.Literal("run"),
  version: Schema.Literal(VERSION),
  /** Clock milliseconds. */
  t: Schema.Number,
  input: Schema.String,
  output: Schema.String,
  simulate: Schema.NullOr(Schema.String),
  speed: Schema.Number
})

/** One bucket at the end of a second: `[scope, dimension, windowMs, level, limit]`. */
export const Level = Schema.Tuple(Schema.String, Schema.String, Schema.Number, Schema.Number, Schema.Number)

/**
 * One second of a run (ending at `t`): attempts admitted (sent), those that waited and for how long, 429s by
 * model and kind (`tokens/min`), other failed attempts by kind, retries by the kind they retry, attempt latencies
 * (a histogram: `[bucket, count]`, bucket `b` holding `[2^(b/4), 2^((b+1)/4))` ms, -1 below 1 ms), units reserved per scope and
 * dimension, and at `t` the requests in flight, the calls queued at the limiter and every bucket's level.
 */
export const SecondEntry = Schema.Struct({
  type: Schema.Literal("second"),
  t: Schema.Number,
  admitted: Schema.Number,
  waits: Schema.Number,
  waitMs: Schema.Number,
  succeeded: Schema.Number,
  rateLimited: Schema.Record({ key: Schema.String, value: Counts }),
  errors: Counts,
  retries: Counts,
  latency: Schema.Array(Schema.Tuple(Schema.Number, Schema.Number)),
  /** The sum of those latencies (ms): their exact mean, which the histogram gives within a bucket. */
  latencyMs: Schema.optional(Schema.Number),
  reserved: Schema.Record({ key: Schema.String, value: Counts }),
  inFlight: Schema.Number,
  queued: Schema.Number,
  levels: Schema.Array(Level)
})

/** A line finished (written to the output) in this segment. */
export const LineEntry = Schema.Struct({
  type: Schema.Literal("line"),
  t: Schema.Number,
  id: Schema.String,
  line: Schema.Number,
  model: Schema.NullOr(Schema.String),
  /** Waited for admission, all attempts; and before the first dispatch. */
  waitedMs: Schema.Number,
  firstWaitMs: Schema.Number,
  attempts: Schema.Number,
  /** `ok`, a failure's kind, or `stopped` (not written: a rerun sends it again). */
  outcome: Schema.String
})

/** The end of a segment: the run's summary, and with `--simulate` the simulator's own counts. */
export const EndEntry = Schema.Struct({
  type: Schema.Literal("end"),
  t: Schema.Number,
  outcome: Schema.String,
  total: Schema.Number,
  succeeded: Schema.Number,
  failed: Schema.Number,
  failuresByKind: Counts,
  invalid: Schema.Number,
  alreadyDone: Schema.Number,
  notDone: Schema.Number,
  waits: Schema.Number,
  waitMs: Schema.Number,
  rateLimited: Schema.Number,
  retries: Schema.Number,
  wallMs: Schema.Number,
  tokensReserved: Schema.Number,
  tokensUsed: Schema.Number,
  simulator: Schema.optional(Schema.Struct({ byStatus: Counts, byCode: Counts })),
  /** Why a run ended before its summary (outcome `refused`: a path or lock refused, the input unreadable). */
  reason: Schema.optional(Schema.String)
})

/** An entry of a run record. */
export const Entry = Schema.Union(RunEntry, SecondEntry, LineEntry, EndEntry)
export type Entry = typeof Entry.Type
export type SecondEntry = typeof SecondEntry.Type
export type LineEntry = typeof LineEntry.Type
export type EndEntry = typeof EndEntry.Type
export type RunEntry = typeof RunEntry.Type

/** A file that is not a run record, or a line of one that is not an entry. */
export class RecordError extends Schema.TaggedError<RecordError>("@sluice/cli/RecordError")("RecordError", {
  path: Schema.String,
  /** 1-based; 0 when the file itself cannot be read. */
  line: Schema.Number,
  message: Schema.String
}) {}

const decodeEntry = Schema.decodeUnknownEither(Schema.parseJson(Entry))

/**
 * The entries of a record, every line decoded; a last line without its newline that does not decode (torn by a
 * crash) is skipped. A file whose first entry is not a `run` is not a record.
 */
export const read = (path: string): Effect.Effect<ReadonlyArray<Entry>, RecordError> =>
  Effect.suspend(() => {
    let text: string
    try {
      text = NodeFs.readFileSync(path, "utf8")
    } catch (cause) {
      return Effect.fail(
        new RecordError({ path, line: 0, message: `cannot read: ${cause instanceof Error ? cause.message : cause}` })
      )
    }
    const lines = text.split("\n")
    const entries: Array<Entry> = []
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!
      if (line.trim().length === 0) continue
      const decoded = decodeEntry(line)
      if (Either.isLeft(decoded)) {
        if (i === lines.length - 1) break // torn: no newline after it
        return Effect.fail(
          new RecordError({
            path,
            line: i + 1,
            message: `not a run record entry: ${ParseResult.TreeFormatter.formatErrorSync(decoded.left)}`
          })
        )
      }
      if (entries.length === 0 && decoded.right.type !== "run") {
        return Effect.fail(
          new RecordError({ path, line: i + 1, message: "not a run record: its first entry is not a \"run\" entry" })
        )
      }
      entries.push(decoded.right)
    }
    return Effect.succeed(entries)
  })

/**
 * Opens a record to append to: a file that exists must be a record (its first line a `run` entry); a torn last
 * line is cut. Returns the file's descriptor.
 */
const openForAppend = (path: string): Effect.Effect<number, RecordError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.suspend(() => {
      try {
        if (NodeFs.existsSync(path) && NodeFs.statSync(path).size > 0) {
          const text = NodeFs.readFileSync(path, "utf8")
          const first = text.slice(0, text.indexOf("\n") === -1 ? text.length : text.indexOf("\n"))
          const decoded = decodeEntry(first)
          if (Either.isLeft(decoded) || decoded.right.type !== "run") {
            return Effect.fail(
              new RecordError({
                path,
                line: 1,
                message: "exists and is not a run record: refusing to append to it; give --record another path"
              })
            )
          }
          if (!text.endsWith("\n")) {
            NodeFs.truncateSync(path, Buffer.byteLength(text.slice(0, text.lastIndexOf("\n") + 1)))
          }
        }
        return Effect.succeed(NodeFs.openSync(path, "a"))
      } catch (cause) {
        return Effect.fail(
          new RecordError({ path, line: 0, message: `cannot open: ${cause instanceof Error ? cause.message : cause}` })
        )
      }
    }),
    (fd) => Effect.sync(() => NodeFs.closeSync(fd))
  )

/** The latency histogram's bucket of `ms`: `floor(4 log2 ms)`, -1 below 1 ms. */
export const latencyBucket = (ms: number): number => (ms < 1 ? -1 : Math.floor(4 * Math.log2(ms)))

/** The lower bound (ms) of a latency bucket. */
export const bucketFloor = (bucket: number): number => (bucket < 0 ? 0 : 2 ** (bucket / 4))

/** The `q` quantile (0-1) of a latency histogram, as its bucket's lower bound; `undefined` when empty. */
export const quantile = (histogram: ReadonlyMap<number, number>, q: number): number | undefined => {
  let total = 0
  for (const n of histogram.values()) total += n
  if (total === 0) return undefined
  const rank = Math.max(1, Math.ceil(q * total))
  let seen = 0
  for (const bucket of Array.from(histogram.keys()).sort((a, b) => a - b)) {
    seen += histogram.get(bucket)!
    if (seen >= rank) return bucketFloor(bucket)
  }
  return undefined
}

interface Window {
  admitted: number
  waits: number
  waitMs: number
  succeeded: number
  rateLimited: Record<string, Record<string, number>>
  errors: Record<string, number>
  retries: Record<string, number>
  latency: Map<number, number>
  latencyMs: number
  reserved: Record<string, Record<string, number>>
}

const emptyWindow = (): Window => ({
  admitted: 0,
  waits: 0,
  waitMs: 0,
  succeeded: 0,
  rateLimited: {},
  errors: {},
  retries: {},
  latency: new Map(),
  latencyMs: 0,
  reserved: {}
})

const bump = (counts: Record<string, number>, key: string, by = 1) => {
  counts[key] = (counts[key] ?? 0) + by
}

/** What a line's fiber (and the call fibers it forks) carry: the line's own figures. */
interface LineState {
  attempts: number
  waitedMs: number
  firstWaitMs: number | undefined
}
const currentLine = FiberRef.unsafeMake<LineState | undefined>(undefined)

/** A 429's kind: the dimension and window it names (`tokens/min`), `request_too_large`, else `unknown`. */
const rateLimitKind = (error: { readonly dimension?: string; readonly window?: string }): string =>
  error.dimension === undefined ? "unknown" : `${error.dimension}/${error.window ?? "min"}`

/** A recorder: the executor's `onEvent`, a wrapper for `execute`, and the segment's end. */
export interface Recorder {
  readonly onEvent: (event: OpenAi.CallEvent) => Effect.Effect<void>
  readonly execute: <E, R>(
    execute: (request: BulkRunner.Request) => Effect.Effect<BulkRunner.Response, E, R>,
    describe: (error: E) => BulkRunner.Failure
  ) => (request: BulkRunner.Request) => Effect.Effect<BulkRunner.Response, E, R>
  /** Flushes the last (partial) second and appends the `end` entry. */
  readonly end: (
    summary: BulkRunner.Summary,
    simulator?: { readonly byStatus: Record<string, number>; readonly byCode: Record<string, number> }
  ) => Effect.Effect<void, RecordError>
  /** Ends the segment of a run that failed before its summary: an `end` entry of outcome `refused`, nothing done. */
  readonly refused: (reason: string) => Effect.Effect<void, RecordError>
}

/**
 * Starts a segment of the record at `path` (appending; the file's lock is the caller's): writes the `run` entry
 * and, every second of the Clock until the scope closes, a `second` entry and the lines finished in it.
 */
export const make = (options: {
  readonly path: string
  readonly run: Omit<RunEntry, "type" | "version" | "t">
  readonly progress: BulkRunner.Progress
  readonly limiter: RateLimiter.Service
}): Effect.Effect<Recorder, RecordError, Scope.Scope> =>
  Effect.gen(function*() {
    const fd = yield* openForAppend(options.path)
    const write = (lines: ReadonlyArray<Entry>) =>
      Effect.try({
        try: () => {
          if (lines.length > 0) NodeFs.writeSync(fd, lines.map((entry) => JSON.stringify(entry)).join("\n") + "\n")
        },
        catch: (cause) =>
          new RecordError({
            path: options.path,
            line: 0,
            message: `cannot write: ${cause instanceof Error ? cause.message : cause}`
          })
      })
    const start = yield* Clock.currentTimeMillis
    yield* write([{ type: "run", version: VERSION, t: start, ...options.run }])

    let window = emptyWindow()
    /** Scopes charged in this segment: only their buckets are kept (a tier's presets hold dozens never used). */
    const charged = new Set<string>()
    let finished: Array<LineEntry> = []
    const flush = Effect.gen(function*() {
      const t = yield* Clock.currentTimeMillis
      const snapshot = yield* Effect.orElseSucceed(options.limiter.snapshot, () => undefined)
      const stats = yield* Ref.get(options.progress.stats)
      const w = window
      const lines = finished
      window = emptyWindow()
      finished = []
      const second: SecondEntry = {
        type: "second",
        t,
        admitted: w.admitted,
        waits: w.waits,
        waitMs: Math.round(w.waitMs),
        succeeded: w.succeeded,
        rateLimited: w.rateLimited,
        errors: w.errors,
        retries: w.retries,
        latency: Array.from(w.latency).sort((a, b) => a[0] - b[0]),
        latencyMs: Math.round(w.latencyMs),
        reserved: w.reserved,
        inFlight: stats.inFlight,
        queued: snapshot === undefined ? 0 : snapshot.waiting.interactive + snapshot.waiting.background,
        levels: (snapshot?.levels ?? []).filter((level) => charged.has(level.scope)).map((level) =>
          [
            level.scope,
            level.dimension,
            level.limit.windowMillis,
            Math.round(level.level * 100) / 100,
            level.limit.amount
          ] as const
        )
      }
      yield* write([second, ...lines])
    })
    // every second of the Clock (simulated time with --simulate): a write that fails ends the recording, not the run
    const sampler = yield* Effect.forkScoped(
      Effect.catchAll(
        Effect.repeat(Effect.zipRight(Effect.sleep("1 second"), flush), Schedule.forever),
        (error) => Effect.logWarning(`sluice: the run record stopped: ${error.message}`)
      )
    )

    const onEvent = (event: OpenAi.CallEvent): Effect.Effect<void> =>
      Effect.flatMap(FiberRef.get(currentLine), (line) =>
        Effect.sync(() => {
          const w = window
          switch (event._tag) {
            case "Admitted": {
              w.admitted++
              if (event.waitedMillis > 0) {
                w.waits++
                w.waitMs += event.waitedMillis
              }
              if (event.attempt > 1) bump(w.retries, event.retryOf ?? "unknown")
              for (const scope of event.scopes) {
                charged.add(scope)
                const reserved = (w.reserved[scope] ??= {})
                for (const [dimension, amount] of Object.entries(event.cost)) {
                  if (amount !== undefined && amount > 0) bump(reserved, dimension, amount)
                }
              }
              if (line !== undefined) {
                line.attempts = Math.max(line.attempts, event.attempt)
                line.waitedMs += event.waitedMillis
                if (line.firstWaitMs === undefined) line.firstWaitMs = event.waitedMillis
              }
              return
            }
            case "Succeeded":
              w.succeeded++
              w.latencyMs += event.latencyMillis
              w.latency.set(
                latencyBucket(event.latencyMillis),
                (w.latency.get(latencyBucket(event.latencyMillis)) ?? 0) + 1
              )
              return
            case "Failed": {
              const error = event.error
              if (error._tag === "RateLimited") bump(w.rateLimited[event.model] ??= {}, rateLimitKind(error))
              else bump(w.errors, error._tag)
              return
            }
          }
        }))

    const execute: Recorder["execute"] = (run, describe) => (request) =>
      Effect.suspend(() => {
        const state: LineState = { attempts: 0, waitedMs: 0, firstWaitMs: undefined }
        return Effect.onExit(Effect.locally(run(request), currentLine, state), (exit) =>
          Effect.flatMap(Clock.currentTimeMillis, (t) =>
            Effect.sync(() => {
              let outcome = "ok"
              if (Exit.isFailure(exit)) {
                const error = Cause.failureOption(exit.cause)
                const described = Option.isSome(error) ? describe(error.value) : undefined
                outcome = described === undefined || described.stop === true ? "stopped" : described.kind
              }
              finished.push({
                type: "line",
                t,
                id: request.customId,
                line: request.line,
                model: typeof request.body.model === "string" ? request.body.model : null,
                waitedMs: Math.round(state.waitedMs),
                firstWaitMs: Math.round(state.firstWaitMs ?? 0),
                attempts: state.attempts,
                outcome
              })
            })))
      })

    /** Stops the sampler, writes the last (partial) second and the `end` entry, and syncs the file. */
    const close = (entry: (t: number) => EndEntry) =>
      Effect.zipRight(
        Effect.zipRight(Fiber.interrupt(sampler), flush),
        Effect.flatMap(Clock.currentTimeMillis, (t) =>
          Effect.zipRight(
            write([entry(t)]),
            Effect.try({
              try: () => NodeFs.fsyncSync(fd),
              catch: (cause) =>
                new RecordError({ path: options.path, line: 0, message: `cannot fsync: ${String(cause)}` })
            })
          ))
      )

    const refused: Recorder["refused"] = (reason) =>
      close((t) => ({
        type: "end",
        t,
        outcome: "refused",
        total: 0,
        succeeded: 0,
        failed: 0,
        failuresByKind: {},
        invalid: 0,
        alreadyDone: 0,
        notDone: 0,
        waits: 0,
        waitMs: 0,
        rateLimited: 0,
        retries: 0,
        wallMs: t - start,
        tokensReserved: 0,
        tokensUsed: 0,
        reason
      }))

    const end: Recorder["end"] = (summary, simulator) =>
      close((t) => ({
        type: "end",
        t,
        outcome: summary.outcome,
        total: summary.total,
        succeeded: summary.succeeded,
        failed: summary.failed,
        failuresByKind: summary.failuresByKind,
        invalid: summary.invalid,
        alreadyDone: summary.alreadyDone,
        notDone: summary.notDone,
        waits: summary.waits,
        waitMs: Math.round(summary.waitMs),
        rateLimited: summary.rateLimited,
        retries: summary.retries,
        wallMs: summary.wallMs,
        tokensReserved: summary.tokensReserved,
        tokensUsed: summary.tokensUsed,
        ...(simulator === undefined ? {} : { simulator })
      }))

    return { onEvent, execute, end, refused }
  })
