/**
 * What the commands' handlers share: bad usage as an error, the progress display's mode and the closing line of a
 * simulated run. Loaded with the handlers, when a command runs (`options.ts` holds what start-up reads).
 *
 * @internal
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import type { Environment } from "../Cli.js"
import { UsageError } from "./usageError.js"

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
 * A Redis URL given to `--redis` (or the variable `--redis-env` names), checked once so that every client reads it
 * the same way: ioredis (the budgets' store) would take `user:token@host` as a host name, BullMQ (a distributed
 * pipeline's queues) as the scheme `user:`. `redis://` or `rediss://` (TLS; the scheme in any case), a host, and a
 * database number if a path is given. The message shows scheme and host at most ({@link shownUrl}).
 *
 * @internal
 */
export const checkRedisUrl = (text: string, from: string): Effect.Effect<string, UsageError> => {
  const trimmed = text.trim()
  let url: URL | undefined
  try {
    url = new URL(trimmed)
  } catch {
    url = undefined
  }
  const expected = "redis://[user:password@]host[:port][/db] or rediss://… (TLS)"
  if (url === undefined || (url.protocol !== "redis:" && url.protocol !== "rediss:") || url.hostname === "") {
    const shown = shownUrl(trimmed)
    return Effect.fail(
      usage(`${from}: not a Redis URL (${shown ?? "not shown: it may hold a password"}); give ${expected}`)
    )
  }
  if (url.pathname.length > 1 && !/^\/\d+$/.test(url.pathname)) {
    return Effect.fail(
      usage(`${from} ${shownUrl(trimmed)}: the path must be a database number (/0, /1, …); give ${expected}`)
    )
  }
  return Effect.succeed(trimmed)
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
