/**
 * The process entry point of the `sluice` bin: signals, exit codes, Node context.
 *
 * @since 0.1.0
 */
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
// by the package's own name, so that the built bin shares the main entry point's classes
import { Cli } from "@sluice/cli"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"

const stop = Deferred.unsafeMake<void>(FiberId.none)
let signals = 0
const onSignal = () => {
  signals++
  if (signals === 1) {
    process.stderr.write("\nstopping: no new requests; finishing those in flight (signal again to abort now)\n")
    Deferred.unsafeDone(stop, Exit.void)
  } else {
    // Abort: in-flight requests are not written; a rerun retries them.
    process.exit(Cli.ExitCode.Stopped)
  }
}
process.on("SIGINT", onSignal)
process.on("SIGTERM", onSignal)

const program = Cli.run(process.argv, {
  stop: Deferred.await(stop),
  setExitCode: (code) => {
    process.exitCode = code
  },
  isTTY: process.stderr.isTTY === true,
  writeProgress: (text) =>
    Effect.async<void>((resume) => {
      process.stderr.write(text, () => resume(Effect.void))
    })
}).pipe(Effect.provide(NodeContext.layer))

Effect.runPromiseExit(program).then((exit) => {
  if (Exit.isSuccess(exit)) return
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    const error = failure.value as { readonly _tag?: string; readonly message?: string }
    if (ValidationError.isValidationError(failure.value)) {
      // @effect/cli has printed the problem and the usage
      process.exitCode = ValidationError.isHelpRequested(failure.value) ? 0 : Cli.ExitCode.BadUsage
      return
    }
    process.stderr.write(`sluice: ${error.message ?? String(failure.value)}\n`)
    process.exitCode = Cli.ExitCode.BadUsage
    return
  }
  process.stderr.write(`sluice: ${Cause.pretty(exit.cause)}\n`)
  process.exitCode = 1
})
