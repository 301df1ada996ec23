/**
 * `sluice run --record FILE` and `sluice report FILE --html`: the record of a simulated run (`--simulate`)
 * against the simulator's own counts, its segments across a resume (a torn last line cut), its path checks, and
 * the report's embedded data against the record.
 */
import { describe, expect, it } from "@effect/vitest"
import { BulkRunner } from "@sluice/openai"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Record from "../src/internal/record.js"
import { capture, chatBody, runRecorded, writeChatLines } from "./helpers.js"

/**
 * A server that enforces its 600 requests per minute per second too (10 a second), which the limits given
 * (`--limits`) do not say: the client's first burst meets 429s (which it retries) until it learns the burst.
 */
const scenario = {
  name: "record",
  organization: "org-record",
  seed: 3,
  models: { "gpt-4o-mini": { limits: { rpm: 600, tpm: 400_000 }, contextWindow: 128_000 } },
  latency: { request: { _tag: "uniform", min: 100, max: 300 }, perOutputTokenMs: 0 },
  output: { fixedTokens: 4 },
  faults: { rates: { server_error: 0.03 } },
  enforcement: { subWindowMs: 1000 }
}

const setup = (lines: number) => {
  const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-cli-record-"))
  const scenarioPath = NodePath.join(dir, "scenario.json")
  NodeFs.writeFileSync(scenarioPath, JSON.stringify(scenario))
  const limits = NodePath.join(dir, "limits.json")
  NodeFs.writeFileSync(limits, JSON.stringify({ models: { "gpt-4o-mini": { rpm: 600, tpm: 400_000 } } }))
  const input = NodePath.join(dir, "in.jsonl")
  writeChatLines(input, lines, "l", (i) => chatBody("gpt-4o-mini", `[req:${i}] hello`, 8))
  const run = (record = NodePath.join(dir, "run.record.jsonl")) =>
    runRecorded({
      input,
      output: NodePath.join(dir, "out.jsonl"),
      simulate: scenarioPath,
      record,
      extra: ["--limits", limits]
    })
  return { dir, input, record: NodePath.join(dir, "run.record.jsonl"), run }
}

const sum = (counts: { readonly [k: string]: number }) => Object.values(counts).reduce((a, b) => a + b, 0)

describe("sluice run --record", () => {
  // live: `Cli.run` reads and writes real files through Node streams, so the embedded simulator runs on its own
  // scaled clock (`--speed 20`): about 15 s of simulated time in under a second
  it.live(
    "per-second figures add up to the simulator's counts; a rerun appends a segment past a torn line",
    () =>
      Effect.gen(function*() {
        const { dir, record, run } = setup(100)
        const first = yield* run()
        expect(first.exit._tag, first.err).toBe("Success")
        const entries = yield* Record.read(record)
        const seconds = entries.filter((e) => e.type === "second")
        const lines = entries.filter((e) => e.type === "line")
        const end = entries.find((e) => e.type === "end")!
        expect(entries[0]).toMatchObject({
          type: "run",
          version: 1,
          simulate: expect.stringContaining("scenario.json")
        })
        expect(seconds.length).toBeGreaterThan(3)
        // samples follow the Clock: each at least a (simulated) second after the one before, but the last (the end),
        // within two real milliseconds (40 simulated at --speed 20): the scaled clock reads `Date.now()`, whole
        // milliseconds, and a 50 ms timer read that way can show 49 (seen: 980)
        for (let i = 1; i < seconds.length - 1; i++) {
          expect(seconds[i]!.t - seconds[i - 1]!.t).toBeGreaterThanOrEqual(960)
        }

        // what the client recorded each second, summed, is what the simulator counted on its side
        const sim = end.simulator!
        const sent = seconds.reduce((a, s) => a + s.admitted, 0)
        const limited = seconds.reduce((a, s) => a + sum(s.rateLimited["gpt-4o-mini"] ?? {}), 0)
        const otherErrors = seconds.reduce((a, s) => a + sum(s.errors), 0)
        expect(sent).toBe(sum(sim.byStatus))
        expect(limited).toBeGreaterThan(0)
        expect(limited).toBe(sim.byStatus["429"])
        expect(limited).toBe(end.rateLimited)
        expect(otherErrors).toBe(sim.byStatus["500"] ?? 0)
        expect(seconds.reduce((a, s) => a + s.succeeded, 0)).toBe(sim.byStatus["200"])
        expect(seconds.reduce((a, s) => a + sum(s.retries), 0)).toBe(end.retries)
        expect(seconds.reduce((a, s) => a + s.latency.reduce((b, [, n]) => b + n, 0), 0)).toBe(sim.byStatus["200"])
        // the buckets of the pool charged, against the limits the server's headers taught
        expect(seconds.at(-1)!.levels).toContainEqual(
          ["org:default/pool:gpt-4o-mini", "requests", 60_000, expect.any(Number), 600]
        )
        // per line: one entry each, its attempts the ones sent
        expect(lines.length).toBe(100)
        expect(new Set(lines.map((l) => l.id)).size).toBe(100)
        expect(lines.reduce((a, l) => a + l.attempts, 0)).toBe(sent)
        expect(lines.filter((l) => l.outcome === "ok").length).toBe(end.succeeded)

        // a crash mid-write leaves a torn line: the rerun cuts it and appends a segment of its own
        NodeFs.appendFileSync(record, "{\"type\":\"second\",\"t\":12")
        expect((yield* Record.read(record)).length).toBe(entries.length)
        const second = yield* run()
        expect(second.exit._tag, second.err).toBe("Success")
        const both = yield* Record.read(record)
        expect(both.slice(0, entries.length)).toEqual(entries)
        expect(both.filter((e) => e.type === "run").length).toBe(2)
        expect(both.filter((e) => e.type === "end").at(-1)).toMatchObject({ alreadyDone: 100, succeeded: 0 })
        expect(NodeFs.readFileSync(record, "utf8")).not.toContain("\"t\":12\n")

        // the report: its embedded data is the record's
        const html = NodePath.join(dir, "report.html")
        const report = yield* capture(["report", record, "--html", html])
        expect(report.exit._tag, report.err).toBe("Success")
        const page = NodeFs.readFileSync(html, "utf8")
        const embedded = /<script type="application\/json" id="sluice-record">([\s\S]*?)<\/script>/.exec(page)![1]!
        expect(JSON.parse(embedded)).toEqual(both)
        expect(page).toContain(`${limited} 429s`)
        expect(page).not.toMatch(/https?:\/\//)
      }),
    30_000
  )

  // live: a real child process and real files (TestClock cannot drive another process)
  it.live("refuses a record that is the output, or a file that is not a record", () =>
    Effect.gen(function*() {
      const { dir, input, run } = setup(3)
      const same = yield* runRecorded({
        input,
        output: NodePath.join(dir, "out.jsonl"),
        simulate: "tier1",
        record: NodePath.join(dir, "out.jsonl")
      })
      expect(Exit.isFailure(same.exit)).toBe(true)
      expect(same.err + String(same.exit)).toContain("the run record")
      const onInput = yield* runRecorded({
        input,
        output: NodePath.join(dir, "o2.jsonl"),
        simulate: "tier1",
        record: input
      })
      expect(String(onInput.exit)).toContain(`the run record ${input} is the input`)
      // a file that exists and is not a record is never appended to
      const notRecord = NodePath.join(dir, "notes.txt")
      NodeFs.writeFileSync(notRecord, "my notes\n")
      const refused = yield* run(notRecord)
      expect(String(refused.exit)).toContain("is not a run record")
      expect(NodeFs.readFileSync(notRecord, "utf8")).toBe("my notes\n")
      // a run refused after its segment began (its output locked by another run) still ends the segment
      const record = NodePath.join(dir, "locked.record.jsonl")
      const locked = yield* Effect.scoped(
        Effect.zipRight(BulkRunner.lock(NodePath.join(dir, "out.jsonl")), run(record))
      )
      expect(String(locked.exit)).toContain("lock")
      const entries = yield* Record.read(record)
      expect(entries.map((e) => e.type)).toEqual(["run", "second", "end"])
      expect(entries.at(-1)).toMatchObject({ type: "end", outcome: "refused", total: 0 })
      expect((entries.at(-1) as Record.EndEntry).reason).toContain("lock")
    }), 30_000)

  it.effect("reading: a line that is not an entry is named; a torn last line is skipped", () =>
    Effect.gen(function*() {
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-cli-record-"))
      const path = NodePath.join(dir, "r.jsonl")
      const head = JSON.stringify({
        type: "run",
        version: 1,
        t: 0,
        input: "in",
        output: "out",
        simulate: null,
        speed: 1
      })
      NodeFs.writeFileSync(path, `${head}\n{"type":"line","t":1}\n${head}\n`)
      const error = yield* Effect.flip(Record.read(path))
      expect(error).toBeInstanceOf(Record.RecordError)
      expect(error.line).toBe(2)
      expect(error.message).toContain("not a run record entry")
      NodeFs.writeFileSync(path, `{"type":"end"}\n`)
      expect((yield* Effect.flip(Record.read(path))).line).toBe(1)
      NodeFs.writeFileSync(path, `${head}\n${head.slice(0, 20)}`)
      expect(yield* Record.read(path)).toHaveLength(1)
    }))

  it("latency quantiles: within a bucket (19%) of the exact ones", () =>
    FastCheck.assert(
      FastCheck.property(
        FastCheck.array(FastCheck.integer({ min: 1, max: 120_000 }), { minLength: 1, maxLength: 200 }),
        FastCheck.constantFrom(0.5, 0.9, 0.99),
        (latencies, q) => {
          const histogram = new Map<number, number>()
          for (const ms of latencies) {
            histogram.set(Record.latencyBucket(ms), (histogram.get(Record.latencyBucket(ms)) ?? 0) + 1)
          }
          const sorted = [...latencies].sort((a, b) => a - b)
          const exact = sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!
          const estimate = Record.quantile(histogram, q)!
          expect(estimate).toBeLessThanOrEqual(exact)
          expect(estimate).toBeGreaterThan(exact / 2 ** 0.25 - 1e-9)
        }
      )
    ))
})
