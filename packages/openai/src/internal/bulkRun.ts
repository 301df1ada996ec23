/**
 * The bulk runner's mechanism: path checks and locks, resume, the classifier over the input's lines, the
 * pool of workers over a bounded queue, the output and errors writers, and the summary. The documentation
 * and the types are in `BulkRunner.ts`; `BulkRunner.run` is {@link run}.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as NodeFs from "node:fs"
import type {
  BulkRunner,
  Failure,
  Outcome,
  ProgressStats,
  Request,
  Response,
  StopReason,
  Summary
} from "../BulkRunner.js"
import { BulkFileError, BulkInputError, BulkPathError, invalidBody, invalidResponse } from "../BulkRunner.js"
import * as Files from "./bulkFiles.js"
import * as Input from "./bulkInput.js"
import * as Stats from "./bulkProgress.js"
import * as Endpoints from "./endpoint.js"
import * as OutputLine from "./outputLine.js"

/** A window of `order: "largest-first"` also ends at this many characters of lines (a window of large lines). */
const ORDER_WINDOW_CHARS = 8 * 1024 * 1024

type Classified =
  | { readonly _tag: "Work"; readonly request: Request }
  | { readonly _tag: "Skip"; readonly alreadyDone?: boolean }
  | { readonly _tag: "InvalidBody"; readonly request: Request; readonly message: string }

const fileError = (failure: Files.FileFailure) =>
  new BulkFileError({ path: failure.path, operation: failure.operation, message: failure.message })

/** @internal */
export const run = <E, R>(
  options: BulkRunner.Options<E, R>
): Effect.Effect<Summary, BulkFileError | BulkPathError, R> =>
  Effect.scoped(
    Effect.gen(function*() {
      const progress = options.progress ?? (yield* Stats.make)
      const startedAt = yield* Clock.currentTimeMillis
      yield* Ref.update(progress.stats, (s) => ({
        ...Stats.empty(startedAt),
        binding: s.binding,
        theoreticalMinimumMs: s.theoreticalMinimumMs,
        weights: options.offload === undefined
          ? { handed: 0, handedWeight: 0, finished: 0, finishedWeight: 0 }
          : undefined
      }))
      const update = (f: (s: ProgressStats) => ProgressStats) => Ref.update(progress.stats, f)

      // 0. before anything is opened for writing: distinct files, then the output's lock
      const collision = Files.checkPaths([
        { role: "input", path: options.input },
        { role: "output", path: options.output },
        ...(options.errors === undefined ? [] : [{ role: "errors file", path: options.errors }]),
        { role: "lock file", path: Files.lockPath(options.output) },
        ...(options.errors === undefined ? [] : [{ role: "errors lock file", path: Files.lockPath(options.errors) }]),
        ...(options.retryFailed === undefined ? [] : [{ role: "retried-failures file", path: options.retryFailed }]),
        ...(options.offload?.paths ?? []),
        ...(options.offload?.locks ?? []).map((path) => ({ role: "offload lock file", path: Files.lockPath(path) }))
      ])
      if (collision !== undefined) return yield* Effect.fail(collision)
      yield* Files.acquireLock(options.output)
      // the errors file is truncated and written too: two runs with distinct outputs but one errors path would
      // interleave or wipe each other's lines
      if (options.errors !== undefined) yield* Files.acquireLock(options.errors)
      for (const path of options.offload?.locks ?? []) yield* Files.acquireLock(path)
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

      // the offload (the Batch API): the input's lines in chunks, each line it does not take as "" (numbering)
      const offload = options.offload
      if (offload?.prepare !== undefined) yield* offload.prepare
      const handed = yield* Queue.bounded<ReadonlyArray<string> | null>(16)
      let handedLine = 0
      const offloadFiber = offload === undefined ? undefined : yield* Effect.forkScoped(offload.run({
        lines: Stream.fromQueue(handed).pipe(
          Stream.takeWhile((chunk): chunk is ReadonlyArray<string> => chunk !== null),
          Stream.flattenIterables
        ),
        done,
        write: (line, failure) =>
          Effect.zipRight(
            Effect.mapError(out.write(line), fileError),
            update((s) =>
              failure === null
                ? { ...s, succeeded: s.succeeded + 1 }
                : { ...s, failed: s.failed + 1, failuresByKind: Stats.bump(s.failuresByKind, failure.kind) }
            )
          )
      }))
      /** An offload that fails ends the run at once (the producer may be waiting for it to take lines). */
      const offloadFailure = offloadFiber === undefined ? Effect.never : Effect.flatMap(
        Fiber.await(offloadFiber),
        (exit) => Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? exit : Effect.never
      )
      let inputEnded = false
      if (offloadFiber !== undefined) {
        // an offload that ends (whatever its exit) before the input does takes no more lines: the run stops with
        // its reason, and what the producer still hands it is drained (so it never waits on a queue nobody reads)
        yield* Effect.forkScoped(Effect.flatMap(Fiber.await(offloadFiber), (exit) =>
          Effect.zipRight(
            Effect.sync(() => {
              if (inputEnded || stopReason !== undefined) return
              const stop = Exit.isSuccess(exit) ? exit.value.stop : undefined
              stopReason = { _tag: "Offload", message: stop ?? "the offload ended before the input did" }
            }),
            Effect.forever(Queue.take(handed))
          )))
      }
      if (options.stop !== undefined) {
        yield* Effect.forkScoped(
          Effect.tap(options.stop, () =>
            Effect.sync(() => {
              if (stopReason === undefined) stopReason = { _tag: "Signal" }
            }))
        )
      }

      // 2. classify lines in order (so duplicates and line numbers are deterministic)
      const largestFirst = (options.order ?? "largest-first") === "largest-first"
      const window = options.orderWindow === undefined || Number.isNaN(options.orderWindow)
        ? 1_024
        : Math.max(1, Math.floor(options.orderWindow))
      // largest first: the lines to send wait here until a window is full (`window` lines, or ORDER_WINDOW_CHARS of
      // them), then go to the queue sorted; what is left goes when the input ends
      let pending: Array<{ readonly request: Request; readonly size: Input.Size }> = []
      let pendingChars = 0
      let firstWindow = true
      // without an offload, each line to send weighs what `Input.weightOf` says: the ETA weighs the lines left by it
      const weightOf = new WeakMap<Request, number>()
      /**
       * `s` with `handed` more lines handed, of `handedWeight`, and `finished` more finished, of `finishedWeight`
       * (negative: taken back); a run with an offload has no weights.
       */
      const weighed = (
        s: ProgressStats,
        handed: number,
        handedWeight: number,
        finished = 0,
        finishedWeight = 0
      ): ProgressStats =>
        s.weights === undefined ? s : {
          ...s,
          weights: {
            handed: s.weights.handed + handed,
            handedWeight: s.weights.handedWeight + handedWeight,
            finished: s.weights.finished + finished,
            finishedWeight: s.weights.finishedWeight + finishedWeight
          }
        }
      /**
       * The window's lines, largest first (a stable sort: lines of one size keep the file's order); in the run's first
       * window, each model's smallest line (the first of them in the file) goes ahead of the rest: a pool with learned
       * limits lets its herd out after its first answer (its probe), and the smallest line's is the soonest.
       */
      const takeWindow = (): Array<Request> => {
        let sorted = pending.sort((a, b) => Input.largerFirst(a.size, b.size))
        if (firstWindow) {
          // each model's lead: its first line strictly smaller than its lead so far (by model name: a line with none,
          // or not a string, counts as one model, as a pool is named by its model)
          const lead = new Map<unknown, number>()
          sorted.forEach((p, i) => {
            const model = typeof p.request.body.model === "string" ? p.request.body.model : undefined
            const j = lead.get(model)
            if (j === undefined || Input.largerFirst(sorted[j].size, p.size) < 0) lead.set(model, i)
          })
          const ahead = new Set(lead.values())
          sorted = [...sorted.filter((_, i) => ahead.has(i)), ...sorted.filter((_, i) => !ahead.has(i))]
        }
        firstWindow = false
        pending = []
        pendingChars = 0
        return sorted.map((p) => p.request)
      }
      const seen = new Map<string, number>()
      /** What a line is: work, a skip (blank, or already in the output), or a rejected line. Synchronous. */
      const classify = ({ invalidUtf8, line, text }: Files.NumberedLine): Classified | BulkInputError => {
        if (Files.isBlank(text)) return { _tag: "Skip" }
        const decoded = Input.decodeFresh(text, seen)
        if (decoded._tag === "Invalid") return new BulkInputError(Input.errorFields(line, decoded))
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
          const work: Array<Request> = []
          const rejected: Array<BulkInputError> = []
          const invalid: Array<{ readonly request: Request; readonly message: string }> = []
          let alreadyDone = 0
          const taken: Array<string> | undefined = offload === undefined ? undefined : []
          for (const line of chunk) {
            if (stopReason !== undefined) break
            const classified = classify(line)
            let text = ""
            if (classified instanceof BulkInputError) rejected.push(classified)
            else if (classified._tag === "Work") {
              if (offload !== undefined && offload.accepts(classified.request)) text = line.text
              else {
                const { body, url } = classified.request
                const size = Input.sizeOf(url, body, line.text.length)
                if (offload === undefined) weightOf.set(classified.request, Input.weightOf(size))
                if (!largestFirst) work.push(classified.request)
                else {
                  pending.push({ request: classified.request, size })
                  pendingChars += line.text.length
                  if (pending.length >= window || pendingChars >= ORDER_WINDOW_CHARS) {
                    for (const request of takeWindow()) work.push(request)
                  }
                }
              }
            } else if (classified._tag === "InvalidBody") invalid.push(classified)
            else if (classified.alreadyDone === true) alreadyDone++
            if (taken !== undefined) {
              for (; handedLine < line.line - 1; handedLine++) taken.push("")
              handedLine = line.line
              taken.push(text)
            }
          }
          const steps: Array<Effect.Effect<void, Files.FileFailure, R>> = []
          if (taken !== undefined && taken.length > 0) steps.push(Effect.asVoid(Queue.offer(handed, taken)))
          if (alreadyDone > 0) steps.push(update((s) => ({ ...s, alreadyDone: s.alreadyDone + alreadyDone })))
          for (const error of rejected) steps.push(reject(error))
          for (const { message, request } of invalid) steps.push(fail(request, invalidBody(message)))
          if (work.length > 0) steps.push(send(work))
          return Effect.all(steps, { discard: true })
        })

      /** Lines to the queue (waiting for room), with the workers they need. */
      const send = (work: ReadonlyArray<Request>): Effect.Effect<void, never, R> => {
        const weight = work.reduce((sum, request) => sum + (weightOf.get(request) ?? 0), 0)
        return update((s) => weighed(s, work.length, weight)).pipe(
          Effect.zipRight(grow(work.length)),
          Effect.zipRight(Queue.offerAll(queue, work)),
          Effect.asVoid
        )
      }

      // 3. execute with bounded concurrency; write each finished request at once
      const write = (request: Request, response: Response | null, failure: Failure | null) =>
        out.write(OutputLine.format(request.customId, response, failure))

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

      /**
       * A line that failed leaves the ETA's weights: a call refused at once (a 400, a request too large) did not take
       * the time its weight says, and counted as finished it would make the rate look far higher than it is.
       */
      const unweigh = (request: Request) => update((s) => weighed(s, -1, -(weightOf.get(request) ?? 0)))

      const work = (request: Request): Effect.Effect<void, Files.FileFailure, R> =>
        Effect.suspend(() => {
          if (stopReason !== undefined) return Effect.void
          return update((s) => ({ ...s, inFlight: s.inFlight + 1 })).pipe(
            Effect.zipRight(Effect.exit(options.execute(request))),
            Effect.ensuring(update((s) => ({ ...s, inFlight: s.inFlight - 1 }))),
            Effect.flatMap((exit): Effect.Effect<void, Files.FileFailure> => {
              if (Exit.isSuccess(exit)) {
                const problem = responseProblem(request, exit.value)
                if (problem !== undefined) {
                  return Effect.zipRight(
                    unweigh(request),
                    fail(request, invalidResponse(problem, exit.value.statusCode))
                  )
                }
                return Effect.zipRight(
                  write(request, exit.value, null),
                  update((s) => weighed({ ...s, succeeded: s.succeeded + 1 }, 0, 0, 1, weightOf.get(request) ?? 0))
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
                return Effect.zipRight(unweigh(request), fail(request, described))
              }
              // a defect, or an executor that interrupted itself (the run's own interruption never gets here):
              // the worker goes on (skipping what is left), so the producer never waits on a full queue
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
        // the last window, however short
        Effect.zipRight(
          Effect.suspend(() => pending.length === 0 || stopReason !== undefined ? Effect.void : send(takeWindow()))
        ),
        Effect.zipRight(Effect.suspend(() => Queue.offerAll(queue, Array.from({ length: started }, () => null)))),
        // on a signal the offload is not told the input ended (it would flush what it holds into a new batch): it is
        // interrupted below, its state kept
        Effect.zipRight(Effect.suspend(() => {
          inputEnded = true
          return stopReason?._tag === "Signal" ? Effect.void : Queue.offer(handed, null)
        })),
        Effect.zipRight(FiberSet.awaitEmpty(workers))
      )
      // a worker's failure (a write that failed) or the offload's ends the run at once
      yield* Effect.raceFirst(producer, Effect.raceFirst(FiberSet.join(workers), offloadFailure))
      if (offloadFiber !== undefined) {
        // a stop does not wait for the offload (batches run for hours): it is interrupted, its state kept
        const stopped = Effect.zipRight(options.stop ?? Effect.never, Effect.as(Fiber.interrupt(offloadFiber), {}))
        const ended: { readonly stop?: string | undefined } = yield* Effect.raceFirst(Fiber.join(offloadFiber), stopped)
        if (ended.stop !== undefined && stopReason === undefined) stopReason = { _tag: "Offload", message: ended.stop }
      }

      if (counting !== undefined) yield* Fiber.join(counting)
      const finishedAt = yield* Clock.currentTimeMillis
      const s = yield* Ref.get(progress.stats)
      const total = s.total ?? (s.alreadyDone + s.invalid + s.succeeded + s.failed)
      const notDone = Math.max(0, total - s.alreadyDone - s.invalid - s.succeeded - s.failed)
      if (offloadFiber !== undefined && stopReason === undefined && notDone > 0) {
        // the offload took lines and wrote none for them: never `completed` with lines missing
        stopReason = { _tag: "Offload", message: `${notDone} lines the offload took have no output line` }
      }
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
