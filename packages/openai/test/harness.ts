/**
 * The shared harness of the `OpenAi` service tests: the real `openai` SDK against the in-process
 * simulator under TestClock, and virtual time driven to the next pending sleep once the work in flight
 * has settled.
 */
import { LimiterStore } from "@sluice/core"
import { BulkExecutor, BulkRunner, OpenAi } from "@sluice/openai"
import { Scenario, SimFetch, SimStats, Simulator } from "@sluice/testing"
import { Chunk, Clock, Effect, Equal, Fiber, type FiberId, Layer, Random, Redacted, Runtime, TestClock } from "effect"
import OpenAIClient from "openai"
import type { ChatCompletionCreateParamsNonStreaming } from "openai/resources/chat/completions"

/** The key the tests' clients send: long and distinctive, so a test can look for it in any output. */
export const API_KEY = "sk-test-4f9a2c7e1b3d5f7a9c0e2b4d6f8a1c3e"

/** One event-loop turn: a check phase (setImmediate) and then a timers phase (setTimeout 0). */
const turn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(() => setTimeout(resolve, 0))))

/**
 * Lets the work in flight settle before virtual time moves: the SDK's promise chains and the fibers they
 * resume take several event-loop turns, and how setImmediate and setTimeout interleave depends on the load
 * of the machine. So it waits until the pending sleeps have not changed for three turns in a row.
 */
export const settle = Effect.gen(function*() {
  let last = ""
  let stable = 0
  while (stable < 3) {
    yield* turn
    const sleeps = yield* TestClock.sleeps()
    const fingerprint = `${Chunk.size(sleeps)}:${Chunk.reduce(sleeps, 0, (a, b) => a + b)}`
    if (fingerprint === last) stable++
    else {
      stable = 0
      last = fingerprint
    }
  }
})

/**
 * Runs `effect` while virtual time advances: lets the work in flight settle, then moves the TestClock to
 * the next pending sleep (or `maxStepMillis` ahead when none is pending), until the effect is done.
 * Effect's `Random` (retry jitter) is seeded, so a run is the same every time.
 * Returns its exit and the virtual time it ended at.
 */
export const drive = <A, E, R>(effect: Effect.Effect<A, E, R>, maxStepMillis = 1_000) =>
  driveWith(effect, maxStepMillis, settle, (driven) => driven)

/**
 * How a drive moves the TestClock. `TestClock.setTime` fires the sleeps due one at a time, and before each one and
 * after the last it waits for the test's fibers to suspend (`awaitSuspended`): with no fibers supervised (as under
 * `it.effect`) that wait checks nothing and is three `setTimeout(0)` turns, each a millisecond or more of idle time
 * (tens of milliseconds on a loaded machine), and a fork and an interruption of a warning fiber. A drive has already
 * let the work settle by its own measure before it moves the clock, so for the drive's own `setTime` that wait is
 * replaced: the first by nothing (the drive has just settled), each one after a sleep fired by the drive's `settled`
 * (the same wait the drive makes before every step; after the last one the drive does not settle again). The sleeps
 * still fire one at a time in the TestClock's order. Any other caller (a test's own `TestClock.adjust`) keeps the
 * TestClock's wait. Should `awaitSuspended` not be found (another version of effect), setTime is left as it is.
 */
interface Stepper {
  /** The fiber whose setTime is a drive's step, while one runs. */
  driver: FiberId.FiberId | undefined
  settled: Effect.Effect<void>
  /** The step has not waited yet (its first wait is skipped). */
  fresh: boolean
  /** The step ended on a `settled` (a sleep fired). */
  endedSettled: boolean
}

const steppers = new WeakMap<object, Stepper>()

const stepperOf = (clock: TestClock.TestClock): Stepper | undefined => {
  const existing = steppers.get(clock)
  if (existing !== undefined) return existing
  const target = clock as unknown as { awaitSuspended?: () => Effect.Effect<void> }
  const original = target.awaitSuspended
  if (typeof original !== "function") return undefined
  const stepper: Stepper = { driver: undefined, settled: Effect.void, fresh: false, endedSettled: false }
  target.awaitSuspended = () =>
    Effect.fiberIdWith((id) => {
      if (stepper.driver === undefined || !Equal.equals(id, stepper.driver)) {
        return original.call(clock)
      }
      if (stepper.fresh) {
        stepper.fresh = false
        return Effect.void
      }
      stepper.endedSettled = true
      return stepper.settled
    })
  steppers.set(clock, stepper)
  return stepper
}

/** `drive` with its own way of letting the work settle, and of running the driven effect. */
export const driveWith = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  maxStepMillis: number,
  settled: Effect.Effect<void>,
  around: (effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
) =>
  Effect.gen(function*() {
    let endedAt = 0
    const fiber = yield* Effect.fork(
      around(
        Effect.ensuring(effect, Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => (endedAt = now))))
          .pipe(Effect.withRandom(Random.make("sluice-tests")))
      )
    )
    let done = false
    fiber.addObserver(() => {
      done = true
    })
    const clock = yield* TestClock.testClock()
    const stepper = stepperOf(clock)
    const self = yield* Effect.fiberId
    const step = (to: number) =>
      stepper === undefined ? clock.setTime(to) : Effect.suspend(() => {
        const outer = { driver: stepper.driver, settled: stepper.settled }
        stepper.driver = self
        stepper.settled = settled
        stepper.fresh = true
        stepper.endedSettled = false
        return Effect.ensuring(
          clock.setTime(to),
          Effect.sync(() => {
            stepper.driver = outer.driver
            stepper.settled = outer.settled
          })
        )
      })
    let justSettled = false
    while (!done) {
      if (!justSettled) yield* settled
      if (done) break
      const now = yield* Clock.currentTimeMillis
      const sleeps = yield* TestClock.sleeps()
      const next = Chunk.isEmpty(sleeps)
        ? now + maxStepMillis
        : Chunk.reduce(sleeps, Number.POSITIVE_INFINITY, (a, b) => Math.min(a, b))
      yield* step(Math.max(now, next))
      justSettled = stepper?.endedSettled === true
    }
    return { exit: yield* Fiber.await(fiber), endedAt }
  })

/** An SDK client on the simulator in context (its own retries off). */
export const makeClient = (apiKey = API_KEY) =>
  Effect.map(
    SimFetch.make,
    (fetch) => new OpenAIClient({ apiKey, baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
  )

/** The service over a simulator client, with its events recorded at their virtual times. */
export const withService = <A, E>(
  options: OpenAi.OpenAi.Options,
  body: (
    openai: OpenAi.OpenAi.Service,
    events: Array<OpenAi.CallEvent & { readonly at: number }>
  ) => Effect.Effect<A, E, Simulator.Simulator>,
  apiKey?: string
) =>
  Effect.gen(function*() {
    const client = yield* makeClient(apiKey)
    const events: Array<OpenAi.CallEvent & { readonly at: number }> = []
    const onEvent = (event: OpenAi.CallEvent) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) => Effect.sync(() => events.push({ ...event, at })))
    const layer = OpenAi.layerClient(client, { ...options, onEvent }).pipe(Layer.provide(LimiterStore.layerMemory))
    return yield* Effect.flatMap(OpenAi.OpenAi, (openai) => body(openai, events)).pipe(Effect.provide(layer))
  })

/** A seeded pseudo-random sequence in [0, 1). */
export const rng = (seed: number) => () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648
  return seed / 2_147_483_648
}

/** `chars` characters of prose. */
export const filler = (chars: number) =>
  "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(chars / 50 + 1).slice(0, chars)

/**
 * A mixed batch: prompts from 20 to 6,000 characters, some with a system message, `max_tokens` or
 * `max_completion_tokens` from 16 to 800, and `n` of 2–4 for about one call in seven. Each carries a
 * `[req:ID]` marker the simulator counts attempts by.
 */
export const mixedBatch = (
  count: number,
  seed: number,
  model = "gpt-4o"
): Array<ChatCompletionCreateParamsNonStreaming> => {
  const random = rng(seed)
  return Array.from({ length: count }, (_, i) => {
    const chars = 20 + Math.floor(random() ** 2 * 6_000)
    const max = 16 + Math.floor(random() * 784)
    const n = random() < 0.15 ? 2 + Math.floor(random() * 3) : 1
    const system = random() < 0.3
    const messages: ChatCompletionCreateParamsNonStreaming["messages"] = [
      ...(system ? [{ role: "system" as const, content: filler(200) }] : []),
      { role: "user" as const, content: `[req:${i}] ${filler(chars)}` }
    ]
    return random() < 0.5
      ? { model, messages, max_tokens: max, ...(n > 1 ? { n } : {}) }
      : { model, messages, max_completion_tokens: max, ...(n > 1 ? { n } : {}) }
  })
}

export const sum = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0)

/**
 * The least time a batch can take at the server's limits: its buckets start full (capacity = the
 * limit) and refill continuously, so the charged total beyond one capacity arrives at the refill rate.
 */
export const theoreticalMinimum = (
  stats: SimStats.Snapshot,
  limits: { readonly rpm: number; readonly tpm: number }
) => SimStats.theoreticalMinimum(stats, limits)

/** OpenAI's Tier 1 in the simulator (seeded), with 200–800 ms latency plus 1 ms per output token. */
export const tier1 = (overrides: Parameters<typeof Scenario.tier1>[0] = {}) =>
  Simulator.layer(Scenario.tier1({
    seed: 11,
    latency: { request: { _tag: "uniform", min: 200, max: 800 }, perOutputTokenMs: 1 },
    ...overrides
  }))

/**
 * The simulator's `fetch` behind a network: the request and its answer each take `millis` on the Clock (a 429 comes
 * back a round trip after its call left).
 */
export const behindNetwork = (millis: number) =>
  Effect.gen(function*() {
    const fetch = yield* SimFetch.make
    if (millis === 0) return fetch
    const runtime = yield* Effect.runtime<never>()
    const travel = () => Runtime.runPromise(runtime)(Effect.sleep(millis))
    return travelling(fetch, () => travel)
  })

/** `fetch` with a trip before its request and after its answer (`trip()` gives each call's, the same both ways). */
const travelling =
  (fetch: typeof globalThis.fetch, trip: () => () => Promise<void>): typeof globalThis.fetch => async (input, init) => {
    const travel = trip()
    await travel()
    const response = await fetch(input, init)
    await travel()
    return response
  }

/**
 * A network whose round trips within one herd differ: each request and its answer take `fast` ms each way, but one
 * call in `every` (drawn with a seeded generator) takes `slow` (a client that reads some answers late while it sends,
 * as over loopback HTTP, where calls sent together came back after 12 ms and after 300 ms).
 */
export const behindJitter = (options: { readonly fast: number; readonly slow: number; readonly every: number }) =>
  Effect.gen(function*() {
    const fetch = yield* SimFetch.make
    const runtime = yield* Effect.runtime<never>()
    const random = rng(29)
    return travelling(fetch, () => {
      const millis = random() < 1 / options.every ? options.slow : options.fast
      return () => Runtime.runPromise(runtime)(Effect.sleep(millis))
    })
  })

/**
 * `OpenAi` for organization "acme" with no budgets (what it enforces is learned; time slicing off) on the real SDK over
 * {@link behindNetwork} (`millis` each way) or another network's `fetch` (see {@link behindQueue}), its limiter on the
 * memory store.
 */
export const layerBehindNetwork = (
  network: number | Effect.Effect<typeof globalThis.fetch, never, Simulator.Simulator>
): Effect.Effect<Layer.Layer<OpenAi.OpenAi>, never, Simulator.Simulator> =>
  Effect.map(typeof network === "number" ? behindNetwork(network) : network, (fetch) =>
    OpenAi.layerClient(
      new OpenAIClient({ apiKey: API_KEY, baseURL: "http://sim.local/v1", fetch, maxRetries: 0 }),
      { organization: "acme", timeSlice: false }
    ).pipe(Layer.provide(LimiterStore.layerMemory)))

/**
 * The simulator's `fetch` behind a path that queues: every request and every answer takes `perCall` ms of one serial
 * resource (a client's CPU, a proxy) in the order they come, plus `oneWay` ms of travel; so the round trip grows with
 * the calls in flight, as a herd's does over HTTP on a loaded machine (a 429 comes back after the queue ahead of it).
 */
export const behindQueue = (options: { readonly oneWay: number; readonly perCall: number }) =>
  Effect.gen(function*() {
    const fetch = yield* SimFetch.make
    const runtime = yield* Effect.runtime<never>()
    let free = 0
    const travel = () =>
      Runtime.runPromise(runtime)(Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const start = Math.max(now, free)
        free = start + options.perCall
        return Effect.sleep(free - now + options.oneWay)
      }))
    return travelling(fetch, () => travel)
  })

/** `sluice run`'s executor against the in-process simulator (no tier, no limits given), with `options` on top. */
export const simExecutor = (options: Partial<BulkExecutor.Options> = {}) =>
  Effect.gen(function*() {
    return yield* BulkExecutor.make({
      baseUrl: "http://sim.local/v1",
      apiKey: Redacted.make("sk-simulated"),
      tier: undefined,
      priority: undefined,
      deadlineMs: undefined,
      fetch: yield* SimFetch.make,
      progress: yield* BulkRunner.makeProgress,
      ...options
    })
  })
