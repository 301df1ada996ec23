/**
 * One behaviour suite for the response cache on any `KeyValueStore`: memory and disk here, Redis in
 * `packages/redis/test/RedisKeyValueStore.test.ts`. Each test gets a fresh store from `store()`.
 */
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import { describe, expect, it } from "@effect/vitest"
import { ResponseCache } from "@sluice/openai"
import type { Layer } from "effect"
import { Effect, Layer as L, TestClock } from "effect"

const request = (content: string) => ({
  path: "/chat/completions",
  model: "gpt-4o-mini",
  body: { model: "gpt-4o-mini", seed: 1, messages: [{ role: "user", content }] }
})

const answer = (id: string) => ({
  body: {
    id,
    object: "chat.completion",
    choices: [{ index: 0, message: { role: "assistant", content: `héllo ✓ ${id} "quoted"\n` }, finish_reason: "stop" }],
    usage: { prompt_tokens: 3, completion_tokens: 7, total_tokens: 10 }
  },
  requestId: `req-${id}`,
  status: 200
})

export const cacheSuite = (name: string, store: () => Layer.Layer<KeyValueStore.KeyValueStore>) => {
  const run = <A, E>(
    options: ResponseCache.ResponseCache.Options,
    body: (cache: ResponseCache.ResponseCache.Service, kv: KeyValueStore.KeyValueStore) => Effect.Effect<A, E>
  ) =>
    Effect.gen(function*() {
      return yield* body(yield* ResponseCache.ResponseCache, yield* KeyValueStore.KeyValueStore)
    }).pipe(Effect.provide(ResponseCache.layer(options).pipe(L.provideMerge(store()))))

  describe(`ResponseCache on ${name}`, () => {
    it.effect("a miss keeps the answer; a hit gives it back whole, without the call", () =>
      run({}, (cache) =>
        Effect.gen(function*() {
          let calls = 0
          const call = Effect.sync(() => (calls++, answer(`a${calls}`)))
          const first = yield* cache.through(request("q"), call)
          const second = yield* cache.through(request("q"), call)
          expect(calls).toBe(1)
          expect(second).toEqual({ ...first, cached: true })
          expect(yield* cache.stats).toMatchObject({ hits: 1, misses: 1, entries: 1, tokensSaved: 10 })
        })))

    it.effect("an entry expires on the Clock", () =>
      run({ ttl: "10 seconds" }, (cache) =>
        Effect.gen(function*() {
          let calls = 0
          const call = Effect.sync(() => (calls++, answer(`a${calls}`)))
          yield* cache.through(request("q"), call)
          yield* TestClock.adjust("9 seconds")
          yield* cache.through(request("q"), call)
          expect(calls).toBe(1)
          yield* TestClock.adjust("1 second")
          expect((yield* cache.through(request("q"), call)).requestId).toBe("req-a2")
          expect(yield* cache.stats).toMatchObject({ hits: 1, misses: 2, stale: 1 })
        })))

    it.effect("eviction removes the least recently used entry from the store", () =>
      run({ maxEntries: 2, namespace: "t-" }, (cache, kv) =>
        Effect.gen(function*() {
          const call = (id: string) => Effect.succeed(answer(id))
          yield* cache.through(request("1"), call("1"))
          yield* cache.through(request("2"), call("2"))
          yield* cache.through(request("1"), call("x")) // 1 is now the most recently used
          yield* cache.through(request("3"), call("3"))
          const key = (q: string) => `t-${cache.keyOf(request(q))}`
          expect(yield* kv.has(key("2"))).toBe(false)
          expect(yield* kv.has(key("1"))).toBe(true)
          expect(yield* kv.has(key("3"))).toBe(true)
          expect(yield* cache.stats).toMatchObject({ entries: 2, evictions: 1 })
        })))

    it.effect("caches sharing a store keep one bound between them, and none orphans the other's entries", () =>
      Effect.gen(function*() {
        const kv = yield* KeyValueStore.KeyValueStore
        const cacheOn = ResponseCache.make({ maxEntries: 3, namespace: "s-" })
        // two processes' caches, both started on the (empty) index
        const a = yield* cacheOn
        const b = yield* cacheOn
        const call = (id: string) => Effect.succeed(answer(id))
        yield* a.through(request("1"), call("1"))
        yield* a.through(request("2"), call("2"))
        yield* b.through(request("3"), call("3"))
        yield* b.through(request("4"), call("4"))
        yield* a.flush
        // b's index is merged with a's: 4 entries for a bound of 3, a's oldest evicted (from the store too)
        yield* b.flush
        const key = (q: string) => `s-${a.keyOf(request(q))}`
        expect(yield* kv.has(key("1"))).toBe(false)
        for (const q of ["2", "3", "4"]) expect(yield* kv.has(key(q))).toBe(true)
        expect(yield* b.stats).toMatchObject({ entries: 3, evictions: 1 })
        // a third process finds all three in the index
        const c = yield* cacheOn
        expect((yield* c.stats).entries).toBe(3)
        expect((yield* c.through(request("2"), call("x"))).requestId).toBe("req-2")
      }).pipe(Effect.scoped, Effect.provide(store())))

    it.effect("entries whose ttl passed are removed from the store when a cache opens its index", () =>
      Effect.gen(function*() {
        const kv = yield* KeyValueStore.KeyValueStore
        const cacheOn = ResponseCache.make({ ttl: "1 minute", namespace: "e-" })
        const a = yield* cacheOn
        yield* a.through(request("old"), Effect.succeed(answer("old")))
        yield* a.flush
        yield* TestClock.adjust("2 minutes")
        const b = yield* cacheOn
        expect(yield* kv.has(`e-${a.keyOf(request("old"))}`)).toBe(false)
        expect((yield* b.stats).entries).toBe(0)
      }).pipe(Effect.scoped, Effect.provide(store())))

    it.effect("an unreadable entry is a miss, replaced", () =>
      run({ namespace: "u-" }, (cache, kv) =>
        Effect.gen(function*() {
          yield* kv.set(`u-${cache.keyOf(request("q"))}`, "{not json")
          let calls = 0
          const call = Effect.sync(() => (calls++, answer(`a${calls}`)))
          yield* cache.through(request("q"), call)
          yield* cache.through(request("q"), call)
          expect(calls).toBe(1)
          expect(yield* cache.stats).toMatchObject({ hits: 1, misses: 1 })
        })))
  })
}
