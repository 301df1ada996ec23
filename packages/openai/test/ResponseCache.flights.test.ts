/**
 * The response cache's flights (issue 22 review): callers share a call only when they govern it alike (deadline,
 * retries), a stalled store does not stall the calls, and a flight cut short by the cache's scope closing
 * releases its waiters. Under TestClock.
 */
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore } from "@sluice/core"
import { OpenAi, ResponseCache } from "@sluice/openai"
import { Scenario, Simulator } from "@sluice/testing"
import { Cause, Clock, Effect, Exit, Fiber, Layer, Option, Scope, TestClock } from "effect"
import OpenAIClient from "openai"
import { drive, makeClient, settle } from "./harness.js"

const MODEL = "gpt-4o-mini"
const POOL = `org:acme/pool:${MODEL}`

const chat = (key: string) => ({
  model: MODEL,
  temperature: 0,
  messages: [{ role: "user" as const, content: `[req:${key}] hello` }],
  max_tokens: 4_000
})

/** The service on 6,000 tokens a minute (a 4,000-token call leaves the next ~20 s of refill) and a memory cache. */
const withTightService = <A, E>(
  body: (openai: OpenAi.OpenAi.Service) => Effect.Effect<A, E, Simulator.Simulator>,
  client?: OpenAIClient
) =>
  Effect.gen(function*() {
    const layer = OpenAi.layerClient(client ?? (yield* makeClient()), {
      organization: "acme",
      budgets: [Budget.make(POOL, [Budget.Limit.perMinute("requests", 500), Budget.Limit.perMinute("tokens", 6_000)])]
    }).pipe(Layer.provide(ResponseCache.layerMemory()), Layer.provide(LimiterStore.layerMemory))
    return yield* Effect.flatMap(OpenAi.OpenAi, body).pipe(Effect.provide(layer))
  }).pipe(Effect.provide(Simulator.layer(Scenario.single(MODEL, { rpm: 500, tpm: 200_000 }, { seed: 3 }))))

const failureTag = <A, E>(exit: Exit.Exit<A, E>) =>
  Exit.isFailure(exit)
    ? Option.getOrUndefined(Cause.failureOption(exit.cause)) as { readonly _tag?: string } | undefined
    : undefined

/** A client on `baseURL` whose first `refused` requests get a 429 (retry after 10 ms), and every later one an answer. */
const scripted = (baseURL: string, refused: number) => {
  const requests = { count: 0 }
  const fetch = async (): Promise<Response> => {
    const headers = { "content-type": "application/json", "retry-after-ms": "10", "x-request-id": `r${requests.count}` }
    if (requests.count++ < refused) {
      return new Response(
        JSON.stringify({ error: { code: "rate_limit_exceeded", type: "requests", message: "Rate limit reached" } }),
        { status: 429, headers }
      )
    }
    return new Response(
      JSON.stringify({
        id: `c-${baseURL}`,
        object: "chat.completion",
        created: 0,
        model: MODEL,
        choices: [{ index: 0, message: { role: "assistant", content: "hi" }, finish_reason: "stop" }],
        usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 }
      }),
      { status: 200, headers }
    )
  }
  return { client: new OpenAIClient({ apiKey: "sk-test", baseURL, fetch, maxRetries: 0 }), requests }
}

describe("ResponseCache: callers share a call only when they govern it alike", () => {
  it.effect("a caller without a deadline does not get another's DeadlineExceeded", () =>
    withTightService((openai) =>
      Effect.gen(function*() {
        expect(Exit.isSuccess((yield* drive(openai.chat.completions.create(chat("first")))).exit)).toBe(true)
        const now = yield* Clock.currentTimeMillis
        const hurried = yield* Effect.fork(openai.chat.completions.create(chat("same"), { deadline: now + 100 }))
        const patient = yield* drive(openai.chat.completions.create(chat("same")))
        expect(failureTag(yield* Fiber.await(hurried))?._tag).toBe("DeadlineExceeded")
        expect(Exit.isSuccess(patient.exit)).toBe(true)
      })
    ))

  it.effect("a caller with a 1 s deadline does not wait for a call without one", () =>
    withTightService((openai) =>
      Effect.gen(function*() {
        expect(Exit.isSuccess((yield* drive(openai.chat.completions.create(chat("first")))).exit)).toBe(true)
        const start = yield* Clock.currentTimeMillis
        const patient = yield* Effect.fork(openai.chat.completions.create(chat("same")))
        const hurried = yield* drive(openai.chat.completions.create(chat("same"), { deadline: start + 1_000 }))
        expect(failureTag(hurried.exit)?._tag).toBe("DeadlineExceeded")
        expect(hurried.endedAt - start).toBeLessThanOrEqual(1_000)
        expect(Exit.isSuccess((yield* drive(Fiber.join(patient))).exit)).toBe(true)
      })
    ))

  it.effect("a caller with the same maxWait, arriving later, does not time out on the earlier caller's wait", () =>
    withTightService((openai) =>
      Effect.gen(function*() {
        // the pool's 6,000 tokens taken at 0 (and held): a 4,000-token call is admitted when 40 s have refilled
        yield* openai.limiter.acquire([POOL], { tokens: 6_000 })
        const background = { priority: "background" as const, maxWait: "45 seconds" as const }
        // admitted by 45 s: it can be (at ~40 s)
        const early = yield* Effect.fork(openai.chat.completions.create(chat("same"), background))
        yield* settle
        yield* TestClock.adjust("10 seconds")
        // its own wait ends at 55 s
        const late = yield* Effect.fork(openai.chat.completions.create(chat("same"), background))
        yield* settle
        yield* TestClock.adjust("1 second")
        // an interactive 1,000-token call goes ahead of both: the background lane's next admission moves to ~50 s
        const ahead = yield* Effect.fork(openai.chat.completions.create({ ...chat("ahead"), max_tokens: 1_000 }))
        yield* settle
        expect(failureTag(yield* Fiber.await(early))?._tag).toBe("DeadlineExceeded")
        const lateExit = (yield* drive(Fiber.join(late))).exit
        expect(Exit.isSuccess(lateExit)).toBe(true)
        expect(Exit.isSuccess((yield* drive(Fiber.join(ahead))).exit)).toBe(true)
      })
    ))

  it.effect("a caller does not get the un-retried 429 of a call made with retry: false", () => {
    const { client, requests } = scripted("http://scripted.local/v1", 1)
    return withTightService((openai) =>
      Effect.gen(function*() {
        const router = yield* Effect.fork(openai.chat.completions.create(chat("same"), { retry: false }))
        const direct = yield* drive(openai.chat.completions.create(chat("same")))
        yield* drive(Fiber.await(router))
        expect(Exit.isSuccess(direct.exit)).toBe(true)
        // it made its own request (the router's got the 429, or it did and retried)
        expect(requests.count).toBeGreaterThanOrEqual(2)
      }), client)
  })
})

/** A store whose reads never answer (a stalled Redis); writes succeed. */
const stalledReads = Layer.sync(KeyValueStore.KeyValueStore, () =>
  KeyValueStore.make({
    get: () => Effect.never,
    getUint8Array: () => Effect.never,
    set: () => Effect.void,
    remove: () => Effect.void,
    clear: Effect.void,
    size: Effect.succeed(0)
  }))

describe("ResponseCache: the store", () => {
  it.effect("a store that never answers delays a call by the store timeout, then the call goes on", () =>
    Effect.gen(function*() {
      let calls = 0
      const call = Effect.sync(() => ({ body: { id: `c${++calls}` }, requestId: null }))
      const request = { path: "/embeddings", model: "text-embedding-3-small", body: { input: "x" } }
      const fiber = yield* Effect.fork(
        Effect.flatMap(ResponseCache.ResponseCache, (cache) => Effect.zip(cache.through(request, call), cache.stats))
          .pipe(
            Effect.provide(ResponseCache.layer().pipe(Layer.provide(stalledReads)))
          )
      )
      // the index's read at make, the lookup, then the index's read when the layer is released (to merge it):
      // 500 ms each on the Clock
      yield* TestClock.adjust("500 millis")
      yield* TestClock.adjust("500 millis")
      yield* TestClock.adjust("500 millis")
      const done = yield* Fiber.poll(fiber)
      expect(Option.isSome(done) && Exit.isSuccess(done.value)).toBe(true)
      if (Option.isNone(done) || !Exit.isSuccess(done.value)) return
      const [answer, stats] = done.value.value
      expect(answer.body).toEqual({ id: "c1" })
      expect(stats).toMatchObject({ misses: 1, storeErrors: 2 }) // the stats were read before the release
    }))
})

describe("ResponseCache: the cache's scope closing", () => {
  it.effect("a call under way is cancelled and its callers are released, not left waiting", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const cache = yield* ResponseCache.make().pipe(
        Scope.extend(scope),
        Effect.provide(KeyValueStore.layerMemory)
      )
      const request = { path: "/embeddings", model: "text-embedding-3-small", body: { input: "x" } }
      const first = yield* Effect.fork(cache.through(request, Effect.never))
      const second = yield* Effect.fork(cache.through(request, Effect.never))
      yield* TestClock.adjust("1 millis")
      yield* Scope.close(scope, Exit.void)
      yield* TestClock.adjust("1 millis")
      const [a, b] = [yield* Fiber.poll(first), yield* Fiber.poll(second)]
      expect(Option.isSome(a) && Exit.isInterrupted(a.value)).toBe(true)
      expect(Option.isSome(b) && Exit.isInterrupted(b.value)).toBe(true)
    }))
})

describe("ResponseCache: the key", () => {
  it.effect("two services on different deployments sharing one cache do not share entries", () =>
    Effect.gen(function*() {
      const east = scripted("http://east.local/v1", 0)
      const west = scripted("http://west.local/v1", 0)
      const cacheLayer = ResponseCache.layerMemory()
      const answers = yield* Effect.gen(function*() {
        const cache = yield* ResponseCache.ResponseCache
        const ask = (client: OpenAIClient) =>
          Effect.flatMap(OpenAi.OpenAi, (openai) => drive(openai.chat.completions.create(chat("same")))).pipe(
            Effect.provide(
              OpenAi.layerClient(client, { organization: "acme", cache }).pipe(Layer.provide(LimiterStore.layerMemory))
            )
          )
        return [yield* ask(east.client), yield* ask(west.client)]
      }).pipe(Effect.provide(cacheLayer))
      expect(answers.map((a) => Exit.isSuccess(a.exit) && a.exit.value.id)).toEqual([
        "c-http://east.local/v1",
        "c-http://west.local/v1"
      ])
      expect([east.requests.count, west.requests.count]).toEqual([1, 1])
    }))

  it("a Responses request's key has `store` (absent is true); other endpoints' do not", () => {
    const body = { model: MODEL, input: "hi", temperature: 0 }
    expect(ResponseCache.keyOf("/responses", { ...body, store: false })).not.toBe(
      ResponseCache.keyOf("/responses", body)
    )
    expect(ResponseCache.keyOf("/responses", { ...body, store: true })).toBe(ResponseCache.keyOf("/responses", body))
    const messages = [{ role: "user", content: "hi" }]
    expect(ResponseCache.keyOf("/chat/completions", { model: MODEL, messages, store: false }))
      .toBe(ResponseCache.keyOf("/chat/completions", { model: MODEL, messages }))
  })
})
