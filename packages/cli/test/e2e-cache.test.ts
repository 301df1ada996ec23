/**
 * `sluice run --cache` against the HTTP simulator, counting the requests that reach it: a job whose bodies repeat
 * 30% sends 70% of its lines; its rerun with `--restart` sends none; the summary says what was saved. Real
 * sockets and real time (`it.live`): the simulator is a server on a port, and `sluice run` reads the clock.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as RedisServer from "@sluice/redis/RedisServer"
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { capture, type Sim, startSim } from "./helpers.js"

const KEY = "sk-cache-e2e-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
const ENV = "SLUICE_CACHE_E2E_KEY"

let sim: Sim
let dir: string
beforeAll(async () => {
  process.env[ENV] = KEY
  sim = await startSim(KEY)
  dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-cache-e2e-"))
})
afterAll(async () => {
  await sim?.close()
  delete process.env[ENV]
})

/** 100 lines: the first 70 bodies distinct, the last 30 repeating bodies 0, 2, 4, … of them (30% repeats). */
const writeJob = (path: string) => {
  const lines = Array.from({ length: 100 }, (_, i) => {
    const question = i < 70 ? i : (i - 70) * 2
    return JSON.stringify({
      custom_id: `id-${i}`,
      method: "POST",
      url: "/v1/chat/completions",
      body: { model: "gpt-4o-mini", messages: [{ role: "user", content: `question ${question}` }], max_tokens: 16 }
    })
  })
  NodeFs.writeFileSync(path, lines.join("\n") + "\n")
}

const sent = async () => (await sim.stats()).attempts.length

const run = (input: string, output: string, ...extra: Array<string>) =>
  capture([
    "run",
    "--input",
    input,
    "--output",
    output,
    "--base-url",
    sim.url,
    "--api-key-env",
    ENV,
    "--progress",
    "off",
    ...extra
  ])

const readOutput = (path: string) =>
  new Map(
    NodeFs.readFileSync(path, "utf8").trim().split("\n").map((line) => {
      const parsed = JSON.parse(line)
      return [parsed.custom_id as string, parsed.response.body] as const
    })
  )

describe("sluice run --cache", () => {
  // live: a real child process and real files (TestClock cannot drive another process)
  it.live(
    "30% repeated bodies send 70%; a rerun with --restart sends nothing; the summary says what was saved",
    () =>
      Effect.gen(function*() {
        const input = NodePath.join(dir, "job.jsonl")
        writeJob(input)
        const cache = NodePath.join(dir, "cache")
        const output = NodePath.join(dir, "out.jsonl")

        const before = yield* Effect.promise(sent)
        const first = yield* run(input, output, "--cache", cache)
        expect(first.exitCode).toBe(0)
        const firstSent = (yield* Effect.promise(sent)) - before
        expect(firstSent).toBe(70)
        // a repeat that overlaps its original shares its call; one that comes after it is a hit
        const [, hits, shared] =
          /cache: (\d+) hits, (\d+) shared with an identical line under way, 70 misses; saved 30 requests/
            .exec(first.out) ?? []
        expect(Number(hits) + Number(shared)).toBe(30)
        const answers = readOutput(output)
        expect(answers.size).toBe(100)
        // a repeated line has its original's answer
        for (let i = 70; i < 100; i++) expect(answers.get(`id-${i}`)).toEqual(answers.get(`id-${(i - 70) * 2}`))

        const rerun = yield* run(input, output, "--cache", cache, "--restart")
        expect(rerun.exitCode).toBe(0)
        expect((yield* Effect.promise(sent)) - before).toBe(70) // the rerun sent nothing
        expect(rerun.out).toMatch(/0 misses; saved 100 requests, [\d,]+ tokens, \$\d+\.\d{4} at list price/)
        expect(rerun.out).toContain("succeeded 100")
        expect(readOutput(output)).toEqual(answers)

        // without --cache, every line is sent
        const plain = yield* run(input, NodePath.join(dir, "plain.jsonl"))
        expect(plain.exitCode).toBe(0)
        expect((yield* Effect.promise(sent)) - before).toBe(170)
        expect(plain.out).not.toContain("cache:")
      }),
    60_000
  )

  // live: a real child process and real files (TestClock cannot drive another process)
  it.live("--cache redis://…: the same, on a Redis shared by the runs", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make()
      const input = NodePath.join(dir, "job-redis.jsonl")
      writeJob(input)
      const output = NodePath.join(dir, "out-redis.jsonl")
      const before = yield* Effect.promise(sent)
      const first = yield* run(input, output, "--cache", server.url)
      expect(first.exitCode).toBe(0)
      expect((yield* Effect.promise(sent)) - before).toBe(70)
      const rerun = yield* run(input, output, "--cache", server.url, "--restart")
      expect(rerun.exitCode).toBe(0)
      expect((yield* Effect.promise(sent)) - before).toBe(70)
      expect(rerun.out).toMatch(/0 misses; saved 100 requests/)
      // a Redis that is not there is bad usage, before any line is sent
      const down = yield* run(input, NodePath.join(dir, "out-down.jsonl"), "--cache", "redis://127.0.0.1:1")
      expect(down.exit._tag).toBe("Failure")
      expect((yield* Effect.promise(sent)) - before).toBe(70)
    }).pipe(Effect.scoped), 60_000)

  // live: a real child process and real files (TestClock cannot drive another process)
  it.live("--cache on a file is bad usage (exit 2), and the file is left as it was", () =>
    Effect.gen(function*() {
      const input = NodePath.join(dir, "job2.jsonl")
      writeJob(input)
      const file = NodePath.join(dir, "not-a-dir")
      NodeFs.writeFileSync(file, "mine")
      const result = yield* run(input, NodePath.join(dir, "out2.jsonl"), "--cache", file)
      expect(result.exit._tag).toBe("Failure")
      expect(result.err + String(result.exit)).toContain("exists and is not a directory")
      expect(NodeFs.readFileSync(file, "utf8")).toBe("mine")
    }), 30_000)
})
