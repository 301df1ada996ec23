/**
 * The @sluice/core README's example, runnable:
 *
 *   node scripts/run-ts.mjs examples/core-quickstart.ts
 */
import { Budget, RateLimiter } from "@sluice/core"
import { Console, Effect } from "effect"

const Limits = RateLimiter.layerMemory({
  budgets: [
    Budget.make("org:acme", [Budget.Limit.perMinute("requests", 500), Budget.Limit.perDay("requests", 10_000)]),
    Budget.make("pool:gpt-4o", [Budget.Limit.perMinute("tokens", 30_000)]),
    Budget.make("tenant:*", [Budget.Limit.perMinute("tokens", 15_000)])
  ]
})

const program = Effect.gen(function*() {
  const limiter = yield* RateLimiter.RateLimiter
  const answer = yield* limiter.withPermit(
    ["org:acme", "pool:gpt-4o", "tenant:42"],
    { requests: 1, tokens: 1_480 },
    (permit) => Effect.as(permit.settle({ tokens: 620 }), "done"),
    { priority: "background", maxWait: "30 seconds" }
  )
  const estimate = yield* limiter.peek(["pool:gpt-4o"], { tokens: 20_000 })
  yield* Console.log({ answer, waitMillis: estimate.waitMillis, binding: estimate.binding })
  const tooBig = yield* Effect.flip(limiter.acquire(["pool:gpt-4o"], { tokens: 34_307 }))
  yield* Console.log(tooBig.message)
})

Effect.runPromise(program.pipe(Effect.provide(Limits)))
