import { describe, expect, it } from "@effect/vitest"
import { OpenAiError } from "@sluice/openai"
import { Duration, Effect, Schema } from "effect"
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  APIUserAbortError,
  InternalServerError,
  RateLimitError
} from "openai"

const now = Date.parse("2026-11-23T01:00:00Z")
const ms = (d: Duration.Duration | undefined) => (d === undefined ? undefined : Duration.toMillis(d))

const sdk = (status: number, error: Record<string, unknown>, headers: Record<string, string> = {}) =>
  APIError.generate(status, { error }, undefined, new Headers({ "x-request-id": "req_123", ...headers }))

const TPM =
  "Rate limit reached for gpt-4o-mini in organization org-abc on tokens per min (TPM): Limit 200000, Used 195869, Requested 4412. Please try again in 84ms. Visit https://platform.openai.com/account/rate-limits to learn more."
const RPM =
  "Rate limit reached for gpt-4o in project proj_abc organization org_abc on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more."
const RPD =
  "Rate limit reached for gpt-4o in organization org-abc on requests per day (RPD): Limit 1000, Used 1000, Requested 1. Please try again in 7m12s. Visit https://platform.openai.com/account/rate-limits to learn more."
const TOO_LARGE =
  "Request too large for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Requested 34307. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more."
const QUOTA = "You exceeded your current quota, please check your plan and billing details."

describe("OpenAiError.classify", () => {
  it("a transient TPM 429 from the SDK is RateLimited with every detail", () => {
    const error = OpenAiError.classify(
      sdk(429, { message: TPM, type: "tokens", code: "rate_limit_exceeded", param: null }),
      { model: "gpt-4o-mini", now }
    )
    expect(error._tag).toBe("RateLimited")
    if (error._tag !== "RateLimited") return
    expect(error.retryable).toBe(true)
    expect(ms(error.retryAfter)).toBe(84)
    expect(error).toMatchObject({
      dimension: "tokens",
      window: "minute",
      limit: 200000,
      used: 195869,
      requested: 4412,
      scope: "organization",
      organization: "org-abc",
      model: "gpt-4o-mini",
      requestId: "req_123",
      status: 429,
      code: "rate_limit_exceeded",
      type: "tokens",
      message: TPM
    })
    expect(error).toBeInstanceOf(OpenAiError.RateLimited)
    expect(error).toBeInstanceOf(Error)
  })

  it("retry-after never loses to a shorter hint, and project scope is read", () => {
    const error = OpenAiError.classify(
      sdk(429, { message: RPM, type: "requests", code: "rate_limit_exceeded" }, { "retry-after": "21" }),
      { now }
    )
    expect(error).toMatchObject({ _tag: "RateLimited", scope: "project", project: "proj_abc", dimension: "requests" })
    expect(ms(error.retryAfter)).toBe(21_000)
  })

  it("a daily limit is RateLimited with window day", () => {
    const error = OpenAiError.classify(sdk(429, { message: RPD, type: "requests", code: "rate_limit_exceeded" }), {
      now
    })
    expect(error).toMatchObject({ _tag: "RateLimited", window: "day", limit: 1000, retryable: true })
    expect(ms(error.retryAfter)).toBe(432_000)
  })

  it("request too large is never retryable", () => {
    const error = OpenAiError.classify(sdk(429, { message: TOO_LARGE, type: "tokens", code: "rate_limit_exceeded" }))
    expect(error).toMatchObject({ _tag: "RequestTooLarge", retryable: false, limit: 30000, requested: 34307 })
  })

  it("insufficient_quota is QuotaExhausted, even if the server says to retry", () => {
    const error = OpenAiError.classify(
      sdk(429, { message: QUOTA, type: "insufficient_quota", code: "insufficient_quota" }, { "x-should-retry": "true" })
    )
    expect(error).toMatchObject({ _tag: "QuotaExhausted", retryable: false })
  })

  it.each(
    [
      [
        400,
        { code: "context_length_exceeded", message: "This model's maximum context length is 128000 tokens." },
        "ContextLengthExceeded",
        false
      ],
      [400, { code: "content_policy_violation", message: "Your request was rejected." }, "ContentPolicy", false],
      [400, { code: null, message: "Invalid 'messages': empty array." }, "BadRequest", false],
      [422, { message: "Unprocessable" }, "BadRequest", false],
      [401, { code: "invalid_api_key", message: "Incorrect API key provided." }, "Unauthorized", false],
      [403, { message: "You are not allowed to generate images at this tier." }, "PermissionDenied", false],
      // the real body for a model the tier cannot use: 403 with the not-found code
      [
        403,
        { code: "model_not_found", message: "The model `dall-e-3` does not exist or you do not have access to it." },
        "PermissionDenied",
        false
      ],
      [
        401,
        { code: "mismatched_organization", message: "OpenAI-Organization header should match." },
        "Unauthorized",
        false
      ],
      [404, { code: "model_not_found", message: "The model `gpt-9` does not exist." }, "NotFound", false],
      [409, { message: "Conflict" }, "Conflict", true],
      [408, { message: "Request timeout" }, "Timeout", true],
      [500, { type: "server_error", message: "The server had an error." }, "ServerError", true],
      [502, { message: "Bad gateway" }, "ServerError", true],
      [503, { message: "The engine is currently overloaded, please try again later." }, "Overloaded", true],
      [504, { message: "Gateway timeout" }, "ServerError", true],
      [418, { message: "teapot" }, "BadRequest", false]
    ] as const
  )("%d %j is %s (retryable %s)", (status, body, tag, retryable) => {
    const error = OpenAiError.classify(sdk(status, body))
    expect(error._tag).toBe(tag)
    expect(error.retryable).toBe(retryable)
    expect(error.status).toBe(status)
  })

  it("x-should-retry: false stops a retryable kind; true revives an unknown one but never a 400", () => {
    expect(OpenAiError.classify(sdk(503, { message: "busy" }, { "x-should-retry": "false" })).retryable).toBe(false)
    expect(OpenAiError.classify(sdk(500, { message: "x" }, { "x-should-retry": "false" })).retryable).toBe(false)
    expect(OpenAiError.classify(sdk(400, { message: "bad" }, { "x-should-retry": "true" })).retryable).toBe(false)
    const odd = OpenAiError.fromHttp({ status: 302, headers: { "x-should-retry": "true" }, body: "" })
    expect(odd).toMatchObject({ _tag: "UnknownError", retryable: true })
  })

  it("connection-level SDK errors", () => {
    expect(OpenAiError.classify(new APIConnectionTimeoutError())).toMatchObject({ _tag: "Timeout", retryable: true })
    expect(OpenAiError.classify(new APIConnectionError({ message: "Connection error." }))).toMatchObject({
      _tag: "ConnectionError",
      retryable: true
    })
    expect(OpenAiError.classify(new APIUserAbortError())).toMatchObject({ _tag: "UnknownError", retryable: false })
    const reset = Object.assign(new Error("socket hang up"), { code: "ECONNRESET" })
    expect(OpenAiError.classify(reset)._tag).toBe("ConnectionError")
    expect(OpenAiError.classify(new TypeError("fetch failed"))._tag).toBe("ConnectionError")
  })

  it("SDK subclasses keep their status; a 503 via InternalServerError is Overloaded", () => {
    const e = new InternalServerError(503, { message: "overloaded" }, undefined, new Headers({ "retry-after": "2" }))
    expect(OpenAiError.classify(e, { now })).toMatchObject({ _tag: "Overloaded", status: 503 })
    expect(ms(OpenAiError.classify(e, { now }).retryAfter)).toBe(2000)
    const r = new RateLimitError(429, undefined, undefined, new Headers({ "retry-after-ms": "1500" }))
    expect(OpenAiError.classify(r, { now })).toMatchObject({ _tag: "RateLimited" })
    expect(ms(OpenAiError.classify(r, { now }).retryAfter)).toBe(1500)
  })

  it("raw HTTP responses: string and parsed bodies, HTTP-date retry-after", () => {
    const error = OpenAiError.fromHttp({
      status: 429,
      headers: { "retry-after": "Mon, 23 Nov 2026 01:00:20 GMT", "x-request-id": "req_9" },
      body: JSON.stringify({ error: { message: RPM, type: "requests", code: "rate_limit_exceeded", param: null } })
    }, { now, model: "gpt-4o" })
    expect(error).toMatchObject({ _tag: "RateLimited", requestId: "req_9", model: "gpt-4o" })
    expect(ms(error.retryAfter)).toBe(20_000)
    expect(OpenAiError.fromHttp({ status: 502, body: "<html>bad gateway</html>" })._tag).toBe("ServerError")
    expect(OpenAiError.classify({ status: 404, error: { message: "nope", code: "model_not_found" } })._tag).toBe(
      "NotFound"
    )
  })

  it.effect("fetch Responses are read", () =>
    Effect.gen(function*() {
      const response = new Response(JSON.stringify({ error: { message: QUOTA, code: "insufficient_quota" } }), {
        status: 429
      })
      const error = yield* OpenAiError.fromResponse(response)
      expect(error._tag).toBe("QuotaExhausted")
    }))

  it("in-stream response.failed events", () => {
    const event = {
      type: "response.failed",
      sequence_number: 7,
      response: {
        id: "resp_1",
        object: "response",
        status: "failed",
        model: "gpt-4o-2024-08-06",
        error: { code: "rate_limit_exceeded", message: TPM }
      }
    }
    const error = OpenAiError.classify(event)
    expect(error).toMatchObject({ _tag: "RateLimited", model: "gpt-4o-2024-08-06", dimension: "tokens" })
    expect(ms(error.retryAfter)).toBe(84)
    expect(
      OpenAiError.fromResponseFailed({
        type: "response.failed",
        response: { error: { code: "server_error", message: "x" } }
      })
    ).toMatchObject({ _tag: "ServerError", retryable: true })
    expect(
      OpenAiError.fromResponseFailed({
        type: "response.failed",
        response: { error: { code: "invalid_prompt", message: "x" } }
      })
        ._tag
    ).toBe("BadRequest")
    expect(
      OpenAiError.fromResponseFailed({ type: "response.failed", response: { error: { code: "weird", message: "x" } } })
    ).toMatchObject({ _tag: "ServerError", retryable: true })
    expect(OpenAiError.classify({ type: "error", code: "insufficient_quota", message: QUOTA, param: null })._tag).toBe(
      "QuotaExhausted"
    )
    expect(
      OpenAiError.classify({
        object: "response",
        status: "failed",
        error: { code: "vector_store_timeout", message: "t" }
      })
        ._tag
    ).toBe("Timeout")
  })

  it("errors never hold the API key and round-trip through their schema", () => {
    const key = "sk-proj-SECRET"
    const e = new APIError(
      401,
      { message: "Incorrect API key provided: sk-proj-****CRET." },
      undefined,
      new Headers({
        authorization: `Bearer ${key}`
      })
    )
    const error = OpenAiError.classify(e)
    expect(JSON.stringify(error)).not.toContain(key)
    expect(Object.values(error).some((v) => typeof v === "object" && v instanceof Headers)).toBe(false)
    const encoded = Schema.encodeSync(OpenAiError.OpenAiError)(error)
    const decoded = Schema.decodeSync(OpenAiError.OpenAiError)(encoded)
    expect(decoded._tag).toBe("Unauthorized")
    expect(OpenAiError.isOpenAiError(decoded)).toBe(true)
    expect(OpenAiError.classify(decoded)).toBe(decoded)
  })
})
