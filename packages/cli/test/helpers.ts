// Shared by the CLI's process tests.
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Cli } from "@sluice/cli"
import { SimConfig, type SimStats, Simulator } from "@sluice/testing"
import { SimServer } from "@sluice/testing/node"
import type * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as NodeFs from "node:fs"

/** A running HTTP simulator. */
export interface Sim {
  readonly url: string
  readonly stats: () => Promise<SimStats.Snapshot>
  readonly close: () => Promise<void>
}

/** The HTTP simulator on a free loopback port, with real time, accepting `key`. */
export const startSim = (key: string, input: Partial<SimConfig.ScenarioInput> = {}): Promise<Sim> =>
  Effect.runPromise(Effect.gen(function*() {
    const scope = yield* Scope.make()
    const simulator = yield* Simulator.make(SimConfig.make({
      name: "e2e",
      seed: 11,
      apiKeys: [key],
      models: {
        "gpt-4o-mini": { limits: { rpm: 60_000, tpm: 20_000_000 }, contextWindow: 128_000 },
        "gpt-4o": { limits: { rpm: 60_000, tpm: 5_000_000 }, contextWindow: 128_000 },
        "text-embedding-3-small": { kind: "embedding", limits: { rpm: 60_000, tpm: 50_000_000 } }
      },
      latency: { request: { _tag: "uniform", min: 0, max: 20 }, perOutputTokenMs: 0 },
      output: { fixedTokens: 4 },
      ...input
    }))
    const address = yield* SimServer.serve({ port: 0 }).pipe(
      Effect.provideService(Simulator.Simulator, simulator),
      Scope.extend(scope)
    )
    return {
      url: address.url,
      stats: () => Effect.runPromise(simulator.stats),
      close: () => Effect.runPromise(Scope.close(scope, Exit.void))
    }
  }))

/**
 * Writes `n` Batch-API chat lines (`custom_id` `id-<i>`, models alternating gpt-4o-mini / gpt-4o), the body's
 * user message from `content(i)`, in 1 MiB writes.
 */
export const writeChatInput = (path: string, n: number, content: (i: number) => string) => {
  const fd = NodeFs.openSync(path, "w")
  let chunk = ""
  for (let i = 0; i < n; i++) {
    const body = {
      model: i % 2 === 0 ? "gpt-4o-mini" : "gpt-4o",
      messages: [{ role: "user", content: content(i) }],
      max_tokens: 16
    }
    chunk += JSON.stringify({ custom_id: `id-${i}`, method: "POST", url: "/v1/chat/completions", body }) + "\n"
    if (chunk.length > 1 << 20) {
      NodeFs.writeSync(fd, chunk)
      chunk = ""
    }
  }
  NodeFs.writeSync(fd, chunk)
  NodeFs.closeSync(fd)
}

/** `sluice <argv…>` in this process (no stop signal, not a terminal): its exit, what it logged and its exit code. */
export const capture = (argv: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const out: Array<string> = []
    const err: Array<string> = []
    let exitCode: number | undefined
    const base = yield* Effect.console
    const console: Console.Console = {
      ...base,
      log: (...args: ReadonlyArray<any>) => Effect.sync(() => out.push(args.join(" "))),
      error: (...args: ReadonlyArray<any>) => Effect.sync(() => err.push(args.join(" ")))
    } as Console.Console
    const exit = yield* Cli.run(["node", "sluice", ...argv], {
      stop: Effect.never,
      setExitCode: (code) => {
        exitCode = code
      },
      isTTY: false,
      writeProgress: () => Effect.void
    }).pipe(Effect.withConsole(console), Effect.provide(NodeContext.layer), Effect.exit)
    return { exit, out: out.join("\n"), err: err.join("\n"), exitCode }
  })
