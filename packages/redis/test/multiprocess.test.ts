/**
 * Four OS processes share one organization budget through Redis and hammer it, each through the real
 * RateLimiter with 16 fibers of its own (20,000 tokens/s with a 10,000 burst, costs of 20-200 tokens).
 * Redis is restarted mid-run (state and scripts lost) and is down for a moment (fail-closed: the
 * workers see LimiterStoreError, back off, then carry on). Every admission is logged with the server's
 * TIME inside the script. From the log:
 *
 * - no window exceeds the token-bucket envelope (`capacity + rate × span`), before and after the
 *   restart (each segment starts with a full bucket: an empty Redis has no keys);
 * - utilisation >= 95% while the budget is saturated: the log is replayed through the bucket, and the
 *   budget is saturated at an admission that leaves less than one cost in it. Over the span from the
 *   first such admission once every worker is admitting (the last one's first admission of the
 *   segment) to the last one before Redis is stopped / the workers are told to stop: admitted /
 *   available, available being what the bucket held at the span's start plus its refill over the span
 *   (`windowUtilisation`). What is not admitted is refill that overflowed a full bucket (every
 *   process stalled for longer than the 0.5 s the burst lasts) and the < one cost left at the end.
 *
 * The phases are timed from when every worker is admitting, not from fixed instants: the workers load
 * and connect first (seconds of module loading on a loaded 2-core machine), start together on "go",
 * and say "up" at their first admission and at their first one after Redis is back. So process
 * start-up, and the reconnection delay after the restart (ioredis retries every 50-500 ms, slower on a
 * starved event loop), are outside the measured spans; the whole-segment envelope utilisation, which
 * includes them, is reported next to it.
 *
 * Real processes, a real server and real time: `it.live`.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { RedisLimiterStore } from "@sluice/redis"
import * as RedisServer from "@sluice/redis/RedisServer"
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { envelope, replay, windowUtilisation } from "./envelope.js"

const WORKERS = 4
/**
 * The phases run from the moment every worker is admitting ("up"): before the restart, from then to
 * stopping Redis; after it, from when every worker is admitting again to "stop".
 */
const BEFORE_MILLIS = 3_000
const AFTER_MILLIS = 3_000
/** The longest the workers may take to be up again (a loaded machine, ioredis's reconnect backoff). */
const UP_WITHIN_MILLIS = 20_000
const RATE_PER_MS = 20_000 / 1000
const CAPACITY = 10_000
/** The largest cost a worker asks for (tokens 20-200). */
const MAX_COST = 200

let server: RedisServer.RedisServer
let dir: string
beforeAll(async () => {
  server = await RedisServer.start()
  dir = mkdtempSync(join(tmpdir(), "sluice-mp-"))
})
/** Every worker spawned: one still running when the test ends (it failed or timed out) is killed. */
const children: Array<ChildProcess> = []
afterAll(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
  }
  await server?.close()
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
})

const tsx = createRequire(import.meta.url).resolve("tsx")
const worker = fileURLToPath(new URL("./fixtures/worker.ts", import.meta.url))

interface WorkerResult {
  readonly log: Array<[number, number]>
  readonly storeErrors: number
  readonly errorKinds: Record<string, number>
  readonly startedAt: number
}

/** When each worker last said `up` (admitting, after its start or after store errors). */
const ups: Array<number> = []
const allUpSince = (since: number) =>
  Effect.gen(function*() {
    const started = Date.now()
    while (ups.filter((at) => at >= since).length < WORKERS) {
      if (Date.now() - started > UP_WITHIN_MILLIS) {
        return yield* Effect.die(new Error(`not every worker admitting within ${UP_WITHIN_MILLIS} ms: ${ups}`))
      }
      yield* Effect.sleep("20 millis")
    }
  })

const runWorker = (index: number, out: string, ready: (child: ChildProcess) => void) =>
  new Promise<void>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        "--conditions=sluice-source",
        "--import",
        tsx,
        worker,
        server.url,
        "mp",
        "20000",
        out,
        "16",
        String(index)
      ],
      { stdio: ["pipe", "pipe", "pipe"] }
    )
    children.push(child)
    let lines = ""
    child.stdout.on("data", (chunk) => {
      lines += String(chunk)
      const complete = lines.split("\n")
      lines = complete.pop()!
      for (const line of complete) {
        if (line === "ready") ready(child)
        if (line === "up") ups[index] = Date.now()
      }
    })
    let stderr = ""
    child.stderr.on("data", (chunk) => (stderr += String(chunk)))
    child.on(
      "exit",
      (code) => (code === 0 ? resolve() : reject(new Error(`worker ${index} exited ${code}: ${stderr}`)))
    )
  })

const round = (report: object) =>
  Object.fromEntries(
    Object.entries(report).map((
      [key, value]
    ) => [key, typeof value === "number" ? Math.round(value * 1e4) / 1e4 : value])
  )

describe("RedisLimiterStore across processes", () => {
  // real processes, a real server, real time
  it.live(
    "4 processes share one org budget: never over the envelope, >= 95% used while saturated, through a restart",
    () =>
      Effect.gen(function*() {
        const outs = Array.from({ length: WORKERS }, (_, i) => join(dir, `worker-${i}.json`))
        const readied: Array<ChildProcess> = []
        let allReady: () => void = () => {}
        const ready = new Promise<void>((resolve) => (allReady = resolve))
        const onReady = (child: ChildProcess) => {
          readied.push(child)
          if (readied.length === WORKERS) allReady()
        }
        const workers = Effect.promise(() => Promise.all(outs.map((out, i) => runWorker(i, out, onReady))))
        let stoppingAt = 0
        let stoppedAt = 0
        let restartedAt = 0
        let endedAt = 0
        const chaos = Effect.gen(function*() {
          yield* Effect.promise(() => ready)
          const goAt = Date.now()
          for (const child of readied) child.stdin!.write("go\n")
          yield* allUpSince(goAt)
          yield* Effect.sleep(BEFORE_MILLIS)
          stoppingAt = Date.now() // the server is about to be told to stop
          yield* Effect.promise(() => server.stop())
          stoppedAt = Date.now() // the server has exited
          yield* Effect.sleep("300 millis")
          restartedAt = Date.now() // the new server is not started yet
          yield* Effect.promise(() => server.start())
          yield* allUpSince(restartedAt)
          yield* Effect.sleep(AFTER_MILLIS)
          endedAt = Date.now() // the workers are about to be told to stop
          for (const child of readied) child.stdin!.end("stop\n")
        })
        yield* Effect.all([workers, chaos], { concurrency: "unbounded" })

        const results = outs.map((out) => JSON.parse(readFileSync(out, "utf8")) as WorkerResult)
        const log = results.flatMap((result) => result.log)
        const perWorker = results.map((result) => result.log.length)
        const before = log.filter(([t]) => t < stoppedAt)
        const after = log.filter(([t]) => t > restartedAt)
        const down = log.filter(([t]) => t >= stoppedAt && t <= restartedAt)
        // every process got admissions in both segments; none while Redis was down (fail-closed)
        for (const result of results) {
          expect(result.log.some(([t]) => t < stoppedAt)).toBe(true)
          expect(result.log.some(([t]) => t > restartedAt)).toBe(true)
        }
        expect(down.length).toBe(0)
        expect(results.some((result) => result.storeErrors > 0)).toBe(true)

        // the limit held in every window, before and after the restart (each segment starts full)
        const first = envelope(before, CAPACITY, RATE_PER_MS)
        const second = envelope(after, CAPACITY, RATE_PER_MS)
        expect(first.maxOvershoot).toBeLessThanOrEqual(1e-6 * CAPACITY)
        expect(second.maxOvershoot).toBeLessThanOrEqual(1e-6 * CAPACITY)

        // Saturated spans: the budget is saturated at an admission that leaves less than one cost in the
        // bucket (demand exceeds the refill). A span runs from the first such admission once every worker
        // is admitting (the last one's first admission of the segment) to the last one before Redis is
        // stopped / the workers are told to stop. In between, whatever the bucket made available was
        // admitted or overflowed a full bucket: stalls shorter than the burst lasts cost nothing.
        const allUp = (inSegment: (t: number) => boolean) =>
          Math.max(...results.map((result) => Math.min(...result.log.filter(([t]) => inSegment(t)).map(([t]) => t))))
        const saturatedSpan = (segment: typeof log, from: number, to: number) => {
          const saturated = replay(segment, CAPACITY, RATE_PER_MS)
            .filter(([t, level]) => t >= from && t <= to && level < MAX_COST)
          expect(saturated.length).toBeGreaterThan(1) // the workers did saturate the budget
          return windowUtilisation(segment, CAPACITY, RATE_PER_MS, saturated[0]![0], saturated.at(-1)![0])
        }
        const beforeUp = allUp((t) => t < stoppedAt)
        const afterUp = allUp((t) => t > restartedAt)
        const beforeSpan = saturatedSpan(before, beforeUp, stoppingAt)
        const afterSpan = saturatedSpan(after, afterUp, endedAt)
        // the figures, for the README and the report
        process.stdout.write(
          `multi-process: ${
            JSON.stringify({
              perWorker,
              storeErrors: results.map((r) => r.storeErrors),
              segments: { before: round(first), after: round(second) },
              saturated: {
                before: {
                  ...round(beforeSpan),
                  millis: beforeSpan.to - beforeSpan.from,
                  allUpToSaturatedMillis: beforeSpan.from - beforeUp
                },
                after: {
                  ...round(afterSpan),
                  millis: afterSpan.to - afterSpan.from,
                  allUpToSaturatedMillis: afterSpan.from - afterUp
                }
              }
            })
          }\n`
        )
        for (const span of [beforeSpan, afterSpan]) {
          // the replay is consistent (what was available = admitted + overflowed + left), every
          // admission fit the bucket as replayed, and the span is long enough to mean something
          expect(span.admitted + span.wasted + span.endLevel).toBeCloseTo(span.available, 3)
          expect(span.minLevel).toBeGreaterThanOrEqual(-1e-6 * CAPACITY)
          expect(span.to - span.from).toBeGreaterThan(1_000)
          expect(span.utilisation).toBeGreaterThanOrEqual(0.95)
        }
      }),
    60_000
  )
})

describe("holds with a lease across processes", () => {
  const LEASE = 2_000
  const LIMIT = 90_000
  // real processes, a real kill -9 and Redis's own TIME: real time (about 6 s idle, most of it the child's start-up; 15 s at load 25)
  it.live("a process renewing keeps its hold past the lease; killed with kill -9, its hold is free a lease later", () =>
    Effect.gen(function*() {
      const child = spawn(
        process.execPath,
        [
          "--conditions=sluice-source",
          "--import",
          tsx,
          fileURLToPath(new URL("./fixtures/holder.ts", import.meta.url)),
          server.url,
          "lease",
          String(LEASE),
          String(LIMIT)
        ],
        { stdio: ["ignore", "pipe", "pipe"] }
      )
      children.push(child)
      let stderr = ""
      child.stderr.on("data", (chunk) => (stderr += String(chunk)))
      yield* Effect.async<void, Error>((resume) => {
        child.stdout.on("data", (chunk) => String(chunk).includes("held") && resume(Effect.void))
        child.on("exit", (code) => resume(Effect.fail(new Error(`holder exited ${code}: ${stderr}`))))
      })
      const { holds } = yield* RedisLimiterStore.makeWithHolds({
        url: server.url,
        keyPrefix: "lease",
        commandTimeout: "5 seconds"
      })
      const claims = [{ scope: "batch:gpt-4o", capacity: LIMIT }]
      const takeAll = holds.take("other", claims, 1, LEASE)
      // alive and renewing: held longer than a lease
      yield* Effect.sleep(LEASE * 1.5)
      expect(yield* holds.held("batch:gpt-4o")).toBe(LIMIT)
      expect(yield* takeAll).toBe(false)
      child.kill("SIGKILL")
      const killed = Date.now()
      // its last renewal was at most a third of a lease ago: the hold is still there at once, then lapses
      expect(yield* takeAll).toBe(false)
      while (!(yield* takeAll)) {
        if (Date.now() - killed > LEASE + 5_000) return yield* Effect.die(new Error("the hold never lapsed"))
        yield* Effect.sleep("50 millis")
      }
      const freedAfter = Date.now() - killed
      expect(freedAfter).toBeGreaterThan(LEASE / 2)
      // (a loaded machine delays the polls here, not the expiry)
      expect(freedAfter).toBeLessThanOrEqual(LEASE + 2_000)
      expect(yield* holds.held("batch:gpt-4o")).toBe(1)
    }).pipe(Effect.scoped))
})
