/**
 * The campaign (`examples/campaign`) as a property over its shape (each stage's concurrency and queue) and the
 * number of briefs: whatever the shape, the run ends within 1.05× the least time gpt-image-1's 5 images a
 * minute allow, with no 429, every brief done, and never more items held than `Pipeline.bound` (the source's
 * hand, the queues, the workers and the output buffer) — far fewer than the briefs for most shapes, so a
 * pipeline that let items pile up in front of the render stage would fail it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Pipeline } from "@sluice/openai"
import { Scenario, SimStats, Simulator, VirtualTime } from "@sluice/testing"
import { Effect, FastCheck as fc } from "effect"
import { briefs, campaign, openAiLayer } from "../examples/campaign/pipeline.js"

const stageShape = fc.record({ concurrency: fc.integer({ min: 1, max: 4 }), queue: fc.integer({ min: 1, max: 8 }) })

describe("Pipeline: the campaign over shapes and sizes", () => {
  it.effect.prop(
    "≤ 1.05× the image stage's minimum, 0 × 429, every brief done, items held ≤ the bound",
    {
      shape: fc.record({ prompt: stageShape, render: stageShape, caption: stageShape }),
      count: fc.integer({ min: 20, max: 60 }),
      seed: fc.integer({ min: 1, max: 1_000 })
    },
    ({ count, seed, shape }) => {
      const scenario = Scenario.tier1({ seed, latency: { request: { _tag: "uniform", min: 100, max: 500 } } })
      const pipeline = campaign(shape)
      return Effect.gen(function*() {
        const result = yield* VirtualTime.run(Pipeline.run(pipeline, briefs(count)))
        const sim = yield* Simulator.stats
        const minimum = SimStats.theoreticalMinimum(sim, scenario)
        expect(minimum).toBe(((count - 5) / 5) * 60_000)
        expect(sim.byStatus).toEqual({ "200": 3 * count })
        expect([...result.outcomes.values()].every((o) => o._tag === "Done")).toBe(true)
        expect(result.outcomes.size).toBe(count)
        expect(result.stats.elapsedMillis).toBeLessThanOrEqual(1.05 * minimum)
        expect(result.stats.bound).toBe(Pipeline.bound(pipeline))
        expect(result.stats.maxHeld).toBeLessThanOrEqual(result.stats.bound)
        for (const stage of result.stats.stages) expect(stage.maxQueued).toBeLessThanOrEqual(stage.capacity)
      }).pipe(Effect.provide(openAiLayer), Effect.provide(Simulator.layer(scenario)))
    },
    { fastCheck: { numRuns: 8, seed: 21 } }
  )
})
