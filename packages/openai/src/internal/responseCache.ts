/**
 * The response cache's mechanism: the key of a request, the policy for non-deterministic requests, the entries on
 * a `KeyValueStore` (their expiry, their size bounds and the least-recently-used index), and the flights that
 * make overlapping identical requests one call.
 *
 * @internal
 */
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as Pricing from "../Pricing.js"
import type { ResponseCache } from "../ResponseCache.js"
import * as Endpoints from "./endpoint.js"

// -----------------------------------------------------------------------------------------------------------
// the key
// -----------------------------------------------------------------------------------------------------------

/**
 * The top-level body fields left out of the key: they do not change what the model answers (who asks, tags, how
 * the answer is delivered or billed, its prompt-cache routing). `store` is left out except on the Responses
 * endpoint, where it decides whether the answer's id can be a later `previous_response_id` (absent counts as
 * `true`, OpenAI's default).
 *
 * @internal
 */
export const EXCLUDED: ReadonlyArray<string> = [
  "user",
  "safety_identifier",
  "metadata",
  "store",
  "stream",
  "stream_options",
  "service_tier",
  "prompt_cache_key",
  "prompt_cache_retention"
]

const excluded: ReadonlySet<string> = new Set(EXCLUDED)

const isRecord = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === "object" && !Array.isArray(value)

/**
 * JSON with every object's keys sorted, at every depth (arrays keep their order); `undefined` members are
 * dropped, as JSON drops them. Throws on what JSON cannot carry (a `BigInt`, a cycle).
 *
 * @internal
 */
export const canonicalJson = (value: unknown): string =>
  JSON.stringify(value, (_key, member: unknown) => {
    if (!isRecord(member)) return member
    // no prototype: a `__proto__` member stays a member
    const sorted: Record<string, unknown> = Object.create(null)
    for (const key of Object.keys(member).sort()) sorted[key] = member[key]
    return sorted
  })

/**
 * The key of a request: SHA-256 of the canonical JSON of its endpoint, whether it streams, the client's `scope`
 * (its base URL, organization and project, when given) and its body without the {@link EXCLUDED} fields (with
 * `store` on the Responses endpoint); `undefined` for a body that is not a JSON object.
 *
 * @internal
 */
export const keyOf = (path: string, body: unknown, stream = false, scope?: string): string | undefined => {
  if (!isRecord(body)) return undefined
  const endpoint = Endpoints.pathOf(path)
  const kept: Record<string, unknown> = Object.create(null)
  for (const [field, value] of Object.entries(body)) if (!excluded.has(field)) kept[field] = value
  if (endpoint === "/responses") kept.store = body.store !== false
  let canonical: string
  try {
    canonical = canonicalJson({ path: endpoint, stream, body: kept, ...(scope === undefined ? {} : { scope }) })
  } catch {
    return undefined
  }
  return createHash("sha256").update(canonical).digest("hex")
}

/**
 * Whether a request gives the same answer each time, as far as its body says: embeddings and moderations always;
 * image generations never; text at `temperature: 0` or with a `seed`.
 *
 * @internal
 */
export const deterministic = (path: string, body: unknown): boolean => {
  switch (Endpoints.pathOf(path)) {
    case "/embeddings":
    case "/moderations":
      return true
    case "/images/generations":
      return false
    default:
      return isRecord(body) && (body.temperature === 0 || typeof body.seed === "number")
  }
}

/** An answer worth keeping: a Responses object that failed, was cancelled or is still running is not. */
const keepable = (path: string, body: unknown): boolean => {
  if (Endpoints.pathOf(path) !== "/responses" || !isRecord(body) || body.status === undefined) return true
  return body.status === "completed" || body.status === "incomplete"
}

// -----------------------------------------------------------------------------------------------------------
// entries and the index
// -----------------------------------------------------------------------------------------------------------

/** One stored answer: JSON in the store, decoded with this schema (a mismatch is a miss, and removed). */
const Entry = Schema.parseJson(Schema.Struct({
  v: Schema.Literal(1),
  path: Schema.String,
  model: Schema.String,
  storedAt: Schema.Number,
  expiresAt: Schema.NullOr(Schema.Number),
  /** What a hit saves: the answer's tokens (its `usage`) and their list price. */
  tokens: Schema.Number,
  dollars: Schema.NullOr(Schema.Number),
  requestId: Schema.NullOr(Schema.String),
  status: Schema.optional(Schema.Number),
  body: Schema.Unknown
}))
type Entry = typeof Entry.Type

const decodeEntry = Schema.decodeUnknownEither(Entry)
const encodeEntry = Schema.encodeSync(Entry)

/** The index of the entries this cache knows, oldest use first, kept in the store under {@link INDEX_KEY}. */
const Index = Schema.parseJson(Schema.Struct({
  v: Schema.Literal(1),
  entries: Schema.Array(Schema.Tuple(Schema.String, Schema.Number, Schema.NullOr(Schema.Number)))
}))
const decodeIndex = Schema.decodeUnknownEither(Index)
const encodeIndex = Schema.encodeSync(Index)

const INDEX_KEY = "index"
/** How long a store operation may take before the cache goes on without it (a miss, or nothing written). */
const STORE_TIMEOUT = "500 millis"
/**
 * The index is written after this many changes, or a tenth of its size if more (so writing it costs a bounded
 * multiple of its final size, however many entries), and when the cache's scope closes.
 */
const FLUSH_EVERY = 100

interface Known {
  readonly bytes: number
  readonly expiresAt: number | null
}

// -----------------------------------------------------------------------------------------------------------
// metrics
// -----------------------------------------------------------------------------------------------------------

/** A counter that only grows (Prometheus `_total`). */
const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

/** @internal */
export const metrics = {
  lookups: counter(
    "sluice_cache_lookups_total",
    "Response cache lookups, tagged endpoint and outcome (hit, miss, stale, deduplicated, bypassed)"
  ),
  evictions: counter("sluice_cache_evictions_total", "Response cache entries evicted to stay within the size bounds"),
  tokensSaved: counter(
    "sluice_cache_tokens_saved_total",
    "Tokens of the answers served by the response cache or shared by in-flight dedupe"
  ),
  dollarsSaved: counter(
    "sluice_cache_dollars_saved_total",
    "List-price dollars of the answers served by the response cache or shared by in-flight dedupe"
  )
} as const

type Outcome = "hit" | "miss" | "stale" | "deduplicated" | "bypassed"

// -----------------------------------------------------------------------------------------------------------
// the service
// -----------------------------------------------------------------------------------------------------------

/** A call under way for a key: its result for every caller, and how many callers still wait for it. */
interface Flight {
  readonly deferred: Deferred.Deferred<Served, unknown>
  waiters: number
  fiber: Fiber.RuntimeFiber<unknown> | undefined
}

/** A flight's result: the answer, and what a caller that did not send it saved. */
interface Served {
  readonly stored: ResponseCache.Stored<unknown>
  readonly tokens: number
  readonly dollars: number | null
}

/** What a stream's answer saves a caller that did not send it. */
interface StreamSaving {
  readonly tokens: number
  readonly dollars: number | null
}

/**
 * A stream under way for a key: the chunks so far (each caller reads them from the first), how it ended once it has,
 * a signal replaced at each change, and how many callers still read it.
 */
interface StreamFlight {
  readonly chunks: Array<unknown>
  changed: Deferred.Deferred<void>
  exit: Exit.Exit<StreamSaving, unknown> | undefined
  waiters: number
  fiber: Fiber.RuntimeFiber<StreamSaving, unknown> | undefined
}

const savingOf = (path: string, model: string, body: unknown): { tokens: number; dollars: number | null } => {
  const used = Endpoints.usedCost(Endpoints.endpointOf(path) ?? "/chat/completions", body, { images: 0 })
  return { tokens: used?.tokens ?? 0, dollars: Pricing.dollarsOfAnswer(model, body) ?? null }
}

/** What a hit of a stream (or a caller that shared it) saves: its usage chunk's tokens and price. */
const savingOfChunks = (request: ResponseCache.Request, chunks: ReadonlyArray<unknown>): StreamSaving => {
  let usage: unknown
  for (const chunk of chunks) usage = (chunk as { readonly usage?: unknown } | null)?.usage ?? usage
  return {
    tokens: Endpoints.usageCost(usage)?.tokens ?? 0,
    dollars: Pricing.dollarsOfAnswer(request.model, { usage }) ?? null
  }
}

/** @internal */
export const make = (
  options: ResponseCache.Options = {}
): Effect.Effect<ResponseCache.Service, never, KeyValueStore.KeyValueStore | Scope.Scope> =>
  Effect.gen(function*() {
    const store = KeyValueStore.prefix(yield* KeyValueStore.KeyValueStore, options.namespace ?? "sluice-cache-v1-")
    const scope = yield* Effect.scope
    const ttlMillis = options.ttl === undefined ? undefined : Duration.toMillis(Duration.decode(options.ttl))
    const maxEntries = options.maxEntries ?? 10_000
    const maxBytes = options.maxBytes ?? 256 * 1024 * 1024
    const nonDeterministic = options.nonDeterministic === true
    const dedupe = options.dedupe !== false
    const storeTimeout = Duration.decode(options.storeTimeout ?? STORE_TIMEOUT)
    /** The entries this cache knows, least recently used first (a `Map` keeps insertion order). */
    const index = new Map<string, Known>()
    let bytes = 0
    let changes = 0
    const counts = {
      hits: 0,
      misses: 0,
      stale: 0,
      deduplicated: 0,
      bypassed: 0,
      evictions: 0,
      storeErrors: 0,
      tokensSaved: 0,
      dollarsSaved: 0
    }
    const flights = new Map<string, Flight>()
    const streamFlights = new Map<string, StreamFlight>()

    /**
     * A store operation whose failure, or slowness beyond {@link STORE_TIMEOUT} (on the `Clock`), is logged and
     * counted, never the call's: the cache is an optimisation, and a stalled store must not stall the calls.
     */
    const safely = <A>(operation: string, effect: Effect.Effect<A, unknown>, otherwise: A) =>
      Effect.catchAll(
        // interruptible: in a finalizer (the index written when the scope closes) the timeout could not cut it
        Effect.timeoutFail(Effect.interruptible(effect), {
          duration: storeTimeout,
          onTimeout: () => new Error(`no answer from the store in ${Duration.format(storeTimeout)}`)
        }),
        (error) =>
          Effect.suspend(() => {
            const failures = ++counts.storeErrors
            // the 1st, 10th, 100th, … failure: a store that is down does not log once a call
            const logged = Number.isInteger(Math.log10(failures))
              ? Effect.logWarning(
                `response cache: ${operation} failed (${failures} store failures so far); going on without the cache`,
                error
              )
              : Effect.void
            return Effect.as(logged, otherwise)
          })
      )

    const count = (
      path: string,
      outcome: Outcome,
      saved?: { readonly tokens: number; readonly dollars: number | null }
    ) =>
      Effect.suspend(() => {
        const endpoint = Endpoints.pathOf(path)
        const counted = Metric.increment(
          Metric.tagged(Metric.tagged(metrics.lookups, "endpoint", endpoint), "outcome", outcome)
        )
        if (saved === undefined) return counted
        counts.tokensSaved += saved.tokens
        counts.dollarsSaved += saved.dollars ?? 0
        return Effect.zipRight(
          counted,
          Effect.zipRight(
            Metric.incrementBy(Metric.tagged(metrics.tokensSaved, "endpoint", endpoint), saved.tokens),
            Metric.incrementBy(Metric.tagged(metrics.dollarsSaved, "endpoint", endpoint), saved.dollars ?? 0)
          )
        )
      })

    const forget = (key: string) => {
      const known = index.get(key)
      if (known === undefined) return
      index.delete(key)
      bytes -= known.bytes
      changes++
    }

    /** Keys this cache removed from the store since it last wrote the index: not merged back from it. */
    const dropped = new Set<string>()

    /** An entry removed from the store (evicted, expired, unreadable). */
    const drop = (key: string) => {
      forget(key)
      dropped.add(key)
    }

    const remember = (key: string, known: Known) => {
      forget(key)
      dropped.delete(key)
      index.set(key, known)
      bytes += known.bytes
      changes++
    }

    /** Removes the entries whose `ttl` has passed from the index and the store. */
    const purgeExpired = Effect.suspend(() => {
      const expired: Array<string> = []
      return Effect.flatMap(Clock.currentTimeMillis, (now) => {
        for (const [key, known] of index) if (known.expiresAt !== null && now >= known.expiresAt) expired.push(key)
        for (const key of expired) drop(key)
        return Effect.forEach(expired, (key) => safely("removing an expired entry", store.remove(key), undefined), {
          discard: true
        })
      })
    })

    /**
     * Writes the index, merged with the one in the store: entries another process (or cache) sharing the store
     * wrote and indexed since this one read it are kept in it, as the least recently used, and count toward the
     * bounds (evicted first) — so processes sharing a directory or a Redis keep one bound between them, not one
     * each, and none orphans the others' entries. (Two writes of the index at the same moment can still lose one's
     * new entries from it: they stay in the store, outside the bounds, until read or expired.)
     */
    const flush = Effect.gen(function*() {
      changes = 0
      const raw = yield* safely("reading the index", store.get(INDEX_KEY), Option.none<string>())
      const decoded = Option.isSome(raw) ? decodeIndex(raw.value) : undefined
      if (decoded !== undefined && Either.isRight(decoded)) {
        const foreign = decoded.right.entries.filter(([key]) => !index.has(key) && !dropped.has(key))
        if (foreign.length > 0) {
          const own = Array.from(index)
          index.clear()
          bytes = 0
          for (const [key, size, expiresAt] of foreign) remember(key, { bytes: size, expiresAt })
          for (const [key, known] of own) remember(key, known)
          yield* purgeExpired
          yield* evict("")
        }
      }
      dropped.clear()
      changes = 0
      const entries = Array.from(index, ([key, known]) => [key, known.bytes, known.expiresAt] as const)
      yield* safely("writing the index", store.set(INDEX_KEY, encodeIndex({ v: 1, entries })), undefined)
    })

    /** Least recently used first, until within both bounds (`keep`, just written, stays). */
    const evict = (keep: string) =>
      Effect.suspend(() => {
        const victims: Array<string> = []
        let entries = index.size
        let total = bytes
        for (const [key, known] of index) {
          if (entries <= maxEntries && total <= maxBytes) break
          if (key === keep) continue
          victims.push(key)
          entries--
          total -= known.bytes
        }
        if (victims.length === 0) return Effect.void
        for (const key of victims) drop(key)
        counts.evictions += victims.length
        return Effect.zipRight(
          Effect.forEach(victims, (key) => safely("evicting", store.remove(key), undefined), { discard: true }),
          Metric.incrementBy(metrics.evictions, victims.length)
        )
      })

    /** The entry of `key` if there is one and it has not expired (an expired one is removed: `stale`). */
    const lookup = (key: string, path: string) =>
      Effect.gen(function*() {
        const raw = yield* safely("reading", store.get(key), Option.none<string>())
        if (Option.isNone(raw)) return Option.none<Entry>()
        const decoded = decodeEntry(raw.value)
        if (Either.isLeft(decoded) || Endpoints.pathOf(decoded.right.path) !== Endpoints.pathOf(path)) {
          drop(key)
          yield* safely("removing an unreadable entry", store.remove(key), undefined)
          return Option.none<Entry>()
        }
        const entry = decoded.right
        const now = yield* Clock.currentTimeMillis
        if (entry.expiresAt !== null && now >= entry.expiresAt) {
          counts.stale++
          drop(key)
          yield* safely("removing an expired entry", store.remove(key), undefined)
          yield* count(path, "stale")
          return Option.none<Entry>()
        }
        remember(key, { bytes: Buffer.byteLength(raw.value), expiresAt: entry.expiresAt })
        return Option.some(entry)
      })

    /** Writes an answer (or a stream's chunks) under `key`, then evicts to the bounds. */
    const write = (
      key: string,
      request: ResponseCache.Request,
      body: unknown,
      answer: { readonly requestId: string | null; readonly status?: number | undefined },
      saving: { readonly tokens: number; readonly dollars: number | null }
    ) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const expiresAt = ttlMillis === undefined ? null : now + ttlMillis
        const entry = {
          v: 1 as const,
          path: Endpoints.pathOf(request.path),
          model: request.model,
          storedAt: now,
          expiresAt,
          ...saving,
          requestId: answer.requestId,
          ...(answer.status === undefined ? {} : { status: answer.status }),
          body
        }
        let json: string
        try {
          json = encodeEntry(entry)
        } catch {
          return // not JSON (a cycle, a BigInt): not kept
        }
        const size = Buffer.byteLength(json)
        if (size > maxBytes) return
        yield* safely("writing", store.set(key, json), undefined)
        remember(key, { bytes: size, expiresAt })
        yield* evict(key)
        if (changes >= Math.max(FLUSH_EVERY, index.size / 10)) yield* flush
      })

    const load = Effect.gen(function*() {
      const raw = yield* safely("reading the index", store.get(INDEX_KEY), Option.none<string>())
      if (Option.isNone(raw)) return
      const decoded = decodeIndex(raw.value)
      if (Either.isLeft(decoded)) {
        return yield* Effect.logWarning("response cache: the index is unreadable; starting a new one")
      }
      for (const [key, size, expiresAt] of decoded.right.entries) remember(key, { bytes: size, expiresAt })
      changes = 0
      yield* purgeExpired
      yield* evict("")
    })
    yield* load
    yield* Effect.addFinalizer(() => flush)

    const cacheable = (request: ResponseCache.Request): boolean =>
      request.cache !== false &&
      (request.cache === true || nonDeterministic || deterministic(request.path, request.body))

    /** What the first caller of a key does: the store, else the call (then stored). */
    const fly = <E>(
      key: string,
      request: ResponseCache.Request,
      call: Effect.Effect<ResponseCache.Stored<unknown>, E>
    ) =>
      Effect.gen(function*() {
        const found = yield* lookup(key, request.path)
        if (Option.isSome(found)) {
          const entry = found.value
          counts.hits++
          const saved = { tokens: entry.tokens, dollars: entry.dollars }
          yield* count(request.path, "hit", saved)
          return {
            stored: { body: entry.body, requestId: entry.requestId, status: entry.status, cached: true },
            ...saved
          } satisfies Served
        }
        counts.misses++
        yield* count(request.path, "miss")
        const stored = yield* call
        const saving = savingOf(request.path, request.model, stored.body)
        if (keepable(request.path, stored.body)) yield* write(key, request, stored.body, stored, saving)
        return { stored, ...saving } satisfies Served
      })

    /**
     * Waits for a flight, as one more of its waiters (counted by the caller, in the same step as it found or made
     * the flight); one caller's interruption leaves it to the others (the last one's cancels it).
     */
    const join = (
      flightKey: string,
      flight: Flight,
      restore: <X, Y, Z>(e: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>
    ) =>
      restore(Deferred.await(flight.deferred)).pipe(
        Effect.onInterrupt(() =>
          Effect.suspend(() => {
            flight.waiters--
            if (flight.waiters > 0 || flights.get(flightKey) !== flight || flight.fiber === undefined) {
              return Effect.void
            }
            flights.delete(flightKey)
            return Fiber.interruptFork(flight.fiber)
          })
        )
      )

    const through: ResponseCache.Service["through"] = <A, E>(
      request: ResponseCache.Request,
      call: Effect.Effect<ResponseCache.Stored<A>, E>
    ) =>
      Effect.suspend((): Effect.Effect<ResponseCache.Stored<A>, E> => {
        const key = cacheable(request) ? keyOf(request.path, request.body, false, request.scope) : undefined
        if (key === undefined) {
          counts.bypassed++
          return Effect.zipRight(count(request.path, "bypassed"), call)
        }
        if (!dedupe) return Effect.map(fly(key, request, call), (served) => served.stored as ResponseCache.Stored<A>)
        // only callers that govern their call alike (deadline, retries, lane, tenant) share it
        const flightKey = request.flight === undefined ? key : `${key} ${request.flight}`
        // finding (or making) the flight and counting this caller in it is one step: no leaving waiter between
        return Effect.uninterruptibleMask((restore) =>
          Effect.suspend(() => {
            const current = flights.get(flightKey)
            if (current !== undefined) {
              current.waiters++
              return Effect.flatMap(join(flightKey, current, restore) as Effect.Effect<Served, E>, (served) =>
                Effect.as(
                  Effect.zipRight(
                    Effect.sync(() => counts.deduplicated++),
                    count(request.path, "deduplicated", served)
                  ),
                  { ...served.stored, cached: true } as ResponseCache.Stored<A>
                ))
            }
            // the first caller: its flight is registered and forked before anything can interrupt it
            const flight: Flight = { deferred: Deferred.unsafeMake(FiberId.none), waiters: 1, fiber: undefined }
            flights.set(flightKey, flight)
            // interruptible: forked here, it would inherit the mask; however it ends (the cache's scope closing
            // included), its waiters get the exit
            const run = Effect.interruptible(fly(key, request, call)).pipe(
              Effect.onExit((exit) =>
                Effect.zipRight(
                  Deferred.done(flight.deferred, exit),
                  Effect.sync(() => {
                    if (flights.get(flightKey) === flight) flights.delete(flightKey)
                  })
                )
              ),
              Effect.exit
            )
            return Effect.flatMap(Effect.forkIn(run, scope), (fiber) => {
              flight.fiber = fiber
              return Effect.map(
                join(flightKey, flight, restore) as Effect.Effect<Served, E>,
                (served) => served.stored as ResponseCache.Stored<A>
              )
            })
          })
        )
      })

    /** What a stream whose request is not kept runs: the stream, as it is, `bypassed`. */
    const bypass = <C, E>(request: ResponseCache.Request, stream: Stream.Stream<C, E>) =>
      Stream.unwrap(Effect.suspend(() => {
        counts.bypassed++
        return Effect.as(count(request.path, "bypassed"), stream)
      }))

    /**
     * What the first caller of a stream's key does: the store (a hit's chunks, whole), else the stream, each chunk
     * handed on as it comes and the whole kept once it ended (a stream that fails or is cut short keeps nothing).
     */
    const streamFly = <C, E>(
      key: string,
      request: ResponseCache.Request,
      stream: Stream.Stream<C, E>,
      emit: (chunks: ReadonlyArray<C>) => Effect.Effect<void>
    ): Effect.Effect<StreamSaving, E> =>
      Effect.gen(function*() {
        const found = yield* lookup(key, request.path)
        if (Option.isSome(found) && Array.isArray(found.value.body)) {
          const entry = found.value
          counts.hits++
          const saved = { tokens: entry.tokens, dollars: entry.dollars }
          yield* count(request.path, "hit", saved)
          yield* emit(entry.body as ReadonlyArray<C>)
          return saved
        }
        counts.misses++
        yield* count(request.path, "miss")
        const chunks: Array<C> = []
        yield* Stream.runForEachChunk(stream, (chunk) => {
          const array = Chunk.toReadonlyArray(chunk)
          for (const item of array) chunks.push(item)
          return emit(array)
        })
        const saving = savingOfChunks(request, chunks)
        yield* write(key, request, chunks, { requestId: null }, saving)
        return saving
      })

    /** A stream through the cache without in-flight dedupe (`dedupe: false`): a hit replays, a miss records. */
    const replayAlone = <C, E>(key: string, request: ResponseCache.Request, stream: Stream.Stream<C, E>) =>
      Stream.unwrap(Effect.flatMap(lookup(key, request.path), (found) => {
        if (Option.isSome(found) && Array.isArray(found.value.body)) {
          const entry = found.value
          counts.hits++
          return Effect.as(
            count(request.path, "hit", { tokens: entry.tokens, dollars: entry.dollars }),
            Stream.fromIterable(entry.body as ReadonlyArray<C>)
          )
        }
        counts.misses++
        const chunks: Array<C> = []
        // stored only when the stream ran to its end: a consumer that stops early leaves nothing behind
        const recorded = Stream.concat(
          Stream.tap(stream, (chunk) => Effect.sync(() => chunks.push(chunk))),
          Stream.execute(
            Effect.suspend(() => write(key, request, chunks, { requestId: null }, savingOfChunks(request, chunks)))
          )
        )
        return Effect.as(count(request.path, "miss"), recorded)
      }))

    /**
     * A stream's flight, as one of its callers sees it: every chunk from the first (a late joiner gets what was
     * already emitted, then the rest), then its end, or its error. When the caller's stream ends, however it ends
     * (to its end, failed, stopped early, interrupted), it leaves the flight; the last one to leave a flight under
     * way cancels it (and so keeps nothing).
     */
    const subscribe = <C, E>(
      flightKey: string,
      request: ResponseCache.Request,
      make: () => Effect.Effect<StreamFlight>
    ): Stream.Stream<C, E> =>
      Stream.unwrapScoped(Effect.map(
        // finding (or making and starting) the flight and counting this caller in it is one step
        Effect.acquireRelease(
          Effect.suspend(() => {
            const current = streamFlights.get(flightKey)
            if (current !== undefined) {
              current.waiters++
              return Effect.succeed({ flight: current, joined: true })
            }
            return Effect.map(make(), (flight) => ({ flight, joined: false }))
          }),
          ({ flight }) =>
            Effect.suspend(() => {
              flight.waiters--
              if (flight.waiters > 0 || flight.exit !== undefined || flight.fiber === undefined) return Effect.void
              if (streamFlights.get(flightKey) === flight) streamFlights.delete(flightKey)
              // waited for: the call's request aborted and its permit settled before the caller goes on
              return Effect.asVoid(Fiber.interrupt(flight.fiber))
            })
        ),
        ({ flight, joined }) => {
          let position = 0
          const pull: Effect.Effect<Chunk.Chunk<C>, Option.Option<E>> = Effect.suspend(() => {
            if (position < flight.chunks.length) {
              const out = flight.chunks.slice(position) as Array<C>
              position = flight.chunks.length
              return Effect.succeed(Chunk.unsafeFromArray(out))
            }
            const exit = flight.exit
            if (exit === undefined) return Effect.zipRight(Deferred.await(flight.changed), pull)
            if (Exit.isFailure(exit)) return Effect.failCause(Cause.map(exit.cause, (e) => Option.some(e as E)))
            if (!joined) return Effect.fail(Option.none())
            // a caller that did not send it: counted, with what it saved, once it has it whole
            return Effect.zipRight(
              Effect.zipRight(
                Effect.sync(() => counts.deduplicated++),
                count(request.path, "deduplicated", exit.value)
              ),
              Effect.fail(Option.none())
            )
          })
          return Stream.repeatEffectChunkOption(pull)
        }
      ))

    const replay: ResponseCache.Service["replay"] = <C, E>(
      request: ResponseCache.Request,
      stream: Stream.Stream<C, E>
    ) =>
      Stream.suspend((): Stream.Stream<C, E> => {
        const key = cacheable(request) ? keyOf(request.path, request.body, true, request.scope) : undefined
        if (key === undefined) return bypass(request, stream)
        if (!dedupe) return replayAlone(key, request, stream)
        // only callers that govern their call alike (deadline, retries, lane, tenant) share it
        const flightKey = request.flight === undefined ? key : `${key} ${request.flight}`
        return subscribe<C, E>(flightKey, request, () =>
          Effect.suspend(() => {
            const flight: StreamFlight = {
              chunks: [],
              changed: Deferred.unsafeMake(FiberId.none),
              exit: undefined,
              waiters: 1,
              fiber: undefined
            }
            streamFlights.set(flightKey, flight)
            /** Hands chunks on to every caller: appended, and the callers waiting for more woken. */
            const emit = (chunks: ReadonlyArray<C>) =>
              Effect.suspend(() => {
                if (chunks.length === 0) return Effect.void
                for (const chunk of chunks) flight.chunks.push(chunk)
                const woken = flight.changed
                flight.changed = Deferred.unsafeMake(FiberId.none)
                return Deferred.succeed(woken, undefined)
              })
            // interruptible: forked under the acquisition's mask it would inherit it; however it ends (the cache's
            // scope closing included), its callers get the exit
            const run = Effect.interruptible(streamFly(key, request, stream, emit)).pipe(
              Effect.onExit((exit) =>
                Effect.suspend(() => {
                  flight.exit = exit
                  if (streamFlights.get(flightKey) === flight) streamFlights.delete(flightKey)
                  return Deferred.succeed(flight.changed, undefined)
                })
              )
            )
            // forked in the cache's scope, not the first caller's: its leaving does not end the call for the others
            return Effect.map(Effect.forkIn(run, scope), (fiber) => {
              flight.fiber = fiber
              return flight
            })
          }))
      })

    return {
      through,
      replay,
      cacheable,
      keyOf: (request) =>
        cacheable(request) ? keyOf(request.path, request.body, request.stream === true, request.scope) : undefined,
      stats: Effect.sync(() => ({
        hits: counts.hits,
        misses: counts.misses,
        stale: counts.stale,
        deduplicated: counts.deduplicated,
        bypassed: counts.bypassed,
        evictions: counts.evictions,
        storeErrors: counts.storeErrors,
        entries: index.size,
        bytes,
        requestsSaved: counts.hits + counts.deduplicated,
        tokensSaved: counts.tokensSaved,
        dollarsSaved: counts.dollarsSaved
      })),
      flush
    } satisfies ResponseCache.Service
  })
