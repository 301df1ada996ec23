/**
 * Parsers for what OpenAI (and Azure OpenAI) say about rate limits: Go-style durations in
 * `x-ratelimit-reset-*`, `retry-after` (seconds or an HTTP date), `retry-after-ms`,
 * `x-ms-retry-after-ms`, Azure's integer seconds and sentinels, and the 429 message ("… on tokens per
 * min (TPM): Limit 200000, Used 195869, Requested 4412. Please try again in 84ms.").
 *
 * Every parser is total: what it cannot read is `undefined`, never an exception.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"

/**
 * Anything that holds response headers: a fetch `Headers`, or a plain record (any case).
 *
 * @since 0.1.0
 * @category models
 */
export type HeadersInput =
  | { readonly get: (name: string) => string | null | undefined }
  | { readonly [name: string]: string | ReadonlyArray<string> | number | null | undefined }

/**
 * Reads one header, case-insensitively, from any {@link HeadersInput}.
 *
 * @since 0.1.0
 * @category headers
 */
export const header = (headers: HeadersInput | null | undefined, name: string): string | undefined => {
  if (headers === null || headers === undefined) return undefined
  if (typeof (headers as { get?: unknown }).get === "function") {
    const v = (headers as { get: (name: string) => string | null | undefined }).get(name)
    return v === null || v === undefined ? undefined : String(v)
  }
  const lower = name.toLowerCase()
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== lower || v === null || v === undefined) continue
    if (Array.isArray(v)) return v.length === 0 ? undefined : String(v[0])
    return String(v)
  }
  return undefined
}

const UNIT_MILLIS: Record<string, number> = {
  h: 3_600_000,
  m: 60_000,
  s: 1_000,
  ms: 1,
  us: 0.001,
  "µs": 0.001,
  "μs": 0.001,
  ns: 0.000001
}

const GO_DURATION = /^([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:h|ms|m|s|us|µs|μs|ns))+$/
const GO_PART = /(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|μs|ns)/g

/**
 * Parses a Go-style duration (`12ms`, `1.146s`, `6m0s`, `2m52.8s`, `1h30m`, `0s`). Negative values
 * and malformed text give `undefined`.
 *
 * @since 0.1.0
 * @category durations
 * @example
 * ```ts
 * import * as Duration from "effect/Duration"
 * import { Parse } from "@sluice/openai"
 *
 * Parse.goDuration("2m52.8s") // Duration.millis(172_800)
 * ```
 */
export const goDuration = (text: string): Duration.Duration | undefined => {
  const s = text.trim()
  if (s === "0") return Duration.zero
  const m = GO_DURATION.exec(s)
  if (m === null || m[1] === "-") return undefined
  let total = 0
  for (const part of s.matchAll(GO_PART)) total += Number(part[1]) * UNIT_MILLIS[part[2]]
  return wait(total)
}

const roundMillis = (ms: number): number => Math.round(ms * 1_000_000) / 1_000_000

/**
 * The longest wait a header or message is believed: a week. OpenAI's longest limit window is a day; a
 * longer (or infinite: `retry-after: 9…9` with 400 digits) figure is garbage from a server or proxy, and
 * believing it would close a gate for ever and wedge every call behind it, so it is ignored.
 *
 * @since 0.1.0
 * @category durations
 */
export const MAX_WAIT_MILLIS = 7 * 86_400_000

/** A wait in milliseconds as a `Duration`, or `undefined` when it is not a finite figure in [0, a week]. */
const wait = (ms: number): Duration.Duration | undefined => {
  const rounded = roundMillis(ms)
  return Number.isFinite(rounded) && rounded >= 0 && rounded <= MAX_WAIT_MILLIS ? Duration.millis(rounded) : undefined
}

/**
 * Parses an `x-ratelimit-reset-*` value: a Go duration (OpenAI) or a number of seconds (Azure).
 * Azure's `-1` sentinel (unknown) gives `undefined`; `0` is zero.
 *
 * @since 0.1.0
 * @category durations
 */
export const resetDuration = (text: string | undefined): Duration.Duration | undefined => {
  if (text === undefined) return undefined
  const s = text.trim()
  if (s === "") return undefined
  if (/^[+-]?\d+(\.\d+)?$/.test(s)) {
    return wait(Number(s) * 1000)
  }
  return goDuration(s)
}

/**
 * Parses `retry-after`: delay-seconds (`20`, `1.5`) or an HTTP date, relative to `now` (epoch
 * milliseconds). A date in the past is zero; negative or malformed values give `undefined`.
 *
 * @since 0.1.0
 * @category durations
 */
export const retryAfter = (text: string | undefined, now: number): Duration.Duration | undefined => {
  if (text === undefined) return undefined
  const s = text.trim()
  if (s === "") return undefined
  if (/^[+-]?\d+(\.\d+)?$/.test(s)) {
    return wait(Number(s) * 1000)
  }
  if (!/[a-z]/i.test(s)) return undefined
  const at = Date.parse(s)
  if (Number.isNaN(at)) return undefined
  return wait(Math.max(0, at - now))
}

/**
 * Parses a millisecond header (`retry-after-ms`, `x-ms-retry-after-ms`).
 *
 * @since 0.1.0
 * @category durations
 */
export const retryAfterMillis = (text: string | undefined): Duration.Duration | undefined => {
  if (text === undefined) return undefined
  const s = text.trim()
  if (!/^[+-]?\d+(\.\d+)?$/.test(s)) return undefined
  return wait(Number(s))
}

/**
 * The wait a response asks for, from `retry-after-ms`, `x-ms-retry-after-ms` and `retry-after`. OpenAI
 * sends `retry-after` as whole seconds rounded up and `retry-after-ms` as the same wait to the
 * millisecond, so a millisecond figure within that rounding (no more than `retry-after`, less than a
 * second below it) is the wait: a "try again in 14ms" is not stretched to a second. Hints that disagree
 * by more than the rounding give the longest, so none is ever undercut beyond it.
 *
 * @since 0.1.0
 * @category headers
 */
export const retryAfterFromHeaders = (
  headers: HeadersInput | null | undefined,
  now: number
): Duration.Duration | undefined =>
  preciseWait(
    maxDuration([
      retryAfterMillis(header(headers, "retry-after-ms")),
      retryAfterMillis(header(headers, "x-ms-retry-after-ms"))
    ]),
    retryAfter(header(headers, "retry-after"), now)
  )

/**
 * Combines a precise wait (milliseconds: `retry-after-ms`, a "Please try again in 84ms") with one
 * rounded up to whole seconds (`retry-after`): the precise one when it is within the rounding, else the
 * longest.
 *
 * @since 0.1.0
 * @category durations
 */
export const preciseWait = (
  precise: Duration.Duration | undefined,
  rounded: Duration.Duration | undefined
): Duration.Duration | undefined => {
  if (precise === undefined) return rounded
  if (rounded === undefined) return precise
  const p = Duration.toMillis(precise)
  const r = Duration.toMillis(rounded)
  return p <= r && p > r - 1_000 ? precise : p > r ? precise : rounded
}

/**
 * The longest of some optional durations.
 *
 * @since 0.1.0
 * @category durations
 */
export const maxDuration = (ds: ReadonlyArray<Duration.Duration | undefined>): Duration.Duration | undefined => {
  let out: Duration.Duration | undefined
  for (const d of ds) if (d !== undefined && (out === undefined || Duration.greaterThan(d, out))) out = d
  return out
}

/**
 * `x-should-retry`: `true`, `false`, or `undefined` when absent or unreadable.
 *
 * @since 0.1.0
 * @category headers
 */
export const shouldRetry = (headers: HeadersInput | null | undefined): boolean | undefined => {
  const v = header(headers, "x-should-retry")?.trim().toLowerCase()
  return v === "true" ? true : v === "false" ? false : undefined
}

/**
 * A rate-limit dimension.
 *
 * @since 0.1.0
 * @category models
 */
export type Dimension = "requests" | "tokens" | "images"

/**
 * The state of one dimension as the server reports it.
 *
 * @since 0.1.0
 * @category models
 */
export interface DimensionHeaders {
  /** `x-ratelimit-limit-*`; Azure's `-1` sentinel gives `undefined`. */
  readonly limit: number | undefined
  /** `x-ratelimit-remaining-*`; negative (overdrawn, Azure) values are clamped to 0. */
  readonly remaining: number | undefined
  /** `x-ratelimit-reset-*`: a Go duration or Azure integer seconds. */
  readonly reset: Duration.Duration | undefined
}

/**
 * What a response's `x-ratelimit-*` headers say, per dimension (only those present).
 *
 * @since 0.1.0
 * @category models
 */
export type RateLimitHeaders = { readonly [D in Dimension]?: DimensionHeaders }

const integer = (text: string | undefined): number | undefined => {
  if (text === undefined) return undefined
  const s = text.trim()
  if (!/^[+-]?\d+(\.\d+)?$/.test(s)) return undefined
  const n = Number(s)
  return Number.isFinite(n) ? n : undefined
}

/**
 * Parses the `x-ratelimit-limit|remaining|reset-requests|tokens|images` headers.
 *
 * @since 0.1.0
 * @category headers
 * @example
 * ```ts
 * import { Parse } from "@sluice/openai"
 *
 * Parse.rateLimitHeaders({ "x-ratelimit-limit-tokens": "150000", "x-ratelimit-reset-tokens": "6m0s" })
 * // { tokens: { limit: 150000, remaining: undefined, reset: Duration.minutes(6) } }
 * ```
 */
export const rateLimitHeaders = (headers: HeadersInput | null | undefined): RateLimitHeaders => {
  const out: { [D in Dimension]?: DimensionHeaders } = {}
  for (const d of ["requests", "tokens", "images"] as const) {
    const rawLimit = integer(header(headers, `x-ratelimit-limit-${d}`))
    const rawRemaining = integer(header(headers, `x-ratelimit-remaining-${d}`))
    const reset = resetDuration(header(headers, `x-ratelimit-reset-${d}`))
    if (rawLimit === undefined && rawRemaining === undefined && reset === undefined) continue
    out[d] = {
      limit: rawLimit === undefined || rawLimit < 0 ? undefined : rawLimit,
      remaining: rawRemaining === undefined ? undefined : Math.max(0, rawRemaining),
      reset
    }
  }
  return out
}

// -----------------------------------------------------------------------------
// Messages
// -----------------------------------------------------------------------------

const TRY_AGAIN_GO = /try again in\s+((?:(?:\d+(?:\.\d*)?|\.\d+)(?:h|ms|m|s|us|µs|μs|ns))+)(?![a-z])/i
const TRY_AGAIN_WORDS =
  /try again in\s+(\d+(?:\.\d+)?)\s*(milliseconds?|seconds?|secs?|minutes?|mins?|hours?|hrs?|days?)\b/i

const WORD_MILLIS = (unit: string): number => {
  const u = unit.toLowerCase()
  if (u.startsWith("milli")) return 1
  if (u.startsWith("s")) return 1_000
  if (u.startsWith("min")) return 60_000
  if (u.startsWith("h")) return 3_600_000
  return 86_400_000
}

/**
 * The "Please try again in …" hint of a message: Go-style (`84ms`, `1.146s`, `1m2.5s`, `6m0s`) or in
 * words (`20 seconds`).
 *
 * @since 0.1.0
 * @category messages
 */
export const tryAgainIn = (message: string | undefined): Duration.Duration | undefined => {
  if (message === undefined) return undefined
  const go = TRY_AGAIN_GO.exec(message)
  if (go !== null) return goDuration(go[1])
  const words = TRY_AGAIN_WORDS.exec(message)
  if (words !== null) return wait(Number(words[1]) * WORD_MILLIS(words[2]))
  return undefined
}

/**
 * The numbers of a 429 message: "Limit L, Used U, Requested R" (each optional).
 *
 * @since 0.1.0
 * @category messages
 */
export interface LimitNumbers {
  readonly limit: number | undefined
  readonly used: number | undefined
  readonly requested: number | undefined
}

const numberAfter = (message: string, word: string): number | undefined => {
  const m = new RegExp(`\\b${word}\\s*:?\\s*(\\d[\\d,_]*)`, "i").exec(message)
  if (m === null) return undefined
  const n = Number(m[1].replace(/[,_]/g, ""))
  return Number.isFinite(n) ? n : undefined
}

/**
 * Reads "Limit 200000, Used 195869, Requested 4412" from a message.
 *
 * @since 0.1.0
 * @category messages
 */
export const limitNumbers = (message: string | undefined): LimitNumbers => {
  if (message === undefined) return { limit: undefined, used: undefined, requested: undefined }
  return {
    limit: numberAfter(message, "Limit"),
    used: numberAfter(message, "Used"),
    requested: numberAfter(message, "Requested")
  }
}

/**
 * A rate-limit window.
 *
 * @since 0.1.0
 * @category models
 */
export type Window = "minute" | "day"

/**
 * The dimension and window a message names: "tokens per min (TPM)", "requests per day (RPD)",
 * "images per minute", or an abbreviation alone (`RPM`, `TPM`, `RPD`, `TPD`, `IPM`).
 *
 * @since 0.1.0
 * @category messages
 */
export const dimensionWindow = (
  message: string | undefined
): { readonly dimension: Dimension | undefined; readonly window: Window | undefined } => {
  if (message === undefined) return { dimension: undefined, window: undefined }
  const m = /\b(requests|tokens|images)\s+per\s+(min(?:ute)?|day)\b/i.exec(message)
  if (m !== null) {
    return {
      dimension: m[1].toLowerCase() as Dimension,
      window: m[2].toLowerCase() === "day" ? "day" : "minute"
    }
  }
  const abbr = /\((RPM|TPM|RPD|TPD|IPM|IPD)\)|\b(RPM|TPM|RPD|TPD|IPM|IPD)\b/.exec(message)
  if (abbr !== null) {
    const a = abbr[1] ?? abbr[2]
    const dimension: Dimension = a[0] === "R" ? "requests" : a[0] === "T" ? "tokens" : "images"
    return { dimension, window: a[2] === "D" ? "day" : "minute" }
  }
  return { dimension: undefined, window: undefined }
}

/**
 * Which scope a message names: "in project proj_… organization org_…" is the project's limit; "in
 * organization org-…" alone is the organization's.
 *
 * @since 0.1.0
 * @category messages
 */
export const limitScope = (message: string | undefined): {
  readonly scope: "organization" | "project" | undefined
  readonly organization: string | undefined
  readonly project: string | undefined
} => {
  if (message === undefined) return { scope: undefined, organization: undefined, project: undefined }
  const project = /\bin\s+project\s+([A-Za-z0-9_-]+[A-Za-z0-9])/i.exec(message)?.[1]
  const organization = /\borganization\s+([A-Za-z0-9_-]+[A-Za-z0-9])/i.exec(message)?.[1]
  const scope = project !== undefined ? "project" : organization !== undefined ? "organization" : undefined
  return { scope, organization, project }
}

/**
 * Whether a 429 message says the request itself exceeds the limit ("Request too large … must be
 * reduced"), which waiting never fixes.
 *
 * @since 0.1.0
 * @category messages
 */
export const isRequestTooLarge = (message: string | undefined): boolean =>
  message !== undefined && (/request too large/i.test(message) || /must be reduced/i.test(message))
