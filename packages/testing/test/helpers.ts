import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import OpenAI from "openai"
import { SimFetch } from "../src/index.js"

/** An SDK client on the simulator's in-process fetch (no SDK retries). */
export const client = (options: { apiKey?: string; maxRetries?: number } = {}) =>
  Effect.map(SimFetch.make, (fetch) =>
    new OpenAI({
      apiKey: options.apiKey ?? "sk-test",
      baseURL: "http://sim.local/v1",
      fetch,
      maxRetries: options.maxRetries ?? 0
    }))

/** Runs a promise-returning call while virtual time advances by `advance` ms. */
export const call = <A>(f: () => Promise<A>, advance = 0) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(Effect.either(Effect.tryPromise({ try: f, catch: (e) => e })))
    if (advance > 0) yield* TestClock.adjust(advance)
    else yield* Effect.yieldNow()
    return yield* Fiber.join(fiber)
  })

export const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  model: "gpt-4o-mini",
  messages: [{ role: "user" as const, content }],
  max_tokens: 10,
  ...extra
})

/** A promise-returning call as an Effect of its outcome, to fork and drive with `TestClock` step by step. */
export const callFor = <A>(f: () => Promise<A>) => Effect.either(Effect.tryPromise({ try: f, catch: (e) => e }))
