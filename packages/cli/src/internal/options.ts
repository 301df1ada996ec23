/**
 * What every command of `sluice` shares: bad usage as an error, option builders, the progress display's mode and
 * the closing line of a simulated run.
 *
 * @internal
 */
import * as Options from "@effect/cli/Options"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import type { Environment } from "../Cli.js"
import { UsageError } from "../Cli.js"

/**
 * Bad usage (exit code 2) with its message.
 *
 * @internal
 */
export const usage = (message: string): UsageError => new UsageError({ message })

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
 * `--progress auto`: a live line on a terminal, log lines otherwise.
 *
 * @internal
 */
export const progressMode = (
  option: "auto" | "line" | "log" | "off",
  env: Environment
): "line" | "log" | "off" => option === "auto" ? (env.isTTY ? "line" : "log") : option

/**
 * After a run at `--speed N`: how much real time it took (the summary's figures are in simulated time).
 *
 * @internal
 */
export const logRealTime = (speed: number, realStart: number): Effect.Effect<void> =>
  speed === 1
    ? Effect.void
    : Console.log(`simulated time ${speed}x: ${((Date.now() - realStart) / 1000).toFixed(1)}s of real time`)
