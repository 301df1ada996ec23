// BulkRunner's offload hook (what `sluice run --via batch|auto` hands the Batch API): the lines it accepts reach it
// in input order at their line numbers (an empty string for every other line), are never executed, and what it
// writes lands in the same output, once per custom_id, across a resume.
import { describe, expect, it } from "@effect/vitest"
import { BulkRunner } from "@sluice/openai"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Stream from "effect/Stream"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"

const tmp = () => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-offload-"))

const request = (id: string, url = "/v1/chat/completions") =>
  JSON.stringify({
    custom_id: id,
    method: "POST",
    url,
    body: url === "/v1/chat/completions"
      ? { model: "gpt-4o-mini", messages: [] }
      : { model: "dall-e-3", prompt: "a cat" }
  })

const readOutput = (path: string): Array<any> =>
  NodeFs.existsSync(path)
    ? NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l))
    : []

const silent = { onInputError: () => Effect.void }

/** An offload that answers each line it gets (by line number), recording what it was handed. */
const recordingOffload = (accepts: (r: BulkRunner.Request) => boolean, stop?: string) => {
  const handed: Array<string> = []
  const offload: BulkRunner.Offload = {
    accepts,
    run: (io) =>
      Effect.as(
        Stream.runForEach(io.lines, (text) =>
          Effect.suspend(() => {
            handed.push(text)
            if (text === "") return Effect.void
            const id = JSON.parse(text).custom_id as string
            const failed = id.endsWith("x")
            return io.write(
              JSON.stringify({
                id: `batch_req_${id}`,
                custom_id: id,
                response: failed ? null : { status_code: 200, request_id: null, body: { line: handed.length } },
                error: failed ? { kind: "BatchRequestError", code: "x", message: "x" } : null
              }),
              failed ? { kind: "BatchRequestError" } : null
            )
          })),
        stop === undefined ? {} : { stop }
      )
  }
  return { offload, handed }
}

describe("BulkRunner offload", () => {
  it.effect("property: the offload gets exactly its lines at their numbers; every custom_id once, across a resume", () =>
    Effect.promise(() =>
      FastCheck.assert(
        FastCheck.asyncProperty(
          FastCheck.array(FastCheck.constantFrom("batch", "live", "blank", "bad", "image", "fail"), {
            minLength: 1,
            maxLength: 60
          }),
          async (kinds) => {
            const dir = tmp()
            const lines = kinds.map((kind, i) =>
              kind === "blank"
                ? ""
                : kind === "bad"
                ? "{not json"
                : kind === "image"
                ? request(`img-${i}`, "/v1/images/generations")
                : request(kind === "fail" ? `b-${i}x` : `${kind === "live" ? "l" : "b"}-${i}`)
            )
            const input = NodePath.join(dir, "in.jsonl")
            NodeFs.writeFileSync(input, lines.join("\n") + "\n")
            const output = NodePath.join(dir, "out.jsonl")
            const accepts = (r: BulkRunner.Request) => r.customId.startsWith("b-")
            const executed: Array<string> = []
            const run = (offload: BulkRunner.Offload) =>
              Effect.runPromise(BulkRunner.run({
                input,
                output,
                ...silent,
                countTotal: false,
                offload,
                execute: (r) =>
                  Effect.sync(() => {
                    executed.push(r.customId)
                    return {
                      statusCode: 200,
                      requestId: null,
                      body: { id: r.customId, choices: [], data: [], created: 1 }
                    }
                  }),
                describe: (e: never) => e
              }))
            const first = recordingOffload(accepts)
            const summary = await run(first.offload)
            // one element per input line; the offload's own at their positions, every other one empty
            expect(first.handed.length).toBe(lines.length)
            first.handed.forEach((text, i) =>
              expect(text).toBe(kinds[i] === "batch" || kinds[i] === "fail" ? lines[i] : "")
            )
            expect(executed.every((id) => !id.startsWith("b-"))).toBe(true)
            const ids = readOutput(output).map((l) => l.custom_id as string)
            const expected = lines.filter((_, i) => kinds[i] !== "blank" && kinds[i] !== "bad")
              .map((l) => JSON.parse(l).custom_id as string)
            expect([...ids].sort()).toEqual([...expected].sort())
            const fails = kinds.filter((k) => k === "fail").length
            expect(summary.failed).toBe(fails)
            expect(summary.succeeded).toBe(expected.length - fails)
            expect(summary.notDone).toBe(0)

            // a rerun: nothing handed again, nothing executed again, no line written twice
            const again = recordingOffload(accepts)
            executed.length = 0
            const second = await run(again.offload)
            expect(again.handed.every((t) => t === "")).toBe(true)
            expect(executed).toEqual([])
            expect(readOutput(output).length).toBe(expected.length)
            expect(second.alreadyDone).toBe(expected.length)
          }
        ),
        { numRuns: 40 }
      )
    ))

  it.effect("an offload that leaves lines not done stops the run (resumable), naming why", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = NodePath.join(dir, "in.jsonl")
      NodeFs.writeFileSync(input, [request("b-1"), request("l-2")].join("\n") + "\n")
      const output = NodePath.join(dir, "out.jsonl")
      const offload: BulkRunner.Offload = {
        accepts: (r) => r.customId.startsWith("b-"),
        run: (io) => Effect.as(Stream.runDrain(io.lines), { stop: "1 line came back expired" })
      }
      const summary = yield* BulkRunner.run({
        input,
        output,
        ...silent,
        offload,
        execute: () => Effect.succeed({ statusCode: 200, requestId: null, body: { data: [], created: 1 } }),
        describe: (e: never) => e
      })
      expect(summary.outcome).toBe("stopped")
      expect(summary.stop).toEqual({ _tag: "Offload", message: "1 line came back expired" })
      expect(summary.notDone).toBe(1)
      expect(BulkRunner.formatSummary(summary)).toContain("stopped by: 1 line came back expired")
      expect(readOutput(output).map((l) => l.custom_id)).toEqual(["l-2"])
    }))

  it.effect("an offload that writes nothing for a line it took (and says nothing) still leaves the run stopped", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = NodePath.join(dir, "in.jsonl")
      NodeFs.writeFileSync(input, [request("b-1"), request("b-2")].join("\n") + "\n")
      const summary = yield* BulkRunner.run({
        input,
        output: NodePath.join(dir, "out.jsonl"),
        ...silent,
        offload: { accepts: () => true, run: (io) => Effect.as(Stream.runDrain(io.lines), {}) },
        execute: () => Effect.never,
        describe: (e: never) => e
      })
      expect(summary.outcome).toBe("stopped")
      expect(summary.stop).toEqual({ _tag: "Offload", message: "2 lines the offload took have no output line" })
    }))

  it.effect("the offload's paths are checked with the run's, and prepare runs under the lock before any line", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = NodePath.join(dir, "in.jsonl")
      NodeFs.writeFileSync(input, request("b-1") + "\n")
      const output = NodePath.join(dir, "out.jsonl")
      const clash = yield* Effect.flip(BulkRunner.run({
        input,
        output,
        ...silent,
        offload: { paths: [{ role: "state", path: input }], accepts: () => true, run: () => Effect.succeed({}) },
        execute: () => Effect.never,
        describe: (e: never) => e
      }))
      expect(clash._tag).toBe("BulkPathError")
      expect(clash.message).toContain("state")
      const order: Array<string> = []
      yield* BulkRunner.run({
        input,
        output,
        ...silent,
        offload: {
          prepare: Effect.sync(() => order.push(`prepare lock=${NodeFs.existsSync(`${output}.lock`)}`)),
          accepts: () => (order.push("accepts"), true),
          run: (io) => Effect.as(Stream.runDrain(io.lines), {})
        },
        execute: () => Effect.never,
        describe: (e: never) => e
      })
      expect(order).toEqual(["prepare lock=true", "accepts"])
    }))

  // regression: the producer used to wait forever to hand its 17th chunk to an offload that had ended (the CLI turns
  // a Batch API failure into a successful `{ stop }`), and neither the run nor a signal could end it
  it.effect("an offload that ends before the input does stops the run (resumable) with its reason, not a hang", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = NodePath.join(dir, "in.jsonl")
      // 6 MB: some 24 chunks of lines to hand over (the queue to the offload holds 16)
      const line = (i: number) =>
        JSON.stringify({
          custom_id: `b-${i}`,
          method: "POST",
          url: "/v1/chat/completions",
          body: { model: "gpt-4o-mini", messages: [{ role: "user", content: "x".repeat(1_100) }] }
        })
      NodeFs.writeFileSync(input, Array.from({ length: 5_000 }, (_, i) => line(i)).join("\n") + "\n")
      const output = NodePath.join(dir, "out.jsonl")
      const summary = yield* BulkRunner.run({
        input,
        output,
        ...silent,
        countTotal: false,
        offload: { accepts: () => true, run: () => Effect.succeed({ stop: "api failed" }) },
        execute: () => Effect.never,
        describe: (e: never) => e
      })
      expect(summary.outcome).toBe("stopped")
      expect(BulkRunner.exitCode(summary)).toBe(BulkRunner.ExitCode.Stopped)
      expect(summary.stop).toEqual({ _tag: "Offload", message: "api failed" })
      expect(readOutput(output)).toEqual([])
    }))

  it.effect("on a signal the offload is not told the input ended (so it flushes nothing): it is interrupted", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = NodePath.join(dir, "in.jsonl")
      NodeFs.writeFileSync(input, [request("b-1"), request("b-2")].join("\n") + "\n")
      let ended = false
      const summary = yield* BulkRunner.run({
        input,
        output: NodePath.join(dir, "out.jsonl"),
        ...silent,
        stop: Effect.void,
        offload: {
          accepts: () => true,
          run: (io) => Effect.as(Effect.zipRight(Stream.runDrain(io.lines), Effect.sync(() => (ended = true))), {})
        },
        execute: () => Effect.never,
        describe: (e: never) => e
      })
      expect(summary.stop).toEqual({ _tag: "Signal" })
      expect(summary.outcome).toBe("stopped")
      expect(ended).toBe(false)
    }))
})
