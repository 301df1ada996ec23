/**
 * Invariant 10 over random workload shapes (issue 13): the OpenAi service against the in-process
 * simulator under TestClock (real `openai` SDK), for call sizes from 1% to 90% of the server's smallest
 * bucket, arrivals all at once, steady, Poisson at 50%, 90% and 120% of capacity or in bursts after an idle
 * spell, latencies from 20 ms to 30 s (some calls streamed), and budgets equal to the server's, below them,
 * above them or not given; a share of the servers enforce sub-minute buckets, another share send no
 * rate-limit headers.
 *
 * The bounds (a run's wall time against the theoretical minimum M of its admissions, plus the largest
 * latency L, and its 429s among the attempts that reached the server after the first answer):
 * - budgets equal to the server's (or below them, M at the budgets): ≤ 1.03 M + L, no 429;
 * - no budgets: ≤ 1.10 M + L, 429s ≤ 1%; on a server without rate-limit headers ≤ 1.15 M + L, 429s ≤ 3%;
 * - budgets above the server's: every call succeeds (no bound on time or 429s is claimed).
 * A 429 is the only sign of a limit the server does not announce, so a run that must learn one is allowed
 * one 429 per dimension it had to learn when the share rounds below it (see {@link allowed429s}).
 *
 * With no budgets the issue's `slack × M + L` is not reachable by a client that sends one call and waits for
 * its answer before the rest: the bound adds the learning that client cannot avoid, measured (see
 * {@link learningAllowance}, which says why each part is unavoidable).
 *
 * Asserted on every shape: every call succeeds, and with budgets equal to the server's or below them not
 * one 429. The time bounds and the 429 allowances are asserted on every shape of the default sample (seed
 * 13, 200 shapes) but the ones in {@link KNOWN_OUTSIDE}, each with what was found of its cause; a shape of
 * that list that comes within its bounds fails the test too, so the list only shrinks. With another seed or
 * number of shapes the bounds are reported, and asserted with `SLUICE_PACING_STRICT=1`.
 * `SLUICE_PACING_RUNS` and `SLUICE_PACING_SEED` pick the number of shapes and the seed;
 * `SLUICE_PACING_ONLY=3,17` runs only those shapes of the sample and `SLUICE_PACING_TRACE=1` prints their
 * admissions, answers and attempts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import { TokenEstimator } from "@sluice/openai"
import { SimConfig, Simulator } from "@sluice/testing"
import { Cause, Clock, Effect, Exit, FastCheck as fc, Stream } from "effect"
import { fastDrive } from "./fastDrive.js"
import { withService } from "./harness.js"

const MODEL = "gpt-4o"
const POOL = "org:acme/pool:gpt-4o"

type Arrival = "once" | "steady" | "poisson50" | "poisson90" | "poisson120" | "idleBurst"
type Budgets = "equal" | "below" | "above" | "unknown"
type Server = "plain" | "subMinute" | "noHeaders"
type Settle = "admission" | "never"

interface Case {
  readonly rpm: number
  readonly tpm: number
  readonly server: Server
  /**
   * What the server does with the estimate it charged at admission (`SimConfig` `enforcement.settle`): trues it
   * up to the usage at once, or keeps it. Kept only with budgets given (equal or below): the bounds of learning
   * without budgets assume a server that trues up.
   */
  readonly settle: Settle
  readonly subWindowMs: number
  readonly budgets: Budgets
  readonly arrival: Arrival
  readonly latency: { readonly min: number; readonly max: number }
  readonly fraction: number
  readonly calls: ReadonlyArray<{ readonly share: number; readonly stream: boolean; readonly gap: number }>
}

const arbitrary: fc.Arbitrary<Case> = fc.record({
  rpm: fc.integer({ min: 60, max: 600 }),
  tpm: fc.integer({ min: 6_000, max: 60_000 }),
  server: fc.constantFrom<Server>("plain", "plain", "subMinute", "noHeaders"),
  subWindowMs: fc.constantFrom(1_000, 2_000, 5_000, 10_000),
  budgets: fc.constantFrom<Budgets>("equal", "below", "above", "unknown", "unknown"),
  arrival: fc.constantFrom<Arrival>("once", "steady", "poisson50", "poisson90", "poisson120", "idleBurst"),
  latency: fc.oneof(
    fc.integer({ min: 20, max: 30_000 }).map((ms) => ({ min: ms, max: ms })),
    fc.tuple(fc.integer({ min: 20, max: 2_000 }), fc.integer({ min: 0, max: 4_000 })).map(([min, spread]) => ({
      min,
      max: min + spread
    }))
  ),
  fraction: fc.double({ min: 0.1, max: 1, noNaN: true }),
  calls: fc.array(
    fc.record({
      share: fc.double({ min: 0.01, max: 0.9, noNaN: true }),
      stream: fc.constant(false), // drawn below: one call in four is streamed
      gap: fc.double({ min: 0, max: 1, noNaN: true })
    }),
    { minLength: 4, maxLength: 16 }
  ).chain((calls) =>
    fc.array(fc.integer({ min: 0, max: 3 }), { minLength: calls.length, maxLength: calls.length }).map((draws) =>
      calls.map((call, i) => ({ ...call, stream: draws[i] === 0 }))
    )
  )
}).map((c) => ({
  ...c,
  // budgets above the server's only against a server that announces its limits over the minute
  budgets: c.budgets === "above" && c.server === "subMinute" ? "unknown" : c.budgets
})).chain((c) =>
  // drawn last, so the shapes of a seed are the ones drawn before the settle mode was (each shape has its own
  // random stream): a third of the shapes with budgets equal or below against a server that keeps its charge,
  // when it sends rate-limit headers (without them nothing but a 429 could tell this client that the server keeps
  // its charges, and the settles give back what it keeps: 3 and 4 × 429 in two of seven such shapes of the sample)
  fc.constantFrom<Settle>("admission", "admission", "never").map((settle): Case => ({
    ...c,
    settle: (c.budgets === "equal" || c.budgets === "below") && c.server !== "noHeaders" ? settle : "admission"
  }))
)

/** The prompt of a call: `[req:i]` and filler, `chars` long. */
const prompt = (i: number, chars: number) => {
  const head = `[req:${i}] `
  return head + "lorem ipsum dolor sit amet ".repeat(Math.ceil(chars / 27)).slice(0, Math.max(0, chars - head.length))
}

interface Planned {
  readonly at: number
  readonly chars: number
  readonly maxTokens: number
  readonly stream: boolean
  /** What the server charges at admission (prompt + max tokens) and once served (prompt + output). */
  readonly estimate: number
  readonly actual: number
  /** What the client reserves for it: its estimator's count (see {@link reserveOf}). */
  readonly reserve: number
}

/** The budgets' share of the server's limits (`undefined`: no budgets). */
const factorOf = (c: Case) =>
  c.budgets === "equal" ? 1 : c.budgets === "below" ? 0.7 : c.budgets === "above" ? 1.5 : undefined

/** The calls of a case: sizes as shares of the smallest token bucket in force, arrivals per the pattern. */
const plan = (c: Case): ReadonlyArray<Planned> => {
  const tpm = Math.floor(c.tpm * Math.min(1, factorOf(c) ?? 1))
  const tokenBucket = c.server === "subMinute" ? Math.max(1, Math.floor((tpm * c.subWindowMs) / 60_000)) : tpm
  const sized = c.calls.map((call, i) => {
    const size = Math.max(20, Math.floor(tokenBucket * call.share))
    const chars = Math.max(12, Math.floor(size * 0.3) * 4)
    const promptTokens = Math.ceil(chars / 4)
    const maxTokens = Math.max(1, size - promptTokens)
    const output = Math.max(1, Math.min(Math.ceil(c.fraction * maxTokens), maxTokens))
    return {
      i,
      chars,
      maxTokens,
      stream: call.stream,
      estimate: promptTokens + maxTokens,
      // a server that keeps its charge keeps the estimate
      actual: c.settle === "never" ? promptTokens + maxTokens : promptTokens + output,
      reserve: reserveOf(i, chars, maxTokens),
      gap: call.gap
    }
  })
  // capacity in calls per ms: the tighter of requests and (actual) tokens
  const meanActual = sized.reduce((a, s) => a + s.actual, 0) / sized.length
  const perMs = Math.min(c.rpm / 60_000, c.tpm / 60_000 / meanActual)
  const load = c.arrival === "poisson50" ? 0.5 : c.arrival === "poisson90" ? 0.9 : c.arrival === "poisson120" ? 1.2 : 1
  let t = 0
  let last = -1
  return sized.map((s, index) => {
    switch (c.arrival) {
      case "once":
        t = 0
        break
      case "steady":
        t = index / perMs
        break
      case "idleBurst":
        t = index < sized.length / 2 ? 0 : 120_000
        break
      default:
        if (index > 0) t += -Math.log(1 - Math.min(s.gap, 0.999_999)) / (perMs * load)
    }
    // a millisecond at least between two arrivals: calls that arrive at the same instant have no order, and the
    // client queues them in the order they reach its limiter (a stream's takes a few more steps), so the
    // minimum below, which admits in arrival order, would not bound it
    last = Math.max(Math.round(t), last + 1)
    return {
      at: last,
      chars: s.chars,
      maxTokens: s.maxTokens,
      stream: s.stream,
      estimate: s.estimate,
      actual: s.actual,
      reserve: s.reserve
    }
  })
}

/**
 * What the client reserves for a call: its estimator's count of the prompt (a tokenizer's, with OpenAI's
 * message framing) plus `max_tokens`. The simulator charges a quarter of the characters instead, which the
 * client cannot know; a client pacing at its budget reserves its own count and gets the difference back when
 * the call settles: the minimum below is that of a client reserving it.
 */
const reserveOf = (i: number, chars: number, maxTokens: number) =>
  TokenEstimator.chat({ model: MODEL, messages: [{ role: "user", content: prompt(i, chars) }], max_tokens: maxTokens })
    .tokens

/**
 * The theoretical minimum: when the last call can be admitted by buckets of these limits (each starting
 * full, a sub-minute one beside each when enforced), admitting in arrival order as early as the buckets
 * allow, each call charged its reservation at admission and refunded the unused part when it is answered:
 * at its admission plus the latency the simulator drew for it in this run (`Attempt.latencyMs`; the largest
 * latency for a call that never succeeded). The simulator draws latencies in the order calls reach it, so this
 * is a lower bound for any client that gets the same latencies: admitting as early as the buckets allow is
 * optimistic, and no client that waits for its refunds is admitted earlier.
 */
const minimumOf = (
  calls: ReadonlyArray<Planned>,
  limits: { readonly rpm: number; readonly tpm: number },
  burstShare: number | undefined,
  /** When a call, admitted at `at`, is answered (its refund comes back). */
  answeredAt: (call: Planned, at: number) => number,
  /** The sub-minute buckets are the budgets' (whole units, as {@link budgetsOf} gives them), not the server's. */
  budgeted: boolean,
  /** The server keeps what it charged at admission (`settle: "never"`; each call's `actual` is then that charge). */
  keeps = false
): number => {
  interface Bucket {
    level: number
    readonly capacity: number
    readonly rate: number
  }
  const make = (limit: number, capacity: number): Bucket => ({ level: capacity, capacity, rate: limit / 60_000 })
  const dims = {
    requests: [make(limits.rpm, limits.rpm)],
    tokens: [make(limits.tpm, limits.tpm)]
  }
  if (burstShare !== undefined) {
    const capacity = (limit: number) =>
      Math.max(1, budgeted ? Math.floor(limit * burstShare + 1e-9) : limit * burstShare)
    dims.requests.push(make(limits.rpm, capacity(limits.rpm)))
    dims.tokens.push(make(limits.tpm, capacity(limits.tpm)))
  }
  const all = [...dims.requests, ...dims.tokens]
  let now = 0
  const refunds: Array<{ at: number; amount: number }> = []
  const advance = (to: number) => {
    refunds.sort((a, b) => a.at - b.at)
    while (now < to) {
      const next = refunds.length > 0 && refunds[0].at <= to ? refunds[0].at : to
      for (const b of all) b.level = Math.min(b.capacity, b.level + (next - now) * b.rate)
      now = next
      while (refunds.length > 0 && refunds[0].at <= now) {
        const refund = refunds.shift()!
        for (const b of dims.tokens) b.level = Math.min(b.capacity, b.level + refund.amount)
      }
    }
  }
  const waitFor = (list: ReadonlyArray<Bucket>, amount: number) =>
    Math.max(...list.map((b) => Math.max(0, (Math.min(amount, b.capacity) - b.level) / b.rate)))
  for (const call of [...calls].sort((a, b) => a.at - b.at)) {
    advance(Math.max(now, call.at))
    // at a server that keeps its charge, the call takes that charge (its estimate) at admission when it is more
    // than the reservation, and nothing of it comes back
    const charge = keeps ? Math.max(call.reserve, call.actual) : call.reserve
    for (;;) {
      const wait = Math.max(waitFor(dims.requests, 1), waitFor(dims.tokens, charge))
      if (wait <= 1e-9) break
      const nextRefund = refunds.length > 0 ? Math.min(...refunds.map((r) => r.at)) : Number.POSITIVE_INFINITY
      advance(Math.min(now + wait, nextRefund))
    }
    for (const b of dims.requests) b.level -= 1
    for (const b of dims.tokens) b.level -= charge
    refunds.push({ at: answeredAt(call, now), amount: charge - call.actual })
  }
  return now
}

/** Budgets for the case, scaled by `factor` (with the server's burst as one when it enforces one). */
const budgetsOf = (c: Case, factor: number) => {
  const burst = (amount: number) =>
    c.server === "subMinute" ? Math.max(1, Math.floor((amount * c.subWindowMs) / 60_000)) : undefined
  const rpm = Math.max(1, Math.floor(c.rpm * factor))
  const tpm = Math.max(1, Math.floor(c.tpm * factor))
  return [
    Budget.make(POOL, [
      Budget.Limit.perMinute("requests", rpm, burst(rpm)),
      Budget.Limit.perMinute("tokens", tpm, burst(tpm))
    ])
  ]
}

/** How long a pool waits for its first answer before it probes without it (`PROBE_PATIENCE` in `OpenAi`). */
const PROBE_PATIENCE = 10_000
/**
 * The first-contact ramp after a first answer that announced the limits (see `internal/learn.ts`): 1/64 of the
 * limits at once, doubling every `ln 2 × 60 s / 64` (650 ms: never less than the limits refill, so a herd larger
 * than the bucket loses nothing to it; a 429 takes a round trip to come back, and a faster ramp lets the herd
 * out before it is read: see `OpenAiRoundTrip.test.ts`), all of it after six doublings.
 */
const FIRST = { share: 1 / 64, doublingMillis: Math.LN2 * 60_000 / 64, doublings: 6 }
/**
 * The blind ramp (no headers): from the cautious limits (60 requests, 20,000 tokens), doubling every 4 round trips
 * of the answers (at most the largest latency here), within 400 ms and 3.2 s (`internal/learn.ts`).
 */
const BLIND = { requests: 60, tokens: 20_000, roundTrips: 4, fastestMillis: 400, slowestMillis: 3_200 }

/**
 * 429s allowed: the share of the attempts after the first answer (1%, or 3% without headers), but at least
 * one per dimension the server could only teach by refusing (a sub-minute bucket, a limit no header names,
 * or any limit when the first answer took longer than the client waits for it and the herd probed blind).
 */
const allowed429s = (c: Case, attempts: number, firstAnswer: number) => {
  const share = c.server === "noHeaders" ? 0.03 : 0.01
  const toLearn = c.server === "plain" && firstAnswer < PROBE_PATIENCE ? 0 : 2
  return Math.max(Math.floor(share * attempts), toLearn)
}

/**
 * What learning the limits costs a run with no budgets, beyond the issue's `slack × M + L`: the issue's bound
 * cannot be met there by a client that sends one call and waits for its answer before the rest (what
 * `OpenAi` does, so that a server's announced limits pace the herd from its start rather than 429s). Proof:
 * with a fixed latency L, such a client's last call is answered at 2L at the earliest (the first answer, then
 * the call), while a run whose calls all fit the server's buckets has M = 0 and a bound of L. So the bound
 * adds what such a client cannot avoid, measured:
 * - the time to the pool's first answer (its first call's latency, or {@link PROBE_PATIENCE} when that is
 *   longer: then the herd goes out without it), and the first-contact ramp after it (the time it takes to let the run out);
 * - a request interval (60 s / RPM) per 429: the server counts a refused call against the RPM (a 429 is how
 *   a limit the server does not announce is learned: a sub-minute bucket, a limit without headers);
 * - when the pool learns without headers (none sent, or the first answer too slow to wait for), the slow
 *   start that lets the run's calls out (doubling from the cautious limits every few round trips: what it lets
 *   out within the round trip of the first 429 is refused too, see `OpenAiLearning.roundTrip.test.ts`).
 */
const learningAllowance = (
  c: Case,
  calls: ReadonlyArray<Planned>,
  r: { readonly firstAnswer: number; readonly refused: number }
) => {
  const blind = c.server === "noHeaders" || r.firstAnswer >= PROBE_PATIENCE
  const tokens = calls.reduce((sum, call) => sum + call.reserve, 0)
  const doubling = Math.min(BLIND.slowestMillis, Math.max(BLIND.fastestMillis, BLIND.roundTrips * c.latency.max))
  const slowStart = blind
    ? doubling * Math.log2(Math.max(1, tokens / BLIND.tokens, calls.length / BLIND.requests))
    : 0
  // the first-contact ramp lets the run's calls out (all of them by its end)
  const ramp = blind ? 0 : FIRST.doublingMillis * Math.min(
    FIRST.doublings,
    Math.log2(Math.max(1, tokens / (c.tpm * FIRST.share), calls.length / (c.rpm * FIRST.share)))
  )
  return Math.min(r.firstAnswer, PROBE_PATIENCE) + ramp + slowStart + r.refused * (60_000 / c.rpm)
}

const runCase = (c: Case) => {
  const calls = plan(c)
  const factor = factorOf(c)
  const options = {
    organization: "acme",
    timeSlice: false as const,
    ...(factor === undefined ? {} : { budgets: budgetsOf(c, factor) })
  }
  const enforcement = {
    settle: c.settle,
    ...(c.server === "subMinute"
      ? { subWindowMs: c.subWindowMs }
      : c.server === "noHeaders"
      ? { rateLimitHeaders: false, retryAfter: false, retryAfterMs: false }
      : {})
  }
  return withService(options, (openai, events) =>
    Effect.gen(function*() {
      // the TestClock goes on from case to case: times are taken from this case's start
      const start = yield* Clock.currentTimeMillis
      const one = (call: Planned, i: number) => {
        const params = {
          model: MODEL,
          messages: [{ role: "user" as const, content: prompt(i, call.chars) }],
          max_tokens: call.maxTokens
        }
        const sent = call.stream
          ? Stream.runDrain(openai.chat.completions.stream(params))
          : Effect.asVoid(openai.chat.completions.create(params))
        return Effect.zipRight(Effect.sleep(call.at), sent)
      }
      const { endedAt, exit } = yield* fastDrive(
        Effect.forEach(calls, one, { concurrency: "unbounded", discard: true }),
        60_000
      )
      const stats = yield* Simulator.stats
      if (process.env.SLUICE_PACING_TRACE === "1") {
        console.log(JSON.stringify(c))
        console.log(calls.map((p) => `${p.at}:${p.estimate}/${p.actual}`).join(" "))
        for (const e of events) {
          console.log(
            `${e.at - start} ${e._tag} ${e.attempt} ${"cost" in e ? JSON.stringify(e.cost) : ""} ${
              "waitedMillis" in e ? e.waitedMillis : ""
            } ${"error" in e ? `${e.error._tag} ${(e.error as any).message?.slice(0, 160)}` : ""} ${
              "latencyMillis" in e ? e.latencyMillis : ""
            }`
          )
        }
        for (const a of stats.attempts) console.log(`attempt ${a.at} ${a.status}`)
      }
      const firstAnswer = Math.min(...events.filter((e) => e._tag !== "Admitted").map((e) => e.at)) - start
      const after = stats.attempts.filter((a) => a.at >= firstAnswer)
      const rejected = after.filter((a) => a.status === 429).length
      const limits = factor !== undefined && factor < 1
        ? { rpm: Math.floor(c.rpm * factor), tpm: Math.floor(c.tpm * factor) }
        : { rpm: c.rpm, tpm: c.tpm }
      // each call's latency in this run (its answered attempt; the call's index is its prompt's `[req:i]` key)
      const latencies = new Map<string, number>()
      for (const a of stats.attempts) {
        if (a.status === 200 && a.key !== undefined && a.latencyMs !== undefined) latencies.set(a.key, a.latencyMs)
      }
      const indexOf = new Map(calls.map((call, i) => [call, i]))
      const minimum = minimumOf(
        calls,
        limits,
        c.server === "subMinute" ? c.subWindowMs / 60_000 : undefined,
        (call, at) => at + (latencies.get(String(indexOf.get(call))) ?? c.latency.max),
        factor !== undefined,
        c.settle === "never"
      )
      return {
        ok: Exit.isSuccess(exit),
        cause: Exit.isFailure(exit) ? Cause.pretty(exit.cause).split("\n")[0] : "",
        succeeded: stats.byStatus["200"] ?? 0,
        endedAt: endedAt - start,
        minimum,
        rejected,
        attempts: after.length,
        firstAnswer,
        refused: stats.attempts.filter((a) => a.status === 429).length
      }
    })).pipe(
      Effect.provide(Simulator.layer(SimConfig.make({
        seed: 7,
        models: { [MODEL]: { limits: { rpm: c.rpm, tpm: c.tpm } } },
        enforcement,
        output: { fraction: c.fraction },
        latency: {
          request: c.latency.min === c.latency.max
            ? { _tag: "fixed", ms: c.latency.min }
            : { _tag: "uniform", min: c.latency.min, max: c.latency.max },
          perOutputTokenMs: 0
        }
      })))
    )
}

/**
 * The shape of the default sample outside its bounds, and why. #8 (no longer outside since the slow start's
 * allowance follows the round trip, 3.2 s doublings at 1.2 s latency; its cause is unchanged, 33.7 s) learns limits
 * without headers with calls
 * of a third to most of the TPM: the slow start overshoots on its largest call (47,325 tokens; the 429 that
 * names the limit), and while that call waits for the server to have room for it the smaller calls behind it
 * go on (a 429 no longer holds calls that fit: see `Call.feedback`), so it is admitted after their usage
 * has been charged (32.4 s, when the server has room for it within 59 ms, the second 429) where the minimum,
 * admitting in arrival order, has it before them (24.5 s). A client that held the calls behind a refused one
 * would pace this shape better and every shape whose refused call is large worse.
 * #108 is no longer outside since up to 8 probes go before the first answer: its first 429 is now a probe's, on
 * requests, and the second on tokens (2 × 429 where 2 are allowed). Before that it (sub-minute buckets of 5 s under
 * 62 RPM: 5 requests; Poisson arrivals) was within its time bound (×0.02) but had 4 × 429 where 2 are allowed: its first 429 is on tokens (the burst learned, a 189 ms
 * gate), and the three calls that arrived meanwhile wait behind that gate and go out in the instant it
 * opens, onto the requests bucket whose burst is not learned yet: one lesson, three 429s at once. With
 * the earlier 150 ms first-contact ramp the requests 429 came first, alone; the 650 ms ramp spread the
 * first calls out and the tokens 429 came first. Not fixed, only no longer in this sample: calls released together
 * at a gate's end are a herd of their own on a dimension still unlearned.
 * #128 (sub-minute buckets of 5 s, budgets below the server's, 11 calls, one latency of 7.9 s) is outside by 59 ms,
 * the cost of the cold start (`OpenAi.coldStartLag`: the limiter holds back 200 ms of the refill of a bucket drawn
 * from full after a cold spell until an answer says when the server made it, as a server's full bucket loses the
 * refill of the first calls' way there); here every admission comes before the first answer, and the minimum (4,721
 * ms) leaves 142 ms at 1.03x. This simulator's calls reach it when sent; over a network the first calls after a cold
 * spell arrive late (~90 ms in a cold Node process) and the hold is what keeps the last of a drawn bucket from a 429
 * (`OpenAiWayThere.test.ts`). Before the hold it was within (1.000).
 */
const KNOWN_OUTSIDE: ReadonlyArray<number> = [128]

const describeCase = (c: Case) =>
  `${c.server}${c.server === "subMinute" ? `(${c.subWindowMs} ms)` : ""}${
    c.settle === "never" ? " keeping its charges" : ""
  } budgets ${c.budgets}, ${c.arrival}, ${c.calls.length} calls, rpm ${c.rpm} tpm ${c.tpm}, latency ${c.latency.min}–${c.latency.max} ms`

describe("OpenAi: pacing over random workload shapes", () => {
  it.effect(
    "every shape: every call succeeds, no 429 with the budgets given; within 1.03 M + L with budgets, 1.10 M + L (1.15 without headers) + the learning without",
    () =>
      Effect.gen(function*() {
        const runs = Number(process.env.SLUICE_PACING_RUNS ?? 200)
        const strict = process.env.SLUICE_PACING_STRICT === "1"
        const sample = process.env.SLUICE_PACING_SEED === undefined && process.env.SLUICE_PACING_RUNS === undefined
        const cases = fc.sample(arbitrary, { numRuns: runs, seed: Number(process.env.SLUICE_PACING_SEED ?? 13) })
        const broken: Array<string> = []
        const outside: Array<string> = []
        const outsideIndices: Array<number> = []
        const classes = new Map<string, { shapes: number; within: number; worst: number; rejected: number }>()
        const only = process.env.SLUICE_PACING_ONLY?.split(",").map(Number)
        for (const [index, c] of cases.entries()) {
          if (only !== undefined && !only.includes(index)) continue
          const r = yield* runCase(c)
          const line = `#${index} ${describeCase(c)}: ${
            r.ok ? "" : `FAILED (${r.cause}), `
          }${r.succeeded}/${c.calls.length} ok`
          // asserted on every shape
          if (!r.ok || r.succeeded !== c.calls.length) broken.push(line)
          if ((c.budgets === "equal" || c.budgets === "below") && r.rejected > 0) {
            broken.push(`${line}, ${r.rejected} × 429`)
          }
          // the bounds
          const slack = c.budgets === "unknown" ? (c.server === "noHeaders" ? 1.15 : 1.1) : 1.03
          const learning = c.budgets === "unknown" ? learningAllowance(c, plan(c), r) : 0
          const bound = slack * r.minimum + c.latency.max + learning
          const limit429 = c.budgets === "equal" || c.budgets === "below"
            ? 0
            : c.budgets === "unknown"
            ? allowed429s(c, r.attempts, r.firstAnswer)
            : Number.POSITIVE_INFINITY
          const timed = c.budgets !== "above"
          const within = (!timed || r.endedAt <= bound) && r.rejected <= limit429
          const over = r.minimum > 0 ? (r.endedAt - c.latency.max - learning) / r.minimum : Number.NaN
          if (!within) {
            outsideIndices.push(index)
            outside.push(
              `${line}, wall ${Math.round(r.endedAt)} ms vs bound ${Math.round(bound)} (minimum ${
                Math.round(r.minimum)
              }, ×${Number.isNaN(over) ? "–" : over.toFixed(3)} after the latency${
                learning > 0 ? ` and ${Math.round(learning)} ms of learning` : ""
              }), 429s ${r.rejected}/${r.attempts} (allowed ${limit429})`
            )
          }
          const name = `${c.server}${c.settle === "never" ? " (keeps its charges)" : ""} / budgets ${c.budgets}`
          const entry = classes.get(name) ?? { shapes: 0, within: 0, worst: 0, rejected: 0 }
          entry.shapes++
          if (within) entry.within++
          if (!Number.isNaN(over) && timed) entry.worst = Math.max(entry.worst, over)
          entry.rejected += r.rejected
          classes.set(name, entry)
        }
        const table = [...classes.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, e]) =>
          `${name}: ${e.within}/${e.shapes} within their bounds, worst ×${
            e.worst.toFixed(3)
          } (after the latency and learning), ${e.rejected} × 429`
        )
        console.log(
          `${cases.length} shapes; ${outside.length} outside their bounds${
            strict
              ? ""
              : sample
              ? ` (known: ${KNOWN_OUTSIDE.map((i) => `#${i}`).join(", ")})`
              : " (reported, not asserted)"
          }:\n${table.join("\n")}\n${outside.join("\n")}`
        )
        expect(broken).toEqual([])
        if (strict) expect(outside).toEqual([])
        else if (sample) {
          const expected = KNOWN_OUTSIDE.filter((i) => only === undefined || only.includes(i))
          expect(outsideIndices, outside.join("\n")).toEqual(expected)
        }
      }),
    900_000
  )
})
