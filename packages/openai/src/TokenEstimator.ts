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
import { countTokens as countCl100k } from "gpt-tokenizer/encoding/cl100k_base"
import { countTokens as countO200k } from "gpt-tokenizer/encoding/o200k_base"

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
  /^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|chatgpt-4o|o\d|gpt-image|gpt-oss|codex|computer-use)/.test(model)
    ? "o200k_base"
    : /^(gpt-4|gpt-3\.5|text-embedding|davinci|babbage)/.test(model)
    ? "cl100k_base"
    : "o200k_base"

/**
 * Counts the tokens of a text in an encoding.
 *
 * @since 0.1.0
 * @category encoding
 */
export const countText = (text: string, encoding: Encoding = "o200k_base"): number =>
  text.length === 0 ? 0 : encoding === "cl100k_base" ? countCl100k(text) : countO200k(text)

/**
 * The tokens a text is charged at admission: the larger of its real token count and a quarter of its
 * characters, rounded up. OpenAI's limiter estimates a request's tokens "based on the character count"
 * before the model has counted them, so a reservation below that estimate would be admitted locally
 * and refused by the server; settling to `usage` then trues it to the real count.
 *
 * @since 0.1.0
 * @category encoding
 */
export const admissionCount = (text: string, encoding: Encoding = "o200k_base"): number =>
  text.length === 0 ? 0 : Math.max(countText(text, encoding), Math.ceil(text.length / 4))

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
export const defaultMaxOutputTokens = (model: string): number => /^(o\d|gpt-5)/.test(model) ? 8_192 : 1_024

/** Chat format overhead: every message is wrapped in a few tokens, and the reply is primed with 3. */
const TOKENS_PER_MESSAGE = 3
const TOKENS_PER_NAME = 1
const REPLY_PRIMING = 3
/** A high-detail image part counts at most 765 tokens for a 1024×1024 tile set; low detail 85. */
const IMAGE_TOKENS = { low: 85, high: 765, auto: 765 } as const

type Part = { readonly type?: string; readonly text?: string; readonly image_url?: { readonly detail?: string } }

const contentTokens = (content: unknown, encoding: Encoding): number => {
  if (content === null || content === undefined) return 0
  if (typeof content === "string") return admissionCount(content, encoding)
  if (Array.isArray(content)) {
    let total = 0
    for (const part of content as ReadonlyArray<Part | string>) {
      if (typeof part === "string") total += admissionCount(part, encoding)
      else if (typeof part?.text === "string") total += admissionCount(part.text, encoding)
      else if (part?.type === "image_url" || part?.type === "input_image") {
        const detail = (part.image_url?.detail ?? (part as any).detail ?? "auto") as keyof typeof IMAGE_TOKENS
        total += IMAGE_TOKENS[detail] ?? IMAGE_TOKENS.auto
      } else if (part !== null && typeof part === "object") total += admissionCount(JSON.stringify(part), encoding)
    }
    return total
  }
  return admissionCount(JSON.stringify(content), encoding)
}

const jsonTokens = (value: unknown, encoding: Encoding): number =>
  value === undefined || value === null ? 0 : admissionCount(JSON.stringify(value), encoding)

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
export const chat = (body: {
  readonly model: string
  readonly messages: ReadonlyArray<unknown>
  readonly n?: number | null | undefined
  readonly max_tokens?: number | null | undefined
  readonly max_completion_tokens?: number | null | undefined
  readonly tools?: unknown
  readonly functions?: unknown
  readonly response_format?: unknown
}, options?: { readonly defaultMaxOutputTokens?: number | undefined }): Estimate => {
  const encoding = encodingFor(body.model)
  let prompt = REPLY_PRIMING
  for (const raw of body.messages) {
    const message = raw as { role?: string; content?: unknown; name?: string; tool_calls?: unknown }
    prompt += TOKENS_PER_MESSAGE + admissionCount(message.role ?? "", encoding) +
      contentTokens(message.content, encoding)
    if (typeof message.name === "string") prompt += TOKENS_PER_NAME + admissionCount(message.name, encoding)
    if (message.tool_calls !== undefined) prompt += jsonTokens(message.tool_calls, encoding)
  }
  prompt += jsonTokens(body.tools, encoding) + jsonTokens(body.functions, encoding)
  const format = body.response_format as { type?: string } | undefined
  if (format !== undefined && format !== null && format.type !== "text") prompt += jsonTokens(format, encoding)
  const perChoice = positive(body.max_completion_tokens) ?? positive(body.max_tokens) ??
    options?.defaultMaxOutputTokens ?? defaultMaxOutputTokens(body.model)
  const n = positive(body.n) ?? 1
  const output = n * perChoice
  return { model: body.model, promptTokens: prompt, maxOutputTokens: output, tokens: prompt + output, images: 0 }
}

/**
 * Estimates a Responses API call (`/v1/responses` body).
 *
 * @since 0.1.0
 * @category estimating
 */
export const responses = (body: {
  readonly model?: string | undefined
  readonly input?: unknown
  readonly instructions?: string | null | undefined
  readonly max_output_tokens?: number | null | undefined
  readonly tools?: unknown
  readonly text?: unknown
}, options?: { readonly defaultMaxOutputTokens?: number | undefined }): Estimate => {
  const model = body.model ?? "gpt-4o"
  const encoding = encodingFor(model)
  let prompt = REPLY_PRIMING
  if (typeof body.instructions === "string") prompt += TOKENS_PER_MESSAGE + admissionCount(body.instructions, encoding)
  if (typeof body.input === "string") prompt += TOKENS_PER_MESSAGE + admissionCount(body.input, encoding)
  else if (Array.isArray(body.input)) {
    for (const item of body.input as ReadonlyArray<{ role?: string; content?: unknown }>) {
      prompt += TOKENS_PER_MESSAGE + admissionCount(item?.role ?? "", encoding) +
        (item?.content !== undefined ? contentTokens(item.content, encoding) : jsonTokens(item, encoding))
    }
  }
  prompt += jsonTokens(body.tools, encoding) + jsonTokens(body.text, encoding)
  const output = positive(body.max_output_tokens) ?? options?.defaultMaxOutputTokens ?? defaultMaxOutputTokens(model)
  return { model, promptTokens: prompt, maxOutputTokens: output, tokens: prompt + output, images: 0 }
}

/**
 * Estimates an embeddings call: the tokens of every input (token arrays count their length).
 *
 * @since 0.1.0
 * @category estimating
 */
export const embeddings = (body: { readonly model: string; readonly input: unknown }): Estimate => {
  const encoding = encodingFor(body.model)
  const one = (input: unknown): number =>
    typeof input === "string"
      ? admissionCount(input, encoding)
      : Array.isArray(input) && input.every((x) => typeof x === "number")
      ? input.length
      : 0
  const input = body.input
  const prompt = Array.isArray(input) && input.some((x) => typeof x !== "number")
    ? input.reduce<number>((sum, item) => sum + one(item), 0)
    : one(input)
  return { model: body.model, promptTokens: prompt, maxOutputTokens: 0, tokens: prompt, images: 0 }
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
export const images = (body: {
  readonly model?: string | null | undefined
  readonly prompt: string
  readonly n?: number | null | undefined
  readonly quality?: string | null | undefined
  readonly size?: string | null | undefined
}): Estimate => {
  const model = body.model ?? "dall-e-2"
  const n = positive(body.n) ?? 1
  if (!model.startsWith("gpt-image")) {
    return { model, promptTokens: 0, maxOutputTokens: 0, tokens: 0, images: n }
  }
  const prompt = admissionCount(body.prompt, "o200k_base")
  const large = typeof body.size === "string" && body.size !== "1024x1024" && body.size !== "auto"
  const perImage = Math.ceil(
    (IMAGE_OUTPUT_TOKENS[body.quality ?? "auto"] ?? IMAGE_OUTPUT_TOKENS.auto) * (large ? 1.5 : 1)
  )
  return { model, promptTokens: prompt, maxOutputTokens: n * perImage, tokens: prompt + n * perImage, images: n }
}

/**
 * Estimates any request body by its endpoint (`/v1/chat/completions`, `/v1/responses`,
 * `/v1/embeddings`, `/v1/images/generations`); `undefined` for an endpoint Sluice does not meter.
 *
 * @since 0.1.0
 * @category estimating
 */
export const forEndpoint = (
  url: string,
  body: any,
  options?: { readonly defaultMaxOutputTokens?: number | undefined }
): Estimate | undefined => {
  const path = url.replace(/^https?:\/\/[^/]+/, "").replace(/^\/v1/, "")
  switch (path) {
    case "/chat/completions":
      return chat(body, options)
    case "/responses":
      return responses(body, options)
    case "/embeddings":
      return embeddings(body)
    case "/images/generations":
      return images(body)
    default:
      return undefined
  }
}
