/**
 * The response cache's streams in flight (issue 22): identical streams that overlap in time make one call; every
 * caller gets every chunk (a late joiner what was already emitted, then the rest), or the chunks before a failure
 * and its typed error; one caller's leaving (interrupted, or stopping early) does not end the call for the others,
 * the last one's does. Under TestClock: a synthetic stream, then the `OpenAi` service against the in-process
 * simulator, counted at the simulator.
 */
import { describe, expect, it } from "@effect/vitest"
import { LimiterStore } from "@sluice/core"
import { OpenAi, OpenAiError, ResponseCache } from "@sluice/openai"
import { Scenario, Simulator } from "@sluice/testing"
import { Chunk, Effect, Either, Exit, Fiber, Layer, Stream, TestClock } from "effect"
import { drive, makeClient } from "./harness.js"

const request = (content: string) => ({
  path: "/chat/completions",
  model: "gpt-4o-mini",
  stream: true,
  body: { model: "gpt-4o-mini", temperature: 0, messages: [{ role: "user", content }] }
})

interface Piece {
  readonly n: number
  readonly usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number }
}

/**
 * Five chunks, one every 100 ms of the Clock (the last with the usage), or a failure after `failAfter` of them;
 * its starts, completions and interruptions counted.
 */
const slowStream = (failAfter?: number) => {
  const counts = { started: 0, completed: 0, interrupted: 0 }
  const stream = Stream.unwrap(Effect.sync(() => {
    counts.started++
    return Stream.fromIterable([1, 2, 3, 4, 5]).pipe(
      Stream.mapEffect((n) =>
        Effect.sleep("100 millis").pipe(
          Effect.onInterrupt(() => Effect.sync(() => counts.interrupted++)),
          Effect.zipRight(
            n === failAfter
              ? Effect.fail(new OpenAiError.ServerError({ message: "boom", retryable: true, status: 500 }))
              : Effect.succeed<Piece>(
                n === 5 ? { n, usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 } } : { n }
              )
          )
        )
      ),
      Stream.concat(Stream.execute(Effect.sync(() => counts.completed++)))
    )
  }))
  return { stream, counts }
}

const numbers = (pieces: Chunk.Chunk<Piece>) => Chunk.toReadonlyArray(pieces).map((piece) => piece.n)

const withCache = <A, E>(
  options: ResponseCache.ResponseCache.Options,
  body: (cache: ResponseCache.ResponseCache.Service) => Effect.Effect<A, E>
) => Effect.flatMap(ResponseCache.ResponseCache, body).pipe(Effect.provide(ResponseCache.layerMemory(options)))

describe("ResponseCache: streams in flight", () => {
  it.effect("identical overlapping streams make one call; a late joiner gets every chunk from the first", () =>
    withCache({}, (cache) =>
      Effect.gen(function*() {
        const { counts, stream } = slowStream()
        const first = yield* Effect.fork(Stream.runCollect(cache.replay(request("same"), stream)))
        const second = yield* Effect.fork(Stream.runCollect(cache.replay(request("same"), stream)))
        yield* TestClock.adjust("250 millis") // two chunks out
        const late = yield* Effect.fork(Stream.runCollect(cache.replay(request("same"), stream)))
        yield* TestClock.adjust("300 millis")
        for (const fiber of [first, second, late]) expect(numbers(yield* Fiber.join(fiber))).toEqual([1, 2, 3, 4, 5])
        expect(counts).toEqual({ started: 1, completed: 1, interrupted: 0 })
        expect(yield* cache.stats).toMatchObject({ misses: 1, deduplicated: 2, requestsSaved: 2, tokensSaved: 20 })
        // kept whole: a later caller replays it without the call
        expect(numbers(yield* Stream.runCollect(cache.replay(request("same"), stream)))).toEqual([1, 2, 3, 4, 5])
        expect(counts.started).toBe(1)
        expect(yield* cache.stats).toMatchObject({ hits: 1 })
      })))

  it.effect("interrupting one caller (the one whose call it is) does not cancel the stream for the others", () =>
    withCache({}, (cache) =>
      Effect.gen(function*() {
        const { counts, stream } = slowStream()
        const first = yield* Effect.fork(Stream.runCollect(cache.replay(request("same"), stream)))
        yield* TestClock.adjust("50 millis")
        const second = yield* Effect.fork(Stream.runCollect(cache.replay(request("same"), stream)))
        yield* TestClock.adjust("200 millis")
        yield* Fiber.interrupt(first)
        yield* TestClock.adjust("300 millis")
        expect(numbers(yield* Fiber.join(second))).toEqual([1, 2, 3, 4, 5])
        expect(counts).toEqual({ started: 1, completed: 1, interrupted: 0 })
        yield* Stream.runCollect(cache.replay(request("same"), stream))
        expect(counts.started).toBe(1)
      })))

  it.effect("a caller that stops early leaves the rest of the stream to the others, and it is kept", () =>
    withCache({}, (cache) =>
      Effect.gen(function*() {
        const { counts, stream } = slowStream()
        const early = yield* Effect.fork(Stream.runCollect(Stream.take(cache.replay(request("same"), stream), 2)))
        const whole = yield* Effect.fork(Stream.runCollect(cache.replay(request("same"), stream)))
        yield* TestClock.adjust("500 millis")
        expect(numbers(yield* Fiber.join(early))).toEqual([1, 2])
        expect(numbers(yield* Fiber.join(whole))).toEqual([1, 2, 3, 4, 5])
        expect(counts).toEqual({ started: 1, completed: 1, interrupted: 0 })
        expect((yield* cache.stats).entries).toBe(1)
      })))

  it.effect("when every caller has gone, the call is cancelled and nothing kept; the next caller makes a new one", () =>
    withCache({}, (cache) =>
      Effect.gen(function*() {
        const { counts, stream } = slowStream()
        const a = yield* Effect.fork(Stream.runCollect(cache.replay(request("same"), stream)))
        const b = yield* Effect.fork(Stream.runCollect(Stream.take(cache.replay(request("same"), stream), 1)))
        yield* TestClock.adjust("250 millis")
        expect(numbers(yield* Fiber.join(b))).toEqual([1])
        expect(counts.interrupted).toBe(0)
        yield* Fiber.interrupt(a)
        expect(counts).toEqual({ started: 1, completed: 0, interrupted: 1 })
        expect((yield* cache.stats).entries).toBe(0)
        const c = yield* Effect.fork(Stream.runCollect(cache.replay(request("same"), stream)))
        yield* TestClock.adjust("500 millis")
        expect(numbers(yield* Fiber.join(c))).toEqual([1, 2, 3, 4, 5])
        expect(counts.started).toBe(2)
      })))

  it.effect("a failure reaches every caller after the chunks before it, as its typed error, and is not kept", () =>
    withCache({}, (cache) =>
      Effect.gen(function*() {
        const { counts, stream } = slowStream(3)
        const collect = Effect.suspend(() => {
          const seen: Array<number> = []
          return Effect.map(
            Effect.either(
              Stream.runForEach(cache.replay(request("bad"), stream), (p) => Effect.sync(() => seen.push(p.n)))
            ),
            (result) => ({ seen, error: Either.isLeft(result) ? result.left._tag : undefined })
          )
        })
        const first = yield* Effect.fork(collect)
        yield* TestClock.adjust("150 millis")
        const late = yield* Effect.fork(collect)
        yield* TestClock.adjust("200 millis")
        for (const fiber of [first, late]) {
          expect(yield* Fiber.join(fiber)).toEqual({ seen: [1, 2], error: "ServerError" })
        }
        expect(counts.started).toBe(1)
        const again = yield* Effect.fork(collect)
        yield* TestClock.adjust("300 millis")
        expect((yield* Fiber.join(again)).error).toBe("ServerError")
        expect(counts.started).toBe(2)
        expect(yield* cache.stats).toMatchObject({ entries: 0, deduplicated: 0, misses: 2 })
      })))

  it.effect("callers that govern a stream differently, or a cache made with dedupe: false, make their own calls", () =>
    Effect.gen(function*() {
      const twoAtOnce = (
        cache: ResponseCache.ResponseCache.Service,
        flights: [string, string],
        stream: Stream.Stream<Piece, OpenAiError.ServerError>
      ) =>
        Effect.gen(function*() {
          const fibers = yield* Effect.forEach(flights, (flight) =>
            Effect.fork(Stream.runCollect(cache.replay({ ...request("same"), flight }, stream))))
          yield* TestClock.adjust("500 millis")
          for (const fiber of fibers) {
            expect(numbers(yield* Fiber.join(fiber))).toEqual([1, 2, 3, 4, 5])
          }
        })
      const governed = slowStream()
      yield* withCache({}, (cache) => twoAtOnce(cache, ["deadline 1", "deadline 2"], governed.stream))
      expect(governed.counts.started).toBe(2)
      const alone = slowStream()
      yield* withCache({ dedupe: false }, (cache) => twoAtOnce(cache, ["same", "same"], alone.stream))
      expect(alone.counts.started).toBe(2)
    }))
})

// -----------------------------------------------------------------------------------------------------------
// the OpenAi service's streams, against the simulator
// -----------------------------------------------------------------------------------------------------------

const MODEL = "gpt-4o-mini"
/** 400 output tokens streamed 1 ms a token after 300 ms: a stream runs from 300 ms to about 700 ms. */
const sim = () =>
  Simulator.layer(Scenario.single(MODEL, { rpm: 500, tpm: 200_000 }, {
    seed: 3,
    output: { fixedTokens: 400 },
    latency: { request: { _tag: "fixed", ms: 300 }, perOutputTokenMs: 1 }
  }))

const withCachedService = <A, E>(
  body: (
    openai: OpenAi.OpenAi.Service,
    cache: ResponseCache.ResponseCache.Service
  ) => Effect.Effect<A, E, Simulator.Simulator>
) =>
  Effect.gen(function*() {
    const layer = OpenAi.layerClient(yield* makeClient(), { organization: "acme", tier: 1 }).pipe(
      Layer.provideMerge(ResponseCache.layerMemory()),
      Layer.provide(LimiterStore.layerMemory)
    )
    return yield* Effect.gen(function*() {
      return yield* body(yield* OpenAi.OpenAi, yield* ResponseCache.ResponseCache)
    }).pipe(Effect.provide(layer))
  })

const sent = Effect.map(Simulator.stats, (stats) => stats.attempts.length)

const chat = (key: string, model = MODEL) => ({
  model,
  temperature: 0,
  messages: [{ role: "user" as const, content: `[req:${key}] Tell me a story.` }],
  max_tokens: 500
})

describe("ResponseCache: the OpenAi service's streams in flight", () => {
  it.effect("identical streams overlapping in time send one request; each caller, a late one too, gets every chunk", () =>
    withCachedService((openai, cache) =>
      Effect.gen(function*() {
        const collect = Effect.map(Stream.runCollect(openai.chat.completions.stream(chat("s"))), Chunk.toReadonlyArray)
        const run = yield* drive(Effect.all([
          collect,
          collect,
          // half-way through the stream (it runs from 300 to ~700 ms)
          Effect.zipRight(Effect.sleep("500 millis"), collect)
        ], { concurrency: "unbounded" }))
        expect(Exit.isSuccess(run.exit)).toBe(true)
        if (!Exit.isSuccess(run.exit)) return
        const [a, b, late] = run.exit.value
        expect(a.length).toBeGreaterThan(10)
        expect(a.at(-1)?.usage?.completion_tokens).toBe(400)
        expect(b).toEqual(a)
        expect(late).toEqual(a)
        expect(yield* sent).toBe(1)
        expect(yield* cache.stats).toMatchObject({ misses: 1, deduplicated: 2 })
      })
    ).pipe(Effect.provide(sim())))

  it.effect("one caller's interruption does not cancel the stream for the others; the answer is kept", () =>
    withCachedService((openai, cache) =>
      Effect.gen(function*() {
        const collect = Effect.map(Stream.runCollect(openai.chat.completions.stream(chat("i"))), Chunk.toReadonlyArray)
        const run = yield* drive(Effect.gen(function*() {
          const first = yield* Effect.fork(collect)
          const second = yield* Effect.fork(collect)
          yield* Effect.sleep("450 millis") // mid-stream
          yield* Fiber.interrupt(first)
          return yield* Fiber.join(second)
        }))
        expect(Exit.isSuccess(run.exit)).toBe(true)
        if (!Exit.isSuccess(run.exit)) return
        expect(run.exit.value.at(-1)?.usage?.completion_tokens).toBe(400)
        expect(yield* sent).toBe(1)
        expect(Chunk.toReadonlyArray(yield* Stream.runCollect(openai.chat.completions.stream(chat("i")))))
          .toEqual(run.exit.value)
        expect(yield* sent).toBe(1)
        expect(yield* cache.stats).toMatchObject({ misses: 1, hits: 1, deduplicated: 1 })
      })
    ).pipe(Effect.provide(sim())))

  it.effect("a failed stream gives every caller its typed error, from one request", () =>
    withCachedService((openai) =>
      Effect.gen(function*() {
        // a model the simulator does not serve: 404 model_not_found, not retried
        const attempt = Effect.either(Stream.runCollect(openai.chat.completions.stream(chat("x", "gpt-4o"))))
        const run = yield* drive(Effect.all([attempt, attempt, attempt], { concurrency: "unbounded" }))
        expect(Exit.isSuccess(run.exit)).toBe(true)
        if (!Exit.isSuccess(run.exit)) return
        for (const result of run.exit.value) expect(Either.isLeft(result) && result.left._tag).toBe("NotFound")
        expect(yield* sent).toBe(1)
      })
    ).pipe(Effect.provide(sim())))
})
