/**
 * The orchestration both bulk benchmarks share (benchmarks/openai.ts and benchmarks/cli.ts; split out of
 * openai.ts when the CLI benchmark was added): the HTTP simulator's server, the client processes, the
 * theoretical minimum, and the facts a results file records (revision, versions, machine). Only the
 * orchestrators import it: a client process does not pay for loading Effect and the simulator.
 */
import type { HttpServerError } from "@effect/platform"
import { HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import type { Simulator } from "@sluice/testing"
import { SimServer } from "@sluice/testing/node"
import type { Scope } from "effect"
import { Effect } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs"
import * as Http from "node:http"
import { createRequire } from "node:module"
import { cpus, setPriority } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import type { ClientReport, Shape } from "./openai-workload.js"
import { knownCharge, shapeWorkload } from "./openai-workload.js"

// -----------------------------------------------------------------------------
// the command line
// -----------------------------------------------------------------------------

/**
 * The options both bulk benchmarks take: `--rounds N` (default 2), `--timeout S` per row (default 300),
 * `--only a,b` (those rows; nothing is written), `--no-write`, and `--priority N`: run the simulator and the
 * clients at scheduling priority N (a nice value; negative needs root). On a shared machine this keeps other
 * work from starving the simulator, which handles a burst of hundreds of requests one after another on one
 * core, so the rows measure the clients rather than the box. The priority is applied here.
 */
export const benchmarkOptions = (implementations: ReadonlyArray<string>) => {
  const args = process.argv.slice(2)
  const flag = (name: string): string | undefined => {
    const i = args.indexOf(`--${name}`)
    return i >= 0 ? args[i + 1] : undefined
  }
  const only = flag("only")?.split(",")
  const priority = flag("priority")
  if (priority !== undefined) setPriority(Number(priority))
  return {
    args,
    rounds: Number(flag("rounds") ?? 2),
    timeoutSeconds: Number(flag("timeout") ?? 300),
    selected: only === undefined ? [...implementations] : only,
    writeResults: only === undefined && !args.includes("--no-write"),
    priority
  }
}

// -----------------------------------------------------------------------------
// the report
// -----------------------------------------------------------------------------

/** What both benchmarks' rows have in common, for the parts of the report they share. */
export interface ReportRow {
  readonly round: number
  readonly implementation: string
  readonly name: string
  /** "how it is configured; a note; another note": the first part is the same every round. */
  readonly config: string
}

/** The rows by round, in order. */
export const byRoundOf = <R extends ReportRow>(rows: ReadonlyArray<R>): Map<number, Array<R>> => {
  const byRound = new Map<number, Array<R>>()
  for (const row of rows) byRound.set(row.round, [...(byRound.get(row.round) ?? []), row])
  return byRound
}

/** One bullet per implementation: its configuration, then what each round noted. */
export const configLines = (rows: ReadonlyArray<ReportRow>): Array<string> =>
  [...new Set(rows.map((row) => row.implementation))].map((implementation) => {
    const list = rows.filter((r) => r.implementation === implementation)
    const [base] = list[0].config.split("; ")
    const notes = list.map((row) => [row.round, row.config.split("; ").slice(1).join("; ")] as const)
      .filter(([, note]) => note !== "")
    return `- **${list[0].name}**: ${base}.${notes.map(([round, note]) => ` Round ${round}: ${note}.`).join("")}`
  })

/**
 * The sections both reports share, in order: a table per round, the spread across rounds, the rows'
 * configurations and the cross-checks table (`checks`: its header, its alignment line, its rows).
 */
export const tableSections = <R extends ReportRow>(
  rows: ReadonlyArray<R>,
  sections: {
    readonly table: (list: ReadonlyArray<R>) => string
    readonly spread: string
    readonly checks: readonly [header: string, align: string, rows: ReadonlyArray<string>]
  }
): Array<string> => [
  ...[...byRoundOf(rows).entries()].flatMap(([round, list]) => [`## Round ${round}`, "", sections.table(list), ""]),
  "## Spread across rounds",
  "",
  sections.spread,
  "",
  "## Rows",
  "",
  ...configLines(rows),
  "",
  "## Cross-checks",
  "",
  sections.checks[0],
  sections.checks[1],
  ...sections.checks[2],
  ""
]

// -----------------------------------------------------------------------------
// the simulator's server
// -----------------------------------------------------------------------------

/** One HTTP exchange as the server saw it, on this process's `performance.now()` clock. */
export interface Exchange {
  readonly method: string
  readonly path: string
  readonly status: number
  /** When the request's headers arrived. */
  readonly start: number
  /** When the response was handed to the socket in full. */
  readonly end: number
}

/**
 * `SimServer.serve({ port: 0 })` — the same `SimServer.app` on a loopback Node server — with two of Node's
 * server defaults changed, both loopback artefacts that api.openai.com's edge does not have:
 * - a listen backlog of 4,096 instead of 511: a client that opens several hundred connections at once
 *   (Sluice's first burst, the eager p-limit rows) otherwise overflows the accept queue, and the dropped SYNs
 *   come back a second or more later (TCP's retransmission timeout);
 * - idle keep-alive connections kept 65 s instead of 5 s: otherwise a client whose pooled connections sit
 *   idle for 4–5 s (Sluice after its first burst: hundreds of sockets, a few dozen in use) races the
 *   server's close on a loaded machine and gets `UND_ERR_SOCKET` ("other side closed") on reuse.
 *
 * `exchanges` receives every request with its status and server-side times.
 */
export const serveSimulator = (
  exchanges?: Array<Exchange>
): Effect.Effect<{ readonly url: string }, HttpServerError.ServeError, Scope.Scope | Simulator.Simulator> =>
  Effect.gen(function*() {
    const server = yield* NodeHttpServer.make(
      () => {
        const node = Http.createServer({ keepAliveTimeout: 65_000 })
        if (exchanges !== undefined) {
          node.on("request", (request: Http.IncomingMessage, response: Http.ServerResponse) => {
            const start = performance.now()
            response.on("finish", () => {
              exchanges.push({
                method: request.method ?? "",
                path: (request.url ?? "").split("?")[0],
                status: response.statusCode,
                start,
                end: performance.now()
              })
            })
          })
        }
        return node
      },
      { port: 0, host: "127.0.0.1", backlog: 4096 }
    )
    yield* server.serve(
      Effect.catchAll(SimServer.app, (error) => HttpServerResponse.text(String(error), { status: 400 }))
    )
    const port = server.address._tag === "TcpAddress" ? server.address.port : 0
    return { url: `http://127.0.0.1:${port}/v1` }
  })

// -----------------------------------------------------------------------------
// the clients' processes
// -----------------------------------------------------------------------------

/**
 * `--built`: the clients load `@sluice/*` from the packages' `dist` (what an installed package runs: `pnpm build`
 * first), not from their sources through tsx (which compiles a module on its first use, mid-run). A `dist` older
 * than its package's sources is refused: the bench would measure code that is not the tree's.
 */
const built = process.argv.includes("--built")
if (built) {
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce(
      (latest, entry) =>
        Math.max(
          latest,
          entry.isDirectory() ? newest(join(dir, entry.name)) : statSync(join(dir, entry.name)).mtimeMs
        ),
      0
    )
  for (const pkg of ["core", "openai"]) {
    const entry = fileURLToPath(new URL(`../packages/${pkg}/dist/esm/index.js`, import.meta.url))
    const sources = fileURLToPath(new URL(`../packages/${pkg}/src`, import.meta.url))
    if (!existsSync(entry) || statSync(entry).mtimeMs < newest(sources)) {
      process.stderr.write(`--built: ${entry} is missing or older than its sources; run \`pnpm build\` first\n`)
      process.exit(2)
    }
  }
}

/** benchmarks/openai-client.ts, and the Node flags that run it (from source unless `--built`). */
export const CLIENT = {
  path: fileURLToPath(new URL("./openai-client.ts", import.meta.url)),
  execArgv: [
    ...(built ? [] : ["--conditions=sluice-source"]),
    "--import",
    createRequire(import.meta.url).resolve("tsx")
  ]
} as const

/** How a client process went, on this process's `performance.now()` clock. */
export interface ProcessResult {
  readonly code: number | null
  /** The `ClientReport` it sent over IPC, if any. */
  readonly report: ClientReport | undefined
  readonly stdout: string
  readonly spawnedAt: number
  readonly exitedAt: number
  /** User + system CPU, from /proc (Linux; sampled every 100 ms, so up to 100 ms short), else NaN. */
  readonly cpuMillis: number
}

const clockTicks = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
  } catch {
    return 100
  }
})()

const cpuOf = (pid: number): number => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks
  } catch {
    return NaN
  }
}

/**
 * Runs `node [execArgv] args…` as a child process (stdout captured, stderr passed through, an IPC
 * channel for the report). Interrupting the effect kills the child.
 */
export const runProcess = (
  options: {
    readonly args: ReadonlyArray<string>
    readonly execArgv?: ReadonlyArray<string> | undefined
    readonly env?: NodeJS.ProcessEnv | undefined
  }
) =>
  Effect.async<ProcessResult>((resume) => {
    let report: ClientReport | undefined
    let stdout = ""
    let cpuMillis = NaN
    const spawnedAt = performance.now()
    const child = spawn(process.execPath, [...(options.execArgv ?? []), ...options.args], {
      stdio: ["ignore", "pipe", "inherit", "ipc"],
      env: options.env ?? process.env
    })
    const sampler = setInterval(() => {
      if (child.pid !== undefined) {
        const cpu = cpuOf(child.pid)
        if (Number.isFinite(cpu)) cpuMillis = cpu
      }
    }, 100)
    child.stdout?.setEncoding("utf8")
    child.stdout?.on("data", (chunk: string) => {
      stdout += chunk
    })
    child.on("message", (message) => {
      report = message as ClientReport
    })
    let exited: { readonly code: number | null; readonly at: number } | undefined
    child.on("exit", (code) => {
      exited = { code, at: performance.now() }
      clearInterval(sampler)
    })
    // "close": the exit and the end of its stdout (the summary), in either order
    child.on("close", (code) => {
      clearInterval(sampler)
      const { at } = exited ?? { at: performance.now() }
      resume(Effect.succeed({ code: exited?.code ?? code, report, stdout, spawnedAt, exitedAt: at, cpuMillis }))
    })
    return Effect.sync(() => {
      clearInterval(sampler)
      child.kill("SIGKILL")
    })
  })

// -----------------------------------------------------------------------------
// the theoretical minimum
// -----------------------------------------------------------------------------

/**
 * A token bucket of capacity C (the per-minute limit L) refilled at L per minute admits a total X no sooner
 * than max(0, (X − C) / L) minutes after the start. The binding limit is the largest of these; the last
 * request then still takes its own latency.
 */
export const bucketMinimumMillis = (total: number, limitPerMinute: number): number =>
  Math.max(0, (total - limitPerMinute) / limitPerMinute) * 60_000

/**
 * The least time a named shape's server allows (admission only; the last request's latency is added per
 * row): each bucket starts full at its capacity C = share × L (the burst where the server enforces
 * sub-minute buckets, else one minute's limit) and refills at L a minute, so a total X takes (X − C) / L
 * minutes; with Poisson arrivals, no earlier than the last arrival. Both shape benchmarks (`pnpm bench:openai
 * --shapes`, `pnpm bench:cli --shapes`) use it.
 */
export const shapeMinimumMillis = (shape: Shape): number => {
  const requests = shapeWorkload(shape)
  // what the server keeps of each call: its usage, or its admission estimate where it never trues up
  const kept = shape.enforcement?.settle === "never"
  const tokens = requests.reduce((sum, request) => sum + (kept ? knownCharge(request) : request.knownUsage), 0)
  const share = shape.burstShare ?? 1
  const bucket = (total: number, limit: number) => bucketMinimumMillis(total - limit * share + limit, limit)
  const admission = Math.max(bucket(tokens, shape.limits.tpm), bucket(requests.length, shape.limits.rpm))
  const lastArrival = Math.max(0, ...requests.map((request) => request.at ?? 0))
  return Math.max(admission, lastArrival)
}

// -----------------------------------------------------------------------------
// reporting
// -----------------------------------------------------------------------------

export const seconds = (ms: number): string => (ms / 1000).toFixed(1)
export const fmt = (n: number): string => Number.isFinite(n) ? n.toLocaleString("en-US") : "–"
export const loads = (load: ReadonlyArray<number>): string => load.map((x) => x.toFixed(2)).join(" / ")

export const quantile = (list: ReadonlyArray<number>, q: number): number => {
  const sorted = [...list].sort((a, b) => a - b)
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

/** `commit abc1234`, and whether packages/ has uncommitted changes (the library measured is not the commit's). */
export const gitState = (): string => {
  try {
    const git = (...gitArgs: Array<string>) =>
      execFileSync("git", gitArgs, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
    const head = git("rev-parse", "--short", "HEAD")
    const dirty = git("status", "--porcelain", "--", "packages")
    return dirty === "" ? `commit ${head}` : `commit ${head} plus uncommitted changes under packages/`
  } catch {
    return "unknown revision"
  }
}

/** The installed SDK's version (its package.json is not exported: found next to its entry point). */
export const openaiVersion = (): string => {
  let dir = dirname(createRequire(import.meta.url).resolve("openai"))
  for (let i = 0; i < 4; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string; version?: string }
      if (pkg.name === "openai") return pkg.version ?? "?"
    } catch {
      // not here: one level up
    }
    dir = dirname(dir)
  }
  return "?"
}

/** `Node v20.20.2, openai 6.49.0, 2 × AMD EPYC` */
export const machine = (): string =>
  `Node ${process.version}, openai ${openaiVersion()}, ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}`
