/**
 * `@effect/ai`'s `LanguageModel` and `EmbeddingModel` through `@effect/ai-openai` on the governed `HttpClient`,
 * against the in-process simulator under `TestClock`: throughput at Tier 1's limits with zero 429s and every call
 * settled to its usage; faults retried through admission; the kinds never retried; the quota closing the
 * organization; per-call options; errors as `@effect/ai` users see them; one budget shared with the SDK's
 * `OpenAi` service.
 */
import * as OpenAiEmbeddingModel from "@effect/ai-openai/OpenAiEmbeddingModel"
import * as OpenAiLanguageModel from "@effect/ai-openai/OpenAiLanguageModel"
import * as AiError from "@effect/ai/AiError"
import * as EmbeddingModel from "@effect/ai/EmbeddingModel"
import * as LanguageModel from "@effect/ai/LanguageModel"
import { describe, expect, it } from "@effect/vitest"
import { GovernedHttpClient } from "@sluice/effect-ai"
import { SimStats, Simulator, VirtualTime } from "@sluice/testing"
import { Cause, Effect, Exit, Layer, Option, Stream } from "effect"
import { filler, governedOpenAi, type Recorded, recorder, sum, tier1 } from "./harness.js"

const MODEL = "gpt-4o"

const languageModel = (options: GovernedHttpClient.Options, maxOutput = 200) =>
  OpenAiLanguageModel.layer({ model: MODEL, config: { max_output_tokens: maxOutput } }).pipe(
    Layer.provideMerge(governedOpenAi(options))
  )

/** A prompt of 80–2,000 characters with the `[req:KEY]` marker the simulator counts attempts by. */
const prompt = (key: string, i: number) => `[req:${key}] ${filler(80 + ((i * 7919) % 1_920))}`

const generate = (key: string, i: number) =>
  Effect.map(LanguageModel.generateText({ prompt: prompt(key, i) }), (response) => response.text)

const stream = (key: string, i: number) =>
  LanguageModel.streamText({ prompt: prompt(key, i) }).pipe(
    Stream.runFold("", (text, part) => part.type === "text-delta" ? text + part.delta : text)
  )

const succeeded = (events: ReadonlyArray<Recorded>) =>
  events.filter((e): e is Extract<Recorded, { _tag: "Succeeded" }> => e._tag === "Succeeded")

const failureOf = <A, E>(exit: Exit.Exit<A, E>) =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined

describe("GovernedHttpClient: LanguageModel at Tier 1's limits", () => {
  it.effect(
    "500 generateText and 200 streamText: ≤ 1.03× the theoretical minimum, zero 429s, settled to usage",
    () =>
      Effect.gen(function*() {
        const { events, onEvent } = recorder()
        const calls = [
          ...Array.from({ length: 500 }, (_, i) => generate(`g${i}`, i)),
          ...Array.from({ length: 200 }, (_, i) => stream(`s${i}`, i + 500))
        ]
        const started = yield* Simulator.elapsed
        const texts = yield* VirtualTime.run(
          Effect.forEach(calls, (call) => call, { concurrency: "unbounded" }).pipe(
            Effect.provide(languageModel({ tier: 1, onEvent }))
          )
        )
        const wall = (yield* Simulator.elapsed) - started
        const stats = yield* Simulator.stats
        expect(texts.every((text) => text.length > 0)).toBe(true)
        expect(stats.byStatus).toEqual({ "200": 700 })
        expect(Object.values(stats.attemptsByKey).every((attempts) => attempts === 1)).toBe(true)
        expect(Object.keys(stats.attemptsByKey)).toHaveLength(700)
        const minimum = SimStats.theoreticalMinimum(stats, { rpm: 500, tpm: 30_000 })
        const done = succeeded(events)
        expect(done).toHaveLength(700)
        // settled to usage: what the calls were charged is what the server counted, call by call in total
        const used = sum(done.map((e) => e.used.tokens ?? 0))
        const reserved = sum(done.map((e) => e.reserved.tokens ?? 0))
        const served = sum(stats.admissions.map((a) => a.tokens))
        const ratio = wall / minimum
        console.log(
          `500 generateText + 200 streamText: wall ${wall} ms, minimum ${Math.round(minimum)} ms, ratio ${
            ratio.toFixed(4)
          }, tokens reserved ${reserved}, used ${used} (server ${served}), 429s 0`
        )
        expect(used).toBe(served)
        expect(reserved).toBeGreaterThan(used)
        expect(minimum).toBeGreaterThan(120_000) // TPM-bound: minutes of tokens beyond the first bucket
        expect(ratio).toBeLessThanOrEqual(1.03)
      }).pipe(Effect.provide(tier1())),
    600_000
  )
})

describe("GovernedHttpClient: failures", () => {
  const faulty = (options: GovernedHttpClient.Options, expectKinds: ReadonlyArray<string>) =>
    Effect.gen(function*() {
      const { events, onEvent } = recorder()
      const results = yield* VirtualTime.run(
        Effect.forEach(Array.from({ length: 60 }, (_, i) => i), (i) => generate(`f${i}`, i), {
          concurrency: "unbounded"
        }).pipe(Effect.provide(languageModel({ tier: 1, onEvent, ...options }, 50)))
      )
      const stats = yield* Simulator.stats
      expect(results).toHaveLength(60)
      expect(stats.byStatus["429"]).toBeUndefined()
      const attempts = sum(Object.values(stats.attemptsByKey))
      const admitted = events.filter((e) => e._tag === "Admitted")
      const kinds = new Set(
        admitted.flatMap((e) => e._tag === "Admitted" && e.retryOf !== undefined ? [e.retryOf] : [])
      )
      console.log(
        `faults: ${attempts} attempts for 60 calls (by status ${JSON.stringify(stats.byStatus)}), retried: ${
          [...kinds].join(", ")
        }`
      )
      // every attempt the server saw (a reset one included) was admitted first
      expect(admitted).toHaveLength(attempts)
      expect(attempts).toBeGreaterThan(60)
      for (const kind of expectKinds) expect(kinds.has(kind as never)).toBe(true)
      expect(succeeded(events)).toHaveLength(60)
    })

  it.effect(
    "503s and connection resets are retried through admission; every call succeeds, no 429",
    () =>
      faulty({}, ["Overloaded", "ConnectionError"]).pipe(
        Effect.provide(tier1({ faults: { rates: { overloaded: 0.15, connection_reset: 0.1 } } }))
      ),
    300_000
  )

  it.effect(
    "an incident (every call a 500 for 400 ms) is retried through admission once it is over",
    () =>
      faulty({ breaker: false }, ["ServerError"]).pipe(
        Effect.provide(tier1({ incidents: [{ fromMs: 0, toMs: 400, fault: "server_error" }] }))
      ),
    300_000
  )

  it.effect(
    "context_length_exceeded is never retried, and reaches @effect/ai as an HttpRequestError caused by it",
    () =>
      Effect.gen(function*() {
        const { events, onEvent } = recorder()
        const exit = yield* VirtualTime.run(
          LanguageModel.generateText({ prompt: `[req:long] ${filler(700_000)}` }).pipe(
            Effect.provide(
              OpenAiLanguageModel.layer({ model: "gpt-4o-mini", config: { max_output_tokens: 50 } }).pipe(
                Layer.provide(governedOpenAi({ tier: 1, onEvent }))
              )
            ),
            Effect.exit
          )
        )
        const stats = yield* Simulator.stats
        expect(stats.attemptsByKey["long"]).toBe(1)
        expect(stats.byCode).toEqual({ context_length_exceeded: 1 })
        const error = failureOf(exit)
        expect(error).toBeInstanceOf(AiError.HttpRequestError)
        const cause = GovernedHttpClient.sluiceError(error)
        expect(Option.isSome(cause) && cause.value._tag).toBe("ContextLengthExceeded")
        expect(Option.isSome(cause) && OpenAiErrorStatus(cause.value)).toBe(400)
        expect((error as AiError.HttpRequestError).description).toMatch(/^ContextLengthExceeded: /)
        expect(events.filter((e) => e._tag === "Admitted")).toHaveLength(1)
      }).pipe(Effect.provide(tier1())),
    300_000
  )

  it.effect("insufficient_quota closes the organization: later calls fail at once, unsent", () =>
    Effect.gen(function*() {
      const layer = languageModel({ tier: 1 }, 20)
      const outcome = yield* VirtualTime.run(
        Effect.gen(function*() {
          const first = yield* Effect.exit(generate("q0", 0))
          const rest = yield* Effect.forEach(
            Array.from({ length: 10 }, (_, i) => i + 1),
            (i) => Effect.exit(generate(`q${i}`, i)),
            { concurrency: "unbounded" }
          )
          return { first, rest }
        }).pipe(Effect.provide(layer))
      )
      const stats = yield* Simulator.stats
      expect(stats.byCode).toEqual({ insufficient_quota: 1 })
      expect(Object.keys(stats.attemptsByKey)).toEqual(["q0"])
      for (const exit of [outcome.first, ...outcome.rest]) {
        const cause = GovernedHttpClient.sluiceError(failureOf(exit))
        expect(Option.isSome(cause) && cause.value._tag).toBe("QuotaExhausted")
      }
    }).pipe(Effect.provide(tier1({ faults: { quotaUsd: 0 } }))))

  it.effect("a call that cannot be admitted in time fails with DeadlineExceeded as its cause, unsent", () =>
    Effect.gen(function*() {
      const outcome = yield* VirtualTime.run(
        Effect.gen(function*() {
          // 25,000 of gpt-4o's 30,000 tokens a minute: the next large call waits ~40 s for its tokens
          yield* LanguageModel.generateText({ prompt: `[req:big] ${filler(96_000)}` })
          return yield* Effect.exit(
            LanguageModel.generateText({ prompt: `[req:late] ${filler(40_000)}` }).pipe(
              GovernedHttpClient.withCallOptions({ maxWait: "5 seconds" })
            )
          )
        }).pipe(Effect.provide(languageModel({ tier: 1 }, 50)))
      )
      const stats = yield* Simulator.stats
      expect(Object.keys(stats.attemptsByKey)).toEqual(["big"])
      const cause = GovernedHttpClient.sluiceError(failureOf(outcome))
      expect(Option.isSome(cause) && cause.value._tag).toBe("DeadlineExceeded")
    }).pipe(Effect.provide(tier1())))
})

const OpenAiErrorStatus = (error: GovernedHttpClient.SluiceError) => "status" in error ? error.status : undefined

describe("GovernedHttpClient: per-call options", () => {
  it.effect("withCallOptions reaches generateText and streamText: the tenant scope is charged", () =>
    Effect.gen(function*() {
      const { events, onEvent } = recorder()
      yield* VirtualTime.run(
        Effect.gen(function*() {
          yield* generate("t1", 1).pipe(GovernedHttpClient.withCallOptions({ tenant: "alpha", priority: "background" }))
          yield* stream("t2", 2).pipe(GovernedHttpClient.withCallOptions({ tenant: "beta" }))
          yield* generate("t3", 3)
        }).pipe(Effect.provide(languageModel({ tier: 1, onEvent }, 20)))
      )
      const scopes = events.flatMap((e) => e._tag === "Admitted" ? [e.scopes] : [])
      expect(scopes).toHaveLength(3)
      expect(scopes[0]).toContain("tenant:alpha")
      expect(scopes[1]).toContain("tenant:beta")
      expect(scopes[2].some((s) => s.startsWith("tenant:"))).toBe(false)
    }).pipe(Effect.provide(tier1())))
})

describe("GovernedHttpClient: EmbeddingModel", () => {
  it.effect("embedMany in batches: every request governed and settled to its usage", () =>
    Effect.gen(function*() {
      const { events, onEvent } = recorder()
      const texts = Array.from({ length: 300 }, (_, i) => `[req:e${i}] ${filler(40 + (i % 50) * 20)}`)
      const vectors = yield* VirtualTime.run(
        Effect.flatMap(EmbeddingModel.EmbeddingModel, (model) => model.embedMany(texts)).pipe(
          Effect.provide(
            OpenAiEmbeddingModel.layerBatched({ model: "text-embedding-3-small", config: { maxBatchSize: 50 } }).pipe(
              Layer.provide(governedOpenAi({ tier: 1, onEvent }))
            )
          )
        )
      )
      const stats = yield* Simulator.stats
      expect(vectors).toHaveLength(300)
      expect(stats.byStatus).toEqual({ "200": 6 })
      const done = succeeded(events)
      expect(done).toHaveLength(6)
      expect(done.every((e) => e.model === "text-embedding-3-small")).toBe(true)
      expect(sum(done.map((e) => e.used.tokens ?? 0))).toBe(sum(stats.admissions.map((a) => a.tokens)))
    }).pipe(Effect.provide(tier1())))
})
