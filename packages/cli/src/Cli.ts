/**
 * The `sluice` command: `run` (bulk Batch API JSONL at the provider's limit, resumable), `pipeline` (stage
 * pipelines from a file, in one process or on BullMQ workers), `sim` (the simulated OpenAI over HTTP), `plan`
 * (capacity planning) and `report` (run records as an HTML page and limit-increase evidence).
 *
 * This module is the command's surface: its tree, what the process gives it ({@link Environment}), its errors and
 * exit codes, and the helpers it shares with programs that drive a run themselves. The tree is `internal/command.ts`;
 * each command's options live in `internal/` (`runCommand.ts`, `pipelineCommand.ts`, `simCommand.ts`,
 * `planCommand.ts`, `reportCommand.ts`), its handler beside them (`runHandler.ts`, ...), loaded when the command runs
 * (`connect.ts` builds the executor from the options they share).
 *
 * @since 0.1.0
 */
import type * as CliApp from "@effect/cli/CliApp"
import type * as ValidationError from "@effect/cli/ValidationError"
import { BulkRunner } from "@sluice/openai"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as NodePath from "node:path"
// The commands' handlers import this module's errors and helpers back; nothing of theirs runs before a command does.
import * as internal from "./internal/command.js"
import * as ProcessExit from "./internal/exit.js"
import { shownUrl, usage } from "./internal/handler.js"
import type { UsageError } from "./internal/usageError.js"

export {
  /**
   * Bad usage (exit code 2): a missing key, a bad limits file, an unknown scenario, a missing peer dependency.
   *
   * @since 0.1.0
   * @category errors
   */
  UsageError
} from "./internal/usageError.js"

/**
 * What the process entry point gives the commands.
 *
 * @since 0.1.0
 * @category models
 */
export interface Environment {
  /** Completes on the first SIGINT/SIGTERM: `run` stops gracefully, `sim` shuts down. */
  readonly stop: Effect.Effect<void>
  /** Sets the process exit code. */
  readonly setExitCode: (code: number) => void
  /** Whether stdout is a terminal (live progress line). */
  readonly isTTY: boolean
  /** Writes progress text as is (no newline added). */
  readonly writeProgress: (text: string) => Effect.Effect<void>
}

/**
 * The logger of the `sluice` process: Effect's default format, to stderr (stdout carries only the summary).
 *
 * @since 0.1.0
 * @category commands
 * @example
 * ```ts
 * import { Cli } from "@sluice/cli"
 * import * as Effect from "effect/Effect"
 *
 * Effect.logError("to stderr").pipe(Effect.provide(Cli.logToStderr), Effect.runSync)
 * ```
 */
export const logToStderr: Layer.Layer<never> = internal.logToStderr

// -----------------------------------------------------------------------------------------------------------
// run: exit codes, progress, the server's URL, the files beside the output
// -----------------------------------------------------------------------------------------------------------

/**
 * The exit codes of `sluice`: 0 all done, 1 some lines failed (or input lines were invalid), 2 bad usage (a
 * missing key, a bad option or file, a path or lock refused), 3 stopped early (resumable: rerun with the same
 * `--output`).
 *
 * @since 0.2.0
 * @category run
 */
export const ExitCode = ProcessExit.ExitCode

/**
 * @since 0.2.0
 * @category run
 */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

const exitCodes: { readonly [outcome in BulkRunner.Outcome]: ExitCode } = {
  completed: ExitCode.Done,
  "completed-with-failures": ExitCode.SomeFailed,
  stopped: ExitCode.Stopped
}

/**
 * The exit code of `sluice run` for a run's summary, by its outcome (`sluice pipeline run`'s likewise, for a
 * `PipelineFile.Summary`).
 *
 * @since 0.2.0
 * @category run
 * @example
 * ```ts
 * import { Cli } from "@sluice/cli"
 * import type { BulkRunner } from "@sluice/openai"
 *
 * const done = (summary: BulkRunner.Summary) => Cli.exitCode(summary) === Cli.ExitCode.Done
 * ```
 */
export const exitCode = (summary: { readonly outcome: BulkRunner.Outcome }): ExitCode => exitCodes[summary.outcome]

/**
 * Shows a run's progress until interrupted (fork it next to the run), as `sluice run --progress` does: `line`
 * rewrites one terminal line in place every 250 ms (`\r`, erase to the end) and ends it with a newline when
 * interrupted; `log` writes a line every 5 seconds, and one more when interrupted. `extra` (since 0.2.0), when it
 * gives a text, is appended after ` | ` (the Batch API's batches, with `--via batch`).
 *
 * @since 0.2.0
 * @category run
 * @example
 * ```ts
 * import { Cli } from "@sluice/cli"
 * import { BulkRunner } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const progress = yield* BulkRunner.makeProgress
 *   yield* Effect.fork(Cli.renderProgress(progress, "line", (text) => Effect.sync(() => process.stderr.write(text))))
 * })
 * ```
 */
export const renderProgress = (
  progress: BulkRunner.Progress,
  mode: "line" | "log",
  write: (text: string) => Effect.Effect<void>,
  extra?: Effect.Effect<string | undefined>
): Effect.Effect<void> => {
  const withExtra = (text: string) =>
    extra === undefined
      ? Effect.succeed(text)
      : Effect.map(extra, (more) => (more === undefined ? text : `${text} | ${more}`))
  return mode === "line"
    ? BulkRunner.reportProgress(progress, {
      interval: "250 millis",
      report: (text, last) => Effect.flatMap(withExtra(text), (line) => write(`\r${line}\x1b[K${last ? "\n" : ""}`))
    })
    : BulkRunner.reportProgress(progress, {
      interval: "5 seconds",
      report: (text) => Effect.flatMap(withExtra(text), (line) => write(`${line}\n`))
    })
}

/**
 * Checks a base URL before anything is sent (a key must never go to a URL nobody meant): absolute, `http:` or
 * `https:`, not empty. A message never repeats the value (at most its scheme and host): it may hold credentials.
 *
 * @since 0.1.0
 * @category run
 */
export const checkBaseUrl = (
  source: { readonly text: string; readonly from: string }
): Effect.Effect<string, UsageError> => {
  const text = source.text.trim()
  if (text.length === 0) {
    return Effect.fail(usage(`${source.from} is empty: give the server's URL, e.g. https://api.openai.com/v1`))
  }
  // the value itself is never repeated: `user:token@host` (no scheme) would print a credential
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return Effect.fail(usage(`${source.from} is not an absolute URL (e.g. https://api.openai.com/v1)`))
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    const shown = shownUrl(text)
    return Effect.fail(
      usage(`${source.from} must be an http:// or https:// URL${shown === undefined ? "" : `, not ${shown}`}`)
    )
  }
  return Effect.succeed(text)
}

/**
 * `<output>.retried.jsonl` next to the output: where `--retry-failed` keeps the failure lines it resends.
 *
 * @since 0.1.0
 * @category run
 */
export const defaultRetriedPath = (output: string): string => besideOutput(output, "retried")

/**
 * `<output>.batch.json` next to the output (`results.jsonl` → `results.batch.json`): the Batch API job's state
 * with `--via batch|auto` (batch ids, file ids, which lines each holds), read and written under the output's lock
 * and its own (`results.batch.json.lock`: outputs `results.jsonl` and `results` share one state file).
 *
 * @since 0.2.0
 * @category run
 * @example
 * ```ts
 * import { Cli } from "@sluice/cli"
 *
 * Cli.defaultBatchStatePath("results.jsonl") // "results.batch.json"
 * ```
 */
export const defaultBatchStatePath = (output: string): string => {
  const ext = NodePath.extname(output)
  return `${ext === ".jsonl" ? output.slice(0, -ext.length) : output}.batch.json`
}

/**
 * `<output>.errors.jsonl` next to the output (`results.jsonl` → `results.errors.jsonl`).
 *
 * @since 0.1.0
 * @category run
 */
export const defaultErrorsPath = (output: string): string => besideOutput(output, "errors")

/** `<output>.<name>.jsonl`, the output's `.jsonl` extension (if any) dropped first. */
const besideOutput = (output: string, name: string): string => {
  const ext = NodePath.extname(output)
  return `${ext === ".jsonl" ? output.slice(0, -ext.length) : output}.${name}.jsonl`
}

// -----------------------------------------------------------------------------------------------------------
// plan
// -----------------------------------------------------------------------------------------------------------

/**
 * Parses `--mix` (`model=share,...`; a bare model means share 1).
 *
 * @since 0.1.0
 * @category plan
 */
export const parseMix = (
  text: string
): ReadonlyArray<{ readonly model: string; readonly share: number }> | undefined => {
  const entries = text.split(",").map((s) => s.trim()).filter((s) => s.length > 0).map((part) => {
    const [model, share] = part.split("=")
    return { model: model!.trim(), share: share === undefined ? 1 : Number(share) }
  })
  return entries.length === 0 || entries.some((e) => e.model.length === 0 || !(e.share > 0)) ? undefined : entries
}

// -----------------------------------------------------------------------------------------------------------
// the command
// -----------------------------------------------------------------------------------------------------------

/**
 * The `sluice` command tree (an `@effect/cli` `Command`) for an {@link Environment}: each command's options, its
 * handler loaded when it runs. {@link run} runs it; embed it in a CLI of your own with `Command.withSubcommands`.
 *
 * @since 0.1.0
 * @category commands
 * @example
 * ```ts
 * import * as Command from "@effect/cli/Command"
 * import { Cli } from "@sluice/cli"
 * import * as Effect from "effect/Effect"
 *
 * const sluice = Cli.command({
 *   stop: Effect.never,
 *   setExitCode: (code) => { process.exitCode = code },
 *   isTTY: false,
 *   writeProgress: (text) => Effect.sync(() => process.stderr.write(text))
 * })
 * // `mytool sluice run --input …` beside your own commands
 * const mytool = Command.make("mytool").pipe(Command.withSubcommands([sluice]))
 * ```
 */
export const command = internal.command

/**
 * Runs the CLI on `argv` (as `process.argv`).
 *
 * @since 0.1.0
 * @category commands
 * @example
 * ```ts
 * import { Cli } from "@sluice/cli"
 * import { NodeContext, NodeRuntime } from "@effect/platform-node"
 * import * as Effect from "effect/Effect"
 *
 * Cli.run(process.argv, {
 *   stop: Effect.never,
 *   setExitCode: (code) => { process.exitCode = code },
 *   isTTY: false,
 *   writeProgress: (text) => Effect.sync(() => process.stderr.write(text))
 * }).pipe(Effect.provide(NodeContext.layer), NodeRuntime.runMain)
 * ```
 */
export const run: (
  argv: ReadonlyArray<string>,
  env: Environment
) => Effect.Effect<void, unknown | ValidationError.ValidationError, CliApp.CliApp.Environment> = internal.run
