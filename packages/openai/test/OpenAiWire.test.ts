/**
 * An SDK call is marked sent when its request goes on the wire (inside the `fetch` the SDK calls), not when the
 * SDK is called: the SDK may take a while before its `fetch` (an `apiKey` function or a token provider is awaited
 * per request), and the limiter reads the server's reports by the order calls were marked sent. Real `openai`
 * SDK against the in-process simulator, under `TestClock`.
 */
import { describe, expect, it } from "@effect/vitest"
import { LimiterStore } from "@sluice/core"
import { OpenAi } from "@sluice/openai"
import { Scenario, SimFetch, SimStats, Simulator, VirtualTime } from "@sluice/testing"
import { Effect, Layer, Logger, LogLevel, Runtime } from "effect"
import OpenAIClient from "openai"
import { API_KEY, filler } from "./harness.js"

const MODEL = "gpt-4o"

const tier1 = Simulator.layer(Scenario.tier1({
  seed: 5,
  latency: { request: { _tag: "uniform", min: 200, max: 800 }, perOutputTokenMs: 1 }
}))

const params = (key: string, i: number) => ({
  model: MODEL,
  messages: [{ role: "user" as const, content: `[req:${key}] ${filler(80 + ((i * 7919) % 1_920))}` }],
  max_tokens: 200
})

describe("OpenAi: marked sent on the wire", () => {
  it.effect(
    "a token provider taking up to 300 ms before each request: zero 429s at Tier 1's limits",
    () =>
      Effect.gen(function*() {
        const runtime = yield* Effect.runtime<never>()
        const fetch = yield* SimFetch.make
        let tokens = 0
        const client = new OpenAIClient({
          apiKey: () => Runtime.runPromise(runtime, Effect.as(Effect.sleep(1 + (tokens++ * 7919) % 300), API_KEY)),
          baseURL: "http://sim.local/v1",
          fetch,
          maxRetries: 0
        })
        const started = yield* Simulator.elapsed
        yield* VirtualTime.run(
          Effect.flatMap(OpenAi.OpenAi, (openai) =>
            Effect.forEach(
              Array.from({ length: 200 }, (_, i) => params(`w${i}`, i)),
              (body) => openai.chat.completions.create(body),
              { concurrency: "unbounded" }
            )).pipe(
              Effect.provide(
                OpenAi.layerClient(client, { organization: "acme", tier: 1 }).pipe(
                  Layer.provide(LimiterStore.layerMemory)
                )
              )
            )
        )
        const wall = (yield* Simulator.elapsed) - started
        const stats = yield* Simulator.stats
        const minimum = SimStats.theoreticalMinimum(stats, { rpm: 500, tpm: 30_000 })
        console.log(
          `wire: 200 calls behind a slow token provider, wall ${Math.round(wall)} ms, minimum ${
            Math.round(minimum)
          } ms, by status ${JSON.stringify(stats.byStatus)}`
        )
        // marked before the SDK was called, reports of calls sent later counted calls still waiting for their key
        expect(stats.byStatus).toEqual({ "200": 200 })
        expect(wall / minimum).toBeLessThanOrEqual(1.03)
      }).pipe(Effect.provide(tier1)),
    300_000
  )

  it.effect("the client's fetch is wrapped once, passes every request through once, and passes no hook on", () =>
    Effect.gen(function*() {
      const simFetch = yield* SimFetch.make
      const seen: Array<{ readonly url: string; readonly keys: ReadonlyArray<PropertyKey> }> = []
      const fetch: typeof globalThis.fetch = (input, init) => {
        seen.push({ url: String(input), keys: Reflect.ownKeys(init ?? {}) })
        return simFetch(input as string, init)
      }
      const client = new OpenAIClient({ apiKey: API_KEY, baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
      const service = (organization: string) =>
        OpenAi.layerClient(client, { organization, tier: 1 }).pipe(Layer.provide(LimiterStore.layerMemory))
      yield* VirtualTime.run(Effect.gen(function*() {
        // two services on one client: its fetch wrapped once
        const first = yield* Effect.provide(OpenAi.OpenAi, service("a"))
        const second = yield* Effect.provide(OpenAi.OpenAi, service("b"))
        yield* first.chat.completions.create(params("one", 1))
        yield* second.chat.completions.create(params("two", 2))
        yield* Effect.promise(() => client.chat.completions.create(params("direct", 3)))
      }))
      const stats = yield* Simulator.stats
      expect(stats.attemptsByKey).toEqual({ one: 1, two: 1, direct: 1 })
      expect(seen).toHaveLength(3)
      for (const { keys } of seen) expect(keys.every((key) => typeof key === "string")).toBe(true)
    }).pipe(Effect.provide(tier1)))

  it.effect("a client that sends through another fetch: marked before the SDK call from then on, warned once", () =>
    Effect.gen(function*() {
      const simFetch = yield* SimFetch.make
      const latencies = (wrappedAway: boolean) =>
        Effect.gen(function*() {
          const client = new OpenAIClient({
            apiKey: API_KEY,
            baseURL: "http://sim.local/v1",
            fetch: simFetch,
            maxRetries: 0
          })
          const seen: Array<number> = []
          const warnings: Array<string> = []
          const layer = OpenAi.layerClient(client, {
            organization: wrappedAway ? "away" : "wrapped",
            tier: 1,
            onEvent: (event) => Effect.sync(() => event._tag === "Succeeded" && seen.push(event.latencyMillis))
          }).pipe(Layer.provide(LimiterStore.layerMemory))
          yield* VirtualTime.run(
            Effect.gen(function*() {
              const openai = yield* OpenAi.OpenAi
              // what openai 7 does under x509 workload-identity auth: its own fetch, not the client's (wrapped) one
              if (wrappedAway) (client as unknown as { fetch: unknown }).fetch = simFetch
              for (let i = 0; i < 4; i++) yield* openai.chat.completions.create(params(`${wrappedAway}${i}`, i))
            }).pipe(
              Effect.provide(layer),
              Effect.provide(Logger.replace(
                Logger.defaultLogger,
                Logger.make(({ logLevel, message }) => {
                  if (logLevel === LogLevel.Warning) warnings.push(String(message))
                })
              ))
            )
          )
          return { seen, warnings }
        })
      // the hook fires: every call marked as its request leaves, measured from there; nothing to warn about
      const wrapped = yield* latencies(false)
      expect(wrapped.warnings).toEqual([])
      expect(wrapped.seen.every((ms) => ms >= 200)).toBe(true)
      // the hook never fires: the first call is marked when it ends (latency 0), the next ones before the SDK call
      const away = yield* latencies(true)
      expect(away.seen[0]).toBe(0)
      expect(away.seen.slice(1).every((ms) => ms >= 200)).toBe(true)
      expect(away.warnings).toHaveLength(1)
      expect(away.warnings[0]).toContain("fetch other than the one Sluice wrapped")
    }).pipe(Effect.provide(tier1)))
})
