// The bulk runner (internal/bulkRun.ts, then its reporting: internal/bulkProgress.ts and BulkRunner.ts), tenth
// session: tests written from the survivors of whole `pnpm mutate:bulk` and `pnpm mutate:bulkreport` runs
// (benchmarks/results/mutation.md), each checked by hand to fail on the mutant it names (the source edited, this file
// run and failing, the source restored). No vi.mock: the mutation runs share one module graph between test files
// (where a mock applies only if its file loads first), so fsyncSync is counted by swapping node:fs's export.
import { describe, expect, it } from "@effect/vitest"
import { BulkRunner } from "@sluice/openai"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Ref from "effect/Ref"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Supervisor from "effect/Supervisor"
import * as TestClock from "effect/TestClock"
import fs from "node:fs"
import * as NodeFs from "node:fs"
import { syncBuiltinESMExports } from "node:module"
import * as NodePath from "node:path"
import * as BulkProgress from "../src/internal/bulkProgress.js"
import { describe_, ok, readJsonl, setup, silent } from "./bulkMutantsHarness.js"

/** An embeddings line whose input is `size` characters (300 KiB: a line that ends in the input's second read). */
const line = (id: string, size: number) =>
  JSON.stringify({
    custom_id: id,
    method: "POST",
    url: "/v1/embeddings",
    body: { model: "m", input: "x".repeat(size) }
  })

/** Runs `use` counting the calls of node:fs's fsyncSync (every importer sees the swapped export), restored after. */
const countingFsyncs = <A, E, R>(use: (count: () => number) => Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const real = fs.fsyncSync
      let calls = 0
      fs.fsyncSync = (fd) => {
        calls++
        real(fd)
      }
      syncBuiltinESMExports()
      return { real, count: () => calls }
    }),
    ({ count }) => use(count),
    ({ real }) =>
      Effect.sync(() => {
        fs.fsyncSync = real
        syncBuiltinESMExports()
      })
  )

/** The lock files in the working directory. */
const locksHere = () => NodeFs.readdirSync(process.cwd()).filter((name) => name.endsWith(".lock")).sort()

describe("BulkRun (mutation survivors, tenth session)", () => {
  it.effect("an output that is the input is refused naming both roles", () =>
    Effect.gen(function*() {
      const { input } = setup(["a"])
      const refused = yield* Effect.flip(
        BulkRunner.run({ input, output: input, execute: ok, describe: describe_, ...silent })
      )
      expect(refused).toMatchObject({ _tag: "BulkPathError", reason: "same-file", path: input })
      expect(refused.message).toBe(
        `the output ${input} is the input ${input}: refusing to run, it would overwrite it; give the output another path`
      )
    }))

  it.effect("a run locks its output only: no lock for an errors file or offload it was not given", () =>
    Effect.gen(function*() {
      // a lock of a missing path would be `undefined.lock` (or the like) in the working directory
      const { input, output } = setup(["a", "b"])
      const before = locksHere()
      const seen = new Set<string>()
      const summary = yield* BulkRunner.run({
        input,
        output,
        execute: (r) =>
          Effect.zipRight(
            Effect.sync(() => {
              for (const name of locksHere()) seen.add(name)
              expect(NodeFs.existsSync(`${output}.lock`)).toBe(true)
            }),
            ok(r)
          ),
        describe: describe_,
        ...silent
      })
      expect([...seen].sort()).toEqual(before)
      expect(summary).toMatchObject({ outcome: "completed", succeeded: 2 })
    }))

  it.effect("a run without a stop signal starts no fiber that fails: nothing is logged, even at the debug level", () =>
    Effect.gen(function*() {
      // a forked fiber that dies unobserved is logged by the runtime at the debug level, and only there
      const logs: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => void logs.push(`${logLevel.label} ${String(message)}`))
      const summary = yield* BulkRunner.run({ ...setup(["a"]), execute: ok, describe: describe_, ...silent }).pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
        Logger.withMinimumLogLevel(LogLevel.All)
      )
      expect(summary).toMatchObject({ outcome: "completed", succeeded: 1 })
      expect(logs).toEqual([])
    }))

  it.effect("fsyncEvery: the output is synced after every that many lines; by default (256) after its first only", () =>
    Effect.gen(function*() {
      // virtual time stands still: the writer's once-a-second sync comes only at the first line
      const syncs = (fsyncEvery: number | undefined) =>
        countingFsyncs((count) =>
          Effect.gen(function*() {
            const { input, output } = setup(["a", "b", "c", "d"])
            const summary = yield* BulkRunner.run({
              input,
              output,
              countTotal: false,
              ...(fsyncEvery === undefined ? {} : { fsyncEvery }),
              execute: ok,
              describe: describe_,
              ...silent
            })
            expect(summary.succeeded).toBe(4)
            return count()
          })
        )
      const byDefault = yield* syncs(undefined)
      expect(yield* syncs(1)).toBe(byDefault + 3)
      expect(yield* syncs(2)).toBe(byDefault + 2)
    }))

  it.effect("the pool grows by the lines of a later read that no worker is idle for, up to the concurrency", () =>
    Effect.gen(function*() {
      // two reads of the input (256 KiB each): `a` alone, then `b` (300 KiB), `c` and `d`; `a` stays in flight until
      // the others are done, so its worker is busy (not idle) when the second read's lines come
      const { dir } = setup([])
      const input = NodePath.join(dir, "two-reads.jsonl")
      NodeFs.writeFileSync(input, [line("a", 1), line("b", 300 * 1024), line("c", 1), line("d", 1)].join("\n") + "\n")
      const peakAt = (concurrency: number) =>
        Effect.gen(function*() {
          const release = yield* Deferred.make<void>()
          let inFlight = 0
          let peak = 0
          let others = 0
          const summary = yield* BulkRunner.run({
            input,
            output: NodePath.join(dir, `out-${concurrency}.jsonl`),
            concurrency,
            execute: (r) =>
              Effect.gen(function*() {
                inFlight++
                peak = Math.max(peak, inFlight)
                if (r.customId === "a") yield* Deferred.await(release)
                else yield* Effect.repeatN(Effect.yieldNow(), 5)
                inFlight--
                if (r.customId !== "a" && ++others === 3) yield* Deferred.succeed(release, void 0)
                return yield* ok(r)
              }),
            describe: describe_,
            ...silent
          })
          expect(summary).toMatchObject({ outcome: "completed", succeeded: 4 })
          return peak
        })
      // `a`'s worker is busy: three more start for the three lines
      expect(yield* peakAt(4)).toBe(4)
      // one more only: two in all
      expect(yield* peakAt(2)).toBe(2)
    }))

  it.effect("without counting the input or a stop, the total is every line seen and the run is not stopped", () =>
    Effect.gen(function*() {
      const { input, output } = setup(["a", "b", "c"])
      const summary = yield* BulkRunner.run({
        input,
        output,
        countTotal: false,
        execute: (r) => r.customId === "b" ? Effect.fail("bad") : ok(r),
        describe: describe_,
        ...silent
      })
      expect(summary).toMatchObject({
        outcome: "completed-with-failures",
        total: 3,
        succeeded: 2,
        failed: 1,
        notDone: 0
      })
      expect(summary.stop).toBeUndefined()
      const clean = yield* BulkRunner.run({ ...setup(["a"]), countTotal: false, execute: ok, describe: describe_ })
      expect(clean).toMatchObject({ outcome: "completed", total: 1, succeeded: 1, notDone: 0 })
    }))

  it.effect("a resumed run counts the lines already done as done, not as left to do", () =>
    Effect.gen(function*() {
      const { dir, output } = setup(["a"])
      yield* BulkRunner.run({ input: NodePath.join(dir, "in.jsonl"), output, execute: ok, describe: describe_ })
      const more = setup(["a", "b"])
      const summary = yield* BulkRunner.run({ input: more.input, output, execute: ok, describe: describe_ })
      expect(summary).toMatchObject({ outcome: "completed", total: 2, alreadyDone: 1, succeeded: 1, notDone: 0 })
      expect(readJsonl(output).map((l) => l.custom_id)).toEqual(["a", "b"])
    }))

  it.effect("an offload that ends with a stop after a call stopped the run leaves that call's stop", () =>
    Effect.gen(function*() {
      const { input, output } = setup(["a", "b"])
      const summary = yield* BulkRunner.run({
        input,
        output,
        concurrency: 1,
        execute: (r) => r.customId === "a" ? Effect.fail("quota") : ok(r),
        describe: (e) => ({ kind: "quota", code: e, message: e, stop: true }),
        ...silent,
        // it takes no line and, once told the input ended, says why it stopped
        offload: { accepts: () => false, run: (io) => Effect.as(Stream.runDrain(io.lines), { stop: "batch expired" }) }
      })
      expect(summary.stop).toMatchObject({ _tag: "Executor", customId: "a", line: 1, message: "quota" })
      expect(summary).toMatchObject({ outcome: "stopped", succeeded: 0, notDone: 2 })
    }))

  it.effect("a worker that is done with its line is idle: a later read's line goes to it, no worker is added", () =>
    Effect.gen(function*() {
      // two reads: `a`, then `b` (300 KiB); `a` is done before `b` is read, so `b` needs no second worker
      const { dir } = setup([])
      const input = NodePath.join(dir, "two-reads.jsonl")
      NodeFs.writeFileSync(input, [line("a", 1), line("b", 300 * 1024)].join("\n") + "\n")
      const supervisor = yield* Supervisor.track
      const fibers: Record<string, number> = {}
      const summary = yield* BulkRunner.run({
        input,
        output: NodePath.join(dir, "out.jsonl"),
        concurrency: 8,
        countTotal: false,
        execute: (r) =>
          Effect.zipRight(
            Effect.flatMap(supervisor.value, (alive) => Effect.sync(() => void (fibers[r.customId] = alive.length))),
            ok(r)
          ),
        describe: describe_,
        ...silent
      }).pipe(Effect.supervised(supervisor))
      expect(summary).toMatchObject({ outcome: "completed", succeeded: 2 })
      expect(fibers["b"]).toBe(fibers["a"])
    }))

  it.effect("the queue holds as many lines as the concurrency: a read is not taken while the lines before it wait", () =>
    Effect.gen(function*() {
      // one call at a time, so a queue of one: `a` in flight, `b` queued, `c` waiting for room; the second read
      // (a 300 KiB line, then a bad one) is not taken until `a` is done, so its bad line is not reported before
      const { dir } = setup([])
      const input = NodePath.join(dir, "two-reads.jsonl")
      NodeFs.writeFileSync(
        input,
        [line("a", 1), line("b", 1), line("c", 1), line("x", 300 * 1024), "{bad"].join("\n") + "\n"
      )
      const reported: Array<number> = []
      let reportedWhileAInFlight: number | undefined
      const summary = yield* BulkRunner.run({
        input,
        output: NodePath.join(dir, "out.jsonl"),
        concurrency: 1,
        // in the file's order (largest first holds a window of lines to send: see BulkRunner.order.test.ts)
        order: "input",
        onInputError: (e) => Effect.sync(() => void reported.push(e.line)),
        execute: (r) =>
          r.customId !== "a" ? ok(r) : Effect.gen(function*() {
            // turns of the event loop: time for reads to come back, had the producer gone on reading
            for (let i = 0; i < 20; i++) yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
            reportedWhileAInFlight = reported.length
            return yield* ok(r)
          }),
        describe: describe_
      })
      expect(reportedWhileAInFlight).toBe(0)
      expect(reported).toEqual([5])
      expect(summary).toMatchObject({ outcome: "completed-with-failures", succeeded: 4, invalid: 1 })
    }))
})

// The reporting part (`pnpm mutate:bulkreport`: internal/bulkProgress.ts and BulkRunner.ts), whose config ran the edge
// tests only: the progress view and line, the durations of the summary, the periodic report, and the public helpers.
const stats = (over: Partial<BulkRunner.ProgressStats>): BulkRunner.ProgressStats => ({
  ...BulkProgress.empty(1_000),
  ...over
})

const summary: BulkRunner.Summary = {
  outcome: "completed",
  stop: undefined,
  total: 1,
  alreadyDone: 0,
  alreadyFailed: 0,
  superseded: 0,
  succeeded: 1,
  failed: 0,
  failuresByKind: {},
  invalid: 0,
  invalidByReason: {},
  notDone: 0,
  repairedBytes: 0,
  wallMs: 0,
  waits: 0,
  waitMs: 0,
  rateLimited: 0,
  retries: 0,
  binding: undefined,
  theoreticalMinimumMs: undefined,
  tokensReserved: 0,
  tokensUsed: 0
}

describe("BulkRunner reporting (mutation survivors, tenth session)", () => {
  it("view: done, the rate over the time elapsed, what remains and when it ends", () => {
    const running = stats({ total: 10, alreadyDone: 2, invalid: 1, succeeded: 3, failed: 1 })
    expect(BulkRunner.view(running, 3_000)).toEqual({ done: 4, remaining: 3, elapsedMs: 2_000, rate: 2, etaMs: 1_500 })
    // a clock behind the start: no time elapsed, no rate, so no end in sight while lines remain
    expect(BulkRunner.view(running, 500)).toEqual({ done: 4, remaining: 3, elapsedMs: 0, rate: 0, etaMs: undefined })
    // nothing done yet: no rate either
    expect(BulkRunner.view(stats({ total: 3 }), 2_000)).toEqual({
      done: 0,
      remaining: 3,
      elapsedMs: 1_000,
      rate: 0,
      etaMs: undefined
    })
    // without a total: neither what remains nor when it ends
    expect(BulkRunner.view(stats({ succeeded: 2 }), 2_000)).toEqual({
      done: 2,
      remaining: undefined,
      elapsedMs: 1_000,
      rate: 2,
      etaMs: undefined
    })
    // all done (more than counted: an input that grew): nothing remains, the end is now, even without a rate
    expect(BulkRunner.view(stats({ total: 2, succeeded: 3 }), 1_000)).toMatchObject({ remaining: 0, etaMs: 0 })
  })

  it("view by weight: the handed lines left weigh what they do, the lines not handed yet the handed ones' mean", () => {
    // 12 lines, 10 handed (two of 1,000, eight of 100: 2,800), the two heavy ones done in 2 s: 1 a millisecond.
    // Left: 800 handed, and two not handed at the mean 280: 1,360 ms; by lines 10 / (2 / 2 s) = 10 s
    const weights = { handed: 10, handedWeight: 2_800, finished: 2, finishedWeight: 2_000 }
    expect(BulkRunner.view(stats({ total: 12, succeeded: 2, weights }), 3_000).etaMs).toBe(1_360)
    // a failed line counts as done, an invalid one (never handed) is not left
    expect(BulkRunner.view(stats({ total: 13, succeeded: 1, failed: 1, invalid: 1, weights }), 3_000).etaMs).toBe(1_360)
    // nothing of weight finished yet (or no time): by lines
    expect(BulkRunner.view(stats({ total: 12, succeeded: 2, weights: { ...weights, finishedWeight: 0 } }), 3_000).etaMs)
      .toBe(10_000)
    expect(BulkRunner.view(stats({ total: 12, succeeded: 2, weights: undefined }), 3_000).etaMs).toBe(10_000)
    // weights beyond what is left (a snapshot between updates): never a negative ETA
    expect(
      BulkRunner.view(
        stats({
          total: 12,
          succeeded: 11,
          weights: { handed: 12, handedWeight: 1_000, finished: 10, finishedWeight: 2_000 }
        }),
        3_000
      ).etaMs
    ).toBe(0)
  })

  it.effect("the progress line: done of the valid lines, rate, ETA, in flight, failures, binding, waits, 429s, retries", () =>
    Effect.gen(function*() {
      const progress = yield* BulkRunner.makeProgress
      const now = yield* TestClock.currentTimeMillis
      const set = (over: Partial<BulkRunner.ProgressStats>) =>
        Ref.set(progress.stats, stats({ startedAt: now, ...over }))
      yield* TestClock.adjust("2 seconds")
      yield* set({
        total: 10,
        alreadyDone: 2,
        invalid: 1,
        succeeded: 3,
        failed: 1,
        inFlight: 2,
        binding: "tokens/min gpt-4o",
        waits: 3,
        rateLimited: 4,
        retries: 5
      })
      expect(yield* progress.line).toBe(
        "6/9 done | 2.0/s | ETA 1.5s | in flight 2 | failed 1 | binding tokens/min gpt-4o | waits 3 | 429s 4 | retries 5"
      )
      yield* set({ succeeded: 1 })
      expect(yield* progress.line).toBe(
        "1/? done | 0.5/s | ETA ? | in flight 0 | failed 0 | waits 0 | 429s 0 | retries 0"
      )
    }))

  it("durations: ? when unknown, tenths under 10 s, seconds under a minute, then minutes, then hours", () => {
    const wall = (wallMs: number) => BulkRunner.formatSummary({ ...summary, wallMs }).split("\n")[2]
    expect(wall(9_949)).toBe("wall time: 9.9s")
    expect(wall(10_000)).toBe("wall time: 10s")
    expect(wall(59_499)).toBe("wall time: 59s")
    expect(wall(59_500)).toBe("wall time: 1m00s")
    expect(wall(125_000)).toBe("wall time: 2m05s")
    expect(wall(3_599_499)).toBe("wall time: 59m59s")
    expect(wall(3_600_000)).toBe("wall time: 1h00m")
    expect(wall(37_920_000)).toBe("wall time: 10h32m")
    expect(wall(Number.POSITIVE_INFINITY)).toBe("wall time: ?")
    expect(wall(Number.NaN)).toBe("wall time: ?")
  })

  it("the summary names the lines that had failed before a resume and the failures resent", () => {
    expect(BulkRunner.formatSummary({ ...summary, alreadyDone: 3, alreadyFailed: 2, superseded: 4 }).split("\n"))
      .toEqual([
        "outcome: completed",
        "lines: 1; already done 3 (2 of them failed); succeeded 1; failed 0; invalid 0; not done 0",
        "wall time: 0.0s",
        "binding: none; no admission waits; 429s 0; retries 0",
        "resent 4 earlier failures (their old lines moved out of the output)"
      ])
  })

  it.effect("reportProgress: the line every interval, and a last one when interrupted", () =>
    Effect.gen(function*() {
      const progress = yield* BulkRunner.makeProgress
      const reported: Array<[string, boolean]> = []
      const fiber = yield* Effect.fork(BulkRunner.reportProgress(progress, {
        interval: "1 second",
        report: (line, last) => Effect.sync(() => void reported.push([line, last]))
      }))
      yield* TestClock.adjust("999 millis")
      expect(reported).toEqual([])
      yield* TestClock.adjust("1 millis")
      const line = yield* progress.line
      expect(reported).toEqual([[line, false]])
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(fiber)
      expect(reported.map(([, last]) => last)).toEqual([false, false, true])
      expect(reported[2][0]).toBe(yield* progress.line)
    }))

  it("invalidBody and invalidResponse: the failures written for a bad body and a bad 2xx answer", () => {
    expect(BulkRunner.invalidBody("body.messages: expected an array")).toEqual({
      kind: "InvalidBody",
      code: "invalid_body",
      message: "body.messages: expected an array"
    })
    expect(BulkRunner.invalidResponse("not JSON", 200)).toEqual({
      kind: "InvalidResponse",
      code: "invalid_response",
      message: "not JSON",
      statusCode: 200
    })
  })

  it.effect("checkPaths refuses two roles naming one file, naming the second; distinct paths pass", () =>
    Effect.gen(function*() {
      const { dir, input } = setup(["a"])
      const record = NodePath.join(dir, "run.record.jsonl")
      yield* BulkRunner.checkPaths([{ role: "input", path: input }, { role: "run record", path: record }])
      const refused = yield* Effect.flip(
        BulkRunner.checkPaths([{ role: "input", path: input }, { role: "run record", path: input }])
      )
      expect(refused).toMatchObject({ _tag: "BulkPathError", reason: "same-file", path: input })
      expect(refused.message).toContain(`the run record ${input} is the input ${input}`)
    }))

  it.effect("lock: held for its scope; a second holder is refused (locked); a lock that cannot be made is a file error", () =>
    Effect.gen(function*() {
      const { dir, input } = setup(["a"])
      const record = NodePath.join(dir, "run.record.jsonl")
      const refused = yield* Effect.scoped(Effect.gen(function*() {
        yield* BulkRunner.lock(record)
        expect(NodeFs.existsSync(BulkRunner.lockPath(record))).toBe(true)
        return yield* Effect.flip(Effect.scoped(BulkRunner.lock(record)))
      }))
      expect(refused).toMatchObject({ _tag: "BulkPathError", reason: "locked", path: record })
      expect(NodeFs.existsSync(`${record}.lock`)).toBe(false)
      // under a regular file, no lock file can be created
      const under = NodePath.join(input, "record.jsonl")
      const failed = yield* Effect.flip(Effect.scoped(BulkRunner.lock(under)))
      expect(failed).toMatchObject({ _tag: "BulkFileError", path: `${under}.lock`, operation: "lock" })
      expect(failed.message.length).toBeGreaterThan(0)
    }))

  it("the summary names an offload's stop by its message, and tokens reserved though none were used", () => {
    const rows = BulkRunner.formatSummary({
      ...summary,
      outcome: "stopped",
      stop: { _tag: "Offload", message: "the batch expired" },
      tokensReserved: 40
    }).split("\n")
    expect(rows[1]).toBe("stopped by: the batch expired")
    expect(rows[5]).toBe("tokens reserved 40, used 0 (0% of the reservations; the rest was refunded at settle)")
  })

  it.effect("a bad line of each kind is reported with its reason, and the rest of the input runs", () =>
    Effect.gen(function*() {
      const { dir } = setup([])
      const input = NodePath.join(dir, "reasons.jsonl")
      const good = line("a", 1)
      NodeFs.writeFileSync(
        input,
        [
          good,
          "{",
          "[1]",
          JSON.stringify({ method: "POST", url: "/v1/embeddings", body: {} }),
          good,
          JSON.stringify({ custom_id: "g", method: "GET", url: "/v1/embeddings", body: {} }),
          JSON.stringify({ custom_id: "u", method: "POST", url: "/v1/nowhere", body: {} }),
          JSON.stringify({ custom_id: "s", method: "POST", url: "/v1/embeddings", body: { model: "m", stream: true } })
        ].join("\n") + "\n"
      )
      const reported: Array<BulkRunner.BulkInputError> = []
      const result = yield* BulkRunner.run({
        input,
        output: NodePath.join(dir, "out.jsonl"),
        execute: ok,
        describe: describe_,
        onInputError: (e) => Effect.sync(() => void reported.push(e))
      })
      expect(reported.map((e) => [e._tag, e.line, e.reason])).toEqual([
        ["BulkInputError", 2, "malformed-json"],
        ["BulkInputError", 3, "not-an-object"],
        ["BulkInputError", 4, "missing-custom-id"],
        ["BulkInputError", 5, "duplicate-custom-id"],
        ["BulkInputError", 6, "unsupported-method"],
        ["BulkInputError", 7, "unsupported-url"],
        ["BulkInputError", 8, "invalid-line"]
      ])
      expect(result).toMatchObject({ outcome: "completed-with-failures", succeeded: 1, invalid: 7 })
    }))

  it("the errors' schemas: each tag and reason round-trips, and a bad value is refused naming the schema", () => {
    const roundTrip = <A, I>(schema: Schema.Schema<A, I>, value: A) =>
      expect(Schema.decodeUnknownSync(schema)(Schema.encodeSync(schema)(value))).toEqual(value)
    for (const reason of ["same-file", "locked", "not-output"] as const) {
      roundTrip(BulkRunner.BulkPathError, new BulkRunner.BulkPathError({ reason, path: "p", message: "m" }))
    }
    for (const reason of BulkRunner.InputErrorReason.literals) {
      roundTrip(BulkRunner.BulkInputError, new BulkRunner.BulkInputError({ line: 1, reason, message: "m" }))
    }
    const fileError = new BulkRunner.BulkFileError({ path: "p", operation: "write", message: "m" })
    roundTrip(BulkRunner.BulkFileError, fileError)
    expect(Schema.encodeSync(BulkRunner.BulkFileError)(fileError)).toEqual({
      _tag: "BulkFileError",
      path: "p",
      operation: "write",
      message: "m"
    })
    const refused = (schema: Schema.Schema<any, any>) =>
      Either.match(Schema.decodeUnknownEither(schema)({ _tag: "x" }), { onLeft: String, onRight: () => "" })
    expect(refused(BulkRunner.BulkInputError)).toMatch(/^\(@sluice\/openai\/BulkInputError \(Encoded side\)/)
    expect(refused(BulkRunner.BulkFileError)).toMatch(/^\(@sluice\/openai\/BulkFileError \(Encoded side\)/)
    expect(refused(BulkRunner.BulkPathError)).toMatch(/^\(@sluice\/openai\/BulkPathError \(Encoded side\)/)
    expect(new BulkRunner.BulkPathError({ reason: "locked", path: "p", message: "m" })._tag).toBe("BulkPathError")
  })
})
