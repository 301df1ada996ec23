// The README's example, run as a test so it stays true.
import { expect, it } from "@effect/vitest"
import { Scenario, SimFetch, SimStats, Simulator } from "@sluice/testing"
import { Effect, Fiber, TestClock } from "effect"
import OpenAI from "openai"

// the application under test: plain promise code, unchanged
const summarise = (client: OpenAI, docs: Array<string>) =>
  Promise.all(
    docs.map((doc) =>
      client.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: doc }],
        max_tokens: 100
      })
    )
  )

const scenario = Scenario.tier1({
  seed: 7,
  latency: { request: { _tag: "uniform", min: 300, max: 900 }, perOutputTokenMs: 10 }
})

it.effect("summarises every document once, within the limits", () =>
  Effect.gen(function*() {
    const fetch = yield* SimFetch.make // captures this test's runtime: its TestClock drives all latency
    const client = new OpenAI({ apiKey: "sk-test", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
    const docs = Array.from({ length: 40 }, (_, i) => `[req:${i}] ${"lorem ipsum ".repeat(1500)}`)
    const fiber = yield* Effect.fork(Effect.promise(() => summarise(client, docs)))
    yield* TestClock.adjust("10 seconds")
    expect(yield* Fiber.join(fiber)).toHaveLength(40)
    const stats = yield* Simulator.stats
    expect(Object.values(stats.attemptsByKey)).toEqual(Array(40).fill(1)) // each document once, no retries
    expect(stats.byStatus).toEqual({ "200": 40 }) // no 429s
    // and never above gpt-4o-mini's limits in any rolling minute
    const { rpm = Infinity, tpm = Infinity } = scenario.models["gpt-4o-mini"].limits
    expect(SimStats.peak(stats, { dimension: "requests", windowMs: 60_000 })).toBeLessThanOrEqual(rpm)
    expect(SimStats.peak(stats, { dimension: "tokens", windowMs: 60_000 })).toBeLessThanOrEqual(tpm)
  }).pipe(Effect.provide(Simulator.layer(scenario))))
