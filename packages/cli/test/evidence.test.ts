/**
 * `sluice report --evidence`: the figures per model and limit over a record of known pressure (a tokens-per-minute
 * bucket at its limit 80% of the time, a queue behind it), and the CLI writing them as Markdown and CSV.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Evidence from "../src/internal/evidence.js"
import type * as Record from "../src/internal/record.js"
import { capture } from "./helpers.js"

const scope = "org:default/pool:gpt-4o"
const start = Date.UTC(2026, 0, 5, 10, 0, 0)

/**
 * 300 seconds: the TPM bucket (30,000) empty (at the limit) in 4 seconds of every 5, with 10 calls queued then
 * (0 otherwise); 500 tokens reserved a second over 1 call each; 2 429s every 10 s, all retried; 40 lines of 2
 * attempts and 60 of 1, each waiting 1 s before its first dispatch.
 */
const record = (): ReadonlyArray<Record.Entry> => {
  const entries: Array<Record.Entry> = [{
    type: "run",
    version: 1,
    t: start,
    input: "in",
    output: "out",
    simulate: null,
    speed: 1
  }]
  for (let s = 1; s <= 300; s++) {
    const atLimit = s % 5 !== 0
    entries.push({
      type: "second",
      t: start + s * 1000,
      admitted: 1,
      waits: 1,
      waitMs: 1000,
      succeeded: 1,
      rateLimited: s % 10 === 0 ? { "gpt-4o": { "tokens/min": 2 } } : {},
      errors: {},
      retries: s % 10 === 0 ? { RateLimited: 2 } : {},
      latency: [],
      reserved: { [scope]: { requests: 1, tokens: 500 } },
      inFlight: 12,
      queued: atLimit ? 10 : 0,
      levels: [[scope, "tokens", 60_000, atLimit ? 0 : 20_000, 30_000], [scope, "requests", 60_000, 400, 500]]
    })
  }
  for (let i = 0; i < 100; i++) {
    entries.push({
      type: "line",
      t: start + 300_000,
      id: `l-${i}`,
      line: i + 1,
      model: "gpt-4o",
      waitedMs: 1000,
      firstWaitMs: 1000,
      attempts: i < 40 ? 2 : 1,
      outcome: "ok"
    })
  }
  return entries
}

describe("sluice report --evidence", () => {
  it("measures the pressure the record holds", () => {
    const evidence = Evidence.compute(record())
    const tpm = evidence.byLimit.find((l) => l.limit === "tokens/min")!
    expect(tpm.amount).toBe(30_000)
    expect(tpm.observedMs).toBe(300_000)
    expect(tpm.atLimitShare).toBeCloseTo(0.8, 10)
    expect(tpm.peakQueued).toBe(10)
    // a minute: 60 seconds of 500 tokens, and 10 queued calls of 500 tokens each
    expect(tpm.peakUsed).toBe(30_000)
    expect(tpm.peakDemand).toBe(35_000)
    expect(tpm.requested).toBe(42_000)
    expect(tpm.perDay).toEqual({ "2026-01-05": 150_000 })
    const rpm = evidence.byLimit.find((l) => l.limit === "requests/min")!
    expect(rpm.atLimitShare).toBe(0)
    expect(rpm.requested).toBe(500)
    expect(evidence.retriedAfter429).toBe(60)
    expect(evidence.byModel).toEqual([{
      model: "gpt-4o",
      lines: 100,
      rateLimited: 60,
      linesLostTo429: 0,
      retriesPerLine: 0.4,
      meanFirstWaitMs: 1000,
      p95FirstWaitMs: 1000
    }])
  })

  it.effect("writes Markdown and CSV", () =>
    Effect.gen(function*() {
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-cli-evidence-"))
      const path = NodePath.join(dir, "run.record.jsonl")
      NodeFs.writeFileSync(path, record().map((e) => JSON.stringify(e)).join("\n") + "\n")
      const result = yield* capture(["report", path, "--evidence", NodePath.join(dir, "evidence.md")])
      expect(result.exit._tag, result.err).toBe("Success")
      const md = NodeFs.readFileSync(NodePath.join(dir, "evidence.md"), "utf8")
      expect(md).toContain(`| ${scope} | tokens/min | 30,000 | 80.0% | 30,000 | 35,000 | 10 | 42,000 |`)
      expect(md).toContain("| gpt-4o | 100 | 60 | 60 | 0 | 0.40 | 1,000 ms / 1,000 ms |")
      const csv = NodeFs.readFileSync(NodePath.join(dir, "evidence.csv"), "utf8").trim().split("\n")
      expect(csv[0]).toBe("scope,limit,current,observed_s,at_limit_share,peak_used,peak_demand,peak_queue,requested")
      expect(csv).toContain(`"${scope}",tokens/min,30000,300.0,0.8000,30000,35000,10,42000`)
      const none = yield* capture(["report", path])
      expect(String(none.exit)).toContain("give --html FILE, --evidence FILE or both")
    }))
})
