import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { Clock, Effect, FastCheck as fc, Fiber, Layer, TestClock } from "effect"

interface Admission {
  readonly at: number
  readonly cost: number
}

/**
 * The token-bucket envelope, checked by brute force over the admission log: for every pair of
 * admissions i ≤ j, what was admitted in [t_i, t_j] is at most capacity + rate·(t_j − t_i). This is
 * "admitted cost never exceeds the limit" for a continuously refilled limit; for a window of the
 * limit's length it bounds admissions by capacity + amount.
 */
const envelopeViolation = (log: ReadonlyArray<Admission>, capacity: number, ratePerMs: number) => {
  const sorted = [...log].sort((a, b) => a.at - b.at)
  for (let i = 0; i < sorted.length; i++) {
    let sum = 0
    for (let j = i; j < sorted.length; j++) {
      sum += sorted[j].cost
      const allowed = capacity + ratePerMs * (sorted[j].at - sorted[i].at)
      if (sum > allowed + 1e-6) return { from: sorted[i].at, to: sorted[j].at, sum, allowed }
    }
  }
  return undefined
}

/** A store that records every charge and refund, to audit the ledger. */
const ledgerStore = (ledger: Map<string, { granted: number; refunded: number }>) =>
  Layer.effect(
    LimiterStore.LimiterStore,
    Effect.map(LimiterStore.makeMemory, (memory): LimiterStore.Service => {
      const entry = (id: string) => {
        let found = ledger.get(id)
        if (found === undefined) {
          found = { granted: 0, refunded: 0 }
          ledger.set(id, found)
        }
        return found
      }
      return {
        ...memory,
        tryAcquire: (debits, gates) =>
          Effect.tap(memory.tryAcquire(debits, gates), (answer) =>
            Effect.sync(() => {
              if (answer._tag === "Admitted") {
                for (const debit of debits) entry(debit.bucket.id).granted += debit.amount
              }
            })),
        unsafeTryAcquire: (debits, gates, now) => {
          const answer = memory.unsafeTryAcquire!(debits, gates, now)
          if (answer._tag === "Admitted") { for (const debit of debits) entry(debit.bucket.id).granted += debit.amount }
          return answer
        },
        adjust: (debits) =>
          Effect.tap(memory.adjust(debits), () =>
            Effect.sync(() => {
              for (const debit of debits) {
                if (debit.amount > 0) entry(debit.bucket.id).granted += debit.amount
                else entry(debit.bucket.id).refunded -= debit.amount
              }
            }))
      }
    })
  )

const run = <A, E>(
  budgets: ReadonlyArray<Budget.Budget>,
  f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>,
  store: Layer.Layer<LimiterStore.LimiterStore> = LimiterStore.layerMemory
) => Effect.scoped(Effect.flatMap(RateLimiter.make({ budgets }), f)).pipe(Effect.provide(store), Effect.orDie)

describe("RateLimiter properties", () => {
  it.effect.prop(
    "admitted cost never exceeds the limit's envelope in any window, and every request is admitted",
    {
      amount: fc.integer({ min: 10, max: 2000 }),
      burstShare: fc.option(fc.double({ min: 0.1, max: 1, noNaN: true }), { nil: undefined }),
      arrivals: fc.array(fc.tuple(fc.integer({ min: 0, max: 30_000 }), fc.double({ min: 0.01, max: 1, noNaN: true })), {
        minLength: 1,
        maxLength: 60
      })
    },
    ({ amount, arrivals, burstShare }) => {
      const burst = burstShare === undefined ? undefined : Math.max(1, Math.floor(amount * burstShare))
      const limit = Budget.Limit.perMinute("tokens", amount, burst)
      return run(
        [Budget.make("org:a", [limit]), Budget.make("project:p", [Budget.Limit.perMinute("tokens", amount)])],
        (
          limiter
        ) =>
          Effect.gen(function*() {
            const log: Array<Admission> = []
            const fibers = yield* Effect.forEach(arrivals, ([delay, share]) => {
              const cost = Math.max(1, Math.floor(limit.capacity * share))
              return Effect.fork(
                Effect.sleep(delay).pipe(
                  Effect.zipRight(limiter.acquire(["org:a", "project:p"], { tokens: cost })),
                  Effect.zipRight(Clock.currentTimeMillis),
                  Effect.tap((at) => Effect.sync(() => log.push({ at, cost })))
                )
              )
            })
            yield* TestClock.adjust("2 hours")
            yield* Effect.forEach(fibers, Fiber.join)
            expect(log.length).toBe(arrivals.length)
            expect(envelopeViolation(log, limit.capacity, amount / 60_000)).toBeUndefined()
          })
      )
    },
    { fastCheck: { numRuns: 60 } }
  )

  it.effect.prop(
    "under saturation, throughput reaches at least 99% of the limit",
    {
      amount: fc.integer({ min: 600, max: 60_000 }),
      costShares: fc.array(fc.double({ min: 0.01, max: 0.2, noNaN: true }), { minLength: 4, maxLength: 16 })
    },
    ({ amount, costShares }) =>
      run([Budget.make("org:a", [Budget.Limit.perMinute("tokens", amount)])], (limiter) =>
        Effect.gen(function*() {
          const horizon = 10 * 60_000
          let admitted = 0
          const fibers = yield* Effect.forEach(costShares, (share) => {
            const cost = Math.max(1, Math.round(amount * share))
            return Effect.fork(Effect.forever(
              Effect.zipRight(
                limiter.acquire(["org:a"], { tokens: cost }),
                Effect.flatMap(Clock.currentTimeMillis, (now) =>
                  Effect.sync(() => {
                    if (now <= horizon) admitted += cost
                  }))
              )
            ))
          })
          yield* TestClock.adjust(horizon)
          yield* Effect.forEach(fibers, Fiber.interrupt)
          const limitOverHorizon = amount * horizon / 60_000
          expect(admitted / limitOverHorizon).toBeGreaterThanOrEqual(0.99)
          // and never more than the bucket allows: the initial burst plus the refill
          expect(admitted).toBeLessThanOrEqual(amount + limitOverHorizon + 1e-6)
        })),
    { fastCheck: { numRuns: 10 } }
  )

  it.effect.prop(
    "refunds never exceed grants, and settle/release count once",
    {
      ops: fc.array(
        fc.record({
          cost: fc.integer({ min: 1, max: 500 }),
          actual: fc.integer({ min: 0, max: 1000 }),
          end: fc.constantFrom("settle", "release", "settle-twice", "settle-then-release", "release-then-settle")
        }),
        { minLength: 1, maxLength: 40 }
      )
    },
    ({ ops }) => {
      const ledger = new Map<string, { granted: number; refunded: number }>()
      return run(
        [Budget.make("org:a", [Budget.Limit.perMinute("tokens", 1000), Budget.Limit.perDay("tokens", 100_000)])],
        (limiter) =>
          Effect.gen(function*() {
            const fiber = yield* Effect.fork(audit(limiter))
            yield* TestClock.adjust("1 day")
            yield* Fiber.join(fiber)
          }),
        ledgerStore(ledger)
      )
      function audit(limiter: RateLimiter.Service) {
        return Effect.gen(function*() {
          let expectedRefund = 0
          let expectedGrant = 0
          for (const op of ops) {
            const permit = yield* limiter.acquire(["org:a"], { tokens: op.cost })
            expectedGrant += op.cost
            switch (op.end) {
              case "settle":
              case "settle-twice":
              case "settle-then-release": {
                yield* permit.settle({ tokens: op.actual })
                if (op.end === "settle-twice") yield* permit.settle({ tokens: 0 })
                if (op.end === "settle-then-release") yield* permit.release
                if (op.actual < op.cost) expectedRefund += op.cost - op.actual
                else expectedGrant += op.actual - op.cost
                break
              }
              case "release":
              case "release-then-settle": {
                yield* permit.release
                if (op.end === "release-then-settle") yield* permit.settle({ tokens: op.actual })
                expectedRefund += op.cost
                break
              }
            }
            const estimate = yield* limiter.peek(["org:a"], {})
            for (const info of estimate.levels) expect(info.level).toBeLessThanOrEqual(info.limit.capacity)
          }
          for (const entry of ledger.values()) {
            expect(entry.refunded).toBeLessThanOrEqual(entry.granted)
            expect(entry.refunded).toBe(expectedRefund)
            expect(entry.granted).toBe(expectedGrant)
          }
        })
      }
    },
    { fastCheck: { numRuns: 60 } }
  )

  it.effect.prop(
    "random interruption, while waiting or while holding, never leaks a reservation",
    {
      calls: fc.array(
        fc.record({
          cost: fc.integer({ min: 1, max: 400 }),
          start: fc.integer({ min: 0, max: 2000 }),
          interruptAt: fc.integer({ min: 0, max: 4000 }),
          hold: fc.boolean(),
          priority: fc.constantFrom("interactive" as const, "background" as const)
        }),
        { minLength: 1, maxLength: 40 }
      )
    },
    ({ calls }) =>
      run(
        [
          Budget.make("org:a", [Budget.Limit.perDay("tokens", 1000), Budget.Limit.perDay("requests", 20)]),
          Budget.make("tenant:t", [Budget.Limit.perDay("tokens", 700)])
        ],
        (limiter) =>
          Effect.gen(function*() {
            const fibers = yield* Effect.forEach(calls, (call) =>
              Effect.fork(
                Effect.sleep(call.start).pipe(
                  Effect.zipRight(
                    limiter.withPermit(
                      ["org:a", "tenant:t"],
                      { tokens: call.cost, requests: 1 },
                      () => call.hold ? Effect.never : Effect.sleep(500),
                      { priority: call.priority }
                    )
                  )
                )
              ))
            const byTime = calls.map((call, i) => ({ at: call.interruptAt, fiber: fibers[i] })).sort((a, b) =>
              a.at - b.at
            )
            let now = 0
            for (const { at, fiber } of byTime) {
              yield* TestClock.adjust(at - now)
              now = at
              yield* Fiber.interrupt(fiber)
            }
            // Every fiber is done; with day-long windows, less than one unit has refilled since the start,
            // so any leaked reservation would show as a level below capacity.
            const estimate = yield* limiter.peek(["org:a", "tenant:t"], {})
            for (const info of estimate.levels) expect(info.level).toBe(info.limit.capacity)
            const snapshot = yield* limiter.snapshot
            expect(snapshot.waiting).toEqual({ interactive: 0, background: 0 })
          })
      ),
    { fastCheck: { numRuns: 60 } }
  )
})

describe("RateLimiter under load", () => {
  it.effect("200 concurrent fibers with mixed costs on two scopes complete, in lane order, within every limit", () =>
    run(
      [
        Budget.make("org:acme", [
          Budget.Limit.perMinute("requests", 60),
          Budget.Limit.perMinute("tokens", 40_000),
          Budget.Limit.perDay("requests", 1000)
        ]),
        Budget.make("org:acme/project:search", [
          Budget.Limit.perMinute("requests", 40),
          Budget.Limit.perMinute("tokens", 20_000)
        ])
      ],
      (limiter) =>
        Effect.gen(function*() {
          const asked: Record<string, Array<number>> = { interactive: [], background: [] }
          const admitted: Record<string, Array<number>> = { interactive: [], background: [] }
          const log: Array<{ at: number; tokens: number; lane: string }> = []
          const fibers: Array<Fiber.RuntimeFiber<void, unknown>> = []
          for (let i = 0; i < 200; i++) {
            const lane = i % 3 === 0 ? "background" : "interactive"
            const tokens = 100 + ((i * 7919) % 2900)
            asked[lane].push(i)
            const fiber = yield* Effect.fork(
              limiter.acquire(["org:acme", "org:acme/project:search"], { requests: 1, tokens }, { priority: lane })
                .pipe(
                  Effect.flatMap((permit) =>
                    Effect.flatMap(Clock.currentTimeMillis, (at) =>
                      Effect.sync(() => {
                        admitted[lane].push(i)
                        log.push({ at, tokens, lane })
                      })).pipe(Effect.zipRight(Effect.sleep(2000)), Effect.zipRight(permit.settle({ tokens })))
                  )
                )
            )
            fibers.push(fiber)
          }
          yield* TestClock.adjust("30 minutes")
          yield* Effect.forEach(fibers, Fiber.join)
          expect(admitted.interactive).toEqual(asked.interactive)
          expect(admitted.background).toEqual(asked.background)
          expect(log.length).toBe(200)
          const requests = log.map((entry) => ({ at: entry.at, cost: 1 }))
          const tokens = log.map((entry) => ({ at: entry.at, cost: entry.tokens }))
          expect(envelopeViolation(requests, 60, 60 / 60_000)).toBeUndefined()
          expect(envelopeViolation(requests, 40, 40 / 60_000)).toBeUndefined()
          expect(envelopeViolation(tokens, 40_000, 40_000 / 60_000)).toBeUndefined()
          expect(envelopeViolation(tokens, 20_000, 20_000 / 60_000)).toBeUndefined()
          expect(envelopeViolation(requests, 1000, 1000 / 86_400_000)).toBeUndefined()
          // interactive work all went before the background work it competed with: every fiber asked at t = 0 on
          // the same buckets; those that fit went at once, whatever their lane, and of those that had to wait no
          // background one was admitted before the last interactive one
          const waited = log.filter((entry) => entry.at > 0)
          const lastInteractive = Math.max(...waited.filter((entry) => entry.lane === "interactive").map((e) => e.at))
          const firstBackground = Math.min(...waited.filter((entry) => entry.lane === "background").map((e) => e.at))
          expect(lastInteractive).toBeGreaterThan(60_000) // the limits did make them wait
          expect(firstBackground).toBeGreaterThanOrEqual(lastInteractive)
        })
    ))
})
