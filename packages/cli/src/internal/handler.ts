/**
 * What the commands' handlers share: bad usage as an error, the progress display's mode and the closing line of a
 * simulated run. Loaded with the handlers, when a command runs (`options.ts` holds what start-up reads).
 *
 * @internal
 */
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
 * What a message may show of a URL given to an option (`--otlp`, `--base-url`, `--cache redis://…`): its scheme and
 * host when it parses with a host, else nothing of it. Never its credentials, path or query: a value without its
 * scheme, `user:token@host`, parses as scheme `user:` with no host and is not shown at all.
 *
 * @internal
 */
export const shownUrl = (text: string): string | undefined => {
  try {
    const url = new URL(text.trim())
    return url.host === "" ? undefined : `${url.protocol}//${url.host}`
  } catch {
    return undefined
  }
}

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
