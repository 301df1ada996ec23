/**
 * Sluice under Effect's own AI stack: an `HttpClient` that governs every request to a known OpenAI endpoint
 * (chat completions, Responses, embeddings, image generations, legacy completions, moderations; streaming and
 * not) with the `OpenAi` service's governed call (`OpenAiHttp` of `@sluice/openai`): estimate, admission on every
 * scope, mark sent, send, settle to `usage`, sync from the `x-ratelimit-*` headers, classify a failure, gate the
 * herd on `retry-after` and "try again in", retry by kind through admission, circuit breakers. Every other request
 * passes through untouched.
 *
 * `@effect/ai-openai`'s `OpenAiClient` takes its `HttpClient` from context, so governing `LanguageModel`,
 * `streamText` and `EmbeddingModel` is one layer between the two.
 *
 * How failures surface: `@effect/ai` turns an `HttpClientError.RequestError` into `AiError.HttpRequestError` and
 * keeps it as its `cause`, but turns a `ResponseError` into `AiError.HttpResponseError` without any cause. So a
 * call that Sluice ends (a failure it will not retry, retries spent, a refused admission, an open breaker) fails
 * with a `RequestError` whose `cause` is Sluice's typed error (`ContextLengthExceeded`, `QuotaExhausted`,
 * `DeadlineExceeded`, `CircuitOpen`, …) and whose `description` names it; {@link sluiceError} finds it from the
 * `AiError`. A 429 or a 503 that Sluice retried never reaches `@effect/ai` at all.
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { LimiterStore, RateLimiter } from "@sluice/core"
import { OpenAi, OpenAiError, OpenAiHttp } from "@sluice/openai"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

/**
 * The per-call options a governed request reads from its fiber's context: the lane (`priority`), the `tenant`
 * scope, a `deadline` or `maxWait` for admission, a `retry` policy of its own. Set them with
 * {@link withCallOptions}.
 *
 * @since 0.1.0
 * @category call options
 */
export class CallOptions extends Context.Tag("@sluice/effect-ai/CallOptions")<
  CallOptions,
  OpenAi.OpenAi.CallOptions
>() {}

/**
 * Runs an effect or a stream (a `LanguageModel.generateText`, a `streamText`, an `EmbeddingModel.embed`) with
 * these call options for every governed request it makes.
 *
 * @since 0.1.0
 * @category call options
 * @example
 * ```ts
 * import * as LanguageModel from "@effect/ai/LanguageModel"
 * import { GovernedHttpClient } from "@sluice/effect-ai"
 *
 * const summary = LanguageModel.generateText({ prompt: "Summarise the report" }).pipe(
 *   GovernedHttpClient.withCallOptions({ priority: "background", tenant: "reports" })
 * )
 * ```
 */
export const withCallOptions: {
  (
    options: OpenAi.OpenAi.CallOptions
  ): <Self extends Effect.Effect<any, any, any> | Stream.Stream<any, any, any>>(self: Self) => Self
  <Self extends Effect.Effect<any, any, any> | Stream.Stream<any, any, any>>(
    self: Self,
    options: OpenAi.OpenAi.CallOptions
  ): Self
} = dual(2, (self: unknown, options: OpenAi.OpenAi.CallOptions) => provide(self, options)) as any

const isStream = (u: unknown): u is Stream.Stream<unknown, unknown, unknown> =>
  Predicate.hasProperty(u, Stream.StreamTypeId)

const provide = (self: unknown, options: OpenAi.OpenAi.CallOptions): unknown =>
  isStream(self)
    ? Stream.provideService(self, CallOptions, options)
    : Effect.provideService(self as Effect.Effect<unknown, unknown, unknown>, CallOptions, options)

/**
 * @since 0.1.0
 * @category models
 */
export interface Options extends OpenAi.OpenAi.Options {
  /**
   * The API roots whose requests are governed (default `https://api.openai.com/v1`): a request is governed when
   * its URL starts with one of them and the rest is a known endpoint (`/responses`, `/chat/completions`, …). Give
   * your proxy's or the simulator's root here, as you give it to `OpenAiClient.layer({ apiUrl })`.
   */
  readonly apiUrl?: string | ReadonlyArray<string> | undefined
}

/**
 * The errors a governed request ends with (Sluice's), as `@effect/ai` users find them: the `cause` of the
 * `RequestError` (see the module's description).
 *
 * @since 0.1.0
 * @category errors
 */
export type SluiceError = OpenAi.CallError

const sluiceTags: ReadonlySet<string> = new Set([
  "DeadlineExceeded",
  "CostExceedsCapacity",
  "ScopeClosed",
  "LimiterStoreError",
  "CircuitOpen",
  "RetryDeadlineExceeded"
])

const isSluiceError = (u: unknown): u is SluiceError =>
  OpenAiError.isOpenAiError(u) ||
  (Predicate.hasProperty(u, "_tag") && typeof u._tag === "string" && sluiceTags.has(u._tag) && u instanceof Error)

/**
 * Sluice's typed error behind a failure, if there is one: the error itself, or found along its `cause`s (an
 * `AiError.HttpRequestError`'s `cause` is the `RequestError`, whose `cause` is Sluice's error).
 *
 * @since 0.1.0
 * @category errors
 * @example
 * ```ts
 * import * as LanguageModel from "@effect/ai/LanguageModel"
 * import { GovernedHttpClient } from "@sluice/effect-ai"
 * import * as Effect from "effect/Effect"
 * import * as Option from "effect/Option"
 *
 * const answer = LanguageModel.generateText({ prompt: "Hello" }).pipe(
 *   Effect.catchAll((error) => {
 *     const cause = GovernedHttpClient.sluiceError(error)
 *     return Option.isSome(cause) && cause.value._tag === "ContextLengthExceeded"
 *       ? Effect.succeed("(too long)")
 *       : Effect.fail(error)
 *   })
 * )
 * ```
 */
export const sluiceError = (error: unknown): Option.Option<SluiceError> => {
  let current = error
  for (let depth = 0; depth < 8 && current !== undefined && current !== null; depth++) {
    if (isSluiceError(current)) return Option.some(current)
    current = Predicate.hasProperty(current, "cause") ? current.cause : undefined
  }
  return Option.none()
}

const decoder = new TextDecoder()

/** A request's JSON body, or `undefined` (no body, or not JSON: multipart uploads pass through). */
const jsonBody = (request: HttpClientRequest.HttpClientRequest): unknown => {
  const body = request.body
  if (body._tag !== "Uint8Array" || !body.contentType.includes("json")) return undefined
  try {
    return JSON.parse(decoder.decode(body.body))
  } catch {
    return undefined
  }
}

const rootsOf = (apiUrl: Options["apiUrl"]): ReadonlyArray<string> =>
  (apiUrl === undefined ? ["https://api.openai.com/v1"] : typeof apiUrl === "string" ? [apiUrl] : apiUrl)
    .map((root) => root.replace(/\/+$/, ""))

/** What classification reads of a failed send: a transport error's own cause (a fetch `TypeError`, a timeout). */
const rawCause = (error: unknown): unknown =>
  Predicate.hasProperty(error, "_tag") && (error._tag === "RequestError" || error._tag === "ResponseError") &&
    Predicate.hasProperty(error, "cause") && error.cause !== undefined
    ? error.cause
    : error

/** Sluice's error as `@effect/ai` keeps it: a `RequestError` whose `cause` it is. */
const surfaced = (request: HttpClientRequest.HttpClientRequest) => (error: SluiceError) =>
  new HttpClientError.RequestError({
    request,
    reason: "Transport",
    cause: error,
    description: `${error._tag}: ${error.message}`
  })

/**
 * Governs `client`: every POST with a JSON body to a known endpoint under `options.apiUrl` takes the governed
 * call (the governor's limits, breakers and retries), with the {@link CallOptions} in the fiber's context; every
 * other request is `client`'s own. A retry sends the request again through `client`; a chat completion streamed
 * without `stream_options.include_usage` is sent with it (the usage chunk settles the call and is not passed
 * on), the body re-encoded, so give the platform's own client here (its requests are not preprocessed twice).
 *
 * @since 0.1.0
 * @category constructors
 */
export const governClient = (
  client: HttpClient.HttpClient,
  governor: OpenAiHttp.Governor,
  options: { readonly apiUrl?: string | ReadonlyArray<string> | undefined } = {}
): HttpClient.HttpClient => {
  const roots = rootsOf(options.apiUrl)
  const endpointFor = (url: string): OpenAiHttp.Endpoint | undefined => {
    for (const root of roots) {
      if (url.startsWith(root)) return OpenAiHttp.endpointOf(url.slice(root.length))
    }
    return undefined
  }
  return HttpClient.transform(client, (effect, request) => {
    if (request.method !== "POST") return effect
    const endpoint = endpointFor(request.url)
    if (endpoint === undefined) return effect
    const body = jsonBody(request)
    if (body === undefined) return effect
    /** One attempt: the request as it came, or with the body the governor sends (then re-encoded). */
    const send = (sent: unknown) => {
      const attempt = sent === body ? effect : client.execute(HttpClientRequest.bodyUnsafeJson(request, sent))
      return Effect.mapError(attempt, rawCause)
    }
    return Effect.flatMap(Effect.serviceOption(CallOptions), (callOptions) => {
      const perCall = Option.getOrUndefined(callOptions)
      const streamed = Predicate.isRecord(body) && body.stream === true
      if (!streamed) {
        return governor.request(endpoint, body, send, perCall).pipe(
          Effect.map((answer) =>
            HttpClientResponse.fromWeb(
              request,
              new Response(answer.text, { status: answer.status, headers: answer.headers })
            )
          ),
          Effect.mapError(surfaced(request))
        )
      }
      // the stream holds its permit until its body ends; closing the caller's scope (`@effect/ai-openai` reads a
      // stream in one) ends it too
      return Effect.gen(function*() {
        const scope = yield* Scope.make()
        const parent = yield* Effect.serviceOption(Scope.Scope)
        if (Option.isSome(parent)) yield* Scope.addFinalizer(parent.value, Scope.close(scope, Exit.void))
        const opened = yield* Effect.onError(
          Scope.extend(governor.stream(endpoint, body, send, perCall), scope),
          (cause) => Scope.close(scope, Exit.failCause(cause))
        )
        const readable = yield* Stream.toReadableStreamEffect(
          Stream.ensuring(opened.body, Scope.close(scope, Exit.void))
        )
        return HttpClientResponse.fromWeb(
          request,
          new Response(readable, { status: opened.status, headers: opened.headers })
        )
      }).pipe(Effect.mapError(surfaced(request)))
    })
  })
}

/**
 * The governed `HttpClient` over the one in context, on the `RateLimiter` in context: share the limiter of an
 * `OpenAi` service (`OpenAi.layerClient` provides one) and the SDK's calls and `@effect/ai`'s share one budget.
 * The options are the `OpenAi` service's (organization, project, retry, breaker, adaptive, …; limits are the
 * limiter's) and `apiUrl`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWithLimiter = (
  options: Options = {}
): Layer.Layer<HttpClient.HttpClient, never, HttpClient.HttpClient | RateLimiter.RateLimiter> =>
  Layer.scoped(
    HttpClient.HttpClient,
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      const governor = yield* OpenAiHttp.make(options)
      return governClient(client, governor, options)
    })
  )

/**
 * The governed `HttpClient` over the one in context, with a `RateLimiter` of its own built from the options'
 * limits (a usage `tier`'s presets, explicit `budgets`, or the adaptive mode) on the `LimiterStore` in context
 * (memory or Redis). Provides the limiter too, to share with other services.
 *
 * @since 0.1.0
 * @category layers
 * @example
 * ```ts
 * import * as LanguageModel from "@effect/ai/LanguageModel"
 * import * as OpenAiClient from "@effect/ai-openai/OpenAiClient"
 * import * as OpenAiLanguageModel from "@effect/ai-openai/OpenAiLanguageModel"
 * import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
 * import { LimiterStore } from "@sluice/core"
 * import { GovernedHttpClient } from "@sluice/effect-ai"
 * import * as Config from "effect/Config"
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 *
 * const OpenAi = OpenAiClient.layerConfig({ apiKey: Config.redacted("OPENAI_API_KEY") }).pipe(
 *   Layer.provide(GovernedHttpClient.layer({ organization: "acme", tier: 1 })), // the one line
 *   Layer.provide([FetchHttpClient.layer, LimiterStore.layerMemory])
 * )
 *
 * const program = LanguageModel.generateText({ prompt: "Say hello" }).pipe(
 *   Effect.provide(OpenAiLanguageModel.model("gpt-4o-mini")),
 *   Effect.provide(OpenAi)
 * )
 * ```
 */
export const layer = (
  options: Options = {}
): Layer.Layer<
  HttpClient.HttpClient | RateLimiter.RateLimiter,
  never,
  HttpClient.HttpClient | LimiterStore.LimiterStore
> => {
  const limiter = RateLimiter.layer({ budgets: OpenAi.budgetsFor(options), coldStartLag: OpenAi.coldStartLag })
  return Layer.merge(limiter, layerWithLimiter(options).pipe(Layer.provide(limiter))).pipe(Layer.fresh)
}

/**
 * {@link layer} on an in-memory `LimiterStore`: one process's budget.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = (
  options: Options = {}
): Layer.Layer<HttpClient.HttpClient | RateLimiter.RateLimiter, never, HttpClient.HttpClient> =>
  layer(options).pipe(Layer.provide(LimiterStore.layerMemory))
