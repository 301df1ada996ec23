// The bulk runner's mechanism (internal/bulkRun.ts), sixth session: tests written from the survivors and the mutants
// without coverage of `pnpm mutate:bulk` run in chunks (benchmarks/results/mutation.md), each checked by hand to fail
// on the mutant it names (the source edited, the test run and failing, the source restored).
import { describe, expect, it } from "@effect/vitest"
import { BulkRunner } from "@sluice/openai"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { describe_, ok, readJsonl, setup, silent } from "./bulkMutantsHarness.js"

/** `ok` after `n` yields: a call still in flight while other fibers run. */
const slow = (n: number) => (r: BulkRunner.Request) => Effect.zipRight(Effect.repeatN(Effect.yieldNow(), n), ok(r))

describe("BulkRunner (mutation survivors, sixth session)", () => {
  it.effect("--restart on an output that cannot be truncated fails naming the output and the truncate", () =>
    Effect.gen(function*() {
      const { dir, input } = setup(["a"])
      const output = NodePath.join(dir, "out.jsonl")
      NodeFs.mkdirSync(output)
      const error = yield* Effect.flip(
        BulkRunner.run({ input, output, restart: true, execute: ok, describe: describe_, ...silent })
      )
      expect(error).toMatchObject({ _tag: "BulkFileError", path: output, operation: "truncate" })
      expect(NodeFs.existsSync(`${output}.lock`)).toBe(false)
    }))

  it.effect("an offload that ends (saying nothing) while the input is still read stops the run, naming why", () =>
    Effect.gen(function*() {
      // one call at a time and a queue of one: the producer waits for room while the offload has already ended
      const { input, output } = setup(["a", "b", "c", "d"])
      const summary = yield* BulkRunner.run({
        input,
        output,
        concurrency: 1,
        countTotal: false,
        execute: slow(20),
        describe: describe_,
        ...silent,
        offload: { accepts: () => false, run: () => Effect.succeed({}) }
      })
      expect(summary.stop).toEqual({ _tag: "Offload", message: "the offload ended before the input did" })
      expect(summary.outcome).toBe("stopped")
      expect(BulkRunner.formatSummary(summary)).toContain("the offload ended before the input did")
    }))

  it.effect("an offload that fails ends the run at once with its error: a call in flight is not waited for", () =>
    Effect.gen(function*() {
      const { input, output } = setup(["a", "b"])
      const failure = new BulkRunner.BulkFileError({ path: "state.json", operation: "write", message: "disk full" })
      const finished: Array<string> = []
      const started = yield* Deferred.make<void>()
      const error = yield* Effect.flip(BulkRunner.run({
        input,
        output,
        concurrency: 1,
        execute: (r) =>
          Deferred.succeed(started, void 0).pipe(
            // long enough for the run to fail and close its scope meanwhile (some hundreds of scheduler turns)
            Effect.zipRight(slow(5_000)(r)),
            Effect.tap(() => Effect.sync(() => void finished.push(r.customId)))
          ),
        describe: describe_,
        ...silent,
        // it fails once the first call is in flight
        offload: { accepts: () => false, run: () => Effect.zipRight(Deferred.await(started), Effect.fail(failure)) }
      }))
      expect(error).toBe(failure)
      expect(finished).toEqual([])
      expect(readJsonl(output)).toEqual([])
      expect(NodeFs.existsSync(`${output}.lock`)).toBe(false)
    }))

  it.effect("an offload that succeeds after the input ended does not end the run: the calls still in flight finish and are written", () =>
    Effect.gen(function*() {
      const { input, output } = setup(["a", "b", "c"])
      const offloadEnded = yield* Deferred.make<void>()
      const summary = yield* BulkRunner.run({
        input,
        output,
        // the other lines' calls end only once the offload has
        execute: (r) => Effect.zipRight(Deferred.await(offloadEnded), slow(5)(r)),
        describe: describe_,
        ...silent,
        offload: {
          accepts: (r) => r.customId === "b",
          run: (io) =>
            Stream.runForEach(io.lines, (text) =>
              text === ""
                ? Effect.void
                : io.write(JSON.stringify({ id: "batch_req_b", custom_id: "b", response: null, error: null }), null))
              .pipe(
                Effect.zipRight(Deferred.succeed(offloadEnded, void 0)),
                Effect.as({})
              )
        }
      })
      expect(summary).toMatchObject({ outcome: "completed", succeeded: 3, notDone: 0 })
      expect(summary.stop).toBeUndefined()
      expect(readJsonl(output).map((l) => l.custom_id).sort()).toEqual(["a", "b", "c"])
    }))

  it.effect("an offload that ends after a signal, while the input is still read, leaves the signal as the stop", () =>
    Effect.gen(function*() {
      const { input, output } = setup(["a", "b", "c", "d", "e"])
      const signal = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const summary = yield* BulkRunner.run({
        input,
        output,
        concurrency: 1,
        stop: Deferred.await(signal),
        // `a` sends the signal and stays in flight (the producer waits for room) until the offload has ended
        execute: (r) =>
          r.customId === "a"
            ? Effect.zipRight(Deferred.succeed(signal, void 0), Effect.zipRight(Deferred.await(release), ok(r)))
            : ok(r),
        describe: describe_,
        ...silent,
        offload: {
          accepts: () => false,
          run: () =>
            Deferred.await(signal).pipe(
              Effect.zipRight(Effect.repeatN(Effect.yieldNow(), 10)),
              Effect.zipRight(Deferred.succeed(release, void 0)),
              Effect.as({})
            )
        }
      })
      expect(summary.stop).toEqual({ _tag: "Signal" })
      expect(summary).toMatchObject({ outcome: "stopped", succeeded: 1 })
    }))

  it.effect("without an offload, an input of more reads than the offload's queue holds (16) runs to its end", () =>
    Effect.gen(function*() {
      // 18 lines of 257 KiB: a line in each read (256 KiB), so 18 chunks of lines, none handed to an offload
      const { dir } = setup([])
      const input = NodePath.join(dir, "big.jsonl")
      const line = (i: number) =>
        JSON.stringify({
          custom_id: `r${i}`,
          method: "POST",
          url: "/v1/embeddings",
          body: { model: "m", input: "x".repeat(257 * 1024) }
        })
      NodeFs.writeFileSync(input, Array.from({ length: 18 }, (_, i) => line(i)).join("\n") + "\n")
      const output = NodePath.join(dir, "out.jsonl")
      const summary = yield* BulkRunner.run({ input, output, execute: ok, describe: describe_, ...silent })
      expect(summary).toMatchObject({ outcome: "completed", succeeded: 18, total: 18 })
      expect(readJsonl(output)).toHaveLength(18)
    }))

  // seventh session: bulkRun.ts 275 and 291, `if (stopReason === undefined)` made `true` (both survived the partial run
  // of 236-329): a later stopping call must not replace the first stop's reason
  const twoStops = (second: (r: BulkRunner.Request) => Effect.Effect<BulkRunner.Response, string>) =>
    Effect.gen(function*() {
      const { input, output } = setup(["a", "b"])
      const started = yield* Deferred.make<void>()
      return yield* BulkRunner.run({
        input,
        output,
        concurrency: 2,
        // "a" stops the run once "b" is in flight; "b" ends some scheduler turns later (the stop already set)
        execute: (r) =>
          r.customId === "a"
            ? Effect.zipRight(Deferred.await(started), Effect.fail("quota a"))
            : Effect.zipRight(
              Deferred.succeed(started, void 0),
              Effect.zipRight(Effect.repeatN(Effect.yieldNow(), 20), second(r))
            ),
        describe: (e) => ({ kind: "quota", code: e, message: e, stop: true }),
        ...silent
      })
    })

  it.effect("a second call stopping the run does not replace the first one's stop", () =>
    Effect.gen(function*() {
      const summary = yield* twoStops(() => Effect.fail("quota b"))
      expect(summary.stop).toEqual({
        _tag: "Executor",
        kind: "quota",
        code: "quota a",
        message: "quota a",
        customId: "a",
        line: 1
      })
      expect(summary).toMatchObject({ outcome: "stopped", succeeded: 0, failed: 0 })
    }))

  it.effect("a defect after a call stopped the run does not replace that stop", () =>
    Effect.gen(function*() {
      const summary = yield* twoStops(() => Effect.die("boom b"))
      expect(summary.stop).toMatchObject({ _tag: "Executor", customId: "a", line: 1, message: "quota a" })
      expect(summary.outcome).toBe("stopped")
    }))
})
