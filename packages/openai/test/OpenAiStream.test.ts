/**
 * Streaming through the OpenAi service against the in-process simulator (real `openai` SDK,
 * TestClock): the final usage chunk settles the reservation; a stream interrupted or abandoned
 * half-way settles to what it used and releases the rest at once.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import type { OpenAi } from "@sluice/openai"
import { Scenario, Simulator } from "@sluice/testing"
import { Chunk, Clock, Deferred, Effect, Exit, Fiber, Stream } from "effect"
import type { ChatCompletionChunk } from "openai/resources/chat/completions"
import { drive, withService } from "./harness.js"

const MODEL = "gpt-4o"
const POOL = "org:acme/pool:gpt-4o"
/** The pool's token budget: 6,000 a minute, so a 4,000-token reservation is most of it. */
const CAPACITY = 6_000
const REFILL_PER_MS = CAPACITY / 60_000

/** The service over a simulator client, with its events recorded at their virtual times. */

const options: OpenAi.OpenAi.Options = {
  organization: "acme",
  budgets: [Budget.make(POOL, [Budget.Limit.perMinute("requests", 1_000), Budget.Limit.perMinute("tokens", CAPACITY)])]
}

/** 2,000 output tokens streamed as ~250 chunks of 8 words, 1 ms a token, after 100 ms. */
const sim = (overrides: Parameters<typeof Scenario.single>[2] = {}) =>
  Simulator.layer(Scenario.single(MODEL, { rpm: 1_000, tpm: CAPACITY }, {
    seed: 5,
    output: { fixedTokens: 2_000 },
    latency: { request: { _tag: "fixed", ms: 100 }, perOutputTokenMs: 1 },
    ...overrides
  }))

const params = (key: string) => ({
  model: MODEL,
  messages: [{ role: "user" as const, content: `[req:${key}] Tell me a long story.` }],
  max_tokens: 4_000
})

const tokensLevel = (openai: OpenAi.OpenAi.Service) =>
  Effect.map(
    openai.limiter.snapshot,
    (snapshot) => snapshot.levels.find((l) => l.scope === POOL && l.dimension === "tokens")!.level
  )

/** The output a consumer saw, in tokens (the simulator's words are 3 letters and a space: 4 chars a token). */
const outputSeen = (chunks: ReadonlyArray<ChatCompletionChunk>) =>
  chunks.reduce((total, chunk) => total + Math.ceil((chunk.choices[0]?.delta?.content ?? "").length / 4), 0)

describe("OpenAi: streams", () => {
  it.effect("a completed stream's final usage chunk settles it: charged = usage", () =>
    withService(options, (openai, events) =>
      Effect.gen(function*() {
        const { endedAt, exit } = yield* drive(Stream.runCollect(openai.chat.completions.stream(params("done"))))
        expect(Exit.isSuccess(exit)).toBe(true)
        if (!Exit.isSuccess(exit)) return
        const chunks = Chunk.toReadonlyArray(exit.value)
        const usage = chunks.at(-1)!.usage!
        expect(usage.completion_tokens).toBe(2_000)
        const admitted = events.find((e) => e._tag === "Admitted")!
        const succeeded = events.find((e) => e._tag === "Succeeded")!
        expect(admitted._tag === "Admitted" && admitted.cost.tokens).toBeGreaterThan(4_000)
        expect(succeeded._tag === "Succeeded" && succeeded.used.tokens).toBe(usage.total_tokens)
        // the bucket holds capacity − usage + the refill since admission: the estimate is gone
        const level = yield* tokensLevel(openai)
        const expected = CAPACITY - usage.total_tokens + REFILL_PER_MS * (endedAt - admitted.at)
        console.log(
          `completed stream: reserved ${
            admitted._tag === "Admitted" && admitted.cost.tokens
          }, usage ${usage.total_tokens}, ` +
            `level ${level.toFixed(1)} (expected ${expected.toFixed(1)}) after ${Math.round(endedAt - admitted.at)} ms`
        )
        expect(expected).toBeLessThan(CAPACITY) // not hidden by a full bucket
        expect(level).toBeCloseTo(expected, 6)
        const snapshot = yield* openai.limiter.snapshot
        expect(snapshot.waiting).toEqual({ interactive: 0, background: 0 })
      })).pipe(Effect.provide(sim())))

  it.effect("a stream interrupted half-way settles to what it used and releases the rest at once", () =>
    withService(options, (openai, events) =>
      Effect.gen(function*() {
        const seen: Array<ChatCompletionChunk> = []
        const half = yield* Deferred.make<void>()
        const consumer = yield* Effect.fork(
          Stream.runForEach(openai.chat.completions.stream(params("cut")), (chunk) =>
            Effect.sync(() => {
              seen.push(chunk)
              if (seen.length === 125) Deferred.unsafeDone(half, Exit.void)
            }))
        )
        yield* drive(Deferred.await(half))
        yield* Fiber.interrupt(consumer)
        const cutAt = yield* Clock.currentTimeMillis
        const admitted = events.find((e) => e._tag === "Admitted")!
        const estimate = admitted._tag === "Admitted" ? admitted.cost.tokens : 0
        const level = yield* tokensLevel(openai)
        const prompt = estimate - 4_000
        const used = prompt + outputSeen(seen)
        const expected = CAPACITY - used + REFILL_PER_MS * (cutAt - admitted.at)
        const leaked = CAPACITY - estimate + REFILL_PER_MS * (cutAt - admitted.at)
        console.log(
          `interrupted stream: ${seen.length} chunks (${outputSeen(seen)} tokens) seen, reserved ${estimate}, ` +
            `level ${level.toFixed(1)} (expected ${expected.toFixed(1)}; a leak would leave ${leaked.toFixed(1)})`
        )
        expect(seen.length).toBe(125)
        // within one chunk (8 tokens) of the output seen: the service may have read one chunk ahead
        expect(level).toBeLessThanOrEqual(expected + 1e-6)
        expect(level).toBeGreaterThanOrEqual(expected - 9)
        expect(expected).toBeLessThan(CAPACITY)
        // nothing is left held: the next 4,000-token stream is admitted at once
        const next = yield* drive(Stream.runDrain(openai.chat.completions.stream(params("next"))))
        expect(Exit.isSuccess(next.exit)).toBe(true)
        const second = events.filter((e) => e._tag === "Admitted")[1]
        expect(second._tag === "Admitted" && second.waitedMillis).toBe(0)
        expect(second.at).toBe(cutAt)
        const stats = yield* Simulator.stats
        expect(stats.attemptsByKey).toEqual({ cut: 1, next: 1 })
      })).pipe(Effect.provide(sim())))

  it.effect("a consumer that stops early (take) settles the same way", () =>
    withService(options, (openai, events) =>
      Effect.gen(function*() {
        const { endedAt, exit } = yield* drive(
          Stream.runCollect(Stream.take(openai.chat.completions.stream(params("take")), 60))
        )
        expect(Exit.isSuccess(exit)).toBe(true)
        if (!Exit.isSuccess(exit)) return
        const seen = Chunk.toReadonlyArray(exit.value)
        const admitted = events.find((e) => e._tag === "Admitted")!
        const estimate = admitted._tag === "Admitted" ? admitted.cost.tokens : 0
        const expected = CAPACITY - (estimate - 4_000 + outputSeen(seen)) + REFILL_PER_MS * (endedAt - admitted.at)
        const level = yield* tokensLevel(openai)
        console.log(`stream taken early: 60 chunks, level ${level.toFixed(1)} (expected ${expected.toFixed(1)})`)
        expect(level).toBeLessThanOrEqual(expected + 1e-6)
        expect(level).toBeGreaterThanOrEqual(expected - 9)
      })).pipe(Effect.provide(sim())))

  it.effect("a stream that fails half-way (in-stream server error) settles to what it used and reports the failure", () =>
    withService(options, (openai, events) =>
      Effect.gen(function*() {
        const seen: Array<ChatCompletionChunk> = []
        const { endedAt, exit } = yield* drive(
          Stream.runForEach(openai.chat.completions.stream(params("broken")), (chunk) =>
            Effect.sync(() => seen.push(chunk)))
        )
        expect(Exit.isFailure(exit)).toBe(true)
        const failed = events.find((e) =>
          e._tag === "Failed"
        )
        expect(failed?._tag === "Failed" && failed.error._tag).toBe("ServerError")
        const admitted = events.find((e) => e._tag === "Admitted")!
        const estimate = admitted._tag === "Admitted" ? admitted.cost.tokens : 0
        const expected = CAPACITY - (estimate - 4_000 + outputSeen(seen)) + REFILL_PER_MS * (endedAt - admitted.at)
        const level = yield* tokensLevel(openai)
        console.log(
          `stream failed half-way: ${seen.length} chunks, level ${level.toFixed(1)} (expected ${expected.toFixed(1)})`
        )
        expect(seen.length).toBeGreaterThan(50)
        expect(level).toBeLessThanOrEqual(expected + 1e-6)
        expect(level).toBeGreaterThanOrEqual(expected - 9)
      })).pipe(Effect.provide(sim({ faults: { rates: { stream_error: 1 } } }))))
})
