/**
 * A `LimiterStore` on Redis: token buckets and gates shared by every process that points at the same
 * Redis, so ten pods share one organization's budget instead of getting ten times it.
 *
 * Every store operation is one Lua script (`EVALSHA`, with `EVAL` on `NOSCRIPT`, so a restarted or
 * flushed server is handled), atomic and all-or-nothing, in one round trip. Time comes from the
 * Redis server (`TIME`) by default, so the clocks of the clients do not matter; `time: "clock"` takes
 * it from Effect's `Clock` instead (for tests under `TestClock`, or a fleet with synchronised clocks).
 *
 * Switching from the memory store is one layer:
 *
 * ```ts
 * RateLimiter.layer(options).pipe(Layer.provide(RedisLimiterStore.layer({ url: "redis://redis:6379" })))
 * ```
 *
 * @since 0.1.0
 */
import { HoldStore, LimiterStore } from "@sluice/core"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { Redis } from "ioredis"
import type { Cluster } from "ioredis"
import * as Keys from "./internal/keys.js"
import * as Probe from "./internal/probe.js"
import * as Scripts from "./internal/scripts.js"

// ---------------------------------------------------------------------------------------------------
// options
// ---------------------------------------------------------------------------------------------------

/**
 * An ioredis client: a `Redis` or a `Cluster` connection.
 *
 * @since 0.1.0
 * @category models
 */
export type Client = Redis | Cluster

/**
 * What the store does when Redis cannot answer (down, unreachable, slower than `commandTimeout`):
 *
 * - `"fail-closed"`: every operation fails with `LimiterStoreError` (the limiter refuses to admit);
 * - `"fail-open"`: admissions succeed and writes are dropped (nothing is limited until Redis is back);
 * - `{ fallback: share }`: a local in-memory store with `share` (0 < share ≤ 1) of every bucket's
 *   capacity and refill rate answers instead, e.g. `1 / replicas`. A cost larger than the reduced
 *   capacity waits there for a full (reduced) bucket and takes it into debt, as on Redis.
 *
 * @since 0.1.0
 * @category models
 */
export type OnUnavailable = "fail-closed" | "fail-open" | { readonly fallback: number }

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace RedisLimiterStore {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Options {
    /** Where Redis is (default `redis://127.0.0.1:6379`); ignored when `client` is given. */
    readonly url?: string | Redacted.Redacted<string> | undefined
    /**
     * An existing ioredis client to use instead of `url`. The store does not close it. Consider
     * `enableOfflineQueue: false` on it so that a down server is noticed at once; the store's own
     * `commandTimeout` bounds every call either way.
     */
    readonly client?: Client | undefined
    /** The first segment of every key (default `"sluice"`); may not contain `{` or `}`. */
    readonly keyPrefix?: string | undefined
    /**
     * The Redis Cluster hash tag of the keys: the `{…}` part of every key, which picks its slot.
     *
     * - A string (default `"sluice"`; not empty, no `{` or `}`): every key of the store carries it. All
     *   keys of every script call are then in one slot, so any mix of scopes (`org:acme`,
     *   `org:acme/pool:gpt-4o`, `tenant:42`) runs on Redis Cluster, and a bucket has exactly one key
     *   whichever call charges it. The price: on a cluster, the store's keys live on one shard.
     * - A function `(scope) => tag`, e.g. {@link byOrganization}: each key carries **its own scope's**
     *   tag (never one derived from the call), so a bucket still has exactly one key, and the scopes of
     *   different organizations spread over the shards. On Redis Cluster a call whose scopes map to
     *   different tags cannot run (its keys are in different slots): it fails with `LimiterStoreError`
     *   (its `cause` a {@link HashTagConflict} naming the scopes), whatever `onUnavailable` says. On a
     *   single Redis (or Sentinel) any mix works.
     *
     * `{` and `}` in a tag a function returns are replaced by `_`, and an empty tag becomes `_`.
     */
    readonly hashTag?: string | ((scope: string) => string) | undefined
    /** Default `"fail-closed"`. */
    readonly onUnavailable?: OnUnavailable | undefined
    /** The longest a store call may take before it counts as unavailable (default 250 millis). */
    readonly commandTimeout?: Duration.DurationInput | undefined
    /** How long `make` waits for the first connection before going on (default 2 seconds). */
    readonly connectTimeout?: Duration.DurationInput | undefined
    /** Added to every key's TTL (default 10 seconds). */
    readonly ttlMargin?: Duration.DurationInput | undefined
    /** `"server"` (default: Redis `TIME`) or `"clock"` (Effect's `Clock`, passed to the scripts). */
    readonly time?: "server" | "clock" | undefined
  }
}

/**
 * A Redis Cluster can not run a call whose keys carry different hash tags (they are in different
 * slots). Raised only with a per-scope `hashTag` function, on a Cluster client, as the `cause` of the
 * `LimiterStoreError` the call fails with.
 *
 * @since 0.1.0
 * @category errors
 */
export class HashTagConflict
  extends Schema.TaggedError<HashTagConflict>("@sluice/redis/HashTagConflict")("HashTagConflict", {
    operation: Schema.String,
    /** Two scopes of the call, and their tags. */
    scopes: Schema.Tuple(Schema.String, Schema.String),
    tags: Schema.Tuple(Schema.String, Schema.String)
  })
{
  override get message(): string {
    return `on Redis Cluster the keys of one call must share a hash tag, but scope ${this.scopes[0]} has tag ` +
      `{${this.tags[0]}} and scope ${this.scopes[1]} has tag {${this.tags[1]}} (see the hashTag option)`
  }
}

/**
 * A `hashTag` function: a scope's `org:` segment (`org:acme/project:x` → `org:acme`), else `fallback`
 * (default `"sluice"`). With it, the keys of different organizations spread over a cluster's shards;
 * every scope charged in a call must then carry the call's organization (`org:acme/tenant:42` rather
 * than `tenant:42`), or the call is refused on Redis Cluster (see {@link HashTagConflict}).
 *
 * @since 0.1.0
 * @category hash tags
 */
export const byOrganization = (fallback: string = "sluice") => (scope: string): string => Keys.orgTag(scope) ?? fallback

/**
 * The options as given decode into this (so `make` reports every bad field with its path).
 *
 * @since 0.1.0
 * @category errors
 */
export class RedisStoreConfigError
  extends Schema.TaggedError<RedisStoreConfigError>("@sluice/redis/RedisStoreConfigError")("RedisStoreConfigError", {
    message: Schema.String
  })
{}

const DurationInput = Schema.transformOrFail(Schema.Unknown, Schema.DurationFromSelf, {
  strict: true,
  decode: (input, _, ast) =>
    Option.match(Duration.decodeUnknown(input), {
      onNone: () => ParseResult.fail(new ParseResult.Type(ast, input, "Expected a duration (e.g. \"250 millis\")")),
      onSome: ParseResult.succeed
    }),
  encode: ParseResult.succeed
})

const isClient = (u: unknown): u is Client =>
  typeof u === "object" && u !== null && typeof (u as { call?: unknown }).call === "function"

const OptionsSchema = Schema.Struct({
  url: Schema.optionalWith(Schema.Union(Schema.Redacted(Schema.String), Schema.RedactedFromSelf(Schema.String)), {
    default: () => Redacted.make("redis://127.0.0.1:6379")
  }),
  client: Schema.optional(Schema.declare(isClient, { identifier: "ioredis client" })),
  keyPrefix: Schema.optionalWith(
    Schema.String.pipe(Schema.pattern(/^[^{}]*$/, { message: () => "keyPrefix may not contain { or }" })),
    { default: () => "sluice" }
  ),
  hashTag: Schema.optionalWith(
    Schema.Union(
      Schema.NonEmptyString.pipe(Schema.pattern(/^[^{}]*$/, { message: () => "hashTag may not contain { or }" })),
      Schema.declare((u): u is (scope: string) => string => typeof u === "function", {
        identifier: "(scope) => tag"
      })
    ),
    { default: () => "sluice" }
  ),
  onUnavailable: Schema.optionalWith(
    Schema.Union(
      Schema.Literal("fail-closed", "fail-open"),
      Schema.Struct({ fallback: Schema.Number.pipe(Schema.greaterThan(0), Schema.lessThanOrEqualTo(1)) })
    ),
    { default: () => "fail-closed" as const }
  ),
  commandTimeout: Schema.optionalWith(DurationInput, { default: () => Duration.millis(250) }),
  connectTimeout: Schema.optionalWith(DurationInput, { default: () => Duration.seconds(2) }),
  ttlMargin: Schema.optionalWith(DurationInput, { default: () => Duration.seconds(10) }),
  time: Schema.optionalWith(Schema.Literal("server", "clock"), { default: () => "server" as const })
})

const decodeOptions = (options: RedisLimiterStore.Options) =>
  Schema.decodeUnknown(OptionsSchema, { errors: "all" })(
    // a plain string url is accepted as is (the schema's Redacted(String) decodes it)
    options
  ).pipe(
    Effect.mapError((error) => new RedisStoreConfigError({ message: ParseResult.TreeFormatter.formatErrorSync(error) }))
  )

// ---------------------------------------------------------------------------------------------------
// metrics
// ---------------------------------------------------------------------------------------------------

/**
 * Store calls that failed (Redis down, timed out, bad reply), tagged `operation`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const errors = Metric.counter("sluice_redis_store_errors_total", {
  description: "Redis store calls that failed",
  incremental: true
})

/**
 * Store calls answered by the `onUnavailable` behaviour instead of Redis, tagged `operation` and
 * `mode` (`fail-open`, `fallback`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const fallbacks = Metric.counter("sluice_redis_store_fallback_total", {
  description: "Redis store calls answered by the fail-open or local fallback behaviour",
  incremental: true
})

/**
 * Scripts (re)loaded after `NOSCRIPT` (a restarted or flushed server).
 *
 * @since 0.1.0
 * @category metrics
 */
export const scriptLoads = Metric.counter("sluice_redis_store_script_loads_total", {
  description: "Lua scripts loaded after NOSCRIPT",
  incremental: true
})

/**
 * Round-trip time of store calls in milliseconds, tagged `operation`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const latency = Metric.histogram(
  "sluice_redis_store_latency_ms",
  MetricBoundaries.exponential({ start: 0.05, factor: 2, count: 16 }),
  "Round-trip time of Redis store calls (ms)"
)

// ---------------------------------------------------------------------------------------------------
// the store
// ---------------------------------------------------------------------------------------------------

const num = (n: number): string => String(n)

const parseNumber = (value: unknown): number => {
  if (value === "inf") return Number.POSITIVE_INFINITY
  const n = typeof value === "number" ? value : Number(value)
  if (Number.isNaN(n)) throw new Error(`unexpected reply: ${String(value)}`)
  return n
}

const messageOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const waitReady = (client: Client, timeout: Duration.Duration): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    if ((client as Redis).status === "ready") return resume(Effect.succeed(true))
    const onReady = () => done(true)
    const timer = setTimeout(() => done(false), Duration.toMillis(timeout))
    const done = (ok: boolean) => {
      clearTimeout(timer)
      client.off("ready", onReady)
      resume(Effect.succeed(ok))
    }
    client.once("ready", onReady)
    return Effect.sync(() => {
      clearTimeout(timer)
      client.off("ready", onReady)
    })
  })

/**
 * Connects (or adopts `options.client`) and returns the store. An owned connection is closed with the
 * scope. The store waits up to `connectTimeout` for the first connection and then goes on: until
 * Redis answers, operations follow `onUnavailable`, and ioredis keeps reconnecting.
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import { HoldStore, LimiterStore } from "@sluice/core"
 * import { RedisLimiterStore } from "@sluice/redis"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const store = yield* RedisLimiterStore.make({ url: "redis://127.0.0.1:6379", keyPrefix: "myapp" })
 *   const bucket: LimiterStore.BucketSpec = {
 *     id: "org:acme|requests", scope: "org:acme", dimension: "requests",
 *     windowMillis: 60_000, capacity: 500, refillPerMs: 500 / 60_000
 *   }
 *   return yield* store.tryAcquire([{ bucket, amount: 1 }], [])
 * }).pipe(Effect.scoped)
 * ```
 */
export const make = (
  options: RedisLimiterStore.Options = {}
): Effect.Effect<LimiterStore.Service, RedisStoreConfigError, Scope.Scope> =>
  Effect.map(makeWithHolds(options), (both) => both.store)

/**
 * {@link make}, and a `HoldStore` (holds with a lease, e.g. the Batch API offload's enqueued tokens) on the same
 * connection and keys (`<prefix>:{<tag>}:h:<scope>`, one hash a scope). Holds are not `onUnavailable`'s: a hold
 * call Redis does not answer fails with `HoldStoreError`.
 *
 * @since 0.2.0
 * @category constructors
 * @example
 * ```ts
 * import { RedisLimiterStore } from "@sluice/redis"
 * import * as Effect from "effect/Effect"
 *
 * const program = Effect.gen(function*() {
 *   const { holds } = yield* RedisLimiterStore.makeWithHolds({ url: "redis://127.0.0.1:6379" })
 *   // 60,000 tokens held for 2 minutes unless renewed, if they fit beside every live process's holds
 *   return yield* holds.take("job-1", [{ scope: "batch:gpt-4o", capacity: 90_000 }], 60_000, 120_000)
 * }).pipe(Effect.scoped)
 * ```
 */
export const makeWithHolds = (
  options: RedisLimiterStore.Options = {}
): Effect.Effect<
  { readonly store: LimiterStore.Service; readonly holds: HoldStore.Service },
  RedisStoreConfigError,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const config = yield* decodeOptions(options)
    const client: Client = config.client !== undefined
      ? config.client
      : yield* Effect.acquireRelease(
        Effect.sync(() => {
          const redis = new Redis(Redacted.value(config.url), {
            enableOfflineQueue: false,
            maxRetriesPerRequest: 1,
            autoResendUnfulfilledCommands: false,
            connectTimeout: Duration.toMillis(config.connectTimeout),
            retryStrategy: (times) => Math.min(50 * times, 500)
          })
          // errors surface through the commands; without a listener ioredis reports them on stderr
          redis.on("error", () => {})
          return redis
        }),
        (redis) => Effect.sync(() => redis.disconnect())
      )
    yield* waitReady(client, config.connectTimeout)

    const probe = Option.getOrUndefined(yield* Effect.serviceOption(Probe.AdmissionProbe))
    const prefix = config.keyPrefix
    // Keys: `<prefix>:{<tag>}:…`. With one tag for the whole store (the default) every base is the same;
    // with a per-scope function each scope's tag is its own, computed once and cached.
    const hashTag = config.hashTag
    const fixedBase = typeof hashTag === "string" ? Keys.base(prefix, hashTag) : undefined
    const tags = new Map<string, string>()
    const tagOf = (scope: string): string => {
      let tag = tags.get(scope)
      if (tag === undefined) {
        tag = Keys.sanitizeTag(typeof hashTag === "function" ? hashTag(scope) : hashTag)
        if (tags.size > 10_000) tags.clear()
        tags.set(scope, tag)
      }
      return tag
    }
    const baseOf = (scope: string): string => fixedBase ?? Keys.base(prefix, tagOf(scope))
    /** The script's keys: the gates' first, then the buckets', in order. */
    const keysOf = (
      gates: ReadonlyArray<{ readonly scope: string; readonly dimension: string }>,
      buckets: ReadonlyArray<
        { readonly scope: string; readonly dimension: string; readonly windowMillis: number }
      >
    ): Array<string> => {
      const keys: Array<string> = []
      for (const gate of gates) keys.push(Keys.gateKey(baseOf(gate.scope), gate.scope, gate.dimension))
      for (const bucket of buckets) {
        keys.push(Keys.bucketKey(baseOf(bucket.scope), bucket.scope, bucket.dimension, bucket.windowMillis))
      }
      return keys
    }
    const timeoutMs = Duration.toMillis(config.commandTimeout)
    const margin = num(Math.ceil(Duration.toMillis(config.ttlMargin)))
    const nowArg: Effect.Effect<string> = config.time === "clock"
      ? Effect.map(Clock.currentTimeMillis, num)
      : Effect.succeed("")

    // --- one script call: EVALSHA, EVAL on NOSCRIPT, bounded by a real-time timeout ----------------
    let healthy = true
    const evalScript = (
      script: Scripts.Script,
      keys: ReadonlyArray<string>,
      args: ReadonlyArray<string>
    ): Effect.Effect<{ readonly reply: unknown; readonly loaded: boolean; readonly millis: number }, unknown> =>
      Effect.async((resume) => {
        const started = performance.now()
        let settled = false
        const finish = (effect: Effect.Effect<{ reply: unknown; loaded: boolean; millis: number }, unknown>) => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          resume(effect)
        }
        const timer = setTimeout(
          () => finish(Effect.fail(new Error(`no answer within ${timeoutMs} ms`))),
          timeoutMs
        )
        const ok = (loaded: boolean) => (reply: unknown) =>
          finish(Effect.succeed({ reply, loaded, millis: performance.now() - started }))
        const ko = (cause: unknown) => finish(Effect.fail(cause))
        client.call("EVALSHA", script.sha, keys.length, ...keys, ...args).then(ok(false), (cause: unknown) => {
          if (settled) return
          if (messageOf(cause).startsWith("NOSCRIPT")) {
            client.call("EVAL", script.source, keys.length, ...keys, ...args).then(ok(true), ko)
          } else {
            ko(cause)
          }
        })
        return Effect.sync(() => {
          settled = true
          clearTimeout(timer)
        })
      })

    const fallbackStore = typeof config.onUnavailable === "object"
      ? yield* LimiterStore.makeMemory
      : undefined
    const share = typeof config.onUnavailable === "object" ? config.onUnavailable.fallback : 1
    const mode = typeof config.onUnavailable === "object" ? "fallback" : config.onUnavailable
    const scaled = new WeakMap<LimiterStore.BucketSpec, LimiterStore.BucketSpec>()
    const scale = (spec: LimiterStore.BucketSpec): LimiterStore.BucketSpec => {
      let s = scaled.get(spec)
      if (s === undefined) {
        s = { ...spec, capacity: spec.capacity * share, refillPerMs: spec.refillPerMs * share }
        scaled.set(spec, s)
      }
      return s
    }
    const scaleDebits = (debits: ReadonlyArray<LimiterStore.Debit>) =>
      debits.map((debit) => ({ bucket: scale(debit.bucket), amount: debit.amount }))

    const tagged = new Map<string, {
      latency: Metric.Metric.Histogram<number>
      errors: Metric.Metric.Counter<number>
      fallbacks: Metric.Metric.Counter<number>
    }>()
    const metricsOf = (operation: string) => {
      let m = tagged.get(operation)
      if (m === undefined) {
        m = {
          latency: Metric.tagged(latency, "operation", operation),
          errors: Metric.tagged(errors, "operation", operation),
          fallbacks: Metric.tagged(Metric.tagged(fallbacks, "operation", operation), "mode", mode)
        }
        tagged.set(operation, m)
      }
      return m
    }

    const run = <A>(
      operation: string,
      script: Scripts.Script,
      keys: ReadonlyArray<string>,
      args: (now: string) => ReadonlyArray<string>,
      decode: (reply: unknown) => A,
      open: Effect.Effect<A>,
      local: (store: LimiterStore.Service) => Effect.Effect<A, LimiterStore.LimiterStoreError>
    ): Effect.Effect<A, LimiterStore.LimiterStoreError> =>
      Effect.flatMap(nowArg, (now) =>
        evalScript(script, keys, args(now)).pipe(
          Effect.flatMap(({ loaded, millis, reply }) =>
            Effect.try({ try: () => decode(reply), catch: (cause) => cause }).pipe(
              Effect.tap(() => {
                const record = Metric.update(metricsOf(operation).latency, millis)
                const withLoad = loaded ? Effect.zipRight(record, Metric.increment(scriptLoads)) : record
                if (healthy) return withLoad
                healthy = true
                return Effect.zipRight(withLoad, Effect.logInfo("Redis limiter store: Redis answers again"))
              })
            )
          ),
          Effect.catchAll((cause) => {
            const message = `Redis store ${operation} failed: ${messageOf(cause)}`
            const note = Effect.zipRight(
              Metric.increment(metricsOf(operation).errors),
              healthy
                ? Effect.zipRight(
                  Effect.sync(() => {
                    healthy = false
                  }),
                  Effect.logWarning(`Redis limiter store unavailable (${mode}): ${messageOf(cause)}`)
                )
                : Effect.void
            )
            if (mode === "fail-closed") {
              return Effect.zipRight(
                note,
                Effect.fail(new LimiterStore.LimiterStoreError({ operation, message, cause }))
              )
            }
            const counted = Effect.zipRight(
              note,
              Metric.increment(metricsOf(operation).fallbacks)
            )
            return Effect.zipRight(counted, fallbackStore !== undefined ? local(fallbackStore) : open)
          })
        ))

    // Every key carries the tag of its own scope (or the store's one tag), never one derived from the
    // call, so a bucket or gate has one key whichever call touches it. On Redis Cluster the keys of
    // one script must share a slot: with a per-scope tag function, a call whose scopes map to
    // different tags is refused there (a configuration error, whatever `onUnavailable` says).
    const checkTags = fixedBase === undefined && (client as { isCluster?: boolean }).isCluster === true
    /** Two scopes of a call with different tags, or `undefined` when they all share one. */
    const mixedScopes = (
      gates: ReadonlyArray<LimiterStore.GateKey>,
      buckets: ReadonlyArray<{ readonly scope: string }>
    ): readonly [string, string] | undefined => {
      let first: string | undefined
      let tag = ""
      const differs = (scope: string): boolean => {
        if (first === undefined) {
          first = scope
          tag = tagOf(scope)
          return false
        }
        return tagOf(scope) !== tag
      }
      for (const gate of gates) if (differs(gate.scope)) return [first!, gate.scope]
      for (const bucket of buckets) if (differs(bucket.scope)) return [first!, bucket.scope]
      return undefined
    }
    const conflict = (
      operation: string,
      gates: ReadonlyArray<LimiterStore.GateKey>,
      buckets: ReadonlyArray<{ readonly scope: string }>
    ): Effect.Effect<never, LimiterStore.LimiterStoreError> | undefined => {
      const scopes = mixedScopes(gates, buckets)
      if (scopes === undefined) return undefined
      const cause = new HashTagConflict({ operation, scopes, tags: [tagOf(scopes[0]), tagOf(scopes[1])] })
      return Effect.fail(new LimiterStore.LimiterStoreError({ operation, message: cause.message, cause }))
    }

    // The reply of an admitted call; the test probe, when there is one, is bound here once.
    const admitted: LimiterStore.Admission = { _tag: "Admitted" }
    const onAdmitted = probe === undefined
      ? () => admitted
      : (reply: ReadonlyArray<unknown>, debits: ReadonlyArray<LimiterStore.Debit>) => {
        probe(parseNumber(reply[1]), debits)
        return admitted
      }

    const tryAcquire: LimiterStore.Service["tryAcquire"] = (debits, gates) => {
      if (debits.length === 0 && gates.length === 0) return Effect.succeed(admitted)
      if (checkTags) {
        const refused = conflict("tryAcquire", gates, debits.map((debit) => debit.bucket))
        if (refused !== undefined) return refused
      }
      const keys = keysOf(gates, debits.map((debit) => debit.bucket))
      return run(
        "tryAcquire",
        Scripts.scripts.acquire,
        keys,
        (now) => {
          const args = [now, num(gates.length), margin]
          for (const { amount, bucket } of debits) {
            args.push(num(bucket.capacity), num(bucket.refillPerMs), num(amount), num(bucket.windowMillis))
          }
          return args
        },
        (reply): LimiterStore.Admission => {
          const r = reply as ReadonlyArray<unknown>
          if (r[0] === "A") return onAdmitted(r, debits)
          if (r[0] !== "D") throw new Error(`unexpected reply: ${String(r[0])}`)
          const waitMillis = parseNumber(r[1])
          const index = Number(r[2]) - 1
          if (r[3] === "gate") {
            const gate = gates[index]!
            return { _tag: "Denied", waitMillis, scope: gate.scope, dimension: gate.dimension, reason: "gate" }
          }
          const bucket = debits[index]!.bucket
          return { _tag: "Denied", waitMillis, scope: bucket.scope, dimension: bucket.dimension, reason: "limit" }
        },
        Effect.succeed(admitted),
        (store) => store.tryAcquire(scaleDebits(debits), gates)
      )
    }

    const adjust: LimiterStore.Service["adjust"] = (debits) => {
      if (debits.length === 0) return Effect.void
      if (checkTags) {
        const refused = conflict("adjust", [], debits.map((debit) => debit.bucket))
        if (refused !== undefined) return refused
      }
      const keys = debits.map(({ bucket }) =>
        Keys.bucketKey(baseOf(bucket.scope), bucket.scope, bucket.dimension, bucket.windowMillis)
      )
      return run(
        "adjust",
        Scripts.scripts.adjust,
        keys,
        (now) => {
          const args = [now, margin]
          for (const { amount, bucket } of debits) {
            args.push(num(bucket.capacity), num(bucket.refillPerMs), num(amount), num(bucket.windowMillis))
          }
          return args
        },
        () => undefined,
        Effect.void,
        (store) => store.adjust(scaleDebits(debits))
      )
    }

    const block: LimiterStore.Service["block"] = (gate, millis) =>
      run(
        "block",
        Scripts.scripts.block,
        [Keys.gateKey(baseOf(gate.scope), gate.scope, gate.dimension)],
        (now) => [now, num(Number.isFinite(millis) ? millis : 365 * 24 * 3_600_000), margin],
        () => undefined,
        Effect.void,
        (store) => store.block(gate, millis)
      )

    const observe: LimiterStore.Service["observe"] = (bucket, remaining) =>
      run(
        "observe",
        Scripts.scripts.observe,
        [Keys.bucketKey(baseOf(bucket.scope), bucket.scope, bucket.dimension, bucket.windowMillis)],
        (now) => [now, margin, num(bucket.capacity), num(bucket.refillPerMs), num(remaining), num(bucket.windowMillis)],
        () => undefined,
        Effect.void,
        (store) => store.observe(scale(bucket), remaining * share)
      )

    const levelsOf = (
      buckets: ReadonlyArray<LimiterStore.BucketSpec>,
      gates: ReadonlyArray<LimiterStore.GateKey>
    ): Effect.Effect<LimiterStore.Levels, LimiterStore.LimiterStoreError> => {
      const keys = keysOf(gates, buckets)
      return run(
        "levels",
        Scripts.scripts.levels,
        keys,
        (now) => {
          const args = [now, num(gates.length)]
          for (const bucket of buckets) args.push(num(bucket.capacity), num(bucket.refillPerMs))
          return args
        },
        (reply): LimiterStore.Levels => {
          const r = (reply as ReadonlyArray<unknown>).map(parseNumber)
          return { now: r[0]!, gates: r.slice(1, 1 + gates.length), levels: r.slice(1 + gates.length) }
        },
        Effect.map(Clock.currentTimeMillis, (now) => ({
          now,
          levels: buckets.map((bucket) => bucket.capacity),
          gates: gates.map(() => 0)
        })),
        (store) =>
          Effect.map(store.levels(buckets.map(scale), gates), (read) => ({
            ...read,
            levels: read.levels.map((level) => level / share)
          }))
      )
    }

    // A read need not be atomic: on Redis Cluster with per-scope tags, a read spanning several tags
    // (a limiter's snapshot of every scope, say) is one call per tag, merged in order.
    const levels: LimiterStore.Service["levels"] = (buckets, gates) => {
      if (!checkTags || mixedScopes(gates, buckets) === undefined) return levelsOf(buckets, gates)
      const groups = new Map<string, { gates: Array<number>; buckets: Array<number> }>()
      const groupOf = (scope: string) => {
        const tag = tagOf(scope)
        let group = groups.get(tag)
        if (group === undefined) {
          group = { gates: [], buckets: [] }
          groups.set(tag, group)
        }
        return group
      }
      gates.forEach((gate, i) => groupOf(gate.scope).gates.push(i))
      buckets.forEach((bucket, i) => groupOf(bucket.scope).buckets.push(i))
      return Effect.map(
        Effect.forEach(
          groups.values(),
          (group) => levelsOf(group.buckets.map((i) => buckets[i]!), group.gates.map((i) => gates[i]!)),
          { concurrency: "unbounded" }
        ),
        (reads): LimiterStore.Levels => {
          const levels = new Array<number>(buckets.length)
          const gateLevels = new Array<number>(gates.length)
          let now = Number.POSITIVE_INFINITY
          let k = 0
          for (const group of groups.values()) {
            const read = reads[k++]!
            if (read.now < now) now = read.now
            group.buckets.forEach((i, j) => (levels[i] = read.levels[j]!))
            group.gates.forEach((i, j) => (gateLevels[i] = read.gates[j]!))
          }
          return { now, levels, gates: gateLevels }
        }
      )
    }

    // --- holds with a lease: one script, no fallback (a hold nobody can see is no hold) -------------------
    const holdKey = (scope: string) => `${baseOf(scope)}:h:${scope}`
    const hold = (
      operation: string,
      scopes: ReadonlyArray<string>,
      args: ReadonlyArray<string>
    ): Effect.Effect<string, HoldStore.HoldStoreError> => {
      // per-scope hash tags on a Cluster: scopes of different tags cannot be in one script (CROSSSLOT), refused
      // typed as the buckets are
      const mixed = checkTags ? mixedScopes([], scopes.map((scope) => ({ scope }))) : undefined
      if (mixed !== undefined) {
        const cause = new HashTagConflict({ operation, scopes: mixed, tags: [tagOf(mixed[0]), tagOf(mixed[1])] })
        return Effect.fail(new HoldStore.HoldStoreError({ operation, message: cause.message, cause }))
      }
      return Effect.flatMap(nowArg, (now) =>
        evalScript(Scripts.scripts.holds, scopes.map(holdKey), [now, operation, ...args]).pipe(
          Effect.flatMap(({ reply }) =>
            Array.isArray(reply) && typeof reply[0] === "string"
              ? Effect.succeed(reply[0])
              : Effect.fail(new Error(`unexpected reply ${String(reply)}`))
          ),
          Effect.mapError((cause) =>
            new HoldStore.HoldStoreError({
              operation,
              message: `Redis hold store ${operation} failed: ${messageOf(cause)}`,
              cause
            })
          )
        ))
    }
    const holds: HoldStore.Service = {
      take: (id, claims, amount, leaseMillis) =>
        claims.length === 0 ? Effect.succeed(true) : Effect.map(
          hold(
            "take",
            claims.map((c) =>
              c.scope
            ),
            [
              id,
              num(amount),
              num(Math.ceil(leaseMillis)),
              margin,
              ...claims.map((c) => num(c.capacity))
            ]
          ),
          (r) => r === "1"
        ),
      renew: (id, scopes, leaseMillis) =>
        scopes.length === 0 ? Effect.succeed(true) : Effect.map(
          hold("renew", scopes, [id, "0", num(Math.ceil(leaseMillis)), margin]),
          (r) => r === "1"
        ),
      release: (id, scopes) =>
        scopes.length === 0 ? Effect.void : Effect.asVoid(hold("release", scopes, [id, "0", "0", margin])),
      held: (scope) => Effect.map(hold("held", [scope], ["", "0", "0", margin]), parseNumber)
    }

    // the acquire script (and the fallback memory store) admit a debit above the capacity on a full bucket
    const store: LimiterStore.Service = { debitAboveCapacity: true, tryAcquire, adjust, block, observe, levels }
    return { store, holds }
  })

/**
 * {@link makeWithHolds} as a layer of both services: the `LimiterStore` and the `HoldStore`, on one connection.
 *
 * @since 0.2.0
 * @category layers
 * @example
 * ```ts
 * import { HoldStore } from "@sluice/core"
 * import { RedisLimiterStore } from "@sluice/redis"
 * import * as Effect from "effect/Effect"
 *
 * const held = Effect.flatMap(HoldStore.HoldStore, (holds) => holds.held("batch:gpt-4o")).pipe(
 *   Effect.provide(RedisLimiterStore.layerWithHolds({ url: "redis://127.0.0.1:6379" }))
 * )
 * ```
 */
export const layerWithHolds = (
  options: RedisLimiterStore.Options = {}
): Layer.Layer<LimiterStore.LimiterStore | HoldStore.HoldStore, RedisStoreConfigError> =>
  Layer.scopedContext(
    Effect.map(
      makeWithHolds(options),
      ({ holds, store }) => Context.make(LimiterStore.LimiterStore, store).pipe(Context.add(HoldStore.HoldStore, holds))
    )
  )

/**
 * The store as a layer, with a `HoldStore` on the same connection (as {@link layerWithHolds}): a store on Redis
 * is there to be shared between processes, and so are the holds an offload takes beside it (the Batch API's
 * enqueued-token limit is the organization's), so `BatchOffload.layer()` over this layer holds on Redis. (Until
 * 0.2.0 this layer gave the `LimiterStore` only, and an offload over it held in its own memory, silently.)
 *
 * @since 0.1.0
 * @category layers
 * @example
 * ```ts
 * import { Budget, RateLimiter } from "@sluice/core"
 * import { RedisLimiterStore } from "@sluice/redis"
 * import * as Layer from "effect/Layer"
 *
 * const Limits = RateLimiter.layer({
 *   budgets: [Budget.make("org:acme", [Budget.Limit.perMinute("requests", 500)])]
 * }).pipe(Layer.provide(RedisLimiterStore.layer({ url: "redis://127.0.0.1:6379", onUnavailable: { fallback: 0.25 } })))
 * ```
 */
export const layer = (
  options: RedisLimiterStore.Options = {}
): Layer.Layer<LimiterStore.LimiterStore | HoldStore.HoldStore, RedisStoreConfigError> => layerWithHolds(options)

/**
 * The store as a layer (with its `HoldStore`, as {@link layer}), its URL read from configuration (`REDIS_URL` by
 * default, held `Redacted` so a password in it never reaches a log); the other options as given.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Omit<RedisLimiterStore.Options, "url" | "client"> = {},
  url: Config.Config<Redacted.Redacted<string>> = Config.redacted("REDIS_URL")
): Layer.Layer<LimiterStore.LimiterStore | HoldStore.HoldStore, RedisStoreConfigError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(url, (url) => layerWithHolds({ ...options, url })))
