/**
 * `sync` with `since`: a server's report is as of the moment it answered a request, and the requests this
 * limiter admitted after that one may still be on their way to it. Folding the report in must not forget
 * them, or the next admissions overshoot the server's bucket (429s).
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, Metrics, RateLimiter } from "@sluice/core"
import type { MetricState } from "effect"
import { Clock, Effect, FastCheck as fc, Layer, Metric, Option, TestClock } from "effect"

const CAPACITY = 100_000
const SCOPE = "org:a/pool:m"

const run = <A, E>(
  f: (limiter: RateLimiter.Service) => Effect.Effect<A, E>,
  store: Layer.Layer<LimiterStore.LimiterStore> = LimiterStore.layerMemory
) =>
  Effect.scoped(
    Effect.flatMap(
      RateLimiter.make({ budgets: [Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", CAPACITY)])] }),
      f
    )
  ).pipe(Effect.provide(store), Effect.orDie)

/** The memory store without `track`, as a store shared by processes is: reports only lower its levels. */
const untracked = Layer.effect(
  LimiterStore.LimiterStore,
  Effect.map(LimiterStore.LimiterStore, (inner): LimiterStore.Service => ({ ...inner, track: undefined }))
).pipe(Layer.provide(LimiterStore.layerMemory))

/** `count` calls of `tokens` each, admitted and marked sent in one instant (a herd). */
const sendTogether = (limiter: RateLimiter.Service, count: number, tokens: number) =>
  Effect.forEach(
    Array.from({ length: count }),
    () => Effect.tap(limiter.acquire([SCOPE], { tokens }), (permit) => permit.markSent)
  )

/** A (10,000 tokens) sent, then a second later B (10,000): both permits, and when B left. */
const aThenB = (limiter: RateLimiter.Service, stranded = false) =>
  Effect.gen(function*() {
    // A leaves while a call sent 100 ms before it is on its way, which comes back after it with a report (at its
    // charge, refilled by then): news that the calls sent after it reach the server. `stranded`: A leaves alone, and nothing comes back
    // before B's answer
    const earlier = stranded ? undefined : yield* Effect.tap(limiter.acquire([SCOPE], { tokens: 1 }), (p) => p.markSent)
    if (earlier !== undefined) yield* TestClock.adjust("100 millis")
    const a = yield* Effect.tap(limiter.acquire([SCOPE], { tokens: 10_000 }), (permit) => permit.markSent)
    if (earlier !== undefined) {
      yield* earlier.settle({ tokens: 1 })
      // its report (here one that only lowers, above the level: nothing changes but the news that it arrived)
      yield* limiter.sync(SCOPE, { dimension: "tokens", remaining: CAPACITY, since: earlier, adopt: false })
    }
    yield* TestClock.adjust("1 second")
    const b = yield* Effect.tap(limiter.acquire([SCOPE], { tokens: 10_000 }), (permit) => permit.markSent)
    return { a, b, sentAt: yield* Clock.currentTimeMillis }
  })

const levelOf = (limiter: RateLimiter.Service) =>
  Effect.map(limiter.peek([SCOPE], {}), (estimate) => estimate.levels[0].level)

/**
 * A call of 20,000 estimated answered with 1,000, the server's report of it (`reported` its limit, `remaining`
 * left), then a second such call: what its settle gives back, on the level and in the refunds metric.
 */
const settleAfterReport = (limit: Budget.Limit, reported: number, remaining: number) => {
  const refunds = Effect.map(
    Metric.value(Metric.tagged(Metrics.refunds, "dimension", "tokens")),
    (state) => state.count
  )
  return Effect.scoped(
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ budgets: [Budget.make(SCOPE, [limit])] })
      const first = yield* limiter.acquire([SCOPE], { tokens: 20_000 })
      yield* first.markSent
      const sentAt = yield* Clock.currentTimeMillis
      yield* first.settle({ tokens: 1_000 })
      yield* limiter.sync(SCOPE, { dimension: "tokens", limit: reported, remaining, since: first, sentAt })
      const second = yield* limiter.acquire([SCOPE], { tokens: 20_000 })
      yield* second.markSent
      const level = yield* levelOf(limiter)
      const counted = yield* refunds
      yield* second.settle({ tokens: 1_000 })
      return { level: (yield* levelOf(limiter)) - level, metric: (yield* refunds) - counted }
    })
  ).pipe(Effect.provide(LimiterStore.layerMemory), Effect.orDie)
}

type Step =
  | { readonly _tag: "admit"; readonly estimate: number; readonly actualShare: number }
  | { readonly _tag: "send"; readonly pick: number }
  | { readonly _tag: "deliver" }
  | { readonly _tag: "respond"; readonly pick: number }
  | { readonly _tag: "external"; readonly amount: number }
  | { readonly _tag: "wait"; readonly millis: number }

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    _tag: fc.constant("admit" as const),
    estimate: fc.integer({ min: 1, max: 9_000 }),
    actualShare: fc.double({ min: 0, max: 1, noNaN: true })
  }),
  fc.record({ _tag: fc.constant("send" as const), pick: fc.nat() }),
  fc.constant({ _tag: "deliver" as const }),
  fc.record({ _tag: fc.constant("respond" as const), pick: fc.nat() }),
  fc.record({ _tag: fc.constant("external" as const), amount: fc.integer({ min: 1, max: 5_000 }) }),
  fc.record({ _tag: fc.constant("wait" as const), millis: fc.integer({ min: 1, max: 20_000 }) })
)

interface Call {
  readonly permit: RateLimiter.Permit
  readonly estimate: number
  readonly actual: number
  /** The server's remaining as it answered (its level right after charging this call). */
  remaining?: number
  /** Other traffic the server had seen when it answered. */
  externalAt?: number
  /** When it arrived (ms since the start): the report is as of then. */
  arrivedAt?: number
}

interface Model {
  /** Calls marked sent (as the OpenAi service does), or not. */
  readonly marked: boolean
  /** Reports carry the server's limit, the bucket's own: the limiter adopts them both ways. */
  readonly tracked: boolean
  /**
   * When the server trues a charge to actual usage: as the call arrives (the simulator) or answers. A
   * true-up at arrival into a full bucket is lost there, later than the client can know (it is refunded
   * at the answer): in that model the run starts with the bucket half used and time passes in steps of
   * at most 200 ms, so the server's bucket stays below its capacity and the levels after each settle are
   * compared too.
   */
  readonly trueUp: "arrival" | "response"
  /** On an answer, the client settles then syncs, or syncs then settles (the OpenAi service). */
  readonly syncFirst: boolean
}

const lowerOnly: Model = { marked: false, tracked: false, trueUp: "response", syncFirst: false }

/**
 * A client that admits calls, sends them in any order (marking them sent, or not), settles them and
 * syncs with `since`; a wire that delivers them in the order sent; a server that charges each request's
 * estimate when it arrives and trues it up (as it arrives, or when it answers), with other traffic of its
 * own. Returns the worst overshoot seen after each settle and each sync: how far the client's level was
 * above what the server will have once the client's undelivered requests arrive (less the other traffic
 * the server saw after the latest report, which no client can know).
 */
const simulate = (steps: ReadonlyArray<Step>, aged: boolean, model: Model = lowerOnly) =>
  run((limiter) =>
    Effect.gen(function*() {
      const start = yield* Clock.currentTimeMillis
      let server = CAPACITY
      let external = 0
      const unsent: Array<Call> = []
      /** Sent, not yet arrived: the wire, in the order sent. */
      const undelivered: Array<Call> = []
      const delivered: Array<Call> = []
      let worst = -Infinity
      /**
       * Whether the server's bucket has been full: refill it could not hold is lost there but not here
       * until a report says so, so after that only the levels right after a sync are compared. So too when
       * reports only lower the level: the lower of two bounds, which a later refund raises (what the
       * report knew and the client did not is forgotten until the next report).
       */
      let clipped = false
      /** The other traffic the latest report had seen. */
      let known = 0
      const arrive = (call: Call) => {
        server -= call.estimate
        if (model.trueUp === "arrival") server += call.estimate - call.actual
        call.remaining = server
        call.externalAt = external
        call.arrivedAt = now
        delivered.push(call)
      }
      let now = 0
      if (model.trueUp === "arrival") {
        const warm = yield* limiter.acquire([SCOPE], { tokens: CAPACITY / 2 })
        yield* warm.settle({ tokens: CAPACITY / 2 })
        server -= CAPACITY / 2
      }
      for (const s of steps) {
        switch (s._tag) {
          case "admit": {
            const permit = yield* limiter.tryAcquire([SCOPE], { tokens: s.estimate })
            if (Option.isSome(permit)) {
              unsent.push({
                permit: permit.value,
                estimate: s.estimate,
                actual: Math.floor(s.estimate * s.actualShare)
              })
            }
            break
          }
          case "send": {
            if (unsent.length === 0) break
            const [call] = unsent.splice(s.pick % unsent.length, 1)
            if (model.marked) yield* call.permit.markSent
            undelivered.push(call)
            break
          }
          case "deliver": {
            const call = undelivered.shift()
            if (call !== undefined) arrive(call)
            break
          }
          case "wait": {
            // what is on the wire arrives before time passes (a call arrives when it is sent)
            for (const call of undelivered.splice(0)) arrive(call)
            const millis = model.trueUp === "arrival" ? 1 + (s.millis % 200) : s.millis
            yield* TestClock.adjust(millis)
            now += millis
            if (server + (CAPACITY / 60_000) * millis > CAPACITY) clipped = true
            server = Math.min(CAPACITY, server + (CAPACITY / 60_000) * millis)
            break
          }
          case "external": {
            server -= s.amount
            external += s.amount
            break
          }
          case "respond": {
            if (delivered.length === 0) break
            const [call] = delivered.splice(s.pick % delivered.length, 1)
            if (model.trueUp === "response") server += call.estimate - call.actual
            const check = (settled: boolean) =>
              Effect.map(levelOf(limiter), (level) => {
                if (settled && (clipped || !model.tracked)) return
                const inFlight = [...unsent, ...undelivered].reduce((sum, c) => sum + c.estimate, 0)
                worst = Math.max(worst, level - (Math.max(-CAPACITY, server) - inFlight + (external - known)))
              })
            const settle = Effect.zipRight(call.permit.settle({ tokens: call.actual }), check(true))
            const sync = Effect.zipRight(
              Effect.zipRight(
                limiter.sync(SCOPE, {
                  dimension: "tokens",
                  limit: model.tracked ? CAPACITY : undefined,
                  remaining: call.remaining,
                  since: aged ? call.permit : undefined,
                  sentAt: aged ? start + call.arrivedAt! : undefined
                }),
                Effect.sync(() => {
                  known = Math.max(known, call.externalAt!)
                })
              ),
              check(false)
            )
            yield* model.syncFirst ? Effect.zipRight(sync, settle) : Effect.zipRight(settle, sync)
          }
        }
      }
      return worst
    })
  )

describe("RateLimiter.sync with since", () => {
  it.effect.prop(
    "after a report, the level never exceeds what the server will have once the requests in flight arrive (calls marked sent or not, sent in any order, reports adopted both ways or only lowering, the server truing up as calls arrive or as it answers, time passing)",
    {
      steps: fc.array(step, { minLength: 1, maxLength: 120 }),
      model: fc.record({
        marked: fc.boolean(),
        tracked: fc.boolean(),
        trueUp: fc.constantFrom("arrival" as const, "response" as const),
        syncFirst: fc.boolean()
      })
    },
    ({ model, steps }) =>
      Effect.map(simulate(steps, true, model), (worst) => {
        expect(worst).toBeLessThanOrEqual(1e-6)
      }),
    { fastCheck: { numRuns: 200 } }
  )

  it.effect("without since, a report forgets the requests still on their way (the overshoot this prevents)", () =>
    Effect.gen(function*() {
      // A and B admitted; other traffic of 500; A arrives and is answered: B is still on its way.
      const steps: ReadonlyArray<Step> = [
        { _tag: "admit", estimate: 100, actualShare: 1 },
        { _tag: "admit", estimate: 100, actualShare: 1 },
        { _tag: "external", amount: 500 },
        { _tag: "send", pick: 0 },
        { _tag: "send", pick: 0 },
        { _tag: "deliver" },
        { _tag: "respond", pick: 0 }
      ]
      expect(yield* simulate(steps, false)).toBe(100)
      expect(yield* simulate(steps, true)).toBe(0)
    }))

  it.effect("a report that agrees with the client's own accounting changes nothing", () =>
    run((limiter) =>
      Effect.gen(function*() {
        const a = yield* limiter.acquire([SCOPE], { tokens: 4_000 })
        yield* limiter.acquire([SCOPE], { tokens: 3_000 })
        // the server saw A only, charged at its actual 1,000
        yield* a.settle({ tokens: 1_000 })
        yield* limiter.sync(SCOPE, { dimension: "tokens", remaining: CAPACITY - 1_000, since: a })
        expect(yield* levelOf(limiter)).toBe(CAPACITY - 4_000)
      })
    ))

  it.effect("the refill since the request left is added to the report; a report older than the ledger is ignored", () =>
    run((limiter) =>
      Effect.gen(function*() {
        const a = yield* limiter.acquire([SCOPE], { tokens: 50_000 })
        const sentAt = a.admittedAt
        yield* TestClock.adjust("6 seconds")
        // 6 s of a 100,000-a-minute bucket is 10,000: the server's 20,000 then is about 30,000 now
        yield* limiter.sync(SCOPE, { dimension: "tokens", remaining: 20_000, since: a, sentAt })
        expect(yield* levelOf(limiter)).toBeCloseTo(30_000, 6)

        const old = yield* limiter.acquire([SCOPE], { tokens: 1 })
        yield* old.markSent
        yield* TestClock.adjust("3 minutes")
        const later = yield* limiter.acquire([SCOPE], { tokens: 1 })
        yield* later.markSent // a new entry drops what is older than 2 minutes
        const before = yield* levelOf(limiter)
        yield* limiter.sync(SCOPE, { dimension: "tokens", remaining: 0, since: old })
        expect(yield* levelOf(limiter)).toBe(before)
      })
    ))

  it.effect("a report adopted both ways gives back at once what the server has trued up, and not again at settle; a tighter bucket only lowers", () =>
    Effect.gen(function*() {
      // A (10,000 estimated, 2,000 used) leaves; a second later B (10,000, 3,000). The server trues each up
      // as it arrives and answers B first: 100,000 - 2,000 (refilled to full) - 3,000 = 96,667 is left.
      const scenario = (limit: number) =>
        run((limiter) =>
          Effect.gen(function*() {
            const { a, b, sentAt } = yield* aThenB(limiter)
            const before = yield* levelOf(limiter)
            yield* limiter.sync(SCOPE, { dimension: "tokens", limit, remaining: 96_667, since: b, sentAt })
            const synced = yield* levelOf(limiter)
            yield* a.settle({ tokens: 2_000 })
            yield* b.settle({ tokens: 3_000 })
            return { before, synced, settled: yield* levelOf(limiter) }
          })
        )
      const own = yield* scenario(CAPACITY)
      expect(own.before).toBeCloseTo(81_666.67, 1)
      expect(own.synced).toBe(96_667)
      expect(own.settled).toBe(96_667)
      // the server's limit is twice this bucket's: its report may lower the bucket, never raise it
      const tighter = yield* scenario(2 * CAPACITY)
      expect(tighter.synced).toBeCloseTo(81_666.67, 1)
      expect(tighter.settled).toBeCloseTo(96_666.67, 1)
    }))

  it.effect("a report raises the level only as far as the calls sent within its lag before it and not answered yet leave room (they may still be on their way); their refunds give back the rest", () =>
    Effect.gen(function*() {
      // A (10,000 estimated, 2,000 used) leaves; a second later B (10,000, 3,000), whose answer comes first, 1.5 s
      // later, the server's time on it none: it made its report within 1.5 s of B leaving, 96,667 left (as if it had
      // trued A up: it may equally not have seen A yet, sent within that lag before B)
      const scenario = (answeredFirst: boolean, lagged: boolean, stranded = false) =>
        run((limiter) =>
          Effect.gen(function*() {
            const { a, b, sentAt } = yield* aThenB(limiter, stranded)
            // (a call released unanswered is answered too: it is no longer on its way)
            if (answeredFirst) yield* a.release
            yield* TestClock.adjust("1500 millis")
            const now = yield* Clock.currentTimeMillis
            const before = yield* levelOf(limiter)
            yield* limiter.sync(SCOPE, {
              dimension: "tokens",
              limit: CAPACITY,
              remaining: 96_667,
              since: b,
              sentAt,
              reportedBy: lagged ? now : undefined
            })
            const synced = yield* levelOf(limiter)
            if (!answeredFirst) yield* a.settle({ tokens: 2_000 })
            const settledA = yield* levelOf(limiter)
            yield* b.settle({ tokens: 3_000 })
            return { before, synced, settledA, settled: yield* levelOf(limiter) }
          })
        )
      const open = yield* scenario(false, true)
      expect(open.before).toBeCloseTo(84_166.67, 1)
      // A may not have reached the server: counted at its 10,000 as not seen
      expect(open.synced).toBe(86_667)
      // A's refund goes back (within the 10,000 held back); B's is the server's already
      expect(open.settledA).toBe(94_667)
      expect(open.settled).toBe(94_667)
      // A answered (here released: it charged nothing in the end) before B left: adopted whole
      const answered = yield* scenario(true, true)
      expect(answered.before).toBeCloseTo(94_166.67, 1)
      expect(answered.synced).toBe(96_667)
      expect(answered.settled).toBe(96_667)
      // no lag reported (the report as of B's departure: the refill since is added): A left a second before B, beyond
      // the 50 ms two calls sent together may swap in: the server had it
      const early = yield* scenario(false, false)
      expect(early.synced).toBe(99_167)
      // unless A left alone and nothing sent with or before it has come back since (`Ledger.stranded`): then nothing
      // shows that A's way was as short as B's (a first herd queued for cold connections), and it is held back too
      const alone = yield* scenario(false, false, true)
      expect(alone.synced).toBe(89_167)
      expect(alone.settledA).toBe(97_167)
    }))

  it.effect("a report that would raise the level less than the calls not answered yet within its lag before it charged changes nothing", () =>
    run((limiter) =>
      Effect.gen(function*() {
        // a herd of 50 calls of 1,000 still on their way, then one call sent a second later, answered 1.5 s after it
        // left with 95,000 left (the server's time on it none)
        yield* sendTogether(limiter, 50, 1_000)
        yield* TestClock.adjust("1 second")
        const late = yield* limiter.acquire([SCOPE], { tokens: 1_000 })
        yield* late.markSent
        const sentAt = yield* Clock.currentTimeMillis
        yield* TestClock.adjust("1500 millis")
        const reportedBy = yield* Clock.currentTimeMillis
        const before = yield* levelOf(limiter)
        const report = (remaining: number) =>
          limiter.sync(SCOPE, { dimension: "tokens", limit: CAPACITY, remaining, since: late, sentAt, reportedBy })
        yield* report(95_000)
        expect(yield* levelOf(limiter)).toBe(before)
        // a report below the level still lowers it
        yield* report(40_000)
        expect(yield* levelOf(limiter)).toBe(40_000)
      })
    ))

  it.effect("a report on tokens (trued up) holds back the share of the calls on their way that the same answer's requests report showed unseen", () =>
    Effect.gen(function*() {
      const both = (requestsFirst: boolean) =>
        Effect.scoped(
          Effect.gen(function*() {
            const limiter = yield* RateLimiter.make({
              budgets: [Budget.make(SCOPE, [
                Budget.Limit.perMinute("requests", 1_000),
                Budget.Limit.perMinute("tokens", CAPACITY)
              ])]
            })
            const call = (tokens: number) =>
              Effect.tap(limiter.acquire([SCOPE], { requests: 1, tokens }), (permit) => permit.markSent)
            // a call answered with less than it was charged (tokens are not counted exactly), then a herd of 50 on
            // its way, and one call 100 ms later answered first, 150 ms after it left (the server's time on it none)
            const first = yield* call(1_000)
            yield* first.settle({ requests: 1, tokens: 500 })
            yield* Effect.forEach(Array.from({ length: 50 }), () => call(1_000))
            yield* TestClock.adjust("100 millis")
            const late = yield* call(1_000)
            const sentAt = yield* Clock.currentTimeMillis
            yield* TestClock.adjust("150 millis")
            const reportedBy = yield* Clock.currentTimeMillis
            // the server has seen the first and the late call only
            const report = (dimension: "requests" | "tokens", limit: number, remaining: number) =>
              limiter.sync(SCOPE, { dimension, limit, remaining, since: late, sentAt, reportedBy })
            if (requestsFirst) yield* report("requests", 1_000, 998)
            yield* report("tokens", CAPACITY, CAPACITY - 1_500)
            const levels = (yield* limiter.peek([SCOPE], {})).levels
            return {
              requests: levels.find((level) => level.dimension === "requests")!.level,
              tokens: levels.find((level) => level.dimension === "tokens")!.level
            }
          })
        ).pipe(Effect.provide(LimiterStore.layerMemory), Effect.orDie)
      const after = yield* both(true)
      // requests: 1,000 - 52 + 250 ms of refill; the report's 998 is 45.8 above: 45.8 of the 50 calls unseen
      expect(after.requests).toBeCloseTo(952.17, 1)
      // tokens: 98,500 less that share (0.917) of the herd's 50,000
      expect(after.tokens).toBeCloseTo(CAPACITY - 1_500 - 50_000 * (998 - 952.1667) / 50, 0)
      // without the requests report, nothing shows the herd unseen: the tokens report is adopted
      expect((yield* both(false)).tokens).toBe(CAPACITY - 1_500)
    }))

  it.effect("the first report on a bucket is adopted too: other traffic the server saw lowers the level", () =>
    run((limiter) =>
      Effect.gen(function*() {
        const a = yield* limiter.acquire([SCOPE], { tokens: 1_000 })
        yield* a.markSent
        const sentAt = yield* Clock.currentTimeMillis
        // nothing was sent before A: the server counted A (1,000) and 49,000 of somebody else's
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: CAPACITY, remaining: 50_000, since: a, sentAt })
        expect(yield* levelOf(limiter)).toBe(50_000)
        yield* a.settle({ tokens: 400 })
        expect(yield* levelOf(limiter)).toBe(50_000)
      })
    ))

  it.effect("the report of a call admitted before its bucket was learned is replayed over the calls the bucket charged after it left, and only lowers", () =>
    Effect.scoped(
      Effect.gen(function*() {
        // no tokens limit yet (the adaptive mode's probe): P charges no tokens bucket
        const limiter = yield* RateLimiter.make({ budgets: [] })
        const p = yield* limiter.acquire([SCOPE], { tokens: 5_000 })
        const p2 = yield* limiter.acquire([SCOPE], { tokens: 1_000 })
        // a guess learned while P waits to leave (its patience ran out); Q0, admitted after P, leaves first
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: CAPACITY })
        yield* Effect.tap(limiter.acquire([SCOPE], { tokens: 5_000 }), (permit) => permit.markSent)
        yield* p.markSent
        const sentAt = yield* Clock.currentTimeMillis
        // a second probe, admitted before the guess too, leaves with P
        yield* p2.markSent
        // Q and R leave a second later; the guess grows (the level gains what it grew by)
        yield* TestClock.adjust("1 second")
        yield* Effect.tap(limiter.acquire([SCOPE], { tokens: 20_000 }), (permit) => permit.markSent)
        yield* Effect.tap(limiter.acquire([SCOPE], { tokens: 10_000 }), (permit) => permit.markSent)
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 2 * CAPACITY })
        yield* TestClock.adjust("1 second")
        // H is admitted and not sent yet
        yield* limiter.acquire([SCOPE], { tokens: 7_000 })
        // P's answer: the server's limit (the learned one shrinks back: the level is capped at full), and what
        // it had left as of P's arrival: it counted Q0 and P, neither Q nor R
        yield* p.settle({ tokens: 5_000 })
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: CAPACITY, remaining: 90_000, since: p, sentAt })
        const levelNow = Effect.map(limiter.peek([SCOPE], {}), (estimate) => estimate.levels[0].level)
        // 90,000 at 0 s, 1 s of refill, less Q and R; 1 s of refill, less H (not the report as of now: 90,000;
        // Q0 is not taken off again)
        const expected = 90_000 + CAPACITY / 60 - 30_000 + CAPACITY / 60 - 7_000
        expect(yield* levelNow).toBeCloseTo(expected, 6)
        // P2's report, replayed the same way, is above the level: it does not raise it
        yield* p2.settle({ tokens: 1_000 })
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: CAPACITY, remaining: 99_000, since: p2, sentAt })
        expect(yield* levelNow).toBeCloseTo(expected, 6)
      })
    ).pipe(Effect.provide(LimiterStore.layerMemory), Effect.orDie))

  it.effect("calls sent in the same moment: each report counts the earlier ones, and adopting it does not count them again", () =>
    Effect.gen(function*() {
      // Three calls of 30,000 estimated, 25,000 used, leave at once and reach the server in the order sent;
      // it trues each up as it arrives and reports what is left then. Each is answered in turn (settled,
      // then synced, as the OpenAi service does). The server's limit is the bucket's own: the reports
      // could be adopted both ways, but the calls sent just before the answered one fall within the skew
      // and count as unseen — adopting that bound counted them twice (the level sank 25,000 below the
      // server's per call answered before this one: -5,000 and -25,000 instead of 20,000 and 25,000; a
      // run of such calls ended twice as late as it could).
      const level = yield* run((limiter) =>
        Effect.gen(function*() {
          const calls = yield* Effect.forEach(Array.from({ length: 3 }), () =>
            Effect.tap(limiter.acquire([SCOPE], { tokens: 30_000 }), (permit) => permit.markSent))
          const sentAt = yield* Clock.currentTimeMillis
          const levels: Array<number> = []
          for (let k = 0; k < calls.length; k++) {
            yield* calls[k].settle({ tokens: 25_000 })
            yield* limiter.sync(SCOPE, {
              dimension: "tokens",
              limit: CAPACITY,
              remaining: CAPACITY - (k + 1) * 25_000,
              since: calls[k],
              sentAt
            })
            levels.push(yield* levelOf(limiter))
          }
          return levels
        })
      )
      // the server's level after each answer: 100,000 less what it charged, less the estimates still held here
      expect(level).toEqual([100_000 - 25_000 - 2 * 30_000, 100_000 - 2 * 25_000 - 30_000, 100_000 - 3 * 25_000])
    }))

  it.effect("until a report shows the server trues up, answered calls count at their charge: in a replay, and at settle", () =>
    Effect.gen(function*() {
      // Four calls of 20,000 estimated leave at once; the server counts the first first. The three others are
      // answered first (10,000 used each, no report read), then the first (10,000 used), with the server's report
      // of it: adopted both ways, replayed over the three others. A server that keeps what it charged has
      // 100,000 - 20,000 = 80,000 left after the first and 20,000 once it has counted the others, at their
      // charge: replayed at their usage (what this limiter did), the level rose to 50,000, 30,000 tokens above
      // the server's (the bench's few-large 429). A server that trues up has 90,000 left after the first: above
      // what a full bucket less the first's charge could hold (80,000 at most; 85,000, halfway to its usage,
      // is the threshold), so it trues up and the others count at their usage: 60,000, its level.
      const after = (remaining: number, store?: Layer.Layer<LimiterStore.LimiterStore>) =>
        run((limiter) =>
          Effect.gen(function*() {
            const calls = yield* Effect.forEach(
              Array.from({ length: 4 }),
              () => Effect.tap(limiter.acquire([SCOPE], { tokens: 20_000 }), (permit) => permit.markSent)
            )
            const sentAt = yield* Clock.currentTimeMillis
            for (const call of calls.slice(1)) yield* call.settle({ tokens: 10_000 })
            yield* calls[0].settle({ tokens: 10_000 })
            yield* limiter.sync(SCOPE, { dimension: "tokens", limit: CAPACITY, remaining, since: calls[0], sentAt })
            const synced = yield* levelOf(limiter)
            // a fifth call answered with 5,000 of 15,000: given back only where the server is known to true up
            const fifth = yield* limiter.acquire([SCOPE], { tokens: 15_000 })
            yield* fifth.markSent
            yield* fifth.settle({ tokens: 5_000 })
            return { synced, settled: (yield* levelOf(limiter)) - (synced - 15_000) }
          }), store)
      expect(yield* after(80_000)).toEqual({ synced: 20_000, settled: 0 })
      // in a store whose level reports only lower (shared by processes: no `track`), the refund is the only way
      // back up, and is given: the report folded in by send order lowers to the server's 20,000 all the same
      expect(yield* after(80_000, untracked)).toEqual({ synced: 20_000, settled: 10_000 })
      expect(yield* after(90_000)).toEqual({ synced: 60_000, settled: 10_000 })
      // a report that does not show it (here: the bucket was not full before the first) keeps the safe reading
      expect(yield* after(84_000)).toEqual({ synced: 24_000, settled: 0 })
    }))

  it.effect("a refund a settle holds back on a reporting bucket is not counted in the refunds metric", () =>
    Effect.gen(function*() {
      // (see settleAfterReport) 19,000 counted where none went back before
      const settled = (remaining: number) =>
        settleAfterReport(Budget.Limit.perMinute("tokens", CAPACITY), CAPACITY, remaining)
      // the refund waits for a report to show the server trues up, and is not counted as refunded
      expect(yield* settled(75_000)).toEqual({ level: 0, metric: 0 })
      // a full bucket (99,000 left after the call) shows it: the settle refunds, and it is counted
      expect(yield* settled(99_000)).toEqual({ level: 19_000, metric: 19_000 })
    }))

  it.effect("where reports only lower (a budget below the server's limit, or with a burst), a settle refunds as far as the latest report leaves room", () =>
    Effect.gen(function*() {
      // (see settleAfterReport) A report that cannot be adopted both ways
      // only lowers the level: it never brings back what a settle held back, so the settle refunds up to the
      // report (held back, a server that trues up but whose bucket is never near full left every call at its
      // estimate for good: 0 here before).
      const settled = settleAfterReport
      // budget 100,000 below the server's 200,000, which has 150,000 left: room for all of it
      expect(yield* settled(Budget.Limit.perMinute("tokens", 100_000), 200_000, 150_000))
        .toEqual({ level: 19_000, metric: 19_000 })
      // a budget of the server's limit with a burst of 50,000: the report, 60,000 less the second call at its
      // charge, leaves room for 40,000; the level after the second call's charge is 29,000
      expect(yield* settled(Budget.Limit.perMinute("tokens", 100_000, 50_000), 100_000, 60_000))
        .toEqual({ level: 11_000, metric: 11_000 })
    }))

  it.effect("in a burst (more than 64 calls in the 250 ms before the answered one) a report only lowers", () =>
    run((limiter) =>
      Effect.gen(function*() {
        const burst = yield* sendTogether(limiter, 100, 500)
        const last = burst[burst.length - 1]
        const sentAt = yield* Clock.currentTimeMillis
        // the server answered the last one first, before most of the others reached it
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: CAPACITY, remaining: 99_000, since: last, sentAt })
        expect(yield* levelOf(limiter)).toBe(CAPACITY - 100 * 500)
        // ...and a lower report still lowers it
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: CAPACITY, remaining: 10_000, since: last, sentAt })
        expect(yield* levelOf(limiter)).toBe(10_000)
      })
    ))
})

describe("RateLimiter.sync: a report of a call sent in a herd", () => {
  it.effect("counts the calls sent with it as possibly seen: it lowers only as far as the server certainly is", () =>
    run((limiter) =>
      Effect.gen(function*() {
        const herd = yield* sendTogether(limiter, 100, 500)
        const first = herd[0]
        const sentAt = yield* Clock.currentTimeMillis
        expect(yield* levelOf(limiter)).toBe(CAPACITY - 100 * 500)
        // the first sent reached the server last (a network that reorders the herd): it had seen all 100. Counting
        // the 99 sent after it as not seen lowered the level by them: 24,500 below the server's
        yield* limiter.sync(SCOPE, {
          dimension: "tokens",
          limit: CAPACITY,
          remaining: CAPACITY - 100 * 500,
          since: first,
          sentAt
        })
        expect(yield* levelOf(limiter)).toBe(CAPACITY - 100 * 500)
        // 10,000 of other traffic shows all the same
        yield* limiter.sync(SCOPE, {
          dimension: "tokens",
          limit: CAPACITY,
          remaining: CAPACITY - 100 * 500 - 10_000,
          since: first,
          sentAt
        })
        expect(yield* levelOf(limiter)).toBe(CAPACITY - 100 * 500 - 10_000)
        // calls sent later than REPORT_SKEW_MILLIS after it count as not seen
        yield* TestClock.adjust(100)
        yield* Effect.tap(limiter.acquire([SCOPE], { tokens: 1_000 }), (permit) => permit.markSent)
        yield* limiter.sync(SCOPE, {
          dimension: "tokens",
          limit: CAPACITY,
          remaining: CAPACITY - 100 * 500 - 20_000,
          since: first,
          sentAt
        })
        expect(yield* levelOf(limiter)).toBeCloseTo(
          CAPACITY - 100 * 500 - 20_000 + (CAPACITY / 60_000) * 100 - 1_000,
          6
        )
      })
    ))
})

describe("RateLimiter.sync: a report of a call sent in a herd, where the level is not the server's own", () => {
  it.effect("a server's limit below the budget: the calls sent after it count as not seen (the report is the only news)", () =>
    run((limiter) =>
      Effect.gen(function*() {
        const herd = yield* sendTogether(limiter, 100, 400)
        const sentAt = yield* Clock.currentTimeMillis
        yield* TestClock.adjust(300)
        // a server of 50,000 that took the first call first: it will hold 10,000 once the herd has arrived (plus
        // 300 ms of refill, at this bucket's rate); counting the herd as seen left the level at 50,100
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 50_000, remaining: 49_600, since: herd[0], sentAt })
        expect(yield* levelOf(limiter)).toBeCloseTo(49_600 - 99 * 400 + (CAPACITY / 60_000) * 300, 6)
      })
    ))

  it.effect("a shared store (reports only lower it): the same", () =>
    run((limiter) =>
      Effect.gen(function*() {
        const herd = yield* Effect.forEach(
          Array.from({ length: 100 }),
          () => Effect.tap(limiter.acquire([SCOPE], { tokens: 400 }), (permit) => permit.markSent)
        )
        const sentAt = yield* Clock.currentTimeMillis
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: CAPACITY, remaining: 69_600, since: herd[0], sentAt })
        expect(yield* levelOf(limiter)).toBe(69_600 - 99 * 400)
      }), untracked))

  it.effect("calls sent after the latest the report was made (`reportedBy`) count as not seen, herd or not", () =>
    run((limiter) =>
      Effect.gen(function*() {
        const herd = yield* sendTogether(limiter, 70, 400)
        const sentAt = yield* Clock.currentTimeMillis
        yield* TestClock.adjust(20)
        yield* sendTogether(limiter, 30, 400)
        // made by 10 ms after the herd left: of its 70, any may have arrived; the 30 sent at 20 ms had not
        yield* limiter.sync(SCOPE, {
          dimension: "tokens",
          limit: CAPACITY,
          remaining: CAPACITY - 70 * 400 - 10_000,
          since: herd[0],
          sentAt,
          reportedBy: sentAt + 10
        })
        expect(yield* levelOf(limiter)).toBeCloseTo(
          CAPACITY - 70 * 400 - 10_000 + (CAPACITY / 60_000) * 10 - 30 * 400,
          6
        )
      })
    ))
})

describe("RateLimiter.sync on a limit with a burst", () => {
  it.effect.prop(
    "a report of the limit's remaining never lowers its burst bucket below what the server's burst bucket holds",
    [fc.array(
      fc.record({
        estimate: fc.integer({ min: 1, max: 700 }),
        actualShare: fc.double({ min: 0, max: 1, noNaN: true }),
        gap: fc.integer({ min: 0, max: 2_000 }),
        latency: fc.integer({ min: 1, max: 3_000 })
      }),
      { minLength: 1, maxLength: 12 }
    )],
    ([calls]) =>
      Effect.scoped(Effect.gen(function*() {
        // the server: a per-minute bucket of 42,580 tokens and a burst bucket of 709 at the same rate, each call
        // charged its estimate as it arrives and trued up to its actual as it is answered; the client: one limit
        // with that burst. Each answer reports the per-minute bucket's remaining.
        const AMOUNT = 42_580
        const BURST = 709
        const rate = AMOUNT / 60_000
        const limiter = yield* RateLimiter.make({
          budgets: [Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", AMOUNT, BURST)])]
        })
        const server = { minute: AMOUNT, burst: BURST, at: 0 }
        const age = (now: number) => {
          server.minute = Math.min(AMOUNT, server.minute + (now - server.at) * rate)
          server.burst = Math.min(BURST, server.burst + (now - server.at) * rate)
          server.at = now
        }
        const pending: Array<
          { at: number; permit: RateLimiter.Permit; sentAt: number; estimate: number; refund: number }
        > = []
        const answer = (until: number) =>
          Effect.gen(function*() {
            pending.sort((a, b) => a.at - b.at)
            while (pending.length > 0 && pending[0].at <= until) {
              const call = pending.shift()!
              yield* TestClock.setTime(call.at)
              age(call.at)
              server.minute = Math.min(AMOUNT, server.minute + call.refund)
              server.burst = Math.min(BURST, server.burst + call.refund)
              yield* call.permit.settle({ tokens: call.estimate - call.refund })
              yield* limiter.sync(SCOPE, {
                dimension: "tokens",
                limit: AMOUNT,
                remaining: Math.floor(server.minute),
                since: call.permit,
                sentAt: call.sentAt
              })
              const level = (yield* limiter.peek([SCOPE], {})).levels[0].level
              // the client never thinks it has less than the server's burst bucket holds (less the floor)
              expect(level).toBeGreaterThanOrEqual(server.burst - 1)
            }
          })
        let now = 0
        for (const call of calls) {
          now += call.gap
          yield* answer(now)
          yield* TestClock.setTime(now)
          // admitted as soon as the client's bucket has room, answers coming back meanwhile
          let permit = Option.getOrUndefined(yield* limiter.tryAcquire([SCOPE], { tokens: call.estimate }))
          while (permit === undefined) {
            const wait = (yield* limiter.peek([SCOPE], { tokens: call.estimate })).waitMillis
            const next = Math.min(
              now + Math.max(1, wait),
              pending.length > 0
                ? Math.min(...pending.map((p) => p.at))
                : Infinity
            )
            yield* answer(next)
            now = Math.max(now, next)
            yield* TestClock.setTime(now)
            permit = Option.getOrUndefined(yield* limiter.tryAcquire([SCOPE], { tokens: call.estimate }))
          }
          yield* permit.markSent
          age(now)
          server.minute -= call.estimate
          server.burst -= call.estimate
          const actual = Math.floor(call.estimate * call.actualShare)
          pending.push({
            at: now + call.latency,
            permit,
            sentAt: now,
            estimate: call.estimate,
            refund: call.estimate - actual
          })
        }
        yield* answer(Number.POSITIVE_INFINITY)
      })).pipe(Effect.provide(LimiterStore.layerMemory), Effect.orDie),
    { fastCheck: { numRuns: 100, seed: 17 } }
  )
})

describe("RateLimiter.sync learning", () => {
  it.effect("a per-day limit is learned beside a per-minute one of the same dimension, shows in snapshot and the level gauge, and binds", () =>
    run((limiter) =>
      Effect.gen(function*() {
        // the scope has 100,000 tokens a minute; the server says (a daily 429) 150,000 a day, 40,000 left
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 150_000, window: "1 day", remaining: 40_000 })
        const limits = limiter.limitsOf(SCOPE).map((limit) => [limit.dimension, limit.amount, limit.windowMillis])
        expect(limits).toEqual([["tokens", CAPACITY, 60_000], ["tokens", 150_000, 86_400_000]])
        const snapshot = yield* limiter.snapshot
        expect(snapshot.levels.map((l) => [l.limit.windowMillis, l.learned, l.level])).toEqual([
          [60_000, false, CAPACITY],
          [86_400_000, true, 40_000]
        ])
        const gauge = Metrics.level.pipe(
          Metric.tagged("scope", SCOPE),
          Metric.tagged("dimension", "tokens"),
          Metric.tagged("window", "1d")
        )
        expect(yield* Effect.map(Metric.value(gauge), (state: MetricState.MetricState.Gauge<number>) => state.value))
          .toBe(40_000)
        // the day's bucket binds: 40,000 fit, 50,000 wait for its refill
        expect(Option.isSome(yield* limiter.tryAcquire([SCOPE], { tokens: 40_000 }))).toBe(true)
        const estimate = yield* limiter.peek([SCOPE], { tokens: 50_000 })
        expect(Option.getOrThrow(estimate.binding).dimension).toBe("tokens")
        expect(estimate.waitMillis).toBe(Math.ceil(50_000 / (150_000 / 86_400_000)))
        // a later per-day report lowers the day's bucket, not the minute's; a per-minute one the minute's
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 150_000, window: "1 day", remaining: 0 })
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: CAPACITY, remaining: 10_000 })
        const after = yield* limiter.snapshot
        expect(after.levels.map((l) => [l.limit.windowMillis, l.level])).toEqual([[60_000, 10_000], [86_400_000, 0]])
        // the same report again learns nothing more
        yield* limiter.sync(SCOPE, { dimension: "tokens", limit: 150_000, window: "1 day", remaining: 0 })
        expect(limiter.limitsOf(SCOPE)).toHaveLength(2)
      })
    ))

  it.effect("a refusal's figure (`refusal`) counts the calls sent before the refused one as the server charged them, and not the refused one: their refunds, and its own, do not raise the level again", () =>
    Effect.gen(function*() {
      const level = (refusal: boolean, figure = 200) =>
        Effect.scoped(
          Effect.gen(function*() {
            // the server's limit with its 10,000-token burst (what a 429 teaches)
            const limiter = yield* RateLimiter.make({
              budgets: [Budget.make(SCOPE, [Budget.Limit.perMinute("tokens", CAPACITY, 10_000)])]
            })
            const send = (tokens: number) =>
              Effect.tap(limiter.acquire([SCOPE], { tokens }), (permit) => permit.markSent)
            const a = yield* send(4_000)
            const b = yield* send(4_000)
            const refused = yield* send(1_500)
            expect(yield* levelOf(limiter)).toBe(500)
            // the bucket that refused it held 200 (A and B at the server's charge, and what else it took)
            yield* limiter.sync(SCOPE, {
              dimension: "tokens",
              remaining: figure,
              since: refused,
              ...(refusal ? { refusal: true } : {})
            })
            // (a figure above the level leaves it: it only lowers)
            expect(yield* levelOf(limiter)).toBe(Math.min(500, figure))
            // the figure has the refused call neither (the server never took it): its release gives nothing back
            yield* refused.release
            if (figure === 200) expect(yield* levelOf(limiter)).toBe(refusal ? 200 : 1_700)
            // A and B answered with 1,000 each: the server had them so in its figure already
            yield* a.settle({ tokens: 1_000 })
            yield* b.settle({ tokens: 1_000 })
            return yield* levelOf(limiter)
          })
        ).pipe(Effect.provide(LimiterStore.layerMemory), Effect.orDie)
      expect(yield* level(true)).toBe(200)
      // without it, the refunds come back on top of the figure that counted them: 7,500 the server does not have
      expect(yield* level(false)).toBe(7_700)
      // a figure above the level: the refunds raise it as far as the figure (3,000), no further
      expect(yield* level(true, 3_000)).toBe(3_000)
      expect(yield* level(false, 3_000)).toBe(8_000)
    }))
})
