/**
 * The seeds' campaign as a `Pipeline`: product briefs → prompt enrichment (gpt-4o-mini) → renders
 * (gpt-image-1) → captions (gpt-4o-mini), with the OpenAI Tier 1 figures of the simulator (gpt-image-1 at 5
 * images a minute, gpt-4o-mini at 500 requests and 200,000 tokens a minute). Shared by the runnable example
 * (`examples/campaign/run.ts`) and its test (`test/pipeline-campaign.test.ts`).
 */
import { Budget, LimiterStore } from "@sluice/core"
import { OpenAi, Pipeline } from "@sluice/openai"
import { Scenario, SimFetch } from "@sluice/testing"
import type { Simulator } from "@sluice/testing"
import { Effect, Layer, Schema } from "effect"
import OpenAIClient from "openai"

/** One product brief. */
export interface Brief {
  readonly product: string
  readonly audience: string
}

const products = ["trail shoe", "espresso grinder", "rain jacket", "desk lamp", "travel mug", "yoga mat", "backpack"]
const audiences = ["commuters", "students", "new parents", "weekend hikers", "home cooks"]

/** `count` briefs, ids `brief-1` … */
export const briefs = (count: number): ReadonlyArray<Pipeline.Item<Brief>> =>
  Array.from({ length: count }, (_, i) => ({
    id: `brief-${i + 1}`,
    input: { product: products[i % products.length]!, audience: audiences[(i * 3) % audiences.length]! }
  }))

/** What the render stage hands on: the prompt and the image (base64). */
export const Render = Schema.Struct({ prompt: Schema.String, image: Schema.String })

/** What the campaign makes of a brief. */
export const Asset = Schema.Struct({ prompt: Schema.String, image: Schema.String, caption: Schema.String })

/** How much each stage takes on at once: its workers and its queue. */
export interface Shape {
  readonly prompt: { readonly concurrency: number; readonly queue: number }
  readonly render: { readonly concurrency: number; readonly queue: number }
  readonly caption: { readonly concurrency: number; readonly queue: number }
}

/** Enough to keep the renders busy; small queues, so little is held. */
export const defaultShape: Shape = {
  prompt: { concurrency: 4, queue: 8 },
  render: { concurrency: 3, queue: 4 },
  caption: { concurrency: 2, queue: 4 }
}

const text = (answer: { readonly choices: ReadonlyArray<{ readonly message: { readonly content: string | null } }> }) =>
  answer.choices[0]?.message.content ?? ""

/** The pipeline. */
export const campaign = (
  shape: Shape = defaultShape
): Pipeline.Pipeline<Brief, typeof Asset.Type, OpenAi.CallError, OpenAi.OpenAi> =>
  Pipeline.make<Brief>("campaign").pipe(
    Pipeline.stage({
      name: "prompt",
      ...shape.prompt,
      output: Schema.String,
      run: (brief: Brief, item) =>
        Effect.flatMap(OpenAi.OpenAi, (openai) =>
          openai.chat.completions.create({
            model: "gpt-4o-mini",
            messages: [
              { role: "system", content: "You write prompts for an image model: one vivid paragraph." },
              {
                role: "user",
                content: `[req:${item.id}/prompt] A product shot of a ${brief.product} for ${brief.audience}.`
              }
            ],
            max_tokens: 160
          })).pipe(Effect.map((answer) => `[req:${item.id}/render] ${text(answer)}`))
    }),
    Pipeline.stage({
      name: "render",
      ...shape.render,
      lane: "background",
      output: Render,
      run: (prompt: string) =>
        Effect.flatMap(
          OpenAi.OpenAi,
          (openai) => openai.images.generate({ model: "gpt-image-1", prompt, size: "1024x1024" })
        ).pipe(
          Effect.map((image) => ({ prompt, image: image.data?.[0]?.b64_json ?? "" }))
        )
    }),
    Pipeline.stage({
      name: "caption",
      ...shape.caption,
      output: Asset,
      run: (render: typeof Render.Type, item) =>
        Effect.flatMap(OpenAi.OpenAi, (openai) =>
          openai.chat.completions.create({
            model: "gpt-4o-mini",
            messages: [{
              role: "user",
              content: `[req:${item.id}/caption] A one-line caption for this image: ${render.prompt.slice(0, 200)}`
            }],
            max_tokens: 40
          })).pipe(Effect.map((answer) => ({ ...render, caption: text(answer) })))
    })
  )

/** OpenAI's Tier 1 figures in the simulator; answers take 0.5 to 3 seconds. */
export const scenario = Scenario.tier1({ latency: { request: { _tag: "uniform", min: 500, max: 3_000 } } })

/** The client's budgets: the same figures, on the scopes the `OpenAi` service charges. */
export const budgets = [
  Budget.make("org:default/pool:gpt-4o-mini", [
    Budget.Limit.perMinute("requests", 500),
    Budget.Limit.perMinute("tokens", 200_000)
  ]),
  Budget.make("org:default/pool:gpt-image-1", [Budget.Limit.perMinute("images", 5)])
]

/**
 * The `OpenAi` service over the simulator in context (the real `openai` SDK with the simulator's `fetch`),
 * its calls reporting to the pipeline's stats.
 */
export const openAiLayer: Layer.Layer<OpenAi.OpenAi, never, Simulator.Simulator> = Layer.unwrapEffect(
  Effect.map(SimFetch.make, (fetch) =>
    OpenAi.layerClient(
      new OpenAIClient({ apiKey: "sk-campaign-example", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 }),
      { budgets, adaptive: false, timeSlice: false, onEvent: Pipeline.onEvent }
    ).pipe(Layer.provide(LimiterStore.layerMemory)))
)
