/**
 * The seeds' campaign as a stage pipeline, on the embedded simulator in virtual time (no API key, no
 * network, no real waiting):
 *
 *   node scripts/run-ts.mjs examples/campaign/run.ts        (or: pnpm demo:campaign)
 *
 * 200 product briefs → prompt enrichment with gpt-4o-mini → gpt-image-1 renders → captions with
 * gpt-4o-mini, at OpenAI's Tier 1 figures: gpt-image-1 renders 5 images a minute, so the renders bind and
 * the other stages wait on them (the prompt stage with its queue full, the caption stage for renders).
 * Each stage has its own workers and bounded queue; the pipeline never holds more than `Pipeline.bound`
 * briefs. The run is cut after 15 minutes (as a killed process would be) and run again over the same
 * checkpoint store: each brief resumes at the stage it had reached.
 */
import { Pipeline } from "@sluice/openai"
import { SimStats, Simulator, VirtualTime } from "@sluice/testing"
import { Console, Duration, Effect, TestContext } from "effect"
import { briefs, campaign, openAiLayer, scenario } from "./pipeline.js"

const pipeline = campaign()
const input = briefs(200)

const progress = {
  every: Duration.minutes(5),
  report: (stats: Pipeline.Stats) => Console.log(Pipeline.progressLine(stats))
}

const program = Effect.gen(function*() {
  yield* Console.log(
    `${input.length} briefs, 3 stages; at most ${
      Pipeline.bound(pipeline)
    } briefs held at once\n\nfirst run, cut after 15 minutes:`
  )
  const store = yield* Pipeline.memoryStore
  const cut = yield* VirtualTime.run(
    Effect.either(Effect.timeout(Pipeline.run(pipeline, input, { store, progress }), "15 minutes"))
  )
  const saved = yield* store.checkpoints
  const at = (stage: string) => saved.filter((c) => c._tag === "Reached" && c.stage === stage).length
  yield* Console.log(
    `cut (${cut._tag === "Left" ? "interrupted" : "finished"}): ${at("caption")} briefs done, ${
      at("render")
    } rendered, ${at("prompt")} with a prompt, ${input.length - saved.length} not started\n\nsecond run, same store:`
  )
  const result = yield* VirtualTime.run(Pipeline.run(pipeline, input, { store, progress }))
  const resumed = [...result.outcomes.values()].filter((o) => o.resumed).length
  yield* Console.log(`\n${result.summary}\n`)
  const sim = yield* Simulator.stats
  const total = yield* Simulator.elapsed
  const minimum = SimStats.theoreticalMinimum(sim, scenario)
  const done = [...result.outcomes.values()].filter((o) => o._tag === "Done").length
  yield* Console.log(
    `${done}/${input.length} briefs done (${resumed} known from the first run); both runs ${
      Duration.format(Duration.seconds(Math.round(total / 1000)))
    } of virtual time, the image limit's minimum ${Duration.format(Duration.millis(minimum))} (×${
      (total / minimum).toFixed(3)
    }); the server answered ${sim.byStatus[200] ?? 0} calls, ${sim.byStatus[429] ?? 0} × 429`
  )
  const sample = result.outcomes.get("brief-1")
  if (sample?._tag === "Done") {
    yield* Console.log(
      `\nbrief-1: ${sample.value.prompt.slice(0, 100)}…\n  caption: ${sample.value.caption.slice(0, 100)}`
    )
  }
}).pipe(Effect.provide(openAiLayer), Effect.provide(Simulator.layer(scenario)))

program.pipe(Effect.provide(TestContext.TestContext), Effect.runPromise).catch((error) => {
  process.stderr.write(`${error}\n`)
  process.exit(1)
})
