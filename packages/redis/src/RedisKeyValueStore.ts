/**
 * `@effect/platform`'s `KeyValueStore` on Redis (ioredis): what `ResponseCache` of `@sluice/openai` (or any other
 * user of a `KeyValueStore`) keeps on a Redis shared by many processes.
 *
 * Each key is one Redis string under `keyPrefix`; `clear` and `size` scan that prefix only (never `FLUSHDB`), on
 * every master of a cluster. With `ttl`, Redis expires every key it is given (on top of the cache's own expiry
 * and bounds, which a process only enforces on the entries it knows). A failed command fails with the platform's
 * `SystemError` (`module: "KeyValueStore"`), which the response cache logs and counts as a miss.
 *
 * @since 0.2.0
 */
import * as PlatformError from "@effect/platform/Error"
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type { Cluster } from "ioredis"
import { Redis } from "ioredis"

/**
 * @since 0.2.0
 * @category models
 */
export declare namespace RedisKeyValueStore {
  /**
   * @since 0.2.0
   * @category models
   */
  export interface Options {
    /** The server (default `redis://127.0.0.1:6379`); `Redacted` keeps a password in it out of logs. */
    readonly url?: string | Redacted.Redacted<string> | undefined
    /** An existing ioredis client (a `Redis` or a `Cluster`) instead of `url`; the store does not close it. */
    readonly client?: Redis | Cluster | undefined
    /** The prefix of every key (default `"sluice:kv:"`). */
    readonly keyPrefix?: string | undefined
    /** Redis expires every key this long after it was last set (default: never). */
    readonly ttl?: Duration.DurationInput | undefined
    /**
     * A client made from `url`: a command with no answer by then fails (ioredis `commandTimeout`; default
     * 2 seconds), so a stalled server fails the store's operations instead of hanging them.
     *
     * @since 0.2.0
     */
    readonly commandTimeout?: Duration.DurationInput | undefined
    /**
     * A client made from `url`: a connection not made by then is abandoned and retried (ioredis
     * `connectTimeout`; default 2 seconds).
     *
     * @since 0.2.0
     */
    readonly connectTimeout?: Duration.DurationInput | undefined
  }
}

const failure = (method: string, cause: unknown) =>
  new PlatformError.SystemError({
    reason: "Unknown",
    module: "KeyValueStore",
    method,
    description: `redis: ${cause instanceof Error ? cause.message : String(cause)}`,
    cause
  })

/**
 * A `KeyValueStore` on Redis. A client made from `url` is closed with the scope; its commands time out after
 * `commandTimeout` and its connection attempts after `connectTimeout` (2 seconds each by default), so a stalled
 * server fails operations rather than hanging them. A `client` you pass keeps its own settings.
 *
 * @since 0.2.0
 * @category constructors
 * @example
 * ```ts
 * import * as KeyValueStore from "@effect/platform/KeyValueStore"
 * import { RedisKeyValueStore } from "@sluice/redis"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* RedisKeyValueStore.make({ url: "redis://127.0.0.1:6379", commandTimeout: "500 millis" })
 *   yield* store.set("greeting", "hello")
 *   return yield* store.get("greeting") // Option.some("hello")
 * }).pipe(Effect.scoped)
 *
 * // or as the context's store
 * const sameProgram = Effect.flatMap(KeyValueStore.KeyValueStore, (store) => store.get("greeting")).pipe(
 *   Effect.provide(RedisKeyValueStore.layer({ keyPrefix: "myapp:" }))
 * )
 * ```
 */
export const make = (
  options: RedisKeyValueStore.Options = {}
): Effect.Effect<KeyValueStore.KeyValueStore, never, Scope.Scope> =>
  Effect.gen(function*() {
    const client: Redis | Cluster = options.client ?? (yield* Effect.acquireRelease(
      Effect.sync(() => {
        const url = options.url ?? "redis://127.0.0.1:6379"
        const redis = new Redis(Redacted.isRedacted(url) ? Redacted.value(url) : url, {
          maxRetriesPerRequest: 1,
          commandTimeout: millisOf(options.commandTimeout),
          connectTimeout: millisOf(options.connectTimeout)
        })
        // errors surface through the commands; without a listener ioredis reports them on stderr
        redis.on("error", () => {})
        return redis
      }),
      (redis) => Effect.sync(() => redis.disconnect())
    ))
    const prefix = options.keyPrefix ?? "sluice:kv:"
    const ttlMillis = options.ttl === undefined ? undefined : Duration.toMillis(Duration.decode(options.ttl))
    const command = <A>(method: string, run: () => Promise<A>) =>
      Effect.tryPromise({ try: run, catch: (cause) => failure(method, cause) })

    /** Every key under the prefix, on every master of a cluster. */
    const scanKeys = command("scan", async () => {
      const nodes = "nodes" in client && typeof client.nodes === "function" ? client.nodes("master") : [client as Redis]
      const keys: Array<string> = []
      for (const node of nodes) {
        let cursor = "0"
        do {
          const [next, batch] = await node.scan(cursor, "MATCH", `${escapeGlob(prefix)}*`, "COUNT", 500)
          cursor = next
          for (const key of batch) keys.push(key)
        } while (cursor !== "0")
      }
      return keys
    })

    return KeyValueStore.make({
      get: (key) => Effect.map(command("get", () => client.get(prefix + key)), Option.fromNullable),
      getUint8Array: (key) =>
        Effect.map(
          command("getUint8Array", () => client.getBuffer(prefix + key)),
          (buffer) => Option.map(Option.fromNullable(buffer), (b) => new Uint8Array(b))
        ),
      set: (key, value) =>
        command("set", () => {
          const data = typeof value === "string" ? value : Buffer.from(value)
          return ttlMillis === undefined
            ? client.set(prefix + key, data)
            : client.set(prefix + key, data, "PX", Math.max(1, Math.round(ttlMillis)))
        }),
      remove: (key) => command("remove", () => client.del(prefix + key)),
      has: (key) => Effect.map(command("has", () => client.exists(prefix + key)), (n) => n > 0),
      clear: Effect.flatMap(scanKeys, (keys) =>
        Effect.forEach(
          chunks(keys, 500),
          // one key a command: the keys of a cluster's batch may live on different slots
          (batch) => command("clear", () => Promise.all(batch.map((key) => client.del(key)))),
          { discard: true }
        )),
      size: Effect.map(scanKeys, (keys) => keys.length)
    })
  })

/** A timeout in whole milliseconds (at least 1), 2 seconds by default. */
const millisOf = (duration: Duration.DurationInput | undefined): number =>
  Math.max(1, Math.round(Duration.toMillis(Duration.decode(duration ?? "2 seconds"))))

const escapeGlob = (text: string) => text.replace(/[*?[\]\\]/g, (c) => `\\${c}`)

const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/**
 * The store as a layer.
 *
 * @since 0.2.0
 * @category layers
 * @example
 * ```ts
 * import { ResponseCache } from "@sluice/openai"
 * import { RedisKeyValueStore } from "@sluice/redis"
 * import * as Layer from "effect/Layer"
 *
 * // one cache for every process on the Redis, entries gone after a day
 * const Cache = ResponseCache.layer({ ttl: "1 day" }).pipe(
 *   Layer.provide(RedisKeyValueStore.layer({ url: "redis://127.0.0.1:6379", keyPrefix: "myapp:cache:", ttl: "1 day" }))
 * )
 * ```
 */
export const layer = (options: RedisKeyValueStore.Options = {}): Layer.Layer<KeyValueStore.KeyValueStore> =>
  Layer.scoped(KeyValueStore.KeyValueStore, make(options))
