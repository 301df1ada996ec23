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
 * A command's handler module, loaded when the command runs (start-up loads only the tree): a package that is not
 * installed (Node's `ERR_MODULE_NOT_FOUND` / `MODULE_NOT_FOUND` naming a package) is a {@link UsageError} saying
 * what to install, not a defect with a stack trace. Any other failure to load (a module of the CLI's own missing, an
 * error thrown while a module loads) is a defect, with its stack: a broken install or a bug, not the user's usage.
 *
 * @internal
 */
export const loadHandler = <M>(command: string, load: () => Promise<M>): Effect.Effect<M, UsageError> =>
  Effect.tryPromise({ try: load, catch: (cause) => cause }).pipe(
    Effect.catchAll((cause) => {
      const pkg = missingPackage(cause)
      return pkg === undefined
        ? Effect.die(cause)
        : Effect.fail(
          new UsageError({
            message: `sluice ${command} needs the ${pkg} package, which is not installed: npm install ${pkg}`
          })
        )
    })
  )
