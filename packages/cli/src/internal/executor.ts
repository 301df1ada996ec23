/**
 * The executor `sluice run` hands to the bulk runner.
 *
 * PLACEHOLDER IMPLEMENTATION (to be replaced by the lead with one built on the `OpenAi` service from
 * `@sluice/openai`: admission through the rate limiter, header sync, gates, typed retries). This version
 * sends each request once with a bare `fetch` to `${baseUrl}${url}` — no rate limiting, no retries — so the
 * runner works end to end against any OpenAI-compatible server today. It keeps the contract the runner
 * needs: a typed failure with a `describe` that marks `insufficient_quota` as a stop.
 *
 * @internal
 */
import type { BulkRunner } from "@sluice/openai"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type { LimitsFile } from "./limits.js"

/** @internal */
export type Fetch = (input: string, init?: RequestInit) => Promise<globalThis.Response>

/**
 * What `sluice run` knows when it builds the executor.
 *
 * @internal
 */
export interface ExecutorOptions {
  /** The SDK-style base URL (`https://api.openai.com/v1`); a trailing `/v1` is not doubled. */
  readonly baseUrl: string
  readonly apiKey: Redacted.Redacted<string>
  readonly tier: 1 | 2 | 3 | 4 | 5 | undefined
  readonly limits: LimitsFile | undefined
  /** The routing table file, parsed JSON (its schema belongs to the router). */
  readonly routing: unknown
  readonly priority: "interactive" | "background" | undefined
  /** Per-request admission deadline, in milliseconds. */
  readonly deadlineMs: number | undefined
  /** The `fetch` to use (the embedded simulator's with `--simulate`). */
  readonly fetch: Fetch
  /** Progress hooks to feed (waits, 429s, retries, binding budget, tokens). */
  readonly progress: BulkRunner.Progress
}

/**
 * A typed executor failure.
 *
 * @internal
 */
export class ExecutorError extends Data.TaggedError("ExecutorError")<{
  readonly kind: string
  readonly code: string
  readonly message: string
  readonly statusCode?: number | undefined
}> {}

/** @internal */
export interface Executor {
  readonly execute: (request: BulkRunner.Request) => Effect.Effect<BulkRunner.Response, ExecutorError>
  readonly describe: (error: ExecutorError) => BulkRunner.Failure
}

const kindOf = (status: number, code: string, message: string): string => {
  if (code === "insufficient_quota") return "quota"
  if (status === 429) return /request too large/i.test(message) ? "request_too_large" : "rate_limit"
  if (code === "context_length_exceeded") return "context_length"
  if (code === "content_policy_violation") return "content_policy"
  if (status === 401) return "auth"
  if (status === 403) return "permission"
  if (status === 404) return "not_found"
  if (status === 409) return "conflict"
  if (status === 503) return "overloaded"
  if (status >= 500) return "server"
  if (status >= 400) return "bad_request"
  return "unknown"
}

/**
 * Builds the executor for `sluice run`.
 *
 * @internal
 */
export const makeExecutor = (options: ExecutorOptions): Effect.Effect<Executor> =>
  Effect.sync(() => {
    const base = options.baseUrl.replace(/\/+$/, "").replace(/\/v1$/, "")
    const execute = (request: BulkRunner.Request) =>
      Effect.tryPromise({
        try: async (signal) => {
          const response = await options.fetch(`${base}${request.url}`, {
            method: "POST",
            headers: {
              "content-type": "application/json",
              authorization: `Bearer ${Redacted.value(options.apiKey)}`
            },
            body: JSON.stringify(request.body),
            signal
          })
          const text = await response.text()
          let body: unknown = text
          try {
            body = JSON.parse(text)
          } catch {
            // keep the text
          }
          return { status: response.status, requestId: response.headers.get("x-request-id"), body }
        },
        catch: (cause) =>
          new ExecutorError({
            kind: "connection",
            code: "connection_error",
            message: cause instanceof Error
              ? `${cause.message}${cause.cause ? `: ${String(cause.cause)}` : ""}`
              : String(cause)
          })
      }).pipe(
        Effect.flatMap(({ body, requestId, status }) => {
          if (status >= 200 && status < 300) {
            return Effect.succeed<BulkRunner.Response>({ statusCode: status, requestId, body })
          }
          const error = typeof body === "object" && body !== null ? (body as any).error : undefined
          const code = typeof error?.code === "string"
            ? error.code
            : typeof error?.type === "string"
            ? error.type
            : `http_${status}`
          const message = typeof error?.message === "string" ? error.message : `HTTP ${status}`
          const effect = status === 429 ? options.progress.recordRateLimited : Effect.void
          return Effect.zipRight(
            effect,
            Effect.fail(new ExecutorError({ kind: kindOf(status, code, message), code, message, statusCode: status }))
          )
        })
      )
    const describe = (error: ExecutorError): BulkRunner.Failure => ({
      kind: error.kind,
      code: error.code,
      message: error.message,
      statusCode: error.statusCode,
      stop: error.kind === "quota"
    })
    return { execute, describe }
  })
