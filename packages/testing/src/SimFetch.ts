/**
 * The in-process face: a `fetch`-compatible function backed by the {@link Simulator}, running on the Effect
 * runtime it was built in. Under `TestClock` every latency, slow response and stream delay waits on virtual time,
 * so the official `openai` SDK runs against it with no sockets and no real waiting.
 *
 * @since 0.1.0
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import { jsonValue } from "./internal/simulator.js"
import * as Simulator from "./Simulator.js"

/**
 * The shape of the global `fetch`.
 *
 * @since 0.1.0
 * @category models
 */
export type Fetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>

/**
 * The simulator's `fetch`, as a service.
 *
 * @since 0.1.0
 * @category tags
 */
export class SimFetch extends Context.Tag("@sluice/testing/SimFetch")<SimFetch, Fetch>() {}

const abortError = (signal: AbortSignal): unknown =>
  signal.reason !== undefined ? signal.reason : new DOMException("This operation was aborted", "AbortError")

/** What undici's `fetch` rejects with when the connection drops. */
const resetError = (): TypeError => {
  const cause = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET", errno: -104, syscall: "read" })
  return new TypeError("fetch failed", { cause })
}

/** What undici's `fetch` rejects with when no response headers arrive in time. */
const headersTimeoutError = (): TypeError => {
  const cause = Object.assign(new Error("Headers Timeout Error"), {
    name: "HeadersTimeoutError",
    code: "UND_ERR_HEADERS_TIMEOUT"
  })
  return new TypeError("fetch failed", { cause })
}

/** What `fetch` rejects with when a timeout signal (`AbortSignal.timeout`) fires. */
const clientTimeoutError = (): unknown => new DOMException("The operation was aborted due to timeout", "TimeoutError")

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace SimFetch {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Options {
    /**
     * A client timeout on the `Clock`: a call whose response headers have not arrived after this long rejects as a
     * timed-out `fetch` does (a `TimeoutError` `DOMException`, which the `openai` SDK raises as
     * `APIConnectionTimeoutError`). The SDK's own `timeout` option runs on real timers, so under `TestClock` use
     * this one. The simulator has already judged (and counted) the call; only the client stops waiting.
     */
    readonly timeout?: Duration.DurationInput | undefined
  }
}

/** Reads a request into the simulator's shape (JSON or multipart). */
/**
 * The common case without building a `Request` (whose construction, signal and body stream cost more than the
 * simulator's whole judgement): a URL and a string body (or none), as the `openai` SDK sends JSON calls.
 */
const fastSimRequest = (
  input: string | URL | Request,
  init: RequestInit | undefined
): Simulator.SimRequest | undefined => {
  if (typeof input !== "string" && !(input instanceof URL)) return undefined
  const raw = init?.body
  if (raw !== undefined && raw !== null && typeof raw !== "string") return undefined
  const method = (init?.method ?? "GET").toUpperCase()
  const headers: Record<string, string> = {}
  // the `openai` SDK passes a `Headers` already (names lower-cased, values checked): read it, not a copy of it
  const given = init?.headers
  ;(given instanceof Headers ? given : new Headers(given)).forEach((value, name) => {
    headers[name] = value
  })
  if ((headers["content-type"] ?? "").startsWith("multipart/form-data")) return undefined
  let body: unknown = undefined
  if (method !== "GET" && method !== "HEAD" && typeof raw === "string" && raw !== "") {
    try {
      body = JSON.parse(raw)
    } catch {
      body = raw
    }
  }
  const path = typeof input === "string" ? new URL(input).pathname : input.pathname
  return { method, path, headers, body }
}

const toSimRequest = async (request: Request): Promise<Simulator.SimRequest> => {
  const url = new URL(request.url)
  const headers: Record<string, string> = {}
  request.headers.forEach((value, name) => {
    headers[name.toLowerCase()] = value
  })
  let body: unknown = undefined
  const type = headers["content-type"] ?? ""
  if (request.method !== "GET" && request.method !== "HEAD") {
    if (type.startsWith("multipart/form-data")) {
      const form = await request.formData()
      const fields: Record<string, unknown> = {}
      for (const [name, value] of form.entries()) {
        fields[name] = typeof value === "string"
          ? value
          : { filename: (value as File).name, content: await (value as File).text() }
      }
      body = fields
    } else {
      const text = await request.text()
      if (text !== "") {
        try {
          body = JSON.parse(text)
        } catch {
          body = text
        }
      }
    }
  }
  return { method: request.method, path: url.pathname, headers, body }
}

/**
 * Builds the `fetch` function. It captures the current runtime, so build it inside the test (or program) whose
 * `Clock` should drive it. Abort signals are honoured (an abort interrupts the simulated wait at once); a
 * connection-reset fault rejects with `TypeError: fetch failed` (cause `ECONNRESET`), as undici does, and a
 * `timeout` fault ending in `connection_timeout` with `TypeError: fetch failed` (cause `UND_ERR_HEADERS_TIMEOUT`).
 * For a client timeout in virtual time, see {@link makeWith}.
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import { it } from "@effect/vitest"
 * import * as Effect from "effect/Effect"
 * import * as Fiber from "effect/Fiber"
 * import * as TestClock from "effect/TestClock"
 * import OpenAI from "openai"
 * import { Scenario, SimFetch, Simulator } from "@sluice/testing"
 *
 * it.effect("answers", () =>
 *   Effect.gen(function*() {
 *     const fetch = yield* SimFetch.make
 *     const client = new OpenAI({ apiKey: "sk-test", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
 *     const fiber = yield* Effect.promise(() =>
 *       client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] })
 *     ).pipe(Effect.fork)
 *     yield* TestClock.adjust("1 second")
 *     const completion = yield* Fiber.join(fiber)
 *   }).pipe(Effect.provide(Simulator.layer(Scenario.tier1()))))
 * ```
 */
export const make: Effect.Effect<Fetch, never, Simulator.Simulator> = Effect.suspend(() => makeWith())

/**
 * {@link make} with options: a client timeout that runs on the `Clock` (so `TestClock` drives it).
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import { it } from "@effect/vitest"
 * import * as Effect from "effect/Effect"
 * import * as Fiber from "effect/Fiber"
 * import * as TestClock from "effect/TestClock"
 * import OpenAI from "openai"
 * import { Scenario, SimFetch, Simulator } from "@sluice/testing"
 *
 * it.effect("a hung call times out after 60 virtual seconds", () =>
 *   Effect.gen(function*() {
 *     const fetch = yield* SimFetch.makeWith({ timeout: "60 seconds" })
 *     const client = new OpenAI({ apiKey: "sk-test", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
 *     const fiber = yield* Effect.promise(() =>
 *       client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] })
 *         .catch((error) => error)
 *     ).pipe(Effect.fork)
 *     yield* TestClock.adjust("60 seconds")
 *     const error = yield* Fiber.join(fiber) // OpenAI.APIConnectionTimeoutError
 *   }).pipe(Effect.provide(Simulator.layer(Scenario.tier1({ faults: { rates: { timeout: 1 } } })))))
 * ```
 */
export const makeWith = (options: SimFetch.Options = {}): Effect.Effect<Fetch, never, Simulator.Simulator> =>
  Effect.gen(function*() {
    const sim = yield* Simulator.Simulator
    const runtime = yield* Effect.runtime<never>()
    const timeout = options.timeout === undefined ? undefined : Duration.decode(options.timeout)
    const run = <A>(effect: Effect.Effect<A>, signal?: AbortSignal | null): Promise<A> =>
      new Promise<A>((resolve, reject) => {
        if (signal?.aborted) return reject(abortError(signal))
        const fiber = Runtime.runFork(runtime)(effect)
        const onAbort = () => {
          reject(abortError(signal!))
          Runtime.runFork(runtime)(fiberInterrupt(fiber))
        }
        signal?.addEventListener("abort", onAbort, { once: true })
        fiber.addObserver((exit) => {
          signal?.removeEventListener("abort", onAbort)
          if (exit._tag === "Success") resolve(exit.value)
          else reject(new Error(`simulator failed: ${String(exit.cause)}`))
        })
      })

    return async (input, init) => {
      let simRequest = fastSimRequest(input, init)
      let signal = init?.signal
      if (simRequest === undefined) {
        const request = new Request(input, init)
        signal = init?.signal ?? request.signal
        simRequest = await toSimRequest(request)
      }
      const handled = timeout === undefined
        ? Effect.map(sim.handle(simRequest), Option.some)
        : Effect.timeoutOption(sim.handle(simRequest), timeout)
      const answered = await run(handled, signal)
      if (Option.isNone(answered)) throw clientTimeoutError()
      const response = answered.value
      switch (response._tag) {
        case "Reset":
          throw response.reason === "timeout" ? headersTimeoutError() : resetError()
        case "Response": {
          if (nullBodyStatus(response.status)) {
            return new Response(response.body, { status: response.status, headers: response.headers })
          }
          const value = (response as { readonly [jsonValue]?: unknown })[jsonValue]
          return new TextResponse(
            value === undefined ? response.body : () => response.body,
            { status: response.status, headers: response.headers },
            value
          ) as unknown as Response
        }
        case "Stream": {
          const encoder = new TextEncoder()
          let index = 0
          const stream = new ReadableStream<Uint8Array>({
            pull: async (controller) => {
              const chunk = response.chunks[index++]
              if (chunk === undefined) return controller.close()
              if (chunk.delayMs > 0) await run(Effect.sleep(chunk.delayMs), signal)
              controller.enqueue(encoder.encode(chunk.data))
            }
          })
          return new Response(stream, { status: response.status, headers: response.headers })
        }
      }
    }
  })

/** The statuses whose responses have no body (`new Response` refuses one). */
const nullBodyStatus = (status: number): boolean => status === 101 || status === 204 || status === 205 || status === 304

/** What undici's body mixin rejects with when a body is read twice. */
const bodyUnusable = (): TypeError => new TypeError("Body is unusable: Body has already been read")

/**
 * A `Response` whose body is a string held as it is: `text()` and `json()` read it directly, without undici's
 * body stream, byte buffer and decoder (which cost several times the simulator's whole judgement per call).
 * Given the value the simulator wrote the text from (`jsonValue`: a chat completion's, fresh per answer), `json()`
 * answers with it, as `JSON.parse` of the text would, and the text is written only if something reads it.
 * Everything else is the real `Response`'s: it is one (`instanceof Response`), with its `status`, `ok` and
 * `Headers`; the first use of `body`, `arrayBuffer()`, `bytes()`, `blob()`, `formData()` or `clone()` builds
 * a real `Response` over the same text (marked read if the text was read already) and answers from it, so a
 * body read twice fails as it does on any `Response`.
 */
class TextResponse extends (Response as new(body: null, init: ResponseInit) => object) {
  #source: string | (() => string)
  #value: unknown
  #read = false
  #real: Response | undefined
  constructor(text: string | (() => string), init: ResponseInit, value?: unknown) {
    super(null, init)
    this.#source = text
    this.#value = value
  }
  get #text(): string {
    if (typeof this.#source !== "string") this.#source = this.#source()
    return this.#source
  }
  /** As the `Response` it is (its `status` and `headers`, set by the constructor). */
  get #self(): Response {
    return this as unknown as Response
  }
  #materialize(): Response {
    if (this.#real === undefined) {
      // (once read, its content can no longer be seen: the text is not written for it)
      this.#real = new Response(this.#read ? "" : this.#text, {
        status: this.#self.status,
        headers: this.#self.headers
      })
      // a body read as text is read: the real one says so too (its stream is taken)
      if (this.#read) this.#real.text().catch(() => undefined)
    }
    return this.#real
  }
  #take(): string {
    if (this.#read) throw bodyUnusable()
    this.#read = true
    return this.#text
  }
  get body(): ReadableStream<Uint8Array> | null {
    return this.#materialize().body
  }
  get bodyUsed(): boolean {
    return this.#real === undefined ? this.#read : this.#real.bodyUsed
  }
  text(): Promise<string> {
    if (this.#real !== undefined) return this.#real.text()
    try {
      return Promise.resolve(this.#take())
    } catch (error) {
      return Promise.reject(error)
    }
  }
  json(): Promise<unknown> {
    if (this.#real !== undefined) return this.#real.json()
    try {
      if (this.#value !== undefined && !this.#read) {
        this.#read = true
        return Promise.resolve(this.#value)
      }
      return Promise.resolve(JSON.parse(this.#take()))
    } catch (error) {
      return Promise.reject(error)
    }
  }
  arrayBuffer(): Promise<ArrayBuffer> {
    return this.#materialize().arrayBuffer()
  }
  blob(): Promise<Blob> {
    return this.#materialize().blob()
  }
  formData(): Promise<FormData> {
    return this.#materialize().formData()
  }
  clone(): Response {
    if (this.#real !== undefined) return this.#real.clone()
    if (this.#read) throw new TypeError("Response.clone: Body has already been consumed.")
    return new TextResponse(this.#text, {
      status: this.#self.status,
      headers: this.#self.headers
    }) as unknown as Response
  }
  /** `bytes()`, where the host's `Response` has it (Node 20.16+, 22): from the real `Response`. */
  static bytesOf(response: TextResponse): Promise<Uint8Array> {
    return (response.#materialize() as unknown as { bytes: () => Promise<Uint8Array> }).bytes()
  }
}
if (typeof (Response.prototype as Partial<Record<"bytes", unknown>>).bytes === "function") {
  Object.defineProperty(TextResponse.prototype, "bytes", {
    value(this: TextResponse) {
      return TextResponse.bytesOf(this)
    },
    writable: true,
    configurable: true
  })
}

const fiberInterrupt = (fiber: { readonly interruptAsFork: (id: any) => Effect.Effect<void> }) =>
  Effect.flatMap(Effect.fiberId, (id) => fiber.interruptAsFork(id))

/**
 * A layer providing {@link SimFetch} from the {@link Simulator} in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<SimFetch, never, Simulator.Simulator> = Layer.effect(SimFetch, make)

/**
 * A layer that points `@effect/platform`'s `FetchHttpClient` at the simulator, for Effect `HttpClient` users.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFetchHttpClient: Layer.Layer<FetchHttpClient.Fetch, never, Simulator.Simulator> = Layer.effect(
  FetchHttpClient.Fetch,
  Effect.map(make, (f) => f as typeof globalThis.fetch)
)
