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
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as NodeFs from "node:fs"

/**
 * A job's cache: every line is kept whatever its temperature (a rerun gives the earlier answers), up to a million
 * entries and 2 GiB; no expiry.
 */
const options: ResponseCache.ResponseCache.Options = {
  nonDeterministic: true,
  maxEntries: 1_000_000,
  maxBytes: 2 * 1024 ** 3
}

const message = (error: unknown) => error instanceof Error ? error.message : String(error)

/** A URL without its credentials. */
const redact = (spec: string) => spec.replace(/\/\/[^@/]*@/, "//…@")

/** A URL's credentials left out. */
/** The store of `--cache`: a Redis URL, else a directory (made if missing; never a file). */
const storeOf = (
  spec: string
): Effect.Effect<Layer.Layer<KeyValueStore.KeyValueStore, unknown, FileSystem.FileSystem | Path.Path>, string> => {
  if (/^rediss?:\/\//.test(spec)) {
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
  spec: string
): Effect.Effect<ResponseCache.ResponseCache.Service, string, Scope.Scope | FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const store = yield* storeOf(spec)
    const context = yield* Layer.build(ResponseCache.layer(options).pipe(Layer.provideMerge(store))).pipe(
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
