/**
 * A simulated day in virtual time: how long (wall clock) `VirtualTime.run` takes to drive a day of RPD-bound
 * traffic through the `OpenAi` service, the real `openai` SDK and the in-process simulator under `TestClock`.
 *
 *   node scripts/run-ts.mjs benchmarks/virtual-day.ts                  (3 rounds; writes benchmarks/results/virtual-time.md)
 *   node scripts/run-ts.mjs benchmarks/virtual-day.ts --rounds 1 --no-write
 *   node scripts/run-ts.mjs benchmarks/virtual-day.ts --only limiter      (one row: sdk, limiter or driver; writes nothing)
 *   node scripts/run-ts.mjs benchmarks/virtual-day.ts --requests 2000  (a smaller run; writes nothing)
 *   node scripts/run-ts.mjs benchmarks/virtual-day.ts --only driver --profile driver.cpuprofile
 *     (a CPU profile of the measured rounds only, after the warm-up and the modules' loading; writes nothing;
 *     a file named *.heapprofile gets what they allocate instead)
 *
 * The workload: 10,000 chat requests to `gpt-4o-mini` started at once, against 500 RPM and 5,000 requests a day
 * (the simulator's buckets start full, so 5,000 go within ten minutes and the other 5,000 at the daily rate, one
 * every 17.28 s: the theoretical minimum is one day). Sluice is given the same limits; latency 200–800 ms.
 */
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { OpenAi } from "@sluice/openai"
import { Scenario, SimFetch, SimStats, Simulator, VirtualTime } from "@sluice/testing"
import { Clock, Effect, Layer, TestContext } from "effect"
import { execSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import * as Os from "node:os"
import OpenAI from "openai"

const argv = process.argv.slice(2)
const flag = (name: string) => {
  const i = argv.indexOf(name)
  return i < 0 ? undefined : argv[i + 1]
}
const rounds = Number(flag("--rounds") ?? 3)
const requests = Number(flag("--requests") ?? 10_000)
const only = flag("--only") // "sdk", "limiter" or "driver": one row
const profile = flag("--profile") // a file: the CPU profile of the measured rounds
/** `--profile x.heapprofile`: what the measured rounds allocate (sampled, collected objects included) instead. */
const heap = profile?.endsWith(".heapprofile") === true
const write = !argv.includes("--no-write") && flag("--requests") === undefined && only === undefined &&
  profile === undefined
const RPM = Number(process.env.VT_RPM ?? 500)
const RPD = Number(process.env.VT_RPD ?? 5_000)
const MODEL = "gpt-4o-mini"

const scenario = Scenario.single(MODEL, { rpm: RPM, tpm: 10_000_000, rpd: RPD }, {
  seed: 20261206,
  latency: {
    request: { _tag: "uniform", min: Number(process.env.VT_LAT ?? 200), max: Number(process.env.VT_LAT ?? 800) },
    perOutputTokenMs: 0
  },
  stats: "counts"
})

/** Row 2: Sluice's limiter and the simulator's judgement, without the SDK's HTTP objects (Request, Response). */
const runLimiter = (count: number) =>
  Effect.gen(function*() {
    const sim = yield* Simulator.Simulator
    const pool = OpenAi.scopesFor({}, MODEL)[1]
    const budgets = [
      Budget.make(pool, [Budget.Limit.perMinute("requests", RPM), Budget.Limit.perDay("requests", RPD)])
    ]
    const app = Effect.flatMap(RateLimiter.RateLimiter, (limiter) =>
      Effect.forEach(
        Array.from({ length: count }, (_, i) => i),
        (i) =>
          Effect.flatMap(limiter.acquire([pool], { requests: 1 }), (permit) =>
            Effect.zipRight(
              sim.handle({
                method: "POST",
                path: "/v1/chat/completions",
                headers: { authorization: "Bearer sk-bench", "content-type": "application/json" },
                body: {
                  model: MODEL,
                  messages: [{ role: "user", content: `[req:${i}] one line, please` }],
                  max_tokens: 16
                }
              }),
              permit.settle({ requests: 1 })
            )),
        { concurrency: "unbounded", discard: true }
      ))
    const layer = RateLimiter.layer({ budgets }).pipe(Layer.provide(LimiterStore.layerMemory))
    return yield* measure(Effect.provide(app, layer))
  }).pipe(Effect.provide(Simulator.layer(scenario)), Effect.provide(TestContext.TestContext))

/**
 * Row 3: the driver alone: as many fibers as requests, each sleeping to two instants of its own spread over the day
 * (twice as many distinct instants as requests), then succeeding. Its "minimum" is the day.
 */
const runDriver = (count: number) =>
  Effect.gen(function*() {
    const day = 86_400_000
    const app = Effect.forEach(
      Array.from({ length: count }, (_, i) => i),
      (i) => Effect.zipRight(Effect.sleep(((i * 7_919) % count) * (day / 2 / count) + 1), Effect.sleep(day / 2)),
      { concurrency: "unbounded", discard: true }
    )
    const started = performance.now()
    const cpu = process.cpuUsage()
    yield* VirtualTime.run(app, { deadline: "3 days" })
    const wallMs = performance.now() - started
    const used = process.cpuUsage(cpu)
    return {
      wallMs,
      cpuMs: (used.user + used.system) / 1000,
      virtualMs: yield* Clock.currentTimeMillis,
      minimumMs: day,
      ok: count,
      rateLimited: 0
    }
  }).pipe(Effect.provide(TestContext.TestContext))

/** Runs `app` to its end with `VirtualTime.run`, timing it on the wall clock and in CPU. */
const measure = <E>(app: Effect.Effect<unknown, E>) =>
  Effect.gen(function*() {
    const started = performance.now()
    const cpu = process.cpuUsage()
    yield* VirtualTime.run(app, { deadline: "3 days" })
    const wallMs = performance.now() - started
    const used = process.cpuUsage(cpu)
    const stats = yield* Simulator.stats
    return {
      wallMs,
      cpuMs: (used.user + used.system) / 1000,
      virtualMs: yield* Simulator.elapsed,
      minimumMs: SimStats.theoreticalMinimum(stats, scenario),
      ok: stats.byStatus["200"] ?? 0,
      rateLimited: stats.byStatus["429"] ?? 0
    }
  })

/** Row 1: the whole stack — the `OpenAi` service, the `openai` SDK, the simulator's `fetch`. */
const run = (count: number) =>
  Effect.gen(function*() {
    const fetch = yield* SimFetch.make
    const client = new OpenAI({ apiKey: "sk-bench", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
    const pool = OpenAi.scopesFor({}, MODEL)[1]
    const budgets = [
      Budget.make(pool, [Budget.Limit.perMinute("requests", RPM), Budget.Limit.perDay("requests", RPD)])
    ]
    const layer = OpenAi.layerClient(client, { budgets }).pipe(Layer.provide(LimiterStore.layerMemory))
    const app = Effect.flatMap(OpenAi.OpenAi, (openai) =>
      Effect.forEach(
        Array.from({ length: count }, (_, i) => i),
        (i) =>
          openai.chat.completions.create({
            model: MODEL,
            messages: [{ role: "user", content: `[req:${i}] one line, please` }],
            max_tokens: 16
          }),
        { concurrency: "unbounded", discard: true }
      ))
    return yield* measure(Effect.provide(app, layer))
  }).pipe(Effect.provide(Simulator.layer(scenario)), Effect.provide(TestContext.TestContext))

const fmt = (ms: number) => (ms / 1000).toFixed(2)

const rowsOf = {
  "OpenAi service + openai SDK + SimFetch": run,
  "RateLimiter + Simulator.handle (no SDK)": runLimiter,
  "VirtualTime.run alone (sleeping fibers)": runDriver
} as const

const main = async () => {
  // warm-up: the SDK's request path, the modules, the JIT
  await Effect.runPromise(run(200))
  await Effect.runPromise(runLimiter(200))
  const load = Os.loadavg().map((l) => l.toFixed(2)).join(" / ")
  const rows: Array<string> = []
  const profiler = profile === undefined ? undefined : new Session()
  if (profiler !== undefined) {
    profiler.connect()
    if (heap) {
      await profiler.post("HeapProfiler.enable")
      await profiler.post("HeapProfiler.startSampling", {
        samplingInterval: 16_384,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true
      })
    } else {
      await profiler.post("Profiler.enable")
      await profiler.post("Profiler.start")
    }
  }
  for (let round = 1; round <= rounds; round++) {
    for (const [name, row] of Object.entries(rowsOf)) {
      if (
        only !== undefined &&
        !name.toLowerCase().includes({ sdk: "sdk +", limiter: "ratelimiter", driver: "alone" }[only] ?? only)
      ) continue
      const r = await Effect.runPromise(row(requests))
      const line = `| ${round} | ${name} | ${r.ok.toLocaleString("en")} | ${r.rateLimited} | ${
        (r.virtualMs / 3_600_000).toFixed(2)
      } h | ${(r.minimumMs / 3_600_000).toFixed(2)} h | ${(r.virtualMs / r.minimumMs).toFixed(4)} | **${
        fmt(r.wallMs)
      } s** | ${fmt(r.cpuMs)} s |`
      rows.push(line)
      console.log(line)
    }
  }
  if (profiler !== undefined && profile !== undefined) {
    const { profile: recorded } = heap
      ? await profiler.post("HeapProfiler.stopSampling")
      : await profiler.post("Profiler.stop")
    writeFileSync(profile, JSON.stringify(recorded))
    profiler.disconnect()
  }
  const commit = execSync("git rev-parse --short HEAD").toString().trim()
  const report = `# Virtual time: a simulated day

How long, on the wall clock, \`VirtualTime.run\` (\`@sluice/testing\`) takes to drive a day of RPD-bound traffic under
\`TestClock\`: ${requests.toLocaleString("en")} chat requests to \`${MODEL}\` started at once against ${RPM} RPM and ${
    RPD.toLocaleString("en")
  } requests a
day. The simulator's buckets start full, so ${
    RPD.toLocaleString("en")
  } requests go within ten minutes and the rest at the daily
rate (one every ${
    (86_400 / RPD).toFixed(2)
  } s): the theoretical minimum is one day. Sluice has the same limits configured;
latency 200–800 ms per request; the simulator keeps counters only (\`stats: "counts"\`). Each run is a fresh simulator
and limiter in a fresh \`TestContext\`, after a 200-request warm-up of each row. Three rows:

- **OpenAi service + openai SDK + SimFetch**: an application on the \`OpenAi\` service, the real \`openai\` SDK on the
  simulator's in-process \`fetch\` — what a user's test runs.
- **RateLimiter + Simulator.handle (no SDK)**: the same traffic through Sluice's \`RateLimiter\` and the simulator's
  judgement and latency, without the SDK's HTTP objects: the virtual-time machinery and the limiter alone.
- **VirtualTime.run alone (sleeping fibers)**: as many fibers as requests, each sleeping to two instants of its own over
  the day (twice as many distinct instants as requests): the driver's own cost (its 200s column counts the fibers).

Command: \`node scripts/run-ts.mjs benchmarks/virtual-day.ts\` (${rounds} rounds), on commit ${commit}. Node ${process.version},
${Os.cpus().length} × ${Os.cpus()[0]?.model ?? "CPU"}, ${
    new Date().toISOString().slice(0, 10)
  }; load average at the start ${load}
(a shared machine, busy with other work: wall times are noisy; the CPU time is the process's own).

| round | row | 200s | 429s | virtual time | theoretical minimum | virtual ÷ minimum | wall time | CPU time (user + system) |
|---|---|---:|---:|---:|---:|---:|---:|---:|
${rows.join("\n")}

The goal (issue 16): under 2 s of wall time for the simulated day.
`
  if (write) writeFileSync("benchmarks/results/virtual-time.md", report)
  else console.log(report)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
