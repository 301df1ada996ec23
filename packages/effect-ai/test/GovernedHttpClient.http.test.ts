/**
 * The governed `HttpClient` below `@effect/ai`: a chat completion streamed over the raw client (the usage chunk asked for, settled to, and not passed on); requests
 * that pass through untouched; and, as a property, a streamed body passed on byte for byte however the network
 * cuts it.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { GovernedHttpClient } from "@sluice/effect-ai"
import { Simulator, VirtualTime } from "@sluice/testing"
import { Effect, FastCheck as fc, Layer } from "effect"
import { API_URL, governedOpenAi, recorder, tier1 } from "./harness.js"

describe("GovernedHttpClient: the raw client", () => {
  const post = (url: string, body: unknown) =>
    Effect.flatMap(
      HttpClient.HttpClient,
      (client) =>
        client.execute(
          HttpClientRequest.post(url).pipe(
            HttpClientRequest.bearerToken("sk-test-raw"),
            HttpClientRequest.bodyUnsafeJson(body)
          )
        )
    )

  it.effect("a chat completion streamed without include_usage: asked for, settled to, and not passed on", () =>
    Effect.gen(function*() {
      const { events, onEvent } = recorder()
      const body = (includeUsage: boolean) => ({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: `[req:${includeUsage ? "asked" : "plain"}] tell me a story` }],
        max_tokens: 60,
        stream: true,
        ...(includeUsage ? { stream_options: { include_usage: true } } : {})
      })
      const texts = yield* VirtualTime.run(
        Effect.forEach([false, true], (includeUsage) =>
          Effect.scoped(Effect.flatMap(
            post(`${API_URL}/chat/completions`, body(includeUsage)),
            (response) => response.text
          ))).pipe(Effect.provide(governedOpenAi({ tier: 1, onEvent })))
      )
      const [plain, asked] = texts
      const stats = yield* Simulator.stats
      const done = events.flatMap((e) => e._tag === "Succeeded" ? [e] : [])
      expect(done).toHaveLength(2)
      // each settled to the usage the server counted (the usage chunk was there in both)
      expect(done.map((e) => e.used.tokens)).toEqual(stats.admissions.map((a) => a.tokens))
      expect(plain).toContain("data: [DONE]")
      expect(plain).not.toContain(`"choices":[]`)
      expect(asked).toContain(`"choices":[]`)
    }).pipe(Effect.provide(tier1())))

  it.effect("requests Sluice does not meter pass through untouched: a GET, another host, an unknown path", () =>
    Effect.gen(function*() {
      const { events, onEvent } = recorder()
      const statuses = yield* VirtualTime.run(
        Effect.gen(function*() {
          const client = yield* HttpClient.HttpClient
          const models = yield* client.get(`${API_URL}/models`, { headers: { authorization: "Bearer sk-test-raw" } })
          const elsewhere = yield* post("http://elsewhere.local/v1/embeddings", {
            model: "text-embedding-3-small",
            input: "[req:elsewhere] hi"
          })
          const unknown = yield* post(`${API_URL}/not-an-endpoint`, { model: "gpt-4o-mini" })
          return [models.status, elsewhere.status, unknown.status]
        }).pipe(Effect.scoped, Effect.provide(governedOpenAi({ tier: 1, onEvent })))
      )
      expect(statuses[0]).toBe(200)
      expect(statuses[1]).toBe(200)
      expect(statuses[2]).toBe(404)
      expect(events).toEqual([])
    }).pipe(Effect.provide(tier1())))
})

/** A streamed chat completion's events, as a server sends them, with its usage chunk (what a caller who asks gets). */
const sseOf = (deltas: ReadonlyArray<string>, usage: { prompt: number; completion: number }) => {
  const chunk = (choices: ReadonlyArray<unknown>, u: unknown = null) =>
    `data: ${
      JSON.stringify({ id: "c1", object: "chat.completion.chunk", model: "gpt-4o-mini", choices, usage: u })
    }\n\n`
  const events = [
    ...deltas.map((content) => chunk([{ index: 0, delta: { content }, finish_reason: null }])),
    chunk([{ index: 0, delta: {}, finish_reason: "stop" }])
  ]
  const usageEvent = chunk([], {
    prompt_tokens: usage.prompt,
    completion_tokens: usage.completion,
    total_tokens: usage.prompt + usage.completion
  })
  return {
    withUsage: [...events, usageEvent, "data: [DONE]\n\n"].join(""),
    without: [...events, "data: [DONE]\n\n"].join("")
  }
}

/** The bytes of `text` cut at `cuts` (positions in bytes, a multi-byte character split too). */
const cutAt = (text: string, cuts: ReadonlyArray<number>): Array<Uint8Array> => {
  const bytes = new TextEncoder().encode(text)
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const pieces: Array<Uint8Array> = []
  let from = 0
  for (const point of [...points, bytes.length]) {
    if (point > from) pieces.push(bytes.slice(from, point))
    from = Math.max(from, point)
  }
  return pieces
}

describe("GovernedHttpClient: streamed bodies (property)", () => {
  it.effect.prop(
    "however the body is cut, what is passed on is what the server sent (less the usage chunk Sluice asked for), and it settles to the usage",
    {
      deltas: fc.array(fc.string({ unit: fc.constantFrom("a", "b", " ", "é", "€", "\n", "😀"), maxLength: 12 }), {
        minLength: 1,
        maxLength: 12
      }),
      cuts: fc.array(fc.nat(4_000), { maxLength: 20 }),
      asks: fc.boolean(),
      prompt: fc.integer({ min: 1, max: 500 }),
      completion: fc.integer({ min: 0, max: 500 })
    },
    ({ asks, completion, cuts, deltas, prompt }) =>
      Effect.gen(function*() {
        const { events, onEvent } = recorder()
        const server = sseOf(deltas, { prompt, completion })
        const sent: Array<unknown> = []
        const fake = HttpClient.make((request) =>
          Effect.sync(() => {
            sent.push(
              request.body._tag === "Uint8Array" ? JSON.parse(new TextDecoder().decode(request.body.body)) : null
            )
            const pieces = cutAt(server.withUsage, cuts)
            const body = new ReadableStream<Uint8Array>({
              start(controller) {
                for (const piece of pieces) controller.enqueue(piece)
                controller.close()
              }
            })
            return HttpClientResponse.fromWeb(
              request,
              new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } })
            )
          })
        )
        const text = yield* Effect.gen(function*() {
          const client = yield* HttpClient.HttpClient
          const response = yield* client.execute(
            HttpClientRequest.post(`${API_URL}/chat/completions`).pipe(HttpClientRequest.bodyUnsafeJson({
              model: "gpt-4o-mini",
              messages: [{ role: "user", content: "hi" }],
              stream: true,
              ...(asks ? { stream_options: { include_usage: true } } : {})
            }))
          )
          return yield* response.text
        }).pipe(
          Effect.scoped,
          Effect.provide(
            GovernedHttpClient.layerMemory({ apiUrl: API_URL, adaptive: false, onEvent }).pipe(
              Layer.provide(Layer.succeed(HttpClient.HttpClient, fake))
            )
          )
        )
        expect(text).toBe(asks ? server.withUsage : server.without)
        expect(sent).toHaveLength(1)
        expect((sent[0] as { stream_options?: unknown }).stream_options).toEqual({ include_usage: true })
        const done = events.flatMap((e) => e._tag === "Succeeded" ? [e] : [])
        expect(done.map((e) => e.used)).toEqual([{ requests: 1, tokens: prompt + completion }])
      }),
    { fastCheck: { numRuns: 60 } }
  )
})
