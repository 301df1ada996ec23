/**
 * Budgets at work, in virtual time (no API key, no network, no real waiting).
 *
 *   node scripts/run-ts.mjs examples/budgets-demo.ts
 *
 * Three applications share one organization's gpt-4o budget (Tier 1: 500 RPM, 30,000 TPM). The
 * "search" tenant floods it with 600 calls, "support" sends 60 interactive calls, and "reports" sends
 * 60 background calls. Every call reserves its estimate (prompt + max_tokens) and settles to the
 * tokens it really used. The limiter keeps the organization at its limit, never over it, and keeps the
 * tenants within their shares.
 */
import { Budget, RateLimiter } from "@sluice/core"
import { Clock, Console, Duration, Effect, Fiber, TestClock, TestContext } from "effect"

const org = "org:acme"
const pool = "pool:gpt-4o"
const budgets = [
  Budget.make(org, [Budget.Limit.perMinute("requests", 500), Budget.Limit.perDay("requests", 10_000)]),
  Budget.make(pool, [Budget.Limit.perMinute("requests", 500), Budget.Limit.perMinute("tokens", 30_000)]),
  // every tenant gets at most half the pool's tokens, so one cannot starve the others
  Budget.make("tenant:*", [Budget.Limit.perMinute("tokens", 15_000)])
]

interface Call {
  readonly tenant: string
  readonly estimate: number
  readonly actual: number
  readonly priority: RateLimiter.Lane
}

const calls: Array<Call> = []
const push = (tenant: string, count: number, priority: RateLimiter.Lane) => {
  for (let i = 0; i < count; i++) {
    const prompt = 200 + ((i * 7919) % 600)
    const maxTokens = 800
    calls.push({ tenant, estimate: prompt + maxTokens, actual: prompt + 100 + ((i * 104729) % 300), priority })
  }
}
push("search", 600, "interactive")
push("support", 60, "interactive")
push("reports", 60, "background")

const program = Effect.gen(function*() {
  const limiter = yield* RateLimiter.RateLimiter
  const log: Array<{ at: number; tenant: string; tokens: number }> = []
  const finished = new Map<string, number>()

  const fibers = yield* Effect.forEach(calls, (call) =>
    Effect.fork(
      limiter.withPermit(
        [org, pool, `tenant:${call.tenant}`],
        { requests: 1, tokens: call.estimate },
        (permit) =>
          Effect.gen(function*() {
            const at = yield* Clock.currentTimeMillis
            yield* Effect.sleep(Duration.millis(800 + call.actual)) // the "call"
            yield* permit.settle({ tokens: call.actual })
            log.push({ at, tenant: call.tenant, tokens: call.actual })
            finished.set(call.tenant, yield* Clock.currentTimeMillis)
          }),
        { priority: call.priority }
      )
    ))

  yield* Console.log(`${calls.length} calls from 3 tenants against ${org} (500 RPM) and ${pool} (30,000 TPM)\n`)
  yield* Console.log("minute | done: search support reports | pool tokens left")
  for (let minute = 1; minute <= 60 && log.length < calls.length; minute++) {
    yield* TestClock.adjust("1 minute")
    const done = (tenant: string) => log.filter((entry) => entry.tenant === tenant).length
    const estimate = yield* limiter.peek([pool], { tokens: 1 })
    const tokensLeft = estimate.levels.find((info) => info.dimension === "tokens")!.level
    yield* Console.log(
      `${String(minute).padStart(6)} | ${String(done("search")).padStart(12)} ${String(done("support")).padStart(7)} ${
        String(done("reports")).padStart(7)
      } | ${Math.round(tokensLeft)}`
    )
  }
  yield* Effect.forEach(fibers, Fiber.join)

  // The check that matters: the pool's bucket was never overdrawn. Over every interval, the tokens
  // admitted minus what refilled in it (500 a second) stayed within the bucket's 30,000.
  const sorted = [...log].sort((a, b) => a.at - b.at)
  let peak = 0
  for (let i = 0; i < sorted.length; i++) {
    let sum = 0
    for (let j = i; j < sorted.length; j++) {
      sum += sorted[j].tokens
      peak = Math.max(peak, sum - (sorted[j].at - sorted[i].at) * 0.5)
    }
  }
  const end = yield* Clock.currentTimeMillis
  const used = log.reduce((sum, entry) => sum + entry.tokens, 0)
  const reserved = calls.reduce((sum, call) => sum + call.estimate, 0)
  yield* Console.log(`
summary
  calls completed        ${log.length} / ${calls.length}
  virtual wall time      ${Duration.format(Duration.millis(end))}
  tokens reserved        ${reserved.toLocaleString("en-US")}  (estimates: prompt + max_tokens)
  tokens used            ${used.toLocaleString("en-US")}  (settled: the refunds went to the next callers)
  theoretical minimum    ${Duration.format(Duration.millis(Math.ceil(used / 30_000 * 60_000)))} at 30,000 TPM
  pool bucket peak       ${Math.round(peak).toLocaleString("en-US")} of 30,000 (admitted minus refill, any interval)
  support finished at    ${Duration.format(Duration.millis(finished.get("support") ?? 0))} (interactive)
  reports finished at    ${Duration.format(Duration.millis(finished.get("reports") ?? 0))} (background)
  search finished at     ${Duration.format(Duration.millis(finished.get("search") ?? 0))} (capped at 15,000 TPM)`)
})

program.pipe(
  Effect.provide(RateLimiter.layerMemory({ budgets })),
  Effect.provide(TestContext.TestContext),
  Effect.runPromise
).catch((error) => {
  process.stderr.write(`${error}\n`)
  process.exit(1)
})
