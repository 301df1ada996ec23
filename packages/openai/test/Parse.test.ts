import { describe, expect, it } from "@effect/vitest"
import { Parse } from "@sluice/openai"
import { Duration } from "effect"

const ms = (d: Duration.Duration | undefined) => (d === undefined ? undefined : Duration.toMillis(d))

describe("Parse", () => {
  describe("goDuration", () => {
    it.each([
      ["12ms", 12],
      ["84ms", 84],
      ["120ms", 120],
      ["1.146s", 1146],
      ["2.5s", 2500],
      ["20s", 20_000],
      ["1s", 1000],
      ["6m0s", 360_000],
      ["2m52.8s", 172_800],
      ["1m2.5s", 62_500],
      ["1m30s", 90_000],
      ["1h30m", 5_400_000],
      ["1h0m0s", 3_600_000],
      ["0s", 0],
      ["0", 0],
      ["500us", 0.5],
      ["1500µs", 1.5],
      [" 7s ", 7000]
    ])("%s is %d ms", (text, expected) => {
      expect(ms(Parse.goDuration(text))).toBe(expected)
    })

    it.each(["", "abc", "12", "-1s", "1x", "s", "1.2.3s", "1s junk"])("rejects %j", (text) => {
      expect(Parse.goDuration(text)).toBeUndefined()
    })
  })

  describe("resetDuration (OpenAI Go durations and Azure integer seconds)", () => {
    it.each([
      ["1s", 1000],
      ["6m0s", 360_000],
      ["12ms", 12],
      ["60", 60_000],
      ["0", 0],
      ["-1", undefined],
      ["", undefined],
      [undefined, undefined],
      ["soon", undefined]
    ])("%j is %j ms", (text, expected) => {
      expect(ms(Parse.resetDuration(text))).toBe(expected)
    })
  })

  describe("retryAfter", () => {
    const now = Date.parse("Mon, 23 Nov 2026 01:00:00 GMT")
    it.each([
      ["20", 20_000],
      ["1", 1000],
      ["0", 0],
      ["1.5", 1500],
      ["Mon, 23 Nov 2026 01:00:30 GMT", 30_000],
      ["Mon, 23 Nov 2026 00:59:00 GMT", 0],
      ["-5", undefined],
      ["", undefined],
      ["later", undefined],
      [undefined, undefined]
    ])("%j is %j ms", (text, expected) => {
      expect(ms(Parse.retryAfter(text, now))).toBe(expected)
    })

    it.each([
      ["250", 250],
      ["1146.5", 1146.5],
      ["0", 0],
      ["-1", undefined],
      ["x", undefined]
    ])("retry-after-ms %j is %j ms", (text, expected) => {
      expect(ms(Parse.retryAfterMillis(text))).toBe(expected)
    })

    it("takes the longest of retry-after-ms, x-ms-retry-after-ms and retry-after", () => {
      // retry-after is the millisecond wait rounded up to seconds: the precise figure is the wait
      expect(ms(Parse.retryAfterFromHeaders({ "retry-after": "20", "retry-after-ms": "19500" }, now))).toBe(19_500)
      expect(ms(Parse.retryAfterFromHeaders({ "retry-after": "1", "retry-after-ms": "14" }, now))).toBe(14)
      // hints that disagree beyond the rounding: the longest, never undercut
      expect(ms(Parse.retryAfterFromHeaders({ "retry-after": "20", "retry-after-ms": "5000" }, now))).toBe(20_000)
      expect(ms(Parse.retryAfterFromHeaders({ "retry-after": "2", "retry-after-ms": "3500" }, now))).toBe(3_500)
      expect(ms(Parse.retryAfterFromHeaders({ "Retry-After-Ms": "1500" }, now))).toBe(1500)
      expect(ms(Parse.retryAfterFromHeaders(new Headers({ "x-ms-retry-after-ms": "3000" }), now))).toBe(3000)
      expect(Parse.retryAfterFromHeaders({}, now)).toBeUndefined()
      expect(Parse.retryAfterFromHeaders(undefined, now)).toBeUndefined()
    })
  })

  describe("x-should-retry", () => {
    it.each([["true", true], ["false", false], ["TRUE", true], ["maybe", undefined], [undefined, undefined]])(
      "%j is %j",
      (value, expected) => {
        expect(Parse.shouldRetry(value === undefined ? {} : { "x-should-retry": value })).toBe(expected)
      }
    )
  })

  describe("rateLimitHeaders", () => {
    it("reads OpenAI's headers", () => {
      const parsed = Parse.rateLimitHeaders(
        new Headers({
          "x-ratelimit-limit-requests": "60",
          "x-ratelimit-limit-tokens": "150000",
          "x-ratelimit-remaining-requests": "59",
          "x-ratelimit-remaining-tokens": "149984",
          "x-ratelimit-reset-requests": "1s",
          "x-ratelimit-reset-tokens": "6m0s"
        })
      )
      expect(parsed.requests).toEqual({ limit: 60, remaining: 59, reset: Duration.millis(1000) })
      expect(parsed.tokens).toEqual({ limit: 150000, remaining: 149984, reset: Duration.millis(360_000) })
      expect(parsed.images).toBeUndefined()
    })

    it("reads image variants", () => {
      const parsed = Parse.rateLimitHeaders({
        "x-ratelimit-limit-images": "5",
        "x-ratelimit-remaining-images": "4",
        "x-ratelimit-reset-images": "12s"
      })
      expect(parsed.images).toEqual({ limit: 5, remaining: 4, reset: Duration.millis(12_000) })
    })

    it("reads Azure's integer seconds, -1 sentinels and negative remaining", () => {
      const parsed = Parse.rateLimitHeaders({
        "x-ratelimit-limit-tokens": "-1",
        "x-ratelimit-remaining-tokens": "-2048",
        "x-ratelimit-reset-tokens": "60",
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "-1"
      })
      expect(parsed.tokens).toEqual({ limit: undefined, remaining: 0, reset: Duration.millis(60_000) })
      expect(parsed.requests).toEqual({ limit: 100, remaining: 0, reset: undefined })
    })
  })

  describe("messages", () => {
    const tpm =
      "Rate limit reached for gpt-4o-mini in organization org-abc123 on tokens per min (TPM): Limit 200000, Used 195869, Requested 4412. Please try again in 84ms. Visit https://platform.openai.com/account/rate-limits to learn more."
    const rpm =
      "Rate limit reached for gpt-4o in organization org-abc123 on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more."
    const rpd =
      "Rate limit reached for gpt-4o in organization org-abc123 on requests per day (RPD): Limit 1000, Used 1000, Requested 1. Please try again in 1m26.4s. Visit https://platform.openai.com/account/rate-limits to learn more."
    const tpd =
      "Rate limit reached for gpt-4o in project proj_XYZ789 organization org_abc123 on tokens per day (TPD): Limit 90000, Used 89500, Requested 1200. Please try again in 6m0s."
    const tooLarge =
      "Request too large for gpt-4o in organization org-abc123 on tokens per min (TPM): Limit 30000, Requested 34307. The input or output tokens must be reduced in order to run successfully."
    const images = "Rate limit reached for images per minute. Please try again in 12s."
    const quota = "You exceeded your current quota, please check your plan and billing details."

    it.each([
      [tpm, 84],
      [rpm, 20_000],
      [rpd, 86_400],
      [tpd, 360_000],
      ["Please try again in 1.146s.", 1146],
      ["Please try again in 120ms", 120],
      ["Please try again in 2.5s.", 2500],
      ["Please try again in 1m2.5s.", 62_500],
      ["Please try again in 20 seconds.", 20_000],
      ["Please try again in 2 minutes", 120_000],
      [tooLarge, undefined],
      [quota, undefined]
    ])("try again in: %#", (message, expected) => {
      expect(ms(Parse.tryAgainIn(message))).toBe(expected)
    })

    it.each([
      [tpm, { limit: 200000, used: 195869, requested: 4412 }],
      [rpm, { limit: 3, used: 3, requested: 1 }],
      [rpd, { limit: 1000, used: 1000, requested: 1 }],
      [tooLarge, { limit: 30000, used: undefined, requested: 34307 }],
      [quota, { limit: undefined, used: undefined, requested: undefined }]
    ])("limit numbers: %#", (message, expected) => {
      expect(Parse.limitNumbers(message)).toEqual(expected)
    })

    it.each([
      [tpm, "tokens", "minute"],
      [rpm, "requests", "minute"],
      [rpd, "requests", "day"],
      [tpd, "tokens", "day"],
      [images, "images", "minute"],
      ["... on images per min (IPM): Limit 5", "images", "minute"],
      ["limit reached (RPD)", "requests", "day"],
      [quota, undefined, undefined]
    ])("dimension and window: %#", (message, dimension, window) => {
      expect(Parse.dimensionWindow(message)).toEqual({ dimension, window })
    })

    it("tells organization from project scope", () => {
      expect(Parse.limitScope(tpm)).toEqual({ scope: "organization", organization: "org-abc123", project: undefined })
      expect(Parse.limitScope(tpd)).toEqual({ scope: "project", organization: "org_abc123", project: "proj_XYZ789" })
      expect(Parse.limitScope(quota)).toEqual({ scope: undefined, organization: undefined, project: undefined })
    })

    it("recognises a request too large", () => {
      expect(Parse.isRequestTooLarge(tooLarge)).toBe(true)
      expect(Parse.isRequestTooLarge(tpm)).toBe(false)
    })
  })
})
