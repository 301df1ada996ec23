/**
 * Benchmark (issues 14 and 15): token estimation on long text without whitespace, and the cost of importing
 * `@sluice/openai`, before and after counting became linear with a cap and the encodings lazy.
 *
 *   pnpm build                                     (the "after" dist: packages/core and packages/openai)
 *   node scripts/run-ts.mjs benchmarks/tokens.ts --before <index.cjs of the old build> [--no-write]
 *   node scripts/run-ts.mjs benchmarks/tokens.ts --estimation-only [--before-limit 60]
 *
 * `--estimation-only` measures estimation alone (no build needed) and rewrites only that section of
 * benchmarks/results/tokens.md, keeping the import section of the run that wrote it; `--before-limit S` caps
 * each "before" child at S seconds (the 1 MB and 5 MB rows of `a × n` never finish anyway).
 *
 * "Before" for estimation is what `TokenEstimator.countText` did until then: `gpt-tokenizer`'s `countTokens`
 * on the whole text, which byte-pair-encodes a run without whitespace as one piece (quadratic in its length).
 * Each "before" measurement runs in a child process with a time limit (a 5 MB run does not finish in
 * minutes), so a row can say "did not finish in N s". "After" is the public `TokenEstimator` of this
 * checkout. Import time: a fresh `node` per sample requiring the built CommonJS entry (`dist/cjs/index.cjs`)
 * of the old build (`--before`; build it from the old commit with `pnpm build` in a worktree) and of this
 * one, interleaved; the median of the samples.
 */
import { TokenEstimator } from "@sluice/openai"
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { loadavg, tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { gitState, loads, machine } from "./cli-harness.js"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const openaiDir = join(root, "packages", "openai")
const args = process.argv.slice(2)
const flag = (name: string) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : undefined
}
const before = flag("before")
const samples = Number(flag("samples") ?? 15)
const estimationOnly = args.includes("--estimation-only")
const beforeLimit = flag("before-limit") === undefined ? Infinity : Number(flag("before-limit"))
const writeResults = !args.includes("--no-write")
const startLoad = loadavg()

const MB = 1_000_000
const base64 = (n: number) => {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  let x = 20261206
  let s = ""
  for (let i = 0; i < n; i++) {
    x = (x * 1_103_515_245 + 12_345) >>> 0
    s += alphabet[(x >>> 8) % 64]
  }
  return s
}
/** Minified JSON records (no whitespace at all): words, numbers, punctuation, as in a serialized payload. */
const jsonLike = (n: number) => {
  const words = ["alpha", "Beta", "gamma", "delta_ray", "epsilon", "Zeta", "eta", "theta9", "iota", "kappa"]
  let x = 20261206
  const next = () => (x = (x * 1_103_515_245 + 12_345) >>> 0) >>> 8
  const parts: Array<string> = []
  let length = 0
  while (length < n) {
    const record = `{"id":${next() % 100_000},"name":"${words[next() % 10]}${words[next() % 10]}","tags":["${
      words[next() % 10]
    }","${words[next() % 10]}"],"score":${(next() % 10_000) / 100},"ok":${next() % 2 === 0}},`
    parts.push(record)
    length += record.length
  }
  return parts.join("").slice(0, n)
}
const texts: Record<string, (n: number) => string> = {
  "a × n": (n) => "a".repeat(n),
  "base64-like": base64,
  "minified JSON": jsonLike
}

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const fmtMs = (ms: number) => ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(ms < 10 ? 2 : 0)} ms`

// -----------------------------------------------------------------------------------------------------------
// estimation
// -----------------------------------------------------------------------------------------------------------

/**
 * The old `countText`: gpt-tokenizer's countTokens on the whole text, in a child process with a time limit
 * (the text passed through a temporary file).
 */
const beforeCount = (text: string, limitSeconds: number): { ms: number | undefined; tokens?: number } => {
  const file = join(mkdtempSync(join(tmpdir(), "sluice-tokens-")), "text.txt")
  writeFileSync(file, text)
  const code = `const { countTokens } = require("gpt-tokenizer/cjs/encoding/o200k_base"); countTokens("warm up");
const text = require("node:fs").readFileSync(${JSON.stringify(file)}, "utf8");
const t0 = performance.now(); const tokens = countTokens(text);
console.log(JSON.stringify({ ms: performance.now() - t0, tokens }))`
  const result = spawnSync(process.execPath, ["-e", code], {
    cwd: openaiDir,
    encoding: "utf8",
    timeout: limitSeconds * 1000,
    killSignal: "SIGKILL"
  })
  rmSync(dirname(file), { recursive: true, force: true })
  if (result.status !== 0) return { ms: undefined }
  return JSON.parse(result.stdout.trim())
}

/** This checkout's estimate: the median of a few runs (the encoding loaded first). */
const afterCount = (text: string): { ms: number; tokens: number; chatMs: number } => {
  // the encoding, and the character table of the cutting (built on the first long run)
  TokenEstimator.countText(`warm up ${"x1".repeat(3_000)}`)
  const runs: Array<number> = []
  let tokens = 0
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now()
    tokens = TokenEstimator.countText(text, "o200k_base")
    runs.push(performance.now() - t0)
  }
  const chatRuns: Array<number> = []
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now()
    TokenEstimator.chat({ model: "gpt-4o-mini", messages: [{ role: "user", content: text }], max_tokens: 10 })
    chatRuns.push(performance.now() - t0)
  }
  return { ms: median(runs), tokens, chatMs: median(chatRuns) }
}

const estimationRows: Array<string> = []
const beforeLimits: Record<number, number> = {
  10_000: 60,
  20_000: 60,
  40_000: 120,
  80_000: 120,
  [MB]: 900,
  [5 * MB]: 300
}
for (const [kind, make] of Object.entries(texts)) {
  const sizes = kind === "a × n" ? [10_000, 20_000, 40_000, 80_000, MB, 5 * MB] : [80_000, MB, 5 * MB]
  for (const n of sizes) {
    const limit = Math.min(beforeLimit, kind === "a × n" ? beforeLimits[n]! : n === 80_000 ? 120 : 60)
    const text = make(n)
    const old = beforeCount(text, limit)
    const now = afterCount(text)
    const exact = old.tokens
    const row = [
      kind,
      n >= MB ? `${n / MB} MB` : `${n / 1000}k`,
      old.ms === undefined ? `did not finish in ${limit} s` : fmtMs(old.ms),
      exact === undefined ? "—" : exact.toLocaleString("en-US"),
      fmtMs(now.ms),
      fmtMs(now.chatMs),
      now.tokens.toLocaleString("en-US"),
      exact === undefined ? "—" : `${(now.tokens / exact).toFixed(2)}×`,
      (now.ms * 1000 / (n / 1000)).toFixed(1),
      old.ms === undefined
        ? `> ${Math.round((limit * 1000) / now.ms).toLocaleString("en-US")}×`
        : `${(old.ms / now.ms).toFixed(0)}×`
    ]
    console.log(row.join(" | "))
    estimationRows.push(`| ${row.join(" | ")} |`)
  }
}

// -----------------------------------------------------------------------------------------------------------
// import time
// -----------------------------------------------------------------------------------------------------------

const requireMillis = (entry: string): number => {
  const code = `const t0 = performance.now(); require(${JSON.stringify(entry)}); console.log(performance.now() - t0)`
  const result = spawnSync(process.execPath, ["-e", code], { cwd: openaiDir, encoding: "utf8" })
  if (result.status !== 0) throw new Error(`require ${entry} failed: ${result.stderr}`)
  return Number(result.stdout.trim())
}

const after = join(openaiDir, "dist", "cjs", "index.cjs")

const importSection = (): string => {
  const entries: Array<[string, string]> = [
    ...(before === undefined
      ? []
      : [["before (both encodings loaded at import)", resolve(before)] as [string, string]]),
    ["after (encodings loaded on first use)", after],
    ["`openai` SDK alone (peer, for scale)", "openai"],
    ["gpt-tokenizer o200k_base + cl100k_base alone", "gpt-tokenizer/cjs/encoding/o200k_base"]
  ]
  const times = new Map<string, Array<number>>(entries.map(([name]) => [name, []]))
  for (let i = 0; i < samples; i++) {
    for (const [name, entry] of entries) {
      const ms = name.startsWith("gpt-tokenizer")
        ? requireMillis(entry) + requireMillis("gpt-tokenizer/cjs/encoding/cl100k_base")
        : requireMillis(entry)
      times.get(name)!.push(ms)
    }
  }
  const importRows = entries.map(([name]) => {
    const xs = times.get(name)!
    return `| ${name} | ${fmtMs(median(xs))} | ${fmtMs(Math.min(...xs))} – ${fmtMs(Math.max(...xs))} |`
  })
  for (const row of importRows) console.log(row)

  const firstUse = (() => {
    const code = `const t0 = performance.now(); const m = require(${
      JSON.stringify(after)
    }); const t1 = performance.now(); m.TokenEstimator.countText("hello world"); const t2 = performance.now(); m.TokenEstimator.countText("hello world", "cl100k_base"); const t3 = performance.now(); console.log(JSON.stringify([t1 - t0, t2 - t1, t3 - t2]))`
    const runs = Array.from({ length: 5 }, () => {
      const result = spawnSync(process.execPath, ["-e", code], { cwd: openaiDir, encoding: "utf8" })
      return JSON.parse(result.stdout.trim()) as [number, number, number]
    })
    return [0, 1, 2].map((i) => median(runs.map((r) => r[i]!)))
  })()
  console.log("first use", firstUse)
  return `## Importing \`@sluice/openai\` (CommonJS, a fresh process per sample)

Median of ${samples} interleaved samples, and the range.

| what | median | range |
|---|---:|---:|
${importRows.join("\n")}

After, the first count in a process loads its encoding: the first \`o200k_base\` count took ${
    fmtMs(firstUse[1]!)
  } and the first \`cl100k_base\` count ${fmtMs(firstUse[2]!)} (medians of 5; the require itself ${
    fmtMs(firstUse[0]!)
  }).
`
}

const resultsPath = join(root, "benchmarks", "results", "tokens.md")
const previous = estimationOnly ? readFileSync(resultsPath, "utf8") : ""
/** With --estimation-only: the import section (and what follows it) of the run that wrote the file. */
const keptImport = (): string => {
  const at = previous.indexOf("## Importing")
  if (at < 0) return ""
  const head = /^Command: `(.*?)`/m.exec(previous)?.[1]
  const on = /\(benchmarks\/tokens\.ts\), on (.*?);/s.exec(previous)?.[1]?.replace(/\s+/g, " ")
  return previous.slice(at).replace(
    /^(## Importing.*\n)/,
    `$1\n(From an earlier run${on === undefined ? "" : `, on ${on}`}${
      head === undefined ? "" : `: \`${head}\``
    }; not measured again with --estimation-only.)\n`
  )
}

const estimationSection = `## Estimating text without whitespace

"Before" is \`TokenEstimator.countText\` as it was until 9589fa2: \`gpt-tokenizer\`'s \`countTokens\` on the
whole text (byte-pair-encoding each piece in time quadratic in its length), each in a child process with a
time limit; its count is the exact one. "After" is \`TokenEstimator.countText\` now (median of 5), and
\`TokenEstimator.chat\` on a body whose one message is that text (median of 3). A text holding a run of more
than 4,096 characters without whitespace is cut where every split has a piece boundary (after a letter
before a character that is not a letter, a mark or \`'\`; after a number before a non-number) into chunks of
at most 4,096 characters, each split and counted exactly; a stretch of more than 4,096 characters with no
such position (\`a × n\`) counts its UTF-8 bytes, an upper bound (every token is at least one byte). "after ÷
exact" shows how much it over-reserves (settling refunds it); "µs per 1k chars" is the after countText time
per thousand characters (flat when the time is linear).

| text | size | before | exact tokens | after: countText | after: chat estimate | after: tokens | after ÷ exact | µs per 1k chars | speed-up |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
${estimationRows.join("\n")}
`

const report = `# Token estimation and import benchmark

Command: \`${
  estimationOnly
    ? `node scripts/run-ts.mjs benchmarks/tokens.ts --estimation-only${
      beforeLimit === Infinity ? "" : ` --before-limit ${beforeLimit}`
    }`
    : "pnpm build && node scripts/run-ts.mjs benchmarks/tokens.ts --before <old dist/cjs/index.cjs>"
}\`
(benchmarks/tokens.ts), on ${gitState()}; "before" is the counting of commit 8664406 (the last commit before
9589fa2). ${machine()}, ${new Date().toISOString().slice(0, 10)}; load average at the start ${
  loads(startLoad)
} (a shared machine, busy with other work: absolute figures are noisy; compare the rows of one run).

${estimationSection}
${estimationOnly ? keptImport() : importSection()}`
if (writeResults) writeFileSync(resultsPath, report)
console.log(report)
