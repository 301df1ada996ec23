/**
 * Every way a batch ends, against the in-process simulator under TestClock, each in its documented state with
 * nothing lost: expired (finished lines delivered, the rest handed back and requeued by a resume), failed for one
 * line (that line fails, named; the others go out again), failed as a whole (its lines handed back, a resume
 * submits them again), refused for the enqueued-token limit (resubmitted
 * once the queue has room), cancelled (partial results, the rest handed back), a line over the limit alone; and
 * resuming from a recorded state never creates a batch twice.
 */
import { describe, expect, it } from "@effect/vitest"
import { HoldStore, LimiterStore, RateLimiter } from "@sluice/core"
import { BatchOffload, OpenAi } from "@sluice/openai"
import { Clock, Context, Effect, Exit, Layer, Logger, Option, Stream } from "effect"
import { toFile } from "openai"
import { chatLine, offload, parse, recorder, runLines, scenario, simBatches, Simulator } from "./batchHarness.js"
import { drive, makeClient } from "./harness.js"

const ids = (n: number, prefix = "l") => Array.from({ length: n }, (_, i) => `${prefix}-${i}`)
const summaryOf = <A, E>(exit: Exit.Exit<A, E>): A => {
  if (Exit.isFailure(exit)) throw new Error(`run failed: ${String(exit.cause)}`)
  return exit.value
}

/**
 * An offload with gpt-4o-mini's 1,000,000 enqueued tokens, its holds on a store that records each hold taken (its
 * id and the amount held just after).
 */
const recordingHolds = Effect.gen(function*() {
  const client = yield* makeClient()
  const limiter = yield* RateLimiter.make({ budgets: [BatchOffload.budget("gpt-4o-mini", 1_000_000)] }).pipe(
    Effect.provide(LimiterStore.layerMemory)
  )
  const store = yield* HoldStore.makeMemory
  const taken: Array<readonly [string, number]> = []
  const holds: HoldStore.Service = {
    ...store,
    take: (id, claims, amount, lease) =>
      Effect.tap(
        store.take(id, claims, amount, lease),
        (ok) => Effect.map(store.held("batch:gpt-4o-mini"), (held) => void (ok && taken.push([id, held])))
      )
  }
  const service = yield* BatchOffload.make({ client, limiter, holds, poll: { initial: "5 seconds", max: "1 minute" } })
  return { service, store, taken }
})

describe("BatchOffload: how batches end", () => {
  it.effect("expired: the lines done in 24 h are delivered, the rest come back and a resume finishes them", () =>
    Effect.gen(function*() {
      // one request an hour: 23 of 30 are done when the 24-hour window closes
      const lines = ids(30).map((id) => chatLine(id, `slow ${id}`))
      const service = yield* offload({}, { poll: { initial: "10 minutes", max: "2 hours" } })
      const first = recorder()
      const run = yield* drive(service.run(Stream.fromIterable(lines), first.options), 600_000)
      const summary = summaryOf(run.exit)
      expect(first.results).toHaveLength(23)
      expect(summary.unfinished.map((u) => u.reason)).toEqual(Array(7).fill("expired"))
      expect(summary.unfinished.map((u) => u.customId).sort()).toEqual(ids(30).slice(23).sort())
      expect(summary.unfinished.every((u) => lines.includes(u.request))).toBe(true)
      const expired = summary.problems.filter((p) => p._tag === "BatchExpired")
      expect(expired).toHaveLength(1)
      expect(expired[0]).toMatchObject({ completed: 23, unfinished: 7 })
      // requeue: the resume plans every line no batch holds (the 7 handed back)
      const second = recorder()
      const resumed = yield* drive(
        service.resume(summary.state, second.options, Stream.fromIterable(lines)),
        600_000
      )
      const after = summaryOf(resumed.exit)
      expect(second.results.map((r) => r.customId).sort()).toEqual(ids(30).slice(23).sort())
      expect(after.skipped).toBe(23)
      expect(after.unfinished).toEqual([])
      const all = [...first.results, ...second.results].map((r) => r.customId).sort()
      expect(all).toEqual(ids(30).sort())
      expect(yield* simBatches).toHaveLength(2)
    }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario({}, { inProgressMs: 0, perRequestMs: 3_600_000 })))))

  it.effect("expired, then a resume without input: the lines handed back are reported again, not lost", () =>
    Effect.gen(function*() {
      const lines = ids(30).map((id) => chatLine(id, `slow ${id}`))
      const service = yield* offload({}, { poll: { initial: "10 minutes", max: "2 hours" } })
      const first = recorder()
      const summary = summaryOf((yield* drive(service.run(Stream.fromIterable(lines), first.options), 600_000)).exit)
      expect(summary.unfinished).toHaveLength(7)
      const state = yield* BatchOffload.decodeState(BatchOffload.encodeState(summary.state))
      const second = recorder()
      const done = new Set(first.results.map((r) => r.customId))
      const after = summaryOf((yield* drive(service.resume(state, { ...second.options, done }), 60_000)).exit)
      expect(second.results).toEqual([])
      expect(after.unfinished.map((u) => u.customId).sort()).toEqual(ids(30).slice(23).sort())
      expect(after.unfinished.every((u) => u.reason === "expired")).toBe(true)
      expect(after.unfinished.map((u) => u.request).sort()).toEqual(lines.slice(23).sort())
      expect(after.unfinished.map((u) => u.line).sort()).toEqual(
        summary.unfinished.map((u) => u.line).sort()
      )
      // with input that lacks them: the same
      const third = recorder()
      const partial = summaryOf(
        (yield* drive(service.resume(state, third.options, Stream.fromIterable(lines.slice(0, 23))), 60_000)).exit
      )
      expect(third.results).toEqual([])
      expect(partial.unfinished.map((u) => u.customId).sort()).toEqual(ids(30).slice(23).sort())
      expect(yield* simBatches).toHaveLength(1)
    }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario({}, { inProgressMs: 0, perRequestMs: 3_600_000 })))))

  it.effect("a validation error on one line: that line fails, named; the others go out again", () =>
    Effect.gen(function*() {
      const lines = ids(10).map((id, i) => chatLine(id, i === 3 ? "[sim:batch-invalid] this one" : `fine ${id}`))
      const { exit, recorded } = yield* runLines(lines, {})
      const summary = summaryOf(exit)
      expect(recorded.results.map((r) => r.customId).sort()).toEqual(ids(10).sort())
      const bad = parse(recorded.results.find((r) => r.customId === "l-3")!.line)
      expect(bad.error).toMatchObject({ kind: "BatchValidationError", code: "invalid_request" })
      expect(summary.succeeded).toBe(9)
      expect(summary.failed).toBe(1)
      const problem = summary.problems.find((p) => p._tag === "BatchValidationError")
      expect(problem).toMatchObject({ customId: "l-3", line: 4, fileLine: 4 })
      const batches = yield* simBatches
      expect(batches.map((b) => b.status).sort()).toEqual(["completed", "failed"])
      expect(summary.state.batches).toHaveLength(2)
      expect(summary.state.batches[0].released.length).toBe(9)
    }).pipe(Effect.provide(Simulator.layer(scenario({})))))

  it.effect("failed as a whole: BatchFailed, every line handed back as failed, none lost; a resume sends them again", () =>
    Effect.gen(function*() {
      // the first batch fails as a whole: its uploaded file is made to mix two models, which the simulator's
      // validation fails with `mismatched_model`, an error naming no line (a batch the server fails outright);
      // the uploads after it go as they are
      const client = yield* makeClient()
      const upload = client.files.create.bind(client.files)
      let tamper = true
      client.files.create = (async (params: Parameters<typeof upload>[0]) => {
        if (!tamper) return upload(params)
        tamper = false
        const file = params.file as File
        const mixed = `${await file.text()}\n${chatLine("intruder", "another model", "gpt-4o")}\n`
        return upload({ ...params, file: await toFile(Buffer.from(mixed), file.name) })
      }) as unknown as typeof client.files.create
      const limiter = yield* RateLimiter.make({ budgets: [] }).pipe(Effect.provide(LimiterStore.layerMemory))
      const service = yield* BatchOffload.make({ client, limiter, poll: { initial: "5 seconds", max: "1 minute" } })
      const lines = ids(8).map((id) => chatLine(id, `fine ${id}`))
      const first = recorder()
      const summary = summaryOf((yield* drive(service.run(Stream.fromIterable(lines), first.options), 60_000)).exit)
      expect(first.results).toEqual([])
      expect(summary.succeeded + summary.failed).toBe(0)
      expect(summary.unfinished.map((u) => u.customId).sort()).toEqual(ids(8).sort())
      expect(summary.unfinished.every((u) => u.reason === "failed" && lines.includes(u.request))).toBe(true)
      const batchId = summary.state.batches[0].batchId
      expect(summary.problems.map((p) => p._tag)).toEqual(["BatchFailed"])
      expect(summary.problems[0]).toMatchObject({ batchId, model: "gpt-4o-mini", code: "mismatched_model" })
      expect(summary.state.batches[0]).toMatchObject({ status: "failed", handedBack: "failed", finished: true })
      expect([...summary.state.batches[0].released].sort()).toEqual(ids(8).sort())
      // a rerun from the persisted state: the lines no batch holds go out in a new batch, each delivered once
      const state = yield* BatchOffload.decodeState(BatchOffload.encodeState(summary.state))
      const second = recorder()
      const after = summaryOf(
        (yield* drive(service.resume(state, second.options, Stream.fromIterable(lines)), 60_000)).exit
      )
      expect(second.results.map((r) => r.customId).sort()).toEqual(ids(8).sort())
      expect(second.results.every((r) => r.ok && r.batchId !== batchId)).toBe(true)
      expect(after).toMatchObject({ succeeded: 8, failed: 0, unfinished: [], problems: [] })
      expect((yield* simBatches).map((b) => b.status).sort()).toEqual(["completed", "failed"])
    }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario({})))))

  it.effect("refused for the enqueued-token limit (another job filled the queue): resubmitted when it has room", () =>
    Effect.gen(function*() {
      // about 300 tokens a line (800 characters and max_tokens 100): the other job holds 3,900 of 5,000
      const content = (id: string) => `${id} ${"word ".repeat(160)}`.slice(0, 800)
      const client = yield* makeClient()
      const other = ids(13, "other").map((id) => chatLine(id, content(id), "gpt-4o-mini", 100)).join("\n")
      const file = yield* Effect.promise(async () =>
        client.files.create({ file: await toFile(Buffer.from(other), "other.jsonl"), purpose: "batch" })
      )
      yield* Effect.promise(() =>
        client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" })
      )
      const lines = ids(10).map((id) => chatLine(id, content(id), "gpt-4o-mini", 100))
      const { exit, recorded } = yield* runLines(lines, { "gpt-4o-mini": 5_000 })
      const summary = summaryOf(exit)
      expect(recorded.results.map((r) => r.customId).sort()).toEqual(ids(10).sort())
      expect(summary.succeeded).toBe(10)
      const refused = summary.problems.filter((p) => p._tag === "EnqueuedTokenLimitExceeded")
      expect(refused.length).toBeGreaterThan(0)
      expect(refused.every((p) => p._tag === "EnqueuedTokenLimitExceeded" && p.reason === "refused")).toBe(true)
      expect(summary.state.batches).toHaveLength(1)
      expect(summary.state.batches[0].attempts).toBe(refused.length + 1)
      const statuses = (yield* simBatches).map((b) => b.status)
      expect(statuses.filter((s) => s === "failed")).toHaveLength(refused.length)
      expect(statuses.filter((s) => s === "completed")).toHaveLength(2)
    }).pipe(Effect.provide(Simulator.layer(scenario({ "gpt-4o-mini": 5_000 })))))

  it.effect("a line that alone needs more than the model's enqueued-token limit fails at once, typed", () =>
    Effect.gen(function*() {
      const lines = [chatLine("small", "hello", "gpt-4o-mini", 50), chatLine("huge", "hello", "gpt-4o-mini", 9_000)]
      const { exit, recorded } = yield* runLines(lines, { "gpt-4o-mini": 5_000 })
      const summary = summaryOf(exit)
      const huge = parse(recorded.results.find((r) => r.customId === "huge")!.line)
      expect(huge.error).toMatchObject({ kind: "EnqueuedTokenLimitExceeded", code: "token_limit_exceeded" })
      expect(summary.problems).toHaveLength(1)
      expect(summary.problems[0]).toMatchObject({ reason: "line-too-large", customId: "huge", line: 2, limit: 5_000 })
      expect(parse(recorded.results.find((r) => r.customId === "small")!.line).response.status_code).toBe(200)
      expect(yield* simBatches).toHaveLength(1)
    }).pipe(Effect.provide(Simulator.layer(scenario({ "gpt-4o-mini": 5_000 })))))

  it.effect("cancel: the results finished before the cancel are delivered, the others come back", () =>
    Effect.gen(function*() {
      // one request an hour; the job is cancelled at 3 h 30 min: 3 are done
      const lines = ids(10).map((id) => chatLine(id, `slow ${id}`))
      const { exit, recorded } = yield* runLines(lines, {}, { stop: Effect.sleep("210 minutes") }, {
        poll: { initial: "1 minute", max: "30 minutes" }
      })
      const summary = summaryOf(exit)
      expect(recorded.results.map((r) => r.customId).sort()).toEqual(ids(3).sort())
      expect(summary.unfinished.map((u) => u.customId).sort()).toEqual(ids(10).slice(3).sort())
      expect(summary.unfinished.every((u) => u.reason === "cancelled")).toBe(true)
      expect(summary.problems).toHaveLength(1)
      expect(summary.problems[0]).toMatchObject({ _tag: "BatchCancelled", completed: 3, unfinished: 7 })
      expect((yield* simBatches).map((b) => b.status)).toEqual(["cancelled"])
      expect(summary.state.batches[0]).toMatchObject({ finished: true, status: "cancelled" })
      // its end by the Batch API's clock (cancelled_at: a second after the cancel at 3 h 30 min)
      expect(summary.state.batches[0].endedAt).toBeGreaterThanOrEqual(210 * 60_000)
      expect(summary.state.batches[0].endedAt).toBeLessThanOrEqual(211 * 60_000)
    }).pipe(Effect.provide(Simulator.layer(scenario({}, { inProgressMs: 0, perRequestMs: 3_600_000 })))))
})

describe("BatchOffload: cancel from elsewhere", () => {
  it.effect("cancel(state) from another fiber (another process would do the same): the run delivers what finished", () =>
    Effect.gen(function*() {
      const lines = ids(10).map((id) => chatLine(id, `slow ${id}`))
      const service = yield* offload({}, { poll: { initial: "1 minute", max: "30 minutes" } })
      const recorded = recorder()
      const canceller = Effect.gen(function*() {
        yield* Effect.sleep("150 minutes")
        yield* service.cancel(recorded.states[recorded.states.length - 1])
      })
      const both = Effect.zipLeft(service.run(Stream.fromIterable(lines), recorded.options), canceller, {
        concurrent: true
      })
      const summary = summaryOf((yield* drive(both, 600_000)).exit)
      expect(recorded.results.map((r) => r.customId).sort()).toEqual(ids(2))
      expect(summary.unfinished.map((u) => u.customId).sort()).toEqual(ids(10).slice(2).sort())
      expect(summary.problems.map((p) => p._tag)).toEqual(["BatchCancelled"])
    }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario({}, { inProgressMs: 0, perRequestMs: 3_600_000 })))))
})

describe("BatchOffload: resume", () => {
  it.effect("killed while its batches run: the resume follows them, creates none, delivers each line once", () =>
    Effect.gen(function*() {
      const lines = ids(20).map((id) => chatLine(id, `resume ${id}`))
      const service = yield* offload({}, { maxRequests: 10 })
      const first = recorder()
      // the run stops (as a killed process would) 10 minutes in: both batches exist, neither has finished
      yield* drive(Effect.timeout(service.run(Stream.fromIterable(lines), first.options), "10 minutes"), 60_000)
      expect(first.results).toEqual([])
      const saved = first.states[first.states.length - 1]
      expect(saved.batches.map((b) => b.batchId !== undefined)).toEqual([true, true])
      // persisted as JSON and read back
      const state = yield* BatchOffload.decodeState(BatchOffload.encodeState(saved))
      const second = recorder()
      const resumed = yield* drive(service.resume(state, second.options, Stream.fromIterable(lines)), 600_000)
      const summary = summaryOf(resumed.exit)
      expect(second.results.map((r) => r.customId).sort()).toEqual(ids(20).sort())
      expect(summary.skipped).toBe(20)
      expect(yield* simBatches).toHaveLength(2)
    }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario({}, { inProgressMs: 0, perRequestMs: 60_000 })))))

  it.effect("killed while a batch's output downloads: the resume downloads it again, each line once, no new batch", () =>
    Effect.gen(function*() {
      // gpt-4o-mini's 2 lines end at 2 min and are delivered; gpt-4o's 30 end at 30 min, and its output file takes
      // 10 minutes to download: the run stops (as a killed process would) at 33 min, in that download
      const mini = ids(2, "mini").map((id) => chatLine(id, `m ${id}`))
      const big = ids(30, "big").map((id) => chatLine(id, `b ${id}`, "gpt-4o"))
      const lines = [...mini, ...big]
      const service = yield* offload({})
      const first = recorder()
      yield* drive(Effect.timeout(service.run(Stream.fromIterable(lines), first.options), "33 minutes"), 60_000)
      expect(first.results.map((r) => r.customId).sort()).toEqual(ids(2, "mini").sort())
      const saved = first.states[first.states.length - 1]
      const downloading = saved.batches.find((b) => b.model === "gpt-4o")!
      expect([downloading.status, downloading.finished, typeof downloading.outputFileId]).toEqual([
        "completed",
        false,
        "string"
      ])
      // the rerun knows the lines already written (the CLI reads them from its output) and resumes the state
      const second = recorder()
      const done = new Set(first.results.map((r) => r.customId))
      const resumed = yield* drive(
        service.resume(saved, { ...second.options, done }, Stream.fromIterable(lines)),
        60_000
      )
      summaryOf(resumed.exit)
      const all = [...first.results, ...second.results].map((r) => r.customId)
      expect(all.sort()).toEqual(lines.map((l) => parse(l).custom_id).sort())
      expect(yield* simBatches).toHaveLength(2)
    }).pipe(
      Effect.scoped,
      Effect.provide(Simulator.layer(scenario({}, {
        validatingMs: 0,
        inProgressMs: 0,
        perRequestMs: 60_000,
        finalizingMs: 0,
        downloadMs: 600_000
      })))
    ))

  it.effect("killed between creating a batch and recording its id: the resume finds it by its file", () =>
    Effect.gen(function*() {
      const lines = ids(5).map((id) => chatLine(id, `found ${id}`))
      const service = yield* offload({})
      const first = recorder()
      yield* drive(Effect.timeout(service.run(Stream.fromIterable(lines), first.options), "1 minute"), 10_000)
      // the state as it was recorded after the upload, before the batch id
      const uploaded = first.states.find((s) => s.batches.length === 1 && s.batches[0].batchId === undefined)!
      expect(uploaded).toBeDefined()
      expect(yield* simBatches).toHaveLength(1)
      const second = recorder()
      const resumed = yield* drive(service.resume(uploaded, second.options, Stream.fromIterable(lines)), 60_000)
      const summary = summaryOf(resumed.exit)
      expect(second.results.map((r) => r.customId).sort()).toEqual(ids(5).sort())
      expect(yield* simBatches).toHaveLength(1)
      expect(summary.state.batches[0].batchId).toBe((yield* simBatches)[0].id)
    }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario({})))))

  it.effect("killed while the lines around a refused one run again: the resume follows that batch, makes no third", () =>
    Effect.gen(function*() {
      // line 4 fails validation; the 9 others go out in a second batch, cut (as a kill would) while it runs
      const lines = ids(10).map((id, i) => chatLine(id, i === 3 ? "[sim:batch-invalid] this one" : `fine ${id}`))
      const service = yield* offload({})
      const first = recorder()
      yield* drive(Effect.timeout(service.run(Stream.fromIterable(lines), first.options), "4 minutes"), 10_000)
      const saved = first.states[first.states.length - 1]
      expect(saved.batches.map((b) => b.finished)).toEqual([true, false])
      expect((yield* simBatches).map((b) => b.status).sort()).toEqual(["failed", "in_progress"])
      const state = yield* BatchOffload.decodeState(BatchOffload.encodeState(saved))
      const second = recorder()
      const done = new Set(first.results.map((r) => r.customId))
      const resumed = yield* drive(
        service.resume(state, { ...second.options, done }, Stream.fromIterable(lines)),
        60_000
      )
      const summary = summaryOf(resumed.exit)
      const all = [...first.results, ...second.results].map((r) => r.customId).sort()
      expect(all).toEqual(ids(10).sort())
      expect(summary.unfinished).toEqual([])
      const batches = yield* simBatches
      expect(batches).toHaveLength(2)
      expect(batches.map((b) => `${b.status}:${b.request_counts?.total}`).sort()).toEqual(["completed:9", "failed:0"])
    }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario({}, { inProgressMs: 0, perRequestMs: 60_000 })))))

  it.effect("a resume holds its batches' tokens again under the same ids: a dead run's hold is taken over, not added", () =>
    Effect.gen(function*() {
      const lines = ids(6).map((id) => chatLine(id, `held ${id}`))
      const { service, store, taken } = yield* recordingHolds
      const first = recorder()
      // the first run is stopped while its batch runs
      yield* drive(Effect.timeout(service.run(Stream.fromIterable(lines), first.options), "2 minutes"), 10_000)
      const saved = first.states[first.states.length - 1]
      expect(saved.batches.map((b) => b.finished)).toEqual([false])
      const { key, tokens } = saved.batches[0]
      expect(tokens).toBeGreaterThan(0)
      expect(taken).toEqual([[key, tokens]])
      // the stopped run released its hold on the way out; a killed process would not have: its hold is put back
      // on the store, live, as the dead run left it
      expect(yield* store.take(key, [{ scope: "batch:gpt-4o-mini", capacity: 1_000_000 }], tokens, 120_000)).toBe(
        true
      )
      expect(yield* store.held("batch:gpt-4o-mini")).toBe(tokens)
      const second = recorder()
      summaryOf((yield* drive(service.resume(saved, second.options), 60_000)).exit)
      expect(second.results.map((r) => r.customId).sort()).toEqual(ids(6).sort())
      // taken again under the same id while the dead run's hold was still live: replaced, not counted twice
      expect(taken).toEqual([[key, tokens], [key, tokens]])
      expect(yield* store.held("batch:gpt-4o-mini")).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario({}, { inProgressMs: 0, perRequestMs: 60_000 })))))

  it.effect("a resume whose records' keys skip a number (a file stopped before it was recorded) reuses no key", () =>
    Effect.gen(function*() {
      const scope = "batch:gpt-4o-mini"
      const { service, store, taken } = yield* recordingHolds
      const first = recorder()
      yield* drive(
        Effect.timeout(
          service.run(Stream.fromIterable(ids(3, "a").map((id) => chatLine(id, id))), first.options),
          "2 minutes"
        ),
        10_000
      )
      const last = first.states[first.states.length - 1]
      expect(last.batches.map((b) => [b.key, b.finished])).toEqual([["test-1", false]])
      // the state a run leaves when its first file stopped while waiting for room (it took "test-1", no record)
      const saved = { ...last, batches: [{ ...last.batches[0], key: "test-2" }] }
      taken.length = 0
      const second = recorder()
      const summary = summaryOf(
        (yield* drive(
          service.resume(saved, second.options, Stream.fromIterable(ids(3, "b").map((id) => chatLine(id, id)))),
          60_000
        ))
          .exit
      )
      expect(second.results.map((r) => r.customId).sort()).toEqual([...ids(3, "a"), ...ids(3, "b")].sort())
      const keys = summary.state.batches.map((b) => b.key)
      expect(keys).toHaveLength(2)
      expect(new Set(keys).size).toBe(2)
      // one hold per batch: each record's key held once, and both at once while both batches ran
      expect(taken.map(([id]) => id).sort()).toEqual([...keys].sort())
      const both = summary.state.batches.reduce((a, b) => a + b.tokens, 0)
      expect(Math.max(...taken.map(([, held]) => held))).toBe(both)
      expect(yield* store.held(scope)).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario({}, { inProgressMs: 0, perRequestMs: 60_000 })))))

  it.effect("done custom_ids are neither sent nor delivered again", () =>
    Effect.gen(function*() {
      const lines = ids(6).map((id) => chatLine(id, `done ${id}`))
      const { exit, recorded } = yield* runLines(lines, {}, { done: new Set(["l-0", "l-1"]) })
      expect(summaryOf(exit).skipped).toBe(2)
      expect(recorded.results.map((r) => r.customId).sort()).toEqual(ids(6).slice(2))
      expect(Option.some((yield* simBatches)[0].request_counts?.total)).toEqual(Option.some(4))
    }).pipe(Effect.provide(Simulator.layer(scenario({})))))
  it.effect("a resume reports the lines a refused batch handed back as token-limit, not failed", () =>
    Effect.gen(function*() {
      // the server's queue (100 tokens) is far smaller than the limiter's (1,000,000): every submission is refused
      const lines = ids(4).map((id) => chatLine(id, `refused ${id}`, "gpt-4o-mini", 100))
      const { exit, recorded, service } = yield* runLines(lines, { "gpt-4o-mini": 1_000_000 }, {}, {
        tokenLimitRetries: 0
      })
      const first = summaryOf(exit)
      expect(first.unfinished.map((u) => u.reason)).toEqual([
        "token-limit",
        "token-limit",
        "token-limit",
        "token-limit"
      ])
      const saved = recorded.states[recorded.states.length - 1]
      const again = recorder()
      const resumed = summaryOf((yield* drive(service.resume(saved, again.options), 60_000)).exit)
      expect(resumed.unfinished.map((u) => u.customId).sort()).toEqual(ids(4).sort())
      expect(resumed.unfinished.every((u) => u.reason === "token-limit")).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario({ "gpt-4o-mini": 100 })))))

  it.effect("a resume of a batch whose tokens are 0 takes no hold", () =>
    Effect.gen(function*() {
      const lines = ids(3).map((id) => chatLine(id, `free ${id}`))
      const client = yield* makeClient()
      const limiter = yield* RateLimiter.make({ budgets: [BatchOffload.budget("gpt-4o-mini", 1_000_000)] }).pipe(
        Effect.provide(LimiterStore.layerMemory)
      )
      const store = yield* HoldStore.makeMemory
      let takes = 0
      const holds: HoldStore.Service = {
        ...store,
        take: (id, claims, amount, lease) =>
          Effect.zipRight(Effect.sync(() => takes++), store.take(id, claims, amount, lease))
      }
      const service = yield* BatchOffload.make({
        client,
        limiter,
        holds,
        estimate: () => 0,
        poll: { initial: "5 seconds", max: "1 minute" }
      })
      const first = recorder()
      yield* drive(Effect.timeout(service.run(Stream.fromIterable(lines), first.options), "2 minutes"), 10_000)
      const saved = first.states[first.states.length - 1]
      expect(saved.batches.map((b) => [b.finished, b.tokens])).toEqual([[false, 0]])
      const second = recorder()
      summaryOf((yield* drive(service.resume(saved, second.options), 60_000)).exit)
      expect(second.results.map((r) => r.customId).sort()).toEqual(ids(3).sort())
      expect(takes).toBe(0)
      expect(yield* store.held("batch:gpt-4o-mini")).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario({}, { inProgressMs: 0, perRequestMs: 60_000 })))))
})

describe("BatchOffload: holds with a lease", () => {
  it.effect("a dead process's hold frees its tokens after the lease; a running batch's hold is renewed past it", () =>
    Effect.gen(function*() {
      const scope = "batch:gpt-4o-mini"
      const limit = 1_000_000
      const store = yield* HoldStore.makeMemory
      // a process that died holding the whole limit: it never renews, so its hold lapses 2 minutes on
      expect(yield* store.take("dead-1", [{ scope, capacity: limit }], limit, 120_000)).toBe(true)
      const samples: Array<readonly [number, number]> = []
      yield* Effect.forkScoped(Effect.forever(Effect.zipRight(
        Effect.sleep("10 seconds"),
        Effect.flatMap(
          Effect.all([Clock.currentTimeMillis, store.held(scope)]),
          (sample) => Effect.sync(() => void samples.push(sample))
        )
      )))
      const lines = ids(4).map((id) => chatLine(id, `leased ${id}`))
      const { exit, recorded } = yield* runLines(lines, { "gpt-4o-mini": limit }, {}, { holds: store })
      expect(summaryOf(exit).succeeded).toBe(4)
      const [batch] = yield* simBatches
      const tokens = recorded.states[recorded.states.length - 1].batches[0].tokens
      // created once the dead hold had lapsed, and soon after (the wait polls with back-off up to 1 minute)
      expect(batch.created_at * 1000).toBeGreaterThanOrEqual(120_000)
      expect(batch.created_at * 1000).toBeLessThanOrEqual(180_000)
      const ended = batch.completed_at! * 1000
      // the batch ran longer than a lease, and its tokens were held all along, then given back
      expect(ended - batch.created_at * 1000).toBeGreaterThan(2 * 120_000)
      const during = samples.filter(([t]) => t > batch.created_at * 1000 + 1_000 && t < ended - 1_000)
      expect(during.length).toBeGreaterThan(20)
      expect(new Set(during.map(([, held]) => held))).toEqual(new Set([tokens]))
      expect(yield* store.held(scope)).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario({}, { inProgressMs: 0, perRequestMs: 100_000 })))))

  it.effect("a hold store that fails (Redis unreachable): the batches go on unheld, each line once, each failure logged, a hold released once", () =>
    Effect.gen(function*() {
      const store = yield* HoldStore.makeMemory
      const calls = { take: 0, renew: 0, release: 0 }
      const down = (operation: keyof typeof calls) =>
        Effect.zipRight(
          Effect.sync(() => void calls[operation]++),
          Effect.fail(new HoldStore.HoldStoreError({ operation, message: "connection refused" }))
        )
      // takes fail for the first file; the second file's take succeeds, then its renewals and its release fail
      let takes = 0
      const holds: HoldStore.Service = {
        ...store,
        take: (id, claims, amount, lease) => ++takes === 1 ? down("take") : store.take(id, claims, amount, lease),
        renew: () => down("renew"),
        release: () => down("release")
      }
      const logs: Array<string> = []
      const logger = Logger.make(({ message }) => void logs.push(String(message)))
      const lines = ids(6).map((id) => chatLine(id, `down ${id}`))
      const { exit, recorded } = yield* runLines(lines, { "gpt-4o-mini": 1_000_000 }, {}, { holds, maxRequests: 3 })
        .pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      const summary = summaryOf(exit)
      expect(recorded.results.map((r) => r.customId).sort()).toEqual(ids(6).sort())
      expect([summary.succeeded, summary.unfinished.length]).toEqual([6, 0])
      expect(yield* simBatches).toHaveLength(2)
      expect(calls.take).toBe(1)
      expect(calls.renew).toBeGreaterThan(0)
      expect(calls.release).toBe(1)
      expect(logs.some((l) => l.includes("not taken: connection refused"))).toBe(true)
      expect(logs.some((l) => l.includes("not renewed: connection refused"))).toBe(true)
      expect(logs.some((l) => l.includes("not released (it lapses): connection refused"))).toBe(true)
    }).pipe(Effect.provide(Simulator.layer(scenario({}, { inProgressMs: 0, perRequestMs: 100_000 })))))

  it.effect("BatchOffload.layer takes the HoldStore in context: two offloads over one store share the limit", () =>
    Effect.gen(function*() {
      const client = yield* makeClient()
      // each job is one file of 300 tokens (100 a line); the limit (400) holds one at a time
      const offloadLayer = BatchOffload.layer({ estimate: () => 100, poll: { initial: "5 seconds", max: "1 minute" } })
        .pipe(
          Layer.provide(OpenAi.layerClient(client, { budgets: [BatchOffload.budget("gpt-4o-mini", 400)] })),
          Layer.provide(LimiterStore.layerMemory)
        )
      const store = yield* HoldStore.makeMemory
      const build = Effect.map(Layer.build(offloadLayer), (context) => Context.get(context, BatchOffload.BatchOffload))
      const [a, b] = yield* Effect.provideService(Effect.all([build, build]), HoldStore.HoldStore, store)
      const job = (service: BatchOffload.Service, prefix: string) =>
        service.run(
          Stream.fromIterable(ids(3, prefix).map((id) => chatLine(id, id))),
          { ...recorder().options, job: prefix }
        )
      const { exit } = yield* drive(Effect.all([job(a, "a"), job(b, "b")], { concurrency: 2 }), 60_000)
      expect(Exit.isSuccess(exit) && exit.value.map((s) => s.succeeded)).toEqual([3, 3])
      // the second batch was created only once the first had ended and given its hold back
      const [first, second] = [...(yield* simBatches)].sort((x, y) => x.created_at - y.created_at)
      expect(second.created_at).toBeGreaterThanOrEqual(first.completed_at!)
      expect(yield* store.held("batch:gpt-4o-mini")).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario({}, { inProgressMs: 0, perRequestMs: 60_000 })))))
})
