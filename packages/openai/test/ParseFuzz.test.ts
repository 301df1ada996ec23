/**
 * Fuzzing the parsers of what a server (or a proxy in front of it) sends back: headers, Go durations,
 * "try again in" messages, `retry-after` seconds and dates, error bodies, and the routing file. Whatever
 * the input, each gives a value or a typed error, never a throw; every duration is finite and non-negative
 * and every number finite (an infinite `retry-after` would close a gate for ever and wedge the job).
 */
import { describe, expect, it } from "@effect/vitest"
import { OpenAiError, Parse, Routing } from "@sluice/openai"
import { Duration, Effect, Exit } from "effect"
import * as FastCheck from "effect/FastCheck"

const NOW = Date.UTC(2026, 5, 1)

const units = ["h", "m", "s", "ms", "us", "µs", "μs", "ns", "", "x", "min", " s"] as const

/** Near-misses of what servers send: digit runs (some huge), fractions, units, signs, spaces, dates. */
const numberish = FastCheck.oneof(
  FastCheck.stringMatching(/^[+-]?\d{1,3}(\.\d{0,3})?$/),
  FastCheck.integer({ min: 1, max: 400 }).map((n) => "9".repeat(n)),
  FastCheck.constantFrom("1e400", "-0", "0", ".5", "5.", "NaN", "Infinity", "-1", "0x10", " 12 ", "1_000", "١٢")
)

const duration = FastCheck.oneof(
  FastCheck.array(FastCheck.tuple(numberish, FastCheck.constantFrom(...units)), { minLength: 1, maxLength: 4 })
    .map((parts) => parts.map(([n, u]) => `${n}${u}`).join("")),
  FastCheck.date({ min: new Date(-8.64e15), max: new Date(8.64e15), noInvalidDate: true }).map((d) => d.toUTCString()),
  FastCheck.constantFrom("Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 275760 23:59:59 GMT", "tomorrow", "in 5s"),
  FastCheck.string({ maxLength: 30 }),
  FastCheck.string({ unit: "binary", maxLength: 12 })
)

const headerValue = FastCheck.oneof(
  duration,
  numberish,
  FastCheck.array(duration, { maxLength: 2 }),
  FastCheck.integer(),
  FastCheck.double(),
  FastCheck.constant(null),
  FastCheck.constant(undefined)
)

const headerName = FastCheck.constantFrom(
  "retry-after",
  "Retry-After",
  "retry-after-ms",
  "x-ms-retry-after-ms",
  "x-should-retry",
  "x-request-id",
  ...(["requests", "tokens", "images"] as const).flatMap((d) => [
    `x-ratelimit-limit-${d}`,
    `x-ratelimit-remaining-${d}`,
    `x-ratelimit-reset-${d}`
  ])
)

const headers = FastCheck.dictionary(FastCheck.oneof(headerName, FastCheck.string({ maxLength: 8 })), headerValue, {
  maxKeys: 8
})

const message = FastCheck.oneof(
  FastCheck.string({ maxLength: 80 }),
  FastCheck.tuple(FastCheck.string({ maxLength: 20 }), duration, FastCheck.string({ maxLength: 20 })).map(
    ([a, d, b]) => `${a} Please try again in ${d}${b}`
  ),
  FastCheck.tuple(numberish, FastCheck.constantFrom("ms", "seconds", "minutes", "hours", "days", "sec")).map(
    ([n, u]) => `try again in ${n} ${u}.`
  ),
  FastCheck.tuple(numberish, numberish, numberish).map(([l, u, r]) =>
    `Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit ${l}, Used ${u}, Requested ${r}.`
  ),
  FastCheck.constantFrom(
    "Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 90000. The input or output tokens must be reduced",
    `in project ${"a-".repeat(5_000)}!`,
    `organization ${"_".repeat(10_000)}`,
    `try again in ${"1m".repeat(5_000)}x`
  )
)

/** No wait, or a finite one of at most a week (beyond, a figure is garbage and would wedge a gate). */
const isWait = (d: Duration.Duration | undefined) =>
  d === undefined ||
  (Duration.isFinite(d) && Duration.toMillis(d) >= 0 && Duration.toMillis(d) <= Parse.MAX_WAIT_MILLIS)

const isNumber = (n: number | undefined) => n === undefined || Number.isFinite(n)

describe("Parse: fuzzed", () => {
  it("durations: goDuration, resetDuration, retryAfter, retryAfterMillis give a finite wait or nothing", () =>
    FastCheck.assert(
      FastCheck.property(duration, (text) => {
        expect(isWait(Parse.goDuration(text))).toBe(true)
        expect(isWait(Parse.resetDuration(text))).toBe(true)
        expect(isWait(Parse.retryAfter(text, NOW))).toBe(true)
        expect(isWait(Parse.retryAfterMillis(text))).toBe(true)
      }),
      { numRuns: 2_000 }
    ))

  it("headers: rateLimitHeaders, retryAfterFromHeaders, shouldRetry never throw and give finite figures", () =>
    FastCheck.assert(
      FastCheck.property(headers, (input) => {
        for (const form of [input as Parse.HeadersInput, headersOf(input)]) {
          const parsed = Parse.rateLimitHeaders(form)
          for (const d of Object.values(parsed)) {
            expect(isNumber(d.limit) && (d.limit === undefined || d.limit >= 0)).toBe(true)
            expect(isNumber(d.remaining) && (d.remaining === undefined || d.remaining >= 0)).toBe(true)
            expect(isWait(d.reset)).toBe(true)
          }
          expect(isWait(Parse.retryAfterFromHeaders(form, NOW))).toBe(true)
          expect([true, false, undefined]).toContain(Parse.shouldRetry(form))
        }
      }),
      { numRuns: 1_000 }
    ))

  it("messages: tryAgainIn, limitNumbers, dimensionWindow, limitScope, isRequestTooLarge", () =>
    FastCheck.assert(
      FastCheck.property(message, (text) => {
        expect(isWait(Parse.tryAgainIn(text))).toBe(true)
        const numbers = Parse.limitNumbers(text)
        expect(isNumber(numbers.limit) && isNumber(numbers.used) && isNumber(numbers.requested)).toBe(true)
        Parse.dimensionWindow(text)
        Parse.limitScope(text)
        expect(typeof Parse.isRequestTooLarge(text)).toBe("boolean")
      }),
      { numRuns: 1_000 }
    ))

  it("error answers: classify and fromHttp give a typed error for any status, headers and body", () =>
    FastCheck.assert(
      FastCheck.property(
        FastCheck.integer({ min: 100, max: 599 }),
        headers,
        FastCheck.oneof(
          FastCheck.jsonValue({ maxDepth: 3 }),
          FastCheck.string({ maxLength: 60 }),
          FastCheck.record({
            error: FastCheck.record({
              message: FastCheck.oneof(message, FastCheck.jsonValue({ maxDepth: 1 })),
              code: FastCheck.oneof(
                FastCheck.constantFrom("rate_limit_exceeded", "insufficient_quota", "context_length_exceeded"),
                FastCheck.jsonValue({ maxDepth: 1 })
              ),
              type: FastCheck.jsonValue({ maxDepth: 1 }),
              param: FastCheck.jsonValue({ maxDepth: 1 })
            }, { requiredKeys: [] })
          })
        ),
        (status, h, body) => {
          for (
            const error of [
              OpenAiError.fromHttp({ status, headers: h as Parse.HeadersInput, body }, { now: NOW }),
              OpenAiError.classify({ status, headers: h, body }, { now: NOW }),
              OpenAiError.classify(body, { now: NOW })
            ]
          ) {
            expect(OpenAiError.isOpenAiError(error)).toBe(true)
            expect(isWait(error.retryAfter)).toBe(true)
          }
        }
      ),
      { numRuns: 1_000 }
    ))
})

/** The same headers as a `Headers` object (what the SDK hands over), dropping what `Headers` refuses. */
const headersOf = (input: Record<string, unknown>): Headers => {
  const out = new Headers()
  for (const [k, v] of Object.entries(input)) {
    try {
      if (v !== null && v !== undefined) out.append(k, String(v))
    } catch {
      // not a valid header name or value for fetch: a server could not send it either
    }
  }
  return out
}

describe("Routing config: fuzzed", () => {
  const deployment = FastCheck.record({
    id: FastCheck.oneof(FastCheck.string({ maxLength: 6 }), FastCheck.jsonValue({ maxDepth: 1 })),
    model: FastCheck.oneof(FastCheck.constantFrom("gpt-4o", "gpt-4o-mini"), FastCheck.jsonValue({ maxDepth: 1 })),
    organization: FastCheck.jsonValue({ maxDepth: 1 }),
    baseURL: FastCheck.oneof(FastCheck.webUrl(), FastCheck.jsonValue({ maxDepth: 1 })),
    price: FastCheck.jsonValue({ maxDepth: 2 }),
    contextWindow: FastCheck.oneof(FastCheck.integer(), FastCheck.jsonValue({ maxDepth: 1 })),
    tags: FastCheck.jsonValue({ maxDepth: 2 }),
    aliases: FastCheck.jsonValue({ maxDepth: 2 })
  }, { requiredKeys: [] })
  const config = FastCheck.oneof(
    FastCheck.jsonValue({ maxDepth: 4 }),
    FastCheck.record({
      deployments: FastCheck.oneof(
        FastCheck.array(deployment, { maxLength: 4 }),
        FastCheck.jsonValue({ maxDepth: 2 })
      ),
      strategy: FastCheck.oneof(
        FastCheck.constantFrom("priority", "leastWait", "weightedRandom", "cheapest", "lowestLatency"),
        FastCheck.jsonValue({ maxDepth: 2 })
      ),
      fallback: FastCheck.jsonValue({ maxDepth: 3 }),
      tasks: FastCheck.jsonValue({ maxDepth: 3 })
    }, { requiredKeys: [] })
  )

  it.effect("decodeConfig: a config or a RoutingConfigError, never a defect", () =>
    Effect.gen(function*() {
      for (const input of FastCheck.sample(config, { numRuns: 1_500, seed: 15 })) {
        const exit = yield* Effect.exit(Routing.decodeConfig(input, "fuzz.json"))
        if (Exit.isFailure(exit)) {
          expect(exit.cause._tag, JSON.stringify(input).slice(0, 300)).toBe("Fail")
        }
      }
    }))
})
