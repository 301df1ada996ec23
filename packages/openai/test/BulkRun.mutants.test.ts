// The bulk runner's mechanism (internal/bulkRun.ts), tenth session: tests written from the survivors of a whole
// `pnpm mutate:bulk` run (benchmarks/results/mutation.md), each checked by hand to fail on the mutant it names (the
// source edited, this file run and failing, the source restored). A process of its own (vitest.config.ts's isolated
// files): it mocks node:fs's fsyncSync and changes the working directory, for the relative paths of one test.
import { describe, expect, it } from "@effect/vitest"
import { BulkRunner } from "@sluice/openai"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { afterEach, vi } from "vitest"
import { describe_, ok, readJsonl, setup, silent } from "./bulkMutantsHarness.js"

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof NodeFs>()
  return { ...actual, fsyncSync: vi.fn(actual.fsyncSync) }
})

const fs = vi.mocked(NodeFs)

afterEach(() => {
  fs.fsyncSync.mockClear()
})

/** An embeddings line whose input is `size` characters (300 KiB: a line that ends in the input's second read). */
const line = (id: string, size: number) =>
  JSON.stringify({
    custom_id: id,
    method: "POST",
    url: "/v1/embeddings",
    body: { model: "m", input: "x".repeat(size) }
  })

/** Runs `use` with `dir` as the working directory, the old one restored after. */
const inDirectory = <A, E, R>(dir: string, use: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const was = process.cwd()
      process.chdir(dir)
      return was
    }),
    () => use,
    (was) => Effect.sync(() => process.chdir(was))
  )

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

  it.effect("with relative paths, a run locks its output only: no errors file or offload it was not given", () =>
    Effect.gen(function*() {
      const { dir } = setup(["a", "b"])
      const locksDuringCalls = (output: string) =>
        Effect.gen(function*() {
          const seen = new Set<string>()
          const summary = yield* BulkRunner.run({
            input: "in.jsonl",
            output,
            execute: (r) =>
              Effect.zipRight(
                Effect.sync(() => {
                  for (const name of NodeFs.readdirSync(".")) if (name.endsWith(".lock")) seen.add(name)
                }),
                ok(r)
              ),
            describe: describe_,
            ...silent
          })
          return { summary, locks: [...seen].sort() }
        })
      const { locks, summary } = yield* inDirectory(dir, locksDuringCalls("out.jsonl"))
      expect(locks).toEqual(["out.jsonl.lock"])
      expect(summary).toMatchObject({ outcome: "completed", succeeded: 2 })
      // an output named `undefined` (its lock `undefined.lock`) is no clash with an errors file that was not given
      const named = yield* inDirectory(dir, locksDuringCalls("undefined"))
      expect(named.locks).toEqual(["undefined.lock"])
      expect(named.summary).toMatchObject({ outcome: "completed", succeeded: 2 })
      expect(readJsonl(NodePath.join(dir, "undefined"))).toHaveLength(2)
      expect(NodeFs.readdirSync(dir).filter((name) => name.endsWith(".lock"))).toEqual([])
    }))

  it.effect("fsyncEvery: the output is synced after every that many lines; by default (256) after its first only", () =>
    Effect.gen(function*() {
      // virtual time stands still: the writer's once-a-second sync comes only at the first line
      const syncs = (fsyncEvery: number | undefined) =>
        Effect.gen(function*() {
          const { input, output } = setup(["a", "b", "c", "d"])
          fs.fsyncSync.mockClear()
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
          return fs.fsyncSync.mock.calls.length
        })
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
