/**
 * A response cache and in-flight dedupe for the `OpenAi` service: repeated work costs no budget.
 *
 * With a `ResponseCache` in context (or `OpenAi.Options.cache`), every call of the service — and so of
 * `wrapOpenAI`, `OpenAiRouter`, the bulk runner, `sluice run` and pipelines — first looks its request up. A hit
 * answers at once: it takes no admission, no tokens and no turn of the thread, and counts what it saved. A miss
 * makes the governed call and keeps its answer. Identical requests that overlap in time make one call, whose
 * result (or typed error) every caller gets; one caller's interruption does not cancel it for the others (the
 * last caller's does). Streams alike: identical overlapping streams make one request, each caller gets every
 * chunk (a late one those already emitted, then the rest) or the chunks before a failure and its typed error, and a
 * caller that stops early leaves the stream to the others. Only callers that govern the call alike share it: the
 * same deadline, end of `maxWait`, retry policy, lane and tenant (a caller with its own deadline, or without one,
 * makes its own call). A cached stream replays as a stream of the same chunks.
 *
 * **The key** is SHA-256 of the canonical JSON (object keys sorted at every depth) of the endpoint, whether the
 * call streams, and the whole body except the fields that do not change the answer ({@link excludedFields}:
 * `user`, `safety_identifier`, `metadata`, `store`, `stream`, `stream_options`, `service_tier`,
 * `prompt_cache_key`, `prompt_cache_retention`; `store` is in it on the Responses endpoint), and the client's
 * base URL, organization and project (two services on different deployments sharing a cache share no entry).
 * Every other field is in it, so any parameter that changes the
 * result changes the key. An answer that echoes an excluded field (a Responses object's `metadata`) echoes the
 * first caller's.
 *
 * **What is cached**: a request whose answer does not vary — embeddings and moderations; text at `temperature: 0`
 * or with a `seed` — unless the call says `cache: true` (any request) or `cache: false` (none), or the cache was
 * made with `nonDeterministic: true`. Image generations only when asked. Only successful answers are kept (and of
 * the Responses API, `completed` or `incomplete` ones).
 *
 * **Stores**: any `@effect/platform` `KeyValueStore`: {@link layerMemory}, on disk {@link layerFileSystem} (one
 * file per entry, `KeyValueStore.layerFileSystem`), on Redis `RedisKeyValueStore` of `@sluice/redis`. Entries
 * expire after `ttl` (on the `Clock`; an expired entry is a `stale` miss, removed); the cache keeps at most
 * `maxEntries` entries and `maxBytes` bytes, evicting the least recently used. Its index is in the store, merged at
 * each write, so caches sharing a store keep one bound between them (up to the entries each wrote since its last
 * write of the index). Store failures are logged and
 * counted; a call never fails because of its cache, and a store that does not answer within `storeTimeout`
 * (500 ms) counts as failed, so a stalled store delays a call by at most that. The cache is read by the `OpenAi`
 * service when it is made: provide it to the `OpenAi` layer, not to the program that uses the service.
 *
 * **Metrics**: `sluice_cache_lookups_total` (tagged `endpoint` and `outcome`: `hit`, `miss`, `stale`,
 * `deduplicated`, `bypassed`), `sluice_cache_evictions_total`, `sluice_cache_tokens_saved_total`,
 * `sluice_cache_dollars_saved_total` (list prices, `Pricing`); `stats` gives the same for one cache.
 *
 * @since 0.2.0
 */
import type * as PlatformError from "@effect/platform/Error"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import type * as Path from "@effect/platform/Path"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as internal from "./internal/responseCache.js"

/**
 * @since 0.2.0
 * @category models
 */
export declare namespace ResponseCache {
  /**
   * @since 0.2.0
   * @category models
   */
  export interface Options {
    /** How long an entry serves (on the `Clock`); default: until evicted. */
    readonly ttl?: Duration.DurationInput | undefined
    /** At most this many entries (default 10,000); the least recently used go first. */
    readonly maxEntries?: number | undefined
    /** At most this many bytes of stored JSON (default 256 MiB); a larger answer is not kept. */
    readonly maxBytes?: number | undefined
    /** Cache non-deterministic requests too (a job rerun that must give its earlier answers); default `false`. */
    readonly nonDeterministic?: boolean | undefined
    /** Identical requests that overlap make one call (default `true`). */
    readonly dedupe?: boolean | undefined
    /** The prefix of this cache's keys in the store (default `"sluice-cache-v1-"`): caches apart in one store. */
    readonly namespace?: string | undefined
    /**
     * How long a store operation may take (on the `Clock`; default 500 ms) before the cache goes on without it:
     * a lookup that takes longer is a miss, a write that takes longer is not waited for (both counted in
     * `storeErrors`). A stalled store slows each call by at most this much.
     *
     * @since 0.2.0
     */
    readonly storeTimeout?: Duration.DurationInput | undefined
  }

  /**
   * A request as the cache sees it.
   *
   * @since 0.2.0
   * @category models
   */
  export interface Request {
    /** The endpoint (`/chat/completions`, or a URL with `/v1/…`). */
    readonly path: string
    readonly body: unknown
    /** The model, for the price of what a hit saves. */
    readonly model: string
    /** The call's `cache` option: `true` caches it whatever the policy, `false` bypasses the cache. */
    readonly cache?: boolean | undefined
    /** A streamed call (its key is not the unstreamed call's: the answers differ in type). */
    readonly stream?: boolean | undefined
    /**
     * Who answers: the client's base URL, organization and project (the `OpenAi` service sets it), in the key,
     * so that two services on different deployments sharing one cache do not share entries.
     *
     * @since 0.2.0
     */
    readonly scope?: string | undefined
    /**
     * How the call is governed (deadline, `maxWait`, retry policy, lane, tenant; the `OpenAi` service sets it):
     * not in the key, but only overlapping callers with the same `flight` share a call, so that none gets
     * another's deadline, retries or lane.
     *
     * @since 0.2.0
     */
    readonly flight?: string | undefined
  }

  /**
   * An answer as stored: the body, and the id and status of the request that produced it.
   *
   * @since 0.2.0
   * @category models
   */
  export interface Stored<A> {
    readonly body: A
    readonly requestId: string | null
    /** The HTTP status it came with (a 2xx). */
    readonly status?: number | undefined
    /** `true` when this caller did not send it: a hit, or a call under way it shared. */
    readonly cached?: boolean | undefined
  }

  /**
   * What a cache has done since it was made.
   *
   * @since 0.2.0
   * @category models
   */
  export interface Stats {
    readonly hits: number
    readonly misses: number
    /** Entries found expired (each also a miss's lookup). */
    readonly stale: number
    /** Callers that shared an identical call under way. */
    readonly deduplicated: number
    /** Calls the policy (or the call's `cache: false`) kept out of the cache. */
    readonly bypassed: number
    readonly evictions: number
    /** Store operations that failed (logged; the calls went on without the cache). */
    readonly storeErrors: number
    readonly entries: number
    readonly bytes: number
    /** Requests not sent: hits and deduplicated callers. */
    readonly requestsSaved: number
    /** Their tokens (the answers' `usage`). */
    readonly tokensSaved: number
    /** Their list price in USD (`Pricing`; 0 for a model without a price). */
    readonly dollarsSaved: number
  }

  /**
   * @since 0.2.0
   * @category models
   */
  export interface Service {
    /**
     * A call through the cache: a hit without running `call`; a caller of a key under way shares its call; else
     * `call`, its answer kept. What the `OpenAi` service does with each call.
     */
    readonly through: <A, E>(request: Request, call: Effect.Effect<Stored<A>, E>) => Effect.Effect<Stored<A>, E>
    /**
     * A stream through the cache: a hit replays the chunks; a miss records them when the stream ends whole;
     * identical overlapping streams (of the same `flight`) are one stream, each caller getting every chunk.
     */
    readonly replay: <C, E>(request: Request, stream: Stream.Stream<C, E>) => Stream.Stream<C, E>
    /** Whether the policy caches `request`. */
    readonly cacheable: (request: Request) => boolean
    /** The key of a request the policy caches, else `undefined`. */
    readonly keyOf: (request: Request) => string | undefined
    readonly stats: Effect.Effect<Stats>
    /**
     * Writes the index of entries now, merged with the one in the store (also done as entries change, and when the
     * cache's scope closes).
     */
    readonly flush: Effect.Effect<void>
  }
}

/**
 * @since 0.2.0
 * @category tags
 */
export class ResponseCache
  extends Context.Tag("@sluice/openai/ResponseCache")<ResponseCache, ResponseCache.Service>()
{}

/**
 * The cache's Effect Metrics: `lookups` (`sluice_cache_lookups_total`, tagged `endpoint` and `outcome`: `hit`,
 * `miss`, `stale`, `deduplicated`, `bypassed`), `evictions`, `tokensSaved` and `dollarsSaved` (tagged `endpoint`).
 *
 * @since 0.2.0
 * @category metrics
 */
export const metrics = internal.metrics

/**
 * The top-level body fields the key leaves out: they do not change the answer. (`store` is left out except on
 * the Responses endpoint, where the key has it: an answer made with `store: false` has an id no later
 * `previous_response_id` can use, so it does not answer a request that stores.)
 *
 * @since 0.2.0
 * @category keys
 * @example
 * ```ts
 * import { ResponseCache } from "@sluice/openai"
 *
 * ResponseCache.excludedFields.includes("user") // true: requests differing only in `user` share an entry
 * ResponseCache.excludedFields.includes("temperature") // false
 * ```
 */
export const excludedFields: ReadonlyArray<string> = internal.EXCLUDED

/**
 * The key of a request (see the module's documentation), or `undefined` for a body that is not a JSON object.
 *
 * @since 0.2.0
 * @category keys
 * @example
 * ```ts
 * import { ResponseCache } from "@sluice/openai"
 *
 * const a = ResponseCache.keyOf("/chat/completions", { model: "gpt-4o-mini", temperature: 0, messages: [] })
 * const b = ResponseCache.keyOf("/chat/completions", { messages: [], temperature: 0, model: "gpt-4o-mini", user: "u1" })
 * // a === b
 * ```
 */
export const keyOf = (
  path: string,
  body: unknown,
  options?: { readonly stream?: boolean | undefined }
): string | undefined => internal.keyOf(path, body, options?.stream === true)

/**
 * Whether a request's answer does not vary, as far as its body says: embeddings and moderations; text at
 * `temperature: 0` or with a `seed`; never an image generation.
 *
 * @since 0.2.0
 * @category keys
 * @example
 * ```ts
 * import { ResponseCache } from "@sluice/openai"
 *
 * ResponseCache.deterministic("/embeddings", { model: "text-embedding-3-small", input: "hi" }) // true
 * ResponseCache.deterministic("/chat/completions", { model: "gpt-4o-mini", temperature: 0, messages: [] }) // true
 * ResponseCache.deterministic("/chat/completions", { model: "gpt-4o-mini", messages: [] }) // false
 * ```
 */
export const deterministic: (path: string, body: unknown) => boolean = internal.deterministic

/**
 * A cache over the `KeyValueStore` in context. Its index is written when its scope closes (and a call it is
 * making then is cancelled; its callers are interrupted).
 *
 * @since 0.2.0
 * @category constructors
 * @example
 * ```ts
 * import * as KeyValueStore from "@effect/platform/KeyValueStore"
 * import { ResponseCache } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const cache = yield* ResponseCache.make({ ttl: "1 hour" })
 *   const request = { path: "/embeddings", model: "text-embedding-3-small", body: { input: "hi" } }
 *   const call = Effect.succeed({ body: { data: [] }, requestId: "req_1" })
 *   yield* cache.through(request, call) // a miss: `call` runs, its answer kept
 *   return yield* cache.through(request, call) // a hit: { ..., cached: true }
 * }).pipe(Effect.scoped, Effect.provide(KeyValueStore.layerMemory))
 * ```
 */
export const make: (
  options?: ResponseCache.Options
) => Effect.Effect<ResponseCache.Service, never, KeyValueStore.KeyValueStore | Scope.Scope> = internal.make

/**
 * The cache over the `KeyValueStore` in context (on Redis: `RedisKeyValueStore.layer` of `@sluice/redis`).
 *
 * @since 0.2.0
 * @category layers
 * @example
 * ```ts
 * import { LimiterStore } from "@sluice/core"
 * import { OpenAi, ResponseCache } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 * import OpenAIClient from "openai"
 *
 * const Live = OpenAi.layerClient(new OpenAIClient(), { tier: 1 }).pipe(
 *   Layer.provide(ResponseCache.layerMemory({ ttl: "1 hour", maxEntries: 5_000 })),
 *   Layer.provide(LimiterStore.layerMemory)
 * )
 *
 * const program = Effect.gen(function*() {
 *   const openai = yield* OpenAi.OpenAi
 *   const params = { model: "gpt-4o-mini", temperature: 0, messages: [{ role: "user" as const, content: "Hi" }] }
 *   yield* openai.chat.completions.create(params)
 *   yield* openai.chat.completions.create(params) // a hit: no admission, no tokens, no request
 *   return yield* (yield* ResponseCache.ResponseCache).stats
 * }).pipe(Effect.provide(Live))
 * ```
 */
export const layer = (
  options?: ResponseCache.Options
): Layer.Layer<ResponseCache, never, KeyValueStore.KeyValueStore> => Layer.scoped(ResponseCache, internal.make(options))

/**
 * The cache in memory (`KeyValueStore.layerMemory`): one process, gone when the layer is released.
 *
 * @since 0.2.0
 * @category layers
 * @example
 * ```ts
 * import { LimiterStore } from "@sluice/core"
 * import { OpenAi, ResponseCache } from "@sluice/openai"
 * import * as Layer from "effect/Layer"
 * import OpenAIClient from "openai"
 *
 * // provided to the OpenAi layer: the service reads its cache when it is made
 * const Live = OpenAi.layerClient(new OpenAIClient(), { tier: 1 }).pipe(
 *   Layer.provide(ResponseCache.layerMemory({ maxEntries: 1_000 })),
 *   Layer.provide(LimiterStore.layerMemory)
 * )
 * ```
 */
export const layerMemory = (options?: ResponseCache.Options): Layer.Layer<ResponseCache> =>
  layer(options).pipe(Layer.provide(KeyValueStore.layerMemory))

/**
 * The cache on disk in `directory` (`KeyValueStore.layerFileSystem`: one file per entry, named by its key, and
 * the index). Give it a directory of its own. Needs a `FileSystem` and a `Path` (`NodeContext.layer` of
 * `@effect/platform-node`).
 *
 * @since 0.2.0
 * @category layers
 * @example
 * ```ts
 * import { NodeContext } from "@effect/platform-node"
 * import { ResponseCache } from "@sluice/openai"
 * import * as Layer from "effect/Layer"
 *
 * // entries kept a week in .cache/openai, across runs of the program
 * const Cache = ResponseCache.layerFileSystem(".cache/openai", { ttl: "7 days" }).pipe(Layer.provide(NodeContext.layer))
 * ```
 */
export const layerFileSystem = (
  directory: string,
  options?: ResponseCache.Options
): Layer.Layer<ResponseCache, PlatformError.PlatformError, FileSystem.FileSystem | Path.Path> =>
  layer(options).pipe(Layer.provide(KeyValueStore.layerFileSystem(directory)))
