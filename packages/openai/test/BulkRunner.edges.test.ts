// Edges of the bulk runner found by mutation testing (`pnpm mutate:bulk`): the summary text and exit codes, the
// progress renderer, the errors file, the default input-error report, defects and interruptions of the executor,
// and the outcome arithmetic.
import { describe, expect, it } from "@effect/vitest"
import { BulkRunner } from "@sluice/openai"
import type * as Console from "effect/Console"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/TestClock"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"

const tmp = () => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-bulk-edges-"))

const request = (id: string) =>
  JSON.stringify({ custom_id: id, method: "POST", url: "/v1/embeddings", body: { model: "m", input: id } })

const writeInput = (lines: ReadonlyArray<string>) => {
  const dir = tmp()
  const input = NodePath.join(dir, "in.jsonl")
  NodeFs.writeFileSync(input, lines.join("\n") + "\n")
  return { dir, input, output: NodePath.join(dir, "out.jsonl") }
}

const readJsonl = (path: string): Array<any> =>
  NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l))

class Bad {
  readonly _tag = "Bad"
}
const describeBad = (_: Bad): BulkRunner.Failure => ({ kind: "bad_request", code: "invalid", message: "bad" })

const ok = (r: BulkRunner.Request): Effect.Effect<BulkRunner.Response, Bad> =>
  Effect.succeed({ statusCode: 200, requestId: null, body: { object: "list", data: [], echo: r.customId } })

const base: BulkRunner.Summary = {
  outcome: "completed",
  stop: undefined,
  total: 10,
  alreadyDone: 0,
  alreadyFailed: 0,
  superseded: 0,
  succeeded: 10,
  failed: 0,
  failuresByKind: {},
  invalid: 0,
  invalidByReason: {},
  notDone: 0,
  repairedBytes: 0,
  wallMs: 1500,
  waits: 0,
  waitMs: 0,
  rateLimited: 0,
  retries: 0,
  binding: undefined,
  theoreticalMinimumMs: undefined,
  tokensReserved: 0,
  tokensUsed: 0
}

describe("BulkRunner edges", () => {
  it("formatSummary: a clean run", () => {
    expect(BulkRunner.formatSummary(base).split("\n")).toEqual([
      "outcome: completed",
      "lines: 10; already done 0; succeeded 10; failed 0; invalid 0; not done 0",
      "wall time: 1.5s",
      "binding: none; no admission waits; 429s 0; retries 0"
    ])
    expect(BulkRunner.exitCode(base)).toBe(0)
  })

  it("formatSummary: failures by kind, the executor's stop, the minimum ratio, waits, tokens and a repair", () => {
    const summary: BulkRunner.Summary = {
      ...base,
      outcome: "stopped",
      stop: {
        _tag: "Executor",
        kind: "quota",
        code: "insufficient_quota",
        message: "no money",
        customId: "c",
        line: 7
      },
      total: 20,
      alreadyDone: 2,
      succeeded: 9,
      failed: 3,
      failuresByKind: { bad_request: 2, server: 1 },
      invalid: 2,
      invalidByReason: { "malformed-json": 1, "duplicate-custom-id": 1 },
      notDone: 4,
      repairedBytes: 17,
      wallMs: 65_000,
      waits: 4,
      waitMs: 2_000,
      rateLimited: 5,
      retries: 6,
      binding: "tokens/min gpt-4o",
      theoreticalMinimumMs: 50_000,
      tokensReserved: 400,
      tokensUsed: 300
    }
    expect(BulkRunner.formatSummary(summary).split("\n")).toEqual([
      "outcome: stopped (rerun with the same --output to resume)",
      "stopped by: quota (insufficient_quota) at line 7: no money",
      "lines: 20; already done 2; succeeded 9; failed 3 (bad_request 2, server 1); invalid 2 " +
      "(malformed-json 1, duplicate-custom-id 1); not done 4",
      "wall time: 1m05s (theoretical minimum for the limits in force 50s, ratio 1.30)",
      "binding: tokens/min gpt-4o; 4 admissions waited (0.5s on average); 429s 5; retries 6",
      "tokens reserved 400, used 300 (75% of the reservations; the rest was refunded at settle)",
      "repaired a torn last output line (17 bytes)"
    ])
    expect(BulkRunner.exitCode(summary)).toBe(3)
  })

  it("formatSummary: a signal, a defect, limits that did not bind, tokens used without a reservation", () => {
    const signal = BulkRunner.formatSummary({
      ...base,
      outcome: "stopped",
      stop: { _tag: "Signal" },
      theoreticalMinimumMs: 999
    }).split("\n")
    expect(signal[1]).toBe("stopped by: signal")
    expect(signal[3]).toBe("wall time: 1.5s (the limits in force did not bind)")
    const defect = BulkRunner.formatSummary({
      ...base,
      outcome: "completed-with-failures",
      stop: { _tag: "Defect", customId: "d", line: 3, message: "boom" },
      theoreticalMinimumMs: 1000,
      wallMs: 1000,
      tokensUsed: 12
    }).split("\n")
    expect(defect[0]).toBe("outcome: completed-with-failures")
    expect(defect[1]).toBe("stopped by: defect at line 3: boom")
    expect(defect[3]).toBe("wall time: 1.0s (theoretical minimum for the limits in force 1.0s, ratio 1.00)")
    expect(defect[5]).toBe("tokens reserved 0, used 12")
    expect(defect).toHaveLength(6)
    expect(BulkRunner.exitCode({ ...base, outcome: "completed-with-failures" })).toBe(1)
    expect(BulkRunner.ExitCode).toEqual({ Done: 0, SomeFailed: 1, BadUsage: 2, Stopped: 3 })
  })

  it.effect("render: a terminal line rewritten in place every 250 ms, and a last line with a newline", () =>
    Effect.gen(function*() {
      const progress = yield* BulkRunner.makeProgress
      yield* Ref.update(progress.stats, (s) => ({ ...s, total: 4, succeeded: 1 }))
      const written: Array<string> = []
      const fiber = yield* Effect.fork(
        BulkRunner.render(progress, { tty: true, write: (t) => Effect.sync(() => written.push(t)) })
      )
      yield* TestClock.adjust("249 millis")
      expect(written).toEqual([])
      yield* TestClock.adjust("1 millis")
      expect(written).toHaveLength(1)
      const line = yield* progress.line
      expect(written[0]).toBe(`\r${line}\x1b[K`)
      yield* TestClock.adjust("250 millis")
      expect(written).toHaveLength(2)
      yield* Fiber.interrupt(fiber)
      expect(written).toHaveLength(3)
      expect(written[2]).toBe(`\r${yield* progress.line}\x1b[K\n`)
    }))

  it.effect("render: a log line every 5 seconds, and one more when stopped", () =>
    Effect.gen(function*() {
      const progress = yield* BulkRunner.makeProgress
      const written: Array<string> = []
      const fiber = yield* Effect.fork(
        BulkRunner.render(progress, { tty: false, write: (t) => Effect.sync(() => written.push(t)) })
      )
      yield* TestClock.adjust("4999 millis")
      expect(written).toEqual([])
      yield* TestClock.adjust("1 millis")
      expect(written).toEqual([`${yield* progress.line}\n`])
      yield* Fiber.interrupt(fiber)
      expect(written).toHaveLength(2)
      expect(written[1]).toBe(`${yield* progress.line}\n`)
    }))

  it.effect("progress records every hook", () =>
    Effect.gen(function*() {
      const progress = yield* BulkRunner.makeProgress
      yield* progress.recordWait(100)
      yield* progress.recordWait(300)
      yield* progress.recordRateLimited
      yield* progress.recordRetry
      yield* progress.recordRetry
      yield* progress.setTheoreticalMinimum(1234)
      yield* progress.recordTokens({ reserved: 10, used: 4 })
      yield* progress.recordTokens({ reserved: 5, used: 5 })
      expect(yield* Ref.get(progress.stats)).toMatchObject({
        waits: 2,
        waitMs: 400,
        rateLimited: 1,
        retries: 2,
        theoreticalMinimumMs: 1234,
        tokensReserved: 15,
        tokensUsed: 9
      })
    }))

  it.effect("the errors file holds one JSON line per bad input line; the default report goes to stderr", () =>
    Effect.gen(function*() {
      const { dir, input, output } = writeInput([request("a"), "{bad", JSON.stringify({ custom_id: "x" }), "  "])
      const errors = NodePath.join(dir, "errors.jsonl")
      NodeFs.writeFileSync(errors, "left over from an earlier run\n")
      const stderr: Array<string> = []
      const console: Console.Console = {
        ...(yield* Effect.console),
        error: (...xs: ReadonlyArray<unknown>) => Effect.sync(() => void stderr.push(xs.join(" ")))
      }
      const summary = yield* BulkRunner.run({ input, output, errors, execute: ok, describe: describeBad }).pipe(
        Effect.withConsole(console)
      )
      const lines = readJsonl(errors)
      expect(lines).toHaveLength(2)
      expect(lines[0]).toMatchObject({ line: 2, reason: "malformed-json", custom_id: null })
      expect(lines[1]).toMatchObject({ line: 3, reason: "unsupported-method", custom_id: "x" })
      expect(typeof lines[1].message).toBe("string")
      expect(stderr).toHaveLength(2)
      expect(stderr[0]).toMatch(new RegExp(`^${input.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:2: malformed-json: `))
      expect(stderr[1]).toMatch(/:3: unsupported-method \(x\): unsupported method/)
      expect(summary).toMatchObject({
        total: 3,
        invalid: 2,
        invalidByReason: { "malformed-json": 1, "unsupported-method": 1 },
        succeeded: 1,
        notDone: 0,
        outcome: "completed-with-failures"
      })
    }))

  it.effect("an output line carries the response or the error, with the status code only when known", () =>
    Effect.gen(function*() {
      const { input, output } = writeInput([request("a"), request("b"), request("c")])
      yield* BulkRunner.run({
        input,
        output,
        execute: (r): Effect.Effect<BulkRunner.Response, { readonly status?: number }> =>
          r.customId === "a"
            ? Effect.succeed({ statusCode: 201, requestId: "req_1", body: { object: "list", data: [], line: r.line } })
            : Effect.fail(r.customId === "b" ? {} : { status: 503 }),
        describe: (e) => ({ kind: "k", code: "c", message: "m", statusCode: e.status }),
        onInputError: () => Effect.void
      })
      const byId = new Map(readJsonl(output).map((l) => [l.custom_id, l]))
      expect(byId.get("a")).toMatchObject({
        response: { status_code: 201, request_id: "req_1", body: { data: [], line: 1 } },
        error: null
      })
      expect(byId.get("b").error).toEqual({ code: "c", message: "m", kind: "k" })
      expect(byId.get("b").response).toBeNull()
      expect(byId.get("c").error).toEqual({ code: "c", message: "m", kind: "k", status_code: 503 })
      expect(byId.get("a").id).toMatch(/^batch_req_[0-9a-f]{32}$/)
      expect(byId.get("a").id).not.toBe(byId.get("c").id)
    }))

  it.effect("a defect in the executor stops the run and names the line; the run's other work finishes", () =>
    Effect.gen(function*() {
      const { input, output } = writeInput(["a", "b", "c", "d"].map(request))
      const summary = yield* BulkRunner.run({
        input,
        output,
        concurrency: 1,
        execute: (r) => r.customId === "b" ? Effect.die(new Error("kaput")) : ok(r),
        describe: describeBad,
        onInputError: () => Effect.void
      })
      expect(summary.outcome).toBe("stopped")
      expect(summary.stop).toMatchObject({ _tag: "Defect", customId: "b", line: 2 })
      expect((summary.stop as { message: string }).message).toContain("kaput")
      expect(summary.succeeded).toBe(1)
      expect(summary.notDone).toBe(3)
      expect(readJsonl(output).map((l) => l.custom_id)).toEqual(["a"])
    }))

  // regression: the worker used to end on the interruption and the producer waited forever on the full queue
  it.effect("an executor that interrupts itself stops the run (resumable) like a defect, naming the line", () =>
    Effect.gen(function*() {
      const interrupted = yield* Effect.fork(Effect.never)
      yield* Fiber.interrupt(interrupted)
      const selfInterrupts: ReadonlyArray<Effect.Effect<BulkRunner.Response, Bad>> = [
        Effect.interrupt,
        Fiber.join(interrupted)
      ]
      for (const interrupts of selfInterrupts) {
        const { input, output } = writeInput(["a", "b", "c"].map(request))
        const summary = yield* BulkRunner.run({
          input,
          output,
          concurrency: 1,
          execute: (r) => r.customId === "b" ? interrupts : ok(r),
          describe: describeBad,
          onInputError: () => Effect.void
        })
        expect(summary.outcome).toBe("stopped")
        expect(BulkRunner.exitCode(summary)).toBe(BulkRunner.ExitCode.Stopped)
        expect(summary.stop).toMatchObject({ _tag: "Defect", customId: "b", line: 2 })
        expect(summary.notDone).toBe(2)
        expect(readJsonl(output).map((l) => l.custom_id)).toEqual(["a"])
      }
    }))

  it.effect("the first stop wins: a later quota stop does not replace an earlier one", () =>
    Effect.gen(function*() {
      const { input, output } = writeInput(["a", "b", "c"].map(request))
      const gate = yield* Deferred.make<void>()
      const summary = yield* BulkRunner.run({
        input,
        output,
        concurrency: 3,
        execute: (r) =>
          r.customId === "a"
            ? Effect.fail(new Bad()).pipe(Effect.ensuring(Deferred.succeed(gate, void 0)))
            : Effect.zipRight(Deferred.await(gate), Effect.fail(new Bad())),
        describe: (_) => ({ kind: "quota", code: "q", message: "stop", stop: true }),
        onInputError: () => Effect.void
      })
      expect(summary.stop).toMatchObject({ _tag: "Executor", customId: "a", line: 1, kind: "quota", code: "q" })
      expect(summary.outcome).toBe("stopped")
      expect(summary.failed).toBe(0)
      expect(NodeFs.existsSync(output) ? readJsonl(output) : []).toEqual([])
    }))

  it.effect("without counting the input, a finished run's total is what it saw; a fractional concurrency is floored", () =>
    Effect.gen(function*() {
      const { input, output } = writeInput(["a", "b", "{", "c"].map((x) => x === "{" ? x : request(x)))
      const inFlight = yield* Ref.make(0)
      const peak = yield* Ref.make(0)
      const summary = yield* BulkRunner.run({
        input,
        output,
        countTotal: false,
        concurrency: 2.9,
        execute: (r) =>
          Effect.acquireUseRelease(
            Ref.updateAndGet(inFlight, (n) => n + 1).pipe(Effect.tap((n) => Ref.update(peak, (p) => Math.max(p, n)))),
            () => Effect.zipRight(Effect.yieldNow(), ok(r)),
            () => Ref.update(inFlight, (n) => n - 1)
          ),
        describe: describeBad,
        onInputError: () => Effect.void
      })
      expect(summary).toMatchObject({ total: 4, succeeded: 3, invalid: 1, notDone: 0 })
      expect(yield* Ref.get(peak)).toBe(2)
    }))

  it.effect("a run resets the per-run counts of a reused progress but keeps its binding and minimum", () =>
    Effect.gen(function*() {
      const progress = yield* BulkRunner.makeProgress
      yield* progress.setBinding("requests/min")
      yield* progress.setTheoreticalMinimum(2000)
      yield* progress.recordRetry
      const { input, output } = writeInput([request("a")])
      const summary = yield* BulkRunner.run({
        input,
        output,
        progress,
        execute: ok,
        describe: describeBad,
        onInputError: () => Effect.void
      })
      expect(summary).toMatchObject({ binding: "requests/min", theoreticalMinimumMs: 2000, retries: 0 })
      expect((yield* Ref.get(progress.stats)).inFlight).toBe(0)
    }))
})
