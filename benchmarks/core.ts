/**
 * Benchmark (issue 2): acquire + settle of one call charged against 3 scopes × 3 dimensions.
 *
 *   pnpm bench            (writes benchmarks/results/core.md)
 *
 * Peers, measured in the same process and run:
 *   (a) effect's own RateLimiter, nine of them composed (one per scope and dimension), each with
 *       RateLimiter.withCost — it has no settle, so its row is acquire only;
 *   (b) rate-limiter-flexible's RateLimiterMemory: nine consume() calls (one per scope and dimension)
 *       plus three reward() calls to settle the token dimension — neither atomic nor waiting.
 * Limits are set high enough that nothing waits: this measures the admission path itself.
 */
import { Budget, RateLimiter } from "@sluice/core"
import { Effect, Exit, Layer, ManagedRuntime, RateLimiter as EffectRateLimiter, Scope } from "effect"
import { writeFileSync } from "node:fs"
import { cpus } from "node:os"
import { RateLimiterMemory } from "rate-limiter-flexible"
import { Bench } from "tinybench"

const scopes = ["org:acme", "org:acme/project:search", "pool:gpt-4o"] as const
const dimensions = ["requests", "tokens", "images"] as const
const HUGE = 1e12
const cost = { requests: 1, tokens: 1480, images: 1 }
const actual = { tokens: 620 }

const budgets = scopes.map((scope) =>
  Budget.make(scope, [
    Budget.Limit.perMinute("requests", HUGE),
    Budget.Limit.perMinute("tokens", HUGE),
    Budget.Limit.perMinute("images", HUGE)
  ])
)

const runtime = ManagedRuntime.make(RateLimiter.layerMemory({ budgets }).pipe(Layer.orDie))

const sluiceOnce = Effect.flatMap(
  RateLimiter.RateLimiter,
  (limiter) => Effect.flatMap(limiter.acquire(scopes, cost), (permit) => permit.settle(actual))
)

const BATCH = 1000
const sluiceBatch = Effect.flatMap(RateLimiter.RateLimiter, (limiter) => {
  const once = Effect.flatMap(limiter.acquire(scopes, cost), (permit) => permit.settle(actual))
  return Effect.repeatN(once, BATCH - 1)
})

// (a) effect's RateLimiter, composed
const effectScope = Effect.runSync(Scope.make())
const effectLimiters = Effect.runSync(
  Effect.forEach(
    scopes.flatMap(() => dimensions),
    () => EffectRateLimiter.make({ limit: HUGE, interval: "1 minute", algorithm: "token-bucket" })
  ).pipe(Scope.extend(effectScope))
)
const effectComposed = effectLimiters.reduce<Effect.Effect<void>>(
  (inner, limiter, i) => EffectRateLimiter.withCost(cost[dimensions[i % 3]])(limiter(inner)),
  Effect.void
)
const effectBatch = Effect.repeatN(effectComposed, BATCH - 1)

// (b) rate-limiter-flexible, memory
const flexible = dimensions.map(() => new RateLimiterMemory({ points: HUGE, duration: 60 }))
const flexibleOnce = async () => {
  await Promise.all(
    scopes.flatMap((scope) => dimensions.map((dimension, d) => flexible[d].consume(scope, cost[dimension])))
  )
  await Promise.all(scopes.map((scope) => flexible[1].reward(scope, cost.tokens - actual.tokens)))
}
const flexibleBatch = async () => {
  for (let i = 0; i < BATCH; i++) await flexibleOnce()
}

const main = async () => {
  await runtime.runPromise(sluiceOnce)
  const bench = new Bench({ time: 3000, warmupTime: 500 })
  bench
    .add(`sluice: acquire+settle ×${BATCH} in one fiber`, () => runtime.runPromise(sluiceBatch))
    .add(`effect RateLimiter ×9 composed ×${BATCH} in one fiber`, () => Effect.runPromise(effectBatch))
    .add(`rate-limiter-flexible memory 9 consume + 3 reward ×${BATCH}`, flexibleBatch)
    .add("sluice: acquire+settle, one runPromise per call", () => runtime.runPromise(sluiceOnce))
    .add("effect RateLimiter ×9 composed, one runPromise per call", () => Effect.runPromise(effectComposed))
    .add("rate-limiter-flexible: one call (awaited)", flexibleOnce)
  await bench.run()

  const rows = bench.tasks.map((task) => {
    const result = task.result as any
    const perCall = task.name.includes(`×${BATCH}`) ? BATCH : 1
    const hz = (result.throughput?.mean ?? result.hz) * perCall
    const rme = result.throughput?.rme ?? result.rme
    return { name: task.name, opsPerSec: hz, rme }
  })
  const batched = rows.slice(0, 3)
  const single = rows.slice(3)
  const fmt = (n: number) => Math.round(n).toLocaleString("en-US")
  const table = (list: typeof rows) =>
    [
      "| implementation | calls/s | ± | sluice ÷ peer |",
      "|---|---:|---:|---:|",
      ...list.map((row) =>
        `| ${row.name} | ${fmt(row.opsPerSec)} | ${row.rme.toFixed(1)}% | ${
          row === list[0] ? "1.00" : (list[0].opsPerSec / row.opsPerSec).toFixed(2)
        } |`
      )
    ].join("\n")
  const out = [
    "# Core admission benchmark",
    "",
    "One call charged against 3 scopes × 3 dimensions (requests, tokens, images), then settled",
    "(tokens trued down). Limits are high, so nothing waits: this is the admission path itself.",
    "",
    `Command: \`pnpm bench\` (benchmarks/core.ts). Node ${process.version}, ${cpus().length} × ${
      cpus()[0]?.model ?? "cpu"
    }, ${new Date().toISOString().slice(0, 10)}.`,
    "",
    "## Many calls in one fiber (the limiter's own cost)",
    "",
    table(batched),
    "",
    "## One call per promise (includes the runtime's start-up per call)",
    "",
    table(single),
    "",
    "Ratios above 1 mean Sluice is faster. Effect's composed limiters have no settle step;",
    "rate-limiter-flexible is neither atomic across keys nor able to wait for room.",
    ""
  ].join("\n")
  writeFileSync(new URL("./results/core.md", import.meta.url), out)
  process.stdout.write(out)
  await runtime.dispose()
  await Effect.runPromise(Scope.close(effectScope, Exit.void))
}

main().catch((error) => {
  process.stderr.write(String(error?.stack ?? error) + "\n")
  process.exit(1)
})
