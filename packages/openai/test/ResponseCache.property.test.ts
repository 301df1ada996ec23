/**
 * The response cache's invariants as properties: the key is independent of key order and of the excluded fields,
 * and changes with every other field; the size bounds hold after any sequence of writes, and the latest entry is
 * kept; entries expire on the Clock (TestClock).
 */
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import { describe, expect, it } from "@effect/vitest"
import { ResponseCache } from "@sluice/openai"
import { Effect, FastCheck, Layer, TestClock } from "effect"

/** A deep copy of a JSON value with every object's keys in the order `order` picks (a permutation). */
const permuted = (value: unknown, order: (keys: Array<string>) => Array<string>): unknown => {
  if (Array.isArray(value)) return value.map((item) => permuted(item, order))
  if (value === null || typeof value !== "object") return value
  const copy: Record<string, unknown> = Object.create(null)
  for (const key of order(Object.keys(value))) copy[key] = permuted((value as Record<string, unknown>)[key], order)
  return copy
}

const shuffle = (seed: number) => (keys: Array<string>) => {
  const out = [...keys]
  let s = seed
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1_103_515_245 + 12_345) % 2_147_483_648
    const j = s % (i + 1)
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

const body = FastCheck.dictionary(FastCheck.string({ maxLength: 8 }), FastCheck.jsonValue({ maxDepth: 3 }), {
  maxKeys: 8
})
const path = FastCheck.constantFrom("/chat/completions", "/responses", "/embeddings", "/completions", "/moderations")

describe("ResponseCache: the key", () => {
  it.prop(
    "equal requests in any key order, at any depth, give one key",
    { path, body, seed: FastCheck.integer({ min: 0, max: 2 ** 30 }), stream: FastCheck.boolean() },
    ({ body, path, seed, stream }) => {
      const a = ResponseCache.keyOf(path, body, { stream })
      const b = ResponseCache.keyOf(path, permuted(body, shuffle(seed)), { stream })
      const c = ResponseCache.keyOf(path, permuted(body, (keys) => [...keys].reverse()), { stream })
      expect(a).toMatch(/^[0-9a-f]{64}$/)
      expect(b).toBe(a)
      expect(c).toBe(a)
    }
  )

  it.prop(
    "a changed, added or removed field that is not excluded changes the key",
    {
      path,
      body,
      field: FastCheck.string({ maxLength: 8 }).filter((f) => !ResponseCache.excludedFields.includes(f)),
      value: FastCheck.option(FastCheck.jsonValue({ maxDepth: 2 }), { nil: undefined })
    },
    ({ body, field, path, value }) => {
      const changed: Record<string, unknown> = Object.assign(Object.create(null), body)
      if (value === undefined) delete changed[field]
      else changed[field] = value
      const same = JSON.stringify(body[field]) === JSON.stringify(value)
      expect(ResponseCache.keyOf(path, changed) === ResponseCache.keyOf(path, body)).toBe(same)
    }
  )

  it.prop(
    "a nested change changes the key (a message's text)",
    { text: FastCheck.string(), other: FastCheck.string(), temperature: FastCheck.double({ noNaN: true }) },
    ({ other, temperature, text }) => {
      const of = (content: string) =>
        ResponseCache.keyOf("/chat/completions", {
          model: "gpt-4o-mini",
          temperature,
          messages: [{ role: "user", content }]
        })
      expect(of(text) === of(other)).toBe(text === other)
    }
  )

  it.prop(
    "the excluded fields, the endpoint's URL form and stream flags aside, the endpoint and streaming are in the key",
    {
      body,
      user: FastCheck.string(),
      metadata: FastCheck.dictionary(FastCheck.string(), FastCheck.string()),
      serviceTier: FastCheck.constantFrom("auto", "default", "flex")
    },
    ({ body, metadata, serviceTier, user }) => {
      const key = ResponseCache.keyOf("/chat/completions", body)
      const noisy = {
        ...body,
        user,
        metadata,
        service_tier: serviceTier,
        store: true,
        stream: false,
        stream_options: { include_usage: true }
      }
      expect(ResponseCache.keyOf("https://api.openai.com/v1/chat/completions", noisy)).toBe(key)
      expect(ResponseCache.keyOf("/completions", body)).not.toBe(key)
      expect(ResponseCache.keyOf("/chat/completions", body, { stream: true })).not.toBe(key)
    }
  )

  it("a body that is not a JSON object has no key", () => {
    expect(ResponseCache.keyOf("/chat/completions", [1, 2])).toBeUndefined()
    expect(ResponseCache.keyOf("/chat/completions", "text")).toBeUndefined()
    const cyclic: Record<string, unknown> = { model: "gpt-4o" }
    cyclic.self = cyclic
    expect(ResponseCache.keyOf("/chat/completions", cyclic)).toBeUndefined()
    expect(ResponseCache.keyOf("/chat/completions", { n: 10n })).toBeUndefined()
  })

  it("a `__proto__` member is a member like any other", () => {
    const a = JSON.parse(`{"model":"m","__proto__":{"x":1}}`)
    const b = JSON.parse(`{"model":"m","__proto__":{"x":2}}`)
    expect(ResponseCache.keyOf("/embeddings", a)).not.toBe(ResponseCache.keyOf("/embeddings", b))
  })

  it("the policy: deterministic text, embeddings and moderations; never images", () => {
    expect(ResponseCache.deterministic("/chat/completions", { temperature: 0 })).toBe(true)
    expect(ResponseCache.deterministic("/chat/completions", { seed: 7 })).toBe(true)
    expect(ResponseCache.deterministic("/chat/completions", { temperature: 0.2 })).toBe(false)
    expect(ResponseCache.deterministic("/chat/completions", {})).toBe(false)
    expect(ResponseCache.deterministic("/responses", { temperature: 0 })).toBe(true)
    expect(ResponseCache.deterministic("/embeddings", {})).toBe(true)
    expect(ResponseCache.deterministic("/v1/moderations", {})).toBe(true)
    expect(ResponseCache.deterministic("/images/generations", { temperature: 0 })).toBe(false)
  })
})

// -----------------------------------------------------------------------------------------------------------
// bounds and expiry, over a memory store the test reads too
// -----------------------------------------------------------------------------------------------------------

/** A chat completion of `chars` characters (its `usage` says 10 + chars / 4 tokens). */
const answer = (i: number, chars: number) => ({
  body: {
    id: `c-${i}`,
    object: "chat.completion",
    choices: [{ index: 0, message: { role: "assistant", content: "x".repeat(chars) }, finish_reason: "stop" }],
    usage: { prompt_tokens: 10, completion_tokens: Math.ceil(chars / 4), total_tokens: 10 + Math.ceil(chars / 4) }
  },
  requestId: `req-${i}`
})

const request = (i: number) => ({
  path: "/chat/completions",
  model: "gpt-4o-mini",
  body: { model: "gpt-4o-mini", temperature: 0, messages: [{ role: "user", content: `question ${i}` }] }
})

/** A cache over a memory store, and the store itself. */
const withCache = <A, E>(
  options: ResponseCache.ResponseCache.Options,
  body: (cache: ResponseCache.ResponseCache.Service, store: KeyValueStore.KeyValueStore) => Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    const store = yield* KeyValueStore.KeyValueStore
    const cache = yield* ResponseCache.ResponseCache
    return yield* body(cache, store)
  }).pipe(Effect.provide(ResponseCache.layer(options).pipe(Layer.provideMerge(KeyValueStore.layerMemory))))

describe("ResponseCache: size bounds", () => {
  it.effect.prop(
    "after any sequence of writes and reads: within maxEntries and maxBytes, in the store too, and the latest kept",
    {
      maxEntries: FastCheck.integer({ min: 1, max: 12 }),
      maxBytes: FastCheck.integer({ min: 600, max: 6_000 }),
      steps: FastCheck.array(
        FastCheck.record({
          key: FastCheck.integer({ min: 0, max: 30 }),
          chars: FastCheck.integer({ min: 0, max: 900 })
        }),
        { minLength: 1, maxLength: 60 }
      )
    },
    ({ maxBytes, maxEntries, steps }) =>
      withCache({ maxEntries, maxBytes }, (cache, store) =>
        Effect.gen(function*() {
          let calls = 0
          for (const [i, step] of steps.entries()) {
            const call = Effect.sync(() => {
              calls++
              return answer(i, step.chars)
            })
            yield* cache.through(request(step.key), call)
            const stats = yield* cache.stats
            expect(stats.entries).toBeLessThanOrEqual(maxEntries)
            expect(stats.bytes).toBeLessThanOrEqual(maxBytes)
            // the store holds the entries and at most the index besides
            expect(yield* store.size).toBeLessThanOrEqual(stats.entries + 1)
          }
          const stats = yield* cache.stats
          expect(stats.hits + stats.misses).toBe(steps.length)
          expect(stats.misses).toBe(calls)
          // the last request is a hit now, unless its answer alone exceeds maxBytes
          const last = steps[steps.length - 1]!
          const before = calls
          yield* cache.through(request(last.key), Effect.sync(() => (calls++, answer(-1, last.chars))))
          const kept = JSON.stringify(answer(0, last.chars)).length + 200 < maxBytes
          if (kept) expect(calls).toBe(before)
        })),
    { fastCheck: { numRuns: 60 } }
  )
})

describe("ResponseCache: expiry on the Clock", () => {
  it.effect("an entry serves until its ttl, then is stale: removed and called again", () =>
    withCache({ ttl: "1 minute" }, (cache, store) =>
      Effect.gen(function*() {
        let calls = 0
        const call = Effect.sync(() => (calls++, answer(calls, 40)))
        const first = yield* cache.through(request(1), call)
        yield* TestClock.adjust("59999 millis")
        const second = yield* cache.through(request(1), call)
        expect(calls).toBe(1)
        expect(second).toEqual({ ...first, status: undefined, cached: true })
        yield* TestClock.adjust("1 millis")
        const third = yield* cache.through(request(1), call)
        expect(calls).toBe(2)
        expect(third.requestId).toBe("req-2")
        const stats = yield* cache.stats
        expect(stats).toMatchObject({ hits: 1, misses: 2, stale: 1, entries: 1 })
        expect(yield* store.size).toBe(1) // the renewed entry (the index is written when the scope closes)
      })))

  it.effect("what a hit saves: the answer's tokens, and their list price", () =>
    withCache({}, (cache) =>
      Effect.gen(function*() {
        const call = Effect.succeed(answer(1, 400))
        yield* cache.through(request(1), call)
        yield* cache.through(request(1), call)
        yield* cache.through(request(1), call)
        const stats = yield* cache.stats
        // 10 prompt + 100 completion tokens on gpt-4o-mini: (10 × 0.15 + 100 × 0.6) / 1e6 each
        expect(stats).toMatchObject({ hits: 2, misses: 1, requestsSaved: 2, tokensSaved: 220 })
        expect(stats.dollarsSaved).toBeCloseTo(2 * (10 * 0.15 + 100 * 0.6) / 1e6, 12)
      })))
})
