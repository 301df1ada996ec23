// The distributed engine in this process: the coordinator's engine and a worker (`Distributed.work`) on a throwaway
// redis-server, a sender answering at once (no simulator, no child process). BullMQ polls Redis and holds locks in
// wall time, which TestClock cannot drive: `it.live`.
import { describe, expect, it } from "@effect/vitest"
import { type BulkRunner, Pipeline, PipelineFile } from "@sluice/openai"
import * as RedisServer from "@sluice/redis/RedisServer"
import { Queue as BullQueue } from "bullmq"
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

/** The stats hashes of a pipeline's runs left in Redis. */
const statsKeys = async (redis: string, name: string) => {
  const { hostname, port } = new URL(redis)
  const queue = new BullQueue("stage-a", { connection: { host: hostname, port: Number(port) }, prefix: "x" })
  const client = (await queue.client) as unknown as { keys: (pattern: string) => Promise<Array<string>> }
  const keys = await client.keys(`sluice-pipeline-${name}:stats-*`)
  await queue.close()
  return keys
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
const ids = (n: number) => Array.from({ length: n }, (_, i) => `k${i}`).sort()
const answer = (request: BulkRunner.Request): BulkRunner.Response => ({
  statusCode: 200,
  requestId: null,
  body: { choices: [{ text: String(request.body["prompt"]) }] }
})

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
        const progress: Array<string> = []
        const runInto = (output: string) =>
          PipelineFile.run({
            spec: pipeline,
            sender,
            engine: Distributed.engine(pipeline, redis, output),
            input,
            output,
            // the engine's stats, reported as the run goes on
            progress: {
              every: "20 millis",
              report: (stats) => Effect.sync(() => progress.push(Pipeline.progressLine(stats)))
            }
          })
        for (const output of ["one.jsonl", "two.jsonl", "two.jsonl"].map((f) => NodePath.join(dir, f))) {
          if (NodeFs.existsSync(output)) NodeFs.rmSync(output)
          const summary = yield* runInto(output).pipe(
            Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => "hung" })
          )
          expect(summary.succeeded).toBe(N)
          // the workers' figures of the run (this sender makes no OpenAi calls: no call events)
          const stats = summary.stats!
          expect(stats.distributed).toBe(true)
          expect(progress.length).toBeGreaterThan(0)
          expect(progress.every((line) => /^again \d+s \| a \d+\/\d+ q\d+\/\d+ ▶\d+ \| b /.test(line))).toBe(true)
          progress.length = 0
          expect(stats.stages.map((s) => [s.name, s.done, s.skipped, s.entered, s.queued, s.inFlight])).toEqual([
            ["a", N, 0, N, 0, 0],
            ["b", N, 0, N, 0, 0]
          ])
          // one worker listening, 4 slots a stage
          expect(stats.stages.map((s) => s.concurrency)).toEqual([4, 4])
          expect(stats).toMatchObject({ entered: N, delivered: N, held: 0 })
          expect(PipelineFile.formatSummary(summary)).toContain("  b: 12 done, 0 skipped, 0 put back; 0 calls")
          // the run's hash went with its jobs
          expect(yield* Effect.promise(() => statsKeys(redis, "again"))).toEqual([])
          expect(lines(output).map((l) => JSON.parse(l).response.results.b).sort()).toEqual(
            Array.from({ length: N }, (_, i) => `t${i}!`).sort()
          )
        }
        expect(calls.length).toBe(3 * 2 * N)
      })),
    60_000
  )

  // live: BullMQ's polling and locks are wall time
  it.live(
    "a coordinator of the same run after one stopped: the outcome it held is given back at once; outcomes before their items are read, each counted once",
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
        // the first coordinator adds every item, takes one outcome and stops before writing any
        const dead = yield* Scope.make()
        const first = yield* Scope.extend(
          // the default lock (30 s): an outcome left locked would come back to the next one only after the test's time
          Distributed.engine(pipeline, redis, output).start(Stream.fromIterable(items), { restart: false }),
          dead
        )
        yield* Stream.runHead(first.outcomes)
        while (calls.length < 2 * N) yield* Effect.sleep("20 millis")
        yield* Scope.close(dead, Exit.void)
        // the outcome it held is back in its queue (due at once), not active under its lock
        const { run } = JSON.parse(NodeFs.readFileSync(Distributed.runPath(output), "utf8")) as { run: string }
        const { hostname, port } = new URL(redis)
        const counts = yield* Effect.promise(async () => {
          const queue = new BullQueue(`outcomes-${run}`, {
            connection: { host: hostname, port: Number(port) },
            prefix: "sluice-pipeline-resume"
          })
          const c = await queue.getJobCounts("active", "delayed")
          await queue.close()
          return c
        })
        expect(counts).toEqual({ active: 0, delayed: 1 })
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

  // live: BullMQ's polling, pause and delays are wall time
  it.live(
    "a failure with stop in a worker stops the run (the item, stage and kind named), pauses the queues for every worker; the rerun resumes, each item once",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = (yield* RedisServer.make()).url
        const pipeline = yield* spec("quota")
        const n = 24
        let topped = false
        const calls: Array<string> = []
        // 50 ms a call, 300 ms in stage a from k8 on (so that jobs wait when the run stops, whatever the load); k5's
        // second stage meets an exhausted quota until topped up; k3's first a content policy
        const slow = (customId: string) => customId.endsWith("/a") && Number(customId.slice(1, -2)) >= 8
        const sender: PipelineFile.Sender<"quota" | "policy"> = {
          execute: (request) =>
            Effect.zipRight(
              Effect.sleep(slow(request.customId) ? "300 millis" : "50 millis"),
              Effect.suspend(() => {
                calls.push(request.customId)
                if (request.customId === "k5/b" && !topped) return Effect.fail("quota" as const)
                if (request.customId === "k3/a") return Effect.fail("policy" as const)
                return Effect.succeed(answer(request))
              })
            ),
          describe: (error) =>
            error === "quota"
              ? { kind: "QuotaExhausted", code: "insufficient_quota", message: "You exceeded your quota", stop: true }
              : { kind: "ContentPolicy", code: "content_policy_violation", message: "refused", statusCode: 400 }
        }
        // two workers: the one that meets the failure a second time in a row (100 ms later) stops the other too
        const stopAfter = { tries: 2, firstDelayMs: 100 }
        yield* Distributed.work({ spec: pipeline, sender, redis, stopAfter })
        yield* Distributed.work({ spec: pipeline, sender, redis, stopAfter })
        const dir = tmp()
        const input = NodePath.join(dir, "in.jsonl")
        NodeFs.writeFileSync(
          input,
          Array.from({ length: n }, (_, i) => JSON.stringify({ key: `k${i}`, text: `t${i}` }) + "\n").join("")
        )
        const output = NodePath.join(dir, "out.jsonl")
        const runOnce = PipelineFile.run({
          spec: pipeline,
          sender,
          engine: Distributed.engine(pipeline, redis, output),
          input,
          output
        }).pipe(Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => "hung" }))

        const stopped = yield* runOnce
        expect(stopped.outcome).toBe("stopped")
        expect(stopped.stoppedBy).toMatchObject({
          _tag: "StageError",
          id: "k5",
          stage: "b",
          kind: "QuotaExhausted",
          code: "insufficient_quota"
        })
        expect(stopped.stop).toBe("QuotaExhausted in stage b (item k5): You exceeded your quota")
        expect(lines(output).map((l) => JSON.parse(l).custom_id)).not.toContain("k5")
        // the stopped run's figures: k5's job in stage b put back twice (the second time stopping the run)
        expect(stopped.stats!.stages[1]).toMatchObject({ name: "b", retried: 2 })
        expect(stopped.stats!.stages[0]).toMatchObject({ name: "a", skipped: 1, retried: 0 })
        // no worker takes another job: the queues are paused (for every worker), the calls under way were the last
        const { hostname, port } = new URL(redis)
        const paused = yield* Effect.promise(() =>
          Promise.all(["stage-a", "stage-b"].map(async (name) => {
            const queue = new BullQueue(name, {
              connection: { host: hostname, port: Number(port) },
              prefix: "sluice-pipeline-quota"
            })
            const isPaused = await queue.isPaused()
            await queue.close()
            return isPaused
          }))
        )
        expect(paused).toEqual([true, true])
        // longer than a slow call (300 ms from k8 on): a call under way when the queues paused has ended by then
        yield* Effect.sleep("500 millis")
        const before = calls.length
        yield* Effect.sleep("300 millis")
        expect(calls.length).toBe(before)
        expect(before).toBeLessThan(2 * n)

        topped = true
        const resumed = yield* runOnce
        expect(resumed.outcome).toBe("completed-with-failures")
        const out = lines(output).map((l) => JSON.parse(l))
        expect(out.map((l) => l.custom_id).sort()).toEqual(ids(n))
        // a skipped item's line carries the sender's code and status, as in one process
        expect(out.find((l) => l.custom_id === "k3").error).toEqual({
          stage: "a",
          kind: "ContentPolicy",
          code: "content_policy_violation",
          message: "refused",
          status_code: 400
        })
        // nothing done twice: every stage once an item; k5's second stage twice before the stop, once after it
        const counts = new Map<string, number>()
        for (const call of calls) counts.set(call, (counts.get(call) ?? 0) + 1)
        expect([...counts].filter(([call, count]) => count !== (call === "k5/b" ? 3 : 1))).toEqual([])
        expect(counts.size).toBe(2 * n - 1)
      })),
    60_000
  )

  // live: BullMQ's polling, pause and delays are wall time (and a real signal)
  it.live(
    "Ctrl-C: the coordinator stops at once; a worker stopped by its signal gives its jobs back and the rerun goes on",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = (yield* RedisServer.make()).url
        const pipeline = yield* spec("signal")
        // the first worker's calls in stage a hang until its signal cancels them (as the executor's cancel does)
        const cancelled = yield* Deferred.make<never, "signal">()
        const hung: Array<string> = []
        const hanging: PipelineFile.Sender<"signal"> = {
          execute: (request) =>
            request.customId.endsWith("/a")
              ? Effect.zipRight(Effect.sync(() => hung.push(request.customId)), Deferred.await(cancelled))
              : Effect.succeed(answer(request)),
          describe: () => ({ kind: "Signal", code: "signal", message: "stopped by a signal", stop: true })
        }
        const first = yield* Scope.make()
        const working = yield* Scope.extend(Distributed.work({ spec: pipeline, sender: hanging, redis }), first)
        const dir = tmp()
        const input = writeInput(dir)
        const output = NodePath.join(dir, "out.jsonl")
        const signal = yield* Deferred.make<void>()
        const coordinator = yield* Effect.fork(PipelineFile.run({
          spec: pipeline,
          sender: hanging,
          engine: Distributed.engine(pipeline, redis, output),
          input,
          output,
          stop: Deferred.await(signal)
        }))
        // its stage's 4 workers hang; a second worker does the rest
        while (hung.length < 4) yield* Effect.sleep("20 millis")
        const { calls, sender } = echo()
        yield* Distributed.work({ spec: pipeline, sender, redis })
        while (!NodeFs.existsSync(output) || lines(output).length < N - 4) yield* Effect.sleep("20 millis")
        // Ctrl-C: the coordinator does not wait for the items under way
        yield* Deferred.succeed(signal, void 0)
        const stopped = yield* Fiber.join(coordinator).pipe(
          Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => "the coordinator waited for the hung items" })
        )
        expect(stopped.outcome).toBe("stopped")
        expect(stopped.notDone).toBe(4)
        // the rerun starts; then the first worker gets its signal: its calls fail with its own stop, their jobs go
        // back to the queue for the other worker, and the run goes on
        const rerun = yield* Effect.fork(PipelineFile.run({
          spec: pipeline,
          sender,
          engine: Distributed.engine(pipeline, redis, output),
          input,
          output
        }))
        yield* working.stopping
        yield* Deferred.fail(cancelled, "signal")
        yield* Scope.close(first, Exit.void)
        const resumed = yield* Fiber.join(rerun).pipe(
          Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => "hung" })
        )
        expect(resumed.outcome).toBe("completed")
        expect(resumed.stoppedBy).toBeUndefined()
        expect(lines(output).map((l) => JSON.parse(l).custom_id).sort()).toEqual(ids(N))
        // the second worker did the hung calls again, once each
        expect(hung.length).toBe(4)
        expect(calls.filter((call) => hung.includes(call))).toHaveLength(4)
      })),
    60_000
  )
})

describe("distributed run file", () => {
  it.effect("<output>.run.json is in the path checks, and a file there that is not a run file is left alone", () =>
    Effect.gen(function*() {
      const pipeline = yield* spec("paths")
      const { sender } = echo()
      const dir = tmp()
      const input = writeInput(dir)
      const output = NodePath.join(dir, "out.jsonl")
      const runFile = Distributed.runPath(output)
      expect(runFile).toBe(NodePath.join(dir, "out.run.json"))
      // nothing listens there: both runs stop before any connection
      const engine = Distributed.engine(pipeline, "redis://127.0.0.1:1", output)
      const clash = yield* Effect.flip(
        PipelineFile.run({ spec: pipeline, sender, engine, input, output, errors: runFile })
      )
      expect(clash).toMatchObject({ _tag: "BulkPathError", reason: "same-file", path: runFile })
      NodeFs.writeFileSync(runFile, "my notes\n")
      const foreign = yield* Effect.flip(PipelineFile.run({ spec: pipeline, sender, engine, input, output }))
      expect(foreign).toMatchObject({ _tag: "BulkPathError", reason: "not-output", path: runFile })
      expect(NodeFs.readFileSync(runFile, "utf8")).toBe("my notes\n")
    }))
})
