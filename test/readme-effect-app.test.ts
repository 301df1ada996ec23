// The testing README's first example, run as a test so it stays true (packages/testing/test/Readme.test.ts).
import { expect, it } from "@effect/vitest"
import { LimiterStore } from "@sluice/core"
import { OpenAi } from "@sluice/openai"
import { Scenario, SimFetch, SimStats, Simulator, VirtualTime } from "@sluice/testing"
import { Effect, Layer } from "effect"
import OpenAI from "openai"

// your application: an Effect program on the OpenAi service
const summarise = (docs: ReadonlyArray<string>) =>
  Effect.flatMap(OpenAi.OpenAi, (openai) =>
    Effect.forEach(docs, (doc) =>
      openai.chat.completions.create({
        model: "gpt-4o",
        messages: [{ role: "user", content: `Summarise: ${doc}` }],
        max_tokens: 200
      }), { concurrency: "unbounded" }))

const scenario = Scenario.tier1({ seed: 7, latency: { request: { _tag: "uniform", min: 300, max: 900 } } })
const client = (fetch: SimFetch.Fetch) =>
  new OpenAI({ apiKey: "sk-test", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
// the service on the simulator's fetch, with Tier 1's limits
const OpenAiOnSim = Layer.unwrapEffect(Effect.map(SimFetch.make, (f) => OpenAi.layerClient(client(f), { tier: 1 })))
  .pipe(Layer.provide(LimiterStore.layerMemory))

it.effect("summarises 100 documents at Tier 1's limits: no 429, each sent once, near the minimum", () =>
  Effect.gen(function*() {
    const docs = Array.from({ length: 100 }, (_, i) => `[req:${i}] ${"The quarter's figures. ".repeat(250)}`)
    const summaries = yield* VirtualTime.run(Effect.provide(summarise(docs), OpenAiOnSim)) // drives TestClock
    const stats = yield* Simulator.stats
    expect(summaries).toHaveLength(100)
    expect(stats.byStatus).toEqual({ "200": 100 }) // not one 429
    expect(Object.values(stats.attemptsByKey)).toEqual(Array(100).fill(1)) // each request sent once
    const minimum = SimStats.theoreticalMinimum(stats, scenario) // the least time Tier 1's limits allow
    expect(minimum).toBeGreaterThan(60_000)
    expect(yield* Simulator.elapsed).toBeLessThan(1.05 * minimum)
  }).pipe(Effect.provide(Simulator.layer(scenario))))
