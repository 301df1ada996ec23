// The README's example, run as a test so it stays true.
import { expect, it } from "@effect/vitest"
import { Scenario, SimFetch, Simulator } from "@sluice/testing"
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

it.effect("summarises every document once, within the limits", () =>
  Effect.gen(function*() {
    const fetch = yield* SimFetch.make // captures this test's runtime: its TestClock drives all latency
    const client = new OpenAI({ apiKey: "sk-test", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
    const fiber = yield* Effect.fork(Effect.promise(() => summarise(client, ["[req:1] a", "[req:2] b"])))
    yield* TestClock.adjust("10 seconds")
    expect(yield* Fiber.join(fiber)).toHaveLength(2)
    const stats = yield* Simulator.stats
    expect(stats.attemptsByKey).toEqual({ "1": 1, "2": 1 })
    expect(stats.byStatus).toEqual({ "200": 2 })
  }).pipe(Effect.provide(Simulator.layer(Scenario.tier1({
    seed: 7,
    latency: { request: { _tag: "uniform", min: 300, max: 900 }, perOutputTokenMs: 10 }
  })))))
