// PipelineFile: the file's decoding (errors that say where), the templates (a property over the input's values)
// and the results each endpoint hands on, through a recording sender (no OpenAI, no clock involved).
import { describe, expect, it } from "@effect/vitest"
import { Pipeline, PipelineFile } from "@sluice/openai"
import type { BulkRunner } from "@sluice/openai"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"

const answers: Record<string, unknown> = {
  "/v1/chat/completions": { choices: [{ message: { content: "a prompt" } }] },
  "/v1/images/generations": { data: [{ b64_json: "aW1n" }] },
  "/v1/embeddings": { data: [{ embedding: [0.5, -1] }] }
}

/** A sender that answers each endpoint with its canned body and records what it was sent. */
const recording = () => {
  const sent: Array<BulkRunner.Request> = []
  const sender: PipelineFile.Sender<never> = {
    execute: (request) =>
      Effect.sync(() => {
        sent.push(request)
        return { statusCode: 200, requestId: null, body: answers[request.url] }
      }),
    describe: (error) => error
  }
  return { sent, sender }
}

const file = {
  name: "p",
  id: "key",
  stages: [
    { name: "prompt", url: "/v1/chat/completions", body: { model: "m", messages: [{ content: "{{a}} and {{b.c}}" }] } },
    { name: "render", url: "/v1/images/generations", body: { model: "i", prompt: "{{prompt}}", raw: "{{a}}" } },
    { name: "vector", url: "/v1/embeddings", body: { model: "e", input: "{{render}}" } }
  ]
}

describe("PipelineFile", () => {
  it.effect("a whole template takes the value itself, an embedded one its text; each stage gets the last result", () =>
    Effect.gen(function*() {
      const spec = yield* PipelineFile.decode(file, "p.json")
      yield* Effect.promise(() =>
        FastCheck.assert(
          FastCheck.asyncProperty(
            FastCheck.jsonValue().filter((v) => v !== null),
            FastCheck.string(),
            async (a, c) => {
              const { sender, sent } = recording()
              const result = await Effect.runPromise(
                Pipeline.run(PipelineFile.make(spec, sender), [{
                  id: "x",
                  input: { fields: { a, b: { c } }, results: {} }
                }])
              )
              const text = typeof a === "string" ? a : JSON.stringify(a)
              expect((sent[0]!.body.messages as Array<{ content: string }>)[0]!.content).toBe(`${text} and ${c}`)
              expect(sent[1]!.body).toEqual({ model: "i", prompt: "a prompt", raw: a })
              expect(sent[2]!.body).toEqual({ model: "e", input: "aW1n" })
              expect(result.outcomes.get("x")).toMatchObject({
                _tag: "Done",
                value: { results: { prompt: "a prompt", render: "aW1n", vector: [0.5, -1] } }
              })
            }
          ),
          { numRuns: 20 }
        )
      )
    }))

  it.effect("a field the item lacks skips it in that stage (MissingField), without a call", () =>
    Effect.gen(function*() {
      const spec = yield* PipelineFile.decode(file, "p.json")
      const { sender, sent } = recording()
      const result = yield* Pipeline.run(PipelineFile.make(spec, sender), [
        { id: "x", input: { fields: { a: 1 }, results: {} } }
      ])
      expect(result.outcomes.get("x")).toMatchObject({ _tag: "Skipped", stage: "prompt", kind: "MissingField" })
      expect(sent).toHaveLength(0)
    }))

  it.effect("a bad file: every issue with its path", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(PipelineFile.decode({
        name: "p",
        stages: [
          { name: "a", url: "/v1/chat/completions", concurrency: 0, body: { model: "m" } },
          { name: "b", url: "/v1/nope", body: {} }
        ]
      }, "p.json"))
      expect(error.issues.map((i) => i.path)).toEqual(["stages[0].concurrency", "stages[1].url"])
      expect(error.message).toContain("stages[1].url: expected one of /v1/chat/completions, ")
      const order = yield* Effect.flip(PipelineFile.decode({
        name: "p",
        stages: [
          { name: "a", url: "/v1/chat/completions", body: { model: "m", messages: ["{{b}}"] } },
          { name: "b", url: "/v1/embeddings", body: { input: "{{a}}" } },
          { name: "a", url: "/v1/embeddings", body: { model: "e", input: "{{a}}" } }
        ]
      }, "p.json"))
      expect(order.message).toContain("stages[0].body.messages[0]: {{b}} names the stage \"b\"")
      expect(order.message).toContain("stages[2].name: \"a\" is also the name of stages[0]")
      expect(order.message).toContain("stages[1].body.model: expected the model's name")
    }))

  it("budgets: a stage's own limits on its tenant scope", () => {
    const spec = Effect.runSync(PipelineFile.decode({
      name: "p",
      stages: [{
        name: "a",
        url: "/v1/embeddings",
        budget: [{ dimension: "requests", amount: 10, window: "minute" }],
        body: { model: "e", input: "{{t}}" }
      }]
    }, "p.json"))
    expect(PipelineFile.budgets(spec).map((b) => [b.scope, b.limits[0]!.label])).toEqual([
      ["tenant:p/a", "10 requests / 1m"]
    ])
  })
})
