/**
 * The endpoints Sluice meters, in one place: each one's path, what a call costs (reserved from its estimate,
 * charged from its answer's `usage`), and the shapes Sluice reads of its request body and of its response, as
 * `effect/Schema`. The schemas are lenient: they check the fields Sluice reads (to estimate, route and settle a
 * call) and ignore every other field, so new API fields pass through.
 *
 * @internal
 */
import type { Budget } from "@sluice/core"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Errors from "../OpenAiError.js"
import type * as OpenAiHttp from "../OpenAiHttp.js"

/**
 * The endpoints, by path under `/v1`.
 *
 * @internal
 */
export type Path = OpenAiHttp.Endpoint

/**
 * The path of a URL under `/v1` (`https://api.openai.com/v1/embeddings` and `/v1/embeddings` both give
 * `/embeddings`), whether or not Sluice meters it.
 *
 * @internal
 */
export const pathOf = (url: string): string => url.replace(/^https?:\/\/[^/]+/, "").replace(/^\/v1/, "")

const paths: ReadonlySet<string> = new Set<Path>([
  "/chat/completions",
  "/responses",
  "/embeddings",
  "/images/generations",
  "/completions",
  "/moderations"
])

/**
 * The metered endpoint of a URL, or `undefined`.
 *
 * @internal
 */
export const endpointOf = (url: unknown): Path | undefined => {
  if (typeof url !== "string") return undefined
  const path = pathOf(url)
  return paths.has(path) ? (path as Path) : undefined
}

/**
 * The limiter cost of a call from its estimate: one request, plus its tokens and images when it has any
 * (a dimension the call does not use is left out of the cost).
 *
 * @internal
 */
export const costOf = (estimate: { readonly tokens: number; readonly images: number }): Record<string, number> => {
  const cost: Record<string, number> = { requests: 1 }
  if (estimate.tokens > 0) cost.tokens = estimate.tokens
  if (estimate.images > 0) cost.images = estimate.images
  return cost
}

/**
 * The cost of a call from its `usage` (chat, Responses, embeddings or images), or `undefined` without one.
 *
 * @internal
 */
export const usageCost = (usage: unknown): Budget.Cost | undefined => {
  if (usage === null || typeof usage !== "object") return undefined
  const u = usage as Record<string, unknown>
  const num = (value: unknown) => (typeof value === "number" && Number.isFinite(value) ? value : undefined)
  const total = num(u.total_tokens) ??
    ((num(u.prompt_tokens) ?? num(u.input_tokens) ?? 0) + (num(u.completion_tokens) ?? num(u.output_tokens) ?? 0))
  return { requests: 1, tokens: total }
}

/**
 * What an answer says its call used, to settle it: its `usage`, and for an image generation the images it
 * returned; `undefined` when the answer does not say (the estimate stays charged).
 *
 * @internal
 */
export const usedCost = (
  path: Path,
  data: unknown,
  estimate: { readonly images: number }
): Budget.Cost | undefined => {
  const answer = data as { readonly usage?: unknown; readonly data?: ReadonlyArray<unknown> } | null | undefined
  const usage = usageCost(answer?.usage)
  return path === "/images/generations" ? { ...usage, images: answer?.data?.length ?? estimate.images } : usage
}

// -----------------------------------------------------------------------------------------------------------
// request bodies: the fields the estimator and the router read
// -----------------------------------------------------------------------------------------------------------

const optional = <S extends Schema.Schema.Any>(schema: S) => Schema.optional(Schema.NullOr(schema))

/** A content part: an object whose `type` and `text`, when present, are strings. */
const Part = Schema.Struct({ type: optional(Schema.String), text: optional(Schema.String) })
  .annotations({ identifier: "ContentPart" })

/** A message's content: text, or a list of parts (or text pieces). */
const Content = Schema.Union(Schema.String, Schema.Array(Schema.Union(Schema.String, Part)))
  .annotations({ identifier: "string | Array<ContentPart>" })

const Message = Schema.Struct({
  role: optional(Schema.String),
  content: optional(Content),
  name: optional(Schema.String)
}).annotations({ identifier: "Message" })

/** `model` is optional here: under a router a body may leave it to the routing strategy. */
const Model = Schema.optional(Schema.String)

/** @internal */
export const ChatBody = Schema.Struct({
  model: Model,
  messages: Schema.Array(Message).annotations({ identifier: "Array<Message>" }),
  n: optional(Schema.Number),
  max_tokens: optional(Schema.Number),
  max_completion_tokens: optional(Schema.Number)
}).annotations({ identifier: "a chat completion body" })

/** @internal */
export const ResponsesBody = Schema.Struct({
  model: Model,
  input: optional(Schema.Union(Schema.String, Schema.Array(Message))),
  instructions: optional(Schema.String),
  max_output_tokens: optional(Schema.Number)
}).annotations({ identifier: "a Responses body" })

/** @internal */
export const EmbeddingsBody = Schema.Struct({
  model: Model,
  input: Schema.Union(
    Schema.String,
    Schema.Array(Schema.Union(Schema.String, Schema.Number, Schema.Array(Schema.Number)))
  )
}).annotations({ identifier: "an embeddings body" })

/** @internal */
export const ImagesBody = Schema.Struct({
  model: optional(Schema.String),
  prompt: Schema.String,
  n: optional(Schema.Number),
  quality: optional(Schema.String),
  size: optional(Schema.String)
}).annotations({ identifier: "an image generation body" })

/** A legacy completion's prompt: text, texts, token ids, or lists of token ids. */
const Prompt = Schema.Union(
  Schema.String,
  Schema.Array(Schema.Union(Schema.String, Schema.Number)),
  Schema.Array(Schema.Array(Schema.Number))
).annotations({ identifier: "string | Array<string | number> | Array<Array<number>>" })

/** @internal */
export const CompletionsBody = Schema.Struct({
  model: Model,
  prompt: Prompt,
  suffix: optional(Schema.String),
  n: optional(Schema.Number),
  best_of: optional(Schema.Number),
  max_tokens: optional(Schema.Number)
}).annotations({ identifier: "a (legacy) completion body" })

/** A moderation input: text, texts, or multi-modal parts (`{ type: "text", text }`, `{ type: "image_url", … }`). */
const ModerationInput = Schema.Union(
  Schema.String,
  Schema.Array(Schema.Union(Schema.String, Part))
).annotations({ identifier: "string | Array<string | ContentPart>" })

/** @internal */
export const ModerationsBody = Schema.Struct({
  model: optional(Schema.String),
  input: ModerationInput
}).annotations({ identifier: "a moderation body" })

const bodies = {
  "/chat/completions": ChatBody,
  "/responses": ResponsesBody,
  "/embeddings": EmbeddingsBody,
  "/images/generations": ImagesBody,
  "/completions": CompletionsBody,
  "/moderations": ModerationsBody
} as const

// -----------------------------------------------------------------------------------------------------------
// responses: what settling (usage) and the bulk runner read
// -----------------------------------------------------------------------------------------------------------

const Tokens = Schema.optional(Schema.Number)

/** `usage`, when present: token counts as numbers (extra fields such as `*_details` pass). */
const Usage = Schema.optional(Schema.NullOr(
  Schema.Struct({
    prompt_tokens: Tokens,
    completion_tokens: Tokens,
    input_tokens: Tokens,
    output_tokens: Tokens,
    total_tokens: Tokens
  }).annotations({ identifier: "Usage" })
))

/** @internal */
export const ChatResponse = Schema.Struct({ choices: Schema.Array(Schema.Unknown), usage: Usage }).annotations({
  identifier: "a chat completion"
})

/** @internal */
export const ResponsesResponse = Schema.Struct({ output: Schema.Array(Schema.Unknown), usage: Usage }).annotations({
  identifier: "a response"
})

/** @internal */
export const EmbeddingsResponse = Schema.Struct({ data: Schema.Array(Schema.Unknown), usage: Usage }).annotations({
  identifier: "an embeddings list"
})

/** @internal */
export const ImagesResponse = Schema.Struct({ data: Schema.Array(Schema.Unknown), usage: Usage }).annotations({
  identifier: "an images response"
})

/** @internal */
export const CompletionsResponse = Schema.Struct({ choices: Schema.Array(Schema.Unknown), usage: Usage }).annotations({
  identifier: "a (legacy) completion"
})

/**
 * A moderation answer carries no `usage`: its `results`, one per input.
 *
 * @internal
 */
export const ModerationsResponse = Schema.Struct({ results: Schema.Array(Schema.Unknown) }).annotations({
  identifier: "a moderation"
})

const responses = {
  "/chat/completions": ChatResponse,
  "/responses": ResponsesResponse,
  "/embeddings": EmbeddingsResponse,
  "/images/generations": ImagesResponse,
  "/completions": CompletionsResponse,
  "/moderations": ModerationsResponse
} as const

// -----------------------------------------------------------------------------------------------------------
// checking
// -----------------------------------------------------------------------------------------------------------

const MESSAGE_LIMIT = 300

const describe = (value: unknown): string => {
  if (value === null) return "null"
  if (Array.isArray(value)) return "an array"
  if (typeof value === "string") {
    return value.length > 40
      ? `a string of ${value.length} characters`
      : JSON.stringify(value)
  }
  if (typeof value === "object") return "an object"
  return `${typeof value} ${String(value)}`
}

/** The first issue as `where: what`, short (a huge value is never printed whole). */
const firstIssue = (root: string, error: ParseResult.ParseError): string => {
  // the most specific issue: the deepest (a union reports one issue per member)
  const issue = ParseResult.ArrayFormatter.formatErrorSync(error).reduce<ParseResult.ArrayFormatterIssue | undefined>(
    (best, next) => best === undefined || next.path.length > best.path.length ? next : best,
    undefined
  )
  if (issue === undefined) return `${root}: invalid`
  const where = [root, ...issue.path.map((key) => typeof key === "number" ? `[${key}]` : `.${String(key)}`)].join("")
    .replace(/\.\[/g, "[")
  let what = issue.message
  if (issue._tag === "Type" || issue._tag === "Composite") {
    // "Expected X, actual <the value printed whole>": keep the expectation, describe the value briefly
    const actual = (error.issue as { readonly actual?: unknown }).actual
    const at = issue.path.reduce<unknown>(
      (value, key) => (typeof value === "object" && value !== null ? (value as any)[key as any] : undefined),
      actual
    )
    const expected = /^Expected (.*?), actual /s.exec(what)?.[1]
    if (expected !== undefined) what = `expected ${expected}, got ${describe(at)}`
  }
  const text = `${where}: ${what}`
  return text.length > MESSAGE_LIMIT ? `${text.slice(0, MESSAGE_LIMIT)}…` : text
}

const check = <A, I>(schema: Schema.Schema<A, I>) => {
  const decode = Schema.decodeUnknownEither(schema, { errors: "first", onExcessProperty: "ignore" })
  return (value: unknown, root: string): string | undefined => {
    const result = decode(value)
    return Either.isRight(result) ? undefined : firstIssue(root, result.left)
  }
}

const bodyChecks = Object.fromEntries(
  Object.entries(bodies).map(([path, schema]) => [path, check(schema as Schema.Schema<unknown, unknown>)])
) as Record<Path, (value: unknown, root: string) => string | undefined>

const responseChecks = Object.fromEntries(
  Object.entries(responses).map(([path, schema]) => [path, check(schema as Schema.Schema<unknown, unknown>)])
) as Record<Path, (value: unknown, root: string) => string | undefined>

/**
 * What is wrong with a request body for its endpoint (`body.messages: expected ReadonlyArray<…>, got an
 * object`), or `undefined` when Sluice can read it.
 *
 * @internal
 */
export const bodyProblem = (path: Path, body: unknown): string | undefined => bodyChecks[path](body, "body")

/**
 * What is wrong with a successful response's body for its endpoint (an HTML page, a bare array, a missing
 * `choices`), or `undefined` when it has the endpoint's shape.
 *
 * @internal
 */
export const responseProblem = (path: Path, body: unknown): string | undefined => {
  if (typeof body === "string") {
    return `response: expected the endpoint's JSON, got text${
      /^\s*</.test(body) ? " (an HTML page?)" : ""
    } of ${body.length} characters`
  }
  return responseChecks[path](body, "response")
}

/**
 * What is wrong with a body sent straight to the `OpenAi` service (no router to pick a model): its shape,
 * or a missing `model` where the API has no default (chat completions, embeddings, legacy completions).
 *
 * @internal
 */
export const serviceBodyProblem = (path: Path, body: unknown): string | undefined =>
  bodyProblem(path, body) ??
    ((path === "/chat/completions" || path === "/embeddings" || path === "/completions") &&
        typeof (body as { readonly model?: unknown }).model !== "string"
      ? "body.model: is missing"
      : undefined)

/**
 * The error of a body Sluice cannot read: `BadRequest` with `code: "invalid_body"`, never sent, never
 * retried.
 *
 * @internal
 */
export const invalidBodyError = (problem: string, model: unknown): Errors.OpenAiError =>
  new Errors.BadRequest({
    message: problem,
    retryable: false,
    code: "invalid_body",
    ...(typeof model === "string" ? { model } : {})
  })

/**
 * The error of a 2xx answer that is not the endpoint's JSON: `UnknownError` with `code: "invalid_response"`
 * and the status, retryable (a proxy's or gateway's page is often passing; the default policy retries
 * `UnknownError` twice), then written as a failure.
 *
 * @internal
 */
export const invalidResponseError = (
  problem: string,
  context: { readonly model: string; readonly status?: number | undefined; readonly requestId: string | null }
): Errors.OpenAiError =>
  new Errors.UnknownError({
    message: problem,
    retryable: true,
    code: "invalid_response",
    ...(context.status === undefined ? {} : { status: context.status }),
    model: context.model,
    ...(context.requestId === null ? {} : { requestId: context.requestId })
  })

/** An answer as the SDK's `withResponse()` gives it (or an `HttpClient`'s, parsed). */
interface Answered {
  readonly data: unknown
  readonly response: { readonly status: number }
  readonly request_id: string | null
}

/** The error of an answer that does not have its endpoint's shape, or `undefined`. */
const shapeError = (path: Path, model: string, answer: Answered): Errors.OpenAiError | undefined => {
  const problem = responseProblem(path, answer.data)
  return problem === undefined
    ? undefined
    : invalidResponseError(problem, { model, status: answer.response.status, requestId: answer.request_id })
}

/**
 * Checks an SDK answer (`withResponse()`) against the endpoint's response shape; a mismatch rejects with
 * {@link invalidResponseError}. So does a 2xx the SDK could not parse (a `SyntaxError`: a JSON content type
 * over an HTML page); the SDK reports every non-2xx as its `APIError` instead.
 *
 * @internal
 */
export const checked = <A extends Answered>(path: Path, model: string, sent: Promise<A>) =>
  sent.then(
    (result) => {
      const error = shapeError(path, model, result)
      if (error === undefined) return result
      throw error
    },
    (error: unknown) => {
      if (error instanceof SyntaxError) {
        throw invalidResponseError(`response: not JSON (${error.message.slice(0, 120)})`, { model, requestId: null })
      }
      throw error
    }
  )

/**
 * {@link checked} for an answer already in hand (an `HttpClient`'s, parsed): fails with
 * {@link invalidResponseError} when it does not have the endpoint's shape.
 *
 * @internal
 */
export const checkedAnswer = <A extends Answered>(
  path: Path,
  model: string,
  answer: A
): Effect.Effect<A, Errors.OpenAiError> => {
  const error = shapeError(path, model, answer)
  return error === undefined ? Effect.succeed(answer) : Effect.fail(error)
}

/**
 * A Responses API object that came back `failed` is a failure of its kind.
 *
 * @internal
 */
export const checkResponseStatus = <A extends { readonly status?: unknown; readonly error?: unknown }>(
  response: A,
  model: string
): Effect.Effect<A, Errors.OpenAiError> =>
  response.status === "failed" && response.error !== null && response.error !== undefined
    ? Effect.fail(Errors.fromResponseFailed({ type: "response.failed", response } as any, { model }))
    : Effect.succeed(response)

/**
 * The error of a URL Sluice does not meter (`OpenAi.request`): a 404 `NotFound`, `unsupported_endpoint`.
 *
 * @internal
 */
export const unsupportedEndpointError = (url: string): Errors.OpenAiError =>
  Errors.classify({ status: 404, error: { message: `Sluice does not meter ${url}`, code: "unsupported_endpoint" } }, {
    model: "unknown"
  })

/**
 * A Responses API object with the SDK's convenience `output_text` (the message outputs' `output_text` parts
 * joined), as `responses.create` gives it; the object itself when it has one (or has no `output`).
 *
 * @internal
 */
export const withOutputText = <A>(response: A): A => {
  const r = response as { readonly output_text?: unknown; readonly output?: unknown } | null
  if (r === null || typeof r !== "object" || r.output_text !== undefined || !Array.isArray(r.output)) return response
  const texts: Array<string> = []
  for (const output of r.output as ReadonlyArray<{ readonly type?: unknown; readonly content?: unknown }>) {
    if (output?.type !== "message" || !Array.isArray(output.content)) continue
    for (const part of output.content as ReadonlyArray<{ readonly type?: unknown; readonly text?: unknown }>) {
      if (part?.type === "output_text" && typeof part.text === "string") texts.push(part.text)
    }
  }
  return { ...r, output_text: texts.join("") } as A
}
