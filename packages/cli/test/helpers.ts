// Shared by the CLI's process tests.
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Cli } from "@sluice/cli"
import { SimConfig, type SimStats, Simulator } from "@sluice/testing"
import { SimServer } from "@sluice/testing/node"
import * as ConfigProvider from "effect/ConfigProvider"
import type * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type { ChildProcess } from "node:child_process"
import * as NodeCrypto from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import * as ProcessExit from "../src/internal/exit.js"

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

/** A chat completion's body: one user message. */
export const chatBody = (model: string, content: string, maxTokens: number) => ({
  model,
  messages: [{ role: "user", content }],
  max_tokens: maxTokens
})

/** Writes `n` Batch-API chat lines at once: `custom_id` `<prefix>-<i>`, the body from `body(i)`. */
export const writeChatLines = (path: string, n: number, prefix: string, body: (i: number) => object) => {
  const line = (i: number) =>
    JSON.stringify({ custom_id: `${prefix}-${i}`, method: "POST", url: "/v1/chat/completions", body: body(i) })
  NodeFs.writeFileSync(path, Array.from({ length: n }, (_, i) => `${line(i)}\n`).join(""))
}

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

/**
 * `sluice run --simulate <scenario> --speed 20 --progress off --record <record>` over `input` into `output`, in
 * this process (`capture`), with `extra` options.
 */
export const runRecorded = (options: {
  readonly input: string
  readonly output: string
  readonly simulate: string
  readonly record: string
  readonly extra?: ReadonlyArray<string>
}) =>
  capture([
    "run",
    "--input",
    options.input,
    "--output",
    options.output,
    "--simulate",
    options.simulate,
    "--speed",
    "20",
    "--progress",
    "off",
    "--record",
    options.record,
    ...(options.extra ?? [])
  ])

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

/**
 * `sluice <argv…>` in this process as the `sluice` process would run it, for the process tests whose run needs no
 * process of its own (no signal, no kill, no heap limit, no lock held by another process): what it writes to stdout
 * and to stderr (its console, its logs, its progress, and main.ts's line for a failed run: `ProcessExit.failed`), and its exit code
 * (main.ts's for a failed run, else the one the run set, else 0). `env` is read before the process's environment
 * (`--api-key-env` and the other variables the CLI reads through `Config`); no stop signal, not a terminal.
 */
export const sluiceInProcess = (
  argv: ReadonlyArray<string>,
  env: Record<string, string> = {}
): Promise<{ readonly code: number; readonly out: string; readonly err: string }> => {
  let out = ""
  let err = ""
  const toOut = (...args: ReadonlyArray<any>) => {
    out += args.join(" ") + "\n"
  }
  const toErr = (...args: ReadonlyArray<any>) => {
    err += args.join(" ") + "\n"
  }
  let exitCode: number | undefined
  return Effect.runPromise(Effect.gen(function*() {
    const base = yield* Effect.console
    const console: Console.Console = {
      ...base,
      log: (...args: ReadonlyArray<any>) => Effect.sync(() => toOut(...args)),
      error: (...args: ReadonlyArray<any>) => Effect.sync(() => toErr(...args)),
      unsafe: { ...base.unsafe, log: toOut, error: toErr }
    } as Console.Console
    const config = ConfigProvider.fromMap(new Map(Object.entries(env))).pipe(
      ConfigProvider.orElse(() => ConfigProvider.fromEnv())
    )
    const exit = yield* Cli.run(["node", "sluice", ...argv], {
      stop: Effect.never,
      setExitCode: (code) => {
        exitCode = code
      },
      isTTY: false,
      writeProgress: (text) =>
        Effect.sync(() => {
          err += text
        })
    }).pipe(
      Effect.withConsole(console),
      Effect.withConfigProvider(config),
      Effect.provide(NodeContext.layer),
      Effect.exit
    )
    const failure = ProcessExit.failed(exit, Cli.ExitCode.BadUsage)
    if (failure?.stderr !== undefined) err += failure.stderr
    return { code: failure?.exitCode ?? exitCode ?? 0, out, err }
  }))
}

const root = fileURLToPath(new URL("../../../", import.meta.url))

/**
 * What a bundle of the CLI is built from: every package's sources and manifest, the lockfile, the root manifest
 * and TypeScript options, and this file (the build's options).
 */
const bundleInputs = (): Array<string> => {
  const files = ["pnpm-lock.yaml", "package.json", "tsconfig.base.json"].map((name) => NodePath.join(root, name))
  files.push(fileURLToPath(import.meta.url))
  const walk = (dir: string) => {
    for (const entry of NodeFs.readdirSync(dir, { withFileTypes: true })) {
      const path = NodePath.join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else files.push(path)
    }
  }
  for (const name of NodeFs.readdirSync(NodePath.join(root, "packages"))) {
    const dir = NodePath.join(root, "packages", name)
    if (NodeFs.existsSync(NodePath.join(dir, "package.json"))) files.push(NodePath.join(dir, "package.json"))
    if (NodeFs.existsSync(NodePath.join(dir, "src"))) walk(NodePath.join(dir, "src"))
  }
  return files.sort()
}

const BUNDLE_PREFIX = "sluice-cli-test-"

/** Bundles of other sources (other worktrees, earlier edits) not used for a day are removed. */
const removeStaleBundles = () => {
  const dayAgo = Date.now() - 86_400_000
  for (const name of NodeFs.readdirSync(NodeOs.tmpdir())) {
    if (!name.startsWith(BUNDLE_PREFIX) || !name.endsWith(".mjs")) continue
    try {
      const path = NodePath.join(NodeOs.tmpdir(), name)
      if (NodeFs.statSync(path).mtimeMs < dayAgo) NodeFs.rmSync(path, { force: true })
    } catch {
      // removed by another run
    }
  }
}

let entry: Promise<string> | undefined

/**
 * The file the process tests start `sluice` with (`node <file> run …`): packages/cli/src/main.ts bundled into one
 * ES module (esbuild through tsup, the "sluice-source" condition, every dependency inlined) in the OS's temporary
 * directory, built once and reused while what it is built from is unchanged (its name is their hash). It is the
 * program bin/sluice.mjs runs in the workspace, without the bin's cost there: tsx transpiles every source file in
 * each process, about 4 s of CPU a start against about 1 s for the bundle, and the process tests start the CLI some
 * 45 times. Each workspace source keeps its own `import.meta.url` (the CLI finds its package.json by it, the token
 * counter its tokenizer), so the bundle reads and loads what the sources do. bin/sluice.mjs itself is started by
 * e2e.test.ts's bad-usage case; the built dist/ by the consumer test.
 */
export const sluiceEntry = (): Promise<string> => {
  entry ??= (async () => {
    const hash = NodeCrypto.createHash("sha256").update(`node ${process.version}\n`)
    for (const file of bundleInputs()) {
      hash.update(`${NodePath.relative(root, file)}\n`).update(NodeFs.readFileSync(file))
    }
    const file = NodePath.join(NodeOs.tmpdir(), `${BUNDLE_PREFIX}${hash.digest("hex").slice(0, 16)}.mjs`)
    if (NodeFs.existsSync(file)) {
      const now = new Date()
      NodeFs.utimesSync(file, now, now)
      return file
    }
    removeStaleBundles()
    const outDir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-cli-build-"))
    try {
      const { build } = await import("tsup")
      const sources = NodePath.join(root, "packages") + NodePath.sep
      await build({
        config: false,
        silent: true,
        entry: { main: NodePath.join(root, "packages/cli/src/main.ts") },
        outDir,
        format: ["esm"],
        platform: "node",
        target: "node20",
        splitting: false,
        sourcemap: false,
        dts: false,
        noExternal: [/./],
        esbuildOptions: (options) => {
          options.conditions = ["sluice-source"]
          // the CommonJS dependencies bundled into an ES module still call require (node built-ins)
          options.banner = {
            js: "import { createRequire as __sluiceCreateRequire } from \"node:module\"\n" +
              "const require = __sluiceCreateRequire(import.meta.url)"
          }
        },
        esbuildPlugins: [{
          name: "source-import-meta-url",
          setup: (plugin) => {
            plugin.onLoad({ filter: /\.ts$/ }, (args) => {
              if (!args.path.startsWith(sources)) return undefined
              const text = NodeFs.readFileSync(args.path, "utf8")
              return {
                contents: text.replaceAll("import.meta.url", JSON.stringify(pathToFileURL(args.path).href)),
                loader: "ts"
              }
            })
          }
        }]
      })
      // two forks may build at once: each renames its own complete file into place
      NodeFs.renameSync(NodePath.join(outDir, "main.js"), file)
      return file
    } finally {
      NodeFs.rmSync(outDir, { recursive: true, force: true })
    }
  })()
  return entry
}

/** A child's stdout and stderr as they come, and its exit (code and signal). */
export const collect = (child: ChildProcess) => {
  let stdout = ""
  let stderr = ""
  child.stdout!.on("data", (d) => (stdout += d))
  child.stderr!.on("data", (d) => (stderr += d))
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal }))
  )
  return { done, out: () => stdout, err: () => stderr }
}

/**
 * A pipeline file of two stages (a gpt-4o-mini summary, then its embedding), `concurrency` workers each per
 * process; the vector stage with a budget of `perSecond` requests a second when given. Request keys
 * `<name>/<key>/<stage>`.
 */
export const twoStages = (name: string, perSecond?: number, concurrency = 3) => ({
  name,
  id: "key",
  stages: [
    {
      name: "summary",
      url: "/v1/chat/completions",
      concurrency,
      body: {
        model: "gpt-4o-mini",
        max_tokens: 8,
        messages: [{ role: "user", content: `[req:${name}/{{key}}/summary] Summarize: {{text}}` }]
      }
    },
    {
      name: "vector",
      url: "/v1/embeddings",
      concurrency,
      ...(perSecond === undefined
        ? {}
        : { budget: [{ dimension: "requests", amount: perSecond, window: "second", burst: 1 }] }),
      body: { model: "text-embedding-3-small", input: `[req:${name}/{{key}}/vector] {{summary}}` }
    }
  ]
})
