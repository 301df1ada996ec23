/**
 * Planning a large job without submitting it: 120,000 lines for three models split into files within every limit
 * (requests, bytes, the model's enqueued tokens), each limit binding for one of the models.
 */
import { describe, expect, it } from "@effect/vitest"
import { LimiterStore, RateLimiter } from "@sluice/core"
import { BatchOffload } from "@sluice/openai"
import { Effect, Stream } from "effect"
import OpenAIClient from "openai"
import { chatLine, embeddingLine } from "./batchHarness.js"

describe("BatchOffload.plan", () => {
  it.effect("a 120,000-line job for three models: files within every limit, every line in one", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({
        budgets: [BatchOffload.budget("gpt-4o", 90_000), BatchOffload.budget("gpt-4o-mini", 2_000_000)]
      }).pipe(Effect.provide(LimiterStore.layerMemory))
      const offload = yield* BatchOffload.make({
        client: new OpenAIClient({ apiKey: "sk-plan" }),
        limiter,
        maxBytes: 9_000_000
      })
      // a fifth for gpt-4o, three fifths for gpt-4o-mini, a fifth for embeddings (about 480 bytes a line)
      const lines = Stream.range(0, 119_999).pipe(Stream.map((i) =>
        i % 5 === 0
          ? chatLine(`c4-${i}`, `classify item ${i}`, "gpt-4o", 20)
          : i % 5 === 4
          ? embeddingLine(`e-${i}`, `passage ${i} `.repeat(30))
          : chatLine(`cm-${i}`, `tag item ${i}`, "gpt-4o-mini", 20)
      ))
      const plan = yield* offload.plan(lines)
      expect(plan.tooLarge).toBe(0)
      expect(plan.files.reduce((a, f) => a + f.requests, 0)).toBe(120_000)
      for (const file of plan.files) {
        expect(file.requests).toBeLessThanOrEqual(50_000)
        expect(file.bytes).toBeLessThanOrEqual(9_000_000)
        if (file.model === "gpt-4o") expect(file.tokens).toBeLessThanOrEqual(90_000)
        if (file.model === "gpt-4o-mini") expect(file.tokens).toBeLessThanOrEqual(2_000_000)
      }
      const by = (model: string) => plan.files.filter((f) => f.model === model)
      // gpt-4o: 24,000 lines bound by its 90,000 enqueued tokens; gpt-4o-mini by 50,000 requests; embeddings by
      // 9 MB
      const gpt4o = by("gpt-4o")
      expect(gpt4o.length).toBeGreaterThan(5)
      expect(gpt4o.every((f, i) => i === gpt4o.length - 1 || f.tokens > 90_000 - 100)).toBe(true)
      expect(by("gpt-4o-mini").map((f) => f.requests)).toEqual([50_000, 22_000])
      const embeddings = by("text-embedding-3-small")
      expect(embeddings.length).toBe(2)
      expect(embeddings[0].bytes).toBeGreaterThan(9_000_000 - 1_000)
    }).pipe(Effect.scoped))
})
