/**
 * The ledger of one bucket (`internal/ledger.ts`), tested directly against a plain model: a list of
 * (sequence, time, amount) entries that drops what is older than the retention. The ledger answers the same
 * questions in O(log n) with a Fenwick tree, a moving head and a compaction once most entries are dropped.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import {
  LAG_MEMORY_MILLIS,
  Ledger,
  LEDGER_RETENTION_MILLIS,
  refundOn,
  REPLAY_LIMIT,
  REPORT_SKEW_MILLIS,
  type SendPoint
} from "../src/internal/ledger.js"

interface Entry {
  readonly sequence: number
  readonly at: number
  amount: number
  /** What it was charged when recorded. */
  readonly charge: number
  /** What it charged while its call is unanswered (recorded open), and when it was answered. */
  readonly open: number
  answeredAt?: number
  /** Whether it is no longer stranded (see `Ledger.stranded`), and whether a report of its call came. */
  covered: boolean
  reported?: boolean
}

/** The plain model: every question answered by a scan. */
class Model {
  entries: Array<Entry> = []
  dropped = 0
  truesUp = false
  record(sequence: number, at: number, amount: number, charge: number, open = false) {
    this.entries.push({ sequence, at, amount, charge, open: open && amount > 0 ? amount : 0, covered: false })
    const horizon = at - LEDGER_RETENTION_MILLIS
    while (this.entries.length > 0 && this.entries[0].at < horizon) this.dropped = this.entries.shift()!.sequence
  }
  find(sequence: number) {
    return this.entries.find((entry) => entry.sequence === sequence)
  }
  adjust(sequence: number, delta: number) {
    const entry = this.find(sequence)
    if (entry === undefined) return false
    entry.amount += delta
    return true
  }
  sentBy(at: number, sequence: number) {
    const sent = this.entries.filter((entry) => entry.sequence <= sequence && entry.at <= at)
    return sent.length > 0 ? sent[sent.length - 1].sequence : this.dropped
  }
  sentAfter(at: number, sequence: number) {
    return this.entries.filter((entry) => entry.sequence <= sequence && entry.at > at).length
  }
  sentSince(sequence: number, at: number) {
    return this.entries.filter((entry) => entry.sequence > sequence && entry.at <= at).length
  }
  amountOf(sequence: number) {
    return this.find(sequence)?.amount ?? 0
  }
  answered(sequence: number, at: number) {
    const entry = this.find(sequence)
    if (entry === undefined) return
    entry.covered = true
    if (entry.answeredAt === undefined) entry.answeredAt = at
  }
  /** Its call's first report came: it, and every call sent more than 50 ms after it and before now, is covered. */
  arrived(sequence: number) {
    const entry = this.find(sequence)
    if (entry === undefined || entry.reported === true) return
    entry.reported = true
    entry.covered = true
    for (const later of this.entries) {
      if (later.sequence > sequence && later.at > entry.at + REPORT_SKEW_MILLIS) later.covered = true
    }
  }
  stranded(sequence: number, before: number) {
    return this.entries.filter((entry) => entry.sequence <= sequence && entry.at <= before && !entry.covered)
      .reduce((sum, entry) => sum + entry.open, 0)
  }
  firstStranded() {
    return this.entries.find((entry) => entry.open > 0 && !entry.covered)?.sequence ?? Number.POSITIVE_INFINITY
  }
  openAt(sequence: number, at: number, since: number) {
    return this.entries.filter((entry) =>
      entry.sequence <= sequence && entry.at > since && (entry.answeredAt === undefined || entry.answeredAt > at)
    ).reduce((sum, entry) => sum + entry.open, 0)
  }
  /** What an entry counts as in a replay: as settled at a server that trues up, else its charge unless refunded whole. */
  counted(entry: Entry) {
    return this.truesUp || entry.amount <= 0 ? entry.amount : Math.max(entry.amount, entry.charge)
  }
  /** The step-by-step replay, whatever the number of calls. */
  replay(
    sequence: number,
    from: number,
    level: number,
    now: number,
    bucket: { capacity: number; refillPerMs: number },
    skip: number | undefined,
    unsent: number
  ) {
    if (sequence < this.dropped) return undefined
    let t = from
    for (const entry of this.entries) {
      if (entry.sequence <= sequence || entry.sequence === skip) continue
      const at = Math.max(t, entry.at)
      level = Math.min(bucket.capacity, level + bucket.refillPerMs * (at - t)) - this.counted(entry)
      t = at
    }
    return Math.min(bucket.capacity, level + bucket.refillPerMs * Math.max(0, now - t)) - unsent
  }
}

type Op =
  | {
    readonly _tag: "record"
    readonly gap: number
    readonly step: number
    readonly amount: number
    readonly charge: number
    readonly open: boolean
  }
  | { readonly _tag: "adjust"; readonly pick: number; readonly delta: number }
  | { readonly _tag: "answer"; readonly pick: number }
  | { readonly _tag: "ask"; readonly pick: number; readonly back: number }

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constant("record" as const),
      // mostly calls close together, sometimes a pause longer than the retention (everything before it drops)
      gap: fc.oneof(
        { weight: 20, arbitrary: fc.integer({ min: 0, max: 200 }) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: LEDGER_RETENTION_MILLIS + 10_000 }) }
      ),
      step: fc.integer({ min: 1, max: 3 }),
      amount: fc.integer({ min: 0, max: 5_000 }),
      // what the call was charged at admission: mostly its amount, else an estimate above or below it (a call
      // settled before it was sent is recorded at its usage beside its charge)
      charge: fc.oneof(
        { weight: 1, arbitrary: fc.constant(-1) },
        { weight: 2, arbitrary: fc.integer({ min: 0, max: 5_000 }) }
      ),
      // a call marked sent (its answer to come) or one recorded as it settled
      open: fc.boolean()
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({ _tag: fc.constant("answer" as const), pick: fc.nat() })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("adjust" as const),
      pick: fc.nat(),
      delta: fc.integer({ min: -5_000, max: 5_000 })
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("ask" as const),
      pick: fc.nat(),
      back: fc.integer({ min: 0, max: 2_000 })
    })
  }
)

const bucket = { capacity: 30_000, refillPerMs: 0.5 }

describe("Ledger", () => {
  it("answers every question as a scan of the kept entries does, across drops and compactions", () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 400 }), fc.integer({ min: 1, max: 20 }), fc.boolean(), (
        ops,
        repeat,
        truesUp
      ) => {
        const ledger = new Ledger(0)
        const model = new Model()
        // the two readings of a settled entry: as settled (a server that trues up), or at its charge
        ledger.truesUp = model.truesUp = truesUp
        let sequence = 0
        let now = 1_000
        const recorded: Array<number> = []
        // each generated op runs `repeat` times, so some runs keep and drop thousands of entries (compaction)
        for (const o of ops.flatMap((o) => Array.from({ length: repeat }, () => o))) {
          if (o._tag === "record") {
            now += o.gap
            sequence += o.step
            const charge = o.charge < 0 ? o.amount : o.charge
            ledger.record(sequence, now, o.amount, charge, o.open)
            model.record(sequence, now, o.amount, charge, o.open)
            recorded.push(sequence)
            continue
          }
          if (recorded.length === 0) continue
          const target = recorded[o.pick % recorded.length] + (o.pick % 3 === 0 ? 1 : 0)
          if (o._tag === "adjust") {
            expect(ledger.adjust(target, o.delta)).toBe(model.adjust(target, o.delta))
            continue
          }
          if (o._tag === "answer") {
            now += o.pick % 50
            // mostly the answer; sometimes only its report (a stream's headers)
            if (o.pick % 4 === 1) {
              ledger.arrived(target)
              model.arrived(target)
            } else {
              ledger.answered(target, now)
              model.answered(target, now)
            }
            continue
          }
          const at = now - o.back
          expect(ledger.sentBy(at, target)).toBe(model.sentBy(at, target))
          expect(ledger.sentAfter(at, target)).toBe(model.sentAfter(at, target))
          expect(ledger.sentSince(target, at)).toBe(model.sentSince(target, at))
          expect(ledger.sentSince(target, now)).toBe(model.sentSince(target, now))
          expect(ledger.amountOf(target)).toBe(model.amountOf(target))
          const since = at - (o.pick % 5) * 300
          expect(ledger.openAt(target, at, since)).toBe(model.openAt(target, at, since))
          expect(ledger.stranded(target, since)).toBe(model.stranded(target, since))
          expect(ledger.stranded(target, now)).toBe(model.stranded(target, now))
          expect(ledger.firstStranded()).toBe(model.firstStranded())
          expect(ledger.openAt(target, now, Number.NEGATIVE_INFINITY)).toBe(
            model.openAt(target, now, Number.NEGATIVE_INFINITY)
          )
          const skip = o.pick % 2 === 0 ? recorded[recorded.length - 1] : undefined
          const level = (o.pick % 7) * 4_000
          const replayed = ledger.replay(target, at, level, now + 100, bucket, skip, 0)
          const expected = model.replay(target, at, level, now + 100, bucket, skip, 0)
          const later = model.entries.filter((entry) => entry.sequence > target && entry.sequence !== skip).length
          if (expected === undefined) {
            expect(replayed).toBeUndefined()
          } else if (later <= REPLAY_LIMIT) {
            expect(replayed).toBeCloseTo(expected, 6)
          } else {
            // past the replay limit: the conservative bound (capped refill first, then everything since), never
            // above the step-by-step replay
            const since = model.entries.filter((entry) => entry.sequence > target && entry.sequence !== skip)
              .reduce((sum, entry) => sum + model.counted(entry), 0)
            const bound = Math.min(bucket.capacity, level + bucket.refillPerMs * Math.max(0, now + 100 - at)) - since
            expect(replayed).toBeCloseTo(bound, 6)
            expect(replayed!).toBeLessThanOrEqual(expected + 1e-6)
          }
        }
      }),
      { numRuns: 150 }
    )
  })

  it("keeps the longest lag of the last LAG_MEMORY_MILLIS, as a scan of every lag noted does", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ gap: fc.integer({ min: 0, max: 1_500 }), lag: fc.integer({ min: 0, max: 5_000 }) }), {
          maxLength: 200
        }),
        (notes) => {
          const ledger = new Ledger(0)
          const noted: Array<{ at: number; lag: number }> = []
          let now = 0
          for (const note of notes) {
            now += note.gap
            ledger.noteLag(now, note.lag)
            noted.push({ at: now, lag: note.lag })
            const later = now + (note.lag % 3) * 700
            const expected = noted.filter((each) => each.at >= later - LAG_MEMORY_MILLIS)
              .reduce((most, each) => Math.max(most, each.lag), 0)
            expect(ledger.lagAt(later)).toBe(expected)
            // (time only goes forward)
            now = later
          }
        }
      )
    )
  })

  it("counts calls stranded until they or a call sent before them report, and keeps that through a compaction", () => {
    const ledger = new Ledger(0)
    // a probe at 0, still out; a herd of three at 100; a call at 300 that comes back first
    ledger.record(1, 0, 1, 1, true)
    for (const sequence of [2, 3, 4]) ledger.record(sequence, 100, 1, 1, true)
    ledger.record(5, 300, 1, 1, true)
    ledger.answered(5, 320)
    ledger.arrived(5)
    expect(ledger.stranded(5, 299)).toBe(4)
    expect(ledger.stranded(3, 299)).toBe(3)
    expect(ledger.stranded(5, 99)).toBe(1)
    expect(ledger.firstStranded()).toBe(1)
    // one of the herd comes back: it alone (the first of a herd through says nothing of the others' way)
    ledger.arrived(3)
    ledger.answered(3, 400)
    expect(ledger.stranded(5, 299)).toBe(3)
    expect(ledger.firstStranded()).toBe(1)
    // the probe fails without a report (a connection refused): no news of the herd
    ledger.answered(1, 410)
    expect(ledger.stranded(5, 299)).toBe(2)
    expect(ledger.firstStranded()).toBe(2)
    // a report of a call sent before the herd comes (a stream's headers): the herd no longer counts
    ledger.record(6, 420, 1, 1, true)
    expect(ledger.stranded(6, 500)).toBe(3)
    ledger.arrived(2)
    expect(ledger.stranded(6, 500)).toBe(1)
    // a later report of the same call says nothing of the calls sent since its first
    ledger.record(7, 500, 1, 1, true)
    ledger.arrived(2)
    expect(ledger.stranded(7, 500)).toBe(2)
    ledger.arrived(6)
    ledger.arrived(7)
    // the herd's last call: the reports of its mates and of calls sent after it said nothing of it
    expect(ledger.stranded(7, 500)).toBe(1)
    expect(ledger.firstStranded()).toBe(4)
    ledger.answered(4, 520)
    expect(ledger.stranded(7, 500)).toBe(0)
    expect(ledger.firstStranded()).toBe(Number.POSITIVE_INFINITY)
    // 1,100 calls never answered, then one sent after the retention: all dropped and compacted; the new one alone
    for (let sequence = 10; sequence < 1_110; sequence++) ledger.record(sequence, 1_000, 2, 2, true)
    expect(ledger.stranded(2_000, 1_000)).toBe(2_200)
    ledger.record(2_000, 1_000 + LEDGER_RETENTION_MILLIS + 1, 7, 7, true)
    expect(ledger.stranded(2_000, Number.POSITIVE_INFINITY)).toBe(7)
    expect(ledger.firstStranded()).toBe(2_000)
    // answered: none left; the next one counts alone again
    ledger.answered(2_000, 1_000 + LEDGER_RETENTION_MILLIS + 2)
    ledger.record(2_001, 1_000 + LEDGER_RETENTION_MILLIS + 3, 5, 5, true)
    expect(ledger.stranded(2_001, Number.POSITIVE_INFINITY)).toBe(5)
  })

  it("takes what is admitted and not sent off every replay", () => {
    const ledger = new Ledger(0)
    ledger.record(1, 0, 1_000)
    ledger.record(2, 10, 2_000)
    ledger.unsent = 5_000
    // from level 10,000 at 0: entry 2 arrives at 10 (refill 5) → 8,005; now 20 → 8,010; minus unsent 5,000
    expect(ledger.replay(1, 0, 10_000, 20, bucket, undefined, 0)).toBeCloseTo(3_010, 6)
    // the answered call's own unsent share is not taken twice
    expect(ledger.replay(1, 0, 10_000, 20, bucket, undefined, 1_000)).toBeCloseTo(4_010, 6)
    // a point older than the ledger keeps cannot be answered
    ledger.record(3, LEDGER_RETENTION_MILLIS + 100, 0)
    expect(ledger.replay(0, 0, 10_000, 20, bucket, undefined, 0)).toBeUndefined()
  })

  it("the conservative replay past the limit is the capped refill minus everything since", () => {
    const ledger = new Ledger(0)
    for (let i = 1; i <= REPLAY_LIMIT + 2; i++) ledger.record(i, i, 1)
    // REPLAY_LIMIT + 1 entries after sequence 1, skipping one of them
    const replayed = ledger.replay(1, 0, 29_000, 10_000, bucket, 2, 0)
    expect(replayed).toBe(Math.min(30_000, 29_000 + 0.5 * 10_000) - REPLAY_LIMIT)
  })

  it("keeps its sums through a compaction (most entries dropped), and answers as before", () => {
    const ledger = new Ledger(0)
    let sequence = 0
    for (let i = 0; i < 1_500; i++) ledger.record(++sequence, i, 7)
    // a pause longer than the retention drops them all; the head passes 1,024: the arrays are compacted
    const start = LEDGER_RETENTION_MILLIS + 10_000
    for (let i = 0; i < REPLAY_LIMIT + 10; i++) ledger.record(++sequence, start + i, (i % 5) + 1)
    expect(ledger.amountOf(1_500)).toBe(0)
    expect(ledger.adjust(1_501, 10)).toBe(true)
    const kept = Array.from({ length: REPLAY_LIMIT + 10 }, (_, i) => (i % 5) + 1)
    kept[0] += 10
    const total = kept.reduce((a, b) => a + b, 0)
    // the conservative path sums the tree: after the compaction it must hold the kept amounts
    expect(ledger.replay(1_500, start, 0, start + 100_000, bucket, undefined, 0)).toBe(30_000 - total)
    expect(ledger.replay(1_501, start, 0, start + 100_000, bucket, undefined, 0)).toBe(30_000 - (total - kept[0]))
    expect(ledger.sentAfter(start + 4, sequence)).toBe(REPLAY_LIMIT + 10 - 5)
    expect(ledger.sentBy(start + 4, sequence)).toBe(1_505)
  })

  it("keeps what the entries count as at a server that keeps its charges through a compaction", () => {
    const ledger = new Ledger(0)
    let sequence = 0
    const amounts: Array<number> = []
    const kept: Array<number> = []
    // every third answered with less than its charge (it counts at its charge), the others recorded at their charge
    const record = (at: number, i: number) => {
      const amount = (i % 5) + 1
      const charge = i % 3 === 0 ? 10 : 0
      ledger.record(++sequence, at, amount, charge)
      amounts.push(amount)
      kept.push(Math.max(amount, charge))
    }
    for (let i = 0; i < 1_100; i++) ledger.record(++sequence, i, 7, 9)
    amounts.length = kept.length = 0
    // 1,000 entries within the retention, then, past it for the first 1,100 (dropped): compacted as the first
    // one after is recorded, with 1,001 entries left, and both trees rebuilt, the kept one too
    for (let i = 0; i < 1_000; i++) record(2_000 + i, i)
    const start = LEDGER_RETENTION_MILLIS + 1_500
    for (let i = 0; i < 1_100; i++) record(start, i)
    expect(ledger.amountOf(1_100)).toBe(0)
    expect(ledger.amountOf(1_101)).toBe(1)
    const sum = (values: ReadonlyArray<number>) => values.reduce((a, b) => a + b, 0)
    // the conservative path (more than REPLAY_LIMIT entries after 1,100) sums the tree of the reading in use
    expect(amounts.length).toBeGreaterThan(REPLAY_LIMIT)
    ledger.truesUp = false
    expect(ledger.replay(1_100, 2_000, 0, start + 100_000, bucket, undefined, 0)).toBe(30_000 - sum(kept))
    ledger.truesUp = true
    expect(ledger.replay(1_100, 2_000, 0, start + 100_000, bucket, undefined, 0)).toBe(30_000 - sum(amounts))
  })
})

describe("refundOn", () => {
  const point = (over: Partial<SendPoint>): SendPoint => ({
    admission: 1,
    sequence: 5,
    entry: 5,
    absorbed: undefined,
    counted: undefined,
    unseen: undefined,
    debits: [],
    owner: {},
    ...over
  })

  it("applies no refund where an adopted report counted the permit, all of it where nothing did", () => {
    const ledger = new Ledger(0)
    const ledgers = new Map([["b", ledger]])
    expect(refundOn(point({ absorbed: ["b"] }), ledgers, "b", -100)).toBe(0)
    expect(refundOn(point({}), new Map(), "b", -100)).toBe(-100)
    ledger.absorbed = 5
    expect(refundOn(point({}), ledgers, "b", -100)).toBe(0)
    // an unmarked permit (entry not its sequence) is not covered by the absorbed watermark
    expect(refundOn(point({ entry: undefined }), ledgers, "b", -100)).toBe(-100)
    ledger.absorbed = 4
    expect(refundOn(point({}), ledgers, "b", -100)).toBe(-100)
  })

  it("where a report folded in by send order counted it, refunds only as far as its credit, which they use up", () => {
    const ledger = new Ledger(0)
    const ledgers = new Map([["b", ledger]])
    ledger.counted = 5
    ledger.credit = 150
    expect(refundOn(point({}), ledgers, "b", -100)).toBe(-100)
    expect(ledger.credit).toBe(50)
    expect(refundOn(point({ counted: ["b"], entry: undefined }), ledgers, "b", -100)).toBe(-50)
    expect(ledger.credit).toBe(0)
    expect(refundOn(point({}), ledgers, "b", -100)).toBe(-0)
    // past the watermark, a refund is the permit's own
    expect(refundOn(point({ sequence: 6, entry: 6 }), ledgers, "b", -100)).toBe(-100)
  })
})
