/**
 * `sluice sim`: the simulated OpenAI over HTTP on loopback until stopped, then its counters. Its options; the
 * handler (`simHandler.ts`) is loaded when the command runs.
 *
 * @internal
 */
import type * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import type { Environment } from "../Cli.js"
import { count, hostOption } from "./options.js"
import type { Handled } from "./options.js"
import { loadHandler } from "./usageError.js"

/** @internal */
export const options = {
  scenario: Options.text("scenario").pipe(
    Options.withDescription("tier1 | tier5 | free | <scenario.json>"),
    Options.withDefault("tier1")
  ),
  port: count("port", "Port (0 picks a free one)", 4010),
  host: hostOption("host", "Interface (loopback by default)")
} as const

/** @internal */
export type SimOptions = Command.Command.ParseConfig<typeof options>

/** @internal */
export const handler = (env: Environment) => (options: SimOptions): Handled =>
  Effect.flatMap(loadHandler("sim", () => import("./simHandler.js")), (sim) => sim.handler(env, options))
