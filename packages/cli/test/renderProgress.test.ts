// The command's own output of a run: the progress line on a terminal or as log lines, and the exit codes.
import { describe, expect, it } from "@effect/vitest"
import { Cli } from "@sluice/cli"
import { BulkRunner } from "@sluice/openai"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"

describe("Cli run output", () => {
  it.effect("renderProgress line: rewritten in place every 250 ms, ended with a newline when interrupted", () =>
    Effect.gen(function*() {
      const progress = yield* BulkRunner.makeProgress
      const written: Array<string> = []
      const fiber = yield* Effect.fork(
        Cli.renderProgress(progress, "line", (text) => Effect.sync(() => written.push(text)))
      )
      yield* TestClock.adjust("249 millis")
      expect(written).toEqual([])
      yield* TestClock.adjust("1 millis")
      const line = yield* progress.line
      expect(written).toEqual([`\r${line}\x1b[K`])
      yield* Fiber.interrupt(fiber)
      expect(written).toEqual([`\r${line}\x1b[K`, `\r${line}\x1b[K\n`])
    }))

  it.effect("renderProgress log: a line every 5 seconds, and one more when interrupted", () =>
    Effect.gen(function*() {
      const progress = yield* BulkRunner.makeProgress
      const written: Array<string> = []
      const fiber = yield* Effect.fork(
        Cli.renderProgress(progress, "log", (text) => Effect.sync(() => written.push(text)))
      )
      yield* TestClock.adjust("4999 millis")
      expect(written).toEqual([])
      yield* TestClock.adjust("1 millis")
      const line = yield* progress.line
      expect(written).toEqual([`${line}\n`])
      yield* Fiber.interrupt(fiber)
      expect(written).toEqual([`${line}\n`, `${line}\n`])
    }))

  it.effect("renderProgress extra: appended after ' | ' when it gives a text (the batches), left out when not", () =>
    Effect.gen(function*() {
      const progress = yield* BulkRunner.makeProgress
      const written: Array<string> = []
      const batches: { text: string | undefined } = { text: undefined }
      const fiber = yield* Effect.fork(
        Cli.renderProgress(
          progress,
          "log",
          (text) => Effect.sync(() => written.push(text)),
          Effect.sync(() => batches.text)
        )
      )
      yield* TestClock.adjust("5 seconds")
      const extra = "batches: 2 in_progress; lines 300 in batches, 0 back"
      batches.text = extra
      yield* TestClock.adjust("5 seconds")
      const line = yield* progress.line
      yield* Fiber.interrupt(fiber)
      expect(written).toEqual([`${line}\n`, `${line} | ${extra}\n`, `${line} | ${extra}\n`])
      expect(Cli.defaultBatchStatePath("out/results.jsonl")).toBe("out/results.batch.json")
      expect(Cli.defaultBatchStatePath("results")).toBe("results.batch.json")
    }))

  it("exitCode by outcome; the codes", () => {
    const summary = (outcome: BulkRunner.Outcome) => ({ outcome }) as BulkRunner.Summary
    expect(Cli.exitCode(summary("completed"))).toBe(0)
    expect(Cli.exitCode(summary("completed-with-failures"))).toBe(1)
    expect(Cli.exitCode(summary("stopped"))).toBe(3)
    expect(Cli.ExitCode).toEqual({ Done: 0, SomeFailed: 1, BadUsage: 2, Stopped: 3 })
  })
})
