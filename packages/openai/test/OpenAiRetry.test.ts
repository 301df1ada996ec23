import { describe, expect, it } from "@effect/vitest"
import { Retry } from "@sluice/core"
import { OpenAiError, OpenAiRetry } from "@sluice/openai"
import { Duration, Effect, Either, Fiber, Option, Ref, TestClock } from "effect"

const http = (status: number, error: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
  OpenAiError.fromHttp({ status, headers, body: { error } }, { now: 0, model: "gpt-4o" })

const RPM = (hint: string) =>
  http(429, {
    code: "rate_limit_exceeded",
    type: "requests",
    message:
      `Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in ${hint}.`
  })
const RPD = http(429, {
  code: "rate_limit_exceeded",
  type: "requests",
  message:
    "Rate limit reached for gpt-4o in organization org-x on requests per day (RPD): Limit 1000, Used 1000, Requested 1. Please try again in 7h12m0s."
})

describe("OpenAiRetry", () => {
  it("kinds: a daily limit is its own kind", () => {
    expect(OpenAiRetry.kind(RPM("20s"))).toBe("RateLimited")
    expect(OpenAiRetry.kind(RPD)).toBe("RateLimitedDaily")
    expect(OpenAiRetry.kind(http(503))).toBe("Overloaded")
  })

  it.each([
    ["insufficient_quota", http(429, { code: "insufficient_quota", type: "insufficient_quota", message: "quota" })],
    ["request too large", http(429, { code: "rate_limit_exceeded", message: "Request too large ... must be reduced" })],
    ["400", http(400, { message: "bad" })],
    ["context length", http(400, { code: "context_length_exceeded", message: "too long" })],
    ["content policy", http(400, { code: "content_policy_violation", message: "no" })],
    ["401", http(401)],
    ["403", http(403)],
    ["404", http(404, { code: "model_not_found" })],
    ["503 with x-should-retry: false", http(503, {}, { "x-should-retry": "false" })]
  ])("never retries %s, whatever the overrides", (_, error) => {
    const permissive = OpenAiRetry.make({
      kinds: {
        QuotaExhausted: { maxRetries: 100 },
        BadRequest: { maxRetries: 100 },
        RequestTooLarge: { maxRetries: 100 },
        Unauthorized: { maxRetries: 100 }
      }
    })
    expect(Retry.delays(OpenAiRetry.defaultPolicy, [error]).delays).toEqual([])
    expect(Retry.delays(permissive, [error]).delays).toEqual([])
  })

  it("the defaults: attempts per kind", () => {
    const count = (error: OpenAiError.OpenAiError) =>
      Retry.delays(OpenAiRetry.defaultPolicy, Array.from({ length: 20 }, () => error)).delays.length
    expect(count(RPM("84ms"))).toBe(6)
    expect(count(http(503))).toBe(4)
    expect(count(http(500))).toBe(3)
    expect(count(http(409))).toBe(2)
    expect(count(OpenAiError.classify(new TypeError("fetch failed")))).toBe(4)
  })

  it("retry-after: 20 is never undercut", () => {
    const error = http(429, { code: "rate_limit_exceeded", message: "Rate limit reached" }, { "retry-after": "20" })
    const { delays } = Retry.delays(OpenAiRetry.defaultPolicy, [error, error, error], { random: [0, 0.5, 0.99] })
    for (const d of delays) expect(Duration.toMillis(d)).toBeGreaterThanOrEqual(20_000)
  })

  it("overrides merge per kind and can switch a kind off", () => {
    const p = OpenAiRetry.make({ kinds: { Overloaded: { maxRetries: 1 }, Conflict: false } })
    expect(Retry.delays(p, [http(503), http(503)]).delays).toHaveLength(1)
    expect(Retry.delays(p, [http(409)]).stop).toEqual(Option.some("NotConfigured"))
  })

  it.effect("a daily 429 fails at once beyond the deadline, with the wait it needs", () =>
    Effect.gen(function*() {
      const calls = yield* Ref.make(0)
      const call = Ref.update(calls, (n) => n + 1).pipe(Effect.zipRight(Effect.fail(RPD)))
      const result = yield* Effect.either(Retry.retry(call, OpenAiRetry.defaultPolicy, { timeout: "1 hour" }))
      expect(Either.isLeft(result) && result.left._tag).toBe("RetryDeadlineExceeded")
      if (Either.isLeft(result) && result.left instanceof Retry.RetryDeadlineExceeded) {
        expect(Duration.toMillis(result.left.wait)).toBe(7.2 * 3_600_000)
      }
      expect(yield* Ref.get(calls)).toBe(1)
      expect(yield* TestClock.currentTimeMillis).toBe(0)
    }))

  it.effect("a 503 burst is recovered within the policy", () =>
    Effect.gen(function*() {
      const calls = yield* Ref.make(0)
      const call = Ref.updateAndGet(calls, (n) => n + 1).pipe(
        Effect.flatMap((n) => (n <= 3 ? Effect.fail(http(503)) : Effect.succeed("ok")))
      )
      const fiber = yield* Effect.fork(Retry.retry(call, OpenAiRetry.defaultPolicy))
      yield* TestClock.adjust("5 minutes")
      expect(yield* Fiber.join(fiber)).toBe("ok")
      expect(yield* Ref.get(calls)).toBe(4)
    }))

  it("breakers count server-side failures, not the caller's mistakes", () => {
    const counts = OpenAiRetry.breakerCounts()
    expect(counts(http(500))).toBe(true)
    expect(counts(http(503))).toBe(true)
    expect(counts(OpenAiError.classify(new TypeError("fetch failed")))).toBe(true)
    expect(counts(http(400))).toBe(false)
    expect(counts(RPM("1s"))).toBe(false)
    expect(OpenAiRetry.breakerCounts({ rateLimits: true })(RPM("1s"))).toBe(true)
  })
})
