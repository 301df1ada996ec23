/**
 * Virtual time end to end: an application's run through `OpenAi` (default options: time slicing on) and
 * through `wrapOpenAI` is the same on every run, and `VirtualTime.run` drives it to the end in one call.
 */
import { describe, expect, it } from "@effect/vitest"
import { LimiterStore } from "@sluice/core"
import { OpenAi, wrapOpenAI } from "@sluice/openai"
import { CallStats, Scenario, SimFetch, SimStats, Simulator, VirtualTime } from "@sluice/testing"
import { Clock, Effect, Fiber, Layer, Random, TestClock, TestContext } from "effect"
import OpenAI from "openai"

const document = (i: number) => `[req:${i}] ${"a long report on the quarterly figures. ".repeat(40 + (i * 37) % 160)}`

/** The application: summarise every document through the OpenAi service, all at once. */
const summarise = (docs: ReadonlyArray<string>) =>
  Effect.flatMap(OpenAi.OpenAi, (openai) =>
    Effect.forEach(docs, (content) =>
      openai.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: `Summarise: ${content}` }],
        max_tokens: 150
      }), { concurrency: "unbounded" }))

const scenario = Scenario.single("gpt-4o-mini", { rpm: 500, tpm: 12_000 }, {
  seed: 5,
  latency: { request: { _tag: "uniform", min: 300, max: 1_500 }, perOutputTokenMs: 4 },
  faults: { rates: { overloaded: 0.08, server_error: 0.04 } }
})

/**
 * One run in a fresh TestContext (the clock at 0): what the server saw and what the client counted. Driven by
 * `VirtualTime.run`, or as a test without it would: one `TestClock.adjust` (then small steps until done).
 */
const runOnce = (driver: "VirtualTime.run" | "TestClock.adjust", options: OpenAi.OpenAi.Options = {}) =>
  Effect.gen(function*() {
    const stats = yield* CallStats.make
    const fetch = yield* SimFetch.make
    const client = new OpenAI({ apiKey: "sk-test", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
    const layer = OpenAi.layerClient(client, { ...options, onEvent: stats.onEvent }).pipe(
      Layer.provide(LimiterStore.layerMemory)
    )
    let endedAt = -1
    const app = Effect.provide(summarise(Array.from({ length: 20 }, (_, i) => document(i))), layer).pipe(
      Effect.tap(() => Effect.map(Clock.currentTimeMillis, (now) => (endedAt = now)))
    )
    const done = driver === "VirtualTime.run" ? yield* VirtualTime.run(app) : yield* Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.withRandom(app, Random.make("sluice")))
      yield* TestClock.adjust("30 minutes")
      while (fiber.unsafePoll() === null) yield* TestClock.adjust("1 minute")
      return yield* Fiber.join(fiber)
    })
    const sim = yield* Simulator.stats
    return {
      done: done.length,
      endedAt,
      attempts: sim.attempts.map((a) => `${a.at} ${a.key} ${a.status} ${a.code ?? ""}`),
      admissions: sim.admissions.map((a) => `${a.at} ${a.requests} ${a.tokens}`),
      client: yield* stats.snapshot
    }
  }).pipe(Effect.provide(Simulator.layer(scenario)), Effect.provide(TestContext.TestContext))

describe("virtual time", () => {
  it.effect("the same 20-document app gives the same run 20 times over, with the default options", () =>
    Effect.gen(function*() {
      const first = yield* runOnce("VirtualTime.run")
      expect(first.done).toBe(20)
      // the run is limit-bound and had failures to retry (whose jitter is seeded)
      expect(first.endedAt).toBeGreaterThan(30_000)
      expect(first.client.retries.total).toBeGreaterThan(0)
      expect(first.client.rateLimited.total).toBe(0)
      for (let i = 1; i < 20; i++) {
        const again = yield* runOnce("VirtualTime.run")
        expect(again.attempts).toEqual(first.attempts)
        expect(again.admissions).toEqual(first.admissions)
        expect(again.endedAt).toBe(first.endedAt)
        expect(again.client).toEqual(first.client)
      }
    }))

  it.effect("time slicing waits on nothing real under TestClock: one adjust gives the same run every time", () =>
    Effect.gen(function*() {
      // a slice of 0 ms is what a loaded machine makes of the default 4 ms: every call would wait for the host's
      // event loop, racing TestClock's own timers (before the fix, runs ended 61,432.8, 61,434.8, 61,436.8 … ms)
      const first = yield* runOnce("TestClock.adjust", { timeSlice: "0 millis" })
      expect(first.done).toBe(20)
      const reference = yield* runOnce("VirtualTime.run")
      expect(first.endedAt).toBe(reference.endedAt)
      for (let i = 1; i < 8; i++) {
        const again = yield* runOnce("TestClock.adjust", { timeSlice: "0 millis" })
        expect(again.admissions).toEqual(first.admissions)
        expect(again.endedAt).toBe(first.endedAt)
      }
    }))

  it.effect("drives a wrapOpenAI app of 100 calls, whose admissions are scheduled after every advance, to the end", () =>
    Effect.gen(function*() {
      const fetch = yield* SimFetch.make
      const client = new OpenAI({ apiKey: "sk-test", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
      const openai = wrapOpenAI(client, { tier: 1, runtime: yield* Effect.runtime<never>() })
      // plain promise code: 100 documents at once, at Tier 1's 30,000 tokens a minute for gpt-4o
      const app = () =>
        Promise.all(Array.from({ length: 100 }, (_, i) =>
          openai.chat.completions.create({
            model: "gpt-4o",
            messages: [{ role: "user", content: document(i) }],
            max_tokens: 200
          })))
      const completions = yield* VirtualTime.runPromise(app)
      expect(completions).toHaveLength(100)
      const sim = yield* Simulator.stats
      expect(sim.byStatus).toEqual({ "200": 100 })
      expect(Object.values(sim.attemptsByKey)).toEqual(Array(100).fill(1))
      const minimum = SimStats.theoreticalMinimum(sim, Scenario.tier1())
      expect(minimum).toBeGreaterThan(3 * 60_000)
      const elapsed = yield* Simulator.elapsed
      expect(elapsed).toBeGreaterThan(minimum)
      expect(elapsed).toBeLessThan(minimum * 1.05)
      yield* Effect.promise(() => openai.close())
    }).pipe(
      Effect.provide(Simulator.layer(Scenario.tier1({
        seed: 3,
        latency: { request: { _tag: "uniform", min: 200, max: 800 }, perOutputTokenMs: 2 }
      })))
    ))
})
