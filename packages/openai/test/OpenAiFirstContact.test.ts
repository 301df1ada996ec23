/**
 * The first-contact ramp of a pool with configured limits (`OpenAi.Options.firstContactRamp`, on in the bulk runner):
 * until the pool's first 429, its herd goes out over a ramp (1/64 of each configured per-minute limit at once,
 * doubling every 650 ms, a call going while what went before it is within the ramp) instead of all at once. Against a
 * server that enforces the announced limits over 5 s buckets (its headers give the minute's figures), the herd sent at
 * once overflows the bucket before any 429 can be read; over the ramp, the first call that overflows it teaches the
 * burst. Against a server whose buckets are the announced ones, a herd larger than the bucket ends when it would have
 * without the ramp, whatever the sizes of its calls. Real `openai` SDK against the in-process simulator, TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore } from "@sluice/core"
import { OpenAi } from "@sluice/openai"
import { Scenario, SimConfig, Simulator } from "@sluice/testing"
import { Clock, Effect, Exit, FastCheck as fc, Layer } from "effect"
import { fastDrive } from "./fastDrive.js"
import { drive, makeClient, mixedBatch, sum, withService } from "./harness.js"

const MODEL = "gpt-4o"

/** The announced per-minute limits as budgets on the pool (no burst: what `sluice run --limits` configures). */
const announced = (rpm: number, tpm: number, organization = "default") => [
  Budget.make(`org:${organization}/pool:${MODEL}`, [
    Budget.Limit.perMinute("requests", rpm),
    Budget.Limit.perMinute("tokens", tpm)
  ])
]

/** Runs `calls` at once through `openai`: when the run started and ended, and the simulator's counts. */
const atOnce = (
  openai: OpenAi.OpenAi.Service,
  calls: ReadonlyArray<Parameters<OpenAi.OpenAi.Service["chat"]["completions"]["create"]>[0]>,
  driver: typeof drive = drive
) =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const { endedAt, exit } = yield* driver(
      Effect.forEach(calls, (params) => openai.chat.completions.create(params), { concurrency: "unbounded" })
    )
    expect(Exit.isSuccess(exit)).toBe(true)
    return { start, wall: endedAt - start, stats: yield* Simulator.stats }
  })

describe("OpenAi: the first-contact ramp of configured limits", () => {
  /** 250 mixed calls at once, the announced 500 RPM / 30,000 TPM given, against 5 s buckets of them. */
  const subMinute = (firstContactRamp: boolean) =>
    withService({
      organization: "acme",
      timeSlice: false,
      firstContactRamp,
      budgets: announced(500, 30_000, "acme")
    }, (openai) =>
      Effect.gen(function*() {
        const { stats, wall } = yield* atOnce(openai, mixedBatch(250, 5, MODEL), fastDrive)
        const tokens = sum(stats.admissions.map((a) => a.tokens))
        const requests = stats.admissions.length
        // each server bucket starts full at its 5 s capacity and refills at the announced rate
        const minimum = Math.max((tokens - 2_500) / (30_000 / 60_000), (requests - 500 / 12) / (500 / 60_000))
        expect(stats.byStatus["200"]).toBe(250)
        return {
          rejected: stats.byStatus["429"] ?? 0,
          attempts: stats.attempts.length,
          endedAt: wall,
          minimum,
          learned: OpenAi.describeLearned(yield* openai.learned)
        }
      })).pipe(Effect.provide(Simulator.layer(SimConfig.make({
        seed: 3,
        models: { [MODEL]: { limits: { rpm: 500, tpm: 30_000 } } },
        enforcement: { subWindowMs: 5_000 },
        latency: { request: { _tag: "uniform", min: 200, max: 800 }, perOutputTokenMs: 1 }
      }))))

  it.effect(
    "against 5 s buckets of the limits given: the ramp's first overflow teaches the burst (2 x 429; 27 sent at once)",
    () =>
      Effect.gen(function*() {
        const ramped = yield* subMinute(true)
        const sent = yield* subMinute(false)
        console.log(
          `first contact, sub-minute: ramp ${ramped.rejected} x 429 in ${ramped.attempts}, ${ramped.endedAt} ms; ` +
            `at once ${sent.rejected} x 429 in ${sent.attempts}, ${sent.endedAt} ms; minimum ${
              Math.round(ramped.minimum)
            } ms`
        )
        expect(ramped.learned).toEqual([
          `tokens burst 2,500 on org:acme/pool:gpt-4o after ${ramped.rejected} 429${ramped.rejected === 1 ? "" : "s"}`
        ])
        expect(ramped.rejected).toBeLessThanOrEqual(2)
        expect(ramped.rejected / ramped.attempts).toBeLessThanOrEqual(0.01)
        expect(sent.rejected).toBeGreaterThan(10)
        expect(ramped.endedAt).toBeLessThanOrEqual(1.1 * ramped.minimum + 800)
      }),
    900_000
  )

  /** A call of `words` prompt words reserving `maxTokens` of output. */
  const call = (i: number, words: number, maxTokens: number) => ({
    model: MODEL,
    messages: [{ role: "user" as const, content: `[req:${i}] ${"lorem ipsum dolor sit amet ".repeat(words)}` }],
    max_tokens: maxTokens
  })

  /** The calls at once with the limits given (equal to the server's), with or without the ramp. */
  const herd = (
    calls: ReadonlyArray<ReturnType<typeof call>>,
    limits: { readonly rpm: number; readonly tpm: number },
    latency: { readonly min: number; readonly max: number },
    firstContactRamp: boolean
  ) =>
    withService({
      timeSlice: false,
      firstContactRamp,
      budgets: announced(limits.rpm, limits.tpm)
    }, (openai, events) =>
      Effect.gen(function*() {
        const { start, stats, wall } = yield* atOnce(openai, calls)
        const admitted = events.filter((e) => e._tag === "Admitted").map((e) => e.at - start)
        return { wall, lastAdmission: Math.max(...admitted), byStatus: stats.byStatus }
      })).pipe(Effect.provide(Simulator.layer(Scenario.single(MODEL, limits, {
        seed: 7,
        latency: { request: { _tag: "uniform", ...latency }, perOutputTokenMs: 0 }
      }))))

  it.effect.prop(
    "a herd larger than the bucket, calls of 3%–90% of it using less than reserved, the server's own limits given: no later with the ramp, 0 x 429",
    {
      tpm: fc.integer({ min: 4_000, max: 40_000 }),
      shares: fc.array(
        fc.record({
          share: fc.double({ min: 0.03, max: 0.9, noNaN: true }),
          // the share of the call's estimate that is its output's maximum (the simulator writes about half of it:
          // the rest is given back at the answer, off the buckets and the ramp alike)
          output: fc.double({ min: 0, max: 0.9, noNaN: true })
        }),
        { minLength: 1, maxLength: 40 }
      ),
      latency: fc.integer({ min: 0, max: 800 }),
      spread: fc.integer({ min: 0, max: 800 })
    },
    ({ latency, shares, spread, tpm }) =>
      Effect.gen(function*() {
        // a prompt word is ~1.35 tokens. Repeated until what the server charges exceeds 1.2 buckets: a herd that
        // fits whole waits for the ramp (at most 3.9 s), one larger loses nothing to it
        const calls: Array<ReturnType<typeof call>> = []
        for (let i = 0, charged = 0; charged < 1.2 * tpm; i++) {
          const { output, share } = shares[i % shares.length]
          const size = share * tpm
          const maxTokens = Math.max(16, Math.round(size * output))
          calls.push(call(i, Math.max(1, Math.round((size - maxTokens) / 6.75)), maxTokens))
          charged += size - maxTokens / 2
        }
        const limits = { rpm: 500, tpm }
        const range = { min: latency, max: latency + spread }
        const ramped = yield* herd(calls, limits, range, true)
        const sent = yield* herd(calls, limits, range, false)
        expect(ramped.byStatus).toEqual({ "200": calls.length })
        expect(sent.byStatus).toEqual({ "200": calls.length })
        // within two tokens' refill (the answers' reports are folded in at other moments: a token either way; seen
        // 13 ms at 4,000 TPM)
        const slack = 2 * 60_000 / tpm + 1
        expect(ramped.lastAdmission).toBeLessThanOrEqual(sent.lastAdmission + slack)
        expect(ramped.wall).toBeLessThanOrEqual(sent.wall + spread + slack)
      }),
    { fastCheck: { numRuns: 40, seed: 11 }, timeout: 600_000 }
  )

  it.effect.prop(
    "the announced per-minute limits given, buckets of 1-10 s at the server, a herd at once: 429s within max(3, 10%), within 1.1 M + L",
    {
      rpm: fc.integer({ min: 120, max: 600 }),
      tpm: fc.integer({ min: 12_000, max: 120_000 }),
      subWindowMs: fc.constantFrom(1_000, 2_000, 5_000, 10_000),
      shares: fc.array(fc.double({ min: 0.05, max: 0.5, noNaN: true }), { minLength: 1, maxLength: 20 }),
      count: fc.integer({ min: 20, max: 80 }),
      latency: fc.integer({ min: 50, max: 1_500 }),
      spread: fc.integer({ min: 0, max: 800 })
    },
    ({ count, latency, rpm, shares, spread, subWindowMs, tpm }) =>
      Effect.gen(function*() {
        // each call within half the server's bucket of tokens (a call larger than the bucket waits for it full)
        const bucket = tpm * subWindowMs / 60_000
        const calls = Array.from({ length: count }, (_, i) => {
          const size = Math.max(40, shares[i % shares.length] * bucket)
          return call(i, Math.max(1, Math.round((size - 16) / 6.75)), 16)
        })
        const run = yield* withService({
          timeSlice: false,
          firstContactRamp: true,
          budgets: announced(rpm, tpm)
        }, (openai) =>
          Effect.gen(function*() {
            const { stats, wall } = yield* atOnce(openai, calls)
            const tokens = sum(stats.admissions.map((a) => a.tokens))
            const requests = stats.admissions.length
            const minimum = Math.max(
              0,
              (tokens - bucket) / (tpm / 60_000),
              (requests - rpm * subWindowMs / 60_000) / (rpm / 60_000)
            )
            return {
              wall,
              minimum,
              rejected: stats.byStatus["429"] ?? 0,
              attempts: stats.attempts.length,
              ok: stats.byStatus["200"] ?? 0
            }
          })).pipe(Effect.provide(Simulator.layer(SimConfig.make({
            seed: 5,
            models: { [MODEL]: { limits: { rpm, tpm } } },
            enforcement: { subWindowMs },
            latency: { request: { _tag: "uniform", min: latency, max: latency + spread }, perOutputTokenMs: 0 }
          }))))
        console.log(
          `announced limits, ${subWindowMs} ms buckets: ${run.rejected} x 429 in ${run.attempts}, wall ${run.wall} ms, minimum ${
            Math.round(run.minimum)
          } ms`
        )
        expect(run.ok).toBe(count)
        // most cases 1 x 429 (the first overflow, which teaches the burst); with 2 s buckets of calls answered in
        // 1.4-2.1 s, more after it (seen: 6 in 83, all on tokens, spread over 1.2-5.5 s: not traced); the herd sent at
        // once is refused beyond the bucket, most of it
        expect(run.rejected).toBeLessThanOrEqual(Math.max(3, Math.ceil(0.1 * run.attempts)))
        expect(run.wall).toBeLessThanOrEqual(1.1 * run.minimum + latency + spread + 4_000)
      }),
    { fastCheck: { numRuns: 20, seed: 13 }, timeout: 600_000 }
  )

  it.effect("over an asynchronous store (as Redis is), the calls that come while the first one starts the ramp wait for it", () =>
    Effect.gen(function*() {
      // the memory store answering its reads and admissions 5 ms later, in virtual time
      const slow = Layer.effect(
        LimiterStore.LimiterStore,
        Effect.map(LimiterStore.LimiterStore, (inner): LimiterStore.Service => ({
          ...inner,
          levels: (buckets, gates) => Effect.delay(inner.levels(buckets, gates), 5),
          tryAcquire: (debits, gates) => Effect.delay(inner.tryAcquire(debits, gates), 5),
          unsafeTryAcquire: undefined
        }))
      ).pipe(Layer.provide(LimiterStore.layerMemory))
      const client = yield* makeClient()
      const admitted: Array<{ readonly at: number; readonly tokens: number }> = []
      const layer = OpenAi.layerClient(client, {
        timeSlice: false,
        firstContactRamp: true,
        budgets: announced(1_000, 64_000),
        onEvent: (event) =>
          event._tag === "Admitted"
            ? Effect.flatMap(
              Clock.currentTimeMillis,
              (at) => Effect.sync(() => void admitted.push({ at, tokens: event.cost.tokens ?? 0 }))
            )
            : Effect.void
      }).pipe(Layer.provide(slow))
      const calls = Array.from({ length: 40 }, (_, i) => call(i, 30, 16))
      const { exit } = yield* drive(
        Effect.flatMap(
          OpenAi.OpenAi,
          (openai) =>
            Effect.forEach(calls, (params) => openai.chat.completions.create(params), { concurrency: "unbounded" })
        ).pipe(Effect.provide(layer))
      )
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(admitted).toHaveLength(40)
      // the ramp lets 1,000 tokens out at once (1/64 of 64,000), doubling every 650 ms: within its first 100 ms, what
      // was admitted before the last call admitted then is within it (a call of ~230 tokens: 5 of them)
      const early = admitted.filter((a) => a.at < 100)
      expect(sum(early.slice(0, -1).map((a) => a.tokens))).toBeLessThanOrEqual(1_000 * 2 ** (100 / 650))
      expect(early.length).toBeGreaterThan(0)
    }).pipe(Effect.provide(Simulator.layer(Scenario.single(MODEL, { rpm: 1_000, tpm: 64_000 }, {
      seed: 7,
      latency: { request: { _tag: "uniform", min: 1_000, max: 1_000 }, perOutputTokenMs: 0 }
    })))))
})
