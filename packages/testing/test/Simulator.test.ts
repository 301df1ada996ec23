import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import OpenAI from "openai"
import type { SimConfig } from "../src/index.js"
import { Scenario, SimFetch, SimStats, Simulator } from "../src/index.js"
import { call, chat, client } from "./helpers.js"

const run = (scenario: SimConfig.Scenario) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provide(effect, Simulator.layer(scenario))

describe("in-process face with the openai SDK", () => {
  it.effect("returns a chat.completion with usage and OpenAI's headers", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const result = yield* call(() => c.chat.completions.create(chat("hello there!")).withResponse())
      const { data, response } = Either.getOrThrow(result)
      expect(data.object).toBe("chat.completion")
      expect(data.usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 })
      expect(response.headers.get("x-ratelimit-limit-requests")).toBe("3")
      expect(response.headers.get("x-ratelimit-remaining-requests")).toBe("2")
      expect(response.headers.get("x-ratelimit-limit-tokens")).toBe("1000")
      expect(response.headers.get("x-ratelimit-remaining-tokens")).toBe("992")
      expect(response.headers.get("x-ratelimit-reset-requests")).toBe("20s")
      expect(response.headers.get("x-ratelimit-reset-tokens")).toBe("480ms")
      expect(response.headers.get("x-request-id")).toMatch(/^req_[0-9a-f]{32}$/)
      expect(response.headers.get("openai-processing-ms")).toBe("0")
    }).pipe(run(Scenario.single("gpt-4o-mini", { rpm: 3, tpm: 1000 }))))

  it.effect("RPM 429 with retry-after, SDK RateLimitError, refill over time", () =>
    Effect.gen(function*() {
      const c = yield* client()
      for (let i = 0; i < 3; i++) {
        expect(Either.isRight(yield* call(() => c.chat.completions.create(chat("hi"))))).toBe(true)
      }
      const rejected = yield* call(() => c.chat.completions.create(chat("hi")))
      const error = Either.getLeft(rejected).pipe((o) => o._tag === "Some" ? o.value : undefined)
      expect(error).toBeInstanceOf(OpenAI.RateLimitError)
      const e = error as InstanceType<typeof OpenAI.RateLimitError>
      expect(e.status).toBe(429)
      expect(e.code).toBe("rate_limit_exceeded")
      expect(e.type).toBe("requests")
      expect(e.message).toContain(
        "Rate limit reached for gpt-4o-mini in organization org-sim on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s."
      )
      expect(e.headers?.get("retry-after")).toBe("20")
      expect(e.headers?.get("retry-after-ms")).toBe("20000")
      yield* TestClock.adjust("20 seconds")
      expect(Either.isRight(yield* call(() => c.chat.completions.create(chat("hi"))))).toBe(true)
    }).pipe(run(Scenario.single("gpt-4o-mini", { rpm: 3 }))))

  it.effect("latency sleeps advance only with TestClock", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const fiber = yield* Effect.fork(Effect.promise(() => c.chat.completions.create(chat("hi"))))
      yield* TestClock.adjust(999)
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(1 + 5 * 10)
      const done = yield* Fiber.join(fiber)
      expect(done.usage?.completion_tokens).toBe(5)
    }).pipe(run(Scenario.single("gpt-4o-mini", {}, {
      latency: { request: { _tag: "fixed", ms: 1000 }, perOutputTokenMs: 10 }
    }))))

  it.effect("stats count attempts by [req:ID] marker", () =>
    Effect.gen(function*() {
      const c = yield* client()
      yield* call(() => c.chat.completions.create(chat("[req:a] hi")))
      yield* call(() => c.chat.completions.create(chat("[req:a] hi")))
      yield* call(() => c.chat.completions.create(chat("[req:b] hi")))
      const stats = yield* Simulator.stats
      expect(stats.attemptsByKey).toEqual({ a: 2, b: 1 })
      expect(stats.byStatus).toEqual({ "200": 2, "429": 1 })
      expect(SimStats.peak(stats, { dimension: "requests", windowMs: 60_000 })).toBe(2)
    }).pipe(run(Scenario.single("gpt-4o-mini", { rpm: 2 }))))

  it.effect("SimFetch.layerFetchHttpClient routes @effect/platform's HttpClient to the simulator", () =>
    Effect.gen(function*() {
      const http = yield* HttpClient.HttpClient
      const response = yield* http.get("http://sim.local/v1/models", { headers: { authorization: "Bearer sk" } })
      const body = (yield* response.json) as { data: Array<{ id: string }> }
      expect(body.data.map((m) => m.id)).toEqual(["gpt-4o-mini"])
    }).pipe(
      Effect.provide(FetchHttpClient.layer),
      Effect.provide(SimFetch.layerFetchHttpClient),
      run(Scenario.single("gpt-4o-mini", {}))
    ))
})
