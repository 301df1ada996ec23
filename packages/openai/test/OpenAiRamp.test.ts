/**
 * The first-contact ramp (after a pool's first answer announced its limits, 1/64 of them let out at once, the
 * amount doubling every ln 2 × 60 s / 64 ≈ 650 ms) is a temporary limit in the limiter: a call it holds waits
 * in the limiter's queue, so its deadline holds (it fails by then, not when its turn would have come) and a
 * closed organization fails it at once (real `openai` SDK, in-process simulator, TestClock).
 */
import { describe, expect, it } from "@effect/vitest"
import type { OpenAi } from "@sluice/openai"
import { SimConfig, Simulator } from "@sluice/testing"
import { Clock, Effect, Exit, Fiber } from "effect"
import { drive, withService } from "./harness.js"

const LATENCY = 300
/** 640 RPM: the ramp lets out 10 requests at once, 20 in all 650 ms later, 40 after 1.3 s. */
const RPM = 640
const DOUBLING = Math.LN2 * 60_000 / 64
const CALLS = 40
/** The probes sent before the first answer (8 calls of 20 tokens: within a quarter of the cautious limits). */
const PROBES = 8

const call = (openai: OpenAi.OpenAi.Service, key: string, max: number, options?: OpenAi.OpenAi.CallOptions) =>
  openai.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: `[req:${key}] hello` }],
    max_tokens: max
  }, options)

/** `CALLS` calls at once (adaptive: no budgets), each outcome with when it came. */
const herd = (openai: OpenAi.OpenAi.Service, max: number, options?: OpenAi.OpenAi.CallOptions) =>
  Effect.forEach(
    Array.from({ length: CALLS }, (_, i) => i),
    (i) =>
      Effect.either(call(openai, `q-${i}`, max, options)).pipe(
        Effect.zip(Clock.currentTimeMillis),
        Effect.map(([result, at]) => ({ key: `q-${i}`, result, at }))
      ),
    { concurrency: "unbounded" }
  )

describe("OpenAi: calls held by the first-contact ramp wait in the limiter", () => {
  it.effect("a held call fails by its deadline, unsent; those the ramp lets out by then are sent", () =>
    withService(
      { organization: "acme" },
      (openai) =>
        Effect.gen(function*() {
          // the first answer at 300 ms starts the ramp; by 1,000 ms it has let out 10 × 2^(700 / 650) requests
          const deadline = 1_000
          const outcomes = yield* drive(herd(openai, 20, { deadline }))
          expect(Exit.isSuccess(outcomes.exit)).toBe(true)
          if (!Exit.isSuccess(outcomes.exit)) return
          const stats = yield* Simulator.stats
          const sent = new Map(stats.attempts.map((a) => [a.key, a.at]))
          const failed = outcomes.exit.value.filter((o) => o.result._tag === "Left")
          const letOut = Math.floor((RPM / 64) * 2 ** ((deadline - LATENCY) / DOUBLING))
          console.log(
            `deadline ${deadline} ms: ${stats.attempts.length} sent (last at ${Math.max(...sent.values())} ms), ` +
              `${failed.length} failed at ${JSON.stringify([...new Set(failed.map((o) => o.at))])}`
          )
          // the probes, and what the ramp let out by the deadline
          expect(stats.attempts).toHaveLength(PROBES + letOut)
          expect(failed).toHaveLength(CALLS - PROBES - letOut)
          expect(Math.max(...sent.values())).toBeLessThanOrEqual(deadline)
          for (const o of failed) {
            expect(o.result._tag === "Left" && o.result.left._tag).toBe("DeadlineExceeded")
            // not when its turn on the ramp would have come (up to 1,600 ms): the limiter knew at once
            expect(o.at).toBeLessThanOrEqual(deadline)
            expect(sent.has(o.key)).toBe(false)
          }
          // the held calls were waiting in the limiter's queue, counted there
          expect(stats.byStatus["200"]).toBe(PROBES + letOut)
        })
    ).pipe(Effect.provide(Simulator.layer(SimConfig.make({
      seed: 4,
      models: { "gpt-4o": { limits: { rpm: RPM, tpm: 10_000_000 } } },
      latency: { request: { _tag: "fixed", ms: LATENCY }, perOutputTokenMs: 0 }
    })))))

  it.effect("a closed organization fails every call the ramp holds at once, unsent", () =>
    withService(
      { organization: "acme" },
      (openai) =>
        Effect.gen(function*() {
          // at $2.50 / $10 a million tokens, a 1,000-token answer costs ~$0.005: the quota runs out after about
          // 16 calls, on one the ramp lets out ~740 ms in, while the others wait for their turn (up to 1,600 ms)
          const outcomes = yield* drive(Effect.gen(function*() {
            const fiber = yield* Effect.fork(herd(openai, 1_000))
            // the held calls are queued in the limiter (waiting, in its snapshot) while the first ones are out
            yield* Effect.sleep(LATENCY + 100)
            const waiting = (yield* openai.limiter.snapshot).waiting.interactive
            return { waiting, results: yield* Fiber.join(fiber) }
          }))
          expect(Exit.isSuccess(outcomes.exit)).toBe(true)
          if (!Exit.isSuccess(outcomes.exit)) return
          const { results, waiting } = outcomes.exit.value
          const stats = yield* Simulator.stats
          const quota = stats.attempts.filter((a) => a.code === "insufficient_quota")
          const sent = new Set(stats.attempts.map((a) => a.key))
          const unsent = results.filter((o) => !sent.has(o.key))
          console.log(
            `quota: ${stats.attempts.length} attempts, ${quota.length} × insufficient_quota at ${quota[0]?.at} ms, ` +
              `${waiting} waiting in the limiter at ${LATENCY + 100} ms, ${unsent.length} never sent, failed at ` +
              JSON.stringify([...new Set(unsent.map((o) => o.at))])
          )
          expect(quota.length).toBeGreaterThanOrEqual(1)
          expect(waiting).toBeGreaterThanOrEqual(unsent.length)
          // the ramp held calls due as late as 1,600 ms: all of them failed when the refusal came back
          expect(unsent.length).toBeGreaterThanOrEqual(CALLS / 2)
          for (const o of unsent) {
            expect(o.result._tag === "Left" && o.result.left._tag).toBe("QuotaExhausted")
            expect(o.at).toBe(quota[0].at)
          }
        })
    ).pipe(Effect.provide(Simulator.layer(SimConfig.make({
      seed: 2,
      models: {
        "gpt-4o": { limits: { rpm: RPM, tpm: 640_000 }, pricing: { inputPerMillion: 2.5, outputPerMillion: 10 } }
      },
      faults: { quotaUsd: 0.08 },
      latency: { request: { _tag: "fixed", ms: LATENCY }, perOutputTokenMs: 0 }
    })))))
})
