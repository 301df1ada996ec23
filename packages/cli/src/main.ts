/**
 * The process entry point of the `sluice` bin: signals, exit codes, Node context.
 *
 * @since 0.1.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
// the command tree, not the package's main entry point (Cli.ts, Plan.ts), which loads the whole library: a command's
// handler loads what it needs when it runs (in dist/esm, main.js shares the main entry point's chunks)
import { run } from "./internal/command.js"
import { ExitCode, failed } from "./internal/exit.js"

const stop = Deferred.unsafeMake<void>(FiberId.none)
let signals = 0
const onSignal = () => {
  signals++
  if (signals === 1) {
    process.stderr.write("\nstopping: no new requests; finishing those in flight (signal again to abort now)\n")
    Deferred.unsafeDone(stop, Exit.void)
  } else {
    // Abort: in-flight requests are not written; a rerun retries them.
    process.exit(ExitCode.Stopped)
  }
}
process.on("SIGINT", onSignal)
process.on("SIGTERM", onSignal)

const program = run(process.argv, {
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
  const failure = failed(exit, ExitCode.BadUsage)
  if (failure === undefined) return
  if (failure.stderr !== undefined) process.stderr.write(failure.stderr)
  process.exitCode = failure.exitCode
})
