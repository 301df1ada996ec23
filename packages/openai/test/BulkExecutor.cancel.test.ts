/**
 * `cancel` (Ctrl-C) against calls the server refused: a call whose 429 comes back after the cancel fails at once,
 * unsent again, instead of retrying after the server's hint (it was on the wire when the cancel came, so the cancel
 * itself passed it by). In-process simulator, TestClock, real `openai` SDK.
 */
import { describe, expect, it } from "@effect/vitest"
import type { BulkExecutor, BulkRunner } from "@sluice/openai"
import { SimConfig, Simulator, VirtualTime } from "@sluice/testing"
import { Clock, Effect, Either, Exit } from "effect"
import { simExecutor } from "./harness.js"

const MODEL = "gpt-4o-mini"

describe("BulkExecutor: cancel", () => {
  it.effect("a 429 that comes back after the cancel is not retried: the run ends at once, the lines left to a rerun", () =>
    Effect.gen(function*() {
      // the executor, once made (its `onEvent` cancels it)
      const made: { executor?: BulkExecutor.Executor } = {}
      let cancelled = false
      const executorOf: BulkExecutor.Executor = yield* simExecutor({
        // Ctrl-C as the first 429 is read: the other probes' 429s come back after it
        onEvent: (event) =>
          event._tag === "Failed" && event.error._tag === "RateLimited" && !cancelled
            ? Effect.suspend(() => {
              cancelled = true
              return made.executor!.cancel("Signal", "interrupted")
            })
            : Effect.void
      })
      made.executor = executorOf
      const lines: ReadonlyArray<BulkRunner.Request> = Array.from({ length: 6 }, (_, i) => ({
        customId: `l-${i}`,
        url: "/v1/chat/completions",
        line: i + 1,
        body: { model: MODEL, messages: [{ role: "user", content: `[req:l-${i}] hello` }], max_tokens: 16 }
      }))
      const exit = yield* VirtualTime.run(
        Effect.exit(Effect.forEach(lines, (line) => Effect.either(executorOf.execute(line)), { concurrency: 6 })),
        { seed: "sluice-tests" }
      )
      const endedAt = yield* Clock.currentTimeMillis
      expect(Exit.isSuccess(exit)).toBe(true)
      if (!Exit.isSuccess(exit)) return
      const stats = yield* Simulator.stats
      // the six probes went at once; the server took one (1 request a minute) and refused five
      expect(stats.attempts).toHaveLength(6)
      expect(stats.byStatus).toEqual({ "200": 1, "429": 5 })
      // none retried (the hint was a minute): the run ended as the answers came
      expect(endedAt).toBeLessThan(1_000)
      const failed = exit.value.filter(Either.isLeft).map((e) => e.left)
      expect(failed).toHaveLength(5)
      for (const error of failed) expect(error).toMatchObject({ _tag: "Cancelled", kind: "Signal" })
    }).pipe(
      Effect.scoped,
      Effect.provide(Simulator.layer(SimConfig.make({
        seed: 3,
        models: { [MODEL]: { limits: { rpm: 1, tpm: 10_000_000 } } },
        latency: { request: { _tag: "fixed", ms: 100 }, perOutputTokenMs: 0 }
      })))
    ))
})
