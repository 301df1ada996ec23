/**
 * `sluice sim`'s handler (its options: `simCommand.ts`): the simulator served until stopped, then its counters.
 *
 * @internal
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import type { Environment } from "../Cli.js"
import { scenarioOf, testing, testingNode } from "./connect.js"
import { usage } from "./handler.js"
import type { SimOptions } from "./simCommand.js"

/** @internal */
export const handler = (env: Environment, options: SimOptions) =>
  Effect.scoped(
    Effect.gen(function*() {
      const { SimStats, Simulator } = yield* testing
      const { SimServer } = yield* testingNode
      const scenario = yield* scenarioOf(options.scenario)
      const simulator = yield* Simulator.make(scenario)
      const address = yield* SimServer.serve({ port: options.port, host: options.host }).pipe(
        Effect.provideService(Simulator.Simulator, simulator),
        Effect.mapError((e) => usage(`cannot serve on ${options.host}:${options.port}: ${String(e)}`))
      )
      yield* Console.log(`simulated OpenAI (${scenario.name}) at ${address.url}  (OPENAI_BASE_URL=${address.url})`)
      yield* Console.log(`stats: GET ${address.url.replace(/\/v1$/, SimServer.STATS_PATH)}`)
      yield* env.stop
      yield* Console.log(
        `simulator stopped\n${SimStats.formatSummary(SimStats.summary(yield* simulator.stats, scenario))}`
      )
    })
  )
