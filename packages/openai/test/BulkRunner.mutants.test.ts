// The bulk runner's mechanism (internal/bulkRun.ts) where its other tests were silent, each checked by hand to fail
// on the mutant it names (`pnpm mutate:bulk` was started and stopped for the machine's load, see
// benchmarks/results/mutation.md): the errors file's lock, --restart, the retried-failures file among the paths
// checked, which answers are checked against the endpoint's shape (2xx only), the in-flight count, a stop that comes
// when every line is done or after the executor's, the wall time, the pool's size (below 1, the default 256), a
// stop without a count of the input, and an output write that fails; then (fifth session, each also checked by hand
// against its mutant) the errors file's and the offload's lock files among the checked paths, the offload's locks
// held for the run, and the log line of an executor defect.
import { describe, expect, it } from "@effect/vitest"
import { BulkRunner } from "@sluice/openai"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { afterEach, vi } from "vitest"
import { describe_, ok, readJsonl, setup, silent } from "./bulkMutantsHarness.js"

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof NodeFs>()
  return { ...actual, openSync: vi.fn(actual.openSync), writeSync: vi.fn(actual.writeSync) }
})

const fs = vi.mocked(NodeFs)
const real = await vi.importActual<typeof NodeFs>("node:fs")

afterEach(() => {
  fs.openSync.mockImplementation(real.openSync)
  fs.writeSync.mockImplementation(real.writeSync)
})

describe("BulkRunner (mutation survivors)", () => {
  it.effect("the errors file has its own lock: a live owner of it refuses the run before anything is written", () =>
    Effect.gen(function*() {
      const { dir, input, output } = setup(["a"])
      const errors = NodePath.join(dir, "errors.jsonl")
      NodeFs.writeFileSync(errors, "kept\n")
      const owner = { pid: process.pid, host: NodeOs.hostname(), started: "2026-01-01T00:00:00.000Z", token: "t" }
      NodeFs.writeFileSync(`${errors}.lock`, JSON.stringify(owner))
      const refused = yield* Effect.flip(BulkRunner.run({ input, output, errors, execute: ok, describe: describe_ }))
      expect(refused).toMatchObject({ _tag: "BulkPathError", reason: "locked", path: errors })
      expect(NodeFs.readFileSync(errors, "utf8")).toBe("kept\n")
      expect(NodeFs.existsSync(output)).toBe(false)
      // the output's lock, taken first, was released
      expect(NodeFs.existsSync(`${output}.lock`)).toBe(false)

      NodeFs.unlinkSync(`${errors}.lock`)
      const summary = yield* BulkRunner.run({ input, output, errors, execute: ok, describe: describe_ })
      expect(summary.succeeded).toBe(1)
      expect(NodeFs.readFileSync(errors, "utf8")).toBe("")
      expect(NodeFs.readdirSync(dir).filter((name) => name.endsWith(".lock"))).toEqual([])
    }))

  it.effect("an errors path equal to the output's lock file, or a retried-failures file equal to the input, is refused", () =>
    Effect.gen(function*() {
      const { input, output } = setup(["a"])
      const locked = yield* Effect.flip(
        BulkRunner.run({ input, output, errors: `${output}.lock`, execute: ok, describe: describe_ })
      )
      expect(locked).toMatchObject({ _tag: "BulkPathError", reason: "same-file" })
      expect(locked.message).toContain("the lock file")
      expect(locked.message).toContain("the errors file")
      const retried = yield* Effect.flip(
        BulkRunner.run({ input, output, retryFailed: input, execute: ok, describe: describe_ })
      )
      expect(retried).toMatchObject({ _tag: "BulkPathError", reason: "same-file", path: input })
      expect(retried.message).toContain("the retried-failures file")
      expect(NodeFs.existsSync(output)).toBe(false)
    }))

  it.effect("restart empties the output and sends every line again; without it the output's lines are skipped", () =>
    Effect.gen(function*() {
      const { input, output } = setup(["a", "b"])
      const calls: Array<string> = []
      const execute = (r: BulkRunner.Request) => Effect.zipRight(Effect.sync(() => calls.push(r.customId)), ok(r))
      yield* BulkRunner.run({ input, output, execute, describe: describe_, ...silent })
      const resumed = yield* BulkRunner.run({ input, output, execute, describe: describe_, ...silent })
      expect(resumed).toMatchObject({ alreadyDone: 2, succeeded: 0 })
      const restarted = yield* BulkRunner.run({ input, output, execute, describe: describe_, restart: true })
      expect(restarted).toMatchObject({ alreadyDone: 0, succeeded: 2, outcome: "completed" })
      expect(calls.sort()).toEqual(["a", "a", "b", "b"])
      expect(readJsonl(output).map((l) => l.custom_id).sort()).toEqual(["a", "b"])
      // restart on an output that does not exist yet is a fresh run
      const fresh = NodePath.join(NodePath.dirname(output), "fresh.jsonl")
      expect((yield* BulkRunner.run({ input, output: fresh, execute, describe: describe_, restart: true })).succeeded)
        .toBe(2)
    }))

  it.effect("only a 2xx answer is checked against the endpoint's shape: 199 and 300 are written as they are", () =>
    Effect.gen(function*() {
      const ids = ["s199", "s200", "s299", "s300"]
      const { input, output } = setup(ids)
      const summary = yield* BulkRunner.run({
        input,
        output,
        execute: (r) =>
          Effect.succeed<BulkRunner.Response>({
            statusCode: Number(r.customId.slice(1)),
            requestId: null,
            body: "<html>not json</html>"
          }),
        describe: describe_,
        ...silent
      })
      const byId = new Map(readJsonl(output).map((l) => [l.custom_id, l]))
      for (const id of ["s200", "s299"]) {
        expect(byId.get(id).response).toBeNull()
        expect(byId.get(id).error).toMatchObject({ kind: "InvalidResponse", code: "invalid_response" })
      }
      for (const id of ["s199", "s300"]) {
        expect(byId.get(id).error).toBeNull()
        expect(byId.get(id).response.body).toBe("<html>not json</html>")
      }
      expect(summary).toMatchObject({ succeeded: 2, failed: 2, failuresByKind: { InvalidResponse: 2 } })
      // a well-formed 200 passes the check
      const good = setup(["g"])
      const clean = yield* BulkRunner.run({ ...good, execute: ok, describe: describe_ })
      expect(clean).toMatchObject({ succeeded: 1, failed: 0, outcome: "completed" })
    }))

  it.effect("the progress counts a call in flight while it runs and not after", () =>
    Effect.gen(function*() {
      const { input, output } = setup(["a", "b", "c"])
      const progress = yield* BulkRunner.makeProgress
      const seen: Array<number> = []
      const summary = yield* BulkRunner.run({
        input,
        output,
        progress,
        concurrency: 1,
        execute: (r) =>
          Effect.flatMap(Ref.get(progress.stats), (s) => {
            seen.push(s.inFlight)
            return r.customId === "b" ? Effect.fail("no") : ok(r)
          }),
        describe: describe_,
        ...silent
      })
      expect(seen).toEqual([1, 1, 1])
      expect((yield* Ref.get(progress.stats)).inFlight).toBe(0)
      expect(summary).toMatchObject({ succeeded: 2, failed: 1, failuresByKind: { bad_request: 1 } })
    }))

  /** A run of one call at a time whose stop signal `b`'s call may send (the executor's answer for `b` is `atB`'s). */
  const runWithSignal = (
    ids: ReadonlyArray<string>,
    atB: (signal: Effect.Effect<boolean>, request: BulkRunner.Request) => Effect.Effect<BulkRunner.Response, string>,
    describe: (e: string) => BulkRunner.Failure
  ) =>
    Effect.gen(function*() {
      const { input, output } = setup(ids)
      const stop = yield* Deferred.make<void>()
      return yield* BulkRunner.run({
        input,
        output,
        concurrency: 1,
        stop: Deferred.await(stop),
        execute: (r) => r.customId === "b" ? atB(Deferred.succeed(stop, void 0), r) : ok(r),
        describe,
        ...silent
      })
    })

  it.effect("a stop that comes once every line is done is no stop: the run is completed", () =>
    Effect.gen(function*() {
      // the signal arrives while the last call is in flight: that call still finishes and is written
      const summary = yield* runWithSignal(
        ["a", "b"],
        (signal, r) => Effect.zipRight(signal, Effect.zipRight(Effect.yieldNow(), ok(r))),
        describe_
      )
      expect(summary.stop).toEqual({ _tag: "Signal" })
      expect(summary).toMatchObject({ outcome: "completed", succeeded: 2, notDone: 0 })
      expect(BulkRunner.exitCode(summary)).toBe(0)
    }))

  it.effect("a signal after the executor stopped the run does not replace the executor's reason", () =>
    Effect.gen(function*() {
      const summary = yield* runWithSignal(
        ["a", "b", "c"],
        (signal) => Effect.zipRight(Effect.ensuring(Effect.yieldNow(), signal), Effect.fail("quota")),
        (e) => ({ kind: "quota", code: e, message: e, stop: true })
      )
      expect(summary.stop).toMatchObject({ _tag: "Executor", customId: "b", line: 2 })
      expect(summary).toMatchObject({ outcome: "stopped", succeeded: 1, notDone: 2 })
    }))

  it.effect("the wall time is the virtual time the run took", () =>
    Effect.gen(function*() {
      const { input, output } = setup(["a", "b"])
      yield* TestClock.adjust(10_000) // the clock does not start at zero
      const fiber = yield* Effect.fork(BulkRunner.run({
        input,
        output,
        concurrency: 1,
        execute: (r) => Effect.zipRight(Effect.sleep("2 seconds"), ok(r)),
        describe: describe_,
        ...silent
      }))
      let summary: BulkRunner.Summary | undefined
      for (let i = 0; i < 200 && summary === undefined; i++) {
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
        yield* TestClock.adjust(500)
        const polled = yield* Fiber.poll(fiber)
        if (polled._tag === "Some" && polled.value._tag === "Success") summary = polled.value.value
      }
      expect(summary?.wallMs).toBeGreaterThanOrEqual(4_000)
      expect(summary?.wallMs).toBeLessThan(10_000)
    }))

  it.effect("a concurrency below 1 is one call at a time; without one, 256 calls are in flight at once, no more", () =>
    Effect.gen(function*() {
      const peakOf = (ids: ReadonlyArray<string>, concurrency: number | undefined, open: number) =>
        Effect.gen(function*() {
          const { input, output } = setup(ids)
          let inFlight = 0
          let peak = 0
          const gate = yield* Deferred.make<void>()
          const summary = yield* BulkRunner.run({
            input,
            output,
            ...(concurrency === undefined ? {} : { concurrency }),
            execute: (r) =>
              Effect.gen(function*() {
                inFlight++
                peak = Math.max(peak, inFlight)
                // the first `open` calls wait until they are all in flight together
                if (peak >= open) yield* Deferred.succeed(gate, void 0)
                yield* Deferred.await(gate)
                yield* Effect.yieldNow()
                inFlight--
                return yield* ok(r)
              }),
            describe: describe_,
            ...silent
          })
          expect(summary.succeeded).toBe(ids.length)
          return peak
        })
      expect(yield* peakOf(["a", "b", "c"], 0, 1)).toBe(1)
      expect(yield* peakOf(["a", "b", "c"], -3, 1)).toBe(1)
      const many = Array.from({ length: 300 }, (_, i) => `r${i}`)
      expect(yield* peakOf(many, undefined, 256)).toBe(256)
    }))

  it.effect("without counting the input, a stopped run is stopped even though every line it saw is accounted for", () =>
    Effect.gen(function*() {
      const { input, output } = setup(["a", "b", "c"])
      const summary = yield* BulkRunner.run({
        input,
        output,
        countTotal: false,
        concurrency: 1,
        execute: (r) => r.customId === "b" ? Effect.fail("quota") : ok(r),
        describe: (e) => ({ kind: "quota", code: e, message: e, stop: true }),
        ...silent
      })
      expect(summary).toMatchObject({ outcome: "stopped", succeeded: 1, failed: 0, notDone: 0 })
      expect(BulkRunner.exitCode(summary)).toBe(3)
    }))

  it.effect("an output write that fails ends the run at once with a BulkFileError naming the output", () =>
    Effect.gen(function*() {
      const { input, output } = setup(["a", "b", "c", "d"])
      let outputFd: number | undefined
      fs.openSync.mockImplementation((path, flags, mode) => {
        const fd = real.openSync(path, flags, mode)
        if (path === output) outputFd = fd
        return fd
      })
      let writes = 0
      fs.writeSync.mockImplementation(
        ((fd: number, ...rest: Array<any>) => {
          if (fd === outputFd && ++writes === 2) throw Object.assign(new Error("no space left"), { code: "ENOSPC" })
          return (real.writeSync as any)(fd, ...rest)
        }) as any
      )
      const calls: Array<string> = []
      const error = yield* Effect.flip(BulkRunner.run({
        input,
        output,
        concurrency: 1,
        execute: (r) => Effect.zipRight(Effect.sync(() => calls.push(r.customId)), ok(r)),
        describe: describe_,
        ...silent
      }))
      expect(error).toMatchObject({ _tag: "BulkFileError", path: output, operation: "write" })
      expect(error.message).toContain("no space left")
      expect(calls).toEqual(["a", "b"]) // nothing sent after the failed write
      expect(NodeFs.existsSync(`${output}.lock`)).toBe(false)
    }))

  it.effect("the errors file's lock and the offload's locks are checked paths: naming one for another role is refused", () =>
    Effect.gen(function*() {
      const { dir, input } = setup(["a"])
      const errors = NodePath.join(dir, "errors.jsonl")
      const onErrorsLock = yield* Effect.flip(
        BulkRunner.run({ input, output: `${errors}.lock`, errors, execute: ok, describe: describe_, ...silent })
      )
      expect(onErrorsLock).toMatchObject({ _tag: "BulkPathError", reason: "same-file" })
      expect(onErrorsLock.message).toContain("the errors lock file")
      const state = NodePath.join(dir, "state.json")
      const onOffloadLock = yield* Effect.flip(BulkRunner.run({
        input,
        output: NodePath.join(dir, "out.jsonl"),
        errors: `${state}.lock`,
        execute: ok,
        describe: describe_,
        ...silent,
        offload: { locks: [state], accepts: () => false, run: (io) => Effect.as(Stream.runDrain(io.lines), {}) }
      }))
      expect(onOffloadLock).toMatchObject({ _tag: "BulkPathError", reason: "same-file" })
      expect(onOffloadLock.message).toContain("the offload lock file")
      expect(NodeFs.readdirSync(dir).sort()).toEqual(["in.jsonl"])
    }))

  it.effect("the offload's locks are held for the whole run and released after; a live owner of one refuses the run", () =>
    Effect.gen(function*() {
      const { dir, input, output } = setup(["a", "b"])
      const state = NodePath.join(dir, "state.json")
      const held: Array<boolean> = []
      const offload: BulkRunner.Offload = {
        locks: [state],
        prepare: Effect.sync(() => void held.push(NodeFs.existsSync(`${state}.lock`))),
        accepts: (r) => r.customId === "b",
        run: (io) =>
          Effect.as(
            Stream.runForEach(io.lines, (text) =>
              text === ""
                ? Effect.void
                : Effect.zipRight(
                  Effect.sync(() => void held.push(NodeFs.existsSync(`${state}.lock`))),
                  io.write(JSON.stringify({ id: "batch_req_b", custom_id: "b", response: null, error: null }), null)
                )),
            {}
          )
      }
      const summary = yield* BulkRunner.run({ input, output, execute: ok, describe: describe_, ...silent, offload })
      expect(summary).toMatchObject({ outcome: "completed", succeeded: 2 })
      expect(held).toEqual([true, true])
      expect(NodeFs.existsSync(`${state}.lock`)).toBe(false)

      const owner = { pid: process.pid, host: NodeOs.hostname(), started: "2026-01-01T00:00:00.000Z", token: "t" }
      NodeFs.writeFileSync(`${state}.lock`, JSON.stringify(owner))
      const refused = yield* Effect.flip(
        BulkRunner.run({ input, output, restart: true, execute: ok, describe: describe_, ...silent, offload })
      )
      expect(refused).toMatchObject({ _tag: "BulkPathError", reason: "locked", path: state })
      expect(held).toEqual([true, true]) // prepare did not run
    }))

  it.effect("an executor defect is logged as an error naming the stop", () =>
    Effect.gen(function*() {
      const { input, output } = setup(["a", "b"])
      const logged: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => void logged.push(`${logLevel.label} ${String(message)}`))
      const summary = yield* BulkRunner.run({
        input,
        output,
        concurrency: 1,
        execute: (r) => r.customId === "b" ? Effect.die(new Error("kaput")) : ok(r),
        describe: describe_,
        ...silent
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      expect(summary.stop).toMatchObject({ _tag: "Defect", customId: "b" })
      expect(logged).toHaveLength(1)
      expect(logged[0]).toMatch(/^ERROR bulk executor defect; stopping/)
    }))
})
