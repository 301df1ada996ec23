import { describe, expect, it } from "@effect/vitest"
import { BulkRunner } from "@sluice/openai"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/TestClock"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"

const tmp = () => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-bulk-"))

const request = (id: string, url = "/v1/chat/completions") =>
  JSON.stringify({ custom_id: id, method: "POST", url, body: { model: "gpt-4o-mini", messages: [] } })

const writeInput = (dir: string, lines: ReadonlyArray<string>) => {
  const path = NodePath.join(dir, "in.jsonl")
  NodeFs.writeFileSync(path, lines.join("\n") + "\n")
  return path
}

const readOutput = (path: string): Array<any> =>
  NodeFs.existsSync(path)
    ? NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l))
    : []

class Quota {
  readonly _tag = "Quota"
}
class BadRequest {
  readonly _tag = "BadRequest"
}
type Err = Quota | BadRequest

const describeErr = (e: Err): BulkRunner.Failure =>
  e._tag === "Quota"
    ? { kind: "quota", code: "insufficient_quota", message: "quota", statusCode: 429, stop: true }
    : { kind: "bad_request", code: "invalid_request_error", message: "bad", statusCode: 400 }

const ok = (r: BulkRunner.Request): Effect.Effect<BulkRunner.Response, Err> =>
  Effect.succeed({ statusCode: 200, requestId: `req_${r.customId}`, body: { id: r.customId, choices: [], data: [] } })

const silent = { onInputError: () => Effect.void }

describe("BulkRunner", () => {
  it.effect("runs every line once and writes the Batch API output format", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = writeInput(dir, ["a", "b", "c"].map((id) => request(id)))
      const output = NodePath.join(dir, "out.jsonl")
      const summary = yield* BulkRunner.run({ input, output, execute: ok, describe: describeErr, ...silent })
      expect(summary.outcome).toBe("completed")
      expect(summary.succeeded).toBe(3)
      expect(BulkRunner.exitCode(summary)).toBe(0)
      const lines = readOutput(output)
      expect(lines.map((l) => l.custom_id).sort()).toEqual(["a", "b", "c"])
      expect(lines[0]).toMatchObject({ response: { status_code: 200 }, error: null })
      expect(lines[0].id).toMatch(/^batch_req_/)
    }))

  it.effect("resume skips the custom_ids already in the output", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = writeInput(dir, ["a", "b", "c", "d"].map((id) => request(id)))
      const output = NodePath.join(dir, "out.jsonl")
      NodeFs.writeFileSync(
        output,
        JSON.stringify({ id: "x", custom_id: "b", response: null, error: null }) + "\n"
      )
      const calls: Array<string> = []
      const summary = yield* BulkRunner.run({
        input,
        output,
        execute: (r) => Effect.sync(() => calls.push(r.customId)).pipe(Effect.zipRight(ok(r))),
        describe: describeErr,
        ...silent
      })
      expect(calls.sort()).toEqual(["a", "c", "d"])
      expect(summary.alreadyDone).toBe(1)
      expect(readOutput(output).map((l) => l.custom_id).sort()).toEqual(["a", "b", "c", "d"])
    }))

  it.effect("repairs a torn last line before appending", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = writeInput(dir, ["a", "b"].map((id) => request(id)))
      const output = NodePath.join(dir, "out.jsonl")
      const good = JSON.stringify({ id: "x", custom_id: "a", response: null, error: null }) + "\n"
      NodeFs.writeFileSync(output, good + `{"id":"y","custom_id":"b","respo`)
      const summary = yield* BulkRunner.run({ input, output, execute: ok, describe: describeErr, ...silent })
      expect(summary.repairedBytes).toBeGreaterThan(0)
      const lines = readOutput(output)
      expect(lines.map((l) => l.custom_id).sort()).toEqual(["a", "b"])
    }))

  it.effect("reports bad lines with their line numbers and runs the rest", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = writeInput(dir, [
        request("a"),
        "{not json",
        JSON.stringify({ method: "POST", url: "/v1/embeddings", body: {} }),
        request("a"),
        request("b", "/v1/files"),
        JSON.stringify({ custom_id: "c", method: "GET", url: "/v1/embeddings", body: {} }),
        "",
        request("d", "/v1/embeddings"),
        JSON.stringify({ custom_id: "e", method: "POST", url: "/v1/responses", body: 3 })
      ])
      const output = NodePath.join(dir, "out.jsonl")
      const errors = NodePath.join(dir, "errors.jsonl")
      const reported: Array<BulkRunner.BulkInputError> = []
      const summary = yield* BulkRunner.run({
        input,
        output,
        errors,
        execute: ok,
        describe: describeErr,
        onInputError: (e) => Effect.sync(() => reported.push(e))
      })
      expect(reported.map((e) => [e.line, e.reason])).toEqual([
        [2, "malformed-json"],
        [3, "missing-custom-id"],
        [4, "duplicate-custom-id"],
        [5, "unsupported-url"],
        [6, "unsupported-method"],
        [9, "invalid-line"]
      ])
      expect(readOutput(errors).map((e) => e.line)).toEqual([2, 3, 4, 5, 6, 9])
      expect(readOutput(output).map((l) => l.custom_id).sort()).toEqual(["a", "d"])
      expect(summary.invalid).toBe(6)
      expect(summary.outcome).toBe("completed-with-failures")
      expect(BulkRunner.exitCode(summary)).toBe(1)
    }))

  it.effect("a typed terminal failure becomes an output line with error", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = writeInput(dir, ["a", "b"].map((id) => request(id)))
      const output = NodePath.join(dir, "out.jsonl")
      const summary = yield* BulkRunner.run({
        input,
        output,
        execute: (r) => r.customId === "b" ? Effect.fail(new BadRequest()) : ok(r),
        describe: describeErr,
        ...silent
      })
      const b = readOutput(output).find((l) => l.custom_id === "b")
      expect(b).toMatchObject({
        response: null,
        error: { code: "invalid_request_error", kind: "bad_request", status_code: 400 }
      })
      expect(summary.failuresByKind).toEqual({ bad_request: 1 })
      expect(BulkRunner.exitCode(summary)).toBe(1)
    }))

  it.effect("stops on quota without burning work, and a resume completes the rest exactly once", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const ids = Array.from({ length: 50 }, (_, i) => `r${i}`)
      const input = writeInput(dir, ids.map((id) => request(id)))
      const output = NodePath.join(dir, "out.jsonl")
      let calls = 0
      const first = yield* BulkRunner.run({
        input,
        output,
        concurrency: 4,
        execute: (r) => Effect.suspend(() => ++calls === 20 ? Effect.fail(new Quota()) : ok(r)),
        describe: describeErr,
        ...silent
      })
      expect(first.outcome).toBe("stopped")
      expect(BulkRunner.exitCode(first)).toBe(3)
      expect(first.stop).toMatchObject({ _tag: "Executor", code: "insufficient_quota" })
      expect(calls).toBeLessThan(25) // at most the in-flight window after the stop
      const written = readOutput(output)
      expect(written.every((l) => l.error === null)).toBe(true)
      expect(first.notDone).toBe(50 - written.length)
      const second = yield* BulkRunner.run({ input, output, execute: ok, describe: describeErr, ...silent })
      expect(second.outcome).toBe("completed")
      expect(second.alreadyDone).toBe(written.length)
      const all = readOutput(output).map((l) => l.custom_id).sort()
      expect(all).toEqual([...ids].sort())
    }))

  it.effect("the stop signal finishes in-flight work and reports stopped", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const ids = Array.from({ length: 20 }, (_, i) => `r${i}`)
      const input = writeInput(dir, ids.map((id) => request(id)))
      const output = NodePath.join(dir, "out.jsonl")
      const stop = yield* Deferred.make<void>()
      let started = 0
      const fiber = yield* BulkRunner.run({
        input,
        output,
        concurrency: 3,
        stop: Deferred.await(stop),
        execute: (r) =>
          Effect.suspend(() => {
            started++
            return Effect.zipRight(Effect.sleep("1 second"), ok(r))
          }),
        describe: describeErr,
        ...silent
      }).pipe(Effect.fork)
      // Let the runner read the file and start its first window (real file I/O, no clock).
      while (started < 3) yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5)))
      yield* Deferred.succeed(stop, undefined)
      yield* TestClock.adjust("1 second")
      const summary = yield* Fiber.join(fiber)
      expect(summary.outcome).toBe("stopped")
      expect(summary.stop).toEqual({ _tag: "Signal" })
      expect(summary.succeeded).toBe(3) // the in-flight three finished and were written
      expect(readOutput(output)).toHaveLength(3)
    }))

  it.effect("progress: hooks, rate and ETA under TestClock", () =>
    Effect.gen(function*() {
      const progress = yield* BulkRunner.makeProgress
      yield* progress.recordRateLimited
      yield* progress.recordRetry
      yield* progress.recordWait(1500)
      yield* progress.setBinding("tokens/min gpt-4o-mini")
      yield* progress.recordTokens({ reserved: 100, used: 60 })
      const dir = tmp()
      const input = writeInput(dir, Array.from({ length: 10 }, (_, i) => request(`r${i}`)))
      const output = NodePath.join(dir, "out.jsonl")
      const fiber = yield* BulkRunner.run({
        input,
        output,
        concurrency: 1,
        progress,
        execute: (r) => Effect.zipRight(Effect.sleep("100 millis"), ok(r)),
        describe: describeErr,
        ...silent
      }).pipe(Effect.fork)
      const lines: Array<string> = []
      const renderer = yield* BulkRunner.render(progress, {
        tty: false,
        interval: "200 millis",
        write: (t) => Effect.sync(() => lines.push(t))
      }).pipe(Effect.fork)
      // File reading is real I/O: let it progress, then move virtual time until the run ends.
      for (let i = 0; i < 2000 && Option.isNone(yield* Fiber.poll(fiber)); i++) {
        yield* Effect.promise(() => new Promise((r) => setTimeout(r, 2)))
        yield* TestClock.adjust("100 millis")
      }
      const summary = yield* Fiber.join(fiber)
      yield* Fiber.interrupt(renderer)
      expect(summary.succeeded).toBe(10)
      expect(summary.binding).toBe("tokens/min gpt-4o-mini")
      expect(summary.rateLimited).toBe(0) // reset at run start: counts are per run
      expect(lines.length).toBeGreaterThan(2)
      expect(lines[lines.length - 1]).toContain("10/10 done")
      const stats = yield* Ref.get(progress.stats)
      const v = BulkRunner.view(
        // counted by lines (no weights: the ETA by weight is BulkRunner.order.test.ts's)
        { ...stats, alreadyDone: 0, invalid: 0, failed: 0, succeeded: 5, total: 10, weights: undefined },
        stats.startedAt + 1000
      )
      expect(v.rate).toBe(5)
      expect(v.etaMs).toBe(1000)
    }))

  it.effect("property: random input, failures and crash points → every custom_id exactly once", () =>
    Effect.gen(function*() {
      const arbitrary = FastCheck.record({
        ids: FastCheck.uniqueArray(FastCheck.string({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 60 }),
        garbage: FastCheck.array(FastCheck.nat(70), { maxLength: 5 }),
        failEvery: FastCheck.integer({ min: 2, max: 9 }),
        crashes: FastCheck.array(FastCheck.integer({ min: 1, max: 80 }), { minLength: 1, maxLength: 4 }),
        torn: FastCheck.boolean(),
        concurrency: FastCheck.integer({ min: 1, max: 16 }),
        seed: FastCheck.integer()
      })
      const samples = FastCheck.sample(arbitrary, { numRuns: 40, seed: 42 })
      for (const sample of samples) {
        const dir = tmp()
        const lines = sample.ids.map((id) => request(id))
        for (const g of sample.garbage) lines.splice(Math.min(g, lines.length), 0, "{broken")
        const input = writeInput(dir, lines)
        const output = NodePath.join(dir, "out.jsonl")
        let rng = sample.seed >>> 0
        const next = () => (rng = (rng * 1664525 + 1013904223) >>> 0)
        const execute =
          (crashAfter: number | undefined, crash: Deferred.Deferred<void>, counter: { n: number }) =>
          (r: BulkRunner.Request) =>
            Effect.gen(function*() {
              counter.n++
              if (crashAfter !== undefined && counter.n >= crashAfter) yield* Deferred.succeed(crash, undefined)
              const spins = next() % 4
              for (let i = 0; i < spins; i++) yield* Effect.yieldNow()
              return next() % sample.failEvery === 0 ? yield* Effect.fail(new BadRequest()) : yield* ok(r)
            })
        for (const crashAfter of sample.crashes) {
          const crash = yield* Deferred.make<void>()
          const fiber = yield* BulkRunner.run({
            input,
            output,
            concurrency: sample.concurrency,
            execute: execute(crashAfter, crash, { n: 0 }),
            describe: describeErr,
            ...silent
          }).pipe(Effect.fork)
          // kill at a random moment: as soon as the crash point is reached, or when done
          yield* Effect.raceFirst(Deferred.await(crash), Fiber.await(fiber))
          yield* Fiber.interrupt(fiber)
          if (sample.torn && NodeFs.existsSync(output)) NodeFs.appendFileSync(output, `{"id":"torn","custom_`)
        }
        const summary = yield* BulkRunner.run({
          input,
          output,
          concurrency: sample.concurrency,
          execute: execute(undefined, yield* Deferred.make<void>(), { n: 0 }),
          describe: describeErr,
          ...silent
        })
        expect(summary.outcome).not.toBe("stopped")
        expect(summary.invalid).toBe(sample.garbage.length)
        const written = readOutput(output).map((l) => l.custom_id as string)
        expect(written.length).toBe(sample.ids.length)
        expect([...written].sort()).toEqual([...sample.ids].sort())
      }
    }))

  it.effect("a missing input file is a BulkFileError", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const error = yield* BulkRunner.run({
        input: NodePath.join(dir, "nope.jsonl"),
        output: NodePath.join(dir, "out.jsonl"),
        execute: ok,
        describe: describeErr
      }).pipe(Effect.flip)
      expect(error._tag).toBe("BulkFileError")
      expect(error.path).toContain("nope.jsonl")
    }))
})
