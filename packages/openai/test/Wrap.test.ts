/**
 * `wrapOpenAI` from plain async (Promise) code, against the in-process simulator (real `openai` SDK):
 * the same budgets and zero 429s as the Effect service, typed errors rejected as `Error`s with a
 * `_tag`, streaming as an async iterable, and `close()`. The wrapper runs on the test's runtime, so
 * TestClock drives every wait.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import { wrapOpenAI } from "@sluice/openai"
import { Scenario, SimFetch, Simulator } from "@sluice/testing"
import { Clock, Effect, Exit } from "effect"
import OpenAIClient from "openai"
import type { ChatCompletionChunk } from "openai/resources/chat/completions"
import { drive, mixedBatch, theoreticalMinimum } from "./harness.js"

const MODEL = "gpt-4o"
const POOL = "org:acme/pool:gpt-4o"

/** A wrapped simulator client on the test's runtime (so the TestClock drives its waits). */
const wrapped = (options: Parameters<typeof wrapOpenAI>[1] = {}) =>
  Effect.gen(function*() {
    const fetch = yield* SimFetch.make
    const runtime = yield* Effect.runtime<never>()
    const client = new OpenAIClient({ apiKey: "sk-test", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
    return wrapOpenAI(client, { organization: "acme", ...options, runtime })
  })

const sim = (overrides: Parameters<typeof Scenario.tier1>[0] = {}) =>
  Simulator.layer(Scenario.tier1({
    seed: 21,
    latency: { request: { _tag: "uniform", min: 200, max: 800 }, perOutputTokenMs: 1 },
    ...overrides
  }))

/** What a rejected promise rejected with. */
const rejection = async (promise: Promise<unknown>): Promise<any> => {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error("expected a rejection")
}

describe("wrapOpenAI from plain async code", () => {
  it.effect("200 mixed calls with Promise.all: zero 429s, each key once, ≤ 1.10× the minimum", () =>
    Effect.gen(function*() {
      const openai = yield* wrapped({ tier: 1 })
      const batch = mixedBatch(200, 99)
      // the application: plain promise code
      const app = () => Promise.all(batch.map((params) => openai.chat.completions.create(params)))
      const { endedAt, exit } = yield* drive(Effect.promise(app))
      expect(Exit.isSuccess(exit)).toBe(true)
      if (Exit.isSuccess(exit)) expect(exit.value.every((c) => c.object === "chat.completion")).toBe(true)
      const stats = yield* Simulator.stats
      const minimum = theoreticalMinimum(stats, { rpm: 500, tpm: 30_000 })
      console.log(
        `wrapOpenAI: 200 calls, wall ${Math.round(endedAt)} ms, minimum ${Math.round(minimum)} ms, ` +
          `ratio ${(endedAt / minimum).toFixed(4)}, 429s ${stats.byStatus["429"] ?? 0}`
      )
      expect(stats.byStatus).toEqual({ "200": 200 })
      expect(Object.values(stats.attemptsByKey).every((n) => n === 1)).toBe(true)
      expect(Object.keys(stats.attemptsByKey)).toHaveLength(200)
      expect(minimum).toBeGreaterThan(30_000)
      expect(endedAt / minimum).toBeLessThanOrEqual(1.1)
      yield* Effect.promise(() => openai.close())
    }).pipe(Effect.provide(sim())))

  it.effect("failures reject with the typed errors themselves: Errors with a _tag", () =>
    Effect.gen(function*() {
      const openai = yield* wrapped({
        budgets: [Budget.make(POOL, [Budget.Limit.perMinute("requests", 500), Budget.Limit.perMinute("tokens", 6_000)])]
      })
      const app = async () => {
        const policy = await rejection(openai.chat.completions.create({
          model: MODEL,
          messages: [{ role: "user", content: "[req:bad] please [sim:content-policy] this" }],
          max_tokens: 20
        }))
        const tooLarge = await rejection(openai.chat.completions.create({
          model: MODEL,
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 10_000
        }))
        const unknown = await rejection(openai.chat.completions.create({
          model: "gpt-nonexistent",
          messages: [{ role: "user", content: "[req:nf] hi" }]
        }))
        // fill the bucket, then ask for more than 5 seconds' wait allows
        await openai.chat.completions.create({
          model: MODEL,
          messages: [{ role: "user", content: "[req:big] hi" }],
          max_tokens: 5_000
        })
        const late = await rejection(openai.chat.completions.create(
          { model: MODEL, messages: [{ role: "user", content: "[req:late] hi" }], max_tokens: 5_000 },
          { maxWait: "5 seconds" }
        ))
        return { policy, tooLarge, unknown, late }
      }
      const { exit } = yield* drive(Effect.promise(app))
      expect(Exit.isSuccess(exit)).toBe(true)
      if (!Exit.isSuccess(exit)) return
      const { late, policy, tooLarge, unknown } = exit.value
      for (const error of [policy, tooLarge, unknown, late]) expect(error).toBeInstanceOf(Error)
      expect(policy._tag).toBe("ContentPolicy")
      expect(policy.status).toBe(400)
      expect(tooLarge._tag).toBe("CostExceedsCapacity")
      expect(unknown._tag).toBe("NotFound")
      expect(late._tag).toBe("DeadlineExceeded")
      expect(late.estimatedWaitMillis).toBeGreaterThan(5_000)
      const stats = yield* Simulator.stats
      // never retried, and the two the limiter refused were never sent
      expect(stats.attemptsByKey).toEqual({ bad: 1, nf: 1, big: 1 })
      yield* Effect.promise(() => openai.close())
    }).pipe(Effect.provide(sim({ output: { fraction: 1 } }))))

  it.effect("streaming with stream: true is an async iterable; usage settles it, break releases it", () =>
    Effect.gen(function*() {
      const openai = yield* wrapped({
        budgets: [Budget.make(POOL, [Budget.Limit.perMinute("requests", 500), Budget.Limit.perMinute("tokens", 6_000)])]
      })
      const tokensLevel = async () => {
        const snapshot = await openai.snapshot()
        return snapshot.levels.find((l) => l.scope === POOL && l.dimension === "tokens")!.level
      }
      const app = async () => {
        const full: Array<ChatCompletionChunk> = []
        const stream = await openai.chat.completions.create({
          model: MODEL,
          messages: [{ role: "user", content: "[req:full] a story" }],
          max_tokens: 4_000,
          stream: true
        })
        for await (const chunk of stream) full.push(chunk)
        const afterFull = await tokensLevel()
        const partial: Array<ChatCompletionChunk> = []
        const second = await openai.chat.completions.create({
          model: MODEL,
          messages: [{ role: "user", content: "[req:partial] a story" }],
          max_tokens: 4_000,
          stream: true
        })
        for await (const chunk of second) {
          partial.push(chunk)
          if (partial.length === 10) break
        }
        const afterBreak = await tokensLevel()
        return { full, partial, afterFull, afterBreak }
      }
      const start = yield* Clock.currentTimeMillis
      const { endedAt, exit } = yield* drive(Effect.promise(app))
      expect(Exit.isSuccess(exit)).toBe(true)
      if (!Exit.isSuccess(exit)) return
      const { afterBreak, afterFull, full, partial } = exit.value
      const usage = full.at(-1)!.usage!
      console.log(
        `wrapOpenAI stream: ${full.length} chunks, usage ${usage.total_tokens}; level after it ${
          afterFull.toFixed(1)
        }, ` +
          `after a stream left at 10 chunks ${afterBreak.toFixed(1)} (in ${Math.round(endedAt - start)} ms)`
      )
      expect(full.length).toBeGreaterThan(100)
      expect(full.map((c) => c.choices[0]?.delta?.content ?? "").join("").length).toBeGreaterThan(4 * 1_000)
      expect(usage.completion_tokens).toBe(2_000)
      expect(partial).toHaveLength(10)
      // the full stream was charged its usage, not its 4,000-token reservation
      expect(afterFull).toBeGreaterThan(6_000 - usage.total_tokens)
      expect(afterFull).toBeLessThan(6_000 - usage.total_tokens + 0.1 * (endedAt - start))
      // the stream left early holds only what it used: well above what a held reservation would leave
      expect(afterBreak).toBeGreaterThan(afterFull - 200)
      const stats = yield* Simulator.stats
      expect(stats.attemptsByKey).toEqual({ full: 1, partial: 1 })
      yield* Effect.promise(() => openai.close())
    }).pipe(Effect.provide(sim({
      output: { fixedTokens: 2_000 },
      latency: { request: { _tag: "fixed", ms: 100 }, perOutputTokenMs: 1 }
    }))))

  it.effect("the other endpoints, and close(): later calls reject with ClientClosed", () =>
    Effect.gen(function*() {
      const openai = yield* wrapped({ tier: 1 })
      const app = async () => {
        const response = await openai.responses.create({ model: MODEL, input: "[req:r] hello", max_output_tokens: 50 })
        const embedding = await openai.embeddings.create({ model: "text-embedding-3-small", input: ["[req:e] a", "b"] })
        const image = await openai.images.generate({ model: "gpt-image-2", prompt: "[req:i] a cat", n: 1 })
        await openai.close()
        await openai.close() // idempotent
        const closed = await rejection(
          openai.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "[req:c] hi" }] })
        )
        return { response, embedding, image, closed }
      }
      const { exit } = yield* drive(Effect.promise(app))
      expect(Exit.isSuccess(exit)).toBe(true)
      if (!Exit.isSuccess(exit)) return
      const { closed, embedding, image, response } = exit.value
      expect(response.status).toBe("completed")
      expect(embedding.data).toHaveLength(2)
      expect(image.data).toHaveLength(1)
      expect(closed).toBeInstanceOf(Error)
      expect(closed._tag).toBe("ClientClosed")
      const stats = yield* Simulator.stats
      expect(stats.attemptsByKey).toEqual({ r: 1, e: 1, i: 1 })
    }).pipe(Effect.provide(sim())))
})
