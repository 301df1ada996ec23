import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import OpenAI from "openai"
import { Scenario, SimConfig, SimFetch, SimStats, Simulator } from "../src/index.js"
import { formatGoDuration } from "../src/internal/duration.js"
import { call, callFor, chat, client } from "./helpers.js"

const withSim = (scenario: SimConfig.Scenario) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provide(effect, Simulator.layer(scenario))

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  Effect.gen(function*() {
    const sim = yield* Simulator.Simulator
    const response = yield* sim.judge({
      method: "POST",
      path,
      headers: { authorization: "Bearer sk-test", ...headers },
      body
    })
    if (response._tag !== "Response") {
      return { status: 0, headers: {} as Record<string, string>, json: undefined as any, response }
    }
    return { status: response.status, headers: response.headers, json: JSON.parse(response.body), response }
  })

const chatBody = (content: string, extra: Record<string, unknown> = {}) => ({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content }],
  max_tokens: 10,
  ...extra
})

const sdkError = <A>(either: Either.Either<A, unknown>) => {
  if (Either.isRight(either)) throw new Error("expected a failure")
  return either.left as InstanceType<typeof OpenAI.APIError>
}

describe("Go-style durations", () => {
  it("formats like OpenAI's headers", () => {
    expect(formatGoDuration(0)).toBe("0s")
    expect(formatGoDuration(12)).toBe("12ms")
    expect(formatGoDuration(84.2)).toBe("85ms")
    expect(formatGoDuration(1146)).toBe("1.146s")
    expect(formatGoDuration(2500)).toBe("2.5s")
    expect(formatGoDuration(20_000)).toBe("20s")
    expect(formatGoDuration(62_500)).toBe("1m2.5s")
    expect(formatGoDuration(360_000)).toBe("6m0s")
    expect(formatGoDuration(172_800)).toBe("2m52.8s")
    expect(formatGoDuration(90_000)).toBe("1m30s")
    expect(formatGoDuration(5_400_000)).toBe("1h30m0s")
  })
})

describe("limits", () => {
  it.effect("TPM 429 body, estimate = chars/4 + n × max_tokens, then settle to actual usage", () =>
    Effect.gen(function*() {
      // 400 chars → 100 prompt tokens; estimate 100 + 2 × 200 = 500; actual 100 + 2 × 100 = 300
      const first = yield* post("/v1/chat/completions", chatBody("x".repeat(400), { n: 2, max_tokens: 200 }))
      expect(first.status).toBe(200)
      expect(first.json.usage.total_tokens).toBe(300)
      expect(first.headers["x-ratelimit-remaining-tokens"]).toBe("700")
      const second = yield* post("/v1/chat/completions", chatBody("x".repeat(400), { max_completion_tokens: 700 }))
      expect(second.status).toBe(429)
      expect(second.json.error).toEqual({
        message:
          "Rate limit reached for gpt-4o-mini in organization org-sim on tokens per min (TPM): Limit 1000, Used 300, Requested 800. Please try again in 6s. Visit https://platform.openai.com/account/rate-limits to learn more.",
        type: "tokens",
        param: null,
        code: "rate_limit_exceeded"
      })
      expect(second.headers["retry-after"]).toBe("6")
      expect(second.headers["retry-after-ms"]).toBe("6000")
      // the rejected request still counted against RPM
      expect(second.headers["x-ratelimit-remaining-requests"]).toBe("98")
      yield* TestClock.adjust("6 seconds")
      expect((yield* post("/v1/chat/completions", chatBody("x".repeat(400), { max_completion_tokens: 700 }))).status)
        .toBe(200)
    }).pipe(withSim(Scenario.single("gpt-4o-mini", { rpm: 100, tpm: 1000 }))))

  it.effect("settle: never keeps the estimate charged (usage as served; stats count what was charged)", () =>
    Effect.gen(function*() {
      // the same call as above: estimate 500, usage 300, but the bucket keeps the 500
      const first = yield* post("/v1/chat/completions", chatBody("x".repeat(400), { n: 2, max_tokens: 200 }))
      expect(first.status).toBe(200)
      expect(first.json.usage.total_tokens).toBe(300)
      expect(first.headers["x-ratelimit-remaining-tokens"]).toBe("500")
      // 600 more do not fit 500 (they would have fitted the 700 a settled bucket holds)
      const second = yield* post("/v1/chat/completions", chatBody("x".repeat(400), { max_completion_tokens: 500 }))
      expect(second.status).toBe(429)
      expect(second.json.error.message).toContain("Limit 1000, Used 500, Requested 600.")
      expect((yield* Simulator.stats).admissions.map((a) => a.tokens)).toEqual([500])
    }).pipe(withSim(Scenario.single("gpt-4o-mini", { rpm: 100, tpm: 1000 }, { enforcement: { settle: "never" } }))))

  it.effect("rejected requests need not count against RPM", () =>
    Effect.gen(function*() {
      expect((yield* post("/v1/chat/completions", chatBody("x", { max_tokens: 2000 }))).status).toBe(200)
      const r = yield* post("/v1/chat/completions", chatBody("x", { max_tokens: 2000 }))
      expect(r.status).toBe(429)
      expect(r.json.error.type).toBe("tokens")
      expect(r.headers["x-ratelimit-remaining-requests"]).toBe("99")
    }).pipe(withSim(Scenario.single("gpt-4o-mini", { rpm: 100, tpm: 3000 }, {
      enforcement: { rejectedCountAgainstRpm: false }
    }))))

  it.effect("request too large never succeeds by waiting", () =>
    Effect.gen(function*() {
      const r = yield* post("/v1/chat/completions", chatBody("x".repeat(4), { max_tokens: 34_306, model: "gpt-4o" }))
      expect(r.status).toBe(429)
      expect(r.json.error).toEqual({
        message:
          "Request too large for gpt-4o in organization org-sim on tokens per min (TPM): Limit 30000, Requested 34307. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.",
        type: "tokens",
        param: null,
        code: "rate_limit_exceeded"
      })
      expect(r.headers["retry-after"]).toBeUndefined()
    }).pipe(withSim(Scenario.tier1())))

  it.effect("daily limits: RPD message names per day and refills continuously", () =>
    Effect.gen(function*() {
      for (let i = 0; i < 3; i++) expect((yield* post("/v1/chat/completions", chatBody("hi"))).status).toBe(200)
      const r = yield* post("/v1/chat/completions", chatBody("hi"))
      expect(r.status).toBe(429)
      expect(r.json.error.message).toContain(
        "on requests per day (RPD): Limit 3, Used 3, Requested 1. Please try again in 8h0m0s."
      )
      expect(r.json.error.type).toBe("requests")
      // daily limits are never in headers
      expect(Object.keys(r.headers).some((h) => h.includes("day"))).toBe(false)
      yield* TestClock.adjust("8 hours")
      expect((yield* post("/v1/chat/completions", chatBody("hi"))).status).toBe(200)
    }).pipe(withSim(Scenario.single("gpt-4o-mini", { rpd: 3 }))))

  it.effect("TPD message", () =>
    Effect.gen(function*() {
      expect((yield* post("/v1/chat/completions", chatBody("hi", { max_tokens: 60 }))).status).toBe(200)
      const r = yield* post("/v1/chat/completions", chatBody("hi", { max_tokens: 90 }))
      expect(r.status).toBe(429)
      expect(r.json.error.message).toContain("on tokens per day (TPD): Limit 100, Used 31, Requested 91.")
      expect(r.json.error.type).toBe("tokens")
    }).pipe(withSim(Scenario.single("gpt-4o-mini", { tpd: 100 }))))

  it.effect("shared pools: several models charge one budget", () =>
    Effect.gen(function*() {
      const a = yield* post("/v1/chat/completions", chatBody("hi", { model: "a" }))
      expect(a.headers["x-ratelimit-remaining-requests"]).toBe("1")
      expect((yield* post("/v1/chat/completions", chatBody("hi", { model: "b" }))).status).toBe(200)
      const c = yield* post("/v1/chat/completions", chatBody("hi", { model: "a" }))
      expect(c.status).toBe(429)
      expect((yield* post("/v1/chat/completions", chatBody("hi", { model: "solo" }))).status).toBe(200)
      const stats = yield* Simulator.stats
      expect(SimStats.peak(stats, { dimension: "requests", windowMs: 60_000, scope: "family" })).toBe(2)
    }).pipe(withSim(SimConfig.make({
      models: { a: { pool: "family" }, b: { pool: "family" }, solo: { limits: { rpm: 1 } } },
      pools: { family: { rpm: 2 } }
    }))))

  it.effect("project limits: charged with the organization's, all or nothing; headers show the tighter", () =>
    Effect.gen(function*() {
      const proj = { "openai-project": "proj_a" }
      const first = yield* post("/v1/chat/completions", chatBody("hi"), proj)
      expect(first.status).toBe(200)
      expect(first.headers["x-ratelimit-limit-requests"]).toBe("1")
      expect(first.headers["x-ratelimit-remaining-requests"]).toBe("0")
      const second = yield* post("/v1/chat/completions", chatBody("hi"), proj)
      expect(second.status).toBe(429)
      expect(second.json.error.message).toContain(
        "Rate limit reached for gpt-4o-mini in project proj_a organization org-sim on requests per min (RPM): Limit 1, Used 1"
      )
      const other = yield* post("/v1/chat/completions", chatBody("hi"))
      expect(other.status).toBe(200)
      expect(other.headers["x-ratelimit-remaining-requests"]).toBe("1")
      const stats = yield* Simulator.stats
      expect(SimStats.peak(stats, { dimension: "requests", windowMs: 60_000, project: "proj_a" })).toBe(1)
    }).pipe(withSim(SimConfig.make({
      models: { "gpt-4o-mini": { limits: { rpm: 3 } } },
      projects: { proj_a: { limits: { "gpt-4o-mini": { rpm: 1 } } } }
    }))))

  it.effect("background load from other clients drains the shared budget", () =>
    Effect.gen(function*() {
      // 1000 TPM, others use 600 TPM: after a request, 30 s refill only 200 tokens net
      const first = yield* post("/v1/chat/completions", chatBody("hi", { max_tokens: 998 }))
      expect(first.headers["x-ratelimit-remaining-tokens"]).toBe("500")
      yield* TestClock.adjust("30 seconds")
      const second = yield* post("/v1/chat/completions", chatBody("hi", { max_tokens: 2 }))
      expect(second.headers["x-ratelimit-remaining-tokens"]).toBe("698")
    }).pipe(withSim(Scenario.single("gpt-4o-mini", { tpm: 1000 }, { background: { "gpt-4o-mini": { tpm: 600 } } }))))

  it.effect("sub-minute enforcement throttles a minute's burst at once", () =>
    Effect.gen(function*() {
      // 60 RPM with a 1 s sub-window: one request per second
      expect((yield* post("/v1/chat/completions", chatBody("hi"))).status).toBe(200)
      const r = yield* post("/v1/chat/completions", chatBody("hi"))
      expect(r.status).toBe(429)
      expect(r.json.error.message).toContain("Limit 60, Used 1, Requested 1. Please try again in 1s.")
      yield* TestClock.adjust("1 second")
      expect((yield* post("/v1/chat/completions", chatBody("hi"))).status).toBe(200)
    }).pipe(withSim(Scenario.single("gpt-4o-mini", { rpm: 60 }, { enforcement: { subWindowMs: 1000 } }))))

  it.effect("images: IPM, n counts, -images headers, DALL-E rpm", () =>
    Effect.gen(function*() {
      const ok = yield* post("/v1/images/generations", { model: "dall-e-3", prompt: "a cat", n: 4 })
      expect(ok.status).toBe(200)
      expect(ok.json.data).toHaveLength(4)
      expect(ok.headers["x-ratelimit-limit-images"]).toBe("5")
      expect(ok.headers["x-ratelimit-remaining-images"]).toBe("1")
      expect(ok.headers["x-ratelimit-reset-images"]).toBe("48s")
      const r = yield* post("/v1/images/generations", { model: "dall-e-3", prompt: "a cat", n: 2 })
      expect(r.status).toBe(429)
      expect(r.json.error.type).toBe("images")
      expect(r.json.error.message).toContain(
        "on images per min (IPM): Limit 5, Used 4, Requested 2. Please try again in 12s."
      )
    }).pipe(withSim(Scenario.tier1())))

  it.effect("insufficient_quota after the configured spend", () =>
    Effect.gen(function*() {
      // gpt-4o: 2.5 $/M input, 10 $/M output: 1000 prompt + 500 output tokens = 0.0075 $
      expect(
        (yield* post("/v1/chat/completions", chatBody("x".repeat(4000), { model: "gpt-4o", max_tokens: 1000 }))).status
      )
        .toBe(200)
      const r = yield* post("/v1/chat/completions", chatBody("hi", { model: "gpt-4o" }))
      expect(r.status).toBe(429)
      expect(r.json.error.type).toBe("insufficient_quota")
      expect(r.json.error.code).toBe("insufficient_quota")
      expect(r.json.error.message).toContain(
        "You exceeded your current quota, please check your plan and billing details."
      )
    }).pipe(withSim(Scenario.tier1({ faults: { quotaUsd: 0.005 } }))))

  it.effect("retry-after headers can be switched off; project phrase", () =>
    Effect.gen(function*() {
      expect((yield* post("/v1/chat/completions", chatBody("hi"))).status).toBe(200)
      const r = yield* post("/v1/chat/completions", chatBody("hi"))
      expect(r.status).toBe(429)
      expect(r.headers["retry-after"]).toBeUndefined()
      expect(r.headers["retry-after-ms"]).toBeUndefined()
      expect(r.json.error.message).toContain("in project proj_abc organization org-acme on requests per min")
    }).pipe(withSim(Scenario.single("gpt-4o-mini", { rpm: 1 }, {
      organization: "org-acme",
      project: "proj_abc",
      enforcement: { retryAfter: false, retryAfterMs: false }
    }))))
})

describe("errors", () => {
  it.effect("context_length_exceeded by model context window", () =>
    Effect.gen(function*() {
      const r = yield* post("/v1/chat/completions", chatBody("x".repeat(400), { max_tokens: 950 }))
      expect(r.status).toBe(400)
      expect(r.json.error).toEqual({
        message:
          "This model's maximum context length is 1000 tokens. However, you requested 1050 tokens (100 in the messages, 950 in the completion). Please reduce the length of the messages or completion.",
        type: "invalid_request_error",
        param: "messages",
        code: "context_length_exceeded"
      })
    }).pipe(withSim(SimConfig.make({ models: { "gpt-4o-mini": { contextWindow: 1000 } } }))))

  it.effect("content_policy_violation, model_not_found, 403, 401 through the SDK", () =>
    Effect.gen(function*() {
      const c = yield* client({ apiKey: "sk-good-key-1234" })
      const policy = sdkError(yield* call(() => c.chat.completions.create(chat("[sim:content-policy] bad"))))
      expect(policy).toBeInstanceOf(OpenAI.BadRequestError)
      expect(policy.code).toBe("content_policy_violation")
      const missing = sdkError(yield* call(() => c.chat.completions.create(chat("hi", { model: "gpt-9" }))))
      expect(missing).toBeInstanceOf(OpenAI.NotFoundError)
      expect(missing.code).toBe("model_not_found")
      const forbidden = sdkError(yield* call(() => c.images.generate({ model: "dall-e-3", prompt: "cat" })))
      expect(forbidden).toBeInstanceOf(OpenAI.PermissionDeniedError)
      expect(forbidden.status).toBe(403)
      expect(forbidden.code).toBe("model_not_found")
      expect(forbidden.message).toBe("403 Project `org-sim` does not have access to model `dall-e-3`")
      const wrong = yield* client({ apiKey: "sk-wrong-key-9999" })
      const auth = sdkError(yield* call(() => wrong.chat.completions.create(chat("hi"))))
      expect(auth).toBeInstanceOf(OpenAI.AuthenticationError)
      expect(auth.code).toBe("invalid_api_key")
      expect(auth.message).not.toContain("sk-wrong-key-9999")
      const stats = yield* Simulator.stats
      expect(stats.byCode).toMatchObject({
        content_policy_violation: 1,
        model_not_found: 2,
        invalid_api_key: 1
      })
    }).pipe(withSim(Scenario.free({ apiKeys: ["sk-good-key-1234"] }))))

  it.effect("each 5xx fault surfaces as the SDK's error with OpenAI's body", () =>
    Effect.gen(function*() {
      const expected = [
        ["overloaded", 503, OpenAI.InternalServerError, "The server is overloaded or not ready yet."],
        ["server_error", 500, OpenAI.InternalServerError, "The server had an error while processing your request."],
        ["bad_gateway", 502, OpenAI.InternalServerError, "Bad gateway."],
        ["gateway_timeout", 504, OpenAI.InternalServerError, "Gateway timeout."]
      ] as const
      for (const [fault, status, cls, message] of expected) {
        const sim = yield* Simulator.make(Scenario.tier1({ faults: { rates: { [fault]: 1 } } }))
        const c = yield* client().pipe(Effect.provideService(Simulator.Simulator, sim))
        const e = sdkError(yield* call(() => c.chat.completions.create(chat("hi"))))
        expect(e).toBeInstanceOf(cls)
        expect(e.status).toBe(status)
        expect(e.message).toContain(message)
        expect(e.headers?.get("x-request-id")).toMatch(/^req_/)
      }
    }))

  it.effect("connection reset: fetch rejects like undici, SDK raises APIConnectionError", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const e = sdkError(yield* call(() => c.chat.completions.create(chat("hi"))))
      expect(e).toBeInstanceOf(OpenAI.APIConnectionError)
      const stats = yield* Simulator.stats
      expect(stats.byStatus).toEqual({ "0": 1 })
      // the failed call was refunded its tokens
      expect(stats.tokensByModel["gpt-4o-mini"]).toBe(0)
    }).pipe(withSim(Scenario.tier1({ faults: { rates: { connection_reset: 1 } } }))))

  it.effect("slow responses wait faults.slowMs more on virtual time, then succeed", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const fiber = yield* Effect.fork(callFor(() => c.chat.completions.create(chat("hi"))))
      yield* TestClock.adjust(29_999)
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(1)
      const slow = yield* Fiber.join(fiber)
      expect(Either.getOrThrow(slow).object).toBe("chat.completion")
      const stats = yield* Simulator.stats
      expect(stats.attempts.map((a) => [a.status, a.fault])).toEqual([[200, "slow"]])
    }).pipe(withSim(Scenario.tier1({ faults: { rates: { slow: 1 }, slowMs: 30_000 } }))))

  it.effect("a client timeout on the Clock (SimFetch.makeWith) cuts a slow call: APIConnectionTimeoutError", () =>
    Effect.gen(function*() {
      const fetch = yield* SimFetch.makeWith({ timeout: "10 seconds" })
      const c = new OpenAI({ apiKey: "sk-test", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
      const fiber = yield* Effect.fork(callFor(() => c.chat.completions.create(chat("hi"))))
      yield* TestClock.adjust(9_999)
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(1)
      const e = sdkError(yield* Fiber.join(fiber))
      expect(e).toBeInstanceOf(OpenAI.APIConnectionTimeoutError)
      // a call answered in time is not cut
      const fast = yield* Simulator.make(Scenario.tier1())
      const quick = yield* SimFetch.makeWith({ timeout: "10 seconds" }).pipe(
        Effect.provideService(Simulator.Simulator, fast)
      )
      const q = new OpenAI({ apiKey: "sk-test", baseURL: "http://sim.local/v1", fetch: quick, maxRetries: 0 })
      expect(Either.getOrThrow(yield* call(() => q.chat.completions.create(chat("hi")))).object).toBe(
        "chat.completion"
      )
    }).pipe(withSim(Scenario.tier1({ faults: { rates: { slow: 1 }, slowMs: 30_000 } }))))

  it.effect("timeout fault: hangs for timeoutMs then 504; an abort signal cuts the hang at once", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const controller = new AbortController()
      const fiber = yield* Effect.fork(
        callFor(() => c.chat.completions.create(chat("hi"), { signal: controller.signal }))
      )
      yield* TestClock.adjust("10 seconds")
      expect(fiber.unsafePoll()).toBeNull()
      controller.abort()
      // no more virtual time passes: the abort alone ends the call
      expect(sdkError(yield* Fiber.join(fiber))).toBeInstanceOf(OpenAI.APIUserAbortError)
      const late = yield* Effect.fork(callFor(() => c.chat.completions.create(chat("hi"))))
      yield* TestClock.adjust(119_999)
      expect(late.unsafePoll()).toBeNull()
      yield* TestClock.adjust(1)
      const e = sdkError(yield* Fiber.join(late))
      expect(e).toBeInstanceOf(OpenAI.InternalServerError)
      expect(e.status).toBe(504)
      const stats = yield* Simulator.stats
      expect(stats.attempts.map((a) => [a.status, a.fault])).toEqual([[504, "timeout"], [504, "timeout"]])
    }).pipe(withSim(Scenario.tier1({ faults: { rates: { timeout: 1 }, timeoutMs: 120_000 } }))))

  it.effect("timeout fault ending in connection_timeout: the SDK raises APIConnectionTimeoutError", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const fiber = yield* Effect.fork(callFor(() => c.chat.completions.create(chat("hi"))))
      yield* TestClock.adjust(59_999)
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(1)
      expect(sdkError(yield* Fiber.join(fiber))).toBeInstanceOf(OpenAI.APIConnectionTimeoutError)
      const stats = yield* Simulator.stats
      expect(stats.attempts.map((a) => [a.status, a.code, a.fault])).toEqual([[0, "timeout", "timeout"]])
      expect(stats.tokensByModel["gpt-4o-mini"]).toBe(0)
    }).pipe(
      withSim(
        Scenario.tier1({ faults: { rates: { timeout: 1 }, timeoutMs: 60_000, timeoutThen: "connection_timeout" } })
      )
    ))

  it.effect("timeout fault ending in connection_reset: a plain APIConnectionError after the hang", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const fiber = yield* Effect.fork(callFor(() => c.chat.completions.create(chat("hi"))))
      yield* TestClock.adjust(4_999)
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(1)
      const e = sdkError(yield* Fiber.join(fiber))
      expect(e).toBeInstanceOf(OpenAI.APIConnectionError)
      expect(e).not.toBeInstanceOf(OpenAI.APIConnectionTimeoutError)
      expect((yield* Simulator.stats).byCode).toEqual({ connection_reset: 1 })
    }).pipe(
      withSim(Scenario.tier1({ faults: { rates: { timeout: 1 }, timeoutMs: 5_000, timeoutThen: "connection_reset" } }))
    ))

  it.effect("conflict fault: 409 surfaces as the SDK's ConflictError; refunded like other faults", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const e = sdkError(yield* call(() => c.chat.completions.create(chat("hi"))))
      expect(e).toBeInstanceOf(OpenAI.ConflictError)
      expect(e.status).toBe(409)
      expect(e.code).toBe("conflict")
      expect(e.type).toBe("invalid_request_error")
      expect(e.message).toContain("conflicted with another request")
      expect(e.headers?.get("x-request-id")).toMatch(/^req_/)
      const stats = yield* Simulator.stats
      expect(stats.byStatus).toEqual({ "409": 1 })
      expect(stats.tokensByModel["gpt-4o-mini"]).toBe(0)
      expect(stats.requestsByModel["gpt-4o-mini"]).toBe(1)
    }).pipe(withSim(Scenario.tier1({ faults: { rates: { conflict: 1 } } }))))

  it.effect("scripted incidents: from t=30s to t=90s every request gets 503", () =>
    Effect.gen(function*() {
      expect((yield* post("/v1/chat/completions", chatBody("hi"))).status).toBe(200)
      yield* TestClock.adjust("30 seconds")
      expect((yield* post("/v1/chat/completions", chatBody("hi"))).status).toBe(503)
      yield* TestClock.adjust("59 seconds")
      expect((yield* post("/v1/chat/completions", chatBody("hi"))).status).toBe(503)
      yield* TestClock.adjust("1 second")
      expect((yield* post("/v1/chat/completions", chatBody("hi"))).status).toBe(200)
    }).pipe(withSim(Scenario.tier1({ incidents: [{ fromMs: 30_000, toMs: 90_000, fault: "overloaded" }] }))))

  it.effect("the same seed gives the same faults, latencies and ids", () =>
    Effect.gen(function*() {
      const trace = (seed: number) =>
        Effect.gen(function*() {
          const sim = yield* Simulator.make(Scenario.tier5({
            seed,
            faults: { rates: { overloaded: 0.2, server_error: 0.1 } },
            latency: { request: { _tag: "lognormal", median: 400, sigma: 0.5 } }
          }))
          const out: Array<string> = []
          for (let i = 0; i < 50; i++) {
            const r = yield* sim.judge({
              method: "POST",
              path: "/v1/chat/completions",
              headers: { authorization: "Bearer sk" },
              body: chatBody("hi")
            })
            out.push(
              r._tag === "Response" ? `${r.status}:${r.delayMs.toFixed(3)}:${r.headers["x-request-id"]}` : r._tag
            )
          }
          return out
        })
      const a = yield* trace(7)
      expect(yield* trace(7)).toEqual(a)
      expect(yield* trace(8)).not.toEqual(a)
      expect(a.filter((s) => s.startsWith("503")).length).toBeGreaterThan(3)
    }))
})

describe("endpoints", () => {
  it.effect("responses, embeddings (base64 via the SDK), images, models", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const response = Either.getOrThrow(
        yield* call(() => c.responses.create({ model: "gpt-4o-mini", input: "hello", max_output_tokens: 20 }))
      )
      expect(response.object).toBe("response")
      expect(response.usage).toMatchObject({ input_tokens: 2, output_tokens: 10, total_tokens: 12 })
      expect(response.output_text.split(" ")).toHaveLength(10)
      const embeddings = Either.getOrThrow(
        yield* call(() => c.embeddings.create({ model: "text-embedding-3-small", input: ["abcd", "abcdefgh"] }))
      )
      expect(embeddings.data).toHaveLength(2)
      expect(embeddings.data[0].embedding).toHaveLength(256)
      expect(embeddings.usage).toEqual({ prompt_tokens: 3, total_tokens: 3 })
      const images = Either.getOrThrow(yield* call(() => c.images.generate({ model: "gpt-image-2", prompt: "a cat" })))
      expect(images.data?.[0].b64_json).toBeDefined()
      expect(images.usage?.output_tokens).toBe(1056)
      const models = Either.getOrThrow(yield* call(() => c.models.list()))
      expect(models.data.map((m) => m.id)).toContain("gpt-4o")
    }).pipe(withSim(Scenario.tier1())))

  it.effect("streaming chat with include_usage, chunks paced by per-token latency", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const fiber = yield* Effect.fork(callFor(async () => {
        const stream = await c.chat.completions.create({
          model: "gpt-4o-mini",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 40,
          stream: true,
          stream_options: { include_usage: true }
        })
        let text = ""
        let usage: unknown = undefined
        for await (const chunk of stream) {
          text += chunk.choices[0]?.delta.content ?? ""
          if (chunk.usage) usage = chunk.usage
        }
        return { text, usage }
      }))
      // 100 ms to the first byte, then 20 tokens × 10 ms
      yield* TestClock.adjust(100 + 20 * 10 - 1)
      expect(fiber.unsafePoll()).toBeNull()
      yield* TestClock.adjust(1)
      const { text, usage } = Either.getOrThrow(yield* Fiber.join(fiber))
      expect(text.split(" ")).toHaveLength(20)
      expect(usage).toMatchObject({ prompt_tokens: 1, completion_tokens: 20, total_tokens: 21 })
    }).pipe(withSim(Scenario.tier1({ latency: { request: { _tag: "fixed", ms: 100 }, perOutputTokenMs: 10 } }))))

  it.effect("streaming responses: the SDK's event stream ends in response.completed with usage", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const result = yield* call(async () => {
        const stream = await c.responses.create({
          model: "gpt-4o-mini",
          input: "hello",
          max_output_tokens: 30,
          stream: true
        })
        const types: Array<string> = []
        let text = ""
        let usage: unknown
        for await (const event of stream) {
          types.push(event.type)
          if (event.type === "response.output_text.delta") text += event.delta
          if (event.type === "response.completed") usage = event.response.usage
        }
        return { types, text, usage }
      }, 1_000)
      const { text, types, usage } = Either.getOrThrow(result)
      expect(types[0]).toBe("response.created")
      expect(types.at(-1)).toBe("response.completed")
      expect(text.split(" ")).toHaveLength(15)
      expect(usage).toMatchObject({ input_tokens: 2, output_tokens: 15 })
    }).pipe(withSim(Scenario.tier1({ latency: { perOutputTokenMs: 10 } }))))

  it.effect("retry-after as an HTTP date", () =>
    Effect.gen(function*() {
      expect((yield* post("/v1/chat/completions", chatBody("hi"))).status).toBe(200)
      const r = yield* post("/v1/chat/completions", chatBody("hi"))
      expect(r.status).toBe(429)
      expect(r.headers["retry-after"]).toBe(new Date(60_000).toUTCString())
      expect(r.headers["retry-after-ms"]).toBe("60000")
    }).pipe(withSim(Scenario.single("gpt-4o-mini", { rpm: 1 }, { enforcement: { retryAfterFormat: "date" } }))))

  it.effect("in-stream failures: chat SSE error event, Responses response.failed with rate_limit_exceeded", () =>
    Effect.gen(function*() {
      const chatSim = yield* Simulator.make(Scenario.tier1({ faults: { rates: { stream_error: 1 } } }))
      const c1 = yield* client().pipe(Effect.provideService(Simulator.Simulator, chatSim))
      const chatResult = yield* call(async () => {
        const stream = await c1.chat.completions.create({
          model: "gpt-4o-mini",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 64,
          stream: true
        })
        let n = 0
        for await (const _ of stream) n++
        return n
      })
      const chatError = sdkError(chatResult)
      expect(chatError).toBeInstanceOf(OpenAI.APIError)
      expect(chatError.message).toContain("The server had an error")

      const respSim = yield* Simulator.make(Scenario.tier1({ faults: { rates: { stream_rate_limited: 1 } } }))
      const c2 = yield* client().pipe(Effect.provideService(Simulator.Simulator, respSim))
      const events = Either.getOrThrow(
        yield* call(async () => {
          const stream = await c2.responses.create({
            model: "gpt-4o-mini",
            input: "hi",
            max_output_tokens: 64,
            stream: true
          })
          const out: Array<{ type: string; code?: string | undefined }> = []
          for await (const event of stream) {
            out.push({
              type: event.type,
              code: event.type === "response.failed" ? event.response.error?.code : undefined
            })
          }
          return out
        })
      )
      expect(events.at(-1)).toEqual({ type: "response.failed", code: "rate_limit_exceeded" })
      expect(events.some((e) => e.type === "response.output_text.delta")).toBe(true)
      // non-streaming calls are not affected by stream faults
      expect(Either.isRight(yield* call(() => c2.chat.completions.create(chat("hi"))))).toBe(true)
    }))
})

describe("OpenAI's documented behaviour, where the simulator used to deviate", () => {
  it.effect("the context window bounds the prompt plus one choice's max tokens, whatever n", () =>
    Effect.gen(function*() {
      // 100 prompt tokens + 300 per choice fits a 1000-token window even with n = 4 (each choice is its own sequence)
      const ok = yield* post("/v1/chat/completions", chatBody("x".repeat(400), { n: 4, max_tokens: 300 }))
      expect(ok.status).toBe(200)
      expect(ok.json.choices).toHaveLength(4)
      const over = yield* post("/v1/chat/completions", chatBody("x".repeat(400), { n: 4, max_tokens: 901 }))
      expect(over.status).toBe(400)
      expect(over.json.error.message).toContain(
        "you requested 1001 tokens (100 in the messages, 901 in the completion)"
      )
    }).pipe(withSim(SimConfig.make({ models: { "gpt-4o-mini": { contextWindow: 1000 } } }))))

  it.effect("embeddings: the context window bounds each input, not their sum", () =>
    Effect.gen(function*() {
      const three = yield* post("/v1/embeddings", {
        model: "emb",
        input: ["a".repeat(32_000), "b".repeat(32_000), "c"]
      })
      expect(three.status).toBe(200)
      expect(three.json.usage.prompt_tokens).toBe(16_001)
      const long = yield* post("/v1/embeddings", { model: "emb", input: ["a", "b".repeat(32_768)] })
      expect(long.status).toBe(400)
      expect(long.json.error).toEqual({
        message:
          "This model's maximum context length is 8191 tokens, however you requested 8192 tokens (8192 in your prompt; 0 for the completion). Please reduce your prompt; or completion length.",
        type: "invalid_request_error",
        param: null,
        code: "context_length_exceeded"
      })
    }).pipe(withSim(SimConfig.make({ models: { emb: { kind: "embedding", contextWindow: 8191 } } }))))

  it.effect("sub-minute enforcement: a call above a sub-window's share is admitted once that share is full", () =>
    Effect.gen(function*() {
      // 6000 TPM with 1 s sub-windows: a share of 100 tokens refilling at 0.1/ms. A 500-token estimate used to
      // get "try again in 4s" forever; now it takes a full share (going below zero) and the next waits for it.
      const first = yield* post("/v1/chat/completions", chatBody("hi", { max_tokens: 499 }))
      expect(first.status).toBe(200)
      expect(first.json.usage.total_tokens).toBe(251)
      const second = yield* post("/v1/chat/completions", chatBody("hi", { max_tokens: 499 }))
      expect(second.status).toBe(429)
      expect(second.json.error.message).toContain("Please try again in 2.51s.")
      yield* TestClock.adjust(2_509)
      expect((yield* post("/v1/chat/completions", chatBody("hi", { max_tokens: 499 }))).status).toBe(429)
      yield* TestClock.adjust(1)
      expect((yield* post("/v1/chat/completions", chatBody("hi", { max_tokens: 499 }))).status).toBe(200)
    }).pipe(withSim(Scenario.single("gpt-4o-mini", { rpm: 600, tpm: 6_000 }, { enforcement: { subWindowMs: 1000 } }))))

  it.effect("a cost above a TPD or IPM limit is 'Request too large' at once, not 'try again' forever", () =>
    Effect.gen(function*() {
      const tpd = yield* post("/v1/chat/completions", chatBody("hi", { max_tokens: 200 }))
      expect(tpd.status).toBe(429)
      expect(tpd.json.error).toEqual({
        message:
          "Request too large for gpt-4o-mini in organization org-sim on tokens per day (TPD): Limit 100, Requested 201. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.",
        type: "tokens",
        param: null,
        code: "rate_limit_exceeded"
      })
      expect(tpd.headers["retry-after"]).toBeUndefined()
      const ipm = yield* post("/v1/images/generations", { model: "img", prompt: "a cat", n: 6 })
      expect(ipm.status).toBe(429)
      expect(ipm.json.error.type).toBe("images")
      expect(ipm.json.error.message).toContain(
        "Request too large for img in organization org-sim on images per min (IPM): Limit 5, Requested 6. The number of images must be reduced"
      )
      expect(ipm.headers["retry-after"]).toBeUndefined()
      const stats = yield* Simulator.stats
      expect(stats.attempts.map((a) => a.limit)).toEqual(["request_too_large", "request_too_large"])
    }).pipe(withSim(SimConfig.make({
      models: { "gpt-4o-mini": { limits: { tpd: 100 } }, img: { kind: "image", limits: { ipm: 5 } } }
    }))))

  it.effect("403 and in-stream rate limits name the request's project and organization", () =>
    Effect.gen(function*() {
      const project = { "openai-project": "proj_x" }
      const denied = yield* post("/v1/images/generations", { model: "dall-e-3", prompt: "cat" }, project)
      expect(denied.status).toBe(403)
      expect(denied.json.error.message).toBe("Project `proj_x` does not have access to model `dall-e-3`")
      const sim = yield* Simulator.Simulator
      const stream = yield* sim.judge({
        method: "POST",
        path: "/v1/responses",
        headers: { authorization: "Bearer sk", ...project },
        body: { model: "gpt-4o-mini", input: "hi", max_output_tokens: 64, stream: true }
      })
      if (stream._tag !== "Stream") throw new Error("expected a stream")
      expect(stream.chunks.at(-1)?.data).toContain(
        "Rate limit reached for gpt-4o-mini in project proj_x organization org-acme on tokens per min (TPM)"
      )
    }).pipe(withSim(Scenario.free({ organization: "org-acme", faults: { rates: { stream_rate_limited: 1 } } }))))

  it.effect("enforcement.estimate: 'max' charges the larger of prompt and n × max tokens, OpenAI's literal rule", () =>
    Effect.gen(function*() {
      const body = chatBody("x".repeat(400), { max_tokens: 200 }) // 100 prompt tokens, 200 max: sum 300, max 200
      const sum = yield* Simulator.make(Scenario.single("gpt-4o-mini", { tpm: 250 }))
      const summed = yield* sum.judge({ method: "POST", path: "/v1/chat/completions", headers: auth, body })
      expect(summed._tag === "Response" && JSON.parse(summed.body).error.message).toContain(
        "Request too large for gpt-4o-mini in organization org-sim on tokens per min (TPM): Limit 250, Requested 300."
      )
      const max = yield* Simulator.make(
        Scenario.single("gpt-4o-mini", { tpm: 250 }, { enforcement: { estimate: "max" } })
      )
      const maxed = yield* max.judge({ method: "POST", path: "/v1/chat/completions", headers: auth, body })
      expect(maxed._tag === "Response" && maxed.status).toBe(200)
      // charged 200 at admission, then trued to actual usage: 100 prompt + 100 generated
      expect(maxed._tag === "Response" && maxed.headers["x-ratelimit-remaining-tokens"]).toBe("50")
    }))
})

const auth = { authorization: "Bearer sk-test" }
