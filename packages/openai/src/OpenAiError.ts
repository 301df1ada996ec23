/**
 * The OpenAI error taxonomy: one `Schema.TaggedError` per kind a caller branches on, and the
 * classification that produces them from the `openai` SDK's errors, from raw HTTP responses and from
 * in-stream failures (`response.failed` and `error` events of the Responses API).
 *
 * Every error carries `retryable` (already folding in `x-should-retry`), an optional `retryAfter`
 * (the millisecond hints — `retry-after-ms`, `x-ms-retry-after-ms`, the message's "try again in" — and
 * `retry-after`'s whole seconds only when they disagree beyond its rounding), the model, the request id and the raw status, code, type and param. No error ever holds
 * an API key or a request body.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as Parse from "./Parse.js"

const common = {
  message: Schema.String,
  retryable: Schema.Boolean,
  retryAfter: Schema.optionalWith(Schema.DurationFromSelf, { exact: true }),
  model: Schema.optionalWith(Schema.String, { exact: true }),
  requestId: Schema.optionalWith(Schema.String, { exact: true }),
  status: Schema.optionalWith(Schema.Number, { exact: true }),
  code: Schema.optionalWith(Schema.String, { exact: true }),
  type: Schema.optionalWith(Schema.String, { exact: true }),
  param: Schema.optionalWith(Schema.String, { exact: true })
}

const optionalNumber = Schema.optionalWith(Schema.Number, { exact: true })

/**
 * @since 0.1.0
 * @category models
 */
export const Dimension = Schema.Literal("requests", "tokens", "images")

/**
 * @since 0.1.0
 * @category models
 */
export const Window = Schema.Literal("minute", "day")

/**
 * A rate limit (RPM, TPM, RPD, TPD, IPM) refused the call; waiting fixes it. `window: "day"` waits
 * can be hours: apply the retry policy with a deadline.
 *
 * @since 0.1.0
 * @category errors
 */
export class RateLimited extends Schema.TaggedError<RateLimited>("@sluice/openai/RateLimited")("RateLimited", {
  ...common,
  dimension: Schema.optionalWith(Dimension, { exact: true }),
  window: Schema.optionalWith(Window, { exact: true }),
  limit: optionalNumber,
  used: optionalNumber,
  requested: optionalNumber,
  scope: Schema.optionalWith(Schema.Literal("organization", "project"), { exact: true }),
  organization: Schema.optionalWith(Schema.String, { exact: true }),
  project: Schema.optionalWith(Schema.String, { exact: true })
}) {}

/**
 * The request alone exceeds a limit ("Request too large … must be reduced"): never retried.
 *
 * @since 0.1.0
 * @category errors
 */
export class RequestTooLarge extends Schema.TaggedError<RequestTooLarge>("@sluice/openai/RequestTooLarge")(
  "RequestTooLarge",
  {
    ...common,
    dimension: Schema.optionalWith(Dimension, { exact: true }),
    limit: optionalNumber,
    requested: optionalNumber
  }
) {}

/**
 * `insufficient_quota` and other billing or usage-limit refusals: never retried.
 *
 * @since 0.1.0
 * @category errors
 */
export class QuotaExhausted
  extends Schema.TaggedError<QuotaExhausted>("@sluice/openai/QuotaExhausted")("QuotaExhausted", common)
{}

/**
 * 503: the service is overloaded.
 *
 * @since 0.1.0
 * @category errors
 */
export class Overloaded extends Schema.TaggedError<Overloaded>("@sluice/openai/Overloaded")("Overloaded", common) {}

/**
 * 500, 502, 504 and other 5xx.
 *
 * @since 0.1.0
 * @category errors
 */
export class ServerError extends Schema.TaggedError<ServerError>("@sluice/openai/ServerError")("ServerError", common) {}

/**
 * The request timed out (client timeout, 408, an in-stream timeout).
 *
 * @since 0.1.0
 * @category errors
 */
export class Timeout extends Schema.TaggedError<Timeout>("@sluice/openai/Timeout")("Timeout", common) {}

/**
 * No response: connection refused or reset, DNS failure.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectionError
  extends Schema.TaggedError<ConnectionError>("@sluice/openai/ConnectionError")("ConnectionError", common)
{}

/**
 * 409.
 *
 * @since 0.1.0
 * @category errors
 */
export class Conflict extends Schema.TaggedError<Conflict>("@sluice/openai/Conflict")("Conflict", common) {}

/**
 * 400 `context_length_exceeded`: never retried.
 *
 * @since 0.1.0
 * @category errors
 */
export class ContextLengthExceeded extends Schema.TaggedError<ContextLengthExceeded>(
  "@sluice/openai/ContextLengthExceeded"
)("ContextLengthExceeded", common) {}

/**
 * 400 `content_policy_violation` (or a content filter): redesign the prompt; never retried.
 *
 * @since 0.1.0
 * @category errors
 */
export class ContentPolicy
  extends Schema.TaggedError<ContentPolicy>("@sluice/openai/ContentPolicy")("ContentPolicy", common)
{}

/**
 * Other 400 and 422: fix the request; never retried.
 *
 * @since 0.1.0
 * @category errors
 */
export class BadRequest extends Schema.TaggedError<BadRequest>("@sluice/openai/BadRequest")("BadRequest", common) {}

/**
 * 401: invalid or revoked key; never retried.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unauthorized
  extends Schema.TaggedError<Unauthorized>("@sluice/openai/Unauthorized")("Unauthorized", common)
{}

/**
 * 403 (for example images not unlocked at the tier); never retried.
 *
 * @since 0.1.0
 * @category errors
 */
export class PermissionDenied
  extends Schema.TaggedError<PermissionDenied>("@sluice/openai/PermissionDenied")("PermissionDenied", common)
{}

/**
 * 404 (`model_not_found`); never retried.
 *
 * @since 0.1.0
 * @category errors
 */
export class NotFound extends Schema.TaggedError<NotFound>("@sluice/openai/NotFound")("NotFound", common) {}

/**
 * Anything else (an aborted request, an unexpected status); retried only when the server says
 * `x-should-retry: true`.
 *
 * @since 0.1.0
 * @category errors
 */
export class UnknownError
  extends Schema.TaggedError<UnknownError>("@sluice/openai/UnknownError")("UnknownError", common)
{}

/**
 * Every OpenAI error kind.
 *
 * @since 0.1.0
 * @category models
 */
export type OpenAiError =
  | RateLimited
  | RequestTooLarge
  | QuotaExhausted
  | Overloaded
  | ServerError
  | Timeout
  | ConnectionError
  | Conflict
  | ContextLengthExceeded
  | ContentPolicy
  | BadRequest
  | Unauthorized
  | PermissionDenied
  | NotFound
  | UnknownError

/** Every kind's class, in the order `OpenAiError` lists them. */
const classes = [
  RateLimited,
  RequestTooLarge,
  QuotaExhausted,
  Overloaded,
  ServerError,
  Timeout,
  ConnectionError,
  Conflict,
  ContextLengthExceeded,
  ContentPolicy,
  BadRequest,
  Unauthorized,
  PermissionDenied,
  NotFound,
  UnknownError
] as const

/**
 * The schema of every kind (for decoding errors that crossed a process boundary).
 *
 * @since 0.1.0
 * @category schemas
 */
export const OpenAiError: Schema.Union<typeof classes> = Schema.Union(...classes)

/**
 * The tag of a kind.
 *
 * @since 0.1.0
 * @category models
 */
export type Kind = OpenAiError["_tag"]

/**
 * The kinds never retried, whatever a policy or `x-should-retry` says.
 *
 * @since 0.1.0
 * @category models
 */
export const neverRetried: ReadonlySet<Kind> = new Set<Kind>([
  "RequestTooLarge",
  "QuotaExhausted",
  "ContextLengthExceeded",
  "ContentPolicy",
  "BadRequest",
  "Unauthorized",
  "PermissionDenied",
  "NotFound"
])

/**
 * @since 0.1.0
 * @category guards
 */
export const isOpenAiError = (u: unknown): u is OpenAiError => classes.some((c) => u instanceof c)

// -----------------------------------------------------------------------------
// Classification
// -----------------------------------------------------------------------------

/**
 * Context for classification: the model called, and the time (epoch milliseconds, for HTTP-date
 * `retry-after`; default `Date.now()` — pass the Clock's time under `TestClock`).
 *
 * @since 0.1.0
 * @category classification
 */
export interface ClassifyOptions {
  readonly model?: string | undefined
  readonly now?: number | undefined
}

/**
 * The parts of a failure classification reads.
 *
 * @since 0.1.0
 * @category classification
 */
export interface Fields {
  readonly status?: number | undefined
  readonly headers?: Parse.HeadersInput | null | undefined
  readonly code?: string | null | undefined
  readonly type?: string | null | undefined
  readonly param?: string | null | undefined
  readonly message?: string | null | undefined
  readonly requestId?: string | null | undefined
}

const QUOTA_CODES = new Set([
  "insufficient_quota",
  "billing_hard_limit_reached",
  "billing_not_active",
  "billing_limit_reached",
  "usage_limit_reached",
  "quota_exceeded"
])
const CONTENT_CODES = new Set([
  "content_policy_violation",
  "content_filter",
  "moderation_blocked",
  "image_content_policy_violation"
])
const CONTEXT_CODES = new Set(["context_length_exceeded", "string_above_max_length"])
const OVERLOADED_CODES = new Set(["server_is_overloaded", "engine_overloaded", "overloaded", "service_unavailable"])
const SERVER_CODES = new Set(["server_error", "internal_error", "internal_server_error"])
const TIMEOUT_CODES = new Set(["timeout", "vector_store_timeout", "request_timeout"])
const BAD_REQUEST_CODES = new Set(["invalid_prompt", "invalid_request_error", "invalid_value", "invalid_image"])
const NOT_FOUND_CODES = new Set(["model_not_found", "not_found", "deployment_not_found", "DeploymentNotFound"])

const str = (u: unknown): string | undefined =>
  typeof u === "string" && u.length > 0 ? u : typeof u === "number" ? String(u) : undefined

/**
 * Classifies a failure from its parts: status, headers and the body's `error` fields. Codes decide
 * first (`insufficient_quota` is a quota error at any status), then the status.
 *
 * @since 0.1.0
 * @category classification
 * @example
 * ```ts
 * import { OpenAiError } from "@sluice/openai"
 *
 * const error = OpenAiError.fromFields({
 *   status: 429,
 *   headers: { "retry-after": "20" },
 *   code: "rate_limit_exceeded",
 *   type: "requests",
 *   message: "Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s."
 * }, { model: "gpt-4o" })
 * // RateLimited { dimension: "requests", window: "minute", limit: 3, retryAfter: 20 seconds, retryable: true }
 * ```
 */
export const fromFields = (fields: Fields, options: ClassifyOptions = {}): OpenAiError => {
  const now = options.now ?? Date.now()
  const status = fields.status
  const code = str(fields.code)
  const type = str(fields.type)
  const message = str(fields.message) ?? (status === undefined ? "OpenAI request failed" : `HTTP ${status}`)
  const headers = fields.headers
  const requestId = str(fields.requestId) ?? Parse.header(headers, "x-request-id")
  const should = Parse.shouldRetry(headers)
  // the millisecond hints (headers, the message's "try again in") are the wait; `retry-after`'s whole
  // seconds only when they disagree by more than its rounding
  const retryAfter = Parse.preciseWait(
    Parse.maxDuration([
      Parse.retryAfterMillis(Parse.header(headers, "retry-after-ms")),
      Parse.retryAfterMillis(Parse.header(headers, "x-ms-retry-after-ms")),
      Parse.tryAgainIn(message)
    ]),
    Parse.retryAfter(Parse.header(headers, "retry-after"), now)
  )

  const base = (retryableByDefault: boolean, kind: Kind) => {
    const retryable = neverRetried.has(kind) ? false : should ?? retryableByDefault
    return {
      message,
      retryable,
      ...(retryAfter !== undefined ? { retryAfter } : {}),
      ...(options.model !== undefined ? { model: options.model } : {}),
      ...(requestId !== undefined ? { requestId } : {}),
      ...(status !== undefined ? { status } : {}),
      ...(code !== undefined ? { code } : {}),
      ...(type !== undefined ? { type } : {}),
      ...(str(fields.param) !== undefined ? { param: str(fields.param)! } : {})
    }
  }
  const lcode = code?.toLowerCase()

  if ((lcode !== undefined && QUOTA_CODES.has(lcode)) || type === "insufficient_quota") {
    return new QuotaExhausted(base(false, "QuotaExhausted"))
  }
  if (status === 429 || lcode === "rate_limit_exceeded" || lcode === "rate_limit_error" || lcode === "429") {
    const dw = Parse.dimensionWindow(message)
    const typeDimension = type === "requests" || type === "tokens" || type === "images" ? type : undefined
    const dimension = dw.dimension ?? typeDimension
    const numbers = Parse.limitNumbers(message)
    if (Parse.isRequestTooLarge(message)) {
      return new RequestTooLarge({
        ...base(false, "RequestTooLarge"),
        ...(dimension !== undefined ? { dimension } : {}),
        ...(numbers.limit !== undefined ? { limit: numbers.limit } : {}),
        ...(numbers.requested !== undefined ? { requested: numbers.requested } : {})
      })
    }
    const scope = Parse.limitScope(message)
    return new RateLimited({
      ...base(true, "RateLimited"),
      ...(dimension !== undefined ? { dimension } : {}),
      ...(dw.window !== undefined ? { window: dw.window } : {}),
      ...(numbers.limit !== undefined ? { limit: numbers.limit } : {}),
      ...(numbers.used !== undefined ? { used: numbers.used } : {}),
      ...(numbers.requested !== undefined ? { requested: numbers.requested } : {}),
      ...(scope.scope !== undefined ? { scope: scope.scope } : {}),
      ...(scope.organization !== undefined ? { organization: scope.organization } : {}),
      ...(scope.project !== undefined ? { project: scope.project } : {})
    })
  }
  if (lcode !== undefined && CONTEXT_CODES.has(lcode)) {
    return new ContextLengthExceeded(base(false, "ContextLengthExceeded"))
  }
  if (lcode !== undefined && CONTENT_CODES.has(lcode)) return new ContentPolicy(base(false, "ContentPolicy"))
  // A 403 is a permission problem whatever its code says: OpenAI answers a model the tier cannot use
  // with 403 and `code: "model_not_found"`.
  if (status === 403) return new PermissionDenied(base(false, "PermissionDenied"))
  if (status === 401) return new Unauthorized(base(false, "Unauthorized"))
  if (lcode !== undefined && NOT_FOUND_CODES.has(lcode)) return new NotFound(base(false, "NotFound"))
  if (lcode !== undefined && OVERLOADED_CODES.has(lcode)) return new Overloaded(base(true, "Overloaded"))
  if (lcode !== undefined && TIMEOUT_CODES.has(lcode)) return new Timeout(base(true, "Timeout"))
  if (lcode !== undefined && SERVER_CODES.has(lcode) && (status === undefined || status >= 500)) {
    return new ServerError(base(true, "ServerError"))
  }
  if (status === undefined && lcode !== undefined && BAD_REQUEST_CODES.has(lcode)) {
    return new BadRequest(base(false, "BadRequest"))
  }
  switch (status) {
    case undefined:
      return new UnknownError(base(false, "UnknownError"))
    case 400:
    case 413:
    case 422:
      return new BadRequest(base(false, "BadRequest"))
    case 401:
      return new Unauthorized(base(false, "Unauthorized"))
    case 403:
      return new PermissionDenied(base(false, "PermissionDenied"))
    case 404:
      return new NotFound(base(false, "NotFound"))
    case 408:
      return new Timeout(base(true, "Timeout"))
    case 409:
      return new Conflict(base(true, "Conflict"))
    case 503:
      return new Overloaded(base(true, "Overloaded"))
    case 504:
      return new ServerError(base(true, "ServerError"))
  }
  if (status >= 500) return new ServerError(base(true, "ServerError"))
  if (status >= 400) return new BadRequest(base(false, "BadRequest"))
  return new UnknownError(base(false, "UnknownError"))
}

const errorObject = (body: unknown): Record<string, unknown> | undefined => {
  let b = body
  if (typeof body === "string") {
    try {
      b = JSON.parse(body)
    } catch {
      return body.trim() === "" ? undefined : { message: body.slice(0, 500) }
    }
  }
  if (!Predicate.isRecord(b)) return undefined
  if (Predicate.isRecord(b.error)) return b.error
  if (typeof b.error === "string") return { message: b.error }
  return b
}

/**
 * A raw HTTP response's parts: status, headers and body (a string or parsed JSON, shaped
 * `{"error": {"message", "type", "param", "code"}}`).
 *
 * @since 0.1.0
 * @category classification
 */
export interface HttpFailure {
  readonly status: number
  readonly headers?: Parse.HeadersInput | null | undefined
  readonly body?: unknown
}

/**
 * Classifies a raw HTTP response.
 *
 * @since 0.1.0
 * @category classification
 */
export const fromHttp = (response: HttpFailure, options: ClassifyOptions = {}): OpenAiError => {
  const e = errorObject(response.body)
  return fromFields({
    status: response.status,
    headers: response.headers,
    code: str(e?.code),
    type: str(e?.type),
    param: str(e?.param),
    message: str(e?.message)
  }, options)
}

/**
 * Classifies a fetch `Response` (reads its body).
 *
 * @since 0.1.0
 * @category classification
 */
export const fromResponse = (response: Response, options: ClassifyOptions = {}): Effect.Effect<OpenAiError> =>
  Effect.map(
    Effect.orElseSucceed(Effect.tryPromise(() => response.text()), () => ""),
    (body) => fromHttp({ status: response.status, headers: response.headers, body }, options)
  )

const sdkName = (u: object): string | undefined => {
  const name = (u as { constructor?: { name?: unknown } }).constructor?.name
  return typeof name === "string" ? name : undefined
}

/**
 * Classifies an error thrown by the `openai` SDK (v6 or v7): `APIError` and its subclasses
 * (by status, headers and `error.code`/`type`/`message`), `APIConnectionTimeoutError` (Timeout),
 * `APIConnectionError` (ConnectionError) and `APIUserAbortError` (UnknownError, not retried). Reads
 * the fields structurally, so two copies of the SDK are both understood.
 *
 * @since 0.1.0
 * @category classification
 */
export const fromApiError = (error: unknown, options: ClassifyOptions = {}): OpenAiError => {
  const e = Predicate.isRecord(error) || error instanceof Error ? (error as Record<string, unknown>) : {}
  const name = error instanceof Error ? sdkName(error) : undefined
  const body = Predicate.isRecord(e.error) ? e.error : undefined
  const message = str(body?.message) ?? (typeof e.message === "string" ? e.message : undefined)
  const status = typeof e.status === "number" ? e.status : undefined
  const headers = (e.headers ?? undefined) as Parse.HeadersInput | undefined
  const requestId = str(e.requestID) ?? str(e.request_id)
  const fields: Fields = {
    status,
    headers,
    code: str(e.code) ?? str(body?.code),
    type: str(e.type) ?? str(body?.type),
    param: str(e.param) ?? str(body?.param),
    message,
    requestId
  }
  if (status === undefined) {
    if (name === "APIConnectionTimeoutError" || /timed? ?out/i.test(message ?? "")) {
      return new Timeout(connectionBase(fields, options, true))
    }
    if (name === "APIUserAbortError") return new UnknownError(connectionBase(fields, options, false))
    if (name === "APIConnectionError" || isNetworkError(error)) {
      return new ConnectionError(connectionBase(fields, options, true))
    }
  }
  return fromFields(fields, options)
}

const connectionBase = (fields: Fields, options: ClassifyOptions, retryable: boolean) => ({
  message: fields.message ?? "connection failed",
  retryable,
  ...(options.model !== undefined ? { model: options.model } : {}),
  ...(str(fields.requestId) !== undefined ? { requestId: str(fields.requestId)! } : {})
})

const NETWORK_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT"
])

const isNetworkError = (u: unknown): boolean => {
  if (!(u instanceof Error)) return false
  const code = (u as { code?: unknown }).code
  if (typeof code === "string" && NETWORK_CODES.has(code)) return true
  if (u.name === "TypeError" && /fetch failed|network/i.test(u.message)) return true
  return u.cause !== undefined && u.cause !== u && isNetworkError(u.cause)
}

/**
 * An in-stream failure of the Responses API: a `response.failed` event (its `response.error`), an
 * `error` event, or a `Response` object whose `status` is `failed`.
 *
 * @since 0.1.0
 * @category classification
 */
export const fromResponseFailed = (event: unknown, options: ClassifyOptions = {}): OpenAiError => {
  const e = Predicate.isRecord(event) ? event : {}
  const response = Predicate.isRecord(e.response) ? e.response : e.object === "response" ? e : undefined
  const err = response !== undefined && Predicate.isRecord(response.error)
    ? response.error
    : e.type === "error"
    ? (Predicate.isRecord(e.error) ? e.error : e)
    : Predicate.isRecord(e.error)
    ? e.error
    : {}
  const model = options.model ?? str(response?.model)
  const fields: Fields = {
    code: str(err.code),
    type: str(err.type),
    param: str(err.param),
    message: str(err.message) ?? "response failed"
  }
  const classified = fromFields(fields, { ...options, model })
  // an unknown in-stream code is a server-side failure of the response
  if (classified._tag === "UnknownError" && response !== undefined) {
    const { _tag: _, ...fields } = classified
    return new ServerError({ ...fields, message: classified.message, retryable: true })
  }
  return classified
}

const isStreamEvent = (u: Record<string, unknown>): boolean =>
  u.type === "response.failed" || (u.type === "error" && (u.code !== undefined || u.message !== undefined)) ||
  (u.object === "response" && u.status === "failed")

/**
 * Classifies anything: an `OpenAiError` (returned as is), an SDK error, a raw HTTP failure
 * (`{ status, headers?, body? }` or `{ status, error }`), a fetch `Response`-like object without a
 * readable body, an in-stream failure event, a network error, or anything else (UnknownError).
 *
 * @since 0.1.0
 * @category classification
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { OpenAiError } from "@sluice/openai"
 *
 * declare const call: () => Promise<string>
 * const program = Effect.tryPromise({ try: call, catch: (e) => OpenAiError.classify(e, { model: "gpt-4o" }) })
 * ```
 */
export const classify = (error: unknown, options: ClassifyOptions = {}): OpenAiError => {
  if (isOpenAiError(error)) return error
  if (Predicate.isRecord(error) && !(error instanceof Error)) {
    if (isStreamEvent(error)) return fromResponseFailed(error, options)
    if (typeof error.status === "number") {
      if ("body" in error) return fromHttp(error as unknown as HttpFailure, options)
      return fromApiError(error, options)
    }
  }
  if (error instanceof Error) {
    if (error.name === "AbortError" || error.name === "TimeoutError") {
      const timeout = error.name === "TimeoutError"
      return timeout
        ? new Timeout({ message: error.message, retryable: true, ...(options.model ? { model: options.model } : {}) })
        : new UnknownError({
          message: error.message,
          retryable: false,
          ...(options.model ? { model: options.model } : {})
        })
    }
    return fromApiError(error, options)
  }
  return new UnknownError({
    message: typeof error === "string" ? error : "unknown failure",
    retryable: false,
    ...(options.model !== undefined ? { model: options.model } : {})
  })
}

/**
 * The wait an error asks for, in milliseconds (0 when none).
 *
 * @since 0.1.0
 * @category accessors
 */
export const retryAfterMillis = (error: OpenAiError): number =>
  error.retryAfter === undefined ? 0 : Duration.toMillis(error.retryAfter)
