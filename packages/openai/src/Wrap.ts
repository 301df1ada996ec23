/**
 * A drop-in for code not written in Effect: `wrapOpenAI(client, options)` returns an object with the
 * SDK's own call surface — `chat.completions.create` (streaming too), `responses.create`,
 * `embeddings.create`, `images.generate` — returning Promises, governed by the same budgets, retries
 * and breakers as the `OpenAi` service. A platform team can hand it to any application.
 *
 * Failures reject with Sluice's typed errors (`RateLimited`, `QuotaExhausted`, `DeadlineExceeded`, …),
 * which are `Error`s with a `_tag`.
 *
 * @since 0.1.0
 */
import type { LimiterStore, RateLimiter } from "@sluice/core"
import { LimiterStore as Stores } from "@sluice/core"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Stream from "effect/Stream"
import type OpenAI from "openai"
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionCreateParams,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionCreateParamsStreaming
} from "openai/resources/chat/completions"
import type { CreateEmbeddingResponse, EmbeddingCreateParams } from "openai/resources/embeddings"
import type { ImageGenerateParamsNonStreaming, ImagesResponse } from "openai/resources/images"
import type { Response as OpenAiResponse, ResponseCreateParamsNonStreaming } from "openai/resources/responses/responses"
import * as OpenAi from "./OpenAi.js"

/**
 * Per-call options, beside the SDK's parameters.
 *
 * @since 0.1.0
 * @category models
 */
export type CallOptions = OpenAi.OpenAi.CallOptions

/**
 * The wrapped client.
 *
 * @since 0.1.0
 * @category models
 */
export interface WrappedOpenAI {
  readonly chat: {
    readonly completions: {
      create(params: ChatCompletionCreateParamsNonStreaming, options?: CallOptions): Promise<ChatCompletion>
      create(
        params: ChatCompletionCreateParamsStreaming,
        options?: CallOptions
      ): Promise<AsyncIterable<ChatCompletionChunk>>
    }
  }
  readonly responses: {
    create(params: ResponseCreateParamsNonStreaming, options?: CallOptions): Promise<OpenAiResponse>
  }
  readonly embeddings: {
    create(params: EmbeddingCreateParams, options?: CallOptions): Promise<CreateEmbeddingResponse>
  }
  readonly images: {
    generate(params: ImageGenerateParamsNonStreaming, options?: CallOptions): Promise<ImagesResponse>
  }
  /** The limiter: snapshots, peeks and gates for operators. */
  readonly limiter: () => Promise<RateLimiter.Service>
  /** Stops the limiter's fibers. */
  readonly close: () => Promise<void>
}

/**
 * Wraps an `OpenAI` client. Budgets live in memory unless `store` gives another `LimiterStore` layer
 * (Redis, for budgets shared by many processes).
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import OpenAI from "openai"
 * import { wrapOpenAI } from "@sluice/openai"
 *
 * const openai = wrapOpenAI(new OpenAI(), { organization: "acme", tier: 1 })
 * const completion = await openai.chat.completions.create(
 *   { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }], max_tokens: 20 },
 *   { priority: "background", tenant: "search" }
 * )
 * ```
 */
export const wrapOpenAI = (
  client: OpenAI,
  options: OpenAi.OpenAi.Options & {
    readonly store?: Layer.Layer<LimiterStore.LimiterStore> | undefined
  } = {}
): WrappedOpenAI => {
  const runtime = ManagedRuntime.make(
    OpenAi.layerClient(client, options).pipe(Layer.provide(options.store ?? Stores.layerMemory))
  )
  const call = <A>(f: (service: OpenAi.OpenAi.Service) => Effect.Effect<A, unknown>): Promise<A> =>
    runtime.runPromise(Effect.flatMap(OpenAi.OpenAi, f))

  function create(params: ChatCompletionCreateParams, options?: CallOptions): Promise<any> {
    if (params.stream === true) {
      // The stream runs on the wrapper's runtime; its reservation settles from the final usage chunk.
      return call((openai) => Stream.toAsyncIterableEffect(openai.chat.completions.stream(params, options)))
    }
    return call((openai) => openai.chat.completions.create(params, options))
  }

  return {
    chat: { completions: { create } },
    responses: { create: (params, options) => call((openai) => openai.responses.create(params, options)) },
    embeddings: { create: (params, options) => call((openai) => openai.embeddings.create(params, options)) },
    images: { generate: (params, options) => call((openai) => openai.images.generate(params, options)) },
    limiter: () => call((openai) => Effect.succeed(openai.limiter)),
    close: () => runtime.dispose()
  }
}
