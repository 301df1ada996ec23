// The testing README's second example, run as a test so it stays true (packages/testing/test/Readme.test.ts).
import { expect, it } from "@effect/vitest"
import { wrapOpenAI, type WrappedOpenAI } from "@sluice/openai"
import { Scenario, SimFetch, SimStats, Simulator, VirtualTime } from "@sluice/testing"
import { Effect } from "effect"
import OpenAI from "openai"

// your application: plain Promise code on a wrapped client
const summarise = (openai: WrappedOpenAI, docs: ReadonlyArray<string>) =>
  Promise.all(docs.map((doc) =>
    openai.chat.completions.create({
      model: "gpt-4o",
      messages: [{ role: "user", content: `Summarise: ${doc}` }],
      max_tokens: 200
    })
  ))

const scenario = Scenario.tier1({ seed: 7, latency: { request: { _tag: "uniform", min: 300, max: 900 } } })

it.effect("the Promise app: no 429, each request sent once, near the minimum", () =>
  Effect.gen(function*() {
    const fetch = yield* SimFetch.make
    const client = new OpenAI({ apiKey: "sk-test", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
    const openai = wrapOpenAI(client, { tier: 1, runtime: yield* Effect.runtime<never>() }) // TestClock drives it
    const docs = Array.from({ length: 100 }, (_, i) => `[req:${i}] ${"The quarter's figures. ".repeat(250)}`)
    const summaries = yield* VirtualTime.runPromise(() => summarise(openai, docs))
    const stats = yield* Simulator.stats
    expect(summaries).toHaveLength(100)
    expect(stats.byStatus).toEqual({ "200": 100 }) // not one 429
    expect(Object.values(stats.attemptsByKey)).toEqual(Array(100).fill(1)) // each request sent once
    const minimum = SimStats.theoreticalMinimum(stats, scenario) // the least time Tier 1's limits allow
    expect(minimum).toBeGreaterThan(60_000)
    expect(yield* Simulator.elapsed).toBeLessThan(1.05 * minimum)
  }).pipe(Effect.provide(Simulator.layer(scenario))))
