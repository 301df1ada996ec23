/**
 * Few large calls with budgets equal to the server's limits (issue 13; the `few-large` shape of `pnpm bench:cli
 * --shapes`, where `sluice run --limits` took 1.52× the minimum and a bare SDK with p-limit(64) 1.29×): 90 calls
 * of 200–400 prompt words with `max_tokens` 2,048–8,192, all at once, against 5,000 RPM / 200,000 TPM; the model
 * writes half the maximum at 10 ms a token (10–41 s a call). Real `openai` SDK against the in-process simulator,
 * under TestClock: the same admissions every run.
 *
 * What binds: the client reserves each call's estimate (prompt + `max_tokens`, about twice what the simulator
 * charges: it settles a call to its usage the moment it admits it) until the call's answer, 10–41 s later. So
 * 36 calls go at once where the server would take 64, and the rest wait for the refill, for the refunds that
 * come with the answers and for the server's reports (`x-ratelimit-remaining-tokens`), which come with the
 * answers too.
 *
 * Issue 13's goal (1.10× the minimum M plus the largest latency L) is out of reach of any client that does not
 * know the output lengths before the answers, on this shape: {@link oracleFree} models the best such client
 * that admits in arrival order (FIFO, as `RateLimiter` does), on this run's own estimates, charges and
 * latencies. It sees each call as the server charged it once answered, and adopts every report exactly: the
 * server's level right after the reported call, the calls sent after it replayed at their usage when answered,
 * their estimate when not. What it cannot know is the order in which the calls sent in one instant reached the
 * server (concurrent connections): the unanswered ones of the reported call's instant count as not seen by it
 * (`"sent together"`; the answered ones are placed by their own reports). That client ends at 82.81 s, 1.273×;
 * Sluice ends at the same millisecond. Even told that order (`"in order"`; or inferring it from how many
 * requests the server counted), it ends at 81.83 s, 1.258×; the same client knowing every output length in
 * advance, at 1.003×. What is left between those is the order of the calls: fed the longest calls first (the
 * caller's order; the limiter keeps arrival order), Sluice ends at 1.069×, within the goal; `sluice run` feeds a
 * file's lines so (`BulkRunner.Options.order`, measured in `BulkRunner.order.test.ts`). Five other draws
 * of this shape (other seeds, arrivals in groups) gave the same: Sluice at the first model's figure to the
 * millisecond, the second 1–6% lower.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import { SimConfig, SimStats, Simulator } from "@sluice/testing"
import { Clock, Effect, Exit } from "effect"
import {
  isChat,
  MODEL as BENCH_MODEL,
  SHAPES,
  shapeScenario,
  shapeWorkload
} from "../../../benchmarks/openai-workload.js"
import { drive, rng, withService } from "./harness.js"

const MODEL = "gpt-4o-mini"
const POOL = "org:default/pool:gpt-4o-mini"
const LIMITS = { rpm: 5_000, tpm: 200_000 }

const input = {
  seed: 20_261_206,
  models: { [MODEL]: { kind: "chat" as const, limits: LIMITS, contextWindow: 128_000 } },
  latency: { request: { _tag: "lognormal" as const, median: 500, sigma: 0.5, max: 6_000 }, perOutputTokenMs: 10 },
  output: { fraction: 0.5 }
}
const scenario = SimConfig.make(input)

/** 90 calls of 200–400 prompt words ("lorem ipsum dolor sit amet ": about 6.75 tokens per 5 words), seeded. */
const calls = (() => {
  const random = rng(90)
  return Array.from({ length: 90 }, (_, i) => ({
    model: MODEL,
    messages: [{
      role: "user" as const,
      content: `[req:${i}] ${"lorem ipsum dolor sit amet ".repeat(Math.round((200 + random() * 200) / 5))}`
    }],
    max_tokens: [2_048, 4_096, 6_144, 8_192][Math.floor(random() * 4)]
  }))
})()

/**
 * When the best client that does not know output lengths in advance ends this run: see the header. One call per
 * admission of the run (arrival order), with what the client reserved (`estimate`), what the server charged
 * (`actual`) and the latency the simulator drew for it (it draws them in admission order, so a client admitting
 * in the same order gets the same ones). Event-driven: it admits the next call as soon as its view of the
 * server's level has room for the estimate (whole milliseconds of refill, as the limiter waits).
 */
const oracleFree = (
  calls: ReadonlyArray<{ readonly estimate: number; readonly actual: number; readonly latency: number }>,
  order: "sent together" | "in order"
): number => {
  const capacity = LIMITS.tpm
  const refill = LIMITS.tpm / 60_000
  const sent: Array<{ readonly i: number; readonly at: number }> = []
  const levelAt = (now: number): number => {
    const answered = (k: number) => sent[k].at + calls[sent[k].i].latency <= now
    const charge = (k: number) => answered(k) ? calls[sent[k].i].actual : calls[sent[k].i].estimate
    const replay = (level: number, from: number, first: number) => {
      let t = from
      for (let k = first; k < sent.length; k++) {
        level = Math.min(capacity, level + refill * (sent[k].at - t)) - charge(k)
        t = sent[k].at
      }
      return Math.min(capacity, level + refill * (now - t))
    }
    // without any report: the answered calls at their usage, the others at their estimate
    let best = replay(capacity, 0, 0)
    // the server's level right after each call (what its report says), charged as the server charged it
    let server = capacity
    let t = 0
    for (let m = 0; m < sent.length; m++) {
      server = Math.min(capacity, server + refill * (sent[m].at - t)) - calls[sent[m].i].actual
      t = sent[m].at
      if (!answered(m)) continue
      let level = server
      let next = m + 1
      if (order === "sent together") {
        // the others sent in its instant: after it (its report does not count them) unless answered before it
        for (let k = 0; k < sent.length; k++) {
          if (k === m || sent[k].at !== sent[m].at) continue
          if (k > m || !answered(k)) level -= charge(k)
          if (k > m) next = k + 1
        }
      }
      best = Math.max(best, replay(level, sent[m].at, next))
    }
    return best
  }
  let now = 0
  while (sent.length < calls.length) {
    const { estimate } = calls[sent.length]
    const level = levelAt(now)
    if (level >= estimate) {
      sent.push({ i: sent.length, at: now })
      continue
    }
    // the refill makes room, or an answer (a refund, a report) comes first
    let to = now + Math.ceil((estimate - level) / refill)
    for (const { at, i } of sent) if (at + calls[i].latency > now) to = Math.min(to, at + calls[i].latency)
    now = to
  }
  return Math.max(...sent.map(({ at, i }) => at + calls[i].latency))
}

/** The server's minimum for what it charged (its buckets start full) plus the largest latency it served. */
const boundOf = (stats: SimStats.Snapshot) => {
  const latency = Math.max(...stats.attempts.map((a) => a.latencyMs ?? 0))
  return { minimum: SimStats.theoreticalMinimum(stats, LIMITS), latency }
}

const sluice = (order: ReadonlyArray<(typeof calls)[number]>, server = scenario) =>
  withService({
    timeSlice: false,
    budgets: [
      Budget.make(POOL, [Budget.Limit.perMinute("requests", LIMITS.rpm), Budget.Limit.perMinute("tokens", LIMITS.tpm)])
    ]
  }, (openai, events) =>
    Effect.gen(function*() {
      const start = yield* Clock.currentTimeMillis
      const { endedAt, exit } = yield* drive(
        Effect.forEach(order, (params) => openai.chat.completions.create(params), { concurrency: 256 })
      )
      expect(Exit.isSuccess(exit)).toBe(true)
      const stats = yield* Simulator.stats
      const admissions = events.filter((e) => e._tag === "Admitted")
      // no retries: the run's admissions, the simulator's and its answered attempts are in the same order
      const runCalls = admissions.map((e, i) => ({
        estimate: e.cost.tokens,
        actual: stats.admissions[i].tokens,
        latency: stats.attempts[i].latencyMs ?? 0
      }))
      return {
        wall: endedAt - start,
        stats,
        runCalls,
        atOnce: admissions.filter((e) => e.at === start).length,
        ...boundOf(stats)
      }
    })).pipe(Effect.provide(Simulator.layer(server)))

const report = (name: string, run: { wall: number; minimum: number; latency: number }) =>
  console.log(
    `few-large, ${name}: ${Math.round(run.wall)} ms; minimum ${Math.round(run.minimum)} ms + largest latency ${
      Math.round(run.latency)
    } ms: ${(run.wall / (run.minimum + run.latency)).toFixed(3)}×`
  )

describe("OpenAi: few large calls, budgets equal to the server's", () => {
  it.effect(
    "no 429; 36 estimates fill the bucket at once; ends with the best client that cannot know output lengths in advance (1.27×)",
    () =>
      Effect.gen(function*() {
        const ours = yield* sluice(calls)
        report("budgets equal to the server's", ours)
        expect(ours.stats.byStatus).toEqual({ "200": 90 })
        // 36 estimates fill the 200,000-token bucket, where what the server charged for the first 64 calls
        // (prompt + half the maximum) fits it
        expect(ours.atOnce).toBe(36)
        const first64 = ours.stats.admissions.slice(0, 64).reduce((sum, a) => sum + a.tokens, 0)
        expect(first64).toBeLessThanOrEqual(LIMITS.tpm)
        const bound = ours.minimum + ours.latency
        const together = oracleFree(ours.runCalls, "sent together")
        const inOrder = oracleFree(ours.runCalls, "in order")
        report("oracle-free, calls sent together", { ...ours, wall: together })
        report("oracle-free, their order known", { ...ours, wall: inOrder })
        // the models of the header, on this run's figures (82.81 s and 81.83 s): the goal (1.10×) is out of
        // reach of both
        expect(together / bound).toBeGreaterThan(1.27)
        expect(together / bound).toBeLessThan(1.28)
        expect(inOrder / bound).toBeGreaterThan(1.25)
        expect(inOrder / bound).toBeLessThan(1.26)
        // Sluice ends with the first (within a millisecond: its answers come at fractional times)
        expect(ours.wall).toBeLessThanOrEqual(together + 1)
      }),
    300_000
  )

  it.effect(
    "the longest calls first (the caller's order): no 429, within the goal of 1.10× (1.07×)",
    () =>
      Effect.gen(function*() {
        const ours = yield* sluice([...calls].sort((a, b) => b.max_tokens - a.max_tokens))
        report("longest first", ours)
        expect(ours.stats.byStatus).toEqual({ "200": 90 })
        expect(ours.wall / (ours.minimum + ours.latency)).toBeLessThanOrEqual(1.1)
      }),
    300_000
  )

  // The bench's own few-large requests (`pnpm bench:openai --shapes few-large`, `benchmarks/few-large.ts`) against a
  // server that keeps what it charged: the herd's reports come back in the order of their latencies, and one of the
  // first sent (the first the server counted) is answered after five others of its instant. Its report counts
  // them as the server charged them, so they must be replayed at their charge, not at their usage: replayed at
  // their usage (before the limiter learned from the reports whether the server trues up), the level rose ~4,600
  // tokens above the server's and a 6,739-token call was refused at 10.8 s.
  it.effect(
    "the bench's few-large requests, a server that never trues up: no 429, within the minimum plus the largest latency (0.92×)",
    () =>
      Effect.gen(function*() {
        const shape = SHAPES.find((s) => s.name === "few-large")!
        const requests = shapeWorkload(shape).filter(isChat).map((request) => ({
          model: request.body.model,
          messages: request.body.messages.map((m) => ({ role: m.role, content: m.content })),
          max_tokens: request.body.max_tokens
        }))
        const ours = yield* withService({
          timeSlice: false,
          budgets: [
            Budget.make(`org:default/pool:${BENCH_MODEL}`, [
              Budget.Limit.perMinute("requests", shape.limits.rpm),
              Budget.Limit.perMinute("tokens", shape.limits.tpm)
            ])
          ]
        }, (openai) =>
          Effect.gen(function*() {
            const start = yield* Clock.currentTimeMillis
            const { endedAt, exit } = yield* drive(
              Effect.forEach(requests, (params) => openai.chat.completions.create(params), {
                concurrency: "unbounded"
              })
            )
            expect(Exit.isSuccess(exit)).toBe(true)
            return { wall: endedAt - start, stats: yield* Simulator.stats }
          })).pipe(
            Effect.provide(
              Simulator.layer(SimConfig.make({ ...shapeScenario(shape), enforcement: { settle: "never" } }))
            )
          )
        const { minimum, latency } = {
          minimum: SimStats.theoreticalMinimum(ours.stats, shape.limits),
          latency: Math.max(...ours.stats.attempts.map((a) => a.latencyMs ?? 0))
        }
        report("the bench's requests, a server that never settles", { wall: ours.wall, minimum, latency })
        expect(ours.stats.byStatus).toEqual({ "200": requests.length })
        // what that server charged (the estimates) paces it: within its minimum plus the largest latency (0.92×)
        expect(ours.wall / (minimum + latency)).toBeLessThanOrEqual(1)
      }),
    300_000
  )

  // A server that keeps the estimate charged (`enforcement.settle: "never"`: counting `max_tokens` whatever the
  // answer used, a reading of OpenAI's guide) charges what the client reserves: the client's refunds at settle
  // are more than that server gives back, and its reports (adopted both ways) take them back.
  it.effect(
    "a server that never trues up to usage: no 429, within the minimum plus the largest latency (0.99×)",
    () =>
      Effect.gen(function*() {
        const ours = yield* sluice(calls, SimConfig.make({ ...input, enforcement: { settle: "never" } }))
        report("a server that never settles", ours)
        expect(ours.stats.byStatus).toEqual({ "200": 90 })
        expect(ours.wall / (ours.minimum + ours.latency)).toBeLessThanOrEqual(1)
      }),
    300_000
  )
})
