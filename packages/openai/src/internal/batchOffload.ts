/**
 * The Batch API offload's mechanism: lines decoded and planned into files (`batchPlan.ts`), each file's
 * estimated tokens held on the limiter's enqueued-token dimension, uploaded, submitted, polled with back-off on
 * the `Clock`, its output and error files downloaded and turned into live-format output lines, and the state
 * record updated (and handed to the caller) after every step that creates something on the server.
 *
 * @internal
 */
import { HoldStore } from "@sluice/core"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Predicate from "effect/Predicate"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import * as StreamM from "effect/Stream"
import { randomUUID } from "node:crypto"
import type OpenAI from "openai"
import { toFile } from "openai"
import * as Api from "../BatchOffload.js"
import * as BulkExecutor from "../BulkExecutor.js"
import * as BulkRunner from "../BulkRunner.js"
import * as OpenAiError from "../OpenAiError.js"
import * as TokenEstimator from "../TokenEstimator.js"
import * as Plan from "./batchPlan.js"
import * as Input from "./bulkInput.js"
import * as Endpoints from "./endpoint.js"
import * as OutputLine from "./outputLine.js"

type Record_ = Api.BatchRecord

/** A batch's end by the Batch API's clock (epoch ms), when it has ended and says when. */
const endedAtOf = (batch: OpenAI.Batches.Batch): { readonly endedAt?: number } => {
  const at = batch.completed_at ?? batch.failed_at ?? batch.expired_at ?? batch.cancelled_at
  return Api.isTerminal(batch.status) && typeof at === "number" ? { endedAt: at * 1000 } : {}
}

const parseJsonLines = (text: string): Array<Record<string, unknown>> => {
  const out: Array<Record<string, unknown>> = []
  for (const raw of text.split("\n")) {
    if (raw.trim() === "") continue
    try {
      const value = JSON.parse(raw)
      if (Predicate.isRecord(value)) out.push(value)
    } catch {
      // a torn line in a downloaded file: its custom_id is then unanswered and comes back unfinished
    }
  }
  return out
}

/** The numeric options, as the Batch API (its file limits: `BatchOffload.fileLimits`) and the back-off allow them. */
const NumericOptions = Schema.Struct({
  maxRequests: Schema.optional(Schema.Int.pipe(Schema.between(1, 50_000))),
  maxBytes: Schema.optional(Schema.Int.pipe(Schema.between(1, 200_000_000))),
  tokenLimitRetries: Schema.optional(Schema.NonNegativeInt),
  poll: Schema.optional(Schema.Struct({
    factor: Schema.optional(Schema.Number.pipe(Schema.finite(), Schema.greaterThanOrEqualTo(1)))
  }))
})
const decodeNumeric = Schema.decodeUnknownEither(NumericOptions)

/** Decodes the options (a typed error naming the first one out of range) into the settings `make` uses. */
const settingsOf = (options: Api.Options) =>
  Effect.gen(function*() {
    const fail = (option: string, message: string) =>
      Effect.fail(new Api.BatchOffloadConfigError({ option, message: `${option}: ${message}` }))
    const numeric = decodeNumeric(options)
    if (Either.isLeft(numeric)) {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(numeric.left)[0]
      return yield* fail(issue?.path.join(".") ?? "options", issue?.message ?? "invalid")
    }
    const millis = (option: string, input: Duration.DurationInput | undefined, fallback: Duration.DurationInput) =>
      Effect.suspend(() => {
        const decoded = Duration.decodeUnknown(input ?? fallback)
        const ms = Option.isSome(decoded) ? Duration.toMillis(decoded.value) : NaN
        return Number.isFinite(ms) && ms > 0
          ? Effect.succeed(ms)
          : fail(option, `must be a finite duration above zero, got ${String(input)}`)
      })
    const pollInitial = yield* millis("poll.initial", options.poll?.initial, "10 seconds")
    const pollMax = yield* millis("poll.max", options.poll?.max, "5 minutes")
    const leaseMs = yield* millis("lease", options.lease, "2 minutes")
    if (pollMax < pollInitial) {
      return yield* fail("poll.max", `must be at least poll.initial (${pollInitial} ms), got ${pollMax} ms`)
    }
    return {
      maxRequests: options.maxRequests ?? Api.fileLimits.maxRequests,
      maxBytes: options.maxBytes ?? Api.fileLimits.maxBytes,
      pollInitial,
      pollMax,
      pollFactor: options.poll?.factor ?? 1.5,
      refusals: options.tokenLimitRetries ?? 20,
      leaseMs
    }
  })

/** @internal */
export const make = (options: Api.Options): Effect.Effect<Api.Service, Api.BatchOffloadConfigError> =>
  Effect.flatMap(settingsOf(options), (settings) =>
    Effect.map(
      options.holds === undefined ? HoldStore.makeMemory : Effect.succeed(options.holds),
      (holds) => makeWith(options, settings, holds)
    ))

const makeWith = (
  options: Api.Options,
  settings: Effect.Effect.Success<ReturnType<typeof settingsOf>>,
  holds: HoldStore.Service
): Api.Service => {
  const client: OpenAI = options.client
  const limiter = options.limiter
  const dimension = options.dimension ?? Api.dimension
  const scopesFor = options.scopesFor ?? ((model: string) => [Api.scopeFor(model)])
  const { leaseMs, maxBytes, maxRequests, pollFactor, pollInitial, pollMax, refusals } = settings
  const estimate = options.estimate ??
    ((url: string, body: Record<string, unknown>) => TokenEstimator.forEndpoint(url, body)?.tokens ?? 0)

  /** The enqueued-token limit of a model: the smallest over its scopes. */
  const maxTokens = (model: string): number | undefined => {
    let least: number | undefined
    for (const scope of scopesFor(model)) {
      for (const limit of limiter.limitsOf(scope)) {
        if (limit.dimension === dimension && (least === undefined || limit.capacity < least)) least = limit.capacity
      }
    }
    return least
  }

  /** A decoded input line as the planner takes it. */
  const itemOf = (
    decoded: { readonly customId: string; readonly url: string; readonly body: Record<string, unknown> },
    line: number,
    text: string
  ): Plan.Item => ({
    customId: decoded.customId,
    line,
    url: decoded.url,
    model: typeof decoded.body.model === "string" ? decoded.body.model : "",
    text,
    bytes: Plan.bytesOf(text),
    tokens: estimate(decoded.url, decoded.body)
  })

  // -------------------------------------------------------------------------------------------------------------
  // the transport: the SDK, its failures classified, transient ones retried
  // -------------------------------------------------------------------------------------------------------------

  const retrying = Schedule.exponential("1 second", 2).pipe(
    Schedule.union(Schedule.spaced("1 minute")),
    Schedule.intersect(Schedule.recurs(6))
  )
  const api = <A>(operation: string, id: string | undefined, call: () => Promise<A>) =>
    Effect.tryPromise({ try: call, catch: (e) => OpenAiError.classify(e) }).pipe(
      Effect.retry({ schedule: retrying, while: (e) => e.retryable }),
      Effect.mapError((e) =>
        new Api.BatchApiError({
          operation,
          ...(id === undefined ? {} : { id }),
          kind: e._tag,
          ...(e.status === undefined ? {} : { status: e.status }),
          message: e.message
        })
      )
    )

  const download = (fileId: string) => api("download", fileId, () => client.files.content(fileId).then((r) => r.text()))

  // -------------------------------------------------------------------------------------------------------------
  // the run
  // -------------------------------------------------------------------------------------------------------------

  const run = <E, R>(
    input: Stream.Stream<string, E, R> | undefined,
    runOptions: Api.RunOptions,
    initial: Api.State | undefined
  ): Effect.Effect<Api.Summary, Api.BatchApiError | E, R> =>
    Effect.scoped(Effect.gen(function*() {
      const job = initial?.job ?? runOptions.job ?? `job_${randomUUID().replace(/-/g, "").slice(0, 16)}`
      const state = yield* Ref.make<Api.State>(initial ?? { version: 1, job, batches: [] })
      const lock = yield* Effect.makeSemaphore(1)
      /** The renewals of the holds taken (interrupted with the run, however it ends). */
      const renewals = yield* FiberSet.make()
      const onState = runOptions.onState ?? (() => Effect.void)
      /** Changes the state and hands it to the caller, one change at a time, in order. */
      const commit = (f: (s: Api.State) => Api.State) =>
        lock.withPermits(1)(Effect.flatMap(Ref.updateAndGet(state, f), onState))
      const updateRecord = (key: string, f: (r: Record_) => Record_) =>
        commit((s) => ({ ...s, batches: s.batches.map((r) => (r.key === key ? f(r) : r)) }))
      // keys go on after the largest number any record's key ends with (not the count of records: a file stopped
      // before it was recorded took a number and left no record, so a count can fall on a key in use); within a
      // run the counter only goes up, so a key taken and never recorded is not taken again
      let sequence = 0
      for (const record of initial?.batches ?? []) {
        const n = /-(\d+)$/.exec(record.key)
        if (n !== null) sequence = Math.max(sequence, Number(n[1]))
      }
      const nextKey = () => `${job}-${++sequence}`

      const done = runOptions.done ?? new Set<string>()
      const delivered = new Set<string>()
      const counts = { succeeded: 0, failed: 0, skipped: 0, invalid: 0 }
      const unfinished: Array<Api.Unfinished> = []
      const problems: Array<Api.BatchProblem> = []
      let stopping = false
      const submitted = new Set<string>()

      const deliver = (
        customId: string,
        batchId: string | null,
        response: OutputLine.LineResponse | null,
        failure: BulkRunner.Failure | null,
        id?: string
      ): Effect.Effect<void> =>
        Effect.suspend(() => {
          if (delivered.has(customId) || done.has(customId)) return Effect.void
          delivered.add(customId)
          if (failure === null) counts.succeeded++
          else counts.failed++
          return runOptions.onResult({
            customId,
            batchId,
            ok: failure === null,
            line: OutputLine.format(customId, response, failure, id)
          })
        })

      const report = (problem: Api.BatchProblem) =>
        Effect.zipRight(
          Effect.sync(() => problems.push(problem)),
          runOptions.onProblem === undefined ? Effect.void : runOptions.onProblem(problem)
        )

      // --- holds on the enqueued-token dimension --------------------------------------------------------------

      /** A hold taken: its renewal runs until `release`. */
      interface Held {
        readonly release: Effect.Effect<void>
      }
      /** The scopes (with their limits) a model's enqueued tokens are held on; none when no scope has a limit. */
      const claimsOf = (model: string): Array<HoldStore.Claim> => {
        const claims: Array<HoldStore.Claim> = []
        for (const scope of scopesFor(model)) {
          let least: number | undefined
          for (const limit of limiter.limitsOf(scope)) {
            if (limit.dimension === dimension && (least === undefined || limit.capacity < least)) {
              least = limit.capacity
            }
          }
          if (least !== undefined) claims.push({ scope, capacity: least })
        }
        return claims
      }
      /** Renews a hold every third of the lease until interrupted; one that lapsed is taken again when it fits. */
      const renewing = (id: string, claims: ReadonlyArray<HoldStore.Claim>, tokens: number) => {
        const scopes = claims.map((c) => c.scope)
        const once = holds.renew(id, scopes, leaseMs).pipe(
          Effect.flatMap((renewed) =>
            renewed ? Effect.void : Effect.flatMap(holds.take(id, claims, tokens, leaseMs), (taken) =>
              taken
                ? Effect.logWarning(`enqueued-token hold ${id} had lapsed: taken again`)
                : Effect.logWarning(`enqueued-token hold ${id} lapsed and does not fit again: its batch runs unheld`))
          ),
          Effect.catchAll((e) => Effect.logWarning(`enqueued-token hold ${id} not renewed: ${e.message}`))
        )
        return Effect.forever(Effect.zipRight(Effect.sleep(leaseMs / 3), once))
      }
      /**
       * Takes the hold `id` and starts renewing it. Its release goes to the store once, however many of the ways a
       * batch ends release it (its end, its exit, a refusal).
       */
      const held = (id: string, claims: ReadonlyArray<HoldStore.Claim>, tokens: number) =>
        Effect.map(
          FiberSet.run(renewals, renewing(id, claims, tokens)),
          (fiber): Held => {
            let released = false
            return {
              release: Effect.suspend(() => {
                if (released) return Effect.void
                released = true
                return Effect.zipRight(
                  Fiber.interrupt(fiber),
                  Effect.catchAll(
                    holds.release(id, claims.map((c) => c.scope)),
                    (e) => Effect.logWarning(`enqueued-token hold ${id} not released (it lapses): ${e.message}`)
                  )
                )
              })
            }
          }
        )

      /**
       * Waits (polling on the Clock, with back-off) until the tokens fit the model's enqueued-token budget, then
       * holds them under `id` (the batch record's key: a resume holding again under it takes over the hold of a
       * process that died, never counting it twice).
       */
      const hold = (id: string, model: string, tokens: number): Effect.Effect<Held | undefined> => {
        const claims = claimsOf(model)
        if (tokens <= 0 || claims.length === 0) return Effect.succeed(undefined)
        if (claims.some((c) => !HoldStore.fits(0, tokens, c.capacity))) {
          // a budget that can never hold it (the planner keeps files within it): go on unheld, the server's own
          // limit still refuses what does not fit
          return Effect.as(Effect.logWarning(`enqueued-token hold for ${model} not taken: over the limit`), undefined)
        }
        const attempt = (wait: number): Effect.Effect<Held | undefined> =>
          holds.take(id, claims, tokens, leaseMs).pipe(
            Effect.flatMap((taken): Effect.Effect<Held | undefined> =>
              taken
                ? held(id, claims, tokens)
                : stopping
                ? Effect.succeed(undefined)
                : Effect.zipRight(Effect.sleep(wait), attempt(Math.min(pollMax, wait * pollFactor)))
            ),
            // a store failure: go on unheld, the server's own limit still refuses what does not fit
            Effect.catchTag(
              "HoldStoreError",
              (e) => Effect.as(Effect.logWarning(`enqueued-token hold for ${model} not taken: ${e.message}`), undefined)
            )
          )
        return attempt(pollInitial)
      }
      /** Holds a resumed batch's tokens again if they fit now (its batch runs either way). */
      const holdIfRoom = (id: string, model: string, tokens: number): Effect.Effect<Held | undefined> => {
        const claims = claimsOf(model)
        if (tokens <= 0 || claims.length === 0) return Effect.succeed(undefined)
        return holds.take(id, claims, tokens, leaseMs).pipe(
          Effect.flatMap((taken) => (taken ? held(id, claims, tokens) : Effect.succeed(undefined))),
          Effect.orElseSucceed(() => undefined)
        )
      }
      const release = (permit: Held | undefined) => permit === undefined ? Effect.void : permit.release

      // --- one batch, from its uploaded file to its delivered results -----------------------------------------

      const requestsOf = (record: Record_) =>
        Effect.map(download(record.inputFileId), (text) => {
          const byId = new Map<string, string>()
          for (const raw of text.split("\n")) {
            if (raw.trim() === "") continue
            try {
              const id = JSON.parse(raw).custom_id
              if (typeof id === "string") byId.set(id, raw)
            } catch {
              // not ours to judge: the server reports the line
            }
          }
          return byId
        })

      /** Each record's position of every custom_id (a batch holds up to 50,000: no linear searches). */
      const positions = new Map<string, Map<string, number>>()
      const positionOf = (record: Record_, customId: string): number | undefined => {
        let index = positions.get(record.key)
        if (index === undefined) {
          index = new Map(record.customIds.map((id, i) => [id, i] as const))
          positions.set(record.key, index)
        }
        return index.get(customId)
      }
      const lineOf = (record: Record_, customId: string): number | undefined => {
        const i = positionOf(record, customId)
        return i === undefined ? undefined : record.lines[i]
      }

      /** Hands lines back to the caller and records that this batch no longer answers for them. */
      const giveBack = (
        record: Record_,
        batchId: string,
        ids: ReadonlyArray<string>,
        reason: Api.Unfinished["reason"]
      ) =>
        Effect.gen(function*() {
          const released = new Set(record.released)
          const open = ids.filter((id) => !delivered.has(id) && !done.has(id) && !released.has(id))
          if (open.length === 0) return
          const requests = yield* requestsOf(record)
          for (const customId of open) {
            const request = requests.get(customId)
            if (request === undefined) continue
            const line = lineOf(record, customId)
            unfinished.push({ customId, request, reason, batchId, ...(line === undefined ? {} : { line }) })
          }
          // a whole batch handed back for one reason (refused, failed, stopped) keeps it: a resume reports it
          const whole = ids.length === record.customIds.length
          yield* updateRecord(record.key, (r) => ({
            ...r,
            released: [...r.released, ...open],
            ...(whole ? { handedBack: reason } : {})
          }))
        })

      const create = (record: Record_) =>
        Effect.gen(function*() {
          const batch = yield* api("create batch", record.inputFileId, () =>
            client.batches.create({
              input_file_id: record.inputFileId,
              endpoint: record.endpoint as "/v1/chat/completions",
              completion_window: "24h",
              metadata: { sluice_job: job, sluice_batch: record.key }
            }))
          yield* updateRecord(record.key, (r) => ({
            ...r,
            batchId: batch.id,
            status: batch.status,
            attempts: r.attempts + 1
          }))
          submitted.add(batch.id)
          if (stopping) yield* Effect.ignore(api("cancel", batch.id, () => client.batches.cancel(batch.id)))
          return batch.id
        })

      /** Polls until the batch ends, with back-off (reset whenever its status changes). */
      const poll = (key: string, batchId: string) =>
        Effect.gen(function*() {
          let wait = pollInitial
          let last: string | undefined
          let lastCounts: string | undefined
          while (true) {
            const batch = yield* api("retrieve", batchId, () => client.batches.retrieve(batchId))
            const counts = batch.request_counts
            const countsKey = counts === undefined ? undefined : `${counts.total}/${counts.completed}/${counts.failed}`
            if (batch.status !== last || countsKey !== lastCounts) {
              // a new status resets the back-off; lines done moving on only go into the state
              if (batch.status !== last) wait = pollInitial
              last = batch.status
              lastCounts = countsKey
              yield* updateRecord(key, (r) => ({
                ...r,
                status: batch.status,
                ...(batch.output_file_id ? { outputFileId: batch.output_file_id } : {}),
                ...(batch.error_file_id ? { errorFileId: batch.error_file_id } : {}),
                ...(counts === undefined
                  ? {}
                  : { requestCounts: { total: counts.total, completed: counts.completed, failed: counts.failed } }),
                ...endedAtOf(batch)
              }))
            }
            if (Api.isTerminal(batch.status)) return batch
            yield* Effect.sleep(wait)
            wait = Math.min(pollMax, wait * pollFactor)
          }
        })

      /** Turns one line of an output or error file into a delivered result, or a line to give back. */
      const collect = (
        record: Record_,
        batchId: string,
        row: Record<string, unknown>,
        back: Map<string, Api.Unfinished["reason"]>
      ): Effect.Effect<void> => {
        const customId = row.custom_id
        if (typeof customId !== "string" || positionOf(record, customId) === undefined) return Effect.void
        const id = typeof row.id === "string" ? row.id : undefined
        const response = Predicate.isRecord(row.response) ? row.response : undefined
        if (response !== undefined && typeof response.status_code === "number") {
          const status = response.status_code
          const requestId = typeof response.request_id === "string" ? response.request_id : null
          if (status >= 200 && status < 300) {
            const endpoint = Endpoints.endpointOf(record.endpoint)
            const problem = endpoint === undefined ? undefined : Endpoints.responseProblem(endpoint, response.body)
            return problem === undefined
              ? deliver(customId, batchId, { statusCode: status, requestId, body: response.body }, null, id)
              : deliver(customId, batchId, null, BulkRunner.invalidResponse(problem, status), id)
          }
          const error = OpenAiError.fromHttp({ status, body: response.body }, { model: record.model })
          return deliver(customId, batchId, null, BulkExecutor.describeError(error), id)
        }
        const error = Predicate.isRecord(row.error) ? row.error : {}
        const code = typeof error.code === "string" ? error.code : "batch_error"
        if (code === "batch_expired") return Effect.sync(() => void back.set(customId, "expired"))
        if (code === "batch_cancelled") return Effect.sync(() => void back.set(customId, "cancelled"))
        return deliver(customId, batchId, null, {
          kind: "BatchRequestError",
          code,
          message: typeof error.message === "string" ? error.message : "the batch reported an error for this request"
        }, id)
      }

      /** Follows a record to its end (its hold released however it ends, a hold taken again after a refusal too). */
      const track = (
        initialRecord: Record_,
        permit: Held | undefined
      ): Effect.Effect<void, Api.BatchApiError> => {
        let current = permit
        return Effect.gen(function*() {
          let record = initialRecord
          const latest = Effect.map(Ref.get(state), (s) => s.batches.find((r) => r.key === record.key) ?? record)
          let batchId = record.batchId ?? (yield* create(record))
          while (true) {
            const batch = yield* poll(record.key, batchId)
            record = yield* latest
            if (batch.status === "failed") {
              const errors = batch.errors?.data ?? []
              const limit = errors.find((e) => e.code === "token_limit_exceeded")
              if (limit !== undefined) {
                yield* report(
                  new Api.EnqueuedTokenLimitExceeded({
                    reason: "refused",
                    model: record.model,
                    tokens: record.tokens,
                    batchId,
                    message: limit.message ?? "enqueued token limit reached"
                  })
                )
                yield* release(current)
                current = undefined
                if (record.attempts > refusals || stopping) {
                  yield* giveBack(record, batchId, record.customIds, "token-limit")
                  break
                }
                // the server's queue is fuller than this limiter knew (other jobs, other keys): wait, then again
                yield* Effect.sleep(Math.min(pollMax, pollInitial * pollFactor ** record.attempts))
                current = yield* hold(record.key, record.model, record.tokens)
                if (stopping) {
                  yield* release(current)
                  current = undefined
                  yield* giveBack(record, batchId, record.customIds, "cancelled")
                  break
                }
                batchId = yield* create(record)
                continue
              }
              const bad = errors.filter((e) => typeof e.line === "number")
              if (bad.length > 0 && bad.length === errors.length) {
                yield* resubmitWithout(record, batchId, bad, current)
                current = undefined
                break
              }
              const first = errors[0]
              yield* report(
                new Api.BatchFailed({
                  batchId,
                  model: record.model,
                  code: first?.code ?? "failed",
                  message: errors.map((e) => e.message ?? e.code ?? "").join("; ") || "the batch failed"
                })
              )
              yield* giveBack(record, batchId, record.customIds, "failed")
              break
            }
            // completed, expired or cancelled: results, then what is left
            const back = new Map<string, Api.Unfinished["reason"]>()
            for (const fileId of [batch.output_file_id, batch.error_file_id]) {
              if (typeof fileId !== "string" || fileId === "") continue
              const rows = parseJsonLines(yield* download(fileId))
              yield* Effect.forEach(rows, (row) => collect(record, batchId, row, back), { discard: true })
            }
            const reason: Api.Unfinished["reason"] = batch.status === "expired"
              ? "expired"
              : batch.status === "cancelled"
              ? "cancelled"
              : "failed"
            const left = record.customIds.filter((id) => !delivered.has(id) && !done.has(id))
            const completed = record.customIds.length - left.length
            if (batch.status === "expired") {
              yield* report(
                new Api.BatchExpired({ batchId, model: record.model, completed, unfinished: left.length })
              )
            } else if (batch.status === "cancelled") {
              yield* report(
                new Api.BatchCancelled({ batchId, model: record.model, completed, unfinished: left.length })
              )
            }
            const byReason = new Map<Api.Unfinished["reason"], Array<string>>()
            for (const id of left) {
              const r = back.get(id) ?? reason
              const group = byReason.get(r)
              if (group === undefined) byReason.set(r, [id])
              else group.push(id)
            }
            for (const [r, ids] of byReason) yield* giveBack(record, batchId, ids, r)
            break
          }
          yield* updateRecord(record.key, (r) => ({ ...r, finished: true }))
          yield* release(current)
        }).pipe(Effect.onExit(() => Effect.zipRight(release(permit), Effect.suspend(() => release(current)))))
      }

      /** A batch refused for some of its lines: those lines fail (named), the others go out in a new file. */
      const resubmitWithout = (
        record: Record_,
        batchId: string,
        bad: ReadonlyArray<
          {
            readonly code?: string | undefined
            readonly message?: string | undefined
            readonly line?: number | null | undefined
            readonly param?: string | null | undefined
          }
        >,
        permit: Held | undefined
      ) =>
        Effect.gen(function*() {
          const text = yield* download(record.inputFileId)
          const rows = text.split("\n").filter((l) => l.trim() !== "")
          const badIds = new Set<string>()
          for (const error of bad) {
            const raw = rows[(error.line ?? 0) - 1]
            let customId: string | undefined
            try {
              const id = raw === undefined ? undefined : JSON.parse(raw).custom_id
              customId = typeof id === "string" ? id : undefined
            } catch {
              customId = undefined
            }
            const line = customId === undefined ? undefined : lineOf(record, customId)
            const failure = new Api.BatchValidationError({
              batchId,
              fileLine: error.line ?? 0,
              code: error.code ?? "invalid_request",
              message: error.message ?? "the line was refused",
              ...(customId === undefined ? {} : { customId }),
              ...(line === undefined ? {} : { line }),
              ...(error.param === null || error.param === undefined ? {} : { param: error.param })
            })
            yield* report(failure)
            if (customId === undefined) continue
            badIds.add(customId)
            yield* deliver(customId, batchId, null, {
              kind: "BatchValidationError",
              code: failure.code,
              message: failure.message
            })
          }
          // each kept line parsed once; lines already handed back (an earlier run of this step) or answered
          // are not sent again
          const released = new Set(record.released)
          const items: Array<Plan.Item> = []
          const keptIds = new Set<string>()
          for (const raw of rows) {
            let parsed: unknown
            try {
              parsed = JSON.parse(raw)
            } catch {
              continue
            }
            if (!Predicate.isRecord(parsed) || typeof parsed.custom_id !== "string") continue
            const customId = parsed.custom_id
            if (badIds.has(customId) || positionOf(record, customId) === undefined) continue
            keptIds.add(customId)
            if (released.has(customId) || done.has(customId) || delivered.has(customId)) continue
            const body = Predicate.isRecord(parsed.body) ? parsed.body : {}
            items.push({
              ...itemOf({ customId, url: record.endpoint, body }, lineOf(record, customId) ?? 0, raw),
              model: record.model
            })
          }
          const unreadable = record.customIds.filter((id) => !badIds.has(id) && !keptIds.has(id))
          if (unreadable.length > 0) yield* giveBack(record, batchId, unreadable, "failed")
          if (items.length === 0) {
            yield* release(permit)
            return
          }
          const file: Plan.File = {
            model: record.model,
            url: record.endpoint,
            items,
            bytes: items.reduce((a, i) => a + i.bytes, 0),
            tokens: items.reduce((a, i) => a + i.tokens, 0)
          }
          // the hold moves to the new file (its tokens are fewer: the difference goes back); the new file's
          // record and this one's end are written in one change, so a resume follows the new batch only
          yield* release(permit)
          yield* submitFile(file, record.key)
        })

      /** Releases `ids` from the record `key` (and, with `finished`, ends it) inside a state change. */
      const handOver = (s: Api.State, key: string, ids: ReadonlyArray<string>, finished: boolean): Api.State => ({
        ...s,
        batches: s.batches.map((r) => {
          if (r.key !== key) return r
          const released = new Set(r.released)
          return {
            ...r,
            released: [...r.released, ...ids.filter((id) => !released.has(id))],
            ...(finished ? { finished: true } : {})
          }
        })
      })

      /**
       * Holds a file's tokens, uploads it, records it, and follows its batch to the end. With `replaces`, the
       * file takes over lines of that record: the same state change records the new file and ends the old one.
       */
      const submitFile = (file: Plan.File, replaces?: string): Effect.Effect<void, Api.BatchApiError> =>
        Effect.gen(function*() {
          const key = nextKey()
          const permit = stopping ? undefined : yield* hold(key, file.model, file.tokens)
          if (stopping) {
            yield* release(permit)
            if (replaces !== undefined) {
              yield* commit((s) => handOver(s, replaces, file.items.map((i) => i.customId), false))
            }
            for (const item of file.items) {
              unfinished.push({
                customId: item.customId,
                line: item.line,
                request: item.text,
                reason: "cancelled",
                batchId: null
              })
            }
            return
          }
          const content = Buffer.from(file.items.map((i) => `${i.text}\n`).join(""), "utf8")
          const uploaded = yield* api(
            "upload",
            undefined,
            async () => client.files.create({ file: await toFile(content, `${key}.jsonl`), purpose: "batch" })
          ).pipe(Effect.onError(() => release(permit)))
          const uploadedAt = yield* Effect.clockWith((c) => c.currentTimeMillis)
          const record: Record_ = {
            key,
            model: file.model,
            endpoint: file.url,
            customIds: file.items.map((i) => i.customId),
            lines: file.items.map((i) => i.line),
            tokens: file.tokens,
            bytes: file.bytes,
            inputFileId: uploaded.id,
            uploadedAt,
            attempts: 0,
            released: [],
            finished: false
          }
          yield* commit((s) => {
            const next = replaces === undefined ? s : handOver(s, replaces, record.customIds, true)
            return { ...next, batches: [...next.batches, record] }
          })
          yield* track(record, permit)
        })

      // --- resume: the records of an earlier run that have not finished ---------------------------------------

      /** A record uploaded but with no batch id recorded: the batch may exist (the process died in between). */
      const findBatch = (record: Record_) =>
        Effect.gen(function*() {
          const since = Math.floor(record.uploadedAt / 1000) - 300
          const found = yield* api("list batches", record.inputFileId, async () => {
            for await (const batch of client.batches.list({ limit: 100 })) {
              if (batch.input_file_id === record.inputFileId) return batch
              if (batch.created_at < since) return undefined
            }
            return undefined
          })
          if (found === undefined) return record
          const updated: Record_ = { ...record, batchId: found.id, status: found.status, attempts: record.attempts + 1 }
          yield* updateRecord(record.key, () => updated)
          submitted.add(found.id)
          return updated
        })

      const resumeRecord = (record: Record_) =>
        Effect.gen(function*() {
          const known = record.batchId === undefined ? yield* findBatch(record) : record
          // hold its tokens again if there is room: under the record's key, so a hold the process that died left
          // (not yet lapsed) is taken over, not counted twice; a batch that exists runs whether or not it is held
          const limiterPermit = yield* holdIfRoom(known.key, known.model, known.tokens)
          yield* track(known, limiterPermit)
        })

      // --- the input ------------------------------------------------------------------------------------------

      const owned = new Set<string>()
      for (const record of initial?.batches ?? []) {
        const released = new Set(record.released)
        for (const id of record.customIds) if (!released.has(id)) owned.add(id)
      }
      /**
       * Lines an earlier run handed back (released) that no record holds and that are not done: nothing follows
       * them any more. A resume with input plans them again (they are not `owned`); the others (all of them
       * without input) come back in `unfinished`, their request read back from the file that held them.
       */
      const orphans = new Map<string, Record_>()
      for (const record of initial?.batches ?? []) {
        for (const id of record.released) if (!owned.has(id) && !done.has(id)) orphans.set(id, record)
      }
      const reportOrphans = (ids: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          const byRecord = new Map<Record_, Array<string>>()
          for (const id of ids) {
            const record = orphans.get(id)!
            const group = byRecord.get(record)
            if (group === undefined) byRecord.set(record, [id])
            else group.push(id)
          }
          for (const [record, group] of byRecord) {
            const requests = yield* requestsOf(record).pipe(
              Effect.orElseSucceed(() => new Map<string, string>())
            )
            const reason: Api.Unfinished["reason"] = record.handedBack ??
              (record.status === "expired" || record.status === "cancelled" ? record.status : "failed")
            for (const customId of group) {
              const line = lineOf(record, customId)
              unfinished.push({
                customId,
                request: requests.get(customId) ?? "",
                reason,
                batchId: record.batchId ?? null,
                ...(line === undefined ? {} : { line })
              })
            }
          }
        })
      const seen = new Map<string, number>()
      let lineNumber = 0
      const planner = new Plan.Planner({ maxRequests, maxBytes, maxTokens })

      const workers = yield* FiberSet.make<void, Api.BatchApiError>()
      const start = (effect: Effect.Effect<void, Api.BatchApiError>) => FiberSet.run(workers, effect)

      for (const record of initial?.batches ?? []) {
        if (!record.finished) yield* start(resumeRecord(record))
      }

      if (runOptions.stop !== undefined) {
        yield* Effect.forkScoped(Effect.flatMap(runOptions.stop, () =>
          Effect.gen(function*() {
            stopping = true
            const s = yield* Ref.get(state)
            const ids = new Set(submitted)
            for (const r of s.batches) if (!r.finished && r.batchId !== undefined) ids.add(r.batchId)
            yield* Effect.forEach(
              ids,
              (id) => Effect.ignore(api("cancel", id, () => client.batches.cancel(id))),
              { discard: true }
            )
          })))
      }

      const invalid = (error: BulkRunner.BulkInputError) =>
        Effect.zipRight(
          Effect.sync(() => counts.invalid++),
          runOptions.onInvalid === undefined ? Effect.void : runOptions.onInvalid(error)
        )

      const onLine = (text: string): Effect.Effect<void, Api.BatchApiError> =>
        Effect.suspend(() => {
          const line = ++lineNumber
          if (text.trim() === "") return Effect.void
          const decoded = Input.decodeFresh(text, seen)
          if (decoded._tag === "Invalid") {
            return invalid(new BulkRunner.BulkInputError(Input.errorFields(line, decoded)))
          }
          seen.set(decoded.customId, line)
          if (done.has(decoded.customId) || owned.has(decoded.customId)) {
            counts.skipped++
            return Effect.void
          }
          const endpoint = Endpoints.endpointOf(decoded.url)
          const problem = endpoint === undefined ? undefined : Endpoints.bodyProblem(endpoint, decoded.body)
          if (problem !== undefined) return deliver(decoded.customId, null, null, BulkRunner.invalidBody(problem))
          if (!(Api.endpoints as ReadonlyArray<string>).includes(decoded.url) || stopping) {
            return Effect.sync(() =>
              void unfinished.push({
                customId: decoded.customId,
                line,
                request: text,
                reason: stopping ? "cancelled" : "ineligible",
                batchId: null
              })
            )
          }
          const added = planner.add(itemOf(decoded, line, text))
          if (added === undefined) return Effect.void
          if ("_tag" in added) {
            const failure = added.dimension === "tokens"
              ? new Api.EnqueuedTokenLimitExceeded({
                reason: "line-too-large",
                model: added.item.model,
                tokens: added.item.tokens,
                limit: added.limit,
                customId: added.item.customId,
                line,
                message:
                  `line ${line} (${added.item.customId}) needs ${added.item.tokens} enqueued tokens, more than ` +
                  `the ${added.limit} ${added.item.model} may have enqueued: it can never go through the Batch API`
              })
              : new Api.BatchLineTooLarge({
                customId: added.item.customId,
                line,
                bytes: added.item.bytes,
                limit: added.limit
              })
            return Effect.zipRight(
              report(failure),
              deliver(added.item.customId, null, null, {
                kind: failure._tag,
                code: added.dimension === "tokens" ? "token_limit_exceeded" : "line_too_large",
                message: failure.message
              })
            )
          }
          return Effect.asVoid(start(submitFile(added)))
        })

      if (input !== undefined) {
        const reading = input.pipe(
          StreamM.runForEach((text) => onLine(text)),
          Effect.zipRight(Effect.suspend(() => Effect.forEach(planner.flush(), (f) => start(submitFile(f)))))
        )
        const reader = yield* Effect.fork(reading)
        yield* Effect.raceFirst(Fiber.join(reader), Effect.zipRight(FiberSet.join(workers), Effect.never))
        yield* reportOrphans([...orphans.keys()].filter((id) => !seen.has(id)))
      } else {
        yield* reportOrphans([...orphans.keys()])
      }
      yield* Effect.raceFirst(FiberSet.awaitEmpty(workers), Effect.zipRight(FiberSet.join(workers), Effect.never))

      const finalState = yield* Ref.get(state)
      return {
        job,
        state: finalState,
        succeeded: counts.succeeded,
        failed: counts.failed,
        skipped: counts.skipped,
        invalid: counts.invalid,
        unfinished,
        problems,
        batches: finalState.batches.length
      }
    }))

  const planFiles = <E, R>(input: Stream.Stream<string, E, R>) =>
    Effect.gen(function*() {
      const planner = new Plan.Planner({ maxRequests, maxBytes, maxTokens })
      const files: Array<Plan.File> = []
      const tooLarge: Array<Plan.TooLarge> = []
      let ineligible = 0
      yield* StreamM.runForEach(input, (text) =>
        Effect.sync(() => {
          if (text.trim() === "") return
          const decoded = Input.decode(text)
          if (decoded._tag === "Invalid") return
          if (!(Api.endpoints as ReadonlyArray<string>).includes(decoded.url)) {
            ineligible++
            return
          }
          const added = planner.add(itemOf(decoded, 0, text))
          if (added === undefined) return
          if ("_tag" in added) tooLarge.push(added)
          else files.push(added)
        }))
      for (const file of planner.flush()) files.push(file)
      return {
        files: files.map((f) => ({
          model: f.model,
          endpoint: f.url,
          requests: f.items.length,
          bytes: f.bytes,
          tokens: f.tokens
        })),
        tooLarge: tooLarge.length,
        ineligible
      }
    })

  const cancel = (state: Api.State) =>
    Effect.forEach(
      state.batches.filter((r) => !r.finished && r.batchId !== undefined),
      (r) => Effect.asVoid(api("cancel", r.batchId, () => client.batches.cancel(r.batchId!))),
      { discard: true }
    )

  return {
    run: (input, runOptions) => run(input, runOptions, undefined),
    resume: (state, runOptions, input) => run(input, runOptions, state),
    cancel,
    plan: planFiles,
    maxTokens
  }
}
