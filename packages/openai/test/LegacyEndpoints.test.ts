/**
 * `/v1/completions` and `/v1/moderations` (both in the Batch API): their bodies are decoded like the other
 * endpoints' (a wrong-typed field fails its line, typed, unsent), they are estimated, sent and their answers
 * checked.
 */
import { describe, expect, it } from "@effect/vitest"
import { LimiterStore } from "@sluice/core"
import { BulkRunner, OpenAi, TokenEstimator } from "@sluice/openai"
import { Effect, Exit, Layer } from "effect"
import * as FastCheck from "effect/FastCheck"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import OpenAIClient from "openai"
import * as Endpoints from "../src/internal/endpoint.js"
import { drive } from "./harness.js"

const COMPLETIONS = "/v1/completions"
const MODERATIONS = "/v1/moderations"

const tmp = () => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-legacy-"))
const readLines = (path: string): Array<any> =>
  NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l))
const line = (id: string, url: string, body: unknown) => JSON.stringify({ custom_id: id, method: "POST", url, body })

const validCompletions: ReadonlyArray<unknown> = [
  { model: "gpt-3.5-turbo-instruct", prompt: "Say this is a test", max_tokens: 7 },
  { model: "gpt-3.5-turbo-instruct", prompt: ["one", "two"], n: 2, best_of: 3, suffix: "end" },
  { model: "davinci-002", prompt: [1212, 318, 257], temperature: 0, echo: true },
  { model: "babbage-002", prompt: [[1212, 318], [257]], max_tokens: null, unknown_field: { deep: [1] } }
]
const validModerations: ReadonlyArray<unknown> = [
  { input: "I want to hurt someone" },
  { model: "omni-moderation-latest", input: ["a", "b"] },
  {
    model: "omni-moderation-latest",
    input: [{ type: "text", text: "hi" }, { type: "image_url", image_url: { url: "https://example.com/x.png" } }]
  }
]

describe("legacy completions and moderations: bodies", () => {
  it("valid bodies have no problem; unknown fields pass", () => {
    for (const body of validCompletions) expect(Endpoints.bodyProblem("/completions", body)).toBeUndefined()
    for (const body of validModerations) expect(Endpoints.bodyProblem("/moderations", body)).toBeUndefined()
    expect(Endpoints.endpointOf(COMPLETIONS)).toBe("/completions")
    expect(Endpoints.endpointOf(`https://api.openai.com${MODERATIONS}`)).toBe("/moderations")
  })

  it("a wrong-typed or missing field is named with its path", () => {
    const problem = Endpoints.bodyProblem
    expect(problem("/completions", { model: "m", prompt: 42 })).toMatch(/^body\.prompt: expected .*, got number 42$/)
    expect(problem("/completions", { model: "m", prompt: { text: "x" } })).toMatch(/^body\.prompt: .*got an object/)
    expect(problem("/completions", { model: "m", prompt: ["x", null] })).toMatch(/^body\.prompt/)
    expect(problem("/completions", { model: "m", prompt: "x", max_tokens: "5" })).toBe(
      "body.max_tokens: expected number, got \"5\""
    )
    expect(problem("/completions", { model: "m", prompt: "x", best_of: [] })).toMatch(/^body\.best_of: /)
    expect(problem("/completions", { model: 3, prompt: "x" })).toBe("body.model: expected string, got number 3")
    expect(problem("/completions", { model: "m" })).toMatch(/^body\.prompt: is missing/)
    expect(Endpoints.serviceBodyProblem("/completions", { prompt: "x" })).toBe("body.model: is missing")
    expect(problem("/moderations", { input: 7 })).toMatch(/^body\.input: expected .*, got number 7$/)
    expect(problem("/moderations", {})).toMatch(/^body\.input: is missing/)
    expect(problem("/moderations", { input: [{ type: "text", text: 5 }] })).toMatch(/^body\.input\[0\]\.text: /)
    expect(problem("/moderations", { model: false, input: "x" })).toMatch(/^body\.model: /)
    // the API's default moderation model: no model is fine
    expect(Endpoints.serviceBodyProblem("/moderations", { input: "x" })).toBeUndefined()
  })

  it("property: a known field of any wrong JSON type is a problem naming that field", () => {
    const notString = FastCheck.jsonValue({ maxDepth: 2 }).filter((v) => typeof v !== "string" && v !== null)
    const notNumber = FastCheck.jsonValue({ maxDepth: 2 }).filter((v) => typeof v !== "number" && v !== null)
    FastCheck.assert(
      FastCheck.property(
        FastCheck.oneof(
          FastCheck.record({ field: FastCheck.constant("model"), value: notString }),
          FastCheck.record({ field: FastCheck.constantFrom("n", "best_of", "max_tokens"), value: notNumber }),
          FastCheck.record({ field: FastCheck.constant("suffix"), value: notString })
        ),
        ({ field, value }) => {
          const body = { model: "gpt-3.5-turbo-instruct", prompt: "x", [field]: value }
          expect(Endpoints.bodyProblem("/completions", body)).toMatch(new RegExp(`^body\\.${field}(\\[|\\.|:)`))
        }
      )
    )
    FastCheck.assert(
      FastCheck.property(
        FastCheck.jsonValue({ maxDepth: 3 }).filter((v) =>
          typeof v !== "string" &&
          !(Array.isArray(v) && v.every((x) => typeof x === "string" || (typeof x === "object" && x !== null)))
        ),
        (input) => {
          expect(Endpoints.bodyProblem("/moderations", { input })).toMatch(/^body\.input/)
        }
      )
    )
  })

  it("answers: a completion has choices, a moderation results", () => {
    expect(Endpoints.responseProblem("/completions", { choices: [{ text: "x" }], usage: { total_tokens: 3 } }))
      .toBeUndefined()
    expect(Endpoints.responseProblem("/completions", { data: [] })).toMatch(/^response\.choices: is missing/)
    expect(Endpoints.responseProblem("/moderations", { id: "m", results: [{ flagged: false }] })).toBeUndefined()
    expect(Endpoints.responseProblem("/moderations", [])).toMatch(/^response: /)
    expect(Endpoints.responseProblem("/moderations", "<html>")).toMatch(/HTML/)
  })
})

describe("legacy completions and moderations: estimates", () => {
  it("a completion reserves its prompt plus prompts × max(n, best_of) × max_tokens (16 by default)", () => {
    const one = TokenEstimator.completions({ model: "gpt-3.5-turbo-instruct", prompt: "Say this is a test" })
    expect(one.maxOutputTokens).toBe(16)
    expect(one.promptTokens).toBe(TokenEstimator.admissionCount("Say this is a test", "cl100k_base"))
    const many = TokenEstimator.completions({
      model: "gpt-3.5-turbo-instruct",
      prompt: ["a", "b"],
      n: 2,
      best_of: 3,
      max_tokens: 10
    })
    expect(many.maxOutputTokens).toBe(2 * 3 * 10)
    expect(many.tokens).toBe(many.promptTokens + 60)
    // token ids count as they are: one prompt of three tokens; lists of token lists: one prompt each
    expect(TokenEstimator.completions({ prompt: [1, 2, 3], max_tokens: 1 }).promptTokens).toBe(3)
    const lists = TokenEstimator.completions({ prompt: [[1, 2], [3]], max_tokens: 1 })
    expect(lists.promptTokens).toBe(3)
    expect(lists.maxOutputTokens).toBe(2)
    expect(TokenEstimator.forEndpoint(COMPLETIONS, { prompt: "x" })?.model).toBe("gpt-3.5-turbo-instruct")
  })

  it("a moderation reserves its texts' tokens and no output", () => {
    const estimate = TokenEstimator.moderations({
      input: ["hello there", { type: "text", text: "general kenobi" }]
    })
    expect(estimate.model).toBe("omni-moderation-latest")
    expect(estimate.maxOutputTokens).toBe(0)
    expect(estimate.promptTokens).toBe(
      TokenEstimator.admissionCount("hello there") + TokenEstimator.admissionCount("general kenobi")
    )
    expect(TokenEstimator.forEndpoint(MODERATIONS, { input: "x" })?.tokens).toBe(1)
  })
})

describe("legacy completions and moderations: lines", () => {
  it.effect("through the bulk runner: valid lines are sent; a wrong-typed field fails its line (InvalidBody), unsent", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const input = NodePath.join(dir, "in.jsonl")
      const output = NodePath.join(dir, "out.jsonl")
      NodeFs.writeFileSync(
        input,
        [
          ...validCompletions.map((body, i) => line(`c${i}`, COMPLETIONS, body)),
          ...validModerations.map((body, i) => line(`m${i}`, MODERATIONS, body)),
          line("bad-prompt", COMPLETIONS, { model: "gpt-3.5-turbo-instruct", prompt: { text: "x" } }),
          line("bad-max", COMPLETIONS, { model: "gpt-3.5-turbo-instruct", prompt: "x", max_tokens: "many" }),
          line("bad-input", MODERATIONS, { input: 12 }),
          line("no-input", MODERATIONS, { model: "omni-moderation-latest" })
        ].join("\n") + "\n"
      )
      const sent: Array<string> = []
      const execute = (request: BulkRunner.Request) =>
        Effect.sync((): BulkRunner.Response => {
          sent.push(request.customId)
          return {
            statusCode: 200,
            requestId: null,
            body: request.url === COMPLETIONS ? { choices: [{ text: "ok" }] } : { results: [{ flagged: false }] }
          }
        })
      const summary = yield* BulkRunner.run({ input, output, execute, describe: (e: never) => e })
      const byId = Object.fromEntries(readLines(output).map((l) => [l.custom_id, l]))
      expect(sent.sort()).toEqual(["c0", "c1", "c2", "c3", "m0", "m1", "m2"])
      for (const id of sent) expect(byId[id].error).toBeNull()
      expect(byId["bad-prompt"].error).toMatchObject({ kind: "InvalidBody", code: "invalid_body" })
      expect(byId["bad-prompt"].error.message).toMatch(/^body\.prompt: /)
      expect(byId["bad-max"].error).toEqual({
        kind: "InvalidBody",
        code: "invalid_body",
        message: "body.max_tokens: expected number, got \"many\""
      })
      expect(byId["bad-input"].error.message).toMatch(/^body\.input: .*got number 12$/)
      expect(byId["no-input"].error.message).toMatch(/^body\.input: is missing/)
      expect(summary.succeeded).toBe(7)
      expect(summary.failed).toBe(4)
      expect(BulkRunner.exitCode(summary)).toBe(1)
    }))

  it.effect("through the OpenAi service: sent to its path, estimated, and a 200 without the endpoint's shape is refused", () =>
    Effect.gen(function*() {
      const seen: Array<{ url: string; body: any }> = []
      let answer: unknown = {
        id: "cmpl-1",
        choices: [{ text: "hi" }],
        usage: { prompt_tokens: 2, completion_tokens: 1 }
      }
      const fetch = async (url: string | URL | Request, init?: RequestInit) => {
        seen.push({ url: String(url), body: JSON.parse(String(init?.body)) })
        return new Response(JSON.stringify(answer), { status: 200, headers: { "content-type": "application/json" } })
      }
      const client = new OpenAIClient({ apiKey: "sk-test", baseURL: "http://api.local/v1", fetch, maxRetries: 0 })
      const layer = OpenAi.layerClient(client, { organization: "acme", tier: 5 }).pipe(
        Layer.provide(LimiterStore.layerMemory)
      )
      const { exit } = yield* drive(
        Effect.gen(function*() {
          const openai = yield* OpenAi.OpenAi
          const completion = yield* openai.request(COMPLETIONS, { model: "gpt-3.5-turbo-instruct", prompt: "hi" })
          expect(completion.status).toBe(200)
          expect(seen[0]!.url).toBe("http://api.local/v1/completions")
          answer = { id: "modr-1", results: [{ flagged: false }] }
          const moderation = yield* openai.request(MODERATIONS, { input: "hi" })
          expect((moderation.body as { results: Array<unknown> }).results).toHaveLength(1)
          expect(seen[1]!.url).toBe("http://api.local/v1/moderations")
          // a wrong-typed field: typed, unsent
          const bad = yield* Effect.flip(openai.request(COMPLETIONS, { model: "gpt-3.5-turbo-instruct", prompt: 4 }))
          expect(bad).toMatchObject({ _tag: "BadRequest", code: "invalid_body" })
          expect(seen).toHaveLength(2)
          // a moderation answer without results: invalid_response, typed
          answer = { choices: [] }
          const wrong = yield* Effect.flip(openai.request(MODERATIONS, { input: "hi" }, { retry: false }))
          expect(wrong).toMatchObject({ _tag: "UnknownError", code: "invalid_response" })
        }).pipe(Effect.provide(layer))
      )
      expect(Exit.isSuccess(exit), String(exit)).toBe(true)
    }))
})
