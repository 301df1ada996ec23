// `sluice pipeline run` through the real process (packages/cli/src/main.ts, bundled once: see `sluiceEntry`) against
// the simulated OpenAI over HTTP (SimServer, in this test process on a loopback port). Real processes, sockets and
// wall time, which TestClock cannot drive: these tests run with `it.live`.
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { PipelineFile } from "@sluice/openai"
import { SimStats } from "@sluice/testing"
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { collect, type Sim, sluiceEntry, startSim } from "./helpers.js"

let entry = ""
beforeAll(async () => {
  entry = await sluiceEntry()
}, 300_000)
const KEY = "sk-pipeline-test-0123456789"

const tmp = () => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-pipeline-"))

const sluice = (args: ReadonlyArray<string>) =>
  spawn(process.execPath, [entry, ...args], {
    env: { ...process.env, SLUICE_PIPELINE_KEY: KEY },
    stdio: ["ignore", "pipe", "pipe"]
  })

/** Two stages: a chat summary of the line's text, then the summary's embedding (only 20 a second: its budget). */
const spec = (extra: Record<string, unknown> = {}) => ({
  name: "notes",
  id: "key",
  stages: [
    {
      name: "summary",
      url: "/v1/chat/completions",
      concurrency: 6,
      queue: 6,
      body: {
        model: "gpt-4o-mini",
        max_tokens: 8,
        messages: [{ role: "user", content: "[req:{{key}}/summary] Summarize: {{text}}" }]
      }
    },
    {
      name: "vector",
      url: "/v1/embeddings",
      concurrency: 4,
      queue: 4,
      lane: "background",
      budget: [{ dimension: "requests", amount: 20, window: "second", burst: 1 }],
      body: { model: "text-embedding-3-small", input: "[req:{{key}}/vector] {{summary}}" },
      ...extra
    }
  ]
})

const setup = (n: number, pipeline: unknown = spec()) => {
  const dir = tmp()
  NodeFs.writeFileSync(NodePath.join(dir, "pipeline.json"), JSON.stringify(pipeline))
  NodeFs.writeFileSync(
    NodePath.join(dir, "in.jsonl"),
    Array.from({ length: n }, (_, i) => JSON.stringify({ key: `k${i}`, text: `note number ${i}` }) + "\n").join("")
  )
  return dir
}

const args = (dir: string, sim: Sim, extra: ReadonlyArray<string> = [], output = NodePath.join(dir, "out.jsonl")) => [
  "pipeline",
  "run",
  NodePath.join(dir, "pipeline.json"),
  "--input",
  NodePath.join(dir, "in.jsonl"),
  "--output",
  output,
  "--base-url",
  sim.url,
  "--api-key-env",
  "SLUICE_PIPELINE_KEY",
  "--tier",
  "5",
  "--progress",
  "log",
  ...extra
]

const lines = (path: string): Array<any> =>
  NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l))

const withSim = (body: (sim: Sim) => Promise<void>) =>
  Effect.promise(async () => {
    const sim = await startSim(KEY)
    try {
      await body(sim)
    } finally {
      await sim.close()
    }
  })

describe("sluice pipeline run (real process, HTTP simulator)", () => {
  // live: a real child process and sockets (see the top of the file)
  it.live(
    "every item through every stage exactly once, the stage's budget kept, the binding stage named",
    () =>
      withSim(async (sim) => {
        const n = 30
        const dir = setup(n)
        const run = collect(sluice(args(dir, sim)))
        expect((await run.done).code, run.err()).toBe(0)
        const out = lines(NodePath.join(dir, "out.jsonl"))
        expect(out.map((l) => l.custom_id).sort()).toEqual(Array.from({ length: n }, (_, i) => `k${i}`).sort())
        for (const line of out) {
          expect(line.error).toBeNull()
          expect(typeof line.response.results.summary).toBe("string")
          expect(Array.isArray(line.response.results.vector)).toBe(true)
        }
        const stats = await sim.stats()
        // one call per item and stage: no more, no fewer
        for (let i = 0; i < n; i++) {
          expect(stats.attemptsByKey[`k${i}/summary`]).toBe(1)
          expect(stats.attemptsByKey[`k${i}/vector`]).toBe(1)
        }
        // 20 a second with a bucket of 1: at most 21 admitted in any second. The server stamps arrivals, not
        // admissions: one call held up on its way (a loaded machine; it failed once at 22 in CI with the consumer
        // test beside it) moves into the next second, hence one more. Unpaced, the 30 calls would land in well
        // under a second.
        expect(SimStats.peak(stats, { dimension: "requests", windowMs: 1000, model: "text-embedding-3-small" }))
          .toBeLessThanOrEqual(22)
        expect(run.out()).toContain("completed: 30 items through every stage")
        expect(run.out()).toContain("binding: requests/s tenant:notes/vector in stage vector")
        expect(run.err()).toMatch(/notes \d+s \| summary \d+\/\d+/)
      }),
    60_000
  )

  // live: a real child process and real files (TestClock cannot drive another process)
  it.live("resumes each item at the stage it reached; a done item is not sent again", () =>
    withSim(async (sim) => {
      const dir = setup(10)
      const output = NodePath.join(dir, "out.jsonl")
      // k0..k2 done before; k3..k5 through the summary stage (their checkpoints)
      NodeFs.writeFileSync(
        output,
        [0, 1, 2].map((i) =>
          JSON.stringify({ id: `notes-k${i}`, custom_id: `k${i}`, response: { results: {} }, error: null }) + "\n"
        ).join("")
      )
      NodeFs.writeFileSync(
        NodePath.join(dir, "out.stages.jsonl"),
        [3, 4, 5].map((i) =>
          JSON.stringify({
            _tag: "Reached",
            id: `k${i}`,
            stage: "summary",
            value: { fields: { key: `k${i}`, text: "" }, results: { summary: `earlier ${i}` } }
          }) + "\n"
        ).join("")
      )
      const run = collect(sluice(args(dir, sim)))
      expect((await run.done).code, run.err()).toBe(0)
      const out = lines(output)
      expect(out.map((l) => l.custom_id).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `k${i}`).sort())
      expect(out.find((l) => l.custom_id === "k4").response.results.summary).toBe("earlier 4")
      const stats = await sim.stats()
      expect(Object.keys(stats.attemptsByKey).sort()).toEqual(
        [3, 4, 5, 6, 7, 8, 9].map((i) => `k${i}/vector`).concat([6, 7, 8, 9].map((i) => `k${i}/summary`)).sort()
      )
      expect(run.out()).toContain("3 already done")
      expect(run.out()).toContain("3 items resumed at the stage they had reached")

      // --restart: everything again, from an empty output
      const again = collect(sluice(args(dir, sim, ["--restart"])))
      expect((await again.done).code, again.err()).toBe(0)
      expect(lines(output)).toHaveLength(10)
      expect(again.out()).toContain("completed: 10 items through every stage")
    }), 60_000)

  // live: a real child process and real files (TestClock cannot drive another process)
  it.live(
    "an item that cannot be rendered is skipped (an error line, exit 1); bad input lines go to the errors file",
    () =>
      withSim(async (sim) => {
        const dir = setup(6, spec({ body: { model: "text-embedding-3-small", input: "{{summary}} {{missing}}" } }))
        NodeFs.appendFileSync(NodePath.join(dir, "in.jsonl"), "{not json\n{\"text\": \"no key\"}\n")
        const run = collect(sluice(args(dir, sim)))
        expect((await run.done).code, run.err()).toBe(1)
        const out = lines(NodePath.join(dir, "out.jsonl"))
        expect(out).toHaveLength(6)
        for (const line of out) {
          expect(line.response).toBeNull()
          expect(line.error).toMatchObject({ stage: "vector", kind: "MissingField", code: "missing_field" })
        }
        const errors = lines(NodePath.join(dir, "out.errors.jsonl"))
        expect(errors.map((e) => [e.line, e.reason])).toEqual([[7, "malformed-json"], [8, "missing-custom-id"]])
        expect(run.out()).toContain("completed-with-failures: 0 items through every stage, 6 skipped (MissingField 6)")
      }),
    60_000
  )

  // live: a real child process and real files (TestClock cannot drive another process)
  it.live("a bad pipeline file, clashing paths: exit 2, the message says where", () =>
    withSim(async (sim) => {
      const zero = spec()
      zero.stages[0]!.concurrency = 0
      const dir = setup(3, zero)
      const run = collect(sluice(args(dir, sim)))
      expect((await run.done).code).toBe(2)
      expect(run.err()).toContain("stages[0].concurrency: expected a whole number above 0")
      // the other bad-usage cases in this process (the CLI prints the same error's message, exit 2, as above)
      const later = spec()
      ;(later.stages[0]!.body as Record<string, unknown>).messages = [{ role: "user", content: "{{vector}}" }]
      const order = await Effect.runPromise(Effect.flip(PipelineFile.decode(later, "pipeline.json")))
      expect(order.message).toContain(
        "stages[0].body.messages[0].content: {{vector}} names the stage \"vector\", which runs after this one"
      )
      const clash = await Effect.runPromise(Effect.flip(Effect.flatMap(
        PipelineFile.decode(spec(), "pipeline.json"),
        (decoded) =>
          PipelineFile.run({
            spec: decoded,
            sender: { execute: () => Effect.die("nothing is sent"), describe: (error: never) => error },
            input: NodePath.join(dir, "in.jsonl"),
            output: NodePath.join(dir, "in.jsonl")
          })
      )))
      expect(clash.message).toContain("is the input")
      expect(await sim.stats().then((s) => s.attempts.length)).toBe(0)
    }), 60_000)
})
