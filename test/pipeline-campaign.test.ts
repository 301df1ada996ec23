/**
 * The seeds' campaign (`examples/campaign`) as a `Pipeline`, end to end in virtual time: the real `openai` SDK
 * against the in-process simulator at OpenAI's Tier 1 figures, every stage through the `OpenAi` service.
 * gpt-image-1's 5 images a minute bind: the run must end within 1.05× the least time the server's image bucket
 * allows (`SimStats.theoreticalMinimum`), with no 429, and hold no more items than its queues and workers.
 */
import { describe, expect, it } from "@effect/vitest"
import { Pipeline } from "@sluice/openai"
import { SimStats, Simulator, VirtualTime } from "@sluice/testing"
import { Effect } from "effect"
import { briefs, campaign, openAiLayer, scenario, type Shape } from "../examples/campaign/pipeline.js"

const runCampaign = (count: number, shape?: Shape, scenarioOf = scenario) =>
  Effect.gen(function*() {
    const result = yield* VirtualTime.run(Pipeline.run(campaign(shape), briefs(count)))
    const sim = yield* Simulator.stats
    return { result, sim, minimum: SimStats.theoreticalMinimum(sim, scenarioOf) }
  }).pipe(Effect.provide(openAiLayer), Effect.provide(Simulator.layer(scenarioOf)))

describe("Pipeline: the campaign", () => {
  it.effect(
    "200 briefs: within 1.05× the minimum of the image stage, 0 × 429, every brief done, render binding",
    () =>
      Effect.gen(function*() {
        const { minimum, result, sim } = yield* runCampaign(200)
        const { stats } = result
        // 195 images beyond the bucket's 5 at 5 a minute
        expect(minimum).toBe(39 * 60_000)
        expect(stats.elapsedMillis).toBeLessThanOrEqual(1.05 * minimum)
        expect(sim.byStatus[429] ?? 0).toBe(0)
        expect(sim.byStatus[200]).toBe(600)
        expect([...result.outcomes.values()].filter((o) => o._tag === "Done")).toHaveLength(200)
        expect(stats.maxHeld).toBeLessThanOrEqual(stats.bound)
        expect(stats.binding._tag).toBe("Some")
        expect(result.summary).toContain("binding: images/min gpt-image-1 in stage render")
        const [prompt, render, caption] = stats.stages
        expect(prompt!.blockedMillis / (prompt!.concurrency * stats.elapsedMillis)).toBeGreaterThan(0.9)
        expect(caption!.idleMillis / (caption!.concurrency * stats.elapsedMillis)).toBeGreaterThan(0.9)
        expect(render!.calls).toBe(200)
        expect(render!.admissionWaitMillis).toBeGreaterThan(0)
        console.log(result.summary, `\nminimum ${minimum} ms, ratio ${(stats.elapsedMillis / minimum).toFixed(4)}`)
      })
  )
})
