/**
 * Ctrl-C of `sluice pipeline run --workers N` (issue 21; SIGINT to its process group, as a terminal sends it):
 * the coordinator stops (exit 3, "rerun to resume"), the
 * worker processes it started end with it (none left running, holding jobs), and a rerun into the same output
 * finishes every item exactly once. Real processes, BullMQ on a real `redis-server`, the simulator over HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as RedisServer from "@sluice/redis/RedisServer"
import * as Effect from "effect/Effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { collect, sluiceEntry, startSim, twoStages } from "./helpers.js"

let entry = ""
beforeAll(async () => {
  entry = await sluiceEntry()
}, 300_000)
const KEY = "sk-pipeline-sigint-0123456789"

// real time on purpose: real processes, a signal sent at a wall-clock moment
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const started: Array<ChildProcess> = []
afterAll(() => {
  // each coordinator leads its own process group (its workers in it): a failed test leaves none running
  for (const child of started) {
    try {
      process.kill(-child.pid!, "SIGKILL")
    } catch {
      // the group has ended
    }
  }
})

/** The processes whose parent is `pid` (from /proc: Linux). */
const childrenOf = (pid: number): Array<number> =>
  NodeFs.readdirSync("/proc").filter((d) => /^\d+$/.test(d)).flatMap((d) => {
    try {
      const stat = NodeFs.readFileSync(`/proc/${d}/stat`, "utf8")
      return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid ? [Number(d)] : []
    } catch {
      return []
    }
  })

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const lines = (path: string) =>
  NodeFs.existsSync(path) ? NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0) : []

describe("sluice pipeline run --workers N: Ctrl-C", () => {
  // live: real processes and a real signal (TestClock cannot drive other processes)
  it.live(
    "SIGINT stops the coordinator (exit 3) and the workers it started; a rerun finishes each item once",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const redis = (yield* RedisServer.make()).url
        yield* Effect.promise(async () => {
          const sim = await startSim(KEY, {
            latency: { request: { _tag: "uniform", min: 300, max: 500 }, perOutputTokenMs: 0 }
          })
          const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-pipeline-sigint-"))
          try {
            const file = NodePath.join(dir, "sigint.json")
            NodeFs.writeFileSync(file, JSON.stringify(twoStages("sigint", undefined, 2)))
            const n = 40
            const input = NodePath.join(dir, "in.jsonl")
            NodeFs.writeFileSync(
              input,
              Array.from({ length: n }, (_, i) => JSON.stringify({ key: `k${i}`, text: `note ${i}` }) + "\n").join("")
            )
            const output = NodePath.join(dir, "out.jsonl")
            const coordinator = () => {
              const child = spawn(process.execPath, [
                entry,
                "pipeline",
                "run",
                file,
                "--input",
                input,
                "--output",
                output,
                "--workers",
                "2",
                "--redis",
                redis,
                "--base-url",
                sim.url,
                "--api-key-env",
                "SLUICE_SIGINT_KEY",
                "--tier",
                "5",
                "--progress",
                "off"
              ], {
                env: { ...process.env, SLUICE_SIGINT_KEY: KEY },
                stdio: ["ignore", "pipe", "pipe"],
                // a process group of its own, as a shell gives a command: Ctrl-C signals the whole group
                detached: true
              })
              started.push(child)
              return { child, run: collect(child) }
            }

            // 1. interrupted once a few items are through both stages
            const first = coordinator()
            const deadline = Date.now() + 90_000
            while (lines(output).length < 4) {
              if (Date.now() > deadline || first.child.exitCode !== null) {
                throw new Error(`no progress: ${first.run.out()}\n${first.run.err()}`)
              }
              await sleep(50)
            }
            const workers = childrenOf(first.child.pid!)
            expect(workers, "the two workers it started").toHaveLength(2)
            // Ctrl-C at a terminal: SIGINT to the coordinator and to its workers at once
            process.kill(-first.child.pid!, "SIGINT")
            const stopped = await first.run.done
            expect(stopped.code, `${first.run.out()}\n${first.run.err()}`).toBe(3)
            const done = lines(output).length
            expect(done).toBeLessThan(n)
            // its workers end with it (their own SIGINT, and SIGTERM from the coordinator: they hand their jobs back)
            const gone = Date.now() + 20_000
            while (workers.some(alive) && Date.now() < gone) await sleep(100)
            expect(workers.filter(alive), "workers still running after the coordinator stopped").toEqual([])

            // 2. the rerun finishes: every item once
            const second = coordinator()
            const finished = await second.run.done
            expect(finished.code, `${second.run.out()}\n${second.run.err()}`).toBe(0)
            const ids = lines(output).map((l) => JSON.parse(l).custom_id as string)
            expect(ids.length).toBe(n)
            expect(new Set(ids).size).toBe(n)
            expect(second.run.out()).toContain(`${done} already done`)
          } finally {
            await sim.close()
          }
        })
      })),
    180_000
  )
})
