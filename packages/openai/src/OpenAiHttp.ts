/**
 * The governed call of the `OpenAi` service for any HTTP client: give it a request's endpoint and JSON body and
 * a way to send one attempt, and it takes the same path as every `OpenAi` call (`internal/call.ts`): estimate,
 * admission on every scope, mark sent, send, settle to the answer's `usage`, sync from the `x-ratelimit-*`
 * headers, classify a failure into {@link OpenAiError}, gate the herd on `retry-after` and "try again in", retry
 * by kind through admission, circuit breakers, the adaptive pools' learning.
 *
 * It is what `@sluice/effect-ai` governs Effect's `HttpClient` with (under `@effect/ai-openai`); any other client
 * that can send a body and read an answer's status, headers and body can use it too. The tier presets, explicit
 * budgets and the `LimiterStore` (memory or Redis) work as they do for `OpenAi`: a `Governor` and an `OpenAi`
 * service on the same `RateLimiter` share one budget.
 *
 * @since 0.2.0
 */
import type { CircuitBreaker, RateLimiter } from "@sluice/core"
import { RateLimiter as Limiter } from "@sluice/core"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Call from "./internal/call.js"
import * as Endpoints from "./internal/endpoint.js"
import * as TimeSlice from "./internal/timeSlice.js"
import type * as OpenAi from "./OpenAi.js"
import * as TokenEstimator from "./TokenEstimator.js"

/**
 * The endpoints governed, by their path under the API's root (`/v1`).
 *
 * @since 0.2.0
 * @category models
 */
export type Endpoint =
  | "/chat/completions"
  | "/responses"
  | "/embeddings"
  | "/images/generations"
  | "/completions"
  | "/moderations"

/**
 * The governed endpoint of a path under the API's root (`/chat/completions`; a leading `/v1` is allowed), or
 * `undefined`: a request to it is not metered (pass it through).
 *
 * @since 0.2.0
 * @category endpoints
 * @example
 * ```ts
 * import { OpenAiHttp } from "@sluice/openai"
 *
 * OpenAiHttp.endpointOf("/responses") // "/responses"
 * OpenAiHttp.endpointOf("/v1/embeddings") // "/embeddings"
 * OpenAiHttp.endpointOf("/files") // undefined
 * ```
 */
export const endpointOf = (path: string): Endpoint | undefined => Endpoints.endpointOf(path)

/**
 * What one attempt's send answers, whatever its status: the status, the headers (`Headers` or a plain record,
 * as `@effect/platform`'s `HttpClientResponse` has them), and the body, read once, as text or as bytes. An
 * `HttpClientResponse` is one.
 *
 * @since 0.2.0
 * @category models
 */
export interface Answered {
  readonly status: number
  readonly headers: Headers | Readonly<Record<string, string>>
  readonly text: Effect.Effect<string, unknown>
  readonly stream: Stream.Stream<Uint8Array, unknown>
}

/**
 * A governed call's answer: its status and headers, its body's text as the server sent it, and the body parsed.
 *
 * @since 0.2.0
 * @category models
 */
export interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly text: string
  readonly body: unknown
}

/**
 * A governed stream once open: its status and headers, and its body, one server-sent event at a time (as the
 * server sent it; the usage chunk Sluice asked for on the caller's behalf left out). A failure the server reports
 * in the stream (a Responses `response.failed` or `error` event, a chat chunk with an `error`) is passed on and
 * ends the body, as the server ended it; Sluice classifies it (a `Failed` event of its kind), settles the call
 * to the usage it reports, and feeds it back (a rate limit gates the pool, as a 429 answer does).
 *
 * @since 0.2.0
 * @category models
 */
export interface StreamAnswer {
  readonly status: number
  readonly headers: Headers
  readonly body: Stream.Stream<Uint8Array, OpenAi.CallError>
}

/**
 * @since 0.2.0
 * @category models
 */
export interface Governor {
  readonly limiter: RateLimiter.Service
  /** The circuit breakers, keyed by model (`undefined` with `breaker: false`). */
  readonly breakers: CircuitBreaker.CircuitBreaker.Service | undefined
  /**
   * One call to `endpoint` with a JSON `body`, governed: `send` makes one attempt with the body to send and
   * answers whatever the server said (a status that is not 2xx is classified here, from its headers and body);
   * it fails with what `OpenAiError.classify` reads (a fetch `TypeError`, a `DOMException` timeout). A body the
   * estimator cannot read fails `BadRequest` (`invalid_body`), unsent; a 2xx that is not the endpoint's JSON fails
   * `UnknownError` (`invalid_response`, retried).
   */
  readonly request: <E>(
    endpoint: Endpoint,
    body: unknown,
    send: (body: unknown) => Effect.Effect<Answered, E>,
    options?: OpenAi.OpenAi.CallOptions
  ) => Effect.Effect<Answer, OpenAi.CallError>
  /**
   * A streamed call (chat completions or Responses with `stream: true`), opened in the caller's scope: opening
   * is retried like any call; once events flow, a failure ends the stream. The permit settles to the final usage
   * (a chat completion's usage chunk, asked for with `stream_options.include_usage` when the body did not ask,
   * and then left out of the body; a Responses stream's `response.completed`), or, when the stream ends without
   * it (the scope closed early), to the prompt and the output seen.
   */
  readonly stream: <E>(
    endpoint: Endpoint,
    body: unknown,
    send: (body: unknown) => Effect.Effect<Answered, E>,
    options?: OpenAi.OpenAi.CallOptions
  ) => Effect.Effect<StreamAnswer, OpenAi.CallError, Scope.Scope>
  /** The scopes a call on `model` is charged against. */
  readonly scopesFor: (model: string, tenant?: string) => ReadonlyArray<string>
}

/** A server-sent event: its text as sent, and what governing it reads (see `Call.StreamChunk`). */
interface Event extends Call.StreamChunk {
  readonly raw: string
  /** The usage chunk Sluice asked for: counted, then left out. */
  readonly drop: boolean
}

/**
 * The events of a stream, up to and including an in-stream failure (a Responses `response.failed` or `error`
 * event, a chat chunk with an `error`), after which the stream fails with that event (for `Call` to classify).
 */
const untilFailure = (events: Stream.Stream<Event, unknown>): Stream.Stream<Event, unknown> =>
  Stream.suspend(() => {
    let failure: Event | undefined
    return events.pipe(
      Stream.takeUntil((event) => {
        if (event.failure === undefined) return false
        failure = event
        return true
      }),
      Stream.concat(Stream.suspend(() => failure === undefined ? Stream.empty : Stream.fail(failure.failure)))
    )
  })

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

const headersOf = (headers: Headers | Readonly<Record<string, string>>): Headers => {
  if (headers instanceof Headers) return headers
  const out = new Headers()
  for (const name of Object.keys(headers)) {
    const value = headers[name]
    if (typeof value === "string") out.set(name, value)
  }
  return out
}

const isOk = (status: number) => status >= 200 && status < 300

/** A status that is not 2xx fails with what classification reads: its status, headers and body. */
const failed = (answered: Answered, headers: Headers) =>
  Effect.flatMap(
    Effect.orElseSucceed(answered.text, () => ""),
    (body) => Effect.fail({ status: answered.status, headers, body })
  )

/** Whether a streamed body asked for the usage chunk itself. */
const asksUsage = (body: Record<string, unknown>) =>
  isRecord(body.stream_options) && body.stream_options.include_usage === true

/**
 * The events of an event stream's text, each with its text as sent (the blank line that ends it included); what
 * is left at the end (an event without its blank line) goes through as it is.
 */
const events = (
  text: Stream.Stream<string, unknown>,
  read: (data: string, raw: string) => Event
): Stream.Stream<Event, unknown> =>
  Stream.suspend(() => {
    let rest = ""
    return text.pipe(
      Stream.mapConcat((piece) => {
        rest += piece
        const out: Array<Event> = []
        for (;;) {
          const end = /\r?\n\r?\n/.exec(rest)
          if (end === null) return out
          const raw = rest.slice(0, end.index + end[0].length)
          rest = rest.slice(raw.length)
          out.push(read(dataOf(raw), raw))
        }
      }),
      Stream.concat(Stream.suspend(() => rest === "" ? Stream.empty : Stream.make(read(dataOf(rest), rest))))
    )
  })

/** The `data:` lines of an event, joined. */
const dataOf = (raw: string): string => {
  const lines: Array<string> = []
  for (const line of raw.split(/\r?\n/)) {
    if (line.startsWith("data:")) lines.push(line.slice(line.startsWith("data: ") ? 6 : 5))
  }
  return lines.join("\n")
}

const parse = (data: string): unknown => {
  if (data === "" || data === "[DONE]") return undefined
  try {
    return JSON.parse(data)
  } catch {
    return undefined
  }
}

/** A chat completion chunk: its usage and choices as sent; the usage-only chunk dropped when Sluice asked for it. */
const chatEvent = (added: boolean) => (data: string, raw: string): Event => {
  const chunk = parse(data)
  if (!isRecord(chunk)) return { raw, drop: false }
  const choices = Array.isArray(chunk.choices) ? chunk.choices : undefined
  const drop = added && isRecord(chunk.usage) && choices !== undefined && choices.length === 0
  return {
    raw,
    drop,
    usage: chunk.usage,
    ...(choices === undefined ? {} : { choices }),
    ...(isRecord(chunk.error) ? { failure: chunk } : {})
  }
}

/**
 * A Responses event: the final response's usage (`response.completed`, `.incomplete`, `.failed`), and a delta's
 * text counted as output.
 */
const responsesEvent = (data: string, raw: string): Event => {
  const event = parse(data)
  if (!isRecord(event)) return { raw, drop: false }
  const usage = isRecord(event.response) ? event.response.usage : undefined
  const delta = typeof event.delta === "string" ? [{ delta: { content: event.delta } }] : undefined
  return {
    raw,
    drop: false,
    ...(usage === undefined ? {} : { usage }),
    ...(delta === undefined ? {} : { choices: delta }),
    ...(event.type === "response.failed" || event.type === "error" ? { failure: event } : {})
  }
}

const encoder = new TextEncoder()

/**
 * A governor on the `RateLimiter` in context, with the `OpenAi` service's options (limits are the limiter's:
 * build it with `OpenAi.budgetsFor(options)`, or share the one an `OpenAi` layer provides).
 *
 * @since 0.2.0
 * @category constructors
 * @example
 * ```ts
 * import { LimiterStore, RateLimiter } from "@sluice/core"
 * import { OpenAi, OpenAiHttp } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 *
 * const options = { organization: "acme", tier: 1 as const }
 * const program = Effect.gen(function*() {
 *   const governor = yield* OpenAiHttp.make(options)
 *   const answer = yield* governor.request(
 *     "/embeddings",
 *     { model: "text-embedding-3-small", input: "hello" },
 *     (body) => Effect.promise(() => fetch("https://api.openai.com/v1/embeddings", { method: "POST", body: JSON.stringify(body) }))
 *       .pipe(Effect.map((response) => ({
 *         status: response.status,
 *         headers: response.headers,
 *         text: Effect.promise(() => response.text()),
 *         stream: OpenAiHttp.emptyStream
 *       })))
 *   )
 *   return answer.body
 * }).pipe(
 *   Effect.scoped,
 *   Effect.provide(
 *     RateLimiter.layer({ budgets: OpenAi.budgetsFor(options), coldStartLag: OpenAi.coldStartLag }).pipe(
 *       Layer.provide(LimiterStore.layerMemory)
 *     )
 *   )
 * )
 * ```
 */
export const make = (
  options: OpenAi.OpenAi.Options = {}
): Effect.Effect<Governor, never, RateLimiter.RateLimiter | Scope.Scope> =>
  Effect.gen(function*() {
    const limiter = yield* Limiter.RateLimiter
    const calls = yield* Call.make(limiter, options)
    const estimateOptions = { defaultMaxOutputTokens: options.defaultMaxOutputTokens }
    const sliceMillis = TimeSlice.millisOf(options.timeSlice)

    /** The body's estimate, or the typed error of a body that cannot be read (never sent). */
    const estimated = (endpoint: Endpoint, body: unknown) => {
      const problem = Endpoints.serviceBodyProblem(endpoint, body)
      if (problem !== undefined) {
        return Effect.fail(Endpoints.invalidBodyError(problem, (body as { readonly model?: unknown } | null)?.model))
      }
      const estimate = TokenEstimator.forEndpoint(endpoint, body, estimateOptions)!
      return Effect.succeed(estimate)
    }

    const request: Governor["request"] = (endpoint, body, send, callOptions) =>
      TimeSlice.enter(
        sliceMillis,
        Effect.flatMap(estimated(endpoint, body), (estimate) =>
          Effect.map(
            calls.run({
              path: endpoint,
              model: estimate.model,
              estimate,
              send: () =>
                Effect.flatMap(send(body), (answered) => {
                  const headers = headersOf(answered.headers)
                  if (!isOk(answered.status)) return failed(answered, headers)
                  return Effect.flatMap(answered.text, (text) => {
                    let data: unknown
                    try {
                      data = JSON.parse(text)
                    } catch (error) {
                      return Effect.fail(Endpoints.invalidResponseError(
                        `response: not JSON (${String((error as Error).message).slice(0, 120)})`,
                        { model: estimate.model, status: answered.status, requestId: headers.get("x-request-id") }
                      ))
                    }
                    return Effect.succeed({
                      data,
                      text,
                      response: { status: answered.status, headers },
                      request_id: headers.get("x-request-id")
                    })
                  })
                })
            }, callOptions),
            (answer) => ({
              status: answer.response.status,
              headers: answer.response.headers,
              text: (answer as unknown as { readonly text: string }).text,
              body: answer.data
            })
          ))
      )

    const stream: Governor["stream"] = (endpoint, body, send, callOptions) =>
      TimeSlice.enter(
        sliceMillis,
        Effect.flatMap(estimated(endpoint, body), (estimate) => {
          const chat = endpoint === "/chat/completions"
          const record = isRecord(body) ? body : {}
          const added = chat && !asksUsage(record)
          const sent = added
            ? {
              ...record,
              stream_options: { ...(isRecord(record.stream_options) ? record.stream_options : {}), include_usage: true }
            }
            : body
          const read = chat ? chatEvent(added) : responsesEvent
          return Effect.map(
            calls.open<Event>({
              path: endpoint,
              model: estimate.model,
              estimate,
              send: () =>
                Effect.flatMap(send(sent), (answered) => {
                  const headers = headersOf(answered.headers)
                  if (!isOk(answered.status)) return failed(answered, headers)
                  return Effect.succeed({
                    data: untilFailure(events(Stream.decodeText(answered.stream), read)),
                    response: { status: answered.status, headers },
                    request_id: headers.get("x-request-id")
                  })
                })
            }, callOptions),
            (opened) => {
              // an in-stream failure is passed on as the server sent it, and ends the body: it is Sluice's to
              // classify, settle and feed back (a `Failed` event), the caller's to read as its client does
              let failed = false
              return {
                status: opened.answer.response.status,
                headers: opened.answer.response.headers,
                body: opened.chunks.pipe(
                  Stream.tap((event) =>
                    Effect.sync(() => {
                      if (event.failure !== undefined) failed = true
                    })
                  ),
                  Stream.filter((event) => !event.drop),
                  Stream.map((event) => encoder.encode(event.raw)),
                  Stream.catchAll((error) => failed ? Stream.empty : Stream.fail(error))
                )
              }
            }
          )
        })
      )

    return { limiter, breakers: calls.breakers, request, stream, scopesFor: calls.scopesOf }
  })

/**
 * An empty body stream, for an {@link Answered} whose body is only ever read as text.
 *
 * @since 0.2.0
 * @category constructors
 */
export const emptyStream: Stream.Stream<Uint8Array> = Stream.empty
