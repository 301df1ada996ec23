/**
 * Benchmark (issue 8): `sluice run` — the real CLI process — against the cookbook-style processor and the
 * bare SDK with `p-limit` (benchmarks/openai-peers.ts, run by benchmarks/openai-client.ts), on one Batch API
 * input file, against the HTTP simulator, in one run on one machine.
 *
 *   pnpm bench:cli                                   (2 rounds; writes benchmarks/results/cli.md)
 *   pnpm bench:cli --rounds 1 --only sluice-run      (a quick look; writes nothing)
 *   pnpm bench:cli --shapes all --rounds 1           (the named shapes; appends a section to benchmarks/results/cli.md)
 *   pnpm bench:cli --sluice-bin DIR/node_modules/.bin/sluice ...   (Sluice as installed from the packed tarballs:
 *     `SLUICE_CONSUMER_DIR=DIR node scripts/consumer-test.mjs --only node20 --keep` puts it in DIR/node20)
 *
 * Input: 3,000 seeded lines, 2,700 chat completions (prompts of 40–320 words, `max_tokens` 64–512) and 300
 * embeddings (1–4 inputs of 20–200 words), interleaved, written to .sluice-tmp/bench-cli/requests.jsonl with
 * the limits file every implementation reads (`sluice run --limits`, the cookbook's capacities).
 *
 * Each row gets a fresh simulator (full buckets, same seed) on a loopback port, served from this process;
 * the implementation runs as a child process, started cold: `node packages/cli/bin/sluice.mjs run …` for
 * Sluice, `node --import tsx benchmarks/openai-client.ts <peer> … --input … --output …` for the peers. Wall
 * time is from spawning the process to its exit; start-up is from spawning it to the first request the
 * server receives. Lost and duplicated lines are counted in the output file each row wrote. Rows run one
 * after another; with `--rounds N` the whole set repeats, interleaved. A row that has not finished after
 * `--timeout` seconds (default 300) is killed and reported with what it had written by then.
 *
 * `--shapes NAME,…|all` (issue 13): the OpenAI benchmark's named workload shapes (benchmarks/openai-workload.ts
 * `SHAPES`) instead, each as a Batch API file with a limits file of the server's limits, run by `sluice run`
 * with limits given and with none (learned) beside the bare SDK + p-limit(64) and the cookbook processor; per
 * shape the ratio to the minimum (`orderFreeMinimumMillis` over `shapeMinimumMillis`'s buckets) and the 429s, and what
 * `sluice run`'s summary said it learned. The shapes with arrivals over time (Poisson) have no file form and are
 * left out. Rows stop after 150 s unless `--timeout` says.
 */
import { SimConfig, Simulator } from "@sluice/testing"
import { Effect } from "effect"
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { getPriority, loadavg } from "node:os"
import { fileURLToPath } from "node:url"
import type { Exchange, ProcessResult } from "./cli-harness.js"
import {
  benchmarkOptions,
  bucketMinimumMillis,
  byRoundOf,
  CLIENT,
  fmt,
  gitState,
  loads,
  machine,
  runProcess,
  seconds,
  serveSimulator,
  shapeMinimumMillis,
  tableSections
} from "./cli-harness.js"
import { orderFreeMinimumMillis } from "./minimum.js"
import type { BenchRequest, Shape } from "./openai-workload.js"
import {
  batchLine,
  CHAT_URL,
  EMBEDDING_MODEL,
  EMBEDDINGS_URL,
  knownCharge,
  LATENCY,
  LATENCY_DESCRIPTION,
  mixedWorkload,
  MODEL,
  OUTPUT_FRACTION,
  outputOf,
  SHAPES,
  shapeScenario,
  shapeWorkload
} from "./openai-workload.js"

const IMPLEMENTATIONS = ["sluice-run", "sluice-run-adaptive", "bare-64-2", "bare-256-2", "cookbook"] as const
/** `--shapes`: per shape, `sluice run` with limits given and learned beside the two peers. */
/** `sluice-run-burst` runs only on a shape whose server enforces a burst: its limits file gives it. */
const SHAPE_IMPLEMENTATIONS = [
  "sluice-run",
  "sluice-run-input",
  "sluice-run-burst",
  "sluice-run-adaptive",
  "bare-64-2",
  "cookbook"
] as const
const shapeMode = process.argv.includes("--shapes")

const LINES = 3_000
const EMBEDDING_EVERY = 10
const SEED = 20_261_202
/** Chat binds on tokens: the whole file's chat usage is about 1.9 minutes of this TPM. */
const LIMITS = {
  [MODEL]: { rpm: 5_000, tpm: 600_000 },
  [EMBEDDING_MODEL]: { rpm: 5_000, tpm: 1_000_000 }
} as const
const FAULTS = { overloaded: 0.01, server_error: 0.005 } as const

const scenario: SimConfig.ScenarioInput = {
  name: "bench-cli",
  description: "a Batch API file of chat and embeddings requests against a TPM-bound gpt-4o-mini, with faults",
  seed: SEED,
  models: {
    [MODEL]: { kind: "chat", limits: { ...LIMITS[MODEL] }, contextWindow: 128_000 },
    [EMBEDDING_MODEL]: { kind: "embedding", limits: { ...LIMITS[EMBEDDING_MODEL] }, contextWindow: 8_191 }
  },
  latency: LATENCY,
  output: { fraction: OUTPUT_FRACTION },
  faults: { rates: { ...FAULTS } }
}

const { args, priority, rounds, selected, timeoutSeconds, writeResults } = benchmarkOptions(
  shapeMode ? SHAPE_IMPLEMENTATIONS : IMPLEMENTATIONS
)
/** A shape's row is stopped sooner (150 s unless `--timeout` says): its minimum is 10–20 s plus one latency. */
const rowTimeoutSeconds = shapeMode && !args.includes("--timeout") ? 150 : timeoutSeconds

const root = fileURLToPath(new URL("..", import.meta.url))
const work = `${root}.sluice-tmp/bench-cli`
const inputPath = `${work}/requests.jsonl`
const limitsPath = `${work}/limits.json`
/**
 * `--sluice-bin PATH`: the `sluice` an npm install put in place (e.g. `<dir>/node_modules/.bin/sluice` after `node
 * scripts/consumer-test.mjs --only node20 --keep`: the packed tarballs installed as a user installs them, the bin
 * running dist/), measured as a user would run it; else the workspace's bin (the sources, through tsx).
 */
const installedBin = args.includes("--sluice-bin") ? args[args.indexOf("--sluice-bin") + 1] : undefined
if (installedBin !== undefined && !existsSync(installedBin)) {
  throw new Error(`--sluice-bin ${installedBin}: no such file`)
}
const bin = installedBin ?? `${root}packages/cli/bin/sluice.mjs`
const binText = installedBin === undefined
  ? "node packages/cli/bin/sluice.mjs"
  : `node ${installedBin} (installed from the packed tarballs: dist/)`
const rel = (path: string) => path.startsWith(root) ? path.slice(root.length) : path

const requests = mixedWorkload({ lines: LINES, embeddingEvery: EMBEDDING_EVERY, seed: SEED })
const ids = new Set(requests.map((request) => request.id))
const byModel = (list: ReadonlyArray<BenchRequest>) => {
  const out = new Map<string, { requests: number; tokens: number }>()
  for (const request of list) {
    const entry = out.get(request.body.model) ?? { requests: 0, tokens: 0 }
    entry.requests++
    entry.tokens += request.knownUsage
    out.set(request.body.model, entry)
  }
  return out
}
const known = byModel(requests)

/** What a row runs: the input file and the limits file it reads, the server, and the least time they allow. */
interface Workload {
  /** Prefixes the output files (`""` for the default workload). */
  readonly label: string
  readonly ids: ReadonlySet<string>
  readonly known: ReadonlyMap<string, { readonly requests: number; readonly tokens: number }>
  readonly inputPath: string
  readonly limitsPath: string
  /** The limits file with the server's bursts too (`burst` per limit), on a shape whose server enforces them. */
  readonly burstLimitsPath?: string | undefined
  readonly scenario: SimConfig.ScenarioInput
  /** Admission alone (a row's minimum adds the latencies: `orderFreeMinimumMillis`). */
  readonly admissionMinimumMillis: number
  /** Each line's model, the tokens the server keeps of it and its own latency (`orderFreeMinimumMillis`). */
  readonly charges: ReadonlyMap<string, { readonly model: string; readonly tokens: number; readonly own: number }>
  /** The server's limits per model. */
  readonly limits: Readonly<Record<string, { readonly rpm: number; readonly tpm: number }>>
  /** The server's bursts as a share of its per-minute limits (sub-minute enforcement), else 1. */
  readonly share: number
}
/** From the file's usage as the server charges it (every row that loses nothing is charged exactly this). */
let admissionMinimumMillis = 0
for (const [model, limits] of Object.entries(LIMITS)) {
  admissionMinimumMillis = Math.max(
    admissionMinimumMillis,
    bucketMinimumMillis(known.get(model)?.tokens ?? 0, limits.tpm),
    bucketMinimumMillis(known.get(model)?.requests ?? 0, limits.rpm)
  )
}
const chatLines = requests.filter((request) => request.url === CHAT_URL).length
const embeddingLines = requests.filter((request) => request.url === EMBEDDINGS_URL).length

/** The default workload: the 3,000-line file. */
const chargesOf = (list: ReadonlyArray<BenchRequest>, kept: boolean) =>
  new Map(list.map((request) => [request.id, {
    model: request.body.model,
    tokens: kept ? knownCharge(request) : request.knownUsage,
    own: request.url === CHAT_URL ? LATENCY.perOutputTokenMs * outputOf(request.body.max_tokens) : 0
  }]))
const bulk: Workload = {
  label: "",
  ids,
  known,
  inputPath,
  limitsPath,
  scenario,
  admissionMinimumMillis,
  charges: chargesOf(requests, false),
  limits: LIMITS,
  share: 1
}

// -----------------------------------------------------------------------------
// one row
// -----------------------------------------------------------------------------

const command = (
  implementation: string,
  url: string,
  output: string,
  { burstLimitsPath, inputPath, limitsPath }: Workload
) =>
  implementation.startsWith("sluice-run")
    ? {
      args: [
        bin,
        "run",
        "--input",
        inputPath,
        "--output",
        output,
        "--base-url",
        url,
        "--api-key-env",
        "SLUICE_BENCH_API_KEY",
        ...(implementation === "sluice-run" || implementation === "sluice-run-input" ? ["--limits", limitsPath] : []),
        ...(implementation === "sluice-run-input" ? ["--order", "input"] : []),
        ...(implementation === "sluice-run-burst" && burstLimitsPath !== undefined
          ? ["--limits", burstLimitsPath]
          : []),
        "--progress",
        "off"
      ]
    }
    : {
      execArgv: CLIENT.execArgv,
      args: [CLIENT.path, implementation, url, "--input", inputPath, "--output", output, "--limits", limitsPath]
    }

const NAMES: Record<string, string> = {
  "sluice-run": "sluice run --limits",
  "sluice-run-input": "sluice run --limits --order input",
  "sluice-run-burst": "sluice run --limits, with the bursts",
  "sluice-run-adaptive": "sluice run, no limits (adaptive)"
}

const describe = (implementation: string, result: ProcessResult, workload: Workload): string => {
  if (implementation === "sluice-run") {
    return `${binText} run --input … --output … --base-url … --api-key-env … --limits ${
      rel(workload.limitsPath)
    } --progress off (defaults otherwise: --concurrency 256, the bulk retry policy)`
  }
  if (implementation === "sluice-run-input") return "the same with --order input (the file's order)"
  if (implementation === "sluice-run-adaptive") {
    return "the same without --limits: limits learned from the response headers"
  }
  if (implementation === "sluice-run-burst" && workload.burstLimitsPath !== undefined) {
    return `the same with --limits ${rel(workload.burstLimitsPath)} (the server's bursts given, \`burst\` per limit)`
  }
  return result.report?.config ?? "no report"
}

/** Reads an output file: lines per `custom_id`, and which of them are successes. */
const audit = (path: string, ids: ReadonlySet<string>) => {
  const lines = new Map<string, number>()
  const ok = new Set<string>()
  let failedLines = 0
  let unparsable = 0
  let unknown = 0
  const text = existsSync(path) ? readFileSync(path, "utf8") : ""
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue
    let parsed: {
      custom_id?: unknown
      response?: { status_code?: unknown } | null
      error?: unknown
    }
    try {
      parsed = JSON.parse(line)
    } catch {
      unparsable++
      continue
    }
    const id = String(parsed.custom_id)
    if (!ids.has(id)) unknown++
    lines.set(id, (lines.get(id) ?? 0) + 1)
    const status = Number(parsed.response?.status_code)
    if ((parsed.error === null || parsed.error === undefined) && status >= 200 && status < 300) ok.add(id)
    else failedLines++
  }
  let lost = 0
  for (const id of ids) if (!ok.has(id)) lost++
  let duplicated = 0
  for (const count of lines.values()) if (count > 1) duplicated++
  return { lost, duplicated, failedLines, unparsable, unknown, written: [...lines.values()].reduce((a, b) => a + b, 0) }
}

interface Row {
  readonly round: number
  readonly implementation: string
  readonly name: string
  readonly config: string
  readonly finished: boolean
  readonly exitCode: number | null
  readonly wallMillis: number
  readonly startupMillis: number
  readonly lastResponseMillis: number
  readonly minimumMillis: number
  readonly lastLatencyMillis: number
  readonly server429: number
  readonly serverFaults: number
  readonly serverAttempts: number
  readonly serverRetries: number
  readonly chargedTokens: ReadonlyMap<string, number>
  readonly lost: number
  readonly duplicated: number
  readonly failedLines: number
  readonly unparsable: number
  readonly unknown: number
  readonly written: number
  readonly clientCpuMillis: number
  readonly simulatorCpuMillis: number
  readonly summary: string
  readonly load: ReadonlyArray<number>
}

const runRow = (round: number, implementation: string, workload: Workload = bulk) =>
  Effect.gen(function*() {
    const exchanges: Array<Exchange> = []
    const { url } = yield* serveSimulator(exchanges)
    const output = `${work}/${workload.label}${implementation}-round${round}.jsonl`
    for (const path of [output, output.replace(/\.jsonl$/, ".errors.jsonl")]) rmSync(path, { force: true })
    const env: NodeJS.ProcessEnv = { ...process.env, SLUICE_BENCH_API_KEY: "sk-bench" }
    for (const name of ["OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"]) delete env[name]
    const cpuBefore = process.cpuUsage()
    const started = performance.now()
    const outcome = yield* Effect.timeout(
      runProcess({ ...command(implementation, url, output, workload), env }),
      `${rowTimeoutSeconds} seconds`
    ).pipe(Effect.option)
    const cpuServer = process.cpuUsage(cpuBefore)
    const stats = yield* Simulator.stats
    const result: ProcessResult = outcome._tag === "Some" ? outcome.value : {
      code: null,
      report: undefined,
      stdout: "",
      spawnedAt: started,
      exitedAt: started + rowTimeoutSeconds * 1000,
      cpuMillis: NaN
    }

    const posts = exchanges.filter((e) =>
      e.method === "POST" && (e.path.endsWith(CHAT_URL) || e.path.endsWith(EMBEDDINGS_URL))
    )
    const firstStart = Math.min(...posts.map((e) => e.start))
    const lastEnd = Math.max(...posts.map((e) => e.end))
    // the last request: the successful one the server received last, and its latency as the server saw it
    let last: Exchange | undefined
    for (const exchange of posts) {
      if (exchange.status === 200 && (last === undefined || exchange.start > last.start)) last = exchange
    }
    const lastLatency = last === undefined ? 0 : last.end - last.start
    // the least time any order allows (benchmarks/minimum.ts), with the draws the server made in this row: each
    // answered attempt's latency less its line's own part, in the order it admitted them (recorded as admitted)
    const draws: Array<number> = []
    for (const attempt of stats.attempts) {
      if (attempt.status !== 200) continue
      const own = attempt.key === undefined ? undefined : workload.charges.get(attempt.key)?.own
      draws.push((attempt.latencyMs ?? 0) - (own ?? 0))
    }
    const minimumMillis = orderFreeMinimumMillis(
      [...workload.charges.values()],
      draws,
      (model) => workload.limits[model],
      { share: workload.share }
    )

    const charged = new Map<string, number>()
    for (const admission of stats.admissions) {
      charged.set(admission.model, (charged.get(admission.model) ?? 0) + admission.tokens)
    }
    const attempts = stats.attempts.filter((a) => a.path === CHAT_URL || a.path === EMBEDDINGS_URL)
    const keys = new Set(attempts.map((a) => a.key))
    const files = audit(output, workload.ids)
    const row: Row = {
      round,
      implementation,
      name: NAMES[implementation] ?? result.report?.name ?? implementation,
      config: describe(implementation, result, workload),
      finished: outcome._tag === "Some",
      exitCode: result.code,
      wallMillis: result.exitedAt - result.spawnedAt,
      startupMillis: posts.length === 0 ? NaN : firstStart - result.spawnedAt,
      lastResponseMillis: posts.length === 0 ? NaN : lastEnd - result.spawnedAt,
      minimumMillis,
      lastLatencyMillis: lastLatency,
      server429: stats.byStatus["429"] ?? 0,
      serverFaults: attempts.filter((a) => a.fault !== undefined && a.status !== 200).length,
      serverAttempts: attempts.length,
      serverRetries: attempts.length - keys.size,
      chargedTokens: charged,
      ...files,
      clientCpuMillis: result.cpuMillis,
      simulatorCpuMillis: (cpuServer.user + cpuServer.system) / 1000,
      summary: result.stdout.trim(),
      load: loadavg()
    }
    process.stdout.write(
      `round ${round} ${implementation}: ${row.finished ? "" : "STOPPED "}exit ${row.exitCode}, ${
        seconds(row.wallMillis)
      } s (start-up ${seconds(row.startupMillis)} s; min ${seconds(row.minimumMillis)} s, ×${
        ratio(row.wallMillis, row)
      }, ×${
        ratio(row.wallMillis - row.startupMillis, row)
      } without start-up), 429s ${row.server429}, faults ${row.serverFaults}, retries ${row.serverRetries}, lost ${row.lost}, duplicated ${row.duplicated}, failed lines ${row.failedLines}; charged ${
        [...charged].map(([model, tokens]) => `${model} ${fmt(tokens)}/${fmt(workload.known.get(model)?.tokens ?? 0)}`)
          .join(
            ", "
          )
      }; cpu client ${Math.round(row.clientCpuMillis)} ms, simulator ${Math.round(row.simulatorCpuMillis)} ms; load ${
        loads(row.load)
      }\n`
    )
    return row
  }).pipe(Effect.scoped, Effect.provide(Simulator.layer(SimConfig.make(workload.scenario))))

// -----------------------------------------------------------------------------
// start-up alone
// -----------------------------------------------------------------------------

/**
 * `sluice --version`: loading the CLI and its module graph, nothing else (from source via tsx, and dist/; with
 * `--sluice-bin`, the installed bin's, counted as dist/).
 */
const startupProbe = Effect.gen(function*() {
  const time = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv) =>
    Effect.map(runProcess({ args: [...args, "--version"], env }), (r) => r.exitedAt - r.spawnedAt)
  const source: Array<number> = []
  const dist: Array<number> = []
  const workspaceBin = `${root}packages/cli/bin/sluice.mjs`
  const hasDist = installedBin !== undefined || existsSync(`${root}packages/cli/dist/esm/main.js`)
  for (let i = 0; i < 3; i++) {
    source.push(yield* time([workspaceBin], process.env))
    if (hasDist) dist.push(yield* time([bin], { ...process.env, SLUICE_DIST: "1" }))
  }
  return { source, dist }
})

// -----------------------------------------------------------------------------
// the report
// -----------------------------------------------------------------------------

const ratio = (wall: number, row: Row) => (wall / row.minimumMillis).toFixed(3)

const command_ = ["pnpm bench:cli", ...args].join(" ")

/** Per round: how `sluice run` did, where its time over the minimum went, and the fastest complete peer. */
const findings = (byRound: ReadonlyMap<number, ReadonlyArray<Row>>): Array<string> =>
  [...byRound.entries()].map(([round, list]) => {
    const sluice = list.find((row) => row.implementation === "sluice-run")
    if (sluice === undefined) return `- Round ${round}: no \`sluice run --limits\` row.`
    const peers = list.filter((row) => !row.implementation.startsWith("sluice-run"))
    const complete = peers.filter((row) => row.finished && row.lost === 0 && row.duplicated === 0)
    const fastest = complete.reduce<Row | undefined>(
      (best, row) => best === undefined || row.wallMillis < best.wallMillis ? row : best,
      undefined
    )
    const over = sluice.wallMillis - sluice.minimumMillis
    return `- Round ${round}: \`sluice run --limits\` ${ratio(sluice.wallMillis, sluice)}× the minimum (${
      ratio(sluice.wallMillis - sluice.startupMillis, sluice)
    }× after its start-up), ${fmt(sluice.server429)} 429s, ${fmt(sluice.lost)} lost and ${
      fmt(sluice.duplicated)
    } duplicated lines; of its ${seconds(over)} s over the minimum, ${
      seconds(sluice.startupMillis)
    } s is start-up and ${seconds(over - sluice.startupMillis)} s came after its first request. ${
      fastest === undefined
        ? "No peer completed the work."
        : `The fastest peer that completed the work: ${fastest.name}, ${
          (fastest.wallMillis / sluice.wallMillis).toFixed(2)
        }× \`sluice run\`'s wall time (${
          ((fastest.wallMillis - fastest.startupMillis) / (sluice.wallMillis - sluice.startupMillis)).toFixed(2)
        }× without either's start-up).`
    }${
      peers.length - complete.length > 0
        ? ` ${peers.length - complete.length} peer row${peers.length - complete.length === 1 ? "" : "s"} lost lines.`
        : ""
    }`
  })

const render = (
  rows: ReadonlyArray<Row>,
  started: { readonly date: string; readonly load: ReadonlyArray<number> },
  probe: { readonly source: ReadonlyArray<number>; readonly dist: ReadonlyArray<number> }
) => {
  const byRound = byRoundOf(rows)
  const base = (round: number) => byRound.get(round)?.find((row) => row.implementation === "sluice-run")
  const wallCell = (row: Row) => row.finished ? seconds(row.wallMillis) : `> ${seconds(row.wallMillis)} (killed)`
  const ratioCell = (wall: number, row: Row) =>
    !row.finished
      ? `> ${ratio(wall, row)}`
      : row.lost > 0
      ? `${ratio(wall, row)} (${fmt(row.lost)} lost)`
      : ratio(wall, row)
  const table = (list: ReadonlyArray<Row>) =>
    [
      "| implementation | wall s | start-up s | theoretical min s | wall ÷ min | (wall − start-up) ÷ min | 429s (server) | retries | lost lines | duplicated lines | wall ÷ sluice run's |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
      ...list.map((row) => {
        const sluice = base(row.round)
        return `| ${row.name} | ${wallCell(row)} | ${seconds(row.startupMillis)} | ${seconds(row.minimumMillis)} | ${
          ratioCell(row.wallMillis, row)
        } | ${ratioCell(row.wallMillis - row.startupMillis, row)} | ${fmt(row.server429)} | ${
          fmt(row.serverRetries)
        } | ${fmt(row.lost)} | ${fmt(row.duplicated)} | ${
          sluice === undefined ? "–" : (row.wallMillis / sluice.wallMillis).toFixed(2)
        } |`
      })
    ].join("\n")

  const implementations = [...new Set(rows.map((row) => row.implementation))]
  const spread = [
    "| implementation | wall ÷ min, each round | (wall − start-up) ÷ min, each round | wall s, range | start-up s, each round | 429s, each round | lost / duplicated, each round |",
    "|---|---|---|---|---|---|---|",
    ...implementations.map((implementation) => {
      const list = rows.filter((row) => row.implementation === implementation)
      const walls = list.map((row) => row.wallMillis)
      return `| ${list[0].name} | ${list.map((row) => ratioCell(row.wallMillis, row)).join(" / ")} | ${
        list.map((row) => ratioCell(row.wallMillis - row.startupMillis, row)).join(" / ")
      } | ${seconds(Math.min(...walls))}–${seconds(Math.max(...walls))} | ${
        list.map((row) => seconds(row.startupMillis)).join(" / ")
      } | ${list.map((row) => fmt(row.server429)).join(" / ")} | ${
        list.map((row) => `${fmt(row.lost)} / ${fmt(row.duplicated)}`).join(", ")
      } |`
    })
  ].join("\n")

  const checks = rows.map((row) =>
    `| ${row.round} | ${row.name} | ${row.exitCode ?? "killed"} | ${fmt(row.serverAttempts)} | ${
      fmt(row.serverFaults)
    } | ${fmt(row.written)} | ${fmt(row.failedLines)} | ${fmt(row.unparsable + row.unknown)} | ${
      fmt(row.chargedTokens.get(MODEL) ?? 0)
    } / ${fmt(row.chargedTokens.get(EMBEDDING_MODEL) ?? 0)} | ${seconds(row.lastResponseMillis)} | ${
      Math.round(row.wallMillis - row.lastResponseMillis)
    } | ${Math.round(row.lastLatencyMillis)} | ${fmt(Math.round(row.clientCpuMillis))} / ${
      fmt(Math.round(row.simulatorCpuMillis))
    } | ${loads(row.load)} |`
  )

  const summaries = rows.filter((row) => row.implementation.startsWith("sluice-run") && row.summary !== "").map((
    row
  ) => [`Round ${row.round}, ${row.name}:`, "", "```", row.summary, "```", ""].join("\n"))

  const median = (list: ReadonlyArray<number>) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]
  const chat = known.get(MODEL)!
  const embeddings = known.get(EMBEDDING_MODEL)!
  const sluiceRows = rows.filter((row) => row.implementation.startsWith("sluice-run"))
  const peerRows = rows.filter((row) => !row.implementation.startsWith("sluice-run"))
  const range = (list: ReadonlyArray<Row>) =>
    list.length === 0
      ? "–"
      : `${seconds(Math.min(...list.map((r) => r.startupMillis)))}–${
        seconds(Math.max(...list.map((r) => r.startupMillis)))
      } s`

  return [
    "# CLI bulk benchmark: `sluice run`",
    "",
    `One Batch API input file of ${fmt(LINES)} lines — ${
      fmt(chatLines)
    } chat completions to \`${MODEL}\` (a fixed system`,
    "prompt, a user prompt of 40–320 words, `max_tokens` 64–512) and, every tenth line, one of",
    `${fmt(embeddingLines)} embeddings requests to \`${EMBEDDING_MODEL}\` (1–4 inputs of 20–200 words) — seeded`,
    `(seed ${SEED}), run against the HTTP simulator (\`@sluice/testing\`, loopback) by \`sluice run\` (the real CLI`,
    "process) and by the two peers of the OpenAI benchmark (benchmarks/openai-peers.ts) reading the same file and",
    "writing an output file in the Batch API format.",
    "",
    `Scenario: \`${MODEL}\` ${fmt(LIMITS[MODEL].rpm)} RPM / ${
      fmt(LIMITS[MODEL].tpm)
    } TPM (TPM-bound), \`${EMBEDDING_MODEL}\` ${fmt(LIMITS[EMBEDDING_MODEL].rpm)} RPM / ${
      fmt(LIMITS[EMBEDDING_MODEL].tpm)
    } TPM (never binding); token buckets of capacity one minute's limit`,
    `refilled continuously. Latency: ${LATENCY_DESCRIPTION}. Faults: ${FAULTS.overloaded * 100}% 503 (overloaded) and ${
      FAULTS.server_error * 100
    }% 500, seeded. The file's usage as the simulator charges it: chat ${fmt(chat.tokens)} tokens (${
      (chat.tokens / chat.requests).toFixed(1)
    } a request), embeddings ${fmt(embeddings.tokens)}. The limits file (\`${
      rel(limitsPath)
    }\`), read by \`sluice run --limits\` and`,
    "by the cookbook processor: `" + JSON.stringify({ models: LIMITS }) + "`.",
    "",
    `Command: \`${command_}\` (${rounds} round${rounds === 1 ? "" : "s"}${
      priority === undefined ? "" : `, simulator and clients at nice ${getPriority()}`
    }), on ${gitState()}. ${machine()}, ${started.date}; load average at the start ${
      loads(started.load)
    } (a shared machine, busy with other work: absolute figures are noisy, the rows of one round compare).`,
    "",
    "Each row gets a fresh simulator (full buckets, same seed) served from the benchmark's process, and runs its",
    "implementation as a child process started cold, rows one after another, real clock:",
    installedBin === undefined
      ? "`node packages/cli/bin/sluice.mjs run …` (the bin runs the TypeScript sources through tsx) for Sluice,"
      : `\`${binText} run …\` for Sluice,`,
    "`node --import tsx benchmarks/openai-client.ts <peer> --input … --output … --limits …` for the peers (which",
    "load only the SDK, p-limit and the tokenizer). **Wall** is from spawning the process to its exit; **start-up**",
    "from spawning it to the first request the server received. 429s, retries (attempts beyond the first per",
    "`custom_id`) and charged tokens are the simulator's (`Simulator.stats`); **lost** lines are `custom_id`s of the",
    "input with no successful line in the row's output file, **duplicated** lines `custom_id`s with more than one",
    "line, both read from the file. The server is the OpenAI benchmark's (`serveSimulator` in",
    "benchmarks/cli-harness.ts: backlog 4,096, 65 s keep-alive).",
    "",
    "## Theoretical minimum",
    "",
    "As in benchmarks/results/openai.md: a token bucket of capacity C (the per-minute limit) refilled at L per minute",
    "cannot admit a total X sooner than max(0, (X − C) / L) minutes after the first request; per model, from the",
    "tokens the server charges for the whole file (T: every row that loses nothing is charged exactly this, see",
    "\"charged tokens\" below) and the requests (N):",
    "",
    "    admission = max over models of max( (T − C_tpm) / L_tpm, (N − C_rpm) / L_rpm )",
    "",
    `Chat binds: T = ${fmt(chat.tokens)} against ${fmt(LIMITS[MODEL].tpm)} TPM is ${
      seconds(bucketMinimumMillis(chat.tokens, LIMITS[MODEL].tpm))
    } s; the embeddings' ${fmt(embeddings.tokens)} fit their bucket at once.`,
    "Then the latencies: the simulator's is each line's own part (10 ms a generated token, whenever it is sent) plus a",
    "time to first byte it draws from one seeded sequence as it admits the requests it answers (the k-th answered",
    "admission gets the k-th draw, whichever line it is). The minimum (`orderFreeMinimumMillis`, benchmarks/minimum.ts)",
    "is a lower bound for any order: the k-th admission is no sooner than when the buckets hold the k smallest charges,",
    "it meets the k-th draw (with several models, the least draw from the k-th on), and the own parts go where they end",
    "soonest (the largest with the earliest). A row is not measured as if it could choose which line meets a slow",
    "draw, and is measured against sending its long answers first. Before 2026-12-07 it was the admission plus the",
    "latency of the request the server received last, which depended on the order a row chose (a row that sends its",
    "longest calls first, as `sluice run` does since then, was measured against a smaller minimum). The minimum",
    "starts at the first request: \"wall ÷ min\"",
    "charges the start-up to the implementation, \"(wall − start-up) ÷ min\" does not. A row that lost lines did less",
    "than the whole work: its ratio is not comparable.",
    "",
    "## Findings",
    "",
    ...findings(byRound),
    "",
    "## Start-up",
    "",
    `\`sluice run\` reached its first request after ${range(sluiceRows)} (the peers: ${range(peerRows)}). Loading the`,
    `CLI alone, \`sluice --version\`, took ${
      seconds(median(probe.source))
    } s from source through tsx (median of ${probe.source.length}: ${probe.source.map(seconds).join(", ")} s)${
      probe.dist.length === 0
        ? ""
        : ` and ${seconds(median(probe.dist))} s from ${
          installedBin === undefined ? "the built dist/ (`SLUICE_DIST=1`, as found, not rebuilt" : `${binText} (times`
        }: ${probe.dist.map(seconds).join(", ")} s)`
    }; the rest of the start-up is reading and`,
    "checking the input file and building the executor.",
    "",
    ...tableSections(rows, {
      table,
      spread,
      checks: [
        "| round | implementation | exit code | attempts (server) | faults served | output lines | error lines | bad lines | charged tokens chat / embeddings | last response s | exit after last response ms | last latency ms | CPU ms client / simulator | load at end |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        checks
      ]
    }),
    "\"wall ÷ sluice run's\" compares with the `sluice run --limits` row of the same round: above 1, Sluice was faster.",
    "\"error lines\": lines for a request that ended in a failure (none of the faults here is terminal); \"bad lines\":",
    "unparsable lines or `custom_id`s not in the input. Client CPU is sampled from /proc every 100 ms.",
    "",
    "## `sluice run`'s own summary",
    "",
    ...summaries
  ].join("\n")
}

// -----------------------------------------------------------------------------
// --shapes: the OpenAI benchmark's named workload shapes, as Batch API files
// -----------------------------------------------------------------------------

/** The heading of each `--shapes` section in benchmarks/results/cli.md (a run of the default keeps them). */
const SHAPES_HEADING = "## Workload shapes"

/**
 * The shapes `--shapes` names that a file can carry. A Batch API file has every line from the start and
 * `sluice run` reads a file (it counts the lines first: no pipe), so the Poisson-arrival shapes have no CLI
 * form; they are left out, with a note.
 */
const fileShapes = (flag: string) => {
  const named = flag === "all" ? SHAPES : SHAPES.filter((shape) => flag.split(",").includes(shape.name))
  if (named.length === 0) throw new Error(`--shapes: none of ${flag} (known: ${SHAPES.map((s) => s.name).join(", ")})`)
  return {
    shapes: named.filter((shape) => shape.load === undefined),
    arrivals: named.filter((shape) => shape.load !== undefined)
  }
}

/** A shape as a Batch API file of chat lines and a limits file of the server's announced limits. */
const shapeFiles = (shape: Shape): Workload => {
  const list = shapeWorkload(shape)
  const dir = `${work}/shapes`
  mkdirSync(dir, { recursive: true })
  const input = `${dir}/${shape.name}.jsonl`
  const limits = `${dir}/${shape.name}.limits.json`
  writeFileSync(input, list.map(batchLine).join("\n") + "\n")
  writeFileSync(limits, JSON.stringify({ models: { [MODEL]: shape.limits } }, null, 2) + "\n")
  const share = shape.burstShare
  const burstLimits = share === undefined ? undefined : `${dir}/${shape.name}.burst.limits.json`
  if (burstLimits !== undefined && share !== undefined) {
    const burst = {
      rpm: Math.max(1, Math.floor(shape.limits.rpm * share)),
      tpm: Math.max(1, Math.floor(shape.limits.tpm * share))
    }
    writeFileSync(burstLimits, JSON.stringify({ models: { [MODEL]: { ...shape.limits, burst } } }, null, 2) + "\n")
  }
  return {
    burstLimitsPath: burstLimits,
    label: `shapes/${shape.name}-`,
    ids: new Set(list.map((request) => request.id)),
    known: byModel(list),
    inputPath: input,
    limitsPath: limits,
    scenario: shapeScenario(shape),
    admissionMinimumMillis: shapeMinimumMillis(shape),
    charges: chargesOf(list, shape.enforcement?.settle === "never"),
    limits: { [MODEL]: shape.limits },
    share: shape.burstShare ?? 1
  }
}

interface ShapeRow extends Row {
  readonly shape: string
}

/** After start-up: `sluice run`'s start-up (2–5 s loading from source) is not pacing, and the peers' is less. */
const paced = (row: Row) => (row.wallMillis - row.startupMillis) / row.minimumMillis

/**
 * The issue's goals, on the ratio after start-up: given ≤ 1.05× and no 429; learned ≤ 1.10× and ≤ 2% 429s. The
 * `sluice run --limits` row of a shape whose server enforces a burst its limits file does not give learns that
 * burst: the learned goal.
 */
const shapeGoal = (row: ShapeRow): "yes" | "no" | "" => {
  const complete = row.finished && row.lost === 0
  const learnsBurst = (row.implementation === "sluice-run" || row.implementation === "sluice-run-input") &&
    SHAPES.find((shape) => shape.name === row.shape)?.burstShare !== undefined
  if (
    (row.implementation === "sluice-run" || row.implementation === "sluice-run-input" ||
      row.implementation === "sluice-run-burst") && !learnsBurst
  ) {
    return complete && paced(row) <= 1.05 && row.server429 === 0 ? "yes" : "no"
  }
  if (row.implementation === "sluice-run-adaptive" || learnsBurst) {
    return complete && paced(row) <= 1.1 && row.server429 <= 0.02 * row.serverAttempts ? "yes" : "no"
  }
  return ""
}

const renderShapes = (
  rows: ReadonlyArray<ShapeRow>,
  flag: string,
  chosen: ReturnType<typeof fileShapes>,
  started: { readonly at: string; readonly load: ReadonlyArray<number> }
): string => {
  const cell = (row: Row, value: number) =>
    `${row.finished ? "" : "> "}${value.toFixed(3)}${row.lost > 0 ? ` (${fmt(row.lost)} lost)` : ""}`
  const misses = rows.filter((row) => shapeGoal(row) === "no")
  const learned = rows.filter((row) => row.implementation.startsWith("sluice-run")).map((row) => {
    const lines = row.summary.split("\n").filter((line) => line.startsWith("learned:") || line.startsWith("binding:"))
    return `- ${row.shape}, ${row.name} (round ${row.round}): ${
      lines.length === 0 ? "no summary" : lines.map((line) => `\`${line}\``).join("; ")
    }`
  })
  return [
    `${SHAPES_HEADING} (\`pnpm bench:cli --shapes ${flag}\`, ${started.at})`,
    "",
    `Command: \`${priority === undefined ? `nice -n ${getPriority()} ` : ""}${command_}\` (${rounds} round${
      rounds === 1 ? "" : "s"
    }, rows stopped after ${rowTimeoutSeconds} s), on ${gitState()}. ${machine()}; load average at the start ${
      loads(started.load)
    }, at each row's end in the table (a shared machine: absolute times are noisy, the rows of one shape compare).`,
    "",
    "The OpenAI benchmark's named shapes (benchmarks/openai-workload.ts `SHAPES`, as `pnpm bench:openai --shapes`),",
    "each written as a Batch API file of chat lines to `gpt-4o-mini` with a limits file of the server's announced",
    "limits (`{models: {gpt-4o-mini: {rpm, tpm}}}`: on sub-minute the announced per-minute ones, which the",
    "`sluice run --limits` row is given, so it must learn the burst; the row \"with the bursts\" is given the server's",
    "5 s buckets too, `burst: {rpm, tpm}`). Rows as in the tables above: a fresh simulator per row (the",
    "shape's scenario, no faults), the implementation a cold child process; `sluice run --limits` (each 1,024",
    "lines sent largest first, the default; and with `--order input`, the file's order), `sluice run`",
    "with no limits (learned), the bare SDK with p-limit(64) and 2 retries, the cookbook processor given the limits",
    "file. The minimum: each server bucket starts full at its capacity (on sub-minute its 5 s burst) and refills",
    "at its limit; each line takes its own latency (10 ms a generated token) placed where it ends soonest, plus the",
    "time to first byte the server drew at that admission (`orderFreeMinimumMillis`, benchmarks/minimum.ts: a lower",
    "bound for any order; before 2026-12-07, the admission plus the latency of the request the server received last,",
    "which depended on the order a row sent its lines in). Goals (issue 13), judged after",
    "start-up (`sluice run` loads from source through tsx: 2–5 s that are not pacing): with limits given ≤ 1.05×",
    "and 0 × 429, learned ≤ 1.10× with 429s ≤ 2% of attempts (the sub-minute `sluice run --limits` row too: it",
    "learns the burst); no lost line.",
    ...(chosen.arrivals.length === 0 ? [] : [
      "",
      `Not run: ${
        chosen.arrivals.map((shape) => shape.name).join(", ")
      } (arrivals over time: a Batch API file has every line at the start, and \`sluice run\` reads a file,`,
      "counting its lines first, so it cannot be fed over time; `pnpm bench:openai --shapes` measures them)."
    ]),
    "",
    ...chosen.shapes.map((shape) =>
      `- **${shape.name}**: ${shape.description}; ${fmt(shape.limits.rpm)} RPM / ${fmt(shape.limits.tpm)} TPM.`
    ),
    "",
    "| round | shape | implementation | wall s | start-up s | minimum s | wall ÷ min | (wall − start-up) ÷ min | 429s / attempts | lost | goal met | load |",
    "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ...rows.map((row) =>
      `| ${row.round} | ${row.shape} | ${row.name} | ${row.finished ? "" : "> "}${seconds(row.wallMillis)} | ${
        seconds(row.startupMillis)
      } | ${seconds(row.minimumMillis)} | ${cell(row, row.wallMillis / row.minimumMillis)} | ${
        cell(row, paced(row))
      } | ${fmt(row.server429)} / ${fmt(row.serverAttempts)} | ${fmt(row.lost)} | ${shapeGoal(row)} | ${
        row.load[0].toFixed(1)
      } |`
    ),
    "",
    misses.length === 0
      ? "Every `sluice run` row met its goal."
      : `Rows that miss the goal: ${
        misses.map((row) =>
          `${row.shape} ${row.name} (${paced(row).toFixed(3)}×, ${fmt(row.server429)} × 429 in ${
            fmt(row.serverAttempts)
          } attempts${row.lost > 0 ? `, ${fmt(row.lost)} lost` : ""}${row.finished ? "" : ", stopped"})`
        ).join("; ")
      }.`,
    "",
    "What each `sluice run` row said it learned (its summary's `learned:` and `binding:` lines):",
    "",
    ...learned,
    ""
  ].join("\n")
}

const shapesMain = Effect.gen(function*() {
  const flag = args[args.indexOf("--shapes") + 1] ?? "all"
  const chosen = fileShapes(flag)
  const started = { at: new Date().toISOString(), load: loadavg() }
  const rows: Array<ShapeRow> = []
  for (let round = 1; round <= rounds; round++) {
    for (const shape of chosen.shapes) {
      const workload = shapeFiles(shape)
      for (const implementation of selected) {
        if (implementation === "sluice-run-burst" && workload.burstLimitsPath === undefined) continue
        process.stdout.write(`${shape.name}: `)
        rows.push({ ...(yield* runRow(round, implementation, workload)), shape: shape.name })
      }
    }
  }
  const out = renderShapes(rows, flag, chosen, started)
  if (writeResults) {
    const path = new URL("./results/cli.md", import.meta.url)
    const before = existsSync(path) ? readFileSync(path, "utf8").trimEnd() : ""
    writeFileSync(path, `${before}\n\n${out}`)
  }
  process.stdout.write("\n" + out)
})

const main = Effect.gen(function*() {
  mkdirSync(work, { recursive: true })
  writeFileSync(inputPath, requests.map(batchLine).join("\n") + "\n")
  writeFileSync(limitsPath, JSON.stringify({ models: LIMITS }, null, 2) + "\n")
  const started = { date: new Date().toISOString().slice(0, 10), load: loadavg() }
  const probe = yield* startupProbe
  process.stdout.write(
    `sluice --version: source ${probe.source.map(seconds).join(", ")} s; dist ${probe.dist.map(seconds).join(", ")} s\n`
  )
  const rows: Array<Row> = []
  for (let round = 1; round <= rounds; round++) {
    for (const implementation of selected) rows.push(yield* runRow(round, implementation))
  }
  const out = render(rows, started, probe)
  if (writeResults) {
    // the `--shapes` sections stay
    const path = new URL("./results/cli.md", import.meta.url)
    const before = existsSync(path) ? readFileSync(path, "utf8") : ""
    const at = before.indexOf(`\n${SHAPES_HEADING}`)
    writeFileSync(path, at < 0 ? out : `${out.trimEnd()}\n${before.slice(at)}`)
  }
  process.stdout.write("\n" + out)
})

Effect.runPromise(shapeMode ? shapesMain : main).catch((error) => {
  process.stderr.write(String(error?.stack ?? error) + "\n")
  process.exit(1)
})
