/**
 * A response cache in front of the `OpenAi` service, on the in-process simulator, in virtual time (no API key, no
 * network, no real waiting).
 *
 *   node scripts/run-ts.mjs examples/response-cache.ts
 *
 * 100 questions at `temperature: 0`, 30 of them asked twice more (some at the same moment, some later): the
 * simulator counts the requests that reach it. Overlapping identical calls make one request (in-flight dedupe);
 * later ones are cache hits, which take no admission and no tokens. A question at `temperature: 1` is not cached
 * unless the call says `cache: true`. A stream replays from the cache as the same chunks.
 */
import { LimiterStore } from "@sluice/core"
import { OpenAi, ResponseCache } from "@sluice/openai"
import { Scenario, SimFetch, Simulator } from "@sluice/testing"
import { Chunk, Console, Effect, Fiber, Layer, Stream, TestClock, TestContext } from "effect"
import OpenAI from "openai"

const ask = (i: number, temperature = 0) => ({
  model: "gpt-4o-mini",
  temperature,
  messages: [{ role: "user" as const, content: `Question ${i}: what is ${i} squared?` }],
  max_tokens: 50
})

/** Runs `effect`, moving the virtual clock on while the SDK's promises settle. */
const drive = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    while (fiber.unsafePoll() === null) {
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      yield* TestClock.adjust("100 millis")
    }
    return yield* Fiber.join(fiber)
  })

const program = Effect.gen(function*() {
  const sim = yield* Simulator.make(Scenario.tier1({ seed: 1 }))
  const fetch = yield* Effect.provideService(SimFetch.make, Simulator.Simulator, sim)
  const client = new OpenAI({ apiKey: "sk-example", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
  const sent = Effect.map(Effect.provideService(Simulator.stats, Simulator.Simulator, sim), (s) => s.attempts.length)

  const Live = OpenAi.layerClient(client, { tier: 1 }).pipe(
    Layer.provideMerge(ResponseCache.layerMemory({ ttl: "1 hour", maxEntries: 1_000 })),
    Layer.provide(LimiterStore.layerMemory)
  )

  yield* Effect.gen(function*() {
    const openai = yield* OpenAi.OpenAi
    const cache = yield* ResponseCache.ResponseCache

    // 100 questions, 30 of them asked a second time at the same moment: 100 requests
    const first = [...Array.from({ length: 100 }, (_, i) => ask(i)), ...Array.from({ length: 30 }, (_, i) => ask(i))]
    yield* drive(Effect.forEach(first, (p) => openai.chat.completions.create(p), { concurrency: "unbounded" }))
    yield* Console.log(`130 calls, 30 of them overlapping repeats: ${yield* sent} requests sent`)

    // the same 30 later: hits
    yield* drive(Effect.forEach(first.slice(0, 30), (p) => openai.chat.completions.create(p)))
    yield* Console.log(`30 more repeats later: ${yield* sent} requests sent in all`)

    // not deterministic: sent each time, unless the call asks for the cache
    yield* drive(openai.chat.completions.create(ask(1, 1)))
    yield* drive(openai.chat.completions.create(ask(1, 1)))
    yield* drive(openai.chat.completions.create(ask(2, 1), { cache: true }))
    yield* drive(openai.chat.completions.create(ask(2, 1), { cache: true }))
    yield* Console.log(`temperature 1, twice each without and with cache: true: ${yield* sent} requests sent in all`)

    // a stream, then its replay
    const streamed = yield* drive(Stream.runCollect(openai.chat.completions.stream(ask(500))))
    const replayed = yield* drive(Stream.runCollect(openai.chat.completions.stream(ask(500))))
    yield* Console.log(
      `a stream of ${Chunk.size(streamed)} chunks, replayed: ${Chunk.size(replayed)} chunks; ${yield* sent} requests`
    )

    const stats = yield* cache.stats
    yield* Console.log(
      `cache: ${stats.hits} hits, ${stats.deduplicated} deduplicated, ${stats.misses} misses, ${stats.bypassed} bypassed; ` +
        `saved ${stats.requestsSaved} requests, ${stats.tokensSaved} tokens, $${stats.dollarsSaved.toFixed(6)}`
    )
  }).pipe(Effect.provide(Live))
})

Effect.runPromise(program.pipe(Effect.provide(TestContext.TestContext))).catch((error) => {
  console.error(error)
  process.exit(1)
})
