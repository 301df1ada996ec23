/**
 * `sluice plan`: a workload's capacity plan (binding limit, time to drain, peak headroom, cost) as text or JSON.
 *
 * @internal
 */
import type * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import type { Tiers } from "@sluice/openai"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { parseMix } from "../Cli.js"
import * as Plan from "../Plan.js"
import { count, optional, tierOption, usage } from "./options.js"

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

type PlanOptions = Command.Command.ParseConfig<typeof options>

/** @internal */
export const handler = (options: PlanOptions) =>
  Effect.gen(function*() {
    const mix = parseMix(options.mix)
    if (mix === undefined) return yield* usage(`--mix: expected model=share,... got ${JSON.stringify(options.mix)}`)
    if (
      options.requests < 0 || options.inputTokens < 0 || options.outputTokens < 0 || options.images < 0 ||
      options.cachedTokens < 0
    ) {
      return yield* usage(
        "--requests, --input-tokens, --cached-tokens, --output-tokens and --images must not be negative"
      )
    }
    if (options.cachedTokens > options.inputTokens) {
      return yield* usage(`--cached-tokens (${options.cachedTokens}) exceeds --input-tokens (${options.inputTokens})`)
    }
    const workload: Plan.Workload = {
      tier: Number(options.tier) as Tiers.Tier,
      mix,
      requests: options.requests,
      inputTokens: options.inputTokens,
      cachedInputTokens: options.cachedTokens,
      outputTokens: options.outputTokens,
      images: options.images,
      peakPerMinute: Option.getOrUndefined(options.peakPerMinute),
      batch: options.batch
    }
    const plan = Plan.compute(workload)
    yield* Console.log(options.json ? JSON.stringify(plan, null, 2) : Plan.format(workload, plan))
  })
