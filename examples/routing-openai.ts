/**
 * Routing OpenAI calls across two organizations' pools, through the real `openai` SDK, on the
 * in-process simulator, in virtual time (no API key, no network, no real waiting).
 *
 *   node scripts/run-ts.mjs examples/routing-openai.ts
 *
 * A bulk job of 200 background summaries (about 1,000 prompt tokens and `max_tokens: 500` each), 16 in
 * flight, at OpenAI's Tier 1 figures: gpt-4o has 30,000 tokens a minute per organization. Limits are per
 * organization, so a second organization ("acme-research", its own API key and its own simulator) is a
 * second gpt-4o pool of the same size. The job runs twice for two virtual minutes: once on acme's gpt-4o
 * alone, once through `OpenAiRouter` over both organizations with the `priority` strategy — acme first; when
 * the limiter says acme's pool cannot admit a call now (`Saturated`), background work spills to
 * acme-research, and when both are saturated it waits where the wait (queue included) is least — and the
 * `OpenAi` service of the chosen organization makes the call with its own client. The second run does
 * twice the work, with no 429s, and the router's summary says how much traffic spilled, where, and why.
 * (`strategy: "leastWait"` balances the two pools up front instead: the same throughput, no spills.)
 */
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { OpenAiRouter } from "@sluice/openai"
import { Scenario, SimFetch, Simulator } from "@sluice/testing"
import { Clock, Console, Effect, Fiber, TestClock, TestContext } from "effect"
import OpenAI from "openai"

const JOBS = 200
const IN_FLIGHT = 16
const WINDOW_MS = 120_000
const TPM = 30_000

// about 4,000 characters: 1,000 prompt tokens by OpenAI's character rule
const DOCUMENT = Array.from(
  { length: 60 },
  (_, i) => `Section ${i}: the supplier shall deliver the goods described in annex ${i} within thirty days.`
).join(" ").slice(0, 4_000)

/** One organization: its own simulated OpenAI (Tier 1 limits) and its own SDK client and key. */
const organization = (name: string) =>
  Effect.gen(function*() {
    const sim = yield* Simulator.make(Scenario.tier1({
      organization: `org-${name}`,
      latency: { request: { _tag: "fixed", ms: 1_000 } }
    }))
    const fetch = yield* Effect.provideService(SimFetch.make, Simulator.Simulator, sim)
    const client = new OpenAI({ apiKey: `sk-${name}`, baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
    return { name, sim, client }
  })

/** Lets the SDK's promises settle, then moves virtual time on. */
const tick = (millis: number) =>
  Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve))).pipe(
    Effect.zipRight(Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))),
    Effect.zipRight(TestClock.adjust(millis))
  )

/** Runs the job through a router over `orgs`' gpt-4o; counts what finishes within the window. */
const runJob = (orgs: ReadonlyArray<{ readonly name: string; readonly client: OpenAI }>) =>
  Effect.scoped(Effect.gen(function*() {
    const options: OpenAiRouter.OpenAiRouter.Options = {
      deployments: orgs.map((org) => ({
        id: `${org.name}/gpt-4o`,
        model: "gpt-4o",
        organization: org.name,
        client: org.client,
        contextWindow: 128_000,
        price: { input: 2.5e-6, output: 10e-6 }
      })),
      strategy: "priority",
      // the same Tier 1 figures the simulator enforces, on the scopes each organization's service charges
      budgets: orgs.map((org) =>
        Budget.make(`org:${org.name}/pool:gpt-4o`, [
          Budget.Limit.perMinute("requests", 500),
          Budget.Limit.perMinute("tokens", TPM)
        ])
      )
    }
    const limiter = yield* RateLimiter.make({ budgets: OpenAiRouter.budgetsFor(options) }).pipe(
      Effect.provide(LimiterStore.layerMemory)
    )
    const routed = yield* OpenAiRouter.make(options).pipe(Effect.provideService(RateLimiter.RateLimiter, limiter))

    const start = yield* Clock.currentTimeMillis
    let next = 0
    let done = 0
    const worker = Effect.whileLoop({
      while: () => next < JOBS,
      body: () =>
        routed.chat.completions.create(
          { messages: [{ role: "user", content: `[req:${next++}] Summarise: ${DOCUMENT}` }], max_tokens: 500 },
          { priority: "background" }
        ).pipe(
          Effect.zipRight(Clock.currentTimeMillis),
          Effect.map((now) => {
            if (now - start <= WINDOW_MS) done++
          })
        ),
      step: () => {}
    })
    const workers = yield* Effect.forEach(Array.from({ length: IN_FLIGHT }), () => Effect.fork(worker))
    for (let t = 0; t < WINDOW_MS; t += 2_000) yield* tick(2_000)
    yield* Fiber.interruptAll(workers)
    return { done, summary: yield* routed.summary }
  }))

const program = Effect.gen(function*() {
  yield* Console.log(
    `${JOBS} background summaries (~1,500 tokens reserved each) for ${WINDOW_MS / 60_000} virtual minutes; ` +
      `gpt-4o at ${TPM.toLocaleString("en")} TPM per organization (Tier 1)\n`
  )
  const acme = yield* organization("acme")
  const research = yield* organization("acme-research")

  const wall = Date.now()
  const one = yield* runJob([acme])
  const oneStats = yield* acme.sim.stats
  const acme2 = yield* organization("acme")
  const two = yield* runJob([acme2, research])
  const twoStats = [yield* acme2.sim.stats, yield* research.sim.stats]

  const perMinute = (n: number) => (n / (WINDOW_MS / 60_000)).toFixed(1)
  yield* Console.log(
    `one pool  (acme/gpt-4o):                 ${String(one.done).padStart(4)} done, ${
      perMinute(one.done)
    } a minute, 429s: ${oneStats.byStatus["429"] ?? 0}`
  )
  yield* Console.log(
    `two pools (+ acme-research/gpt-4o):      ${String(two.done).padStart(4)} done, ${
      perMinute(two.done)
    } a minute, 429s: ${twoStats.reduce((n, s) => n + (s.byStatus["429"] ?? 0), 0)}`
  )
  yield* Console.log(`\nthroughput, two pools vs one: ${(two.done / one.done).toFixed(2)}×\n`)
  yield* Console.log(`router summary of the two-pool run:\n${OpenAiRouter.formatSummary(two.summary)}`)
  yield* Console.log(`\n(${((Date.now() - wall) / 1000).toFixed(1)} s of real time)`)
})

program.pipe(
  Effect.provide(TestContext.TestContext),
  Effect.runPromise
).catch((error) => {
  process.stderr.write(`${error}\n`)
  process.exit(1)
})
