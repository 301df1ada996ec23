// The distributed engine in this process: the coordinator's engine and a worker (`Distributed.work`) on a throwaway
// redis-server, a sender answering at once (no simulator, no child process). BullMQ polls Redis and holds locks in
// wall time, which TestClock cannot drive: `it.live`.
import { describe, expect, it } from "@effect/vitest"
import { type BulkRunner, type Pipeline, PipelineFile } from "@sluice/openai"
import * as RedisServer from "@sluice/redis/RedisServer"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Distributed from "../src/internal/distributed.js"

const spec = (name: string) =>
  PipelineFile.decode({
    name,
    id: "key",
    stages: [
      { name: "a", url: "/v1/completions", concurrency: 4, body: { model: "m", prompt: "{{text}}" } },
      { name: "b", url: "/v1/completions", concurrency: 4, body: { model: "m", prompt: "{{a}}!" } }
    ]
  }, `${name}.json`)

/** Answers every request at once with its prompt; counts the calls. */
const echo = () => {
  const calls: Array<string> = []
  const sender: PipelineFile.Sender<never> = {
    execute: (request) =>
      Effect.sync(() => {
        calls.push(request.customId)
        return { statusCode: 200, requestId: null, body: { choices: [{ text: String(request.body["prompt"]) }] } }
      }),
    describe: (error: never) => error as BulkRunner.Failure
  }
  return { calls, sender }
}

const N = 12
const tmp = () => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-dist-engine-"))
const writeInput = (dir: string) => {
  const input = NodePath.join(dir, "in.jsonl")
  NodeFs.writeFileSync(
    input,
    Array.from({ length: N }, (_, i) => JSON.stringify({ key: `k${i}`, text: `t${i}` }) + "\n").join("")
  )
  return input
}
const lines = (path: string) => NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0)

describe("distributed engine (BullMQ, in process)", () => {
  // live: BullMQ's polling and locks are wall time
  it.live(
    "a second run of the same pipeline (a new output, then the output deleted) does all items again",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = (yield* RedisServer.make()).url
        const pipeline = yield* spec("again")
        const { calls, sender } = echo()
        yield* Distributed.work({ spec: pipeline, sender, redis })
        const dir = tmp()
        const input = writeInput(dir)
        const runInto = (output: string) =>
          PipelineFile.run({
            spec: pipeline,
            sender,
            engine: Distributed.engine(pipeline, redis, output),
            input,
            output
          })
        for (const output of ["one.jsonl", "two.jsonl", "two.jsonl"].map((f) => NodePath.join(dir, f))) {
          if (NodeFs.existsSync(output)) NodeFs.rmSync(output)
          const summary = yield* runInto(output).pipe(
            Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => "hung" })
          )
          expect(summary.succeeded).toBe(N)
          expect(lines(output).map((l) => JSON.parse(l).response.results.b).sort()).toEqual(
            Array.from({ length: N }, (_, i) => `t${i}!`).sort()
          )
        }
        expect(calls.length).toBe(3 * 2 * N)
      })),
    60_000
  )

  // live: as above; the first coordinator's locks run out in wall time
  it.live(
    "a coordinator of the same run after one died: outcomes before their items are read, each counted once",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = (yield* RedisServer.make()).url
        const pipeline = yield* spec("resume")
        const { calls, sender } = echo()
        yield* Distributed.work({ spec: pipeline, sender, redis })
        const dir = tmp()
        const output = NodePath.join(dir, "out.jsonl")
        NodeFs.writeFileSync(output, "")
        const items: Array<Pipeline.Item<PipelineFile.Carry>> = Array.from({ length: N }, (_, i) => ({
          id: `k${i}`,
          input: { fields: { key: `k${i}`, text: `t${i}` }, results: {} }
        }))
        // the first coordinator adds every item, takes one outcome and dies before writing any
        const dead = yield* Scope.make()
        const first = yield* Scope.extend(
          Distributed.engine(pipeline, redis, output).start(Stream.fromIterable(items), { restart: false }),
          dead
        )
        yield* Stream.runHead(first.outcomes)
        while (calls.length < 2 * N) yield* Effect.sleep("20 millis")
        yield* Scope.close(dead, Exit.void)
        // the next one reads its input only once an outcome came back: those outcomes come before their items
        const seen = yield* Deferred.make<void>()
        const later = Stream.fromIterable(items).pipe(Stream.tap(() => Deferred.await(seen)))
        const second = yield* Distributed.engine(pipeline, redis, output).start(later, { restart: false })
        const delivered: Array<string> = []
        const fiber = yield* Effect.fork(Stream.runForEach(second.outcomes, ({ ack, outcome }) =>
          Effect.zipRight(
            Effect.sync(() => delivered.push(outcome.id)),
            Effect.zipRight(Deferred.succeed(seen, void 0), ack)
          )))
        yield* Fiber.join(fiber).pipe(Effect.timeoutFail({
          duration: "20 seconds",
          onTimeout: () => `hung: ${delivered.length} delivered`
        }))
        expect([...new Set(delivered)].sort()).toEqual(items.map((i) => i.id).sort())
        // nothing sent again: every item's stages ran once
        expect(calls.length).toBe(2 * N)
      })),
    60_000
  )
})
