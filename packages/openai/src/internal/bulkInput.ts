/**
 * Decoding of Batch API request lines.
 *
 * @internal
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as TokenEstimator from "../TokenEstimator.js"
import * as Endpoints from "./endpoint.js"

/** @internal */
export const supportedUrls = [
  "/v1/chat/completions",
  "/v1/responses",
  "/v1/embeddings",
  "/v1/images/generations",
  "/v1/completions",
  "/v1/moderations"
] as const

/** @internal */
export const RequestLine = Schema.Struct({
  custom_id: Schema.String,
  method: Schema.String,
  url: Schema.String,
  body: Schema.Record({ key: Schema.String, value: Schema.Unknown })
})

/** @internal */
export type Reason =
  | "malformed-json"
  | "not-an-object"
  | "missing-custom-id"
  | "duplicate-custom-id"
  | "unsupported-url"
  | "unsupported-method"
  | "invalid-line"

/** @internal */
export type Decoded =
  | {
    readonly _tag: "Ok"
    readonly customId: string
    readonly url: (typeof supportedUrls)[number]
    readonly body: Record<string, unknown>
  }
  | { readonly _tag: "Invalid"; readonly reason: Reason; readonly customId?: string; readonly message: string }

const decodeLine = Schema.decodeUnknownEither(RequestLine, { errors: "all" })

/**
 * Decodes one line; duplicates are the caller's to detect.
 *
 * @internal
 */
export const decode = (text: string): Decoded => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    return { _tag: "Invalid", reason: "malformed-json", message: `not JSON: ${(error as Error).message}` }
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return { _tag: "Invalid", reason: "not-an-object", message: "a request line must be a JSON object" }
  }
  const raw = json as Record<string, unknown>
  const id = raw["custom_id"]
  if (typeof id !== "string" || id.length === 0) {
    return {
      _tag: "Invalid",
      reason: "missing-custom-id",
      message: id === undefined ? "custom_id is missing" : "custom_id must be a non-empty string"
    }
  }
  if (raw["method"] !== "POST") {
    return {
      _tag: "Invalid",
      reason: "unsupported-method",
      customId: id,
      message: `unsupported method ${JSON.stringify(raw["method"])} (only POST)`
    }
  }
  if (!(supportedUrls as ReadonlyArray<unknown>).includes(raw["url"])) {
    return {
      _tag: "Invalid",
      reason: "unsupported-url",
      customId: id,
      message: `unsupported url ${JSON.stringify(raw["url"])} (supported: ${supportedUrls.join(", ")})`
    }
  }
  const decoded = decodeLine(json)
  if (Either.isLeft(decoded)) {
    return {
      _tag: "Invalid",
      reason: "invalid-line",
      customId: id,
      message: ParseResult.TreeFormatter.formatErrorSync(decoded.left)
    }
  }
  const stream = decoded.right.body["stream"]
  if (stream !== undefined && stream !== false && stream !== null) {
    // a streamed answer is Server-Sent Events text, not the JSON body the output line records
    return {
      _tag: "Invalid",
      reason: "invalid-line",
      customId: id,
      message: `body.stream ${JSON.stringify(stream)} is not supported (the output records whole JSON bodies; ` +
        `remove "stream")`
    }
  }
  return {
    _tag: "Ok",
    customId: id,
    url: decoded.right.url as (typeof supportedUrls)[number],
    body: decoded.right.body
  }
}

/**
 * Decodes one line and refuses a `custom_id` already `seen` (by its first line number); recording it is the
 * caller's.
 *
 * @internal
 */
export const decodeFresh = (text: string, seen: ReadonlyMap<string, number>): Decoded => {
  const decoded = decode(text)
  if (decoded._tag === "Invalid") return decoded
  const first = seen.get(decoded.customId)
  return first === undefined ? decoded : {
    _tag: "Invalid",
    reason: "duplicate-custom-id",
    customId: decoded.customId,
    message: `custom_id ${JSON.stringify(decoded.customId)} already used at line ${first}`
  }
}

/** The fields of a `BulkInputError` for a rejected line. @internal */
export const errorFields = (line: number, invalid: Extract<Decoded, { readonly _tag: "Invalid" }>) => ({
  line,
  reason: invalid.reason,
  message: invalid.message,
  ...(invalid.customId === undefined ? {} : { customId: invalid.customId })
})

const positive = (value: unknown): number | undefined =>
  typeof value === "number" && Number.isFinite(value) && value > 0 ? value : undefined

/**
 * What `order: "largest-first"` sorts by: the output a line may ask for, then its length.
 *
 * @internal
 */
export interface Size {
  readonly output: number
  readonly length: number
}

/** An image counts as this many output tokens: it takes about as long as a long completion. */
const IMAGE_OUTPUT = 4_096

/**
 * The key of `order: "largest-first"`, without tokenizing the line (the executor does that once): the output it may
 * ask for as the estimator reserves it (`TokenEstimator.maxOutputOf`: `n` × its maximum, else the model's default,
 * for each prompt of a completions list; nothing for embeddings and moderations), an image as 4,096 tokens, then the
 * line's length. An answer takes about as long as its output, whatever its prompt.
 *
 * @internal
 */
export const sizeOf = (url: string, body: Record<string, unknown>, length: number): Size =>
  Endpoints.endpointOf(url) === "/images/generations"
    ? { output: Math.min((positive(body.n) ?? 1) * IMAGE_OUTPUT, Number.MAX_SAFE_INTEGER), length }
    : { output: TokenEstimator.maxOutputOf(url, body) ?? 0, length }

/**
 * What a line weighs in the ETA: the output it may ask for plus a quarter of its length (its prompt's tokens, about,
 * without tokenizing): what it takes of a tokens budget, and about what its answer's time grows with. At most 10^9,
 * so that sums of weights stay exact.
 *
 * @internal
 */
export const weightOf = (size: Size): number => Math.min(size.output + Math.ceil(size.length / 4), 1e9)

/**
 * Larger first: by output, then by length (negative when `a` goes first).
 *
 * @internal
 */
export const largerFirst = (a: Size, b: Size): number => b.output - a.output || b.length - a.length
