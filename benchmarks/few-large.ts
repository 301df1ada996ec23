/**
 * The `few-large` shape of `pnpm bench:openai --shapes` (issue 13) measured the way OpenAiFewLarge.test.ts measures
 * its own workload, and a model of what reserving less than `max_tokens` would buy (benchmarks/results/openai-shapes.md,
 * "Few large calls with limits given").
 *
 *   node scripts/run-ts.mjs benchmarks/few-large.ts            (both parts; prints, writes nothing)
 *   node scripts/run-ts.mjs benchmarks/few-large.ts --model    (the model only: no Sluice run)
 *
 * 1. Sluice in virtual time on the bench's own requests and server (`shapeWorkload`, `shapeScenario`: the real SDK on
 *    the in-process simulator under TestClock, budgets equal to the server's, as the bench's `sluice` row), against
 *    `settle: "admission"` (the default: the server trues each call up to its usage the moment it admits it) and
 *    `settle: "never"` (it keeps `prompt + max_tokens`). Each run is divided by both denominators: the bench's
 *    (`shapeMinimumMillis`, from the requests' known usage, plus the latency of the call sent last) and the
 *    virtual test's (`SimStats.theoreticalMinimum` of what the server charged, plus the largest latency it served).
 * 2. A model (no Sluice, no simulator): a FIFO client on the same requests against a server that checks
 *    `prompt + max_tokens` at admission and charges the usage at once. The client reserves R for a call sent and not
 *    answered, adopts every report (the server's level right after the reported call, the calls sent after it at their
 *    usage once answered, at R before) and, refused, adopts the 429's level and waits for its hint. R is the whole
 *    estimate (what Sluice reserves) or `prompt + f × max_tokens`, f the q-quantile of the output fractions answered so
 *    far (from the tenth answer). Output fractions: the simulator's (half of `max_tokens`, always) and three spreads;
 *    latency as the bench's (lognormal median 500 ms, σ 0.5, capped at 6 s, plus 10 ms a generated token); 20 seeds.
 */
import { Budget, LimiterStore } from "@sluice/core"
import { OpenAi } from "@sluice/openai"
import { SimConfig, SimFetch, SimStats, Simulator, VirtualTime } from "@sluice/testing"
import { Clock, Effect, Layer, TestContext } from "effect"
import OpenAI from "openai"
import { shapeMinimumMillis } from "./cli-harness.js"
import { type ChatRequest, isChat, MODEL, prng, SHAPES, shapeScenario, shapeWorkload } from "./openai-workload.js"

const shape = SHAPES.find((s) => s.name === "few-large")!
const requests = shapeWorkload(shape).filter(isChat)
const CAPACITY = shape.limits.tpm
const REFILL = CAPACITY / 60_000

// -----------------------------------------------------------------------------
// 1. Sluice in virtual time
// -----------------------------------------------------------------------------

const sluiceRun = (settle: "admission" | "never") =>
  Effect.gen(function*() {
    const fetch = yield* SimFetch.make
    const client = new OpenAI({ apiKey: "sk-bench", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
    const budgets = [
      Budget.make(OpenAi.scopesFor({}, MODEL)[1], [
        Budget.Limit.perMinute("requests", shape.limits.rpm),
        Budget.Limit.perMinute("tokens", shape.limits.tpm)
      ])
    ]
    const layer = OpenAi.layerClient(client, { budgets, timeSlice: false }).pipe(
      Layer.provide(LimiterStore.layerMemory)
    )
    const app = Effect.flatMap(OpenAi.OpenAi, (openai) =>
      Effect.forEach(
        requests,
        (request: ChatRequest) =>
          openai.chat.completions.create({
            model: request.body.model,
            messages: request.body.messages.map((m) => ({ role: m.role, content: m.content })),
            max_tokens: request.body.max_tokens
          }),
        { concurrency: "unbounded", discard: true }
      ))
    const start = yield* Clock.currentTimeMillis
    yield* VirtualTime.run(Effect.provide(app, layer), { deadline: "1 hour" })
    const wall = (yield* Clock.currentTimeMillis) - start
    const stats = yield* Simulator.stats
    const answered = stats.attempts.filter((a) => a.status === 200)
    const lastSent = answered.reduce((last, a) => (a.at >= last.at ? a : last), answered[0])
    const bench = shapeMinimumMillis(shape) + (lastSent.latencyMs ?? 0)
    const largest = Math.max(...answered.map((a) => a.latencyMs ?? 0))
    const virtual = SimStats.theoreticalMinimum(stats, shape.limits) + largest
    return {
      settle,
      wall,
      bench,
      virtual,
      lastSentLatency: lastSent.latencyMs ?? 0,
      largest,
      rateLimited: stats.byStatus["429"] ?? 0,
      attempts: stats.attempts.length
    }
  }).pipe(
    Effect.provide(Simulator.layer(SimConfig.make({ ...shapeScenario(shape), enforcement: { settle } }))),
    Effect.provide(TestContext.TestContext)
  )

// -----------------------------------------------------------------------------
// 2. the reservation model
// -----------------------------------------------------------------------------

const base = requests.map((request) => {
  const max = request.body.max_tokens
  // knownUsage is the prompt (ceil(chars / 4), as the simulator counts it) plus half of max_tokens
  const prompt = request.knownUsage - Math.ceil(0.5 * max)
  return { prompt, max, estimate: prompt + max }
})

const ttfb = (random: () => number) => {
  const u = Math.max(1e-12, random())
  const v = random()
  return Math.min(6_000, 500 * Math.exp(0.5 * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)))
}

type Fraction = (random: () => number) => number

const FRACTIONS: ReadonlyArray<readonly [string, Fraction]> = [
  ["half of max_tokens, always (the simulator)", () => 0.5],
  ["uniform 0.3-0.7", (random) => 0.3 + 0.4 * random()],
  ["uniform 0-1", (random) => random()],
  ["90% uniform 0.1-0.5, 10% reach max_tokens", (random) => (random() < 0.1 ? 1 : 0.1 + 0.4 * random())]
]

const POLICIES: ReadonlyArray<readonly [string, number | undefined]> = [
  ["the estimate (Sluice)", undefined],
  ["largest fraction seen", 1],
  ["0.95-quantile", 0.95],
  ["0.9-quantile", 0.9]
]

/** One run of the model: its end over the server's minimum plus the largest latency, and its 429s. */
const modelRun = (fraction: Fraction, seed: number, quantile: number | undefined) => {
  const random = prng(seed)
  const calls = base.map((c) => {
    const output = Math.max(1, Math.min(c.max, Math.ceil(fraction(random) * c.max)))
    return { ...c, usage: c.prompt + output, latency: ttfb(random) + 10 * output }
  })
  const admitted: Array<
    { readonly i: number; readonly at: number; readonly after: number; readonly reserved: number }
  > = []
  const serverLevel = (now: number) => {
    let level = CAPACITY
    let t = 0
    for (const a of admitted) {
      level = Math.min(CAPACITY, level + REFILL * (a.at - t)) - calls[a.i].usage
      t = a.at
    }
    return Math.min(CAPACITY, level + REFILL * (now - t))
  }
  const answered = (k: number, now: number) => admitted[k].at + calls[admitted[k].i].latency <= now
  const reserve = (i: number, now: number) => {
    if (quantile === undefined) return calls[i].estimate
    const seen = admitted.filter((_, k) => answered(k, now))
      .map((a) => (calls[a.i].usage - calls[a.i].prompt) / calls[a.i].max)
      .sort((a, b) => a - b)
    if (seen.length < 10) return calls[i].estimate
    return calls[i].prompt +
      Math.ceil(seen[Math.min(seen.length - 1, Math.floor(quantile * seen.length))] * calls[i].max)
  }
  /** The report adopted last: the server's level at `at`, the calls from `from` on not counted in it. */
  let adopted = { at: 0, level: CAPACITY, from: 0 }
  const clientLevel = (now: number) => {
    for (let m = adopted.from; m < admitted.length; m++) {
      if (answered(m, now)) adopted = { at: admitted[m].at, level: admitted[m].after, from: m + 1 }
    }
    let level = adopted.level
    let t = adopted.at
    for (let k = adopted.from; k < admitted.length; k++) {
      level = Math.min(CAPACITY, level + REFILL * (admitted[k].at - t)) -
        (answered(k, now) ? calls[admitted[k].i].usage : admitted[k].reserved)
      t = admitted[k].at
    }
    return Math.min(CAPACITY, level + REFILL * (now - t))
  }
  let now = 0
  let rateLimited = 0
  while (admitted.length < calls.length) {
    const i = admitted.length
    const { estimate } = calls[i]
    const local = clientLevel(now)
    if (local >= estimate) {
      const server = serverLevel(now)
      if (server >= estimate) {
        admitted.push({ i, at: now, after: server - calls[i].usage, reserved: reserve(i, now) })
        continue
      }
      // refused: the 429's headers give the server's level, its hint the wait for the estimate
      rateLimited++
      adopted = { at: now, level: server, from: admitted.length }
      now += Math.ceil((estimate - server) / REFILL)
      continue
    }
    let to = now + Math.ceil((estimate - local) / REFILL)
    for (const a of admitted) if (a.at + calls[a.i].latency > now) to = Math.min(to, a.at + calls[a.i].latency)
    now = to
  }
  const end = Math.max(...admitted.map((a) => a.at + calls[a.i].latency))
  const total = calls.reduce((sum, c) => sum + c.usage, 0)
  const bound = Math.max(0, (total - CAPACITY) / REFILL) + Math.max(...calls.map((c) => c.latency))
  return { ratio: end / bound, rateLimited }
}

const model = () => {
  const lines = [
    "| output fractions | R | ratio, mean (min-max) | 429s in 20 runs | runs with a 429 |",
    "|---|---|---|---:|---:|"
  ]
  for (const [name, fraction] of FRACTIONS) {
    for (const [policy, quantile] of POLICIES) {
      const runs = Array.from({ length: 20 }, (_, s) => modelRun(fraction, 1_000 + s, quantile))
      const ratios = runs.map((r) => r.ratio)
      const mean = ratios.reduce((a, b) => a + b, 0) / runs.length
      lines.push(
        `| ${name} | ${policy} | ${mean.toFixed(3)} (${Math.min(...ratios).toFixed(3)}-${
          Math.max(...ratios).toFixed(3)
        }) | ${runs.reduce((sum, r) => sum + r.rateLimited, 0)} | ${runs.filter((r) => r.rateLimited > 0).length} |`
      )
    }
  }
  return lines.join("\n")
}

const main = Effect.gen(function*() {
  if (!process.argv.includes("--model")) {
    process.stdout.write(
      "| server | wall s | bench's minimum (+ last sent's latency) | ratio | server's minimum + largest latency | ratio | 429s / attempts |\n|---|---:|---:|---:|---:|---:|---:|\n"
    )
    for (const settle of ["admission", "never"] as const) {
      const run = yield* sluiceRun(settle)
      process.stdout.write(
        `| settle: ${settle} | ${(run.wall / 1000).toFixed(1)} | ${(run.bench / 1000).toFixed(1)} (${
          (run.lastSentLatency / 1000).toFixed(1)
        }) | ${(run.wall / run.bench).toFixed(3)} | ${(run.virtual / 1000).toFixed(1)} (${
          (run.largest / 1000).toFixed(1)
        }) | ${(run.wall / run.virtual).toFixed(3)} | ${run.rateLimited} / ${run.attempts} |\n`
      )
    }
    process.stdout.write("\n")
  }
  process.stdout.write(model() + "\n")
})

Effect.runPromise(main).then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(String(error?.stack ?? error) + "\n")
    process.exit(1)
  }
)
