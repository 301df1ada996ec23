// The bulk runner's guards against careless and hostile input: path collisions, the output lock, outputs that
// are not outputs, reruns over failed lines, and input lines that must not be sent altered.
import { describe, expect, it } from "@effect/vitest"
import { BulkRunner } from "@sluice/openai"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"

const tmp = () => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-guard-"))

const request = (id: string, body: Record<string, unknown> = {}) =>
  JSON.stringify({
    custom_id: id,
    method: "POST",
    url: "/v1/chat/completions",
    body: { model: "gpt-4o-mini", messages: [], ...body }
  })

const ok = (r: BulkRunner.Request): Effect.Effect<BulkRunner.Response, string> =>
  Effect.succeed({ statusCode: 200, requestId: `req_${r.customId}`, body: { id: r.customId, choices: [] } })
const describe_ = (e: string): BulkRunner.Failure => ({ kind: "BadRequest", code: e, message: e, statusCode: 400 })
const silent = { onInputError: () => Effect.void }

const readOutput = (path: string): Array<any> =>
  NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l))

const write = (path: string, text: string | Buffer) => {
  NodeFs.writeFileSync(path, text)
  return path
}

/** The bytes of every file of a directory (a refused run must change none). */
const snapshot = (dir: string) =>
  Object.fromEntries(
    NodeFs.readdirSync(dir).sort().map((name) => {
      const path = NodePath.join(dir, name)
      const stat = NodeFs.lstatSync(path)
      return [
        name,
        stat.isSymbolicLink()
          ? `-> ${NodeFs.readlinkSync(path)}`
          : stat.isDirectory()
          ? "dir"
          : NodeFs.readFileSync(path, "hex")
      ]
    })
  )

describe("BulkRunner guards", () => {
  it.effect("property: two roles naming one file (same path, symlink, hard link, ../) are refused; nothing changes", () =>
    Effect.gen(function*() {
      const roles = ["input", "output", "errors"] as const
      const arbitrary = FastCheck.record({
        // which role aliases which, and how
        alias: FastCheck.constantFrom(...roles),
        of: FastCheck.constantFrom(...roles),
        how: FastCheck.constantFrom("same", "symlink", "hardlink", "dotdot"),
        outputExists: FastCheck.boolean()
      }).filter((s) => s.alias !== s.of && !(s.how === "hardlink" && s.of !== "input" && !s.outputExists))
      yield* Effect.promise(() =>
        FastCheck.assert(
          FastCheck.asyncProperty(arbitrary, async (s) => {
            const dir = tmp()
            NodeFs.mkdirSync(NodePath.join(dir, "sub"))
            const paths: Record<string, string> = {
              input: write(NodePath.join(dir, "in.jsonl"), request("a") + "\n" + request("b")),
              output: NodePath.join(dir, "out.jsonl"),
              errors: NodePath.join(dir, "errors.jsonl")
            }
            if (s.outputExists) {
              write(
                paths.output!,
                JSON.stringify({ id: "batch_req_1", custom_id: "a", response: null, error: null }) + "\n"
              )
              write(paths.errors!, "")
            }
            const target = paths[s.of]!
            const alias = NodePath.join(dir, `alias-${s.alias}.jsonl`)
            if (s.how === "same") paths[s.alias] = target
            else if (s.how === "dotdot") paths[s.alias] = NodePath.join(dir, "sub", "..", NodePath.basename(target))
            else if (s.how === "symlink") {
              NodeFs.symlinkSync(target, alias)
              paths[s.alias] = alias
            } else {
              if (!NodeFs.existsSync(target)) write(target, "")
              NodeFs.linkSync(target, alias)
              paths[s.alias] = alias
            }
            const before = snapshot(dir)
            const exit = await Effect.runPromiseExit(BulkRunner.run({
              input: paths.input!,
              output: paths.output!,
              errors: paths.errors!,
              execute: ok,
              describe: describe_,
              ...silent
            }))
            expect(exit._tag).toBe("Failure")
            expect(JSON.stringify(exit)).toContain("same-file")
            expect(snapshot(dir)).toEqual(before)
          }),
          { numRuns: 40 }
        )
      )
    }))

  it.effect("an output that is not JSONL (a notes file without a final newline) is refused, not repaired", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = write(NodePath.join(dir, "in.jsonl"), request("a") + "\n")
      const notes = write(NodePath.join(dir, "notes.txt"), "my notes\nline two without newline")
      const error = yield* Effect.flip(
        BulkRunner.run({ input, output: notes, execute: ok, describe: describe_, ...silent })
      )
      expect(error).toMatchObject({ _tag: "BulkPathError", reason: "not-output" })
      expect(error.message).toContain("notes.txt:1")
      expect(NodeFs.readFileSync(notes, "utf8")).toBe("my notes\nline two without newline")
      // a request file given as the output is refused too
      const other = write(NodePath.join(dir, "requests.jsonl"), request("z") + "\n")
      const again = yield* Effect.flip(
        BulkRunner.run({ input, output: other, execute: ok, describe: describe_, ...silent })
      )
      expect(again).toMatchObject({ reason: "not-output" })
      expect(NodeFs.readFileSync(other, "utf8")).toBe(request("z") + "\n")
    }))

  it.effect("a whole last output line without its newline is kept (completed), a torn one is cut", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = write(NodePath.join(dir, "in.jsonl"), ["a", "b", "c"].map((id) => request(id)).join("\n"))
      const output = NodePath.join(dir, "out.jsonl")
      const line = (id: string) => JSON.stringify({ id: `batch_req_${id}`, custom_id: id, response: null, error: null })
      write(output, line("a") + "\n" + line("b"))
      const calls: Array<string> = []
      const summary = yield* BulkRunner.run({
        input,
        output,
        execute: (r) => Effect.zipRight(Effect.sync(() => calls.push(r.customId)), ok(r)),
        describe: describe_,
        ...silent
      })
      expect(calls).toEqual(["c"]) // b's line was whole: not sent again
      expect(summary.repairedBytes).toBe(0)
      expect(readOutput(output).map((l) => l.custom_id)).toEqual(["a", "b", "c"])
      // torn: a prefix of a line of ours
      const torn = line("d").slice(0, 25)
      NodeFs.appendFileSync(output, torn)
      const second = yield* BulkRunner.run({ input, output, execute: ok, describe: describe_, ...silent })
      expect(second.repairedBytes).toBe(torn.length)
      expect(readOutput(output).map((l) => l.custom_id)).toEqual(["a", "b", "c"])
    }))

  it.effect("the lock: a live owner refuses, another host refuses naming it, a dead owner is taken over", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = write(NodePath.join(dir, "in.jsonl"), request("a") + "\n")
      const output = NodePath.join(dir, "out.jsonl")
      const lock = `${output}.lock`
      const run = BulkRunner.run({ input, output, execute: ok, describe: describe_, ...silent })
      const owner = (pid: number, host: string) =>
        write(lock, JSON.stringify({ pid, host, started: "2026-01-01T00:00:00.000Z", token: "t" }))

      owner(process.pid, NodeOs.hostname()) // alive: this very process
      const live = yield* Effect.flip(run)
      expect(live).toMatchObject({ _tag: "BulkPathError", reason: "locked" })
      expect(live.message).toContain(`pid ${process.pid}`)
      expect(NodeFs.existsSync(output)).toBe(false)

      owner(4242, "elsewhere.example")
      const remote = yield* Effect.flip(run)
      expect(remote.message).toContain("on host elsewhere.example")
      expect(remote.message).toContain(`remove ${lock}`)

      // a pid that is not alive on this host: stale, taken over; released at the end
      const dead = 2 ** 22 + 12345
      owner(dead, NodeOs.hostname())
      const summary = yield* run
      expect(summary.succeeded).toBe(1)
      expect(NodeFs.existsSync(lock)).toBe(false)
      expect(NodeFs.readdirSync(dir).filter((n) => n.includes(".lock"))).toEqual([])
    }))

  it.effect("a rerun over failed lines is completed-with-failures (exit 1); retryFailed resends only those", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = write(NodePath.join(dir, "in.jsonl"), ["a", "b", "c", "d"].map((id) => request(id)).join("\n"))
      const output = NodePath.join(dir, "out.jsonl")
      const retried = NodePath.join(dir, "out.retried.jsonl")
      const failing = new Set(["b", "d"])
      const calls: Array<string> = []
      const execute = (r: BulkRunner.Request) =>
        Effect.zipRight(
          Effect.sync(() => calls.push(r.customId)),
          failing.has(r.customId) ? Effect.fail("boom") : ok(r)
        )
      const options = { input, output, execute, describe: describe_, ...silent }
      const first = yield* BulkRunner.run(options)
      expect(BulkRunner.exitCode(first)).toBe(1)

      calls.length = 0
      const rerun = yield* BulkRunner.run(options)
      expect(calls).toEqual([])
      expect(rerun).toMatchObject({ outcome: "completed-with-failures", alreadyDone: 4, alreadyFailed: 2 })
      expect(BulkRunner.exitCode(rerun)).toBe(1)
      expect(BulkRunner.formatSummary(rerun)).toContain("already done 4 (2 of them failed)")

      failing.delete("b") // b now succeeds, d still fails
      const retry = yield* BulkRunner.run({ ...options, retryFailed: retried })
      expect(calls.sort()).toEqual(["b", "d"])
      expect(retry).toMatchObject({ superseded: 2, alreadyDone: 2, alreadyFailed: 0, succeeded: 1, failed: 1 })
      expect(BulkRunner.exitCode(retry)).toBe(1)
      const lines = readOutput(output)
      expect(lines.map((l) => l.custom_id).sort()).toEqual(["a", "b", "c", "d"]) // one line per id
      expect(lines.find((l) => l.custom_id === "b").error).toBeNull()
      expect(readOutput(retried).map((l) => l.custom_id).sort()).toEqual(["b", "d"]) // the old failures, kept

      failing.clear()
      const last = yield* BulkRunner.run({ ...options, retryFailed: retried })
      expect(BulkRunner.exitCode(last)).toBe(0)
      expect(readOutput(output).filter((l) => l.error !== null)).toEqual([])
      expect(readOutput(retried).map((l) => l.custom_id).sort()).toEqual(["b", "d", "d"])
    }))

  it.effect("input: a BOM is accepted; \\f, U+00A0, invalid UTF-8 and stream: true are rejected; counts agree", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = write(
        NodePath.join(dir, "in.jsonl"),
        Buffer.concat([
          Buffer.from([0xef, 0xbb, 0xbf]),
          Buffer.from(request("a") + "\n\f\n\u00a0\n  \t\n"),
          Buffer.from(`{"custom_id":"x`),
          Buffer.from([0xff, 0xfe]),
          Buffer.from(`y","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini"}}\n`),
          Buffer.from(request("s", { stream: true }) + "\n" + request("t", { stream: false }) + "\n")
        ])
      )
      const output = NodePath.join(dir, "out.jsonl")
      const rejected: Array<BulkRunner.BulkInputError> = []
      const summary = yield* BulkRunner.run({
        input,
        output,
        execute: ok,
        describe: describe_,
        onInputError: (e) => Effect.sync(() => rejected.push(e))
      })
      expect(readOutput(output).map((l) => l.custom_id).sort()).toEqual(["a", "t"])
      expect(rejected.map((e) => [e.line, e.reason])).toEqual([
        [2, "malformed-json"],
        [3, "malformed-json"],
        [5, "invalid-line"],
        [6, "invalid-line"]
      ])
      expect(rejected[2]!.message).toContain("UTF-8")
      expect(rejected[3]!.message).toContain("stream")
      expect(summary).toMatchObject({
        total: 6,
        invalid: 4,
        succeeded: 2,
        notDone: 0,
        outcome: "completed-with-failures"
      })
    }))

  it.effect("concurrency far above the work starts no more workers than lines (a million on three lines)", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = write(NodePath.join(dir, "in.jsonl"), ["a", "b", "c"].map((id) => request(id)).join("\n"))
      const output = NodePath.join(dir, "out.jsonl")
      const before = process.memoryUsage().heapUsed
      const summary = yield* BulkRunner.run({
        input,
        output,
        execute: ok,
        describe: describe_,
        concurrency: 1_000_000,
        ...silent
      })
      expect(summary.succeeded).toBe(3)
      // a worker fiber per unit of concurrency would take hundreds of megabytes
      expect(process.memoryUsage().heapUsed - before).toBeLessThan(50 * 1024 * 1024)
    }))
})
