/**
 * `sluice run --cache DIR|redis://…`: the response cache every line goes through, and its summary line.
 *
 * @internal
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import type * as Path from "@effect/platform/Path"
import { ResponseCache } from "@sluice/openai"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as NodeFs from "node:fs"
import { shownUrl } from "./handler.js"

/** How long a store operation may take, in real time. */
const STORE_TIMEOUT_REAL_MS = 30_000

/**
 * A job's cache: every line is kept whatever its temperature (a rerun gives the earlier answers), up to a million
 * entries and 2 GiB; no expiry. A store operation may take 30 s of real time before the line goes on without the
 * cache: `storeTimeout` is on the `Clock`, which `--speed` runs faster than real time, and the library's 500 ms
 * (50 ms of real file I/O at `--speed 10`) failed thousands of the demo's reads and writes on a loaded machine. A
 * stalled Redis is cut sooner by `RedisKeyValueStore`'s own 2-second command timeout.
 */
const optionsAt = (speed: number): ResponseCache.ResponseCache.Options => ({
  nonDeterministic: true,
  maxEntries: 1_000_000,
  maxBytes: 2 * 1024 ** 3,
  storeTimeout: Duration.millis(STORE_TIMEOUT_REAL_MS * speed)
})

const message = (error: unknown) => error instanceof Error ? error.message : String(error)

/** `--cache` names a Redis server (the scheme in any case, as URLs allow), not a directory. */
const isRedis = (spec: string) => /^rediss?:\/\//i.test(spec)
/** Any other URL: neither a directory nor a store we know (never made into a directory named after it). */
const isOtherUrl = (spec: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(spec) && !isRedis(spec)

/** What a message shows of `--cache`: a URL's scheme and host only (its credentials, path and query left out). */
const redact = (spec: string) => isRedis(spec) || isOtherUrl(spec) ? shownUrl(spec) ?? "a URL" : spec

/** The store of `--cache`: a Redis URL, else a directory (made if missing; never a file). */
const storeOf = (
  spec: string
): Effect.Effect<Layer.Layer<KeyValueStore.KeyValueStore, unknown, FileSystem.FileSystem | Path.Path>, string> => {
  if (isOtherUrl(spec)) {
    return Effect.fail(`--cache ${redact(spec)}: a directory or a redis:// or rediss:// URL, not another URL`)
  }
  if (isRedis(spec)) {
    return Effect.tryPromise({
      try: () => import("@sluice/redis"),
      catch: (cause) => `--cache ${redact(spec)} needs the @sluice/redis package: ${message(cause)}`
    }).pipe(
      Effect.map(({ RedisKeyValueStore }) =>
        RedisKeyValueStore.layer({ url: Redacted.make(spec), keyPrefix: "sluice:cache:" })
      )
    )
  }
  return Effect.suspend(() => {
    const stat = NodeFs.statSync(spec, { throwIfNoEntry: false })
    if (stat !== undefined && !stat.isDirectory()) return Effect.fail(`--cache ${spec}: exists and is not a directory`)
    return Effect.succeed(KeyValueStore.layerFileSystem(spec))
  })
}

/**
 * Opens `--cache` in the current scope (its index is written when the scope closes), after one round trip to the
 * store: a store that cannot be reached is bad usage, not a run that quietly sends everything.
 */
export const open = (
  spec: string,
  /** How many times faster than real time the `Clock` runs (`--speed`; 1 against a real API). */
  speed = 1
): Effect.Effect<ResponseCache.ResponseCache.Service, string, Scope.Scope | FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const store = yield* storeOf(spec)
    const context = yield* Layer.build(ResponseCache.layer(optionsAt(speed)).pipe(Layer.provideMerge(store))).pipe(
      Effect.mapError((error) => `--cache ${redact(spec)}: ${message(error)}`)
    )
    const kv = Context.get(context, KeyValueStore.KeyValueStore)
    yield* Effect.mapError(kv.has("sluice-cache-v1-index"), (error) => `--cache ${redact(spec)}: ${message(error)}`)
    return Context.get(context, ResponseCache.ResponseCache)
  })

/** `cache: 300 hits, 12 shared, 700 misses; saved 312 requests, 45,600 tokens, $0.0123 at list price`. */
export const summary = (stats: ResponseCache.ResponseCache.Stats): string =>
  `cache: ${stats.hits} hits, ${stats.deduplicated} shared with an identical line under way, ${stats.misses} misses${
    stats.storeErrors > 0 ? `, ${stats.storeErrors} store failures` : ""
  }; saved ${stats.requestsSaved} requests, ${stats.tokensSaved.toLocaleString("en-US")} tokens, $${
    stats.dollarsSaved.toFixed(4)
  } at list price`
