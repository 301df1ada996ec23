/**
 * Routing across two pools, in virtual time (no API key, no network, no real waiting).
 *
 *   node scripts/run-ts.mjs examples/routing-two-pools.ts
 *
 * A bulk job of 300 background summaries, 1,500 tokens each, at OpenAI Tier 1 figures: gpt-4o has a
 * 30,000 TPM pool per organization. Run once against one organization's gpt-4o pool, then through a
 * Router over two candidates — gpt-4o in "acme" and gpt-4o in "acme-research" (limits are per
 * organization, so that is a second, separate pool of the same size). The router reads each pool's
 * estimated wait (the limiter's `peek`, queue included) and sends each request where it will be admitted
 * soonest: the same job runs at twice the rate. A third run adds gpt-4o-mini (200,000 TPM) for the
 * summaries, which a task table allows.
 */
import { Budget, RateLimiter, Router } from "@sluice/core"
import { Clock, Console, Duration, Effect, Fiber, TestClock, TestContext } from "effect"

const budgets = [
  Budget.make("org:acme", [Budget.Limit.perMinute("requests", 500)]),
  Budget.make("org:acme/pool:gpt-4o", [Budget.Limit.perMinute("tokens", 30_000)]),
  Budget.make("org:acme/pool:gpt-4o-mini", [Budget.Limit.perMinute("tokens", 200_000)]),
  Budget.make("org:acme-research", [Budget.Limit.perMinute("requests", 500)]),
  Budget.make("org:acme-research/pool:gpt-4o", [Budget.Limit.perMinute("tokens", 30_000)])
]

const gpt4o = Router.candidate({
  id: "acme/gpt-4o",
  model: "gpt-4o",
  organization: "acme",
  scopes: ["org:acme", "org:acme/pool:gpt-4o"],
  price: { input: 2.5e-6, output: 10e-6 }
})
const gpt4oResearch = Router.candidate({
  id: "acme-research/gpt-4o",
  model: "gpt-4o",
  organization: "acme-research",
  scopes: ["org:acme-research", "org:acme-research/pool:gpt-4o"],
  price: { input: 2.5e-6, output: 10e-6 }
})
const mini = Router.candidate({
  id: "acme/gpt-4o-mini",
  model: "gpt-4o-mini",
  organization: "acme",
  scopes: ["org:acme", "org:acme/pool:gpt-4o-mini"],
  price: { input: 0.15e-6, output: 0.6e-6 }
})

const jobs = 300
const cost = { requests: 1, tokens: 1_500 }

/** Runs the job through a router over `candidates`; reports what finished in the first 5 minutes. */
const runJob = (candidates: ReadonlyArray<Router.Candidate>, strategy: Router.RoutingStrategy) =>
  Effect.gen(function*() {
    const limiter = yield* RateLimiter.RateLimiter
    const router = yield* Router.make({ candidates, strategy })
    const start = yield* Clock.currentTimeMillis
    let done = 0
    let last = 0
    const fibers = yield* Effect.forEach(Array.from({ length: jobs }), () =>
      Effect.fork(
        router.run(
          { cost, promptTokens: 1_000, outputTokens: 500, task: "short-summary", priority: "background" },
          // the "call": charged to the candidate's scopes, 2 seconds of model time
          (candidate) =>
            limiter.withPermit(candidate.scopes, cost, (permit) =>
              Effect.gen(function*() {
                yield* Effect.sleep("2 seconds")
                yield* permit.settle(cost)
                done++
                last = yield* Clock.currentTimeMillis
              }), { priority: "background" })
        )
      ))
    yield* TestClock.adjust("5 minutes")
    const inFiveMinutes = done
    while (done < jobs) yield* TestClock.adjust("10 seconds")
    yield* Effect.forEach(fibers, Fiber.join, { discard: true })
    return { inFiveMinutes, total: last - start, summary: yield* router.summary }
  }).pipe(Effect.provide(RateLimiter.layerMemory({ budgets })))

const program = Effect.gen(function*() {
  yield* Console.log(
    `${jobs} background summaries of ${cost.tokens} tokens each; gpt-4o at 30,000 TPM per organization\n`
  )
  const one = yield* runJob([gpt4o], Router.priority)
  const two = yield* runJob([gpt4o, gpt4oResearch], Router.leastWait)
  const table = yield* Router.decodeTaskTable({ "short-summary": ["gpt-4o-mini", "gpt-4o"] })
  const three = yield* runJob(
    [gpt4o, gpt4oResearch, mini],
    Router.byTask(Router.leastWait, table)
  )

  const line = (name: string, r: typeof one) =>
    Console.log(
      `${name.padEnd(40)} ${String(r.inFiveMinutes).padStart(4)} in 5 min   all done in ${
        Duration.format(Duration.millis(r.total))
      }   served: ${Object.entries(r.summary.chosen).map(([id, n]) => `${id} ${n}`).join(", ")}`
    )
  yield* line("one pool (acme/gpt-4o)", one)
  yield* line("two pools (+ acme-research/gpt-4o)", two)
  yield* line("three pools (+ acme/gpt-4o-mini)", three)
  yield* Console.log(
    `\nthroughput, two pools vs one: ${
      (two.inFiveMinutes / one.inFiveMinutes).toFixed(2)
    }× (requests done in the first 5 minutes)`
  )
  const spills = two.summary.spills.map((s) => `${s.from} -> ${s.to} (${s.reason}): ${s.count}`)
  yield* Console.log(`spills in the two-pool run (${two.summary.spilled} requests):\n  ${spills.join("\n  ")}`)
})

program.pipe(
  Effect.provide(TestContext.TestContext),
  Effect.runPromise
).catch((error) => {
  process.stderr.write(`${error}\n`)
  process.exit(1)
})
