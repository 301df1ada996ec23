/**
 * The response cache: in-flight dedupe under concurrency and interruption (TestClock), errors shared typed, the
 * policy for non-deterministic requests, and the `OpenAi` service through it against the simulator (counted at
 * the simulator): a hit sends nothing and takes no admission; streams replay; stores behave alike (memory, disk).
 */
import { NodeContext } from "@effect/platform-node"
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import { describe, expect, it } from "@effect/vitest"
import { LimiterStore } from "@sluice/core"
import { OpenAi, OpenAiError, ResponseCache } from "@sluice/openai"
import { Scenario, Simulator } from "@sluice/testing"
import { Chunk, Clock, Effect, Exit, Fiber, Layer, Metric, Stream, TestClock } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { cacheSuite } from "./cacheSuite.js"
import { drive, makeClient } from "./harness.js"

const request = (content: string, extra: Record<string, unknown> = {}) => ({
  path: "/chat/completions",
  model: "gpt-4o-mini",
  body: { model: "gpt-4o-mini", temperature: 0, messages: [{ role: "user", content }], ...extra }
})

const completion = (id: string) => ({
  body: { id, choices: [], usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 } },
  requestId: id
})

/** A call that takes a second of the Clock, counting its starts, completions and interruptions. */
const slowCall = () => {
  const counts = { started: 0, completed: 0, interrupted: 0 }
  const call = Effect.gen(function*() {
    counts.started++
    yield* Effect.sleep("1 second")
    counts.completed++
    return completion(`c-${counts.started}`)
  }).pipe(Effect.onInterrupt(() => Effect.sync(() => counts.interrupted++)))
  return { call, counts }
}

const withCache = <A, E>(
  options: ResponseCache.ResponseCache.Options,
  body: (cache: ResponseCache.ResponseCache.Service) => Effect.Effect<A, E>
) => Effect.flatMap(ResponseCache.ResponseCache, body).pipe(Effect.provide(ResponseCache.layerMemory(options)))

describe("ResponseCache: in-flight dedupe", () => {
  it.effect("identical overlapping requests make one call; every caller gets its result", () =>
    withCache({}, (cache) =>
      Effect.gen(function*() {
        const { call, counts } = slowCall()
        const fibers = yield* Effect.forEach(
          [0, 1, 2, 3, 4],
          () => Effect.fork(cache.through(request("same"), call)),
          { concurrency: "unbounded" }
        )
        yield* TestClock.adjust("1 second")
        const results = yield* Effect.forEach(fibers, Fiber.join)
        expect(counts).toEqual({ started: 1, completed: 1, interrupted: 0 })
        expect(new Set(results.map((r) => r.requestId))).toEqual(new Set(["c-1"]))
        expect(yield* cache.stats).toMatchObject({
          misses: 1,
          deduplicated: 4,
          hits: 0,
          requestsSaved: 4,
          tokensSaved: 40
        })
      })))

  it.effect("interrupting one caller does not cancel the call for the others", () =>
    withCache({}, (cache) =>
      Effect.gen(function*() {
        const { call, counts } = slowCall()
        const first = yield* Effect.fork(cache.through(request("same"), call))
        yield* TestClock.adjust("100 millis")
        const second = yield* Effect.fork(cache.through(request("same"), call))
        const third = yield* Effect.fork(cache.through(request("same"), call))
        yield* TestClock.adjust("400 millis")
        // the first caller (whose call it is) goes away half-way
        yield* Fiber.interrupt(first)
        yield* TestClock.adjust("500 millis")
        expect((yield* Fiber.join(second)).requestId).toBe("c-1")
        expect((yield* Fiber.join(third)).requestId).toBe("c-1")
        expect(counts).toEqual({ started: 1, completed: 1, interrupted: 0 })
        // and the answer was kept: a later caller is a hit
        yield* cache.through(request("same"), call)
        expect(counts.started).toBe(1)
        expect(yield* cache.stats).toMatchObject({ misses: 1, deduplicated: 2, hits: 1 })
      })))

  it.effect("when every caller has gone, the call is cancelled; the next caller makes a new one", () =>
    withCache({}, (cache) =>
      Effect.gen(function*() {
        const { call, counts } = slowCall()
        const a = yield* Effect.fork(cache.through(request("same"), call))
        const b = yield* Effect.fork(cache.through(request("same"), call))
        yield* TestClock.adjust("500 millis")
        yield* Fiber.interrupt(a)
        expect(counts.interrupted).toBe(0)
        yield* Fiber.interrupt(b)
        yield* Effect.yieldNow()
        expect(counts).toEqual({ started: 1, completed: 0, interrupted: 1 })
        const c = yield* Effect.fork(cache.through(request("same"), call))
        yield* TestClock.adjust("1 second")
        expect((yield* Fiber.join(c)).requestId).toBe("c-2")
      })))

  it.effect("a failure reaches every caller as its typed error, and is not kept", () =>
    withCache({}, (cache) =>
      Effect.gen(function*() {
        let calls = 0
        const failing = Effect.flatMap(Effect.sleep("1 second"), () => {
          calls++
          return Effect.fail(new OpenAiError.BadRequest({ message: "no", retryable: false, status: 400 }))
        })
        const fibers = yield* Effect.forEach([0, 1, 2], () => Effect.fork(cache.through(request("bad"), failing)))
        yield* TestClock.adjust("1 second")
        for (const fiber of fibers) {
          const exit = yield* Fiber.await(fiber)
          expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag).toBe("BadRequest")
        }
        expect(calls).toBe(1)
        const again = yield* Effect.fork(Effect.either(cache.through(request("bad"), failing)))
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(again)
        expect(calls).toBe(2)
      })))

  it.effect("different requests do not share a call", () =>
    withCache({}, (cache) =>
      Effect.gen(function*() {
        const { call, counts } = slowCall()
        const fibers = yield* Effect.forEach(["a", "b", "c"], (q) => Effect.fork(cache.through(request(q), call)))
        yield* TestClock.adjust("1 second")
        yield* Effect.forEach(fibers, Fiber.join)
        expect(counts.started).toBe(3)
      })))
})

describe("ResponseCache: metrics", () => {
  const lookups = (outcome: string) =>
    Effect.map(
      Metric.value(
        Metric.tagged(Metric.tagged(ResponseCache.metrics.lookups, "endpoint", "/moderations"), "outcome", outcome)
      ),
      (state) => state.count
    )

  it.effect("lookups by outcome, evictions and what was saved, as Effect Metrics", () =>
    withCache({ ttl: "1 minute", maxEntries: 1 }, (cache) =>
      Effect.gen(function*() {
        const before = { hit: yield* lookups("hit"), miss: yield* lookups("miss"), stale: yield* lookups("stale") }
        const evictions = (yield* Metric.value(ResponseCache.metrics.evictions)).count
        const req = (input: string) => ({ path: "/moderations", model: "omni-moderation-latest", body: { input } })
        const call = Effect.succeed({ body: { results: [] }, requestId: null })
        yield* cache.through(req("a"), call) // miss
        yield* cache.through(req("a"), call) // hit
        yield* TestClock.adjust("1 minute")
        yield* cache.through(req("a"), call) // stale, then miss
        yield* cache.through(req("b"), call) // miss, evicts a
        expect(yield* lookups("hit")).toBe(before.hit + 1)
        expect(yield* lookups("miss")).toBe(before.miss + 3)
        expect(yield* lookups("stale")).toBe(before.stale + 1)
        expect((yield* Metric.value(ResponseCache.metrics.evictions)).count).toBe(evictions + 1)
      })))
})

describe("ResponseCache: the policy", () => {
  const twice = (cache: ResponseCache.ResponseCache.Service, req: ResponseCache.ResponseCache.Request) =>
    Effect.gen(function*() {
      let calls = 0
      const call = Effect.sync(() => (calls++, completion(`c-${calls}`)))
      yield* cache.through(req, call)
      yield* cache.through(req, call)
      return calls
    })

  it.effect("a non-deterministic request is not cached, unless the call or the cache says so", () =>
    Effect.gen(function*() {
      const warm = request("q", { temperature: 0.7 })
      expect(yield* withCache({}, (cache) => twice(cache, warm))).toBe(2)
      expect(yield* withCache({}, (cache) => twice(cache, { ...warm, cache: true }))).toBe(1)
      expect(yield* withCache({ nonDeterministic: true }, (cache) => twice(cache, warm))).toBe(1)
      expect(yield* withCache({}, (cache) => twice(cache, request("q", { seed: 1, temperature: 0.7 })))).toBe(1)
      expect(yield* withCache({}, (cache) => twice(cache, { ...request("q"), cache: false }))).toBe(2)
      const images = { path: "/images/generations", model: "dall-e-3", body: { model: "dall-e-3", prompt: "a cat" } }
      expect(yield* withCache({}, (cache) => twice(cache, images))).toBe(2)
    }))

  it.effect("a Responses object that failed is not kept", () =>
    withCache({ nonDeterministic: true }, (cache) =>
      Effect.gen(function*() {
        let calls = 0
        const req = { path: "/responses", model: "gpt-4o", body: { model: "gpt-4o", input: "hi" } }
        const failed = Effect.sync(() => (calls++, { body: { status: "failed", output: [] }, requestId: null }))
        yield* cache.through(req, failed)
        yield* cache.through(req, failed)
        expect(calls).toBe(2)
      })))
})

// -----------------------------------------------------------------------------------------------------------
// the OpenAi service through the cache, against the simulator
// -----------------------------------------------------------------------------------------------------------

const MODEL = "gpt-4o-mini"
const sim = () =>
  Simulator.layer(Scenario.single(MODEL, { rpm: 500, tpm: 200_000 }, {
    seed: 3,
    output: { fixedTokens: 40 },
    latency: { request: { _tag: "fixed", ms: 300 }, perOutputTokenMs: 1 }
  }))

/** The service over a simulator client and a memory cache; its admissions counted. */
const withCachedService = <A, E>(
  body: (
    openai: OpenAi.OpenAi.Service,
    cache: ResponseCache.ResponseCache.Service,
    admitted: () => number
  ) => Effect.Effect<A, E, Simulator.Simulator>
) =>
  Effect.gen(function*() {
    const client = yield* makeClient()
    let admissions = 0
    const onEvent = (event: OpenAi.CallEvent) =>
      Effect.sync(() => {
        if (event._tag === "Admitted") admissions++
      })
    const layer = OpenAi.layerClient(client, { organization: "acme", tier: 1, onEvent }).pipe(
      Layer.provideMerge(ResponseCache.layerMemory()),
      Layer.provide(LimiterStore.layerMemory)
    )
    return yield* Effect.gen(function*() {
      return yield* body(yield* OpenAi.OpenAi, yield* ResponseCache.ResponseCache, () => admissions)
    }).pipe(Effect.provide(layer))
  })

const sent = Effect.map(Simulator.stats, (stats) => stats.attempts.length)

const chat = (key: string) => ({
  model: MODEL,
  temperature: 0,
  messages: [{ role: "user" as const, content: `[req:${key}] Say something.` }],
  max_tokens: 100
})

describe("ResponseCache: the OpenAi service", () => {
  it.effect("a hit sends nothing and takes no admission and no tokens", () =>
    withCachedService((openai, cache, admitted) =>
      Effect.gen(function*() {
        const first = yield* drive(openai.chat.completions.create(chat("a")))
        const tokensAfterFirst = (yield* openai.limiter.snapshot).levels
          .find((l) => l.scope === "org:acme/pool:gpt-4o-mini" && l.dimension === "tokens")!.level
        const at = yield* Clock.currentTimeMillis
        const second = yield* openai.chat.completions.create(chat("a"))
        expect(yield* Clock.currentTimeMillis).toBe(at) // answered at once
        expect(Exit.isSuccess(first.exit) && first.exit.value).toEqual(second)
        expect(yield* sent).toBe(1)
        expect(admitted()).toBe(1)
        const tokensNow = (yield* openai.limiter.snapshot).levels
          .find((l) => l.scope === "org:acme/pool:gpt-4o-mini" && l.dimension === "tokens")!.level
        expect(tokensNow).toBe(tokensAfterFirst)
        const stats = yield* cache.stats
        expect(stats).toMatchObject({ hits: 1, misses: 1, requestsSaved: 1 })
        expect(stats.tokensSaved).toBe(second.usage!.total_tokens)
        expect(stats.dollarsSaved).toBeGreaterThan(0)
      })
    ).pipe(Effect.provide(sim())))

  it.effect("20 identical concurrent calls send one request; 20 different ones send 20", () =>
    withCachedService((openai, cache) =>
      Effect.gen(function*() {
        const same = yield* drive(
          Effect.forEach(Array.from({ length: 20 }, () => chat("same")), (p) => openai.chat.completions.create(p), {
            concurrency: "unbounded"
          })
        )
        expect(Exit.isSuccess(same.exit)).toBe(true)
        expect(yield* sent).toBe(1)
        const different = yield* drive(
          Effect.forEach(
            Array.from({ length: 20 }, (_, i) => chat(`d${i}`)),
            (p) => openai.chat.completions.create(p),
            {
              concurrency: "unbounded"
            }
          )
        )
        expect(Exit.isSuccess(different.exit)).toBe(true)
        expect(yield* sent).toBe(21)
        expect(yield* cache.stats).toMatchObject({ misses: 21, deduplicated: 19 })
      })
    ).pipe(Effect.provide(sim())))

  it.effect("`request` (the bulk runner's) and `embeddings.create` share entries; `cache: false` bypasses", () =>
    withCachedService((openai) =>
      Effect.gen(function*() {
        const body = { model: "text-embedding-3-small", input: "[req:e] hello" }
        const raw = yield* drive(openai.request("/v1/embeddings", body))
        expect(Exit.isSuccess(raw.exit)).toBe(true)
        const typed = yield* openai.embeddings.create(body)
        expect(Exit.isSuccess(raw.exit) && raw.exit.value.body).toEqual(typed)
        expect(yield* sent).toBe(1)
        // `request` says which answers were not sent (the bulk executor charges nothing for them)
        expect(Exit.isSuccess(raw.exit) && raw.exit.value.cached).toBe(undefined)
        expect((yield* openai.request("/v1/embeddings", body)).cached).toBe(true)
        const again = yield* drive(openai.embeddings.create(body, { cache: false }))
        expect(Exit.isSuccess(again.exit)).toBe(true)
        expect(yield* sent).toBe(2)
      })
    ).pipe(
      Effect.provide(Simulator.layer(Scenario.tier1({ seed: 3, latency: { request: { _tag: "fixed", ms: 100 } } })))
    ))

  it.effect("a cached stream replays as the same chunks, and a stream's key is not the call's", () =>
    withCachedService((openai, cache) =>
      Effect.gen(function*() {
        const first = yield* drive(Stream.runCollect(openai.chat.completions.stream(chat("s"))))
        expect(Exit.isSuccess(first.exit)).toBe(true)
        if (!Exit.isSuccess(first.exit)) return
        const chunks = Chunk.toReadonlyArray(first.exit.value)
        expect(chunks.length).toBeGreaterThan(2)
        const replayed = Chunk.toReadonlyArray(yield* Stream.runCollect(openai.chat.completions.stream(chat("s"))))
        expect(replayed).toEqual(chunks)
        expect(yield* sent).toBe(1)
        // the unstreamed call has its own entry (a completion, not chunks)
        const completion = yield* drive(openai.chat.completions.create(chat("s")))
        expect(Exit.isSuccess(completion.exit) && completion.exit.value.object).toBe("chat.completion")
        expect(yield* sent).toBe(2)
        // a stream its consumer stopped early is not kept
        yield* drive(Stream.runCollect(Stream.take(openai.chat.completions.stream(chat("t")), 2)))
        yield* drive(Stream.runCollect(openai.chat.completions.stream(chat("t"))))
        expect(yield* sent).toBe(4)
        expect(yield* cache.stats).toMatchObject({ hits: 1 })
      })
    ).pipe(Effect.provide(sim())))
})

// -----------------------------------------------------------------------------------------------------------
// stores: one behaviour suite, memory and disk (Redis: packages/redis/test/RedisKeyValueStore.test.ts)
// -----------------------------------------------------------------------------------------------------------

cacheSuite("memory", () => KeyValueStore.layerMemory)

describe("ResponseCache: on disk", () => {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-cache-"))
  cacheSuite("disk", () =>
    KeyValueStore.layerFileSystem(fs.mkdtempSync(path.join(directory, "s-"))).pipe(
      Layer.provide(NodeContext.layer),
      Layer.orDie
    ))

  it.effect("entries and the index outlive the process's cache: a second cache on the directory hits", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(directory, "persist-"))
      const layer = ResponseCache.layerFileSystem(dir, { maxEntries: 3 }).pipe(
        Layer.provide(NodeContext.layer),
        Layer.orDie
      )
      let calls = 0
      const call = (i: number) => Effect.sync(() => (calls++, completion(`c-${i}`)))
      yield* Effect.flatMap(
        ResponseCache.ResponseCache,
        (cache) => Effect.forEach([1, 2, 3, 4], (i) => cache.through(request(`q${i}`), call(i)))
      ).pipe(Effect.provide(layer))
      expect(calls).toBe(4)
      // 3 entries (q1 evicted) and the index
      expect(fs.readdirSync(dir)).toHaveLength(4)
      const stats = yield* Effect.flatMap(ResponseCache.ResponseCache, (cache) =>
        Effect.gen(function*() {
          const before = yield* cache.stats
          expect(before.entries).toBe(3)
          for (const i of [2, 3, 4]) expect((yield* cache.through(request(`q${i}`), call(i))).requestId).toBe(`c-${i}`)
          yield* cache.through(request("q1"), call(1))
          return yield* cache.stats
        })).pipe(Effect.provide(layer))
      expect(stats).toMatchObject({ hits: 3, misses: 1, entries: 3, evictions: 1 })
      expect(calls).toBe(5)
      expect(fs.readdirSync(dir)).toHaveLength(4)
    }))
})
