/**
 * Benchmark (issue 13): the OpenAI benchmark over named workload shapes, Sluice (limits given, and learned)
 * beside the bare SDK + p-limit and the cookbook-style processor, each row against a fresh HTTP simulator in
 * one run on one machine.
 *
 *   pnpm bench:openai --shapes all                              (writes benchmarks/results/openai-shapes-latest.md)
 *   pnpm bench:openai --shapes sub-minute,no-headers --only sluice-adaptive   (a quick look; writes nothing)
 *
 * Only a run of every shape and every row writes, and only its own file: benchmarks/results/openai-shapes.md is the
 * sessions' log, kept by hand (a run of one shape once overwrote it with its table).
 *
 * Shapes (benchmarks/openai-workload.ts `SHAPES`): few-large, few-large-kept, many-small, mixed, poisson-90, poisson-120,
 * sub-minute, no-headers. Per shape and row: the wall time against the theoretical minimum (each server bucket
 * starts full, at its capacity — the burst when the server enforces sub-minute buckets — and refills at its
 * limit; with Poisson arrivals no earlier than the last arrival), plus the latency of the request that finished
 * last, and the 429s the server sent. Goals: with limits given ≤ 1.05× and no 429; with limits learned ≤ 1.10×
 * and 429s ≤ 2% of attempts.
 */
import { SimConfig, SimStats, Simulator } from "@sluice/testing"
import { Duration, Effect, Option } from "effect"
import { writeFileSync } from "node:fs"
import { cpus, getPriority, loadavg } from "node:os"
import { benchmarkOptions, CLIENT, gitState, runProcess, serveSimulator, shapeMinimumMillis } from "./cli-harness.js"
import type { ClientReport, Shape } from "./openai-workload.js"
import { SHAPES, shapeScenario } from "./openai-workload.js"

const IMPLEMENTATIONS = ["sluice", "sluice-adaptive", "bare-64-2", "cookbook"] as const

const { args, rounds, selected, timeoutSeconds, writeResults } = benchmarkOptions(IMPLEMENTATIONS)
const shapeFlag = args[args.indexOf("--shapes") + 1] ?? "all"
const shapes = shapeFlag === "all" ? SHAPES : SHAPES.filter((shape) => shapeFlag.split(",").includes(shape.name))
if (shapes.length === 0) {
  throw new Error(`--shapes: none of ${shapeFlag} (known: ${SHAPES.map((s) => s.name).join(", ")})`)
}

interface Row {
  readonly round: number
  readonly shape: string
  readonly implementation: string
  readonly finished: boolean
  readonly wallMillis: number
  readonly minimumMillis: number
  /**
   * The virtual tests' denominator (OpenAiFewLarge.test.ts `boundOf`): the minimum of what the server charged
   * (its admissions) plus the largest latency it served, where `minimumMillis` takes the workload's known usage
   * plus the latency of the call the client sent last.
   */
  readonly serverBoundMillis: number
  readonly server429: number
  readonly attempts: number
  readonly lost: number
  readonly load: number
}

const runRow = (round: number, shape: Shape, implementation: string, scenario = SimConfig.make(shapeScenario(shape))) =>
  Effect.gen(function*() {
    const { url } = yield* serveSimulator()
    const outcome = yield* Effect.timeoutOption(
      runProcess({
        execArgv: CLIENT.execArgv,
        args: [CLIENT.path, implementation, url],
        env: { ...process.env, SLUICE_BENCH_SHAPE: shape.name }
      }),
      Duration.seconds(timeoutSeconds)
    )
    const stats = yield* Simulator.stats
    const report: ClientReport | undefined = Option.isSome(outcome) ? outcome.value.report : undefined
    let last = { sentAt: -1, latency: 0 }
    for (const attempt of report?.attempts ?? []) {
      if (attempt.status === 200 && attempt.sentAt > last.sentAt) last = attempt
    }
    const chat = stats.attempts.filter((attempt) => attempt.path === "/v1/chat/completions")
    const succeeded = new Set(chat.filter((a) => a.status === 200).map((a) => a.key)).size
    const largestLatency = Math.max(0, ...chat.map((a) => a.latencyMs ?? 0))
    const row: Row = {
      round,
      shape: shape.name,
      implementation,
      finished: report !== undefined,
      wallMillis: report?.wallMillis ?? timeoutSeconds * 1000,
      minimumMillis: shapeMinimumMillis(shape) + last.latency,
      serverBoundMillis: SimStats.theoreticalMinimum(stats, scenario) + largestLatency,
      server429: stats.byStatus["429"] ?? 0,
      attempts: chat.length,
      lost: shape.requests - succeeded,
      load: loadavg()[0]
    }
    process.stdout.write(
      `round ${round} ${shape.name} ${implementation}: ${row.finished ? "" : "STOPPED "}${
        (row.wallMillis / 1000).toFixed(1)
      } s, ×${(row.wallMillis / row.minimumMillis).toFixed(3)} the minimum (×${
        (row.wallMillis / row.serverBoundMillis).toFixed(3)
      } the server's minimum + largest latency, ${
        (row.serverBoundMillis / 1000).toFixed(1)
      } s), 429s ${row.server429}/${row.attempts}, lost ${row.lost}; load ${row.load.toFixed(1)}\n`
    )
    return row
  }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario)))

const goal = (row: Row): string => {
  const ratio = row.wallMillis / row.minimumMillis
  if (row.implementation === "sluice") return ratio <= 1.05 && row.server429 === 0 && row.lost === 0 ? "yes" : "no"
  if (row.implementation === "sluice-adaptive") {
    return ratio <= 1.1 && row.server429 <= 0.02 * row.attempts && row.lost === 0 ? "yes" : "no"
  }
  return ""
}

/** The least and the most load average of the rows, as "a–b". */
const loadRange = (rows: ReadonlyArray<Row>): string => {
  const loads = rows.map((row) => row.load)
  return `${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}`
}

/** This process's nice value (the bench's children inherit it). */
const priority = getPriority()

const render = (rows: ReadonlyArray<Row>, started: Date): string => {
  const git = gitState()
  const lines = [
    "# OpenAI benchmark: workload shapes",
    "",
    `Command: \`${priority === 0 ? "" : `nice -n ${priority} `}pnpm bench:openai ${
      args.join(" ")
    }\` (run ${started.toISOString()}, ${cpus().length} cores, ${git}).`,
    "",
    `The 1-minute load average at the end of each row is in the table (${loadRange(rows)} in this run): on a`,
    "shared machine absolute times vary with it; the rows of one shape ran one after another against the same",
    "simulator, and compare.",
    "",
    "Each row: a fresh in-process HTTP simulator (`@sluice/testing`, loopback, full buckets, same seed), the",
    "client in a child process of its own (benchmarks/openai-client.ts, `SLUICE_BENCH_SHAPE`). The minimum: each",
    "server bucket starts full at its capacity (for sub-minute enforcement the 5-second burst) and refills at its",
    "limit, no earlier than the last arrival, plus the latency of the request that finished last. Goals: Sluice",
    "with limits given (the server's, with its burst where it enforces one) ≤ 1.05× with no 429; Sluice with limits",
    "learned (no limits given) ≤ 1.10× with 429s ≤ 2% of attempts.",
    "",
    ...shapes.map((shape) =>
      `- **${shape.name}**: ${shape.description}; ${shape.limits.rpm} RPM / ${shape.limits.tpm} TPM.`
    ),
    "",
    "The column \"ratio (test's)\" divides by the virtual tests' bound instead (OpenAiFewLarge.test.ts): the minimum of",
    "what the server charged plus the largest latency it served, not the latency of the call sent last.",
    "",
    "| round | shape | implementation | wall s | minimum s | ratio | ratio (test's) | 429s / attempts | lost | goal met | load |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows.map((row) =>
      `| ${row.round} | ${row.shape} | ${row.implementation} | ${row.finished ? "" : "stopped at "}${
        (row.wallMillis / 1000).toFixed(1)
      } | ${(row.minimumMillis / 1000).toFixed(1)} | ${(row.wallMillis / row.minimumMillis).toFixed(3)} | ${
        (row.wallMillis / row.serverBoundMillis).toFixed(3)
      } | ${row.server429} / ${row.attempts} | ${row.lost} | ${goal(row)} | ${row.load.toFixed(1)} |`
    ),
    ""
  ]
  return lines.join("\n")
}

const main = Effect.gen(function*() {
  const started = new Date()
  const rows: Array<Row> = []
  for (let round = 1; round <= rounds; round++) {
    for (const shape of shapes) {
      for (const implementation of selected) rows.push(yield* runRow(round, shape, implementation))
    }
  }
  const out = render(rows, started)
  // a part of the shapes is a quick look, as a part of the rows is (`--only`)
  const written = writeResults && shapes.length === SHAPES.length
  if (written) writeFileSync(new URL("./results/openai-shapes-latest.md", import.meta.url), out)
  process.stdout.write(out)
  process.stdout.write(
    written
      ? "\n(written to benchmarks/results/openai-shapes-latest.md)\n"
      : "\n(a part of the shapes or rows: nothing written; --shapes all without --only writes the file)\n"
  )
})

Effect.runPromise(main).then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(String(error?.stack ?? error) + "\n")
    process.exit(1)
  }
)
