import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as TestClock from "effect/TestClock"
import OpenAI from "openai"
import { Scenario, SimConfig, SimStats, Simulator } from "../src/index.js"
import { formatGoDuration } from "../src/internal/duration.js"
import { call, chat, client } from "./helpers.js"

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

  it.effect("rejected requests need not count against RPM", () =>
    Effect.gen(function*() {
      yield* post("/v1/chat/completions", chatBody("x", { max_tokens: 2000 }))
      const r = yield* post("/v1/chat/completions", chatBody("x", { max_tokens: 2000 }))
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
      yield* post("/v1/chat/completions", chatBody("hi", { max_tokens: 60 }))
      const r = yield* post("/v1/chat/completions", chatBody("hi", { max_tokens: 90 }))
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
      yield* post("/v1/chat/completions", chatBody("hi"))
      const r = yield* post("/v1/chat/completions", chatBody("hi"))
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

  it.effect("slow responses and timeouts wait on virtual time; a client timeout aborts", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const slow = yield* call(() => c.chat.completions.create(chat("hi")), 30_000)
      expect(Either.isRight(slow)).toBe(true)
    }).pipe(withSim(Scenario.tier1({ faults: { rates: { slow: 1 }, slowMs: 30_000 } }))))

  it.effect("timeout fault: hangs for timeoutMs then 504; an abort signal cuts it", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const controller = new AbortController()
      const fiber = yield* Effect.fork(
        Effect.either(Effect.tryPromise(() => c.chat.completions.create(chat("hi"), { signal: controller.signal })))
      )
      yield* TestClock.adjust("10 seconds")
      controller.abort()
      const aborted = yield* fiber.await
      expect(aborted._tag).toBe("Success")
      const late = yield* call(() => c.chat.completions.create(chat("hi")), 120_000)
      expect(sdkError(late).status).toBe(504)
    }).pipe(withSim(Scenario.tier1({ faults: { rates: { timeout: 1 }, timeoutMs: 120_000 } }))))

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
      const result = yield* call(async () => {
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
      }, 100 + 20 * 10)
      const { text, usage } = Either.getOrThrow(result)
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
      yield* post("/v1/chat/completions", chatBody("hi"))
      const r = yield* post("/v1/chat/completions", chatBody("hi"))
      expect(r.headers["retry-after"]).toBe(new Date(60_000).toUTCString())
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
