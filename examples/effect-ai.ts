/**
 * `@effect/ai`'s `LanguageModel` and `EmbeddingModel` on OpenAI, governed by Sluice: the `OpenAiClient` layer a
 * user of `@effect/ai-openai` already has, with one line added (`GovernedHttpClient.layer`). Runs against the
 * in-process simulator (OpenAI's Tier 1, no network, no key):
 *
 *   node scripts/run-ts.mjs examples/effect-ai.ts
 */
import * as OpenAiClient from "@effect/ai-openai/OpenAiClient"
import * as OpenAiEmbeddingModel from "@effect/ai-openai/OpenAiEmbeddingModel"
import * as OpenAiLanguageModel from "@effect/ai-openai/OpenAiLanguageModel"
import * as EmbeddingModel from "@effect/ai/EmbeddingModel"
import * as LanguageModel from "@effect/ai/LanguageModel"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { LimiterStore } from "@sluice/core"
import { GovernedHttpClient } from "@sluice/effect-ai"
import { Scenario, SimFetch, Simulator } from "@sluice/testing"
import { Console, Effect, Layer, Option, Redacted, Stream } from "effect"

const apiUrl = "http://sim.local/v1" // in production: leave it out (https://api.openai.com/v1)

const OpenAi = OpenAiClient.layer({ apiKey: Redacted.make("sk-example"), apiUrl }).pipe(
  Layer.provide(GovernedHttpClient.layer({ organization: "acme", tier: 1, apiUrl })), // ← the one line
  Layer.provide([FetchHttpClient.layer, LimiterStore.layerMemory])
)

const program = Effect.gen(function*() {
  // 40 answers at once: admitted within Tier 1's gpt-4o-mini limits, each settled to its usage
  const answers = yield* Effect.forEach(
    Array.from({ length: 40 }, (_, i) => `Give me fact number ${i} about rivers`),
    (prompt) => Effect.map(LanguageModel.generateText({ prompt }), (response) => response.text),
    { concurrency: "unbounded" }
  )
  yield* Console.log(`${answers.length} answers; the first: ${answers[0]?.slice(0, 60)}…`)

  // a stream in the background lane, charged to a tenant
  const streamed = yield* LanguageModel.streamText({ prompt: "Tell me a short story" }).pipe(
    Stream.runFold(0, (chars, part) => part.type === "text-delta" ? chars + part.delta.length : chars),
    GovernedHttpClient.withCallOptions({ priority: "background", tenant: "stories" })
  )
  yield* Console.log(`streamed ${streamed} characters`)

  const vectors = yield* Effect.flatMap(
    EmbeddingModel.EmbeddingModel,
    (model) => model.embedMany(answers)
  ).pipe(Effect.provide(OpenAiEmbeddingModel.layerBatched({ model: "text-embedding-3-small" })))
  yield* Console.log(`${vectors.length} embeddings`)

  // a call that cannot be admitted in time: @effect/ai's error, with Sluice's typed error as its cause
  const late = yield* LanguageModel.generateText({ prompt: "x".repeat(400_000) }).pipe(
    Effect.flip,
    Effect.map((error) => Option.map(GovernedHttpClient.sluiceError(error), (cause) => cause._tag))
  )
  yield* Console.log(`a prompt larger than the model's tokens per minute: ${Option.getOrElse(late, () => "?")}`)

  const stats = yield* Simulator.stats
  yield* Console.log(`server: ${JSON.stringify(stats.byStatus)} (no 429)`)
}).pipe(
  Effect.provide(OpenAiLanguageModel.layer({ model: "gpt-4o-mini", config: { max_output_tokens: 120 } })),
  Effect.provide(OpenAi),
  Effect.provide(SimFetch.layerFetchHttpClient),
  Effect.provide(
    Simulator.layer(Scenario.tier1({ latency: { request: { _tag: "fixed", ms: 50 }, perOutputTokenMs: 0 } }))
  )
)

Effect.runPromise(program).catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
