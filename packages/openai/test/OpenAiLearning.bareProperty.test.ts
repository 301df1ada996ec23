/**
 * Header-less discovery against servers whose 429s name no limit (no `x-ratelimit-*`, no `retry-after`, a message
 * that says which limit refused and nothing else, as some gateways and proxies answer), over random limits (some
 * enforced over sub-minute buckets), call sizes and arrival patterns. Virtual time, in-process simulator, real SDK.
 */
import { describe, expect, it } from "@effect/vitest"
import { SimConfig, Simulator } from "@sluice/testing"
import { Clock, Effect, Exit, FastCheck as fc } from "effect"
import { fastDrive } from "./fastDrive.js"
import { withService } from "./harness.js"

const MODEL = "gpt-4o"

type Arrival = "once" | "steady" | "poisson150" | "idleBurst"

interface Case {
  readonly rpm: number
  readonly tpm: number
  /** The server's sub-minute bucket (`undefined`: per minute only). */
  readonly subWindowMs: number | undefined
  readonly arrival: Arrival
  /** Call sizes as shares of the server's smallest token bucket. */
  readonly shares: ReadonlyArray<number>
  readonly latency: { readonly min: number; readonly max: number }
}

const arbitrary: fc.Arbitrary<Case> = fc.record({
  rpm: fc.integer({ min: 100, max: 1_000 }),
  tpm: fc.integer({ min: 10_000, max: 200_000 }),
  subWindowMs: fc.constantFrom<number | undefined>(undefined, undefined, 5_000, 10_000),
  arrival: fc.constantFrom<Arrival>("once", "once", "steady", "poisson150", "idleBurst"),
  shares: fc.array(fc.double({ min: 0.005, max: 0.1, noNaN: true }), { minLength: 60, maxLength: 160 }),
  latency: fc.tuple(fc.integer({ min: 20, max: 2_000 }), fc.integer({ min: 0, max: 2_000 })).map(([min, spread]) => ({
    min,
    max: min + spread
  }))
})

interface Planned {
  readonly at: number
  readonly chars: number
  readonly maxTokens: number
  /** What the server charges at admission (prompt + max tokens) and once served (prompt + output). */
  readonly estimate: number
  readonly actual: number
}

const OUTPUT_FRACTION = 0.5

const bucketOf = (c: Case) => c.subWindowMs === undefined ? c.tpm : Math.floor((c.tpm * c.subWindowMs) / 60_000)

/** The calls: sizes from the shares, arrivals per the pattern (Poisson at 150% of the server's capacity). */
const plan = (c: Case, random: () => number): ReadonlyArray<Planned> => {
  const sized = c.shares.map((share) => {
    const size = Math.max(40, Math.floor(bucketOf(c) * share))
    const chars = Math.max(12, Math.floor(size * 0.5) * 4)
    const promptTokens = Math.ceil(chars / 4)
    const maxTokens = Math.max(1, size - promptTokens)
    const output = Math.max(1, Math.ceil(OUTPUT_FRACTION * maxTokens))
    return { chars, maxTokens, estimate: promptTokens + maxTokens, actual: promptTokens + output }
  })
  const meanActual = sized.reduce((a, s) => a + s.actual, 0) / sized.length
  const perMs = Math.min(c.rpm / 60_000, c.tpm / 60_000 / meanActual)
  let t = 0
  let last = -1
  return sized.map((s, index) => {
    if (c.arrival === "steady") t = index / perMs
    else if (c.arrival === "idleBurst") t = index < sized.length / 2 ? 0 : 90_000
    else if (c.arrival === "poisson150" && index > 0) t += -Math.log(1 - Math.min(random(), 0.999_999)) / (perMs * 1.5)
    last = c.arrival === "once" || c.arrival === "idleBurst" ? Math.round(t) : Math.max(Math.round(t), last + 1)
    return { at: last, ...s }
  })
}

/**
 * The theoretical minimum: when the last call is admitted by the server's buckets (each starting full, the
 * sub-minute ones beside them), admitting in arrival order as early as they allow; a call needs its estimate
 * and is charged its usage (the simulator trues up at admission).
 */
const minimumOf = (c: Case, calls: ReadonlyArray<Planned>): number => {
  const buckets = (limit: number) => [
    { level: limit, capacity: limit, rate: limit / 60_000 },
    ...(c.subWindowMs === undefined ? [] : [(() => {
      const capacity = Math.max(1, Math.floor((limit * c.subWindowMs) / 60_000))
      return { level: capacity, capacity, rate: limit / 60_000 }
    })()])
  ]
  const requests = buckets(c.rpm)
  const tokens = buckets(c.tpm)
  let now = 0
  for (const call of calls) {
    const wait = Math.max(
      0,
      ...requests.map((b) => (1 - b.level) / b.rate),
      ...tokens.map((b) => (Math.min(call.estimate, b.capacity) - b.level) / b.rate)
    )
    const to = Math.max(now + wait, call.at)
    for (const b of [...requests, ...tokens]) b.level = Math.min(b.capacity, b.level + (to - now) * b.rate)
    now = to
    for (const b of requests) b.level -= 1
    for (const b of tokens) b.level -= call.actual
  }
  return now
}

const prompt = (i: number, chars: number) => {
  const head = `[req:${i}] `
  return head + "lorem ipsum dolor sit amet ".repeat(Math.ceil(chars / 27)).slice(0, Math.max(0, chars - head.length))
}

const runCase = (c: Case, seed: number) => {
  let state = seed
  const random = () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648
    return state / 2_147_483_648
  }
  const calls = plan(c, random)
  return withService({ organization: "acme", timeSlice: false }, (openai, events) =>
    Effect.gen(function*() {
      const start = yield* Clock.currentTimeMillis
      const one = (call: Planned, i: number) =>
        Effect.zipRight(
          Effect.sleep(call.at),
          Effect.exit(openai.chat.completions.create({
            model: MODEL,
            messages: [{ role: "user" as const, content: prompt(i, call.chars) }],
            max_tokens: call.maxTokens
          }))
        )
      const { endedAt, exit } = yield* fastDrive(Effect.forEach(calls, one, { concurrency: "unbounded" }), 60_000)
      const stats = yield* Simulator.stats
      const results = Exit.isSuccess(exit) ? exit.value : []
      if (process.env.SLUICE_BARE_TRACE === "1") {
        for (const e of events) {
          console.log(
            `${e.at - start} ${e._tag} ${e.attempt} ${"cost" in e ? JSON.stringify(e.cost) : ""} ${
              "waitedMillis" in e ? e.waitedMillis : ""
            } ${"error" in e ? `${e.error._tag} ${(e.error as any).message?.slice(0, 100)}` : ""}`
          )
        }
      }
      const firstAnswer = Math.min(...events.filter((e) => e._tag !== "Admitted").map((e) => e.at)) - start
      // the first learning phase ends with the first 429: the pool has no other sign of the limit
      const first429 = Math.min(...stats.attempts.filter((a) => a.status === 429).map((a) => a.at))
      const after = stats.attempts.filter((a) => a.at > first429)
      return {
        failed: calls.length - results.filter(Exit.isSuccess).length,
        attemptsAfter: after.length,
        refusedAfter: after.filter((a) => a.status === 429).length,
        tokens: calls.reduce((sum, call) => sum + call.estimate, 0),
        endedAt: endedAt - start,
        minimum: minimumOf(c, calls),
        attempts: stats.attempts.length,
        refused: stats.byStatus["429"] ?? 0,
        firstAnswer,
        learned: yield* openai.learned,
        limits: openai.limiter.limitsOf("org:acme/pool:gpt-4o").map((l) => `${l.dimension} ${l.amount}`).join(" ")
      }
    })).pipe(
      Effect.provide(Simulator.layer(SimConfig.make({
        seed,
        models: { [MODEL]: { limits: { rpm: c.rpm, tpm: c.tpm } } },
        enforcement: {
          ...(c.subWindowMs === undefined ? {} : { subWindowMs: c.subWindowMs }),
          rateLimitHeaders: false,
          retryAfter: false,
          retryAfterMs: false,
          rateLimitMessage: "bare"
        },
        output: { fraction: OUTPUT_FRACTION },
        latency: { request: { _tag: "uniform", min: c.latency.min, max: c.latency.max }, perOutputTokenMs: 0 }
      })))
    )
}

/**
 * The bounds. Once a 429 has cut it, a guess is what the server proved it takes (at most one call below a bucket
 * of a minute: calls here are at most a tenth of a bucket), and the client reserves a call's `max_tokens` until
 * its answer: `SLACK` over the minimum. 429s after the first one (the end of the first learning phase: the calls
 * the slow start let out before that 429 came back are its overshoot): a growth back that a 429 undoes costs that
 * 429 and the calls sent in its round trip, and each one undone doubles the wait before the next, so a run of a
 * few minutes sees a handful whatever its size: `SHARE_429` of the attempts after the first 429, at least
 * `MIN_429S` (three per dimension).
 */
const SLACK = 1.25
const SHARE_429 = 0.05
const MIN_429S = 6
/**
 * The blind slow start (`internal/learn.ts`): from 60 requests and 20,000 tokens, doubling every 4 round trips of
 * the answers (here, the fastest answer's latency at least), within 400 ms and 3.2 s.
 */
const BLIND = { requests: 60, tokens: 20_000, roundTrips: 4, fastestMillis: 400, slowestMillis: 3_200 }
/** A guess grows back 2× every 5 s while busy (`REGROW`, `REGROW_MILLIS` in `internal/learn.ts`). */
const REGROW_MILLIS = 5_000

/**
 * What learning costs beyond `SLACK × minimum + largest latency`, each part unavoidable for a client that knows
 * nothing of the limits: the first answer (the pool's first call goes alone: `OpenAi` waits for the headers a
 * server may send); the slow start that lets the run out (doubling from the cautious limits); a request interval
 * (60 s / RPM) per 429 (the server counts a refused request against its RPM, and the call goes again); and with a
 * sub-minute bucket, which a 429 that names nothing cannot tell from a minute's, the growth back from that
 * bucket's share of the limit to all of it (doubling every `REGROW_MILLIS`, per dimension).
 */
const learningAllowance = (
  c: Case,
  r: { readonly firstAnswer: number; readonly tokens: number; readonly refused: number }
) => {
  const doubling = Math.min(BLIND.slowestMillis, Math.max(BLIND.fastestMillis, BLIND.roundTrips * c.latency.max))
  const slowStart = doubling *
    Math.log2(Math.max(1, r.tokens / BLIND.tokens, c.shares.length / BLIND.requests))
  const growBack = c.subWindowMs === undefined
    ? 0
    : 2 * REGROW_MILLIS * (Math.ceil(Math.log2(60_000 / c.subWindowMs)) + 1)
  return r.firstAnswer + slowStart + r.refused * (60_000 / c.rpm) + growBack
}

const describeCase = (c: Case) =>
  `rpm ${c.rpm} tpm ${c.tpm}${
    c.subWindowMs === undefined ? "" : ` in ${c.subWindowMs} ms buckets`
  }, ${c.arrival}, ${c.shares.length} calls, latency ${c.latency.min}–${c.latency.max} ms`

describe("OpenAi: no headers and 429s that name no limit, over random servers and workloads", () => {
  it.effect("every call succeeds, few 429s once learned, near the minimum", () =>
    Effect.gen(function*() {
      const runs = Number(process.env.SLUICE_BARE_RUNS ?? 12)
      const cases = fc.sample(arbitrary, { numRuns: runs, seed: Number(process.env.SLUICE_BARE_SEED ?? 29) })
      const only = process.env.SLUICE_BARE_ONLY?.split(",").map(Number)
      const lines: Array<string> = []
      const broken: Array<string> = []
      for (const [index, c] of cases.entries()) {
        if (only !== undefined && !only.includes(index)) continue
        const r = yield* runCase(c, 100 + index)
        const line = `#${index} ${
          describeCase(c)
        }: ${r.failed} failed, ${r.refused} × 429 in ${r.attempts} (after the first: ${r.refusedAfter} in ${r.attemptsAfter}), ${
          (r.endedAt / 1000).toFixed(1)
        } s against ${(r.minimum / 1000).toFixed(1)} s (${(r.endedAt / Math.max(1, r.minimum)).toFixed(2)}×); ${
          r.learned.map((l) => `${l.dimension} ${l.kind} ${Math.round(l.amount)} after ${l.after}`).join(", ")
        }; final ${r.limits}`
        const bound = SLACK * r.minimum + c.latency.max + learningAllowance(c, r)
        const allowed = Math.max(MIN_429S, Math.floor(SHARE_429 * r.attemptsAfter))
        console.log(
          `  bound ${(bound / 1000).toFixed(1)} s (${(r.endedAt / bound).toFixed(3)} of it), 429s allowed ${allowed}`
        )
        if (r.failed > 0 || r.endedAt > bound || r.refusedAfter > allowed) broken.push(line)
        lines.push(line)
        console.log(line)
      }
      expect(lines.length).toBeGreaterThan(0)
      expect(broken).toEqual([])
    }), 600_000)
})
