/**
 * `sluice sim`: the simulated OpenAI over HTTP on loopback until stopped, then its counters.
 *
 * @internal
 */
import type * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import type { Environment } from "../Cli.js"
import { scenarioOf, testing, testingNode } from "./connect.js"
import { count, usage } from "./options.js"

/** @internal */
export const options = {
  scenario: Options.text("scenario").pipe(
    Options.withDescription("tier1 | tier5 | free | <scenario.json>"),
    Options.withDefault("tier1")
  ),
  port: count("port", "Port (0 picks a free one)", 4010),
  host: Options.text("host").pipe(
    Options.withDescription("Interface (loopback by default)"),
    Options.withDefault("127.0.0.1")
  )
} as const

type SimOptions = Command.Command.ParseConfig<typeof options>

/** @internal */
export const handler = (env: Environment) => (options: SimOptions) =>
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
