/**
 * Against the in-process simulator under `TestClock`: image generations through `@effect/ai-openai`'s client
 * (`OpenAiClient`'s generated `createImage`; `@effect/ai` has no image model) on the governed `HttpClient`,
 * charged on the images dimension and held to Tier 1's images per minute with zero 429s; and `streamText`
 * streams the server fails half-way, classified by Sluice and read by `@effect/ai` as it reads them.
 */
import * as OpenAiClient from "@effect/ai-openai/OpenAiClient"
import * as OpenAiLanguageModel from "@effect/ai-openai/OpenAiLanguageModel"
import * as LanguageModel from "@effect/ai/LanguageModel"
import { describe, expect, it } from "@effect/vitest"
import { Simulator, VirtualTime } from "@sluice/testing"
import { Effect, Layer, Stream } from "effect"
import { filler, governedOpenAi, recorder, sum, tier1 } from "./harness.js"

describe("GovernedHttpClient: image generations", () => {
  it.effect("14 dall-e-3 images at Tier 1's 5 a minute: each admitted on the images dimension, zero 429s", () =>
    Effect.gen(function*() {
      const { events, onEvent } = recorder()
      const started = yield* Simulator.elapsed
      const images = yield* VirtualTime.run(
        Effect.flatMap(OpenAiClient.OpenAiClient, (openai) =>
          Effect.forEach(
            Array.from({ length: 14 }, (_, i) => i),
            (i) => openai.client.createImage({ model: "dall-e-3", prompt: `[req:i${i}] a lighthouse at dusk, ${i}` }),
            { concurrency: "unbounded" }
          )).pipe(Effect.provide(governedOpenAi({ tier: 1, onEvent })))
      )
      const wall = (yield* Simulator.elapsed) - started
      const stats = yield* Simulator.stats
      console.log(
        `images: 14 dall-e-3 at 5 a minute in ${Math.round(wall)} ms, by status ${JSON.stringify(stats.byStatus)}`
      )
      expect(images.every((image) => (image.data?.length ?? 0) === 1)).toBe(true)
      expect(stats.byStatus).toEqual({ "200": 14 })
      expect(Object.values(stats.attemptsByKey).every((attempts) => attempts === 1)).toBe(true)
      const admitted = events.flatMap((e) => e._tag === "Admitted" ? [e] : [])
      expect(admitted).toHaveLength(14)
      expect(admitted.every((e) => e.cost.images === 1 && e.scopes.includes("org:acme/pool:dall-e-3"))).toBe(true)
      const succeeded = events.flatMap((e) => e._tag === "Succeeded" ? [e] : [])
      expect(sum(succeeded.map((e) => e.used.images ?? 0))).toBe(14)
      // 5 at once, then one every 12 s (the bucket refills continuously): the 14th leaves at 108 s
      const arrivals = stats.attempts.map((a) => a.at).sort((a, b) => a - b)
      expect(arrivals[4]).toBeLessThan(1_000)
      expect(arrivals[13]).toBeGreaterThanOrEqual(108_000)
      expect(arrivals[13]).toBeLessThan(110_000)
    }).pipe(Effect.provide(tier1())))
})

describe("GovernedHttpClient: failures inside a stream", () => {
  it.effect("a streamText the server fails half-way (rate limited, server error): classified, the stream read as @effect/ai reads it", () =>
    Effect.gen(function*() {
      const { events, onEvent } = recorder()
      const parts = yield* VirtualTime.run(
        Effect.forEach(
          Array.from({ length: 40 }, (_, i) => i),
          (i) =>
            LanguageModel.streamText({ prompt: `[req:s${i}] ${filler(200 + i * 37)}` }).pipe(
              Stream.runCollect,
              Effect.map((chunk) => Array.from(chunk))
            ),
          { concurrency: "unbounded" }
        ).pipe(
          Effect.provide(
            OpenAiLanguageModel.layer({ model: "gpt-4o-mini", config: { max_output_tokens: 100 } }).pipe(
              Layer.provide(governedOpenAi({ tier: 1, onEvent }))
            )
          )
        )
      )
      const stats = yield* Simulator.stats
      const faulted = stats.attempts.filter((a) => a.fault === "stream_rate_limited" || a.fault === "stream_error")
      const failed = events.flatMap((e) => e._tag === "Failed" ? [e] : [])
      const kinds = failed.map((e) => e.error._tag).sort()
      console.log(`in-stream failures: ${faulted.length} of 40 streams, classified ${JSON.stringify(kinds)}`)
      expect(faulted.length).toBeGreaterThan(0)
      // each reported in-stream failure is Sluice's Failed event of its kind; every other stream Succeeded
      expect(failed).toHaveLength(faulted.length)
      expect(kinds).toEqual(
        faulted.map((a) => a.fault === "stream_rate_limited" ? "RateLimited" : "ServerError").sort()
      )
      expect(events.filter((e) => e._tag === "Succeeded")).toHaveLength(40 - faulted.length)
      // the caller's streams end as @effect/ai ends them on the server's event (a finish part), none fails
      expect(parts).toHaveLength(40)
      expect(parts.every((list) => list.some((part) => part.type === "finish"))).toBe(true)
    }).pipe(Effect.provide(tier1({ faults: { rates: { stream_rate_limited: 0.15, stream_error: 0.15 } } }))))
})
