/**
 * The `OpenAi` service's tenant labels: left out by default, bucketed by a function when asked (bounded
 * cardinality), against the in-process simulator under TestClock. Each run tags its own series.
 */
import { describe, expect, it } from "@effect/vitest"
import type { OpenAi } from "@sluice/openai"
import { OpenAiMetrics } from "@sluice/openai"
import { Effect, Exit, Metric } from "effect"
import { drive, tier1, withService } from "./harness.js"

/** A series of `sluice.openai.requests`: Effect finds it by its labels in their order (the documented one). */
const requests = (run: string, tags: { readonly outcome: string; readonly tenant?: string }) =>
  Effect.map(
    Metric.value(
      Object.entries({
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.operation.name": "chat",
        ...tags,
        run
      }).reduce((metric, [key, value]) => Metric.tagged(metric, key, value), OpenAiMetrics.requests)
    ),
    (state) => state.count
  )

const calls = (run: string, options: OpenAi.OpenAi.Options) =>
  withService({ tier: 1, ...options }, (openai) =>
    Effect.gen(function*() {
      const tenants = ["vip-1", "vip-2", "free-1", "free-2", "free-3"]
      const { exit } = yield* drive(Effect.forEach(tenants, (tenant, i) =>
        openai.chat.completions.create({
          model: "gpt-4o-mini",
          messages: [{ role: "user", content: `[req:${i}] Say hello.` }],
          max_tokens: 20
        }, { tenant }), { concurrency: "unbounded" }))
      expect(Exit.isSuccess(exit)).toBe(true)
    })).pipe(Effect.tagMetrics("run", run), Effect.provide(tier1()))

describe("OpenAi metrics: tenants", () => {
  it.effect("no tenant label by default", () =>
    Effect.gen(function*() {
      const run = `tenants-omit-${Math.random().toString(36).slice(2)}`
      yield* calls(run, {})
      expect(yield* requests(run, { outcome: "ok" })).toBe(5)
      expect(yield* requests(run, { outcome: "ok", tenant: "vip-1" })).toBe(0)
    }))

  it.effect("bucketed by a function: a few series, whatever the number of tenants", () =>
    Effect.gen(function*() {
      const run = `tenants-bucket-${Math.random().toString(36).slice(2)}`
      yield* calls(run, { metrics: { tenants: (tenant) => tenant.split("-")[0] } })
      expect(yield* requests(run, { outcome: "ok", tenant: "vip" })).toBe(2)
      expect(yield* requests(run, { outcome: "ok", tenant: "free" })).toBe(3)
      expect(yield* requests(run, { outcome: "ok" })).toBe(0) // every series carries its bucket
    }))

  it.effect("as given with \"label\"", () =>
    Effect.gen(function*() {
      const run = `tenants-label-${Math.random().toString(36).slice(2)}`
      yield* calls(run, { metrics: { tenants: "label" } })
      expect(yield* requests(run, { outcome: "ok", tenant: "free-3" })).toBe(1)
    }))
})
