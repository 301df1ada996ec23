/**
 * The option declarations the commands share: builders, the options of where the calls go (`connectOptions`) and
 * the progress display. Every command's options are read at start-up (`--help` and validation need them), so this
 * module imports only `@effect/cli`'s `Options`: what the handlers share is in `handler.ts`, loaded with them.
 *
 * @internal
 */
import type * as CliApp from "@effect/cli/CliApp"
import type * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import type * as Effect from "effect/Effect"

/**
 * What a command's handler returns, as the tree sees it: its errors are `Cli.run`'s (`unknown`), so that the tree
 * names no type of the library its handler loads.
 *
 * @internal
 */
export type Handled = Effect.Effect<void, unknown, CliApp.CliApp.Environment>

/**
 * An option that may be left out, with its description.
 *
 * @internal
 */
export const optional = <A>(option: Options.Options<A>, description: string) =>
  option.pipe(Options.withDescription(description), Options.optional)

/**
 * A whole-number option with a description and a default.
 *
 * @internal
 */
export const count = (name: string, description: string, fallback: number) =>
  Options.integer(name).pipe(Options.withDescription(description), Options.withDefault(fallback))

/**
 * `--input FILE` (it must exist), with its description.
 *
 * @internal
 */
export const inputOption = (description: string) =>
  Options.file("input", { exists: "yes" }).pipe(Options.withDescription(description))

/**
 * `--output FILE`, with its description.
 *
 * @internal
 */
export const outputOption = (description: string) => Options.file("output").pipe(Options.withDescription(description))

/** @internal */
export const tierOption = Options.choice("tier", ["1", "2", "3", "4", "5"])

/** @internal */
export const errorsOption = optional(
  Options.file("errors"),
  "Errors file for rejected input lines (JSONL); default <output>.errors.jsonl"
)

/** @internal */
export const progressOption = Options.choice("progress", ["auto", "line", "log", "off"]).pipe(
  Options.withDescription("Progress display: live line on a terminal, log lines otherwise (auto)"),
  Options.withDefault("auto")
)

/**
 * An interface to listen on, loopback (`127.0.0.1`) unless given: `sim --host`, `run --metrics-host`.
 *
 * @internal
 */
export const hostOption = (name: string, description: string) =>
  Options.text(name).pipe(Options.withDescription(description), Options.withDefault("127.0.0.1"))

/**
 * The options `run`, `pipeline run` and `pipeline worker` share: where the calls go and under which limits.
 *
 * @internal
 */
export const connectOptions = {
  baseUrl: optional(
    Options.text("base-url"),
    "OpenAI-compatible base URL (default $OPENAI_BASE_URL, else https://api.openai.com/v1)"
  ),
  apiKeyEnv: Options.text("api-key-env").pipe(
    Options.withDescription("Name of the environment variable holding the API key"),
    Options.withDefault("OPENAI_API_KEY")
  ),
  tier: optional(tierOption, "Usage tier presets for the limits (1-5)"),
  limits: optional(
    Options.file("limits", { exists: "yes" }),
    "Limits file (JSON: {models: {<model>: {rpm, tpm, rpd, tpd, ipm, enqueuedTokens}}})"
  ),
  redis: optional(
    Options.text("redis"),
    "Keep the budgets on Redis (redis://host:port) so that several sluice processes share one set of limits; needs @sluice/redis"
  ),
  simulate: optional(
    Options.text("simulate"),
    "Run against the embedded simulator: tier1 | tier5 | free | <scenario.json>"
  ),
  speed: Options.float("speed").pipe(
    Options.withDescription(
      "With --simulate: run simulated time this many times faster than real time (figures are in simulated time)"
    ),
    Options.withDefault(1)
  )
} as const

/** @internal */
export type ConnectOptions = Command.Command.ParseConfig<typeof connectOptions>
