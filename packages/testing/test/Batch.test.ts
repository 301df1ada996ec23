import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as TestClock from "effect/TestClock"
import type OpenAI from "openai"
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

describe("Batch API: queue limit, expiry, cancel", () => {
  const upload = (c: OpenAI, lines: ReadonlyArray<string>) =>
    call(async () =>
      c.files.create({ file: await toFile(Buffer.from(lines.join("\n")), "in.jsonl"), purpose: "batch" })
    )
      .pipe(Effect.map(Either.getOrThrow))
  const create = (c: OpenAI, fileId: string) =>
    call(() => c.batches.create({ input_file_id: fileId, endpoint: "/v1/chat/completions", completion_window: "24h" }))
      .pipe(Effect.map(Either.getOrThrow))
  const retrieve = (c: OpenAI, id: string) => call(() => c.batches.retrieve(id)).pipe(Effect.map(Either.getOrThrow))
  const content = (c: OpenAI, id: string | null | undefined) =>
    call(() => c.files.content(id!).then((r) => r.text())).pipe(
      Effect.map((e) => Either.getOrThrow(e).trim().split("\n").map((l) => JSON.parse(l)))
    )
  const withQueue = (queue: number, batch: Record<string, number> = {}) => {
    const base = Scenario.tier1()
    return Simulator.layer({
      ...base,
      models: { ...base.models, "gpt-4o-mini": { ...base.models["gpt-4o-mini"], batchQueueTokens: queue } },
      batch: { ...base.batch, ...batch }
    })
  }

  it.effect("a batch over the model's enqueued-token limit fails with token_limit_exceeded; room comes back when one ends", () =>
    Effect.gen(function*() {
      const c = yield* client()
      // 4 lines of "x" (1 token) and max_tokens 10: 44 tokens a file
      const a = yield* upload(c, ["a1", "a2", "a3", "a4"].map((id) => line(id, "x")))
      const b = yield* upload(c, ["b1", "b2", "b3", "b4"].map((id) => line(id, "x")))
      const first = yield* create(c, a.id)
      const refused = yield* create(c, b.id)
      yield* TestClock.adjust("5 seconds")
      expect((yield* retrieve(c, first.id)).status).toBe("in_progress")
      const failed = yield* retrieve(c, refused.id)
      expect(failed.status).toBe("failed")
      expect(failed.errors?.data?.[0].code).toBe("token_limit_exceeded")
      expect(failed.errors?.data?.[0].message).toMatch(
        /^Enqueued token limit reached for gpt-4o-mini in organization org-sim\. Limit: 60 enqueued tokens\./
      )
      yield* TestClock.adjust("2 minutes")
      expect((yield* retrieve(c, first.id)).status).toBe("completed")
      const again = yield* create(c, b.id)
      yield* TestClock.adjust("5 seconds")
      expect((yield* retrieve(c, again.id)).status).toBe("in_progress")
    }).pipe(Effect.provide(withQueue(60))))

  it.effect("expired after 24 h: finished requests in the output, the others batch_expired; cancel keeps partial results", () =>
    Effect.gen(function*() {
      const c = yield* client()
      // one request an hour (after 5 s validating): 23 of 30 done when the window closes
      const file = yield* upload(c, Array.from({ length: 30 }, (_, i) => line(`r${i}`, "x")))
      const batch = yield* create(c, file.id)
      yield* TestClock.adjust("24 hours")
      const expired = yield* retrieve(c, batch.id)
      expect(expired.status).toBe("expired")
      expect(expired.expired_at).toBe(86_400)
      expect(expired.request_counts).toEqual({ total: 30, completed: 23, failed: 7 })
      expect((yield* content(c, expired.output_file_id)).length).toBe(23)
      const errors = yield* content(c, expired.error_file_id)
      expect(errors.map((e) => e.error.code)).toEqual(Array(7).fill("batch_expired"))
      expect(errors.map((e) => e.custom_id)).toEqual(Array.from({ length: 7 }, (_, i) => `r${23 + i}`))

      const other = yield* create(c, file.id)
      yield* TestClock.adjust("150 minutes") // 2 requests done
      yield* call(() => c.batches.cancel(other.id))
      yield* TestClock.adjust("1 second")
      const cancelled = yield* retrieve(c, other.id)
      expect(cancelled.status).toBe("cancelled")
      expect(cancelled.request_counts).toEqual({ total: 30, completed: 2, failed: 0 })
      expect((yield* content(c, cancelled.output_file_id)).map((l) => l.custom_id).sort()).toEqual(["r0", "r1"])
    }).pipe(Effect.provide(withQueue(1_000_000, { inProgressMs: 0, perRequestMs: 3_600_000 }))))
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
