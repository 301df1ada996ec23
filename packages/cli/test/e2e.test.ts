// End-to-end through the real `sluice` process (packages/cli/src/main.ts, bundled once: see `sluiceEntry`; the
// bad-usage case starts packages/cli/bin/sluice.mjs itself) against the simulated OpenAI over HTTP (SimServer,
// started in this test process on a loopback port). These tests use real processes, sockets, signals and wall
// time, which TestClock cannot drive: they run with `it.live`.
import { beforeAll, describe, expect, it } from "@effect/vitest"
import type { SimConfig } from "@sluice/testing"
import { SimStats } from "@sluice/testing"
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { collect, sluiceEntry, startSim as startSimWith, writeChatInput } from "./helpers.js"

const bin = fileURLToPath(new URL("../bin/sluice.mjs", import.meta.url))
let entry = ""
beforeAll(async () => {
  entry = await sluiceEntry()
}, 300_000)
const KEY = "sk-e2e-test-0123456789"

/** The HTTP simulator on a free loopback port, with real time. */
const startSim = (input: Partial<SimConfig.ScenarioInput>) => startSimWith(KEY, input)

const tmp = () => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-e2e-"))

/** `n` chat requests over two models; every `failEvery`th (offset 7) trips the content policy (a 400). */
const writeInput = (path: string, n: number, failEvery = 0) =>
  writeChatInput(
    path,
    n,
    (i) => `[req:id-${i}] request ${i}${failEvery > 0 && i % failEvery === 7 ? " [sim:content-policy]" : ""}`
  )

const sluice = (args: ReadonlyArray<string>, env: Record<string, string> = {}, main = entry) =>
  spawn(process.execPath, [main, ...args], {
    env: { ...process.env, SLUICE_E2E_KEY: KEY, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })

const runArgs = (dir: string, url: string, extra: ReadonlyArray<string> = [], keyEnv = "SLUICE_E2E_KEY") => [
  "run",
  "--input",
  NodePath.join(dir, "in.jsonl"),
  "--output",
  NodePath.join(dir, "out.jsonl"),
  "--base-url",
  url,
  "--api-key-env",
  keyEnv,
  "--progress",
  "log",
  ...extra
]

const outputLines = (path: string): Array<any> =>
  NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l))

const lineCount = (path: string) => {
  try {
    return NodeFs.readFileSync(path, "utf8").split("\n").length - 1
  } catch {
    return 0
  }
}

// real time on purpose: the child is a separate OS process, polled and killed at wall-clock moments
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const expectExactlyOnce = (path: string, n: number) => {
  const ids = outputLines(path).map((l) => l.custom_id as string)
  const unique = new Set(ids)
  expect(ids.length).toBe(n)
  expect(unique.size).toBe(n)
  for (let i = 0; i < n; i++) expect(unique.has(`id-${i}`)).toBe(true)
}

describe("sluice run (real process, HTTP simulator)", () => {
  // live: a real child process and sockets (see the top of the file)
  it.live(
    "faults and 400s: exactly one line per custom_id, 400s never retried, server errors retried",
    () =>
      Effect.promise(async () => {
        const sim = await startSim({
          faults: { rates: { overloaded: 0.03, server_error: 0.02, connection_reset: 0.01 } }
        })
        const dir = tmp()
        const n = 1200
        writeInput(NodePath.join(dir, "in.jsonl"), n, 97)
        const out = NodePath.join(dir, "out.jsonl")
        try {
          const run = collect(sluice(runArgs(dir, sim.url, ["--tier", "5"])))
          const { code } = await run.done
          expect(code).toBe(1) // the content-policy lines fail: "some failed"
          expectExactlyOnce(out, n)
          const failed = outputLines(out).filter((l) => l.error !== null)
          const expectedFailures = Math.floor((n - 7 - 1) / 97) + 1
          expect(failed.length).toBe(expectedFailures)
          expect(failed[0].error).toMatchObject({ kind: "ContentPolicy", code: "content_policy_violation" })
          const stats = await sim.stats()
          // the server's transient faults happened and were retried to success
          expect((stats.byStatus["503"] ?? 0) + (stats.byStatus["500"] ?? 0)).toBeGreaterThan(20)
          expect(SimStats.succeededKeys(stats).size).toBe(n - expectedFailures)
          // a 400 is attempted exactly once
          expect(SimStats.retriedAfter(stats, (a) => a.status === 400)).toEqual([])
          expect(stats.byStatus["429"] ?? 0).toBe(0)
          expect(run.out()).toContain("outcome: completed-with-failures")
          expect(run.out()).toMatch(/retries [1-9]/)
        } finally {
          await sim.close()
        }
      }),
    120_000
  )

  // live: kill -9 lands at random wall-clock moments of a real process
  it.live("kill -9 at random points, then resume: every custom_id exactly once", () =>
    Effect.promise(async () => {
      const sim = await startSim({})
      const dir = tmp()
      const n = 3000
      writeInput(NodePath.join(dir, "in.jsonl"), n, 97)
      const out = NodePath.join(dir, "out.jsonl")
      const rounds: Array<number> = []
      try {
        for (let round = 0; round < 4; round++) {
          const before = lineCount(out)
          const child = sluice(runArgs(dir, sim.url, ["--concurrency", "16", "--tier", "5"]))
          const proc = collect(child)
          // wait until this round has written something, then kill -9 at a random moment
          while (lineCount(out) <= before && child.exitCode === null) await sleep(10)
          await sleep(Math.random() * 400)
          child.kill("SIGKILL")
          await proc.done
          rounds.push(lineCount(out))
        }
        const proc = collect(sluice(runArgs(dir, sim.url, ["--tier", "5"])))
        const { code } = await proc.done
        console.log(`kill -9 rounds: lines after each kill ${rounds.join(", ")}; final exit ${code}`)
        expect(rounds[rounds.length - 1]).toBeLessThan(n) // the kills did cut runs short
        expect(code).toBe(1)
        expectExactlyOnce(out, n)
        const failed = outputLines(out).filter((l) => l.error !== null)
        expect(failed.length).toBe(Math.floor((n - 7 - 1) / 97) + 1)
        expect(proc.out()).toContain("outcome: completed-with-failures")
      } finally {
        await sim.close()
      }
    }), 120_000)

  // live: a real process stopped by the server's quota and by a real SIGINT
  it.live(
    "insufficient_quota stops with exit 3 without burning work; SIGINT too; resume completes",
    () =>
      Effect.promise(async () => {
        const dir = tmp()
        const n = 1500
        writeInput(NodePath.join(dir, "in.jsonl"), n)
        const out = NodePath.join(dir, "out.jsonl")
        // $1 an output token, 4 tokens a call: the quota ends after 100 calls
        const priced = {
          "gpt-4o-mini": { limits: { rpm: 60_000, tpm: 20_000_000 }, pricing: { outputPerMillion: 1_000_000 } },
          "gpt-4o": { limits: { rpm: 60_000, tpm: 5_000_000 }, pricing: { outputPerMillion: 1_000_000 } }
        }
        const broke = await startSim({ models: priced, faults: { quotaUsd: 400 } })
        try {
          const first = collect(sluice(runArgs(dir, broke.url, ["--concurrency", "32"])))
          const r1 = await first.done
          expect(r1.code).toBe(3)
          expect(first.out()).toContain("QuotaExhausted")
          expect(first.out()).toContain("rerun with the same --output to resume")
          const written = outputLines(out)
          expect(written.length).toBeGreaterThanOrEqual(95)
          expect(written.length).toBeLessThanOrEqual(100)
          expect(written.every((l) => l.error === null)).toBe(true)
          const stats = await broke.stats()
          // it stopped sending: after the first quota refusal, only what was already in flight was answered
          expect(stats.byCode["insufficient_quota"] ?? 0).toBeLessThanOrEqual(32)
        } finally {
          await broke.close()
        }

        // topped up: Ctrl-C stops gracefully (exit 3), then a rerun completes
        const sim = await startSim({ latency: { request: { _tag: "uniform", min: 20, max: 60 }, perOutputTokenMs: 0 } })
        try {
          const before = lineCount(out)
          const child = sluice(runArgs(dir, sim.url, ["--concurrency", "8"]))
          const second = collect(child)
          while (lineCount(out) <= before + 20 && child.exitCode === null) await sleep(10)
          child.kill("SIGINT")
          const r2 = await second.done
          expect(r2.code).toBe(3)
          expect(second.out()).toContain("stopped by: signal")
          const third = collect(sluice(runArgs(dir, sim.url)))
          const r3 = await third.done
          expect(r3.code).toBe(0)
          expect(third.out()).toContain("outcome: completed")
          expectExactlyOnce(out, n)
        } finally {
          await sim.close()
        }
      }),
    120_000
  )

  // live: a real process; its stderr and exit code are what is checked
  it.live(
    "malformed lines are reported with line numbers; exit 1; bad usage exits 2; the key never printed",
    () =>
      Effect.promise(async () => {
        const sim = await startSim({})
        const dir = tmp()
        const input = NodePath.join(dir, "in.jsonl")
        const embed = { model: "text-embedding-3-small", input: "x" }
        NodeFs.writeFileSync(
          input,
          [
            JSON.stringify({ custom_id: "a", method: "POST", url: "/v1/embeddings", body: embed }),
            "{oops",
            JSON.stringify({ custom_id: "a", method: "POST", url: "/v1/embeddings", body: embed }),
            JSON.stringify({ custom_id: "b", method: "POST", url: "/v1/audio/speech", body: {} }),
            JSON.stringify({ method: "POST", url: "/v1/embeddings", body: {} }),
            JSON.stringify({
              custom_id: "c",
              method: "POST",
              url: "/v1/responses",
              body: { model: "gpt-4o", input: "x" }
            }),
            JSON.stringify({
              custom_id: "d",
              method: "POST",
              url: "/v1/embeddings",
              body: { model: "no-such-model", input: "x" }
            })
          ].join("\n") + "\n"
        )
        try {
          const run = collect(sluice(runArgs(dir, sim.url)))
          const { code } = await run.done
          expect(code).toBe(1)
          expect(run.err()).toMatch(/in\.jsonl:2: malformed-json/)
          expect(run.err()).toMatch(/in\.jsonl:3: duplicate-custom-id \(a\)/)
          expect(run.err()).toMatch(/in\.jsonl:4: unsupported-url \(b\)/)
          expect(run.err()).toMatch(/in\.jsonl:5: missing-custom-id/)
          const errors = NodeFs.readFileSync(NodePath.join(dir, "out.errors.jsonl"), "utf8").trim().split("\n")
            .map((l) => JSON.parse(l).line)
          expect(errors).toEqual([2, 3, 4, 5])
          const lines = outputLines(NodePath.join(dir, "out.jsonl"))
          expect(lines.map((l) => l.custom_id).sort()).toEqual(["a", "c", "d"])
          // an unknown model is a typed terminal failure of its line, not of the run
          expect(lines.find((l) => l.custom_id === "d").error).toMatchObject({
            kind: "NotFound",
            code: "model_not_found"
          })
          for (const text of [run.out(), run.err(), NodeFs.readFileSync(NodePath.join(dir, "out.jsonl"), "utf8")]) {
            expect(text).not.toContain(KEY)
          }

          // a wrong key stops the run at once (exit 3) without writing a line: a rerun with the right key does
          // all the work; the key is not printed
          const wrongDir = tmp()
          NodeFs.copyFileSync(input, NodePath.join(wrongDir, "in.jsonl"))
          const wrong = collect(sluice(runArgs(wrongDir, sim.url), { SLUICE_E2E_KEY: "sk-wrong-key-9876543210" }))
          expect((await wrong.done).code).toBe(3)
          expect(wrong.out()).toContain("Unauthorized")
          expect(lineCount(NodePath.join(wrongDir, "out.jsonl"))).toBe(0)
          expect(wrong.out() + wrong.err()).not.toContain("sk-wrong-key-9876543210")

          // the process maps bad usage to exit 2 (the cases themselves are covered in process: Cli.test.ts); started
          // through the bin, which runs the workspace's sources
          const bad = collect(sluice(["run", "--output", NodePath.join(dir, "x.jsonl")], {}, bin))
          expect((await bad.done).code).toBe(2)
        } finally {
          await sim.close()
        }
      }),
    120_000
  )
  // live: a real process killed -9 over HTTP (its files uploaded multipart) at three points of a batch's life: just
  // after its file is uploaded and recorded (submit: the batch may not exist yet), while it is polled, and while its
  // output downloads (the simulator's output files take 1.5 s to arrive: the state says completed, not finished)
  it.live.each(
    [
      ["just after the upload", (s: any) => s?.batches.length > 0, 0],
      ["mid-poll", (s: any) => s?.batches.some((b: any) => b.status === "in_progress") === true, 0],
      [
        "during the output's download",
        (s: any) => s?.batches.some((b: any) => b.status === "completed" && !b.finished) === true,
        1500
      ]
    ] as const
  )(
    "--via batch: kill -9 %s, then a rerun collects the batches: no batch created twice",
    ([_, killPoint, downloadMs]) =>
      Effect.promise(async () => {
        const sim = await startSim({
          batch: { validatingMs: 200, inProgressMs: 1200, perRequestMs: 2, finalizingMs: 200, downloadMs }
        })
        const n = 300
        const dir = tmp()
        writeInput(NodePath.join(dir, "in.jsonl"), n)
        const out = NodePath.join(dir, "out.jsonl")
        const args = runArgs(dir, sim.url, ["--via", "batch", "--batch-poll", "100ms"])
        const state = (): any => {
          try {
            return JSON.parse(NodeFs.readFileSync(NodePath.join(dir, "out.batch.json"), "utf8"))
          } catch {
            return undefined // not written yet
          }
        }
        try {
          const child = sluice(args)
          const first = collect(child)
          while (child.exitCode === null && !killPoint(state())) {
            await sleep(5)
          }
          child.kill("SIGKILL")
          expect((await first.done).signal).toBe("SIGKILL")
          expect(lineCount(out)).toBeLessThan(n)
          const resumed = collect(sluice(args))
          expect((await resumed.done).code).toBe(0)
          expectExactlyOnce(out, n)
          expect(resumed.out()).toMatch(/batch lines: \d+ succeeded, 0 failed/)
          // the server's batches are the state's, n lines in all: none created twice, no line uploaded twice
          const response = await fetch(`${sim.url}/batches?limit=100`, { headers: { authorization: `Bearer ${KEY}` } })
          const created = ((await response.json()) as { data: Array<any> }).data
          expect(new Set(created.map((b) => b.id))).toEqual(new Set(state().batches.map((b: any) => b.batchId)))
          expect(created.length).toBe(state().batches.length)
          expect(created.reduce((sum, b) => sum + b.request_counts.total, 0)).toBe(n)
        } finally {
          await sim.close()
        }
      }),
    120_000
  )
})
