// The OpenAI executor's policy, as a library user reads it: which errors are written as a line's failure (and
// with what code) and which stop the run unwritten.
import { describe, expect, it } from "@effect/vitest"
import { Router } from "@sluice/core"
import { BulkExecutor, OpenAiError } from "@sluice/openai"

describe("BulkExecutor", () => {
  it("describeError: a spent quota or a refused key stops the run, unwritten; other errors are the line's", () => {
    expect(
      BulkExecutor.describeError(
        new OpenAiError.QuotaExhausted({ message: "no quota", retryable: false, code: "insufficient_quota" })
      )
    ).toEqual({ kind: "QuotaExhausted", code: "insufficient_quota", message: "no quota", stop: true })
    expect(BulkExecutor.describeError(new OpenAiError.Unauthorized({ message: "bad key", retryable: false })))
      .toEqual({ kind: "Unauthorized", code: "Unauthorized", message: "bad key", stop: true })
    expect(BulkExecutor.describeError(new OpenAiError.ServerError({ message: "oops", retryable: true, status: 500 })))
      .toEqual({ kind: "ServerError", code: "http_500", message: "oops", statusCode: 500 })
    expect(
      BulkExecutor.describeError(
        new OpenAiError.BadRequest({ message: "bad", retryable: false, status: 400, type: "invalid_request_error" })
      )
    ).toEqual({ kind: "BadRequest", code: "invalid_request_error", message: "bad", statusCode: 400 })
    const none = BulkExecutor.describeError(new Router.NoCandidate({ skipped: [] }))
    expect(none).toMatchObject({ kind: "NoCandidate", code: "NoCandidate" })
    expect(none.stop).toBeUndefined()
  })

  it("Cancelled is a tagged error whose kind says why", () => {
    const cancelled = new BulkExecutor.Cancelled({ kind: "Outage", message: "never reached" })
    expect(cancelled._tag).toBe("Cancelled")
    expect(cancelled.kind).toBe("Outage")
    expect(cancelled).toBeInstanceOf(Error)
  })
})
