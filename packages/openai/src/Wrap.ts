/**
 * A drop-in for code not written in Effect: `wrapOpenAI(client, options)` returns an object with the
 * SDK's own call surface — `chat.completions.create` (streaming too), `responses.create`,
 * `embeddings.create`, `images.generate` — returning Promises, governed by the same budgets, retries
 * and breakers as the `OpenAi` service. A platform team can hand it to any application.
 *
 * Failures reject with Sluice's typed errors themselves (`RateLimited`, `QuotaExhausted`,
 * `DeadlineExceeded`, …): `Error`s with a `_tag` to branch on, never a wrapper.
 *
 * @since 0.1.0
 */
import type { RateLimiter } from "@sluice/core"
import { LimiterStore as Stores } from "@sluice/core"
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type OpenAIClient from "openai"
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionCreateParams,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionCreateParamsStreaming
} from "openai/resources/chat/completions"
import * as OpenAi from "./OpenAi.js"
import type * as ResponseCache from "./ResponseCache.js"

/**
 * Per-call options, beside the SDK's parameters: the service's call options (lane, deadline,
 * tenant, retry) and an `AbortSignal` that cancels the call (a waiting call leaves the queue, an
 * admitted one is aborted and its reservation settled).
 *
 * @since 0.1.0
 * @category models
 */
export interface CallOptions extends OpenAi.OpenAi.CallOptions {
  readonly signal?: AbortSignal | undefined
}

/**
 * A call on a wrapper after `close()`.
 *
 * @since 0.1.0
 * @category errors
 */
export class ClientClosed extends Schema.TaggedError<ClientClosed>("@sluice/openai/ClientClosed")("ClientClosed", {
  message: Schema.String
}) {}

/**
 * The wrapped client's calls: the `OpenAi` service's ({@link OpenAi.Calls}) with {@link CallOptions},
 * as Promises of the SDK's results.
 *
 * @since 0.2.0
 * @category models
 */
export interface PromiseCalls extends OpenAi.CallLambda {
  readonly type: (
    params: OpenAi.Calls[this["call"]]["params"],
    options?: CallOptions
  ) => Promise<OpenAi.Calls[this["call"]]["result"]>
}

/**
 * The wrapped client: the SDK's call surface ({@link OpenAi.CallSurface}), where a stream is
 * `chat.completions.create` with `stream: true`, as in the SDK.
 *
 * @since 0.1.0
 * @category models
 */
export interface WrappedOpenAI extends Omit<OpenAi.CallSurface<PromiseCalls>, "chat"> {
  readonly chat: {
    readonly completions: {
      create(params: ChatCompletionCreateParamsNonStreaming, options?: CallOptions): Promise<ChatCompletion>
      /**
       * Resolves once the stream is open (admitted, and the server answered), like the SDK; the final
       * usage chunk settles the reservation, and leaving the loop early (`break`) releases the rest.
       */
      create(
        params: ChatCompletionCreateParamsStreaming,
        options?: CallOptions
      ): Promise<AsyncIterable<ChatCompletionChunk>>
    }
  }
  /**
   * The limiter, for operators (peeks, gates). Its methods are Effects: run them on the wrapper's
   * runtime (the `runtime` option) so that they read the same clock.
   */
  readonly limiter: () => Promise<RateLimiter.Service>
  /** Every bucket, gate and closed scope, and how many calls wait: the limiter's snapshot, now. */
  readonly snapshot: () => Promise<RateLimiter.Snapshot>
  /** Stops the limiter's fibers; calls after it reject with {@link ClientClosed}. Idempotent. */
  readonly close: () => Promise<void>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface WrapOptions extends Omit<OpenAi.OpenAi.Options, "cache"> {
  /**
   * A response cache for every call (see `ResponseCache`): a layer (`ResponseCache.layerMemory()`,
   * `ResponseCache.layerFileSystem(dir)` with `NodeContext.layer`, or `ResponseCache.layer` over a Redis
   * `KeyValueStore`), built with the wrapper and released by `close()`; or a cache service already made; or `false`
   * for none even when the runtime has one.
   *
   * @since 0.2.0
   */
  readonly cache?: Layer.Layer<ResponseCache.ResponseCache> | ResponseCache.ResponseCache.Service | false | undefined
  /**
   * Where budgets live: a `LimiterStore` layer (default in memory; Redis for budgets shared by many
   * processes).
   */
  readonly store?: Layer.Layer<Stores.LimiterStore> | undefined
  /**
   * The Effect runtime the calls run on (default `Runtime.defaultRuntime`). Its `Clock` drives every
   * wait: in a test, pass the test's runtime (`yield* Effect.runtime<never>()`) so `TestClock` does.
   */
  readonly runtime?: Runtime.Runtime<never> | undefined
}

/** What a failed call rejects with: the typed error itself (or the defect, or the interruption). */
const rejection = (cause: Cause.Cause<unknown>): unknown =>
  Option.getOrElse(Cause.failureOption(cause), () => Cause.squash(cause))

/**
 * Wraps an `OpenAI` client. Budgets live in memory unless `store` gives another `LimiterStore` layer
 * (Redis, for budgets shared by many processes); `cache` puts a response cache in front of every call.
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import OpenAI from "openai"
 * import { ResponseCache, wrapOpenAI } from "@sluice/openai"
 *
 * const openai = wrapOpenAI(new OpenAI(), { organization: "acme", tier: 1 })
 * const completion = await openai.chat.completions.create(
 *   { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }], max_tokens: 20 },
 *   { priority: "background", tenant: "search" }
 * )
 *
 * // with a response cache: a repeated deterministic request is answered without a call
 * const cached = wrapOpenAI(new OpenAI(), { tier: 1, cache: ResponseCache.layerMemory({ ttl: "1 hour" }) })
 * ```
 */
export const wrapOpenAI = (client: OpenAIClient, options: WrapOptions = {}): WrappedOpenAI => {
  const runtime = options.runtime ?? Runtime.defaultRuntime
  const runExit = Runtime.runPromiseExit(runtime)
  const { cache, ...rest } = options
  const cacheLayer = Layer.isLayer(cache) ? cache as Layer.Layer<ResponseCache.ResponseCache> : undefined
  const service = cacheLayer === undefined
    ? OpenAi.layerClient(client, { ...rest, cache: cache as ResponseCache.ResponseCache.Service | false | undefined })
    : OpenAi.layerClient(client, rest).pipe(Layer.provide(cacheLayer))
  const layer = service.pipe(Layer.provide(options.store ?? Stores.layerMemory))
  const scope = Effect.runSync(Scope.make())
  let closed = false
  let built: Promise<Context.Context<OpenAi.OpenAi | RateLimiter.RateLimiter>> | undefined = undefined

  const services = (): Promise<Context.Context<OpenAi.OpenAi | RateLimiter.RateLimiter>> => {
    if (built === undefined) {
      built = runExit(Layer.buildWithScope(layer, scope)).then((exit) =>
        Exit.isSuccess(exit) ? exit.value : Promise.reject(rejection(exit.cause))
      )
    }
    return built
  }

  const run = async <A>(
    f: (service: OpenAi.OpenAi.Service) => Effect.Effect<A, unknown, Scope.Scope>,
    signal?: AbortSignal | undefined
  ): Promise<A> => {
    if (closed) throw new ClientClosed({ message: "this wrapped OpenAI client is closed" })
    const context = await services()
    const exit = await runExit(
      Effect.provide(Effect.scoped(Effect.flatMap(OpenAi.OpenAi, f)), context),
      signal === undefined ? undefined : { signal }
    )
    if (Exit.isSuccess(exit)) return exit.value
    throw rejection(exit.cause)
  }

  const callOptions = (options: CallOptions | undefined): OpenAi.OpenAi.CallOptions | undefined => {
    if (options?.signal === undefined) return options
    const { signal: _, ...rest } = options
    return rest
  }

  /**
   * Opens a governed stream: resolves with an async iterable once the first chunk (or the end) is
   * there, so that admission and opening errors reject the `create` promise, as the SDK's do.
   */
  const openStream = async (
    params: ChatCompletionCreateParamsStreaming,
    options: CallOptions | undefined
  ): Promise<AsyncIterable<ChatCompletionChunk>> => {
    if (closed) throw new ClientClosed({ message: "this wrapped OpenAI client is closed" })
    const context = await services()
    const streamScope = Effect.runSync(Scope.make())
    const closeStream = () => runExit(Scope.close(streamScope, Exit.void)).then(() => undefined)
    const pullExit = await runExit(
      Effect.provide(
        Effect.flatMap(
          OpenAi.OpenAi,
          (openai) =>
            Scope.extend(Stream.toPull(openai.chat.completions.stream(params, callOptions(options))), streamScope)
        ),
        context
      )
    )
    if (Exit.isFailure(pullExit)) {
      await closeStream()
      throw rejection(pullExit.cause)
    }
    const pull = pullExit.value
    const onAbort = () => void closeStream()
    options?.signal?.addEventListener("abort", onAbort, { once: true })
    const buffer: Array<ChatCompletionChunk> = []
    let done = false
    const finish = async () => {
      if (done) return
      done = true
      options?.signal?.removeEventListener("abort", onAbort)
      await closeStream()
    }
    /** Pulls the next chunks into the buffer; false at the end. */
    const fill = async (): Promise<boolean> => {
      while (buffer.length === 0) {
        if (done) return false
        const signal = options?.signal
        const exit = await runExit(Effect.provide(pull, context), signal === undefined ? undefined : { signal })
        if (Exit.isSuccess(exit)) {
          for (const chunk of exit.value) buffer.push(chunk)
          continue
        }
        const failure = Cause.failureOption(exit.cause)
        await finish()
        if (Option.isSome(failure) && Option.isNone(failure.value)) return false
        throw Option.isSome(failure) && Option.isSome(failure.value) ? failure.value.value : Cause.squash(exit.cause)
      }
      return true
    }
    // Opening errors (admission, 429, …) reject `create` itself.
    await fill()
    const iterator: AsyncIterator<ChatCompletionChunk> = {
      next: async () => (await fill()) ? { done: false, value: buffer.shift()! } : { done: true, value: undefined },
      return: async () => {
        buffer.length = 0
        await finish()
        return { done: true, value: undefined }
      }
    }
    return { [Symbol.asyncIterator]: () => iterator }
  }

  function create(params: ChatCompletionCreateParams, options?: CallOptions): Promise<any> {
    if (params.stream === true) return openStream(params, options)
    return run((openai) => openai.chat.completions.create(params, callOptions(options)), options?.signal)
  }

  /** A call of the service, as a Promise (the signal, if any, interrupts it). */
  const call = <P, A>(
    f: (openai: OpenAi.OpenAi.Service) => (params: P, options?: OpenAi.OpenAi.CallOptions) => Effect.Effect<A, unknown>
  ) =>
  (params: P, options?: CallOptions): Promise<A> =>
    run((openai) => f(openai)(params, callOptions(options)), options?.signal)

  return {
    chat: { completions: { create } },
    responses: { create: call((openai) => openai.responses.create) },
    embeddings: { create: call((openai) => openai.embeddings.create) },
    images: { generate: call((openai) => openai.images.generate) },
    limiter: () => run((openai) => Effect.succeed(openai.limiter)),
    snapshot: () => run((openai) => openai.limiter.snapshot),
    close: async () => {
      if (closed) return
      closed = true
      const exit = await runExit(Scope.close(scope, Exit.void))
      if (Exit.isFailure(exit)) throw rejection(exit.cause)
    }
  }
}
