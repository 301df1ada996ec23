/**
 * Token estimation at admission: what a call will be charged before its `usage` is known.
 *
 * OpenAI charges a call's tokens at admission from an estimate — the prompt plus `n × max_tokens` —
 * and Sluice reserves the same, then settles to the actual `usage`. Prompts are counted with a real
 * tokenizer (`gpt-tokenizer`), floored at a quarter of the characters (OpenAI's own admission estimate
 * is character-based; see {@link admissionCount}), in the model family's encoding (`o200k_base` for GPT-4o, GPT-4.1, GPT-5
 * and the o-series; `cl100k_base` for GPT-4, GPT-3.5 and the embedding models), with the chat format's
 * per-message overhead; tools and `response_format` schemas are counted from their JSON. When the caller
 * sets no maximum output, a documented default per model family is reserved (see
 * {@link defaultMaxOutputTokens}); settling refunds what was not used.
 *
 * @since 0.1.0
 */
import * as Endpoints from "./internal/endpoint.js"
import * as TokenCount from "./internal/tokenCount.js"

/**
 * The encodings Sluice counts with.
 *
 * @since 0.1.0
 * @category models
 */
export type Encoding = "o200k_base" | "cl100k_base"

/**
 * The encoding of a model family.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encodingFor = (model: string): Encoding =>
  typeof model !== "string"
    ? "o200k_base"
    : /^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|chatgpt-4o|o\d|gpt-image|gpt-oss|codex|computer-use)/.test(model)
    ? "o200k_base"
    : /^(gpt-4|gpt-3\.5|text-embedding|davinci|babbage)/.test(model)
    ? "cl100k_base"
    : "o200k_base"

/**
 * Counts the tokens of a text in an encoding, in time linear in its length: exact unless the text holds a
 * piece of more than 256 characters (a word of more than 256 letters, say), more than a million characters,
 * or more than 4,096 characters without whitespace and without a place where every split ends a piece (a
 * letter or a number followed by punctuation, a number followed by a letter…: minified JSON and base64 have
 * many; `"a"` × 10,000 has none); then an upper bound (what is not counted exactly counts its UTF-8 bytes),
 * never lower than the exact count. Special-token strings (`<|endoftext|>`) count as the text they are. The
 * encoding's vocabulary is loaded on first use (see {@link load}).
 *
 * @since 0.1.0
 * @category encoding
 */
export const countText = (text: string, encoding: Encoding = "o200k_base"): number =>
  typeof text !== "string" ? 0 : TokenCount.count(text, encoding)

/**
 * Loads the vocabularies of some encodings now (both by default) instead of on their first count. Loading
 * one takes a few hundred milliseconds of CPU and blocks the thread; a program that counts on a
 * latency-sensitive path (a bulk run dispatching at the limit, a server answering requests) loads them
 * before it starts, so the first count of each encoding does not stall every call in flight. Loading twice
 * is free.
 *
 * @since 0.2.0
 * @category encoding
 * @example
 * ```ts
 * import { TokenEstimator } from "@sluice/openai"
 *
 * TokenEstimator.load() // o200k_base and cl100k_base, before the work starts
 * TokenEstimator.load(["o200k_base"]) // only GPT-4o / GPT-4.1 / GPT-5 / o-series models will be counted
 * ```
 */
export const load = (encodings: ReadonlyArray<Encoding> = ["o200k_base", "cl100k_base"]): void => {
  for (const encoding of encodings) TokenCount.api(encoding)
}

/**
 * The tokens a text is charged at admission: the larger of its token count ({@link countText}) and a
 * quarter of its characters, rounded up. OpenAI's limiter estimates a request's tokens "based on the
 * character count" before the model has counted them, so a reservation below that estimate would be
 * admitted locally and refused by the server; settling to `usage` then trues it to the real count.
 *
 * @since 0.1.0
 * @category encoding
 */
export const admissionCount = (text: string, encoding: Encoding = "o200k_base"): number =>
  admissionWith(text, encoding, TokenCount.makeBudget())

const admissionWith = (text: unknown, encoding: Encoding, budget: TokenCount.Budget): number =>
  typeof text !== "string" || text.length === 0
    ? 0
    : Math.max(TokenCount.count(text, encoding, budget), Math.ceil(text.length / 4))

/**
 * The output reserved when a call sets no `max_tokens` / `max_completion_tokens` / `max_output_tokens`.
 * Reasoning models think before they answer, so they reserve more. Settling refunds what is unused.
 *
 * | family | reserved output tokens |
 * |---|---|
 * | o1, o3, o4, gpt-5 (reasoning) | 8,192 |
 * | everything else | 1,024 |
 *
 * @since 0.1.0
 * @category defaults
 */
export const defaultMaxOutputTokens = (model: string): number =>
  typeof model === "string" && /^(o\d|gpt-5)/.test(model) ? 8_192 : 1_024

/** Chat format overhead: every message is wrapped in a few tokens, and the reply is primed with 3. */
const TOKENS_PER_MESSAGE = 3
const TOKENS_PER_NAME = 1
const REPLY_PRIMING = 3
/** A high-detail image part counts at most 765 tokens for a 1024×1024 tile set; low detail 85. */
const IMAGE_TOKENS = { low: 85, high: 765, auto: 765 } as const

/** Counts the texts of one estimate against one budget of exactly-encoded characters. */
interface Counter {
  readonly text: (text: unknown) => number
  readonly json: (value: unknown) => number
}

/** JSON text of a value, or `undefined` when it has none (cyclic, too deep, a BigInt): counted as nothing. */
const jsonOf = (value: unknown): string | undefined => {
  try {
    const text = JSON.stringify(value)
    return typeof text === "string" ? text : undefined
  } catch {
    return undefined
  }
}

const counter = (encoding: Encoding): Counter => {
  const budget = TokenCount.makeBudget()
  return {
    text: (text) => admissionWith(text, encoding, budget),
    json: (value) => value === undefined || value === null ? 0 : admissionWith(jsonOf(value), encoding, budget)
  }
}

const isObject = (u: unknown): u is Readonly<Record<string, unknown>> => typeof u === "object" && u !== null

const imageTokens = (part: Readonly<Record<string, unknown>>): number => {
  const url = part.image_url
  const detail = isObject(url) ? url.detail : part.detail
  return typeof detail === "string" && detail in IMAGE_TOKENS
    ? IMAGE_TOKENS[detail as keyof typeof IMAGE_TOKENS]
    : IMAGE_TOKENS.auto
}

const contentTokens = (content: unknown, count: Counter): number => {
  if (content === null || content === undefined) return 0
  if (typeof content === "string") return count.text(content)
  if (Array.isArray(content)) {
    let total = 0
    for (const part of content as ReadonlyArray<unknown>) {
      if (typeof part === "string") total += count.text(part)
      else if (!isObject(part)) total += count.json(part)
      else if (typeof part.text === "string") total += count.text(part.text)
      else if (part.type === "image_url" || part.type === "input_image") total += imageTokens(part)
      else total += count.json(part)
    }
    return total
  }
  return count.json(content)
}

/** A body's fields (none when it is not an object). */
const fieldsOf = (body: unknown): Readonly<Record<string, unknown>> => isObject(body) ? body : {}

/** The model a body names, or the fallback when it names none (or not as a string). */
const modelOf = (model: unknown, fallback: string): string =>
  typeof model === "string" && model.length > 0 ? model : fallback

/** A text body's fields, its model (or the fallback) and a counter in that model's encoding. */
const textBody = (input: unknown, fallback: string) => {
  const body = fieldsOf(input)
  const model = modelOf(body.model, fallback)
  return { body, model, count: counter(encodingFor(model)) }
}

/**
 * What a call is charged at admission, and what it may be settled against later.
 *
 * @since 0.1.0
 * @category models
 */
export interface Estimate {
  readonly model: string
  /** Prompt tokens (input), counted with the model's encoding. */
  readonly promptTokens: number
  /** Output tokens reserved: `n × max_tokens` (or the default). */
  readonly maxOutputTokens: number
  /** What is reserved on the `tokens` dimension: prompt + output. */
  readonly tokens: number
  /** Images generated (the `images` dimension), for image calls. */
  readonly images: number
}

const positive = (value: unknown): number | undefined =>
  typeof value === "number" && Number.isFinite(value) && value > 0 ? value : undefined

/** A product of body figures stays a finite count (`n: 1e305` × `max_tokens` would be `Infinity`). */
const bounded = (value: number): number => Math.min(value, Number.MAX_SAFE_INTEGER)

/** How a caller's default output applies to a body that sets no maximum (see {@link defaultMaxOutputTokens}). */
interface OutputOptions {
  readonly defaultMaxOutputTokens?: number | undefined
}

/** A chat completion's output: `n` × `max_completion_tokens` (or `max_tokens`, else the default). */
const chatOutput = (body: Readonly<Record<string, unknown>>, model: string, options?: OutputOptions): number =>
  bounded(
    (positive(body.n) ?? 1) * (positive(body.max_completion_tokens) ?? positive(body.max_tokens) ??
      options?.defaultMaxOutputTokens ?? defaultMaxOutputTokens(model))
  )

/** A Responses API call's output: `max_output_tokens`, else the default. */
const responsesOutput = (body: Readonly<Record<string, unknown>>, model: string, options?: OutputOptions): number =>
  positive(body.max_output_tokens) ?? options?.defaultMaxOutputTokens ?? defaultMaxOutputTokens(model)

/** A legacy completions prompt that is a list of texts or of token lists: one completion per item. */
const manyPrompts = (prompt: unknown): boolean => Array.isArray(prompt) && prompt.some((x) => typeof x !== "number")

/** A legacy completion's output: `prompts × max(n, best_of) × max_tokens` (16, the API's default, when unset). */
const completionsOutput = (body: Readonly<Record<string, unknown>>, options?: OutputOptions): number => {
  const prompts = manyPrompts(body.prompt) ? Math.max(1, (body.prompt as ReadonlyArray<unknown>).length) : 1
  const perChoice = positive(body.max_tokens) ?? options?.defaultMaxOutputTokens ?? COMPLETIONS_DEFAULT_MAX_TOKENS
  return bounded(prompts * Math.max(positive(body.n) ?? 1, positive(body.best_of) ?? 1) * perChoice)
}

/** A GPT Image generation's output tokens: `n` pictures by quality and size (other image models: none). */
const imagesOutput = (body: Readonly<Record<string, unknown>>, model: string): number => {
  if (!model.startsWith("gpt-image")) return 0
  const large = typeof body.size === "string" && body.size !== "1024x1024" && body.size !== "auto"
  const quality = typeof body.quality === "string" && Object.hasOwn(IMAGE_OUTPUT_TOKENS, body.quality)
    ? body.quality
    : "auto"
  return bounded((positive(body.n) ?? 1) * Math.ceil(IMAGE_OUTPUT_TOKENS[quality]! * (large ? 1.5 : 1)))
}

/**
 * Estimates a chat completion (`/v1/chat/completions` body).
 *
 * @since 0.1.0
 * @category estimating
 * @example
 * ```ts
 * import { TokenEstimator } from "@sluice/openai"
 *
 * const estimate = TokenEstimator.chat({
 *   model: "gpt-4o-mini",
 *   messages: [{ role: "user", content: "Classify: I love it" }],
 *   max_tokens: 5
 * })
 * // estimate.tokens === estimate.promptTokens + 5
 * ```
 */
export const chat = (input: {
  readonly model: string
  readonly messages: ReadonlyArray<unknown>
  readonly n?: number | null | undefined
  readonly max_tokens?: number | null | undefined
  readonly max_completion_tokens?: number | null | undefined
  readonly tools?: unknown
  readonly functions?: unknown
  readonly response_format?: unknown
}, options?: { readonly defaultMaxOutputTokens?: number | undefined }): Estimate => {
  const { body, count, model } = textBody(input, "gpt-4o")
  let prompt = REPLY_PRIMING
  const messages: ReadonlyArray<unknown> = Array.isArray(body.messages)
    ? body.messages
    : body.messages === undefined
    ? []
    : [body.messages]
  for (const message of messages) {
    if (!isObject(message)) {
      prompt += TOKENS_PER_MESSAGE + count.json(message)
      continue
    }
    prompt += TOKENS_PER_MESSAGE + count.text(message.role) + contentTokens(message.content, count)
    if (typeof message.name === "string") prompt += TOKENS_PER_NAME + count.text(message.name)
    if (message.tool_calls !== undefined) prompt += count.json(message.tool_calls)
  }
  prompt += count.json(body.tools) + count.json(body.functions)
  const format = body.response_format
  if (format !== undefined && format !== null && !(isObject(format) && format.type === "text")) {
    prompt += count.json(format)
  }
  const output = chatOutput(body, model, options)
  return { model, promptTokens: prompt, maxOutputTokens: output, tokens: bounded(prompt + output), images: 0 }
}

/**
 * Estimates a Responses API call (`/v1/responses` body).
 *
 * @since 0.1.0
 * @category estimating
 */
export const responses = (input: {
  readonly model?: string | undefined
  readonly input?: unknown
  readonly instructions?: string | null | undefined
  readonly max_output_tokens?: number | null | undefined
  readonly tools?: unknown
  readonly text?: unknown
}, options?: { readonly defaultMaxOutputTokens?: number | undefined }): Estimate => {
  const { body, count, model } = textBody(input, "gpt-4o")
  let prompt = REPLY_PRIMING
  if (typeof body.instructions === "string") prompt += TOKENS_PER_MESSAGE + count.text(body.instructions)
  if (typeof body.input === "string") prompt += TOKENS_PER_MESSAGE + count.text(body.input)
  else if (Array.isArray(body.input)) {
    for (const item of body.input as ReadonlyArray<unknown>) {
      prompt += TOKENS_PER_MESSAGE + (isObject(item)
        ? count.text(item.role) + (item.content !== undefined ? contentTokens(item.content, count) : count.json(item))
        : count.json(item))
    }
  } else prompt += count.json(body.input)
  prompt += count.json(body.tools) + count.json(body.text)
  const output = responsesOutput(body, model, options)
  return { model, promptTokens: prompt, maxOutputTokens: output, tokens: bounded(prompt + output), images: 0 }
}

/**
 * The tokens of one input item of an embeddings or legacy completions body: a text is counted, a token id is one
 * token, a list of token ids is its length, anything else counts its JSON.
 */
const itemTokens = (count: Counter, item: unknown): number =>
  typeof item === "string"
    ? count.text(item)
    : typeof item === "number"
    ? 1
    : Array.isArray(item) && item.every((x) => typeof x === "number")
    ? item.length
    : count.json(item)

/**
 * Estimates an embeddings call: the tokens of every input (token arrays count their length).
 *
 * @since 0.1.0
 * @category estimating
 */
export const embeddings = (input: { readonly model: string; readonly input: unknown }): Estimate => {
  const { body, count, model } = textBody(input, "text-embedding-3-small")
  const inputs = body.input
  const prompt = Array.isArray(inputs) && inputs.some((x) => typeof x !== "number")
    ? inputs.reduce<number>((sum, item) => sum + itemTokens(count, item), 0)
    : itemTokens(count, inputs)
  return { model, promptTokens: prompt, maxOutputTokens: 0, tokens: prompt, images: 0 }
}

/** Output tokens of one GPT Image picture by quality, for a 1024×1024 picture (larger sizes cost ~1.5×). */
const IMAGE_OUTPUT_TOKENS: Record<string, number> = { low: 272, medium: 1_056, high: 4_160, auto: 4_160 }

/**
 * Estimates an image generation: `n` images on the `images` dimension, and for GPT Image models the
 * prompt plus the output tokens of the pictures on the `tokens` dimension.
 *
 * @since 0.1.0
 * @category estimating
 */
export const images = (input: {
  readonly model?: string | null | undefined
  readonly prompt: string
  readonly n?: number | null | undefined
  readonly quality?: string | null | undefined
  readonly size?: string | null | undefined
}): Estimate => {
  const body = fieldsOf(input)
  const model = modelOf(body.model, "dall-e-2")
  const n = positive(body.n) ?? 1
  if (!model.startsWith("gpt-image")) {
    return { model, promptTokens: 0, maxOutputTokens: 0, tokens: 0, images: n }
  }
  const prompt = counter("o200k_base").text(body.prompt)
  const output = imagesOutput(body, model)
  return { model, promptTokens: prompt, maxOutputTokens: output, tokens: bounded(prompt + output), images: n }
}

/** Output reserved per choice by a legacy completion that sets no `max_tokens`: the API's default. */
const COMPLETIONS_DEFAULT_MAX_TOKENS = 16

/**
 * Estimates a legacy completion (`/v1/completions` body): the prompt's tokens (text counted, token ids as
 * they are; a list of prompts is as many completions), plus `prompts × max(n, best_of) × max_tokens` output
 * (`max_tokens` defaults to 16, the API's default; the server generates `best_of` choices).
 *
 * @since 0.2.0
 * @category estimating
 */
export const completions = (input: {
  readonly model?: string | undefined
  readonly prompt: unknown
  readonly suffix?: string | null | undefined
  readonly n?: number | null | undefined
  readonly best_of?: number | null | undefined
  readonly max_tokens?: number | null | undefined
}, options?: { readonly defaultMaxOutputTokens?: number | undefined }): Estimate => {
  const { body, count, model } = textBody(input, "gpt-3.5-turbo-instruct")
  const prompt = body.prompt
  const promptTokens = (manyPrompts(prompt) ?
    (prompt as ReadonlyArray<unknown>).reduce<number>((sum, item) => sum + itemTokens(count, item), 0)
    : Array.isArray(prompt)
    ? prompt.length
    : itemTokens(count, prompt)) + count.text(body.suffix)
  const output = completionsOutput(body, options)
  return { model, promptTokens, maxOutputTokens: output, tokens: bounded(promptTokens + output), images: 0 }
}

/**
 * Estimates a moderation (`/v1/moderations` body): the tokens of its texts (other parts, such as images,
 * count their JSON); nothing is generated.
 *
 * @since 0.2.0
 * @category estimating
 */
export const moderations = (input: { readonly model?: string | undefined; readonly input: unknown }): Estimate => {
  const { body, count, model } = textBody(input, "omni-moderation-latest")
  const inputs = Array.isArray(body.input) ? (body.input as ReadonlyArray<unknown>) : [body.input]
  let prompt = 0
  for (const item of inputs) {
    if (typeof item === "string") prompt += count.text(item)
    else if (isObject(item) && typeof item.text === "string") prompt += count.text(item.text)
    else prompt += count.json(item)
  }
  return { model, promptTokens: prompt, maxOutputTokens: 0, tokens: prompt, images: 0 }
}

/**
 * Estimates any request body by its endpoint (`/v1/chat/completions`, `/v1/responses`,
 * `/v1/embeddings`, `/v1/images/generations`, `/v1/completions`, `/v1/moderations`); `undefined` for an
 * endpoint Sluice does not meter.
 *
 * @since 0.1.0
 * @category estimating
 */
export const forEndpoint = (
  url: string,
  body: any,
  options?: { readonly defaultMaxOutputTokens?: number | undefined }
): Estimate | undefined => {
  if (typeof url !== "string") return undefined
  switch (Endpoints.pathOf(url)) {
    case "/chat/completions":
      return chat(body, options)
    case "/responses":
      return responses(body, options)
    case "/embeddings":
      return embeddings(body)
    case "/images/generations":
      return images(body)
    case "/completions":
      return completions(body, options)
    case "/moderations":
      return moderations(body)
    default:
      return undefined
  }
}

/**
 * The output a request body may ask for, as {@link forEndpoint} reserves it (its `maxOutputTokens`) without counting
 * the prompt: a chat completion's `n` × `max_completion_tokens` (or `max_tokens`), a Responses API call's
 * `max_output_tokens`, either else the model's default ({@link defaultMaxOutputTokens}, or `defaultMaxOutputTokens`
 * given); a legacy completion's `prompts × max(n, best_of) × max_tokens`; a GPT Image generation's picture tokens (0
 * for other image models); nothing for embeddings and moderations; `undefined` for an endpoint Sluice does not meter.
 * Cheap (nothing is tokenized): `sluice run --order largest-first` sorts a file's text lines by it.
 *
 * @since 0.2.0
 * @category estimating
 * @example
 * ```ts
 * import { TokenEstimator } from "@sluice/openai"
 *
 * TokenEstimator.maxOutputOf("/v1/chat/completions", { model: "gpt-4o-mini", messages: [], n: 2, max_tokens: 100 })
 * // 200
 * ```
 */
export const maxOutputOf = (
  url: string,
  body: unknown,
  options?: { readonly defaultMaxOutputTokens?: number | undefined }
): number | undefined => {
  if (typeof url !== "string") return undefined
  const fields = fieldsOf(body)
  switch (Endpoints.pathOf(url)) {
    case "/chat/completions":
      return chatOutput(fields, modelOf(fields.model, "gpt-4o"), options)
    case "/responses":
      return responsesOutput(fields, modelOf(fields.model, "gpt-4o"), options)
    case "/completions":
      return completionsOutput(fields, options)
    case "/images/generations":
      return imagesOutput(fields, modelOf(fields.model, "dall-e-2"))
    case "/embeddings":
    case "/moderations":
      return 0
    default:
      return undefined
  }
}
