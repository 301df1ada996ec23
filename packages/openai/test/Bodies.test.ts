/**
 * Careless and hostile bodies and answers: every line's body is decoded per endpoint before it is estimated
 * (a wrong field fails that line, typed, never the run); a 2xx answer that is not the endpoint's JSON is a
 * typed failure, not a success. Against the in-process simulator under TestClock.
 */
import { describe, expect, it } from "@effect/vitest"
import { LimiterStore } from "@sluice/core"
import { BulkRunner, OpenAi } from "@sluice/openai"
import { Scenario, Simulator } from "@sluice/testing"
import { Effect, Exit, Layer } from "effect"
import * as FastCheck from "effect/FastCheck"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import OpenAIClient from "openai"
import { drive, withService } from "./harness.js"

const tmp = () => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-bodies-"))

const readLines = (path: string): Array<any> =>
  NodeFs.existsSync(path)
    ? NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l))
    : []

const line = (id: string, url: string, body: unknown) => JSON.stringify({ custom_id: id, method: "POST", url, body })

/** The runner's executor over the `OpenAi` service (what `sluice run` does without a router). */
const executorOf = (openai: OpenAi.OpenAi.Service) => ({
  execute: (request: BulkRunner.Request) =>
    Effect.map(
      openai.request(request.url, request.body as Record<string, unknown>),
      (result): BulkRunner.Response => ({ statusCode: result.status, requestId: result.requestId, body: result.body })
    ),
  describe: (error: OpenAi.CallError): BulkRunner.Failure => ({
    kind: error._tag,
    code: ("code" in error && typeof error.code === "string" ? error.code : undefined) ?? error._tag,
    message: error.message
  })
})

const simulator = Simulator.layer(Scenario.tier5({
  seed: 7,
  latency: { request: { _tag: "uniform", min: 50, max: 400 }, perOutputTokenMs: 0 }
}))

// ---------------------------------------------------------------------------------------------------------
// bodies
// ---------------------------------------------------------------------------------------------------------

const CHAT = "/v1/chat/completions"
const EMBEDDINGS = "/v1/embeddings"
const RESPONSES = "/v1/responses"

/** A JSON value that is not of the given type (for a known field of the wrong type). */
const notA = (type: "string" | "number" | "array" | "object") =>
  FastCheck.jsonValue({ maxDepth: 2 }).filter((v) =>
    type === "array"
      ? !Array.isArray(v)
      : type === "object"
      ? typeof v !== "object" || v === null || Array.isArray(v)
      : typeof v !== type && v !== null
  )

/** Deep nesting in a field Sluice only counts (its JSON): up to 500 levels. */
const deep = FastCheck.integer({ min: 1, max: 500 }).map((depth) => {
  let value: unknown = { leaf: true }
  for (let i = 0; i < depth; i++) value = { next: [value] }
  return value
})

const prose = FastCheck.oneof(
  FastCheck.string({ maxLength: 80 }),
  FastCheck.fullUnicodeString({ maxLength: 40 }),
  // huge: up to 40,000 characters without whitespace, or the special-token strings
  FastCheck.integer({ min: 1_000, max: 40_000 }).map((n) => "z".repeat(n)),
  FastCheck.constant("<|endoftext|> says hi")
)

const short = FastCheck.oneof(FastCheck.string({ maxLength: 80 }), FastCheck.constant("<|endoftext|>"))

/** Bodies the API accepts, with the extras a careless file carries (unknown fields, deep metadata). */
const valid = FastCheck.oneof(
  FastCheck.record({
    url: FastCheck.constant(CHAT),
    body: FastCheck.record({
      model: FastCheck.constant("gpt-4o-mini"),
      messages: FastCheck.array(
        FastCheck.record({ role: FastCheck.constantFrom("user", "system"), content: prose }),
        { minLength: 1, maxLength: 3 }
      ),
      max_tokens: FastCheck.integer({ min: 1, max: 200 }),
      metadata: deep
    })
  }),
  FastCheck.record({
    url: FastCheck.constant(EMBEDDINGS),
    body: FastCheck.record({
      model: FastCheck.constant("text-embedding-3-small"),
      // short: an embedding model's context is 8,191 tokens
      input: FastCheck.oneof(short, FastCheck.array(short, { minLength: 1, maxLength: 3 }))
    })
  }),
  FastCheck.record({
    url: FastCheck.constant(RESPONSES),
    body: FastCheck.record({
      model: FastCheck.constant("gpt-4o-mini"),
      input: prose,
      max_output_tokens: FastCheck.constant(50)
    })
  })
)

/** Bodies that break a rule: a known field of the wrong type, a required field missing, any JSON at all. */
const invalid = FastCheck.oneof(
  FastCheck.record({
    url: FastCheck.constant(CHAT),
    body: FastCheck.oneof(
      FastCheck.record({ model: FastCheck.constant("gpt-4o-mini"), messages: notA("array") }),
      FastCheck.record({ model: notA("string"), messages: FastCheck.constant([{ role: "user", content: "hi" }]) }),
      FastCheck.record({
        model: FastCheck.constant("gpt-4o-mini"),
        messages: FastCheck.tuple(
          FastCheck.record({
            role: FastCheck.constant("user"),
            content: notA("string").filter((v) => !Array.isArray(v))
          })
        )
      }),
      FastCheck.record({
        model: FastCheck.constant("gpt-4o-mini"),
        messages: FastCheck.constant([{ role: "user", content: "hi" }]),
        max_tokens: notA("number")
      }),
      // a missing model: no default for chat completions
      FastCheck.record({ messages: FastCheck.constant([{ role: "user", content: "hi" }]) }),
      // any JSON object without messages
      FastCheck.dictionary(FastCheck.string({ maxLength: 6 }), FastCheck.jsonValue({ maxDepth: 3 }))
        .map((o) => {
          const { messages: _, ...rest } = o
          return rest
        })
    )
  }),
  FastCheck.record({
    url: FastCheck.constant(EMBEDDINGS),
    body: FastCheck.oneof(
      FastCheck.record({
        model: FastCheck.constant("text-embedding-3-small"),
        input: notA("string").filter((v) => !Array.isArray(v))
      }),
      FastCheck.record({ model: FastCheck.constant("text-embedding-3-small") })
    )
  }),
  // not an object at all
  FastCheck.record({
    url: FastCheck.constantFrom(CHAT, EMBEDDINGS, RESPONSES),
    body: FastCheck.jsonValue({ maxDepth: 3 }).filter((v) => typeof v !== "object" || v === null || Array.isArray(v))
  })
)

const cases = FastCheck.array(
  FastCheck.oneof(
    valid.map((c) => ({ ...c, valid: true as const })),
    invalid.map((c) => ({ ...c, valid: false as const }))
  ),
  { minLength: 1, maxLength: 10 }
)

describe("bodies", () => {
  it.effect("the issue's line: body.messages an object fails that line (InvalidBody, with the path); the rest run", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = NodePath.join(dir, "in.jsonl")
      const output = NodePath.join(dir, "out.jsonl")
      NodeFs.writeFileSync(
        input,
        [
          line("a", CHAT, { model: "gpt-4o-mini", messages: { role: "user", content: "hi" } }),
          line("b", CHAT, { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], max_tokens: 5 }),
          line("c", CHAT, { model: 4, messages: [{ role: "user", content: "hi" }] }),
          line("d", CHAT, { messages: [{ role: "user", content: "hi" }] })
        ].join("\n")
      )
      const summary = yield* withService({ organization: "acme", tier: 5 }, (openai) =>
        Effect.flatMap(
          drive(BulkRunner.run({ input, output, ...executorOf(openai), onInputError: () => Effect.void })),
          ({ exit }) => exit
        )).pipe(Effect.provide(simulator))
      const byId = Object.fromEntries(readLines(output).map((l) => [l.custom_id, l]))
      expect(byId.a.error).toEqual({
        kind: "InvalidBody",
        code: "invalid_body",
        message: "body.messages: expected Array<Message>, got an object"
      })
      expect(byId.b.response.status_code).toBe(200)
      expect(byId.c.error.message).toBe("body.model: expected string, got number 4")
      expect(byId.d.error).toMatchObject({
        kind: "BadRequest",
        code: "invalid_body",
        message: "body.model: is missing"
      })
      expect(summary.outcome).toBe("completed-with-failures")
      expect(BulkRunner.exitCode(summary)).toBe(1)
      // nothing invalid was sent
      expect((yield* Effect.provide(Simulator.stats, simulator)).attempts).toHaveLength(0)
    }))

  it.effect(
    "property: random bodies through the runner and the simulator — the run ends, valid lines succeed, each invalid line has exactly one error line",
    () =>
      Effect.gen(function*() {
        const samples = FastCheck.sample(cases, { numRuns: 25, seed: 14 })
        for (const sample of samples) {
          const dir = tmp()
          const input = NodePath.join(dir, "in.jsonl")
          const output = NodePath.join(dir, "out.jsonl")
          const errors = NodePath.join(dir, "errors.jsonl")
          NodeFs.writeFileSync(input, sample.map((c, i) => line(`r${i}`, c.url, c.body)).join("\n") + "\n")
          const { exit } = yield* withService({ organization: "acme", tier: 5 }, (openai) =>
            drive(BulkRunner.run({
              input,
              output,
              errors,
              ...executorOf(openai),
              onInputError: () => Effect.void
            })))
            .pipe(Effect.provide(simulator))
          expect(Exit.isSuccess(exit)).toBe(true)
          if (!Exit.isSuccess(exit)) continue
          const summary = exit.value
          const out = readLines(output)
          const errs = readLines(errors)
          sample.forEach((c, i) => {
            const id = `r${i}`
            const lines = out.filter((l) => l.custom_id === id)
            if (c.valid) {
              expect(lines, `${id} ${JSON.stringify(c).slice(0, 300)}`).toHaveLength(1)
              expect(lines[0].error, `${id} ${JSON.stringify(c).slice(0, 300)}`).toBeNull()
              expect(lines[0].response.status_code).toBe(200)
            } else {
              const failures = lines.filter((l) => l.error !== null).length +
                errs.filter((e) => e.custom_id === id).length
              expect(lines.filter((l) => l.error === null), `${id} ${JSON.stringify(c).slice(0, 300)}`).toHaveLength(0)
              expect(failures, `${id} ${JSON.stringify(c).slice(0, 300)}`).toBe(1)
            }
          })
          expect(summary.outcome).not.toBe("stopped")
          expect(BulkRunner.exitCode(summary)).toBe(sample.some((c) => !c.valid) ? 1 : 0)
        }
      }),
    120_000
  )
})

// ---------------------------------------------------------------------------------------------------------
// answers
// ---------------------------------------------------------------------------------------------------------

/** A `fetch` that answers every call 200 with `body` (an HTML page, a bare array…), counting the calls. */
const answering = (body: string, contentType: string) => {
  const calls = { n: 0 }
  const fetch = async () => {
    calls.n++
    return new Response(body, { status: 200, headers: { "content-type": contentType } })
  }
  return {
    calls,
    client: new OpenAIClient({ apiKey: "sk-test", baseURL: "http://gateway.local/v1", fetch, maxRetries: 0 })
  }
}

const serviceOn = (client: OpenAIClient) =>
  OpenAi.layerClient(client, { organization: "acme", tier: 5 }).pipe(Layer.provide(LimiterStore.layerMemory))

describe("answers", () => {
  for (
    const [name, body, type] of [
      ["an HTML page", "<html><body>Service temporarily unavailable</body></html>", "text/html"],
      ["a bare array", "[1, 2, 3]", "application/json"],
      ["JSON without choices", "{\"id\": \"x\", \"object\": \"chat.completion\"}", "application/json"],
      ["an HTML page labelled JSON", "<html>502 Bad Gateway</html>", "application/json"]
    ] as const
  ) {
    it.effect(`a 200 with ${name} is a retryable UnknownError invalid_response, retried, never a success`, () =>
      Effect.gen(function*() {
        const { calls, client } = answering(body, type)
        const { exit } = yield* drive(
          Effect.flatMap(
            OpenAi.OpenAi,
            (openai) =>
              openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] })
          ).pipe(
            Effect.provide(serviceOn(client))
          )
        )
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) {
          const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
          expect(error).toMatchObject({ _tag: "UnknownError", code: "invalid_response", retryable: true })
          // the SDK parses a JSON content type itself: unparsable, it rejects before Sluice sees the status
          expect((error as { status?: number }).status).toBe(name === "an HTML page labelled JSON" ? undefined : 200)
          expect((error as { message: string }).message).toMatch(/^response/)
        }
        // the default policy retries UnknownError twice
        expect(calls.n).toBe(3)
      }))
  }

  it.effect("the bulk runner writes an HTML 200 as InvalidResponse (with checkResponses off: as the executor says)", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = NodePath.join(dir, "in.jsonl")
      NodeFs.writeFileSync(input, line("a", CHAT, { model: "gpt-4o-mini", messages: [] }) + "\n")
      const execute = () =>
        Effect.succeed<BulkRunner.Response>({ statusCode: 200, requestId: null, body: "<html>sign in</html>" })
      const describe = (e: never) => e
      const checked = NodePath.join(dir, "checked.jsonl")
      const summary = yield* BulkRunner.run({ input, output: checked, execute, describe })
      expect(readLines(checked)[0]).toMatchObject({
        response: null,
        error: { kind: "InvalidResponse", code: "invalid_response", status_code: 200 }
      })
      expect(readLines(checked)[0].error.message).toMatch(/HTML/)
      expect(BulkRunner.exitCode(summary)).toBe(1)
      const unchecked = NodePath.join(dir, "unchecked.jsonl")
      yield* BulkRunner.run({ input, output: unchecked, execute, describe, checkResponses: false })
      expect(readLines(unchecked)[0].error).toBeNull()
    }))
})
