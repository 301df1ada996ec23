/**
 * `sluice report --evidence`: the figures per model and limit over a record of known pressure (a tokens-per-minute
 * bucket at its limit 80% of the time, a queue behind it), and the CLI writing them as Markdown and CSV.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import { BulkExecutor, BulkRunner, TokenEstimator } from "@sluice/openai"
import { SimConfig, SimFetch, Simulator, VirtualTime } from "@sluice/testing"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Evidence from "../src/internal/evidence.js"
import * as Record from "../src/internal/record.js"
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

/**
 * A simulated run of known pressure, in virtual time: `sluice run`'s executor and recorder (as `sluice run
 * --record` builds them) over the in-process simulator, the lines fed as `BulkRunner.run`'s workers take them.
 *
 * - The pool `gpt-4o-mini` has 60,000 tokens and 10,000 requests a minute (the limits given are the server's).
 *   Every call costs `c` tokens (1,000 of output, fixed, plus its prompt), answered in exactly 2 s.
 * - Bulk: 12 workers over 150 lines. Unlimited, they would send 12 calls every 2 s: 6c tokens a second, 360c a
 *   minute. The full bucket (60,000) takes the first 12 at once, then drains at 6c - 1,000 a second, so it is at
 *   the limit (under 5% left) from about 9 s until the last bulk line is admitted (~92 s), with 12 - 2 = 10 calls
 *   queued (2 on the wire).
 * - Then a trickle: one worker over 8 lines (a call every 2 s: half the limit): the bucket refills past 5% within
 *   a few seconds and the run ends about 18 s after the bulk, so the bucket is at the limit ~80% of the time.
 * - Another client of the same organization asks the server for ~300 tokens three times while the bulk runs, which
 *   the run's limiter does not know of: each time the server grants it, the run's next call meets a 429 and
 *   retries it (the server refuses the other client when its bucket is empty).
 *
 * Tolerances: the share of time at the limit within 2 s of simulated time at either end (samples are a second
 * apart and calls come every 2 s); the demand within 2% (the mean latency the record measures); the peak queue
 * 10 to 12 (the gate of a 429 holds every worker); 429s and retries exactly the server's counts.
 */
describe("sluice report --evidence on a simulated run of known pressure", () => {
  const MODEL = "gpt-4o-mini"
  const POOL = `org:default/pool:${MODEL}`
  const TPM = 60_000
  const OUTPUT = 1_000
  const LATENCY = 2_000
  const WORKERS = 12
  const BULK = 150
  const TRICKLE = 8
  const STEALS = [40_500, 60_500, 80_500]

  const body = (i: number) => ({
    model: MODEL,
    messages: [{ role: "user", content: `[req:l-${i}] Summarise ticket ${i}.` }],
    max_tokens: OUTPUT
  })
  const request = (i: number): BulkRunner.Request => ({
    customId: `l-${i}`,
    url: "/v1/chat/completions",
    line: i + 1,
    body: body(i)
  })

  it.effect(
    "the evidence's figures are the run's: time at the limit, demand, queue, 429s, retries",
    () =>
      Effect.gen(function*() {
        const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-cli-evidence-sim-"))
        const path = NodePath.join(dir, "run.record.jsonl")
        const fetch = yield* SimFetch.make
        const progress = yield* BulkRunner.makeProgress
        let recorder: Record.Recorder | undefined
        const executor = yield* BulkExecutor.make({
          baseUrl: "http://sim.local/v1",
          apiKey: Redacted.make("sk-simulated"),
          tier: undefined,
          budgets: [
            Budget.make(POOL, [
              Budget.Limit.perMinute("requests", 10_000),
              Budget.Limit.perMinute("tokens", TPM)
            ])
          ],
          priority: undefined,
          deadlineMs: undefined,
          fetch,
          progress,
          onEvent: (event) => recorder?.onEvent(event) ?? Effect.void
        })
        const steals: Array<number> = []
        const started = yield* Clock.currentTimeMillis
        yield* VirtualTime.run(Effect.scoped(Effect.gen(function*() {
          recorder = yield* Record.make({
            path,
            run: { input: "in.jsonl", output: "out.jsonl", simulate: "known-pressure", speed: 1 },
            progress,
            limiter: executor.limiter
          })
          const execute = recorder.execute(executor.execute, executor.describe)
          // as `BulkRunner.run`'s workers: a line in flight from when a worker takes it until its answer
          const inFlight = (by: number) => Ref.update(progress.stats, (s) => ({ ...s, inFlight: s.inFlight + by }))
          const line = (i: number) =>
            Effect.zipRight(inFlight(1), Effect.ensuring(Effect.exit(execute(request(i))), inFlight(-1)))
          const other = Effect.forEach(STEALS, (at) =>
            Effect.zipRight(
              Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sleep(started + at - now)),
              Effect.promise(async () => {
                const response = await fetch("http://sim.local/v1/chat/completions", {
                  method: "POST",
                  headers: { authorization: "Bearer sk-other", "content-type": "application/json" },
                  body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "x" }], max_tokens: 290 })
                })
                steals.push(response.status)
              })
            ), { discard: true })
          const bulk = Effect.forEach(Array.from({ length: BULK }, (_, i) => i), line, {
            concurrency: WORKERS,
            discard: true
          })
          const trickle = Effect.forEach(Array.from({ length: TRICKLE }, (_, i) => BULK + i), line, { discard: true })
          yield* Effect.all([Effect.zipRight(bulk, trickle), other], { concurrency: "unbounded", discard: true })
          const counts = yield* Ref.get(progress.stats)
          yield* recorder.end({
            ...counts,
            outcome: "completed",
            stop: undefined,
            total: BULK + TRICKLE,
            notDone: 0,
            alreadyFailed: 0,
            superseded: 0,
            repairedBytes: 0,
            wallMs: (yield* Clock.currentTimeMillis) - counts.startedAt
          })
        })))
        const entries = yield* Record.read(path)
        const stats = yield* Simulator.stats
        const evidence = Evidence.compute(entries)
        const tpm = evidence.byLimit.find((l) => l.scope === POOL && l.limit === "tokens/min")!
        const rpm = evidence.byLimit.find((l) => l.scope === POOL && l.limit === "requests/min")!
        const [model] = evidence.byModel

        // what was simulated: the cost of a call as the server charged it, and the timeline it makes
        const costs = stats.admissions.filter((a) => a.tokens > OUTPUT).map((a) => a.tokens)
        const c = costs.reduce((a, b) => a + b, 0) / costs.length
        const stolen = stats.admissions.filter((a) => a.tokens < OUTPUT).reduce((a, b) => a + b.tokens, 0)
        const refill = TPM / 60 // a second
        const unlimited = (WORKERS / (LATENCY / 1000)) * c // a second
        // the 12 first calls at once, then 6c a second against the refill: under 5% left from then
        const bucketEmpty = (0.95 * TPM - WORKERS * c) / (unlimited - refill)
        const lastBulkAdmission = (BULK * c + stolen - TPM) / refill
        // the last bulk calls answered 2 s later (2 s of refill), then the trickle takes c every 2 s: the bucket's
        // mean level (c/2 below its peaks) is over 5% again within a few seconds
        const backAbove = lastBulkAdmission + LATENCY / 1000 +
          (0.05 * TPM - 2 * refill + c / 2) / (refill - c / 2)
        const end = lastBulkAdmission + LATENCY / 1000 + TRICKLE * (LATENCY / 1000)
        const share = (backAbove - bucketEmpty) / end
        expect(share).toBeGreaterThan(0.78)
        expect(share).toBeLessThan(0.82)
        expect(tpm.amount).toBe(TPM)
        expect(tpm.observedMs / 1000).toBeCloseTo(end, -0.5) // within ~1.6 s
        // the share of time at the limit: within 2 s of simulated time at either end
        expect(Math.abs(tpm.atLimitShare - share)).toBeLessThanOrEqual(4 / end)
        // nothing near the requests limit
        expect(rpm.atLimitShare).toBe(0)
        expect(rpm.requested).toBe(10_000)
        // at the limit, 12 workers with 2 calls on the wire: 10 queued (up to 12 while a 429's gate holds them all)
        expect(tpm.peakQueued).toBeGreaterThanOrEqual(WORKERS - 2)
        expect(tpm.peakQueued).toBeLessThanOrEqual(WORKERS)
        // a token bucket admits its capacity and a minute of refill in its first minute
        expect(Math.abs(tpm.peakUsed - 2 * TPM)).toBeLessThanOrEqual(2 * c)
        // the demand, in the units the run reserves (its estimate of a call, a little above the server's count):
        // 12 workers, a call each every 2 s, without the limit: 6 calls a second, 360 a minute (within 2%)
        const perCall = TokenEstimator.chat(body(100)).tokens // any line's: their prompts differ by a digit at most
        const demand = 60 * (WORKERS / (LATENCY / 1000)) * perCall
        expect(Math.abs(tpm.peakDemand / demand - 1)).toBeLessThanOrEqual(0.02)
        // requested: the demand and 20% to spare, to two significant digits, rounded up
        const step = (n: number) => 10 ** (Math.floor(Math.log10(n)) - 1)
        expect(tpm.requested).toBeGreaterThanOrEqual(Math.ceil((1.2 * 0.98 * demand) / step(demand)) * step(demand))
        expect(tpm.requested).toBeLessThanOrEqual(Math.ceil((1.2 * 1.02 * demand) / step(demand)) * step(demand))
        // what the old formula (reserved in the minute plus the queue) said: a fifth of the demand
        expect(tpm.peakUsed + tpm.peakQueued * perCall).toBeLessThan(demand / 2.5)

        // 429s and retries: the server's own counts of the run's attempts (the other client's aside)
        const attempts = stats.attempts.filter((a) => a.key?.startsWith("l-"))
        const rejected = attempts.filter((a) => a.status === 429).length
        // each of the other client's takes that the server granted cost the run one 429 (the server refused others)
        expect(rejected).toBeGreaterThanOrEqual(1)
        expect(rejected).toBe(steals.filter((status) => status === 200).length)
        expect(model).toMatchObject({ model: MODEL, lines: BULK + TRICKLE, rateLimited: rejected, linesLostTo429: 0 })
        expect(evidence.retriedAfter429).toBe(rejected)
        expect(model!.retriesPerLine).toBeCloseTo((attempts.length - (BULK + TRICKLE)) / (BULK + TRICKLE), 10)
        // in the steady state a bulk line waits behind the 10 queued, a second each
        expect(model!.p95FirstWaitMs).toBeGreaterThanOrEqual(((WORKERS - 2) * c) / refill * 1000 * 0.9)
      }).pipe(
        Effect.scoped,
        Effect.provide(Simulator.layer(SimConfig.make({
          seed: 5,
          models: { [MODEL]: { limits: { rpm: 10_000, tpm: TPM } } },
          enforcement: { settle: "never" },
          latency: { request: { _tag: "fixed", ms: LATENCY }, perOutputTokenMs: 0 },
          output: { fixedTokens: OUTPUT }
        })))
      ),
    60_000
  )
})
