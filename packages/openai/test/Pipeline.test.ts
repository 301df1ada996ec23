/**
 * `Pipeline` in one process, in virtual time: failures decided by kind (retry, skip the item, fail the run)
 * with stage functions of their own and with the simulator's real errors through the `OpenAi` service; a
 * stage's own budget on its tenant scope; the configuration checked; and resume: a run cut in the middle
 * (`Effect.timeout`, interrupting its calls in flight) and run again over the same store ends with every item
 * through every stage, each stage completed exactly once per item across both runs.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore } from "@sluice/core"
import { OpenAi, OpenAiError, Pipeline } from "@sluice/openai"
import { Scenario, SimStats, Simulator, VirtualTime } from "@sluice/testing"
import { Chunk, Clock, Effect, Exit, Layer, Metric, Option, Schema, Stream } from "effect"
import { makeClient } from "./harness.js"

const openAiLayer = (budgets: ReadonlyArray<Budget.Budget>) =>
  Layer.unwrapEffect(
    Effect.map(makeClient(), (client) =>
      OpenAi.layerClient(client, { budgets, adaptive: false, timeSlice: false, onEvent: Pipeline.onEvent }).pipe(
        Layer.provide(LimiterStore.layerMemory)
      ))
  )

const overloaded = new OpenAiError.Overloaded({ message: "The server is overloaded", retryable: true })

class Flaky extends Schema.TaggedError<Flaky>()("Flaky", {}) {}
class Broken extends Schema.TaggedError<Broken>()("Broken", {}) {}

const items = (ids: ReadonlyArray<string>) => ids.map((id) => ({ id, input: id }))

describe("Pipeline: failures by kind", () => {
  it.effect("retry: the stage runs again after 1 s, then 2 s; past `retries` the item is skipped; onError decides an own error", () =>
    Effect.gen(function*() {
      const attempts = new Map<string, number>()
      const p = Pipeline.make<string>("kinds").pipe(
        Pipeline.stage({
          name: "work",
          concurrency: 4,
          queue: 2,
          output: Schema.String,
          onError: (error: OpenAiError.Overloaded | Flaky) =>
            error._tag === "Flaky" ? "retry" : Pipeline.defaultDecision(error),
          run: (id: string, item) =>
            Effect.gen(function*() {
              attempts.set(id, item.attempt)
              if (id === "twice" && item.attempt <= 2) return yield* overloaded
              if (id === "always") return yield* overloaded
              if (id === "flaky" && item.attempt === 1) return yield* new Flaky()
              return `${id} ok`
            })
        })
      )
      const start = yield* Clock.currentTimeMillis
      const result = yield* VirtualTime.run(Pipeline.run(p, items(["fine", "twice", "always", "flaky"])))
      expect(result.outcomes.get("fine")).toEqual({ _tag: "Done", id: "fine", value: "fine ok", resumed: false })
      expect(result.outcomes.get("twice")).toMatchObject({ _tag: "Done", value: "twice ok" })
      expect(result.outcomes.get("flaky")).toMatchObject({ _tag: "Done", value: "flaky ok" })
      expect(result.outcomes.get("always")).toMatchObject({
        _tag: "Skipped",
        stage: "work",
        kind: "Overloaded",
        attempts: 3,
        message: "The server is overloaded"
      })
      expect(Object.fromEntries(attempts)).toEqual({ fine: 1, twice: 3, always: 3, flaky: 2 })
      // four workers: "twice" and "always" paused 1 s and 2 s before their reruns, side by side
      expect((yield* Clock.currentTimeMillis) - start).toBe(3_000)
      const work = result.stats.stages[0]!
      expect([work.done, work.skipped, work.retried]).toEqual([3, 1, 5])
      const counter = (outcome: string) =>
        Metric.value(
          Metric.tagged(
            Metric.tagged(Metric.tagged(Pipeline.metrics.items, "pipeline", "kinds"), "stage", "work"),
            "outcome",
            outcome
          )
        )
      expect((yield* counter("done")).count).toBe(3)
      expect((yield* counter("skipped")).count).toBe(1)
      expect((yield* counter("retried")).count).toBe(5)
    }))

  it.effect("fail: an error of the stage's own with no onError stops the run with StageFailed naming the item", () =>
    Effect.gen(function*() {
      const p = Pipeline.make<string>("stops").pipe(
        Pipeline.stage({
          name: "work",
          concurrency: 1,
          queue: 1,
          output: Schema.String,
          run: (id: string) => (id === "bad" ? Effect.fail(new Broken()) : Effect.as(Effect.sleep("1 second"), id))
        })
      )
      const exit = yield* VirtualTime.run(Effect.exit(Pipeline.run(p, items(["a", "bad", "c", "d"]))))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
        expect(error).toBeInstanceOf(Pipeline.StageFailed)
        expect(error).toMatchObject({ pipeline: "stops", stage: "work", id: "bad", kind: "Broken", attempts: 1 })
      }
    }))

  it.effect("the simulator's errors through OpenAi: a content-policy refusal skips its item, a missing model fails the run", () =>
    Effect.gen(function*() {
      const chat = (model: string) =>
        Pipeline.make<string>("moderated").pipe(Pipeline.stage({
          name: "write",
          concurrency: 2,
          queue: 4,
          output: Schema.String,
          run: (text: string) =>
            Effect.flatMap(OpenAi.OpenAi, (openai) =>
              openai.chat.completions.create({ model, messages: [{ role: "user", content: text }], max_tokens: 20 }))
              .pipe(
                Effect.map((answer) =>
                  answer.choices[0]?.message.content ?? ""
                )
              )
        }))
      const inputs = [
        { id: "1", input: "a calm lake" },
        { id: "2", input: "[sim:content-policy] something refused" },
        { id: "3", input: "a busy street" }
      ]
      const result = yield* VirtualTime.run(Pipeline.run(chat("gpt-4o-mini"), inputs))
      expect(result.outcomes.get("1")?._tag).toBe("Done")
      expect(result.outcomes.get("3")?._tag).toBe("Done")
      expect(result.outcomes.get("2")).toMatchObject({
        _tag: "Skipped",
        stage: "write",
        kind: "ContentPolicy",
        attempts: 1
      })
      const failed = yield* VirtualTime.run(Effect.flip(Pipeline.run(chat("gpt-9-imaginary"), inputs)))
      expect(failed).toMatchObject({ _tag: "StageFailed", stage: "write", kind: "NotFound" })
    }).pipe(Effect.provide(openAiLayer([])), Effect.provide(Simulator.layer(Scenario.tier1()))))
})

describe("Pipeline: stages' budgets, lanes and configuration", () => {
  it.effect("a stage's budget on its tenant scope binds its calls: 40 calls at 20 a minute take a minute, and the summary names it", () =>
    Effect.gen(function*() {
      const p = Pipeline.make<string>("tenanted").pipe(Pipeline.stage({
        name: "embed",
        concurrency: 4,
        queue: 4,
        lane: "background",
        budget: [Budget.Limit.perMinute("requests", 20)],
        output: Schema.Number,
        run: (text: string) =>
          Effect.flatMap(
            OpenAi.OpenAi,
            (openai) => openai.embeddings.create({ model: "text-embedding-3-small", input: text })
          ).pipe(
            Effect.map((answer) => answer.data.length)
          )
      }))
      expect(Pipeline.budgets(p).map((b) => b.scope)).toEqual(["tenant:tenanted/embed"])
      // every 10 s: the stage's calls wait in the limiter's background lane (the stage's `lane`)
      const lanes: Array<{ readonly interactive: number; readonly background: number }> = []
      const lines: Array<string> = []
      const result = yield* VirtualTime.run(
        Effect.flatMap(
          OpenAi.OpenAi,
          (openai) =>
            Pipeline.run(p, Array.from({ length: 40 }, (_, i) => ({ id: `t${i}`, input: `text ${i}` })), {
              progress: {
                every: "10 seconds",
                report: (stats) =>
                  Effect.map(Effect.orDie(openai.limiter.snapshot), (snapshot) => {
                    lanes.push(snapshot.waiting)
                    lines.push(Pipeline.progressLine(stats))
                  })
              }
            })
        ).pipe(Effect.provide(openAiLayer(Pipeline.budgets(p))))
      )
      expect(lanes.length).toBeGreaterThanOrEqual(5)
      expect(lanes[0]).toEqual({ interactive: 0, background: 4 })
      expect(lines[0]).toMatch(
        /^tenanted 10s \| embed \d+\/\d+ q4\/4 ▶4 \| binding requests\/min tenant:tenanted\/embed in stage embed$/
      )
      expect(result.outcomes.size).toBe(40)
      // 20 at once from the full bucket, the other 20 at 20 a minute: the last admitted at 60 s
      expect(result.stats.elapsedMillis).toBeGreaterThanOrEqual(57_000)
      expect(result.stats.elapsedMillis).toBeLessThanOrEqual(61_000)
      const embed = result.stats.stages[0]!
      expect(embed.charged).toContainEqual({ scope: "tenant:tenanted/embed", dimension: "requests", amount: 40 })
      expect(result.summary).toContain("binding: requests/min tenant:tenanted/embed in stage embed")
      expect((yield* Simulator.stats).byStatus).toEqual({ "200": 40 })
    }).pipe(Effect.provide(Simulator.layer(Scenario.tier1()))))

  it.effect("bad configuration and bad input fail with typed errors that say where", () =>
    Effect.gen(function*() {
      const s = (name: string, queue = 1) =>
        Pipeline.stage({ name, concurrency: 1, queue, output: Schema.String, run: (x: string) => Effect.succeed(x) })
      const twice = Pipeline.make<string>("twice").pipe(s("a"), s("a"))
      expect(yield* Effect.flip(Pipeline.run(twice, items(["x"])))).toMatchObject({
        _tag: "PipelineConfigError",
        path: "stages[1].name"
      })
      const noRoom = Pipeline.make<string>("room").pipe(s("a"), s("b", 0))
      expect(yield* Effect.flip(Pipeline.run(noRoom, items(["x"])))).toMatchObject({ path: "stages[1].queue" })
      expect(yield* Effect.flip(Pipeline.run(Pipeline.make<string>("none"), items(["x"])))).toMatchObject({
        path: "stages"
      })
      const one = Pipeline.make<string>("one").pipe(s("a"))
      expect(yield* Effect.flip(VirtualTime.run(Pipeline.run(one, items(["x", "y", "x"]))))).toMatchObject({
        _tag: "PipelineInputError",
        reason: "duplicate-id",
        id: "x"
      })
    }))
})

describe("Pipeline: backpressure from the consumer", () => {
  it.effect("a consumer taking one outcome every 10 s: the stages and the reading of the input wait for it, the items held stay within the bound", () =>
    Effect.gen(function*() {
      const step = (name: string) =>
        Pipeline.stage({
          name,
          concurrency: 2,
          queue: 3,
          output: Schema.String,
          run: (x: string) => Effect.as(Effect.sleep("1 second"), `${x}>${name}`)
        })
      const p = Pipeline.make<string>("slow-reader").pipe(step("a"), step("b"))
      let read = 0
      const source = Stream.fromIterable(Array.from({ length: 60 }, (_, i) => ({ id: `i${i}`, input: `i${i}` }))).pipe(
        Stream.tap(() => Effect.sync(() => read++))
      )
      const seen: Array<{ readonly read: number; readonly held: number }> = []
      const values = yield* VirtualTime.run(Effect.scoped(Effect.gen(function*() {
        const running = yield* Pipeline.start(p, source)
        return yield* running.outcomes.pipe(
          Stream.mapEffect((outcome) =>
            Effect.gen(function*() {
              yield* Effect.sleep("10 seconds")
              const stats = yield* running.stats
              seen.push({ read, held: stats.held })
              return outcome._tag === "Done" ? outcome.value : ""
            })
          ),
          Stream.runCollect
        )
      })))
      expect(Chunk.size(values)).toBe(60)
      expect(Chunk.unsafeGet(values, 0)).toMatch(/^i\d+>a>b$/)
      const bound = Pipeline.bound(p) // 1 + (3 + 2) + (3 + 2) + 2 = 13
      expect(bound).toBe(13)
      // after 10 outcomes (100 s, when an unbounded pipeline would have read all 60 long ago): read at most the
      // bound and what the consumer pulled (the 10, and up to the output buffer's 2 more pulled with them)
      expect(seen[9]!.read).toBeLessThanOrEqual(bound + 10 + 2)
      expect(seen[9]!.read).toBeGreaterThanOrEqual(10)
      for (const s of seen) expect(s.held).toBeLessThanOrEqual(bound)
      // the whole stream through Pipeline.stream
      const all = yield* VirtualTime.run(Stream.runCollect(Pipeline.stream(p, items(["x", "y", "z"]))))
      expect(Chunk.toReadonlyArray(all).map((o) => o.id).sort()).toEqual(["x", "y", "z"])
    }))
})

describe("Pipeline: resume", () => {
  it.effect("a run cut at 2 min (calls in flight) and run again over the same store: every item done, each stage once per item", () =>
    Effect.gen(function*() {
      const completed = new Map<string, number>()
      const done = (key: string) => Effect.sync(() => completed.set(key, (completed.get(key) ?? 0) + 1))
      const Rendered = Schema.Struct({ prompt: Schema.String, bytes: Schema.Number })
      const p = Pipeline.make<string>("resumable").pipe(
        Pipeline.stage({
          name: "prompt",
          concurrency: 3,
          queue: 4,
          output: Schema.String,
          run: (brief: string, item) =>
            Effect.flatMap(OpenAi.OpenAi, (openai) =>
              openai.chat.completions.create({
                model: "gpt-4o-mini",
                messages: [{ role: "user", content: `[req:${item.id}/prompt] ${brief}` }],
                max_tokens: 50
              })).pipe(Effect.map((a) => a.choices[0]?.message.content ?? ""), Effect.tap(done(`${item.id}/prompt`)))
        }),
        Pipeline.stage({
          name: "render",
          concurrency: 2,
          queue: 2,
          output: Rendered,
          run: (prompt: string, item) =>
            Effect.flatMap(
              OpenAi.OpenAi,
              (openai) => openai.images.generate({ model: "gpt-image-1", prompt: `[req:${item.id}/render] ${prompt}` })
            ).pipe(
              Effect.map((image) => ({ prompt, bytes: image.data?.[0]?.b64_json?.length ?? 0 })),
              Effect.tap(done(`${item.id}/render`))
            )
        }),
        Pipeline.stage({
          name: "caption",
          concurrency: 2,
          queue: 2,
          output: Schema.String,
          run: (rendered: typeof Rendered.Type, item) =>
            Effect.flatMap(OpenAi.OpenAi, (openai) =>
              openai.chat.completions.create({
                model: "gpt-4o-mini",
                messages: [{ role: "user", content: `[req:${item.id}/caption] ${rendered.prompt.slice(0, 80)}` }],
                max_tokens: 20
              })).pipe(
                Effect.map((a) => `${a.choices[0]?.message.content ?? ""} (${rendered.bytes} bytes)`),
                Effect.tap(done(`${item.id}/caption`))
              )
        })
      )
      const briefs = Array.from({ length: 30 }, (_, i) => ({ id: `b${i}`, input: `brief ${i}` }))
      const store = yield* Pipeline.memoryStore
      const cut = yield* VirtualTime.run(Effect.either(Effect.timeout(Pipeline.run(p, briefs, { store }), "2 minutes")))
      expect(cut._tag).toBe("Left")
      const saved = yield* store.checkpoints
      const at = (stage: string) => saved.filter((c) => c._tag === "Reached" && c.stage === stage).length
      // the cut leaves items at every stage: rendered ones waiting for captions are few (captions are quick)
      expect(at("prompt")).toBeGreaterThan(0)
      expect(at("caption")).toBeGreaterThan(0)
      expect(at("caption")).toBeLessThan(30)
      // the checkpoints are the record of what completed, stage by stage
      for (const c of saved) expect(completed.get(`${c.id}/${c.stage}`)).toBe(1)
      const captionedBefore = at("caption")
      const inFlightAtCut = (yield* Simulator.stats).attempts.length -
        [...completed.values()].reduce((a, b) => a + b, 0)

      expect(inFlightAtCut).toBeGreaterThan(0)
      const resumed = yield* VirtualTime.run(Pipeline.run(p, briefs, { store }))
      expect(resumed.outcomes.size).toBe(30)
      expect(resumed.stats.resumed).toBe(saved.length)
      expect([...resumed.outcomes.values()].every((o) => o._tag === "Done")).toBe(true)
      expect([...resumed.outcomes.values()].filter((o) => o.resumed)).toHaveLength(captionedBefore)
      for (const b of briefs) {
        for (const stage of ["prompt", "render", "caption"]) expect(completed.get(`${b.id}/${stage}`)).toBe(1)
      }
      const resumedValue = resumed.outcomes.get("b0")
      expect(resumedValue?._tag === "Done" && resumedValue.value).toMatch(/\(\d+ bytes\)$/)
      // the calls the server answered: one per item and stage, and those cut in flight (their answers lost)
      const sim = yield* Simulator.stats
      expect(sim.attempts.length).toBe(90 + inFlightAtCut)
      expect(SimStats.succeededKeys(sim).size).toBeGreaterThan(0)
      expect(Option.isSome(resumed.stats.binding)).toBe(true)
    }).pipe(
      Effect.provide(openAiLayer([
        Budget.make("org:default/pool:gpt-4o-mini", [Budget.Limit.perMinute("requests", 500)]),
        Budget.make("org:default/pool:gpt-image-1", [Budget.Limit.perMinute("images", 5)])
      ])),
      Effect.provide(
        Simulator.layer(Scenario.tier1({ latency: { request: { _tag: "uniform", min: 1_000, max: 4_000 } } }))
      )
    ))
})

describe("Pipeline.tallyCalls (a stage's job run outside a pipeline, as a distributed worker runs it)", () => {
  it.effect("counts the calls' events of the effect it runs, failed or not, and nothing outside it", () =>
    Effect.gen(function*() {
      const embed = (model: string) =>
        Effect.flatMap(OpenAi.OpenAi, (openai) => openai.embeddings.create({ model, input: "text" }))
      const [ok, tally] = yield* VirtualTime.run(
        Effect.zipRight(
          embed("text-embedding-3-small"),
          Pipeline.tallyCalls(Effect.zip(embed("text-embedding-3-small"), embed("text-embedding-3-small")))
        )
      )
      expect(Exit.isSuccess(ok)).toBe(true)
      // the call before it is not counted
      expect(tally).toMatchObject({ calls: 2, callRetries: 0, rateLimited: 0 })
      expect(tally.charged.filter((c) => c.dimension === "requests").every((c) => c.amount === 2)).toBe(true)
      expect(tally.charged.length).toBeGreaterThan(0)
      const [failed, failedTally] = yield* VirtualTime.run(Pipeline.tallyCalls(embed("gpt-9-imaginary")))
      expect(Exit.isFailure(failed)).toBe(true)
      expect(failedTally.calls).toBe(1)
    }).pipe(Effect.provide(openAiLayer([])), Effect.provide(Simulator.layer(Scenario.tier1()))))
})
