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
import { Ledger, LEDGER_RETENTION_MILLIS } from "../src/internal/ledger.js"

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

// The ledger itself (internal/ledger.ts), where the limiter-level tests above and Ledger.test.ts leave mutants
// alive: a compaction that keeps hundreds of entries (the tree rebuilt from them, then asked about a point inside
// them), an update reaching the tree's last node, a dropped entry, a refill that is not capped, and memory.
describe("Ledger internals", () => {
  const bucket = { capacity: 30_000, refillPerMs: 0.5 }
  /** 1,100 entries at 0; 300 at 60 s (amounts 1 to 7); 2,100 from 121 s (1 to 5): the first of those compacts. */
  const build = () => {
    const ledger = new Ledger(0)
    const amounts = new Map<number, number>()
    let sequence = 0
    const add = (at: number, amount: number) => {
      ledger.record(++sequence, at, amount)
      amounts.set(sequence, amount)
    }
    for (let i = 0; i < 1_100; i++) add(0, 1)
    for (let i = 0; i < 300; i++) add(60_000, (i % 7) + 1)
    for (let i = 0; i < 2_100; i++) add(121_000 + i, (i % 5) + 1)
    return { ledger, amounts, last: sequence }
  }
  const after = (amounts: Map<number, number>, s: number) => {
    let sum = 0
    for (const [sequence, amount] of amounts) if (sequence > s) sum += amount
    return sum
  }

  it("after a compaction that keeps 301 entries, the bound sums every entry after any point", () => {
    const { amounts, last, ledger } = build()
    ledger.unsent = 700
    const now = 124_000
    const from = now - 1_000 // refill 500, far below the capacity: not capped
    for (const s of [1_100, 1_101, 1_150, 1_257, 1_399, 1_400, 1_401]) {
      const expected = Math.min(30_000, 0 + 0.5 * 1_000) - after(amounts, s) - (700 - 200)
      expect(ledger.replay(s, from, 0, now, bucket, undefined, 200)).toBeCloseTo(expected, 6)
    }
    // the last entry changed: the update walks up to the tree's last node and no further
    expect(ledger.adjust(last, 5)).toBe(true)
    amounts.set(last, amounts.get(last)! + 5)
    ledger.record(last + 1, 123_000, 3)
    amounts.set(last + 1, 3)
    for (const s of [1_150, 1_400]) {
      const expected = 500 - after(amounts, s) - 700
      expect(ledger.replay(s, from, 0, now, bucket, undefined, 0)).toBeCloseTo(expected, 6)
    }
  })

  it("a dropped entry is not adjusted and has no amount, even before a compaction", () => {
    const ledger = new Ledger(0)
    ledger.record(1, 0, 10)
    ledger.record(2, LEDGER_RETENTION_MILLIS + 1, 5)
    expect(ledger.adjust(1, 3)).toBe(false)
    expect(ledger.amountOf(1)).toBe(0)
    expect(ledger.amountOf(2)).toBe(5)
    expect(ledger.adjust(2, 3)).toBe(true)
    expect(ledger.amountOf(2)).toBe(8)
  })

  it("memory stays bounded by what is kept: 10,000 entries over 1,000 s keep about 1,200", () => {
    const ledger = new Ledger(0)
    for (let i = 0; i < 10_000; i++) ledger.record(i + 1, i * 100, 1)
    // the arrays are private: read their size, the one thing this checks
    const held = (ledger as unknown as { sequences: Array<number> }).sequences.length
    expect(held).toBeLessThan(3_500)
    expect(ledger.sentAfter(10_000 * 100 - LEDGER_RETENTION_MILLIS - 1, 10_000)).toBe(1_200)
  })
})
