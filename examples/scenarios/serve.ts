/**
 * Serves a scenario over HTTP until interrupted (Ctrl-C):
 *
 *   node scripts/run-ts.mjs examples/scenarios/serve.ts examples/scenarios/overloaded.json 4010
 *
 * then point a client at the printed base URL, e.g. `new OpenAI({ baseURL: "http://127.0.0.1:4010/v1" })`.
 */
import { NodeFileSystem, NodeRuntime } from "@effect/platform-node"
import { Simulator } from "@sluice/testing"
import { SimServer } from "@sluice/testing/node"
import { Effect, Layer } from "effect"

const [file = "examples/scenarios/tier1.json", port = "4010"] = process.argv.slice(2)

const program = Effect.gen(function*() {
  const { url } = yield* SimServer.serve({ port: Number(port) })
  yield* Effect.log(`simulated OpenAI (${file}) at ${url}`)
  return yield* Effect.never
})

program.pipe(
  Effect.scoped,
  Effect.provide(Simulator.layerFile(file).pipe(Layer.provide(NodeFileSystem.layer))),
  NodeRuntime.runMain
)
