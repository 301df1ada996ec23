/**
 * `sluice run --via batch|auto`: the Batch API offload (`BatchOffload`) as the bulk runner's `Offload` — its
 * state file beside the output, read and written under the output's lock; the `auto` plan (which lines must go
 * live to meet `--deadline`); the progress text and the summary with the Batch API's cost and savings.
 *
 * @internal
 */
import type { HoldStore, RateLimiter } from "@sluice/core"
import { BatchOffload, BulkRunner, Pricing, Tiers, TokenEstimator } from "@sluice/openai"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import * as Stream from "effect/Stream"
import * as NodeFs from "node:fs"
import * as NodeReadline from "node:readline"
import type OpenAI from "openai"
import * as Plan from "../Plan.js"
import { parseMillis } from "./duration.js"
import type { LimitsFile } from "./limits.js"
import { poolLimitsOf } from "./limits.js"

const DAY_MS = 86_400_000
const eligible = new Set<string>(BatchOffload.endpoints)
const n = (value: number) => Math.round(value).toLocaleString("en-US")
const lines = (count: number) => `${n(count)} line${count === 1 ? "" : "s"}`
const usd = (value: number) => `$${value < 10 ? value.toFixed(2) : value.toFixed(0)}`

// -------------------------------------------------------------------------------------------------------------
// the state file
// -------------------------------------------------------------------------------------------------------------

const fileError = (path: string, operation: string, cause: unknown) =>
  new BulkRunner.BulkFileError({
    path,
    operation,
    message: `cannot ${operation} the batch state ${path}: ${cause instanceof Error ? cause.message : String(cause)}`
  })

/** The state in `path`, if the file exists; a file that does not decode is an error naming it. */
export const readState = (path: string): Effect.Effect<BatchOffload.State | undefined, BulkRunner.BulkFileError> =>
  Effect.gen(function*() {
    const text = yield* Effect.try({
      try: () => (NodeFs.existsSync(path) ? NodeFs.readFileSync(path, "utf8") : undefined),
      catch: (cause) => fileError(path, "read", cause)
    })
    if (text === undefined) return undefined
    return yield* Effect.mapError(BatchOffload.decodeState(text), (e) =>
      new BulkRunner.BulkFileError({
        path,
        operation: "decode",
        message: `${path} is not a sluice batch state file (move it aside to start a new job):\n${e.message}`
      }))
  })

/**
 * Replaces the state file in one step (written beside it, synced, renamed over it): a kill leaves old or new. The
 * temporary is created afresh (`wx`), never opened through a link into another file; one left there is a killed
 * run's (the state's lock is held).
 */
const writeState = (path: string, state: BatchOffload.State): Effect.Effect<void, BulkRunner.BulkFileError> =>
  Effect.try({
    try: () => {
      const tmp = `${path}.tmp`
      NodeFs.rmSync(tmp, { force: true })
      const fd = NodeFs.openSync(tmp, "wx")
      try {
        NodeFs.writeSync(fd, `${BatchOffload.encodeState(state)}\n`)
        NodeFs.fsyncSync(fd)
      } finally {
        NodeFs.closeSync(fd)
      }
      NodeFs.renameSync(tmp, path)
    },
    catch: (cause) => fileError(path, "write", cause)
  })

/** The batches of a state not finished (still followed by a rerun). */
export const openBatches = (state: BatchOffload.State | undefined): number =>
  state === undefined ? 0 : state.batches.filter((r) => !r.finished).length

/**
 * A finished record answers for none of its lines any more: those delivered are in the output (`done`), the
 * others were handed back. Marking them all released lets a `--retry-failed` rerun plan a failed one again (a
 * line a finished record still held would be skipped as held, and never be written).
 */
const settle = (state: BatchOffload.State): BatchOffload.State => ({
  ...state,
  batches: state.batches.map((r) => (r.finished ? { ...r, released: [...r.customIds] } : r))
})

// -------------------------------------------------------------------------------------------------------------
// the auto plan
// -------------------------------------------------------------------------------------------------------------

interface Figures {
  requests: number
  prompt: number
  output: number
  images: number
}
const zero = (): Figures => ({ requests: 0, prompt: 0, output: 0, images: 0 })
const add = (f: Figures, e: TokenEstimator.Estimate) => {
  f.requests++
  f.prompt += e.promptTokens
  f.output += e.maxOutputTokens
  f.images += e.images
}

/** List-price cost of some requests of a model (output at `max_tokens`), if its price is known. */
const costOf = (model: string, f: Figures): number | undefined =>
  Pricing.dollars(model, { input: f.prompt, cachedInput: 0, output: f.output }, f.images)

/**
 * Which lines go by batch and why: `batch` holds their `custom_id`s; `message` says what goes where, with the
 * deadline's arithmetic.
 */
export interface AutoPlan {
  readonly batch: ReadonlySet<string>
  readonly message: string
  /** The live lines need longer than the deadline at the limits known. */
  readonly missesDeadline: boolean
}

/**
 * The `auto` plan over the input. A batch may take its whole 24-hour window, so by the deadline a model's
 * Batch API queue passes at most `floor(deadline / 24 h)` times its enqueued-token limit: its lines go by batch,
 * in input order, while they fit that (all of them when no limit is given); the rest, the lines of endpoints the
 * Batch API does not take, and everything when the deadline is under 24 hours, go live. The live lines' time is
 * `sluice plan`'s arithmetic at the tier's (or `--limits`') figures.
 */
export const planAuto = (options: {
  readonly input: string
  readonly deadlineMs: number
  readonly tier: Tiers.Tier | undefined
  readonly limits: LimitsFile | undefined
  readonly enqueued: ReadonlyMap<string, number>
}): Effect.Effect<AutoPlan, BulkRunner.BulkFileError> =>
  Effect.gen(function*() {
    const windows = Math.floor(options.deadlineMs / DAY_MS)
    const batch = new Set<string>()
    const live = new Map<string, Figures>()
    const batched = new Map<string, Figures>()
    const used = new Map<string, number>()
    let ineligible = 0
    /** Per model, its lines the Batch API could take that go live (the plan's arithmetic names them). */
    const spilled = new Map<string, number>()
    const of = (map: Map<string, Figures>, model: string) => {
      let f = map.get(model)
      if (f === undefined) map.set(model, f = zero())
      return f
    }
    yield* Effect.tryPromise({
      try: async () => {
        const reader = NodeReadline.createInterface({
          input: NodeFs.createReadStream(options.input),
          crlfDelay: Infinity
        })
        for await (const text of reader) {
          let parsed: unknown
          try {
            parsed = JSON.parse(text)
          } catch {
            continue // the runner reports it
          }
          if (!Predicate.isRecord(parsed) || typeof parsed.custom_id !== "string") continue
          const url = typeof parsed.url === "string" ? parsed.url : ""
          const estimate = TokenEstimator.forEndpoint(url, parsed.body)
          if (estimate === undefined) continue
          const model = estimate.model
          if (!eligible.has(url)) {
            ineligible++
            add(of(live, model), estimate)
            continue
          }
          const limit = options.enqueued.get(model)
          const held = used.get(model) ?? 0
          const fits = windows > 0 &&
            (limit === undefined || (estimate.tokens <= limit && held + estimate.tokens <= windows * limit))
          if (fits) {
            used.set(model, held + estimate.tokens)
            batch.add(parsed.custom_id)
            add(of(batched, model), estimate)
          } else {
            add(of(live, model), estimate)
            spilled.set(model, (spilled.get(model) ?? 0) + 1)
          }
        }
      },
      catch: (cause) => fileError(options.input, "read", cause)
    })

    // the live lines' time: `sluice plan` per pool (pools drain in parallel)
    const byPool = new Map<string, Array<[string, Figures]>>()
    for (const entry of live) {
      const pool = Tiers.poolOf(entry[0])
      byPool.set(pool, [...(byPool.get(pool) ?? []), entry])
    }
    const fromFile = poolLimitsOf(options.limits)
    let minutes: number | undefined = 0
    let binding: string | undefined
    for (const [, entries] of byPool) {
      const total = entries.reduce((a, [, f]) => a + f.requests, 0)
      const sum = (k: keyof Figures) => entries.reduce((a, [, f]) => a + f[k], 0)
      const plan = Plan.compute({
        tier: options.tier ?? 1,
        mix: entries.map(([model, f]) => ({ model, share: f.requests })),
        requests: total,
        inputTokens: sum("prompt") / total,
        outputTokens: sum("output") / total,
        images: sum("images") / total,
        // without --tier, only --limits' figures are known
        limitsOf: (pool) => fromFile(pool) ?? (options.tier === undefined ? { interpolated: false } : undefined)
      })
      if (plan.minutes === undefined) minutes = undefined
      else if (minutes !== undefined && plan.minutes >= minutes) {
        minutes = plan.minutes
        binding = plan.binding
      }
    }
    const totals = (map: Map<string, Figures>) => {
      let requests = 0
      let cost: number | undefined = 0
      for (const [model, f] of map) {
        requests += f.requests
        const c = costOf(model, f)
        cost = cost === undefined || c === undefined ? undefined : cost + c
      }
      return { requests, cost }
    }
    const liveTotal = totals(live)
    const batchTotal = totals(batched)
    const deadline = Plan.formatMinutes(options.deadlineMs / 60_000)
    const missesDeadline = minutes !== undefined && minutes * 60_000 > options.deadlineMs
    const rows: Array<string> = []
    if (windows === 0) {
      rows.push(
        `auto: the deadline (${deadline}) is shorter than the Batch API's 24 h window (a batch may take all of it): ` +
          `every line goes live`
      )
    } else {
      rows.push(
        `auto: deadline ${deadline} = ${windows} Batch API window${windows > 1 ? "s" : ""} of 24 h ` +
          `(a batch may take its whole window, so a model's queue passes at most ${windows} × its enqueued-token limit by then)`
      )
      for (const model of new Set([...batched.keys(), ...spilled.keys()])) {
        const limit = options.enqueued.get(model)
        const b = batched.get(model)?.requests ?? 0
        const l = spilled.get(model) ?? 0
        rows.push(
          `  ${model}: ${
            limit === undefined
              ? "no enqueued-token limit given (--limits models.<model>.enqueuedTokens)"
              : `enqueued-token limit ${n(limit)} → at most ${n(windows * limit)} tokens by the deadline`
          }; ${lines(b)} via batch (${n(used.get(model) ?? 0)} tokens), ${n(l)} live`
        )
      }
    }
    if (ineligible > 0) rows.push(`  ${lines(ineligible)} live: an endpoint the Batch API does not take`)
    const liveTime = liveTotal.requests === 0
      ? ""
      : minutes === undefined
      ? " (time not known: give --tier or --limits)"
      : ` (≈ ${Plan.formatMinutes(minutes)}${options.tier === undefined ? "" : ` at tier ${options.tier}`}, ${
        binding ?? "no limit"
      } binding)`
    const saved = batchTotal.cost === undefined || batchTotal.requests === 0
      ? ""
      : ` (≈ ${usd(batchTotal.cost / 2)} at the Batch API's half price, ≈ ${usd(batchTotal.cost / 2)} saved)`
    rows.push(`auto: ${lines(liveTotal.requests)} live${liveTime}, ${n(batchTotal.requests)} via batch${saved}`)
    if (missesDeadline) {
      rows.push(
        `auto: warning: the live lines need ≈ ${Plan.formatMinutes(minutes!)}, more than the deadline (${deadline})`
      )
    }
    return { batch, message: rows.join("\n"), missesDeadline }
  })

// -------------------------------------------------------------------------------------------------------------
// the offload, its progress and summary
// -------------------------------------------------------------------------------------------------------------

const statusOrder = [
  "uploaded",
  "validating",
  "in_progress",
  "finalizing",
  "cancelling",
  "completed",
  "expired",
  "cancelled",
  "failed"
]

/**
 * The ETA of the lines in batches, for the progress line: at the rate lines have come back from batches that ended
 * since this run started (`elapsedMs` ago, {@link etaRate}); with none back yet, unknown, within the Batch API's
 * 24-hour window.
 * Nothing when no line is in a batch.
 */
export const etaText = (inBatches: number, back: number, elapsedMs: number): string | undefined => {
  if (inBatches <= 0) return undefined
  if (back <= 0 || !(elapsedMs > 0)) return "ETA ? (none back yet; a batch ends within its 24 h window)"
  return `ETA ≈ ${Plan.formatMinutes((inBatches * elapsedMs) / back / 60_000)} at the rate so far`
}

/**
 * How far before `since` a batch's end by the Batch API's clock may be and still count as this run's: that clock is
 * the server's, in whole seconds, and may run behind ours.
 */
const SERVER_CLOCK_MARGIN_MILLIS = 60_000

/**
 * The ETA's rate, from `since` (this run's start): only the lines of batches that ended while this run watched count.
 * A resume downloads at once the results of batches that ended while no run watched them: counted, they made the
 * rate far too fast and the ETA far too short. So a batch already ended in the state the run resumes from never
 * counts, and one this run sees ended counts unless the Batch API's own end (`endedAt`) is well before `since`
 * (it ended while no run watched, the state not yet saying so); within {@link SERVER_CLOCK_MARGIN_MILLIS} it counts.
 */
export const etaRate = (since: number) => {
  const endOf = new Map<string, number>()
  let back = 0
  const record = (state: BatchOffload.State, end: (r: BatchOffload.BatchRecord) => number) => {
    for (const r of state.batches) {
      if (r.batchId !== undefined && BatchOffload.isTerminal(r.status) && !endOf.has(r.batchId)) {
        endOf.set(r.batchId, end(r))
      }
    }
  }
  return {
    /** The state this run resumes from. */
    resumed: (state: BatchOffload.State) => record(state, () => -Infinity),
    /** A state the offload hands over at `now`. */
    seen: (state: BatchOffload.State, now: number) =>
      record(state, (r) => r.endedAt === undefined ? now : r.endedAt + SERVER_CLOCK_MARGIN_MILLIS),
    /** A line delivered from batch `batchId` (`null`: not from a batch). */
    delivered: (batchId: string | null) => {
      if (batchId !== null && (endOf.get(batchId) ?? -Infinity) >= since) back++
    },
    /** {@link etaText} at `now`. */
    text: (inBatches: number, now: number) => etaText(inBatches, back, now - since)
  }
}

/** What `sluice run` needs of the offload: the runner's `Offload`, the progress text and the summary. */
export interface Batch {
  readonly offload: BulkRunner.Offload
  /**
   * `batches: 2 in_progress, 1 completed; lines 4,000 in batches, 6,000 back; ETA ≈ 12.0 min at the rate so far`
   * (or nothing before any batch).
   */
  readonly progress: Effect.Effect<string | undefined>
  /** The summary's batch lines, once the run has ended. */
  readonly summary: Effect.Effect<ReadonlyArray<string>>
  /**
   * The `custom_id`s the Batch API handed back expired, failed or refused for the enqueued-token limit, once the
   * offload has ended on its own (every batch finished): `auto` sends them live. Not those cancelled.
   */
  readonly requeue: Effect.Effect<ReadonlySet<string>>
}

/**
 * A second pass's offload that sends only `live` live: every other line not done is held back, unsent, and the
 * pass stops (resumable) naming how many.
 */
export const holdBack = (live: ReadonlySet<string>): BulkRunner.Offload => ({
  accepts: (request) => !live.has(request.customId),
  run: (io) =>
    Effect.map(
      Stream.runCount(Stream.filter(io.lines, (text) => text !== "")),
      (held) => (held === 0 ? {} : { stop: `${lines(held)} left for a rerun (cancelled, or not handed back)` })
    )
})

/** Builds the offload of one `sluice run`. */
export const make = (options: {
  readonly client: OpenAI
  readonly limiter: RateLimiter.Service
  /** Where batches' enqueued tokens are held (`--redis`: shared; default in memory). */
  readonly holds?: HoldStore.Service | undefined
  readonly statePath: string
  /** Lines to send by batch (besides those a batch of the state holds); endpoints it does not take go live. */
  readonly accepts: (request: BulkRunner.Request) => boolean
  /** `--cancel`: cancel the state's batches, submit nothing, nothing live. */
  readonly cancel: boolean
  /** `--restart`: start a new job (the caller has checked no batch of the old one is open). */
  readonly restart: boolean
  readonly poll: number
  /** `--batch-lease`: how long a batch's hold outlives its run's last renewal (a duration, e.g. `2m`). */
  readonly lease: string
  readonly report: (text: string) => Effect.Effect<void>
}): Effect.Effect<Batch, BatchOffload.BatchOffloadConfigError> =>
  Effect.map(
    Effect.suspend(() => {
      const lease = parseMillis(options.lease)
      return lease === undefined || !(lease > 0)
        ? Effect.fail(
          new BatchOffload.BatchOffloadConfigError({
            option: "lease",
            message: `--batch-lease: cannot parse ${JSON.stringify(options.lease)} (a duration above zero, e.g. 2m)`
          })
        )
        : BatchOffload.make({
          client: options.client,
          limiter: options.limiter,
          holds: options.holds,
          lease,
          poll: { initial: options.poll, max: Math.max(options.poll, 300_000) }
        })
    }),
    (service) => {
      let state: BatchOffload.State | undefined
      let held = new Set<string>()
      let summary: BatchOffload.Summary | undefined
      let failure: string | undefined
      const delivered = { succeeded: 0, failed: 0 }
      /** Per batch id, the lines this run has written from it. */
      const backOf = new Map<string, number>()
      /** The ETA's rate, from the start of the offload's run. */
      let eta: ReturnType<typeof etaRate> | undefined
      /** The list price of the answers delivered (the Batch API bills half of it), `undefined` once one has none. */
      let listCost: number | undefined = 0
      let answers = 0

      const onResult = (io: BulkRunner.OffloadIo) => (result: BatchOffload.Result) => {
        let kind = "BatchRequestError"
        try {
          const line: unknown = JSON.parse(result.line)
          if (Predicate.isRecord(line)) {
            if (Predicate.isRecord(line.error) && typeof line.error.kind === "string") kind = line.error.kind
            const body = Predicate.isRecord(line.response) ? line.response.body : undefined
            if (Predicate.isRecord(body) && typeof body.model === "string") {
              const dollars = Pricing.dollarsOfAnswer(body.model, body)
              answers++
              listCost = listCost === undefined || dollars === undefined ? undefined : listCost + dollars
            }
          }
        } catch {
          // the offload's own line: always JSON
        }
        if (result.ok) delivered.succeeded++
        else delivered.failed++
        if (result.batchId !== null) backOf.set(result.batchId, (backOf.get(result.batchId) ?? 0) + 1)
        eta?.delivered(result.batchId)
        // a line the output cannot take stops the run (a defect caught below, as the typed error it is)
        return Effect.orDie(io.write(result.line, result.ok ? null : { kind }))
      }

      const runOptions = (io: BulkRunner.OffloadIo): BatchOffload.RunOptions => ({
        done: io.done,
        onResult: onResult(io),
        onState: (next) =>
          Effect.orDie(Effect.tap(writeState(options.statePath, next), () =>
            Effect.map(Clock.currentTimeMillis, (now) => {
              state = next
              eta?.seen(next, now)
            }))),
        onProblem: (problem) =>
          options.report(`batch: ${describeProblem(problem)}`),
        stop: options.cancel ? Effect.void : undefined
      })

      const offload: BulkRunner.Offload = {
        paths: [
          { role: "batch state file", path: options.statePath },
          { role: "batch state file's temporary", path: `${options.statePath}.tmp` }
        ],
        // other outputs map to the same state file (`results.jsonl` and `results`): each run rewrites all of it
        locks: [options.statePath],
        prepare: Effect.gen(function*() {
          const found = options.restart ? undefined : yield* readState(options.statePath)
          state = found === undefined ? undefined : settle(found)
          held = new Set<string>()
          for (const record of state?.batches ?? []) {
            const released = new Set(record.released)
            for (const id of record.customIds) if (!released.has(id)) held.add(id)
          }
        }),
        accepts: (request) =>
          options.cancel || held.has(request.customId) || (eligible.has(request.url) && options.accepts(request)),
        run: (io) =>
          Effect.gen(function*() {
            const from = state
            eta = etaRate(yield* Clock.currentTimeMillis)
            if (from !== undefined) eta.resumed(from)
            const ended = from === undefined
              ? yield* service.run(io.lines, runOptions(io))
              : yield* service.resume(from, runOptions(io), io.lines)
            summary = ended
            if (options.cancel) {
              const cancelled = ended.state.batches.filter((r) => r.status === "cancelled").length
              return {
                stop: from === undefined
                  ? `--cancel: no batch state (${options.statePath}): nothing to cancel`
                  : `--cancel: ${cancelled} batches cancelled; ${n(ended.unfinished.length)} lines not done ` +
                    `(rerun without --cancel to submit them again)`
              }
            }
            if (ended.unfinished.length === 0) return {}
            return {
              stop: `${n(ended.unfinished.length)} lines came back from the Batch API not done (${
                reasons(ended.unfinished)
              }): rerun to submit them again`
            }
          }).pipe(
            Effect.catchTag("BatchApiError", (e) =>
              Effect.sync(() => {
                failure = e.message
                return {
                  stop:
                    `the Batch API failed (${e.operation}${
                      e.id === undefined ? "" : ` ${e.id}`
                    }: ${e.kind}, ${e.message}); ` +
                    `its batches are recorded in ${options.statePath}: rerun to go on`
                }
              })),
            Effect.catchAllDefect((defect) =>
              defect instanceof BulkRunner.BulkFileError ? Effect.fail(defect) : Effect.die(defect)
            )
          )
      }

      const counts = () => {
        const by = new Map<string, number>()
        let inBatches = 0
        for (const r of state?.batches ?? []) {
          const status = r.status ?? "uploaded"
          by.set(status, (by.get(status) ?? 0) + 1)
          if (!r.finished) inBatches += r.customIds.length - r.released.length
        }
        const text = statusOrder.filter((s) => by.has(s)).map((s) => `${by.get(s)} ${s}`).join(", ")
        return { text, inBatches }
      }

      /** The batches still running, each with the lines the Batch API has done of it (at most `max` named). */
      const inFlight = (max: number) => {
        const open = (state?.batches ?? []).filter((r) => !r.finished && r.batchId !== undefined)
        const shown = open.slice(0, max).map(perBatch)
        return open.length > max ? [...shown, `${open.length - max} more`] : shown
      }

      const progress = Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          if (state === undefined || state.batches.length === 0) return undefined
          const { inBatches, text } = counts()
          const back = delivered.succeeded + delivered.failed
          const etaLine = eta?.text(inBatches, now)
          const flying = inFlight(3)
          return `batches: ${text}; lines ${n(inBatches)} in batches, ${n(back)} back${
            flying.length === 0 ? "" : `; in flight: ${flying.join(", ")}`
          }${etaLine === undefined ? "" : `; ${etaLine}`}`
        }))

      const summaryLines = Effect.sync(() => {
        const rows: Array<string> = []
        if (state !== undefined) {
          const { text } = counts()
          rows.push(
            `batch: job ${state.job}; ${state.batches.length} batches${
              text === "" ? "" : ` (${text})`
            }; state ${options.statePath}`
          )
          const shown = state.batches.slice(0, SUMMARY_BATCHES)
          for (const r of shown) {
            rows.push(`  ${r.batchId ?? r.key}: ${perBatch(r)}, ${n(backOf.get(r.batchId ?? "") ?? 0)} back`)
          }
          if (state.batches.length > shown.length) rows.push(`  and ${state.batches.length - shown.length} more`)
        }
        rows.push(
          `batch lines: ${n(delivered.succeeded)} succeeded, ${n(delivered.failed)} failed${
            summary === undefined || summary.unfinished.length === 0
              ? ""
              : `, ${n(summary.unfinished.length)} not done (${reasons(summary.unfinished)})`
          }`
        )
        if (answers > 0) {
          rows.push(
            listCost === undefined
              ? "batch cost: not known (a model without a price, or an answer without usage)"
              : `batch cost: ${usd(listCost / 2)} at the Batch API's half price (saved ${
                usd(listCost / 2)
              } against the live price), from the usage the results report`
          )
        }
        if (failure !== undefined) rows.push(`batch: stopped by an API failure: ${failure}`)
        return rows
      })

      const requeue = Effect.sync(() => {
        const ids = new Set<string>()
        if (summary === undefined || options.cancel) return ids
        for (const u of summary.unfinished) {
          if (u.reason !== "cancelled" && u.reason !== "ineligible") ids.add(u.customId)
        }
        return ids
      })

      return { offload, progress, summary: summaryLines, requeue }
    }
  )

/** The batches the summary names one by one. */
const SUMMARY_BATCHES = 20

/**
 * One batch for the progress line and the summary: `gpt-4o-mini 1,200/5,000 done, in_progress`, the lines the Batch
 * API has done of it (its `request_counts`, completed or failed) as last polled.
 */
export const perBatch = (r: BatchOffload.BatchRecord): string => {
  const counts = r.requestCounts
  const total = counts !== undefined && counts.total > 0 ? counts.total : r.customIds.length
  const done = counts === undefined ? 0 : counts.completed + counts.failed
  return `${r.model} ${n(done)}/${n(total)} done, ${r.status ?? "uploaded"}`
}

/** A problem in words, naming its line (input line and `custom_id`) when it concerns one. */
const describeProblem = (problem: BatchOffload.BatchProblem): string => {
  const where = "customId" in problem && problem.customId !== undefined
    ? `line ${"line" in problem && problem.line !== undefined ? problem.line : "?"} (${problem.customId}): `
    : ""
  return `${where}${problem._tag}: ${problem.message}`
}

const reasons = (unfinished: ReadonlyArray<BatchOffload.Unfinished>) => {
  const by = new Map<string, number>()
  for (const u of unfinished) by.set(u.reason, (by.get(u.reason) ?? 0) + 1)
  return Array.from(by, ([reason, count]) => `${reason} ${n(count)}`).join(", ")
}
