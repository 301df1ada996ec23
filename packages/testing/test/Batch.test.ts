import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as TestClock from "effect/TestClock"
import { toFile } from "openai"
import { Scenario, Simulator } from "../src/index.js"
import { call, client } from "./helpers.js"

const line = (id: string, content: string, model = "gpt-4o-mini") =>
  JSON.stringify({
    custom_id: id,
    method: "POST",
    url: "/v1/chat/completions",
    body: { model, messages: [{ role: "user", content }], max_tokens: 10 }
  })

describe("Batch API", () => {
  it.effect("a batch advances validating → in_progress → finalizing → completed; output joined by custom_id", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const input = Array.from({ length: 20 }, (_, i) => line(`job-${i}`, `hello ${i}`))
      input.push(line("bad", "[sim:content-policy] nope"))
      const file = Either.getOrThrow(
        yield* call(async () =>
          c.files.create({ file: await toFile(Buffer.from(input.join("\n")), "input.jsonl"), purpose: "batch" })
        )
      )
      expect(file.object).toBe("file")
      expect(file.purpose).toBe("batch")
      const batch = Either.getOrThrow(
        yield* call(() =>
          c.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" })
        )
      )
      expect(batch.status).toBe("validating")
      const status = () => call(() => c.batches.retrieve(batch.id)).pipe(Effect.map(Either.getOrThrow))
      yield* TestClock.adjust("5 seconds")
      expect((yield* status()).status).toBe("in_progress")
      yield* TestClock.adjust("60 seconds")
      yield* TestClock.adjust(21 * 10)
      expect((yield* status()).status).toBe("finalizing")
      yield* TestClock.adjust("5 seconds")
      const done = yield* status()
      expect(done.status).toBe("completed")
      expect(done.request_counts).toEqual({ total: 21, completed: 20, failed: 1 })
      const output = Either.getOrThrow(yield* call(() => c.files.content(done.output_file_id!).then((r) => r.text())))
      const lines = output.trim().split("\n").map((l) => JSON.parse(l))
      expect(lines.map((l) => l.custom_id).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `job-${i}`).sort())
      // unordered, like the real API
      expect(lines.map((l) => l.custom_id)).not.toEqual(Array.from({ length: 20 }, (_, i) => `job-${i}`))
      expect(lines[0].response.status_code).toBe(200)
      expect(lines[0].response.body.object).toBe("chat.completion")
      const errors = Either.getOrThrow(yield* call(() => c.files.content(done.error_file_id!).then((r) => r.text())))
      expect(JSON.parse(errors.trim()).response.body.error.code).toBe("content_policy_violation")
      // the batch used no real-time pool
      expect((yield* Simulator.stats).admissions).toHaveLength(0)
    }).pipe(Effect.provide(Simulator.layer(Scenario.tier1()))))

  it.effect("a batch with several models fails validation; cancel", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const mixed = Either.getOrThrow(
        yield* call(async () =>
          c.files.create({
            file: await toFile(Buffer.from([line("a", "x"), line("b", "y", "gpt-4o")].join("\n")), "mixed.jsonl"),
            purpose: "batch"
          })
        )
      )
      const failed = Either.getOrThrow(
        yield* call(() =>
          c.batches.create({ input_file_id: mixed.id, endpoint: "/v1/chat/completions", completion_window: "24h" })
        )
      )
      yield* TestClock.adjust("5 seconds")
      const after = Either.getOrThrow(yield* call(() => c.batches.retrieve(failed.id)))
      expect(after.status).toBe("failed")
      expect(after.errors?.data?.[0].code).toBe("mismatched_model")

      const one = Either.getOrThrow(
        yield* call(async () =>
          c.files.create({ file: await toFile(Buffer.from(line("a", "x")), "one.jsonl"), purpose: "batch" })
        )
      )
      const batch = Either.getOrThrow(
        yield* call(() =>
          c.batches.create({ input_file_id: one.id, endpoint: "/v1/chat/completions", completion_window: "24h" })
        )
      )
      const cancelling = Either.getOrThrow(yield* call(() => c.batches.cancel(batch.id)))
      expect(cancelling.status).toBe("cancelling")
      yield* TestClock.adjust("1 second")
      expect(Either.getOrThrow(yield* call(() => c.batches.retrieve(batch.id))).status).toBe("cancelled")
    }).pipe(Effect.provide(Simulator.layer(Scenario.tier1()))))
})

describe("stats helpers", () => {
  it.effect("retriedAfter finds keys retried after a 400; succeededKeys; x-sim-request-key header", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const send = (key: string, content: string) =>
        sim.judge({
          method: "POST",
          path: "/v1/chat/completions",
          headers: { authorization: "Bearer sk", "x-sim-request-key": key },
          body: { model: "gpt-4o-mini", messages: [{ role: "user", content }] }
        })
      yield* send("a", "[sim:content-policy]")
      yield* send("a", "[sim:content-policy]")
      yield* send("b", "fine")
      const stats = yield* Simulator.stats
      const { SimStats } = yield* Effect.promise(() => import("../src/index.js"))
      expect(SimStats.retriedAfter(stats, (a) => a.status === 400)).toEqual(["a"])
      expect([...SimStats.succeededKeys(stats)]).toEqual(["b"])
      expect(stats.attemptsByKey).toEqual({ a: 2, b: 1 })
    }).pipe(Effect.provide(Simulator.layer(Scenario.tier1()))))
})
