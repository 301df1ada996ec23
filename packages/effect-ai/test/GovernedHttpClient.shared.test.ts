/**
 * One budget shared in one process by `@effect/ai`'s `LanguageModel` (through the governed `HttpClient`) and the
 * `openai` SDK's `OpenAi` service, on one `RateLimiter`, against the in-process simulator under `TestClock`.
 *
 * The SDK client gets its key from an `apiKey` function that takes up to 300 ms (a token provider): its requests
 * leave well after they were admitted. Each is marked sent when it goes on the wire (inside the SDK's `fetch`),
 * so a report of an `@effect/ai` call is never read as counting SDK calls not sent yet (marked before the SDK
 * was called, this run had 21 × 429).
 */
import * as OpenAiClient from "@effect/ai-openai/OpenAiClient"
import * as OpenAiLanguageModel from "@effect/ai-openai/OpenAiLanguageModel"
import * as LanguageModel from "@effect/ai/LanguageModel"
import { describe, expect, it } from "@effect/vitest"
import { LimiterStore } from "@sluice/core"
import { GovernedHttpClient } from "@sluice/effect-ai"
import { OpenAi } from "@sluice/openai"
import { SimFetch, SimStats, Simulator, VirtualTime } from "@sluice/testing"
import { Effect, Layer, Redacted, Runtime, Stream } from "effect"
import OpenAIClient from "openai"
import { API_URL, filler, type Recorded, recorder, simHttpClient, sum, tier1 } from "./harness.js"

const MODEL = "gpt-4o"
const API_KEY = "sk-test-shared-budget"

/** A prompt of 80–2,000 characters with the `[req:KEY]` marker the simulator counts attempts by. */
const prompt = (key: string, i: number) => `[req:${key}] ${filler(80 + ((i * 7919) % 1_920))}`

const succeeded = (events: ReadonlyArray<Recorded>) =>
  events.filter((e): e is Extract<Recorded, { _tag: "Succeeded" }> => e._tag === "Succeeded")

describe("GovernedHttpClient: one budget shared with the SDK's OpenAi service", () => {
  it.effect(
    "100 LanguageModel calls and 100 SDK calls (a slow token provider) at once: zero 429s, near the minimum",
    () =>
      Effect.gen(function*() {
        const sdkEvents = recorder()
        const aiEvents = recorder()
        const runtime = yield* Effect.runtime<never>()
        const fetch = yield* SimFetch.make
        let tokens = 0
        const sdk = new OpenAIClient({
          // a token provider: 1–300 ms of virtual time before each request is built
          apiKey: () => Runtime.runPromise(runtime, Effect.as(Effect.sleep(1 + (tokens++ * 7919) % 300), API_KEY)),
          baseURL: API_URL,
          fetch,
          maxRetries: 0
        })
        // the SDK's service, with its limiter (Tier 1's presets), and @effect/ai on that same limiter
        const shared = OpenAi.layerClient(sdk, { organization: "acme", tier: 1, onEvent: sdkEvents.onEvent }).pipe(
          Layer.provide(LimiterStore.layerMemory)
        )
        const languageModel = OpenAiLanguageModel.layer({ model: MODEL, config: { max_output_tokens: 200 } }).pipe(
          Layer.provide(OpenAiClient.layer({ apiKey: Redacted.make(API_KEY), apiUrl: API_URL })),
          Layer.provide(
            GovernedHttpClient.layerWithLimiter({ organization: "acme", apiUrl: API_URL, onEvent: aiEvents.onEvent })
          ),
          Layer.provide(simHttpClient)
        )
        const generate = (i: number) =>
          Effect.map(LanguageModel.generateText({ prompt: prompt(`g${i}`, i) }), (response) => response.text)
        const streamed = (i: number) =>
          LanguageModel.streamText({ prompt: prompt(`t${i}`, i + 300) }).pipe(
            Stream.runFold("", (text, part) => part.type === "text-delta" ? text + part.delta : text)
          )
        const create = (i: number) =>
          Effect.flatMap(OpenAi.OpenAi, (openai) =>
            openai.chat.completions.create({
              model: MODEL,
              messages: [{ role: "user", content: prompt(`c${i}`, i + 600) }],
              max_tokens: 200
            })).pipe(Effect.map((completion) => completion.choices[0].message.content ?? ""))
        const sdkStreamed = (i: number) =>
          Stream.unwrap(Effect.map(OpenAi.OpenAi, (openai) =>
            openai.chat.completions.stream({
              model: MODEL,
              messages: [{ role: "user", content: prompt(`u${i}`, i + 900) }],
              max_tokens: 200
            }))).pipe(Stream.runFold("", (text, chunk) => text + (chunk.choices[0]?.delta?.content ?? "")))
        // the two clients' calls interleaved, a stream every fourth
        const calls = Array.from({ length: 200 }, (_, i): Effect.Effect<
          string,
          unknown,
          LanguageModel.LanguageModel | OpenAi.OpenAi
        > => {
          const n = i >> 1
          return i % 2 === 0
            ? (n % 4 === 3 ? streamed(n) : generate(n))
            : (n % 4 === 3 ? sdkStreamed(n) : create(n))
        })
        const started = yield* Simulator.elapsed
        const texts = yield* VirtualTime.run(
          Effect.forEach(calls, (call) => call, { concurrency: "unbounded" }).pipe(
            Effect.provide(languageModel.pipe(Layer.provideMerge(shared)))
          )
        )
        const wall = (yield* Simulator.elapsed) - started
        const stats = yield* Simulator.stats
        const minimum = SimStats.theoreticalMinimum(stats, { rpm: 500, tpm: 30_000 })
        const ratio = wall / minimum
        console.log(
          `shared budget, 100 @effect/ai + 100 SDK calls: wall ${Math.round(wall)} ms, minimum ${
            Math.round(minimum)
          } ms, ratio ${ratio.toFixed(4)}, by status ${JSON.stringify(stats.byStatus)}`
        )
        expect(texts.every((text) => text.length > 0)).toBe(true)
        expect(stats.byStatus).toEqual({ "200": 200 })
        expect(Object.keys(stats.attemptsByKey)).toHaveLength(200)
        expect(Object.values(stats.attemptsByKey).every((attempts) => attempts === 1)).toBe(true)
        // one budget: both clients' calls charged on the same scopes of the one limiter
        const scopesOf = (events: ReadonlyArray<Recorded>) =>
          new Set(events.flatMap((e) => e._tag === "Admitted" ? [e.scopes.join(" ")] : []))
        expect([...scopesOf(sdkEvents.events)]).toEqual(["org:acme org:acme/pool:gpt-4o"])
        expect([...scopesOf(aiEvents.events)]).toEqual(["org:acme org:acme/pool:gpt-4o"])
        // every call settled to the usage the server counted
        const done = [...succeeded(sdkEvents.events), ...succeeded(aiEvents.events)]
        expect(done).toHaveLength(200)
        expect(sum(done.map((e) => e.used.tokens ?? 0))).toBe(sum(stats.admissions.map((a) => a.tokens)))
        expect(minimum).toBeGreaterThan(60_000) // TPM-bound: a minute and a half of tokens
        expect(ratio).toBeLessThanOrEqual(1.03)
      }).pipe(Effect.provide(tier1())),
    600_000
  )
})
