import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import OpenAI from "openai"
import { Scenario, SimFetch, Simulator } from "../src/index.js"
import { call, chat, client } from "./helpers.js"

const scenario = Scenario.single("gpt-4o-mini", { rpm: 3, tpm: 1000 })

/** A POST of a chat request to the simulator's `fetch`, as the SDK sends one. */
const post = (fetch: SimFetch.Fetch, body: unknown = chat("hello there!"), apiKey = "sk-test") =>
  Effect.promise(() =>
    fetch("http://sim.local/v1/chat/completions", {
      method: "POST",
      headers: new Headers({ authorization: `Bearer ${apiKey}`, "content-type": "application/json" }),
      body: JSON.stringify(body)
    })
  )

/** The same answer as an ordinary `Response` (its body, status and headers copied before either is read). */
const twin = (response: Response, text: string) =>
  new Response(text, { status: response.status, headers: response.headers })

const settle = <A>(promise: () => Promise<A>) =>
  Effect.promise(() =>
    promise().then(
      (value) => ({ ok: true as const, value }),
      (error: Error) => ({ ok: false as const, error })
    )
  )

describe("SimFetch's responses behave as a Response", () => {
  it.effect("status, headers, text and json as an ordinary Response has them", () =>
    Effect.gen(function*() {
      const fetch = yield* SimFetch.make
      const response = yield* post(fetch)
      expect(response).toBeInstanceOf(Response)
      expect(response.status).toBe(200)
      expect(response.ok).toBe(true)
      expect(response.headers).toBeInstanceOf(Headers)
      expect(response.headers.get("content-type")).toBe("application/json")
      expect(response.headers.get("x-ratelimit-remaining-requests")).toBe("2")
      expect(response.bodyUsed).toBe(false)
      const clone = response.clone()
      const text = yield* Effect.promise(() => response.text())
      expect(response.bodyUsed).toBe(true)
      expect(JSON.parse(text).object).toBe("chat.completion")
      // read twice: the same failure as an ordinary Response's
      const again = yield* settle(() => response.text())
      const ordinary = twin(response, text)
      yield* Effect.promise(() => ordinary.text())
      const ordinaryAgain = yield* settle(() => ordinary.text())
      if (again.ok || ordinaryAgain.ok) throw new Error("a body read twice")
      expect(again.error).toBeInstanceOf(TypeError)
      expect(again.error.name).toBe(ordinaryAgain.error.name)
      expect(yield* settle(() => response.json())).toMatchObject({ ok: false })
      expect(() => response.clone()).toThrow(TypeError)
      // the clone taken before reading reads on its own
      expect(yield* Effect.promise(() => clone.json())).toEqual(JSON.parse(text))
      expect(clone.bodyUsed).toBe(true)
    }).pipe(Effect.provide(Simulator.layer(scenario))))

  it.effect("json read first: what its text parses to, once; the body is then taken", () =>
    Effect.gen(function*() {
      const fetch = yield* SimFetch.make
      const response = yield* post(fetch)
      const clone = response.clone()
      const value = yield* Effect.promise(() => response.json())
      expect(value).toEqual(JSON.parse(yield* Effect.promise(() => clone.text())))
      expect((value as { object: string }).object).toBe("chat.completion")
      expect(response.bodyUsed).toBe(true)
      expect(yield* settle(() => response.json())).toMatchObject({ ok: false })
      expect(yield* settle(() => response.text())).toMatchObject({ ok: false })
      expect(response.body === null || response.body.locked).toBe(true)
    }).pipe(Effect.provide(Simulator.layer(scenario))))

  it.effect("the body as a stream, bytes, a Blob: the same bytes", () =>
    Effect.gen(function*() {
      const fetch = yield* SimFetch.make
      const streamed = yield* post(fetch)
      const reader = streamed.body!.getReader()
      const parts: Array<Uint8Array> = []
      while (true) {
        const { done, value } = yield* Effect.promise(() => reader.read())
        if (done) break
        parts.push(value)
      }
      const text = new TextDecoder().decode(Buffer.concat(parts))
      expect(JSON.parse(text).object).toBe("chat.completion")
      expect(streamed.bodyUsed).toBe(true)
      expect(yield* settle(() => streamed.text())).toMatchObject({ ok: false })

      const buffered = yield* post(fetch)
      const bytes = new Uint8Array(yield* Effect.promise(() => buffered.arrayBuffer()))
      expect(JSON.parse(new TextDecoder().decode(bytes)).object).toBe("chat.completion")
      expect(yield* settle(() => buffered.json())).toMatchObject({ ok: false })

      const blobbed = yield* post(fetch)
      const blob = yield* Effect.promise(() => blobbed.blob())
      expect(blob.type).toBe("application/json")
      expect(JSON.parse(yield* Effect.promise(() => blob.text())).object).toBe("chat.completion")

      // read as text first: the stream is then taken, as an ordinary Response's is
      const read = yield* post(fetch)
      yield* Effect.promise(() => read.text())
      expect(read.body === null || read.body.locked).toBe(true)
    }).pipe(Effect.provide(Simulator.layer(Scenario.single("gpt-4o-mini", { rpm: 10, tpm: 10_000 })))))

  it.effect("an error answer: its status, and its body for the SDK's typed error", () =>
    Effect.gen(function*() {
      const fetch = yield* SimFetch.make
      const response = yield* post(fetch, chat("hi"), "")
      expect(response.status).toBe(401)
      expect(response.ok).toBe(false)
      const body = (yield* Effect.promise(() => response.json())) as { error: { type: string } }
      expect(body.error.type).toBe("invalid_request_error")

      const sdk = new OpenAI({ apiKey: "sk-test", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
      const bad = yield* call(() => sdk.chat.completions.create({ model: "no-such-model", messages: [] }))
      expect(Either.isLeft(bad)).toBe(true)
      if (Either.isLeft(bad)) {
        expect(bad.left).toBeInstanceOf(OpenAI.APIError)
        expect((bad.left as InstanceType<typeof OpenAI.APIError>).status).toBeGreaterThanOrEqual(400)
      }
    }).pipe(Effect.provide(Simulator.layer(scenario))))

  it.effect("the SDK reads JSON answers and streams alike", () =>
    Effect.gen(function*() {
      const c = yield* client()
      const answer = yield* call(() => c.chat.completions.create(chat("hello there!")).withResponse())
      const { data, request_id, response } = Either.getOrThrow(answer)
      expect(data.object).toBe("chat.completion")
      expect(request_id).toBe(response.headers.get("x-request-id"))
      const stream = yield* call(async () => {
        const chunks: Array<string> = []
        const s = await c.chat.completions.create({ ...chat("hello there!"), stream: true })
        for await (const chunk of s) chunks.push(chunk.object)
        return chunks
      })
      const chunks = Either.getOrThrow(stream)
      expect(chunks.length).toBeGreaterThan(1)
      expect(new Set(chunks)).toEqual(new Set(["chat.completion.chunk"]))
    }).pipe(Effect.provide(Simulator.layer(Scenario.single("gpt-4o-mini", { rpm: 10, tpm: 10_000 })))))
})
