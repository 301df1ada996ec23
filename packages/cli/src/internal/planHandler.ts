/**
 * `sluice plan`'s handler (its options: `planCommand.ts`): the workload from the options, its plan printed.
 *
 * @internal
 */
import type { Tiers } from "@sluice/openai"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { parseMix } from "../Cli.js"
import * as Plan from "../Plan.js"
import { usage } from "./handler.js"
import type { PlanOptions } from "./planCommand.js"

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
