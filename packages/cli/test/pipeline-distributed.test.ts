// `sluice pipeline` across processes: `pipeline worker` processes (the Redis URL by --redis-env) on BullMQ queues on
// a real redis-server (a throwaway one, RedisServer), the coordinator in this process (`PipelineFile.run` with the
// distributed engine, what `pipeline run --workers 0 --redis` runs, without three more process starts), the simulated
// OpenAI over HTTP (SimServer, in this test process). Real processes, sockets, kill -9 and wall time, which TestClock
// cannot drive: `it.live`. Throughput is measured on the simulator's own clock (first to last request of a phase),
// not on the processes' start-up, so a loaded machine slows both phases alike. Five worker processes: the test
// itself 32 s at load 7.6 on 2 cores (49 s at load 9-13 with the coordinators as processes), hence the timeout.
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Cli } from "@sluice/cli"
import { BulkExecutor, PipelineFile } from "@sluice/openai"
import * as RedisServer from "@sluice/redis/RedisServer"
import { SimStats } from "@sluice/testing"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { type ChildProcess, spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Distributed from "../src/internal/distributed.js"
import { capture, collect, type Sim, sluiceEntry, startSim, twoStages } from "./helpers.js"

let entry = ""
beforeAll(async () => {
  entry = await sluiceEntry()
}, 300_000)
const KEY = "sk-pipeline-distributed-0123456789"

// real time on purpose: the workers are separate OS processes, polled and killed at wall-clock moments
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const sluice = (args: ReadonlyArray<string>, redis: string) =>
  spawn(process.execPath, [entry, ...args], {
    env: { ...process.env, SLUICE_PIPELINE_KEY: KEY, SLUICE_PIPELINE_REDIS: redis },
    stdio: ["ignore", "pipe", "pipe"]
  })

// the Redis URL by a variable, as `pipeline run --workers N` passes it to the workers it starts
const connect = (sim: Sim) => [
  "--redis-env",
  "SLUICE_PIPELINE_REDIS",
  "--base-url",
  sim.url,
  "--api-key-env",
  "SLUICE_PIPELINE_KEY",
  "--tier",
  "5",
  // a killed worker's jobs go to the others after 4 s (the default lock is 30 s)
  "--job-lock",
  "4s"
]

/** Every worker process started (killed at the end, whatever happens). */
const started: Array<ChildProcess> = []
afterAll(() => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
})

/** `count` worker processes of pipeline files, once each says it is ready. */
const startWorkers = async (files: ReadonlyArray<string>, sim: Sim, redis: string, count: number) => {
  const workers = Array.from({ length: count }, () => {
    const child = sluice(["pipeline", "worker", ...files, ...connect(sim)], redis)
    started.push(child)
    return { child, run: collect(child) }
  })
  const deadline = Date.now() + 60_000
  while (!workers.every((w) => w.run.err().includes("worker ready"))) {
    if (Date.now() > deadline || workers.some((w) => w.child.exitCode !== null)) {
      throw new Error(`workers not ready: ${workers.map((w) => w.run.err()).join("\n---\n")}`)
    }
    await sleep(50)
  }
  return workers
}

const stopAll = (workers: ReadonlyArray<{ readonly child: ChildProcess }>) =>
  Promise.all(workers.map(({ child }) =>
    child.exitCode !== null || child.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
        child.on("exit", () => resolve())
        child.kill("SIGKILL")
      })
  ))

const setup = (dir: string, name: string, n: number, perSecond?: number) => {
  const file = NodePath.join(dir, `${name}.json`)
  NodeFs.writeFileSync(file, JSON.stringify(twoStages(name, perSecond)))
  NodeFs.writeFileSync(
    NodePath.join(dir, `${name}.in.jsonl`),
    Array.from({ length: n }, (_, i) => JSON.stringify({ key: `k${i}`, text: `note ${i}` }) + "\n").join("")
  )
  return file
}

/**
 * The coordinator, in this process (what `pipeline run --workers 0 --redis` runs, without a process start): its
 * outcome, or why it stopped.
 */
const summaries = new Map<string, PipelineFile.Summary>()
const coordinate = (dir: string, name: string, redis: string): Promise<string> =>
  Effect.runPromise(Effect.gen(function*() {
    const file = NodePath.join(dir, `${name}.json`)
    const pipeline = yield* PipelineFile.load(file)
    const output = NodePath.join(dir, `${name}.out.jsonl`)
    const summary = yield* PipelineFile.run({
      spec: pipeline,
      sender: {
        execute: () => Effect.die("the coordinator sends nothing"),
        describe: BulkExecutor.describeError
      },
      engine: Distributed.engine(pipeline, redis, output),
      input: NodePath.join(dir, `${name}.in.jsonl`),
      output
    })
    summaries.set(name, summary)
    return summary.stop === undefined ? summary.outcome : `${summary.outcome}: ${summary.stop}`
  }))

const outputIds = (path: string): Array<string> =>
  NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0).map((l) => {
    const line = JSON.parse(l)
    expect(line.error).toBeNull()
    expect(Array.isArray(line.response.results.vector)).toBe(true)
    return line.custom_id as string
  })

const ids = (n: number) => Array.from({ length: n }, (_, i) => `k${i}`).sort()

/** Items a second over a phase: its requests' span on the simulator's clock. */
const rate = (stats: SimStats.Snapshot, name: string, n: number) => {
  const times = stats.attempts.filter((a) => a.key?.startsWith(`${name}/`)).map((a) => a.at)
  return n / ((Math.max(...times) - Math.min(...times)) / 1000)
}

describe("sluice pipeline worker (BullMQ on Redis, real processes)", () => {
  // live: real processes, sockets and kill -9 (see the top of the file)
  it.live(
    "4 workers take the work of one faster; kill -9 of one mid-run, the rest finish: each item once in the output, the budget kept",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = (yield* RedisServer.make()).url
        yield* Effect.promise(async () => {
          const sim = await startSim(KEY, {
            latency: { request: { _tag: "uniform", min: 1_200, max: 1_400 }, perOutputTokenMs: 0 }
          })
          const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-pipeline-dist-"))
          let all: Array<{ readonly child: ChildProcess }> = []
          try {
            // 1. throughput: one worker, then four (3 per stage each, 1.3 s a call: 2.3 items a second a worker)
            const fast = setup(dir, "fast", 8)
            const bigger = setup(dir, "wide", 32)
            const n = 40
            const kept = setup(dir, "kept", n, 10)
            // the four of the later phases start with the first (they serve the other pipelines' queues)
            const starting = startWorkers([bigger, kept], sim, redis, 4)
            const one = await startWorkers([fast], sim, redis, 1)
            all = all.concat(one)
            const four = await starting
            all = all.concat(four)
            expect(await coordinate(dir, "fast", redis)).toBe("completed")
            expect(outputIds(NodePath.join(dir, "fast.out.jsonl")).sort()).toEqual(ids(8))
            await stopAll(one)
            expect(await coordinate(dir, "wide", redis)).toBe("completed")
            expect(outputIds(NodePath.join(dir, "wide.out.jsonl")).sort()).toEqual(ids(32))
            const stats = await sim.stats()
            const [r1, r4] = [rate(stats, "fast", 8), rate(stats, "wide", 32)]
            console.log(
              `distributed throughput: 1 worker ${r1.toFixed(2)}/s, 4 workers ${r4.toFixed(2)}/s (${
                (r4 / r1).toFixed(2)
              }x)`
            )
            // the ideal is 4x (3 calls of 1.3 s per stage and worker); on a loaded 2-core machine the processes' CPU
            // caps it (2.2x measured at load 18): the floor says that the queues spread the work over the four
            expect(r4, `1 worker ${r1.toFixed(1)}/s, 4 workers ${r4.toFixed(1)}/s`).toBeGreaterThanOrEqual(1.5 * r1)
            // the workers' figures per stage (their calls' events, through the run's hash on Redis): each stage's calls
            // as the simulator counted them, one a job, no 429, no retry; at least one job an item (a job whose lock
            // lapsed on a loaded machine is run again: 33 jobs and calls in stage vector seen at load 17 with this 4 s lock)
            const wide = summaries.get("wide")!.stats!
            for (const stage of wide.stages) {
              const served = stats.attempts.filter((a) =>
                a.key?.startsWith("wide/") && a.key.endsWith(`/${stage.name}`)
              )
              expect(stage, stage.name).toMatchObject({
                calls: served.length,
                done: served.length,
                callRetries: 0,
                rateLimited: 0
              })
              expect(stage.done).toBeGreaterThanOrEqual(32)
              expect(stage.busyMillis).toBeGreaterThanOrEqual(32 * 1_200)
              expect(stage.charged.length).toBeGreaterThan(0)
            }
            const keptFrom = Math.max(...stats.attempts.map((a) => a.at)) + 1

            // 2. kill -9 of one of the four mid-run; a budget of 10 a second on the vector stage
            const run = coordinate(dir, "kept", redis)
            const out = NodePath.join(dir, "kept.out.jsonl")
            while (!NodeFs.existsSync(out) || NodeFs.readFileSync(out, "utf8").split("\n").length < 15) await sleep(50)
            four[0]!.child.kill("SIGKILL")
            expect(await run).toBe("completed")
            expect(outputIds(out).sort()).toEqual(ids(n))
            const after = await sim.stats()
            for (let i = 0; i < n; i++) {
              // a call on the wire when its worker died may be made again; never dropped
              expect(after.attemptsByKey[`kept/k${i}/vector`]).toBeGreaterThanOrEqual(1)
            }
            expect(after.byStatus["429"] ?? 0).toBe(0)
            // the binding budget, from the limits the workers admit under: 10 a second in stage vector
            const keptStats = summaries.get("kept")!.stats!
            expect(keptStats.stages.map((s) => s.rateLimited)).toEqual([0, 0])
            expect(keptStats.binding).toMatchObject({
              _tag: "Some",
              value: { stage: "vector", dimension: "requests", windowMillis: 1_000 }
            })
            const said = PipelineFile.formatSummary(summaries.get("kept")!)
            console.log(said)
            expect(said).toMatch(/binding: requests\/s \S+ in stage vector/)
            // 10 a second from a bucket of 1, shared on Redis by the four (then three) workers: at most 11 in a second
            expect(SimStats.peak(
              { ...after, admissions: after.admissions.filter((a) => a.at >= keptFrom) },
              { dimension: "requests", windowMs: 1000, model: "text-embedding-3-small" }
            )).toBeLessThanOrEqual(11)
          } finally {
            await stopAll(all)
            await sim.close()
          }
        })
      })),
    180_000
  )
})

describe("sluice pipeline run --workers (in process)", () => {
  it.effect("pipeline run --workers N without --redis: a UsageError (exit 2) that says what to add", () =>
    Effect.gen(function*() {
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-pipeline-usage-"))
      const file = NodePath.join(dir, "p.json")
      NodeFs.writeFileSync(
        file,
        JSON.stringify({
          name: "usage",
          stages: [{ name: "a", url: "/v1/completions", body: { model: "m", prompt: "{{text}}" } }]
        })
      )
      const input = NodePath.join(dir, "in.jsonl")
      NodeFs.writeFileSync(input, JSON.stringify({ custom_id: "a", text: "t" }) + "\n")
      const result = yield* capture([
        "pipeline",
        "run",
        file,
        "--input",
        input,
        "--output",
        NodePath.join(dir, "out.jsonl"),
        "--workers",
        "2"
      ])
      const error = Exit.isFailure(result.exit) ? Cause.squash(result.exit.cause) : undefined
      expect(error).toBeInstanceOf(Cli.UsageError)
      expect((error as Cli.UsageError).message).toContain("give --redis URL too")
      expect(NodeFs.existsSync(NodePath.join(dir, "out.jsonl"))).toBe(false)
    }))
})
