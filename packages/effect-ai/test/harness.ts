/**
 * The shared harness of the `@sluice/effect-ai` tests: `@effect/ai-openai` over the governed `HttpClient`, over
 * `@effect/platform`'s `FetchHttpClient` pointed at the in-process simulator, under `TestClock`.
 */
import * as OpenAiClient from "@effect/ai-openai/OpenAiClient"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import type { RateLimiter } from "@sluice/core"
import { LimiterStore } from "@sluice/core"
import { GovernedHttpClient } from "@sluice/effect-ai"
import type { OpenAi } from "@sluice/openai"
import { Scenario, SimFetch, Simulator } from "@sluice/testing"
import { Clock, Effect, Layer, Redacted } from "effect"

/** The simulator's API root (any host: the simulator's `fetch` never opens a socket). */
export const API_URL = "http://sim.local/v1"

/** OpenAI's Tier 1 in the simulator (seeded), with 200–800 ms latency plus 1 ms per output token. */
export const tier1 = (overrides: Parameters<typeof Scenario.tier1>[0] = {}) =>
  Simulator.layer(Scenario.tier1({
    seed: 11,
    latency: { request: { _tag: "uniform", min: 200, max: 800 }, perOutputTokenMs: 1 },
    ...overrides
  }))

/** The platform's fetch client on the simulator in context (build it inside the test: it captures TestClock). */
export const simHttpClient = FetchHttpClient.layer.pipe(Layer.provide(SimFetch.layerFetchHttpClient))

/** Events of the governed calls, with their virtual times. */
export type Recorded = OpenAi.CallEvent & { readonly at: number }

export const recorder = () => {
  const events: Array<Recorded> = []
  const onEvent = (event: OpenAi.CallEvent) =>
    Effect.flatMap(Clock.currentTimeMillis, (at) => Effect.sync(() => events.push({ ...event, at })))
  return { events, onEvent }
}

/** `OpenAiClient` on the governed client (its own limiter on a memory store) over the simulator. */
export const governedOpenAi = (
  options: GovernedHttpClient.Options = {}
): Layer.Layer<
  OpenAiClient.OpenAiClient | HttpClient.HttpClient | RateLimiter.RateLimiter,
  never,
  Simulator.Simulator
> =>
  OpenAiClient.layer({ apiKey: Redacted.make("sk-test-effect-ai"), apiUrl: API_URL }).pipe(
    Layer.provideMerge(GovernedHttpClient.layer({ organization: "acme", apiUrl: API_URL, ...options })),
    Layer.provide(simHttpClient),
    Layer.provide(LimiterStore.layerMemory)
  )

/** `OpenAiClient` over the simulator with no governor (what a user has today). */
export const ungovernedOpenAi = OpenAiClient.layer({ apiKey: Redacted.make("sk-test-effect-ai"), apiUrl: API_URL })
  .pipe(Layer.provide(simHttpClient))

export const sum = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0)

/** `chars` characters of prose. */
export const filler = (chars: number) =>
  "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(chars / 50 + 1).slice(0, chars)
