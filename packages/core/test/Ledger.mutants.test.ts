/**
 * The admission ledger behind `RateLimiter.sync` with `since` at the sizes the other tests never reach (found by
 * mutation testing, `pnpm mutate:ledger`): a report replayed over more than `REPLAY_LIMIT` (2,048) calls takes the
 * conservative bound, over 2,048 or fewer the exact replay; the ledger compacts once it has dropped more than 1,024
 * entries older than two minutes, and what it answers afterwards (sums over its Fenwick tree, an entry settled
 * after the compaction) is what it answered before. Each scenario sends about 2,000 calls: a few seconds a test.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { Effect, TestClock } from "effect"

const CAPACITY = 100_000
const SCOPE = "org:a/pool:m"
/** Tokens a millisecond. */
const REFILL = CAPACITY / 60_000

const run = <A, E>(f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>) =>
  Effect.scoped(
    Effect.flatMap(
      RateLimiter.make({ budgets: [Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", CAPACITY)])] }),
      f
    )
  ).pipe(Effect.provide(LimiterStore.layerMemory), Effect.orDie)

const levelOf = (limiter: RateLimiter.Service) =>
  Effect.map(limiter.peek([SCOPE], {}), (estimate) => estimate.levels[0].level)

const sendOne = (limiter: RateLimiter.Service, tokens: number) =>
  Effect.tap(limiter.acquire([SCOPE], { tokens }), (permit) => permit.markSent)

interface Scenario {
  /** Calls of 1 token sent at the start, dropped from the ledger two minutes later (none: no compaction). */
  readonly old: number
  /** Calls of 1 token sent 61 s in, still kept when the old ones are dropped (what the compaction keeps). */
  readonly middle: number
  /** Calls of 10 tokens sent after the answered call, 50 every 500 ms (the bucket refills 833 meanwhile). */
  readonly after: number
  /** Which of those calls is settled at 0 tokens before the report (a refund of its 10 tokens), if any. */
  readonly settle?: number | undefined
}

/**
 * Sends the calls, then folds in a report (no limit: it can only lower the level) that the server had
 * `CAPACITY - 1` left right after the answered call (a call of 1 token, sent first of the recent ones, when the
 * bucket was full), and returns the level before and after the report.
 */
const scenario = (s: Scenario) =>
  run((limiter) =>
    Effect.gen(function*() {
      for (let i = 0; i < s.old; i++) yield* sendOne(limiter, 1)
      yield* TestClock.adjust(61_000)
      for (let i = 0; i < s.middle; i++) yield* sendOne(limiter, 1)
      yield* TestClock.adjust(60_000)
      // 121 s in: the bucket is full again, and the next entry drops the old ones (older than 2 minutes)
      expect(yield* levelOf(limiter)).toBe(CAPACITY)
      const answered = yield* sendOne(limiter, 1)
      const calls: Array<RateLimiter.Permit> = []
      for (let i = 0; i < s.after; i++) {
        if (i > 0 && i % 50 === 0) yield* TestClock.adjust(500)
        calls.push(yield* sendOne(limiter, 10))
      }
      if (s.settle !== undefined) yield* calls[s.settle].settle({ tokens: 0 })
      const before = yield* levelOf(limiter)
      yield* limiter.sync(SCOPE, { dimension: "tokens", remaining: CAPACITY - 1, since: answered })
      const after = yield* levelOf(limiter)
      const elapsed = (yield* TestClock.currentTimeMillis) - answered.admittedAt
      return { before, after, elapsed }
    })
  )

describe("RateLimiter ledger at scale", () => {
  it.effect("a report over 2,048 later calls is replayed call by call: it agrees with the local accounting", () =>
    Effect.gen(function*() {
      const { after, before } = yield* scenario({ old: 0, middle: 0, after: 2_048 })
      // the server's model is the client's own here (the same charges at the same times, refill capped)
      expect(before).toBeGreaterThan(CAPACITY - 600)
      expect(after).toBeCloseTo(before, 6)
    }))

  it.effect("a report over 2,049 later calls takes the bound: the capped refill first, then every call since", () =>
    Effect.gen(function*() {
      const { after, before, elapsed } = yield* scenario({ old: 0, middle: 0, after: 2_049 })
      expect(before).toBeGreaterThan(CAPACITY - 600)
      expect(elapsed).toBe(40 * 500)
      // min(capacity, (CAPACITY - 1) + refill × 20 s) − 2,049 × 10: the refill is capped, nothing unsent
      expect(Math.min(CAPACITY, CAPACITY - 1 + REFILL * elapsed)).toBe(CAPACITY)
      expect(after).toBe(CAPACITY - 20_490)
    }))

  it.effect("the bound counts a call settled since at its actual charge", () =>
    Effect.gen(function*() {
      const { after } = yield* scenario({ old: 0, middle: 0, after: 2_049, settle: 1_000 })
      expect(after).toBe(CAPACITY - 20_480)
    }))

  it.effect("after the ledger compacts (1,025 entries dropped, 200 kept), it answers as before", () =>
    Effect.gen(function*() {
      // exact replay, and the bound over sums of the rebuilt tree (with and without an entry settled after it)
      for (const [after, settle] of [[2_048, undefined], [2_049, 2_000]] as const) {
        const plain = yield* scenario({ old: 0, middle: 200, after, settle })
        const compacted = yield* scenario({ old: 1_025, middle: 200, after, settle })
        expect(compacted.before).toBeCloseTo(plain.before, 6)
        expect(compacted.after).toBeCloseTo(plain.after, 6)
        if (after === 2_049) expect(compacted.after).toBe(CAPACITY - 20_490 + (settle === undefined ? 0 : 10))
        else expect(compacted.after).toBeCloseTo(compacted.before, 6)
      }
    }))
})
