/**
 * `sluice plan`: a workload's capacity plan (binding limit, time to drain, peak headroom, cost) as text or JSON. Its
 * options; the handler (`planHandler.ts`) is loaded when the command runs.
 *
 * @internal
 */
import type * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import { count, optional, tierOption } from "./options.js"
import type { Handled } from "./options.js"
import { loadHandler } from "./usageError.js"

/** @internal */
export const options = {
  tier: tierOption.pipe(Options.withDescription("Usage tier (1-5)"), Options.withDefault("1" as const)),
  mix: Options.text("mix").pipe(
    Options.withDescription("Model mix: model=share,... (e.g. gpt-4o-mini=0.8,gpt-4o=0.2)"),
    Options.withDefault("gpt-4o-mini=1")
  ),
  requests: count("requests", "Number of requests", 10_000),
  inputTokens: count("input-tokens", "Input tokens per request", 500),
  cachedTokens: count(
    "cached-tokens",
    "Of the input tokens, those OpenAI's prompt caching serves (a shared prefix): priced at the cached-input rate",
    0
  ),
  outputTokens: count(
    "output-tokens",
    "Output tokens per request (max_tokens; ignored for embeddings and images)",
    200
  ),
  images: count("images", "Images per request for image models", 1),
  peakPerMinute: optional(
    Options.integer("peak-per-minute"),
    "Requests in the busiest minute (for the headroom check)"
  ),
  batch: Options.boolean("batch").pipe(Options.withDescription("Price at the Batch API's half price")),
  json: Options.boolean("json").pipe(Options.withDescription("Print the plan as JSON"))
} as const

/** @internal */
export type PlanOptions = Command.Command.ParseConfig<typeof options>

/** @internal */
export const handler = (options: PlanOptions): Handled =>
  Effect.flatMap(loadHandler("plan", () => import("./planHandler.js")), (plan) => plan.handler(options))
