/**
 * Benchmark (issue 17): the router's own cost per routed request — 3 candidates, `Router.priority`, a
 * memory limiter whose limits never bind, a call that succeeds at once. Two rows: the first candidate
 * succeeds; the first fails `Overloaded` (rule `next`) and the request falls over to the second.
 *
 *   node scripts/run-ts.mjs benchmarks/router.ts [core entry] [requests]
 *
 * `core entry` defaults to `@sluice/core`; give another checkout's `packages/core/src/index.ts` to measure
 * a before/after pair in the same run (see benchmarks/results/router.md). Prints one JSON line per row:
 * wall and CPU (user + system) of the measured pass, after one warm-up pass.
 */
import type * as Core from "@sluice/core"
import { Effect, Layer, ManagedRuntime, Schema } from "effect"

const entry = process.argv[2] ?? "@sluice/core"
const n = Number(process.argv[3] ?? 5_000)
const { Budget, RateLimiter, Router } = (await import(entry)) as typeof Core

class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", {}) {}

const HUGE = 1e12
const ids = ["a", "b", "c"]
const budgets = [
  Budget.make("org:x", [Budget.Limit.perMinute("requests", HUGE)]),
  ...ids.map((id) =>
    Budget.make(`pool:${id}`, [Budget.Limit.perMinute("requests", HUGE), Budget.Limit.perMinute("tokens", HUGE)])
  )
]
const candidates = ids.map((id) => ({ id, model: id, scopes: ["org:x", `pool:${id}`] }))
const runtime = ManagedRuntime.make(RateLimiter.layerMemory({ budgets }).pipe(Layer.orDie))

const row = async (name: string, failFirst: boolean) => {
  const program = Effect.gen(function*() {
    const router = yield* Router.make({
      candidates,
      strategy: Router.priority,
      rules: { Overloaded: "next" },
      report: [],
      keepDecisions: 0
    })
    for (let i = 0; i < n; i++) {
      yield* router.run(
        { cost: { requests: 1, tokens: 100 }, priority: "background" },
        (c) => failFirst && c.id === "a" ? Effect.fail(new Overloaded()) : Effect.succeed(c.id)
      )
    }
  })
  await runtime.runPromise(program) // warm-up
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await runtime.runPromise(program)
  const wall = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  console.log(JSON.stringify({
    entry,
    row: name,
    requests: n,
    wallMs: Math.round(wall),
    cpuMs: Math.round((cpu.user + cpu.system) / 1_000),
    cpuMicrosPerRequest: Math.round((cpu.user + cpu.system) / n)
  }))
}

await row("first candidate succeeds", false)
await row("falls over once (Overloaded -> next)", true)
await runtime.dispose()
