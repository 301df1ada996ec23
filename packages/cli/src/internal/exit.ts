/**
 * What the `sluice` process makes of the CLI's exit when `Cli.run` fails: the exit code and the line it writes
 * to stderr. main.ts applies it to the process; the CLI tests that run `sluice` in process read the same.
 *
 * @internal
 */
import * as ValidationError from "@effect/cli/ValidationError"
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"

/**
 * The exit codes (`Cli.ExitCode`, documented there; here for `main.ts`, which does not load `Cli.ts`'s library).
 *
 * @internal
 */
export const ExitCode = { Done: 0, SomeFailed: 1, BadUsage: 2, Stopped: 3 } as const

/** @internal */
export interface Failed {
  readonly exitCode: number
  /** What the process writes to stderr (`undefined`: @effect/cli has printed the problem and the usage). */
  readonly stderr: string | undefined
}

/**
 * A failed run's exit code and stderr line; `undefined` for a successful run (its exit code is the one the run
 * set). `badUsage` is {@link ExitCode}'s `BadUsage` (given by the caller).
 *
 * @internal
 */
export const failed = (exit: Exit.Exit<unknown, unknown>, badUsage: number): Failed | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    if (ValidationError.isValidationError(failure.value)) {
      return { exitCode: ValidationError.isHelpRequested(failure.value) ? 0 : badUsage, stderr: undefined }
    }
    const error = failure.value as { readonly message?: string }
    return { exitCode: badUsage, stderr: `sluice: ${error.message ?? String(failure.value)}\n` }
  }
  return { exitCode: 1, stderr: `sluice: ${Cause.pretty(exit.cause)}\n` }
}
