/**
 * `UsageError`, in a module of its own: `Cli.ts` re-exports it, and the commands' modules (loaded at start-up) and
 * their handlers (loaded when a command runs) import it from here, not from `Cli.ts`, which imports them.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

/**
 * Bad usage (exit code 2): a missing key, a bad limits file, an unknown scenario, a missing peer dependency.
 *
 * @since 0.1.0
 * @category errors
 * @example
 * ```ts
 * import { Cli } from "@sluice/cli"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.catchTag(
 *   Cli.run(["node", "sluice", "run", "--input", "missing.jsonl", "--output", "out.jsonl"], {
 *     stop: Effect.never,
 *     setExitCode: () => {},
 *     isTTY: false,
 *     writeProgress: () => Effect.void
 *   }),
 *   "UsageError",
 *   (error) => Effect.logError(error.message)
 * )
 * ```
 */
export class UsageError extends Schema.TaggedError<UsageError>("@sluice/cli/UsageError")("UsageError", {
  message: Schema.String
}) {}

/** The package a failed `import()` could not find, from Node's message (`Cannot find package 'openai' …`). */
const missingPackage = (cause: unknown): string | undefined => {
  const code = (cause as { readonly code?: unknown } | null)?.code
  if (code !== "ERR_MODULE_NOT_FOUND" && code !== "MODULE_NOT_FOUND") return undefined
  const m = /Cannot find (?:package|module) '((?:@[^/']+\/)?[^/'.][^/']*)/.exec(String((cause as Error).message))
  return m?.[1]
}

/**
 * A command's handler module, loaded when the command runs (start-up loads only the tree): a module that cannot be
 * loaded is a {@link UsageError} naming the command and, when Node says which, the package to install, not a
 * defect with a stack trace.
 *
 * @internal
 */
export const loadHandler = <M>(command: string, load: () => Promise<M>): Effect.Effect<M, UsageError> =>
  Effect.tryPromise({
    try: load,
    catch: (cause) => {
      const pkg = missingPackage(cause)
      const why = cause instanceof Error ? cause.message.split("\n")[0] : String(cause)
      return new UsageError({
        message: pkg === undefined
          ? `sluice ${command} could not load its modules (${why}): reinstall @sluice/cli`
          : `sluice ${command} needs the ${pkg} package, which is not installed: npm install ${pkg}`
      })
    }
  })
