/**
 * The `sluice` command tree and its run: what `main.ts` starts, `Cli.command` and `Cli.run`. Each command's options
 * are read at start-up (`*Command.ts`: `--help` and validation need them); its handler (`*Handler.ts`) is loaded when
 * the command runs. So `sluice --version` or `sluice run --help` load none of the commands' dependencies (the
 * library, the OpenAI SDK, the simulator): this module and the `*Command.ts` ones import no value from `Cli.ts`,
 * which imports the library.
 *
 * @internal
 */
import type * as CliApp from "@effect/cli/CliApp"
import * as Command from "@effect/cli/Command"
import type * as ValidationError from "@effect/cli/ValidationError"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Predicate from "effect/Predicate"
import * as NodeFs from "node:fs"
import type { Environment } from "../Cli.js"
import * as PipelineCommand from "./pipelineCommand.js"
import * as PlanCommand from "./planCommand.js"
import * as ReportCommand from "./reportCommand.js"
import * as RunCommand from "./runCommand.js"
import * as SimCommand from "./simCommand.js"

// `--version`: the version in this package's package.json, two directories above this module: src/internal in the
// workspace, dist/esm or dist/cjs in an installed package.
const packageVersion = (): string => {
  try {
    const pkg: unknown = JSON.parse(NodeFs.readFileSync(new URL("../../package.json", import.meta.url), "utf8"))
    if (Predicate.isRecord(pkg) && pkg.name === "@sluice/cli" && typeof pkg.version === "string") return pkg.version
  } catch {
    // not there
  }
  return "unknown"
}

/** @internal */
export const logToStderr: Layer.Layer<never> = Logger.replace(
  Logger.defaultLogger,
  Logger.withConsoleError(Logger.stringLogger)
)

/** @internal */
export const command = (env: Environment) =>
  Command.make("sluice").pipe(
    Command.withDescription("Keep OpenAI calls at the provider's rate limit"),
    Command.withSubcommands([
      Command.make("run", RunCommand.options, RunCommand.handler(env)).pipe(
        Command.withDescription("Run a Batch API JSONL file at the provider's limit (resumable)")
      ),
      Command.make("pipeline").pipe(
        Command.withDescription("Stage pipelines: each item through every stage, each stage with its own budget"),
        Command.withSubcommands([
          Command.make("run", PipelineCommand.runOptions, PipelineCommand.runHandler(env)).pipe(
            Command.withDescription("Run a pipeline file over an input JSONL into an output JSONL (resumable)")
          ),
          Command.make("worker", PipelineCommand.workerOptions, PipelineCommand.workerHandler(env)).pipe(
            Command.withDescription(
              "Work a distributed pipeline's stages from its BullMQ queues on --redis, until stopped"
            )
          )
        ])
      ),
      Command.make("sim", SimCommand.options, SimCommand.handler(env)).pipe(
        Command.withDescription("Serve the simulated OpenAI over HTTP (loopback)")
      ),
      Command.make("plan", PlanCommand.options, PlanCommand.handler).pipe(
        Command.withDescription("Capacity plan: binding limit, time to drain, peak headroom, cost")
      ),
      Command.make("report", ReportCommand.options, ReportCommand.handler).pipe(
        Command.withDescription("Render run records (sluice run --record) as one self-contained HTML page")
      )
    ])
  )

/** @internal */
export const run = (
  argv: ReadonlyArray<string>,
  env: Environment
): Effect.Effect<void, unknown | ValidationError.ValidationError, CliApp.CliApp.Environment> =>
  Command.run(command(env), { name: "sluice", version: packageVersion() })(argv).pipe(Effect.provide(logToStderr))
