// The dispatcher's pass stops early once every waiter left is merely blocked. This compares it with a pass that
// always scans the whole queue (the reference): on random queues under TestClock — deadlines, priorities,
// interruptions, learned and changed limits, closed scopes, a synchronous and an asynchronous store, waiters placed
// in the middle of their lane (`arrivedAt`) — both admit the same requests in the same order at the same times, and
// refuse the others with the same errors.
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { Clock, Effect, Exit, FastCheck as fc, Fiber, Layer, TestClock, TestContext } from "effect"
import { fullPasses } from "../src/internal/dispatch.js"

// pool:x binds most often, so that waiters of both orgs queue behind one blocked key
const SCOPES: ReadonlyArray<ReadonlyArray<string>> = [
  ["org:a"],
  ["org:a", "pool:x"],
  ["org:b"],
  ["org:b", "pool:x"],
  ["org:b", "pool:x"],
  ["org:a", "pool:x"]
]

const budgets = [
  Budget.make("org:a", [Budget.Limit.perMinute("requests", 5), Budget.Limit.perMinute("tokens", 6000)]),
  Budget.make("org:b", [Budget.Limit.perMinute("requests", 3)]),
  Budget.make("pool:x", [Budget.Limit.perMinute("tokens", 3000)])
]

const slowStore = Layer.effect(
  LimiterStore.LimiterStore,
  Effect.map(LimiterStore.LimiterStore, (inner): LimiterStore.Service => ({
    ...inner,
    tryAcquire: (debits, gates) => Effect.delay(inner.tryAcquire(debits, gates), 3),
    unsafeTryAcquire: undefined,
    adjust: (debits) => Effect.delay(inner.adjust(debits), 3)
  }))
).pipe(Layer.provide(LimiterStore.layerMemory))

const request = fc.record({
  at: fc.integer({ min: 0, max: 20_000 }),
  scopes: fc.integer({ min: 0, max: SCOPES.length - 1 }),
  requests: fc.integer({ min: 1, max: 3 }),
  tokens: fc.integer({ min: 0, max: 3000 }),
  background: fc.boolean(),
  // mostly none: a waiter with a deadline is visited at every pass (so the pass cannot stop early)
  maxWait: fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, {
    weight: 1,
    arbitrary: fc.integer({ min: 0, max: 120_000 })
  }),
  // some placed as if they had arrived earlier (a retry keeping its place): put in the middle of their lane
  arrivedBefore: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, {
    weight: 1,
    arbitrary: fc.integer({ min: 0, max: 20_000 })
  }),
  hold: fc.integer({ min: 0, max: 5000 }),
  actual: fc.integer({ min: 0, max: 3000 }),
  cancelAt: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, {
    weight: 1,
    arbitrary: fc.integer({ min: 0, max: 60_000 })
  })
})

const scenario = fc.record({
  requests: fc.array(request, { minLength: 1, maxLength: 30 }),
  /** A limit learned on pool:x's requests (from 1 to 4 a minute), then changed, at these times. */
  learn: fc.array(fc.tuple(fc.integer({ min: 0, max: 40_000 }), fc.integer({ min: 1, max: 4 })), { maxLength: 3 }),
  close: fc.option(fc.tuple(fc.integer({ min: 0, max: 40_000 }), fc.integer({ min: 0, max: 60_000 })), {
    nil: undefined
  }),
  slow: fc.boolean()
})

type Scenario = typeof scenario extends fc.Arbitrary<infer A> ? A : never

/** Every outcome, as `index outcome @ time`, in the order they happened. */
const play = (input: Scenario, full: boolean) =>
  Effect.gen(function*() {
    const options = { budgets, [fullPasses]: full } as Parameters<typeof RateLimiter.make>[0]
    const limiter = yield* RateLimiter.make(options)
    const log: Array<string> = []
    const note = (entry: string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => log.push(`${entry} @${now}`)))
    const fibers = yield* Effect.forEach(input.requests, (req, i) =>
      Effect.fork(
        Effect.gen(function*() {
          yield* Effect.sleep(req.at)
          const exit = yield* Effect.exit(
            limiter.acquire(SCOPES[req.scopes], { requests: req.requests, tokens: req.tokens }, {
              priority: req.background ? "background" : "interactive",
              maxWait: req.maxWait,
              arrivedAt: req.arrivedBefore === undefined ? undefined : req.at - req.arrivedBefore
            })
          )
          if (Exit.isFailure(exit)) {
            const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
            return yield* note(`${i} ${error === undefined ? "defect" : JSON.stringify(error)}`)
          }
          yield* note(`${i} admitted`)
          yield* Effect.sleep(req.hold)
          yield* exit.value.settle({ requests: req.requests, tokens: req.actual })
        }).pipe(Effect.onInterrupt(() => note(`${i} interrupted`)))
      ))
    yield* Effect.forEach(input.requests, (req, i) =>
      req.cancelAt === undefined
        ? Effect.void
        : Effect.fork(Effect.delay(Fiber.interrupt(fibers[i]), req.cancelAt)), { discard: true })
    yield* Effect.forEach(input.learn, ([at, limit]) =>
      Effect.fork(Effect.delay(limiter.sync("pool:x", { dimension: "requests", limit, window: "1 minute" }), at)), {
      discard: true
    })
    if (input.close !== undefined) {
      const [at, after] = input.close
      yield* Effect.fork(
        Effect.delay(Effect.zipRight(limiter.close("org:b", "test"), Effect.delay(limiter.reopen("org:b"), after)), at)
      )
    }
    yield* TestClock.adjust("3 hours")
    yield* Effect.forEach(fibers, Fiber.await, { discard: true })
    const snapshot = yield* limiter.snapshot
    return { log, waiting: snapshot.waiting }
  }).pipe(
    Effect.scoped,
    Effect.provide(input.slow ? slowStore : LimiterStore.layerMemory),
    Effect.provide(TestContext.TestContext)
  )

describe("RateLimiter dispatcher: early-stopping pass", () => {
  it.effect.prop(
    "admits and refuses exactly as a pass over the whole queue does",
    { input: scenario },
    ({ input }) =>
      Effect.gen(function*() {
        const fast = yield* play(input, false)
        const reference = yield* play(input, true)
        expect(fast.log).toEqual(reference.log)
        expect(fast.log.length).toBeGreaterThanOrEqual(input.requests.length)
        expect(fast.waiting).toEqual(reference.waiting)
      }),
    { fastCheck: { numRuns: 25 }, timeout: 120_000 }
  )
})
