// `sluice run --via batch|auto` in this process against the embedded simulator (its Batch API timeline shortened to
// well under a second): every custom_id once in the live output format, the state file beside the output, the
// auto plan's decision and arithmetic, the enqueued-token limits of --limits.
import { describe, expect, it } from "@effect/vitest"
import { Cli } from "@sluice/cli"
import { LimiterStore, RateLimiter } from "@sluice/core"
import { TokenEstimator } from "@sluice/openai"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import OpenAIClient from "openai"
import * as Batch from "../src/internal/batch.js"
import { capture, startSim, writeChatInput } from "./helpers.js"

const line = (id: string, model: string, content: string, url = "/v1/chat/completions") =>
  JSON.stringify({
    custom_id: id,
    method: "POST",
    url,
    body: url === "/v1/images/generations"
      ? { model, prompt: content }
      : { model, messages: [{ role: "user", content }], max_tokens: 16 }
  })

const setup = (
  lines: ReadonlyArray<string>,
  enqueued: Record<string, number> = {},
  batch = { validatingMs: 50, inProgressMs: 100, perRequestMs: 1, finalizingMs: 50 }
) => {
  const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-batch-"))
  const scenario = NodePath.join(dir, "scenario.json")
  NodeFs.writeFileSync(
    scenario,
    JSON.stringify({
      name: "batch",
      models: {
        "gpt-4o-mini": {
          limits: { rpm: 10_000, tpm: 2_000_000 },
          pricing: { inputPerMillion: 0.15, outputPerMillion: 0.6 }
        },
        "gpt-4o": { limits: { rpm: 5_000, tpm: 800_000 }, pricing: { inputPerMillion: 2.5, outputPerMillion: 10 } },
        "dall-e-3": { kind: "image", limits: { rpm: 500, ipm: 500 } }
      },
      latency: { request: { _tag: "fixed", ms: 0 }, perOutputTokenMs: 0 },
      output: { fixedTokens: 4 },
      batch
    })
  )
  const input = NodePath.join(dir, "in.jsonl")
  NodeFs.writeFileSync(input, lines.join("\n") + "\n")
  const limits = NodePath.join(dir, "limits.json")
  const models: Record<string, Record<string, number>> = {
    "gpt-4o-mini": { rpm: 10_000, tpm: 2_000_000 },
    "gpt-4o": { rpm: 5_000, tpm: 800_000 }
  }
  for (const [model, tokens] of Object.entries(enqueued)) models[model] = { ...models[model], enqueuedTokens: tokens }
  NodeFs.writeFileSync(limits, JSON.stringify({ models }))
  const output = NodePath.join(dir, "out.jsonl")
  const args = (...extra: ReadonlyArray<string>) => [
    "run",
    "--input",
    input,
    "--output",
    output,
    "--simulate",
    scenario,
    "--limits",
    limits,
    "--batch-poll",
    "20ms",
    "--progress",
    "off",
    ...extra
  ]
  const written = (): Array<any> =>
    NodeFs.readFileSync(output, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l))
  return { dir, output, args, written, state: Cli.defaultBatchStatePath(output) }
}

const chat = (n: number) =>
  Array.from({ length: n }, (_, i) => line(`id-${i}`, i % 2 === 0 ? "gpt-4o-mini" : "gpt-4o", `question ${i}`))

describe("the batches' ETA in the progress line", () => {
  it("at the rate lines came back so far; unknown before any; nothing with no line in a batch", () => {
    // 1,000 lines back in 10 minutes: the 3,000 in batches need 30 more
    expect(Batch.etaText(3_000, 1_000, 600_000)).toBe("ETA ≈ 30.0 min at the rate so far")
    expect(Batch.etaText(10, 20, 1_000)).toBe("ETA ≈ 1s at the rate so far")
    expect(Batch.etaText(3_000, 0, 600_000)).toBe("ETA ? (none back yet; a batch ends within its 24 h window)")
    expect(Batch.etaText(3_000, 5, 0)).toContain("ETA ?")
    expect(Batch.etaText(0, 1_000, 600_000)).toBeUndefined()
  })

  it("after a resume: only the lines of batches that ended since the run started set the rate", () => {
    const since = 10_000_000
    const record = (batchId: string, status: string, endedAt?: number) => ({
      key: batchId,
      model: "gpt-4o-mini",
      endpoint: "/v1/chat/completions",
      customIds: [],
      lines: [],
      tokens: 0,
      bytes: 0,
      inputFileId: `file-${batchId}`,
      uploadedAt: 0,
      batchId,
      status,
      attempts: 1,
      released: [],
      finished: false,
      ...(endedAt === undefined ? {} : { endedAt })
    })
    const rate = Batch.etaRate(since)
    // the state resumed from: "old" ended (not yet delivered); "down" and "late" in progress
    rate.resumed({ version: 1, job: "j", batches: [record("old", "completed"), record("down", "in_progress")] })
    // the first poll: "down" ended an hour before this run (the Batch API's time), "late" after it started, "bare"
    // (a server that gives no time) seen ended now, "skew" 20 s before the start by a server clock that runs behind
    // ours (within the margin: this run's)
    const polled = [
      record("old", "completed"),
      record("down", "completed", since - 3_600_000),
      record("late", "completed", since + 60_000),
      record("bare", "failed"),
      record("skew", "completed", since - 20_000)
    ]
    rate.seen({ version: 1, job: "j", batches: polled }, since + 120_000)
    for (let i = 0; i < 9_000; i++) rate.delivered(i % 3 === 0 ? "old" : "down")
    for (let i = 0; i < 500; i++) rate.delivered("late")
    for (let i = 0; i < 500; i++) rate.delivered("bare")
    for (let i = 0; i < 200; i++) rate.delivered("skew")
    rate.delivered(null)
    // 1,200 lines back in the 10 minutes since the start (not 10,201): the 3,000 left need 25 more
    expect(rate.text(3_000, since + 600_000)).toBe("ETA ≈ 25.0 min at the rate so far")
  })
})

describe("a batch in the progress line and the summary", () => {
  it("its model, the lines the Batch API did of it, its status", () => {
    const record = {
      key: "j-1",
      model: "gpt-4o-mini",
      endpoint: "/v1/chat/completions",
      customIds: ["a", "b", "c"],
      lines: [1, 2, 3],
      tokens: 0,
      bytes: 0,
      inputFileId: "file-1",
      uploadedAt: 0,
      attempts: 0,
      released: [],
      finished: false
    }
    expect(Batch.perBatch(record)).toBe("gpt-4o-mini 0/3 done, uploaded")
    expect(
      Batch.perBatch({ ...record, status: "in_progress", requestCounts: { total: 5_000, completed: 1_200, failed: 3 } })
    )
      .toBe("gpt-4o-mini 1,203/5,000 done, in_progress")
    // a count of 0 requests (validating) falls back to the lines the batch holds
    expect(Batch.perBatch({ ...record, status: "validating", requestCounts: { total: 0, completed: 0, failed: 0 } }))
      .toBe("gpt-4o-mini 0/3 done, validating")
  })

  it.effect("the progress line names the batches in flight (three at most), from the state resumed", () =>
    Effect.gen(function*() {
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-batch-progress-"))
      const statePath = NodePath.join(dir, "out.batch.json")
      const record = (i: number, done: number, finished = false) => ({
        key: `j-${i}`,
        model: i % 2 === 0 ? "gpt-4o-mini" : "gpt-4o",
        endpoint: "/v1/chat/completions",
        customIds: Array.from({ length: 100 }, (_, k) => `${i}-${k}`),
        lines: Array.from({ length: 100 }, (_, k) => k),
        tokens: 0,
        bytes: 0,
        inputFileId: `file-${i}`,
        uploadedAt: 0,
        batchId: `batch_${i}`,
        status: finished ? "completed" : "in_progress",
        requestCounts: { total: 100, completed: done, failed: 0 },
        attempts: 1,
        released: [],
        finished
      })
      const batches = [record(0, 100, true), record(1, 40), record(2, 7), record(3, 0), record(4, 99)]
      NodeFs.writeFileSync(statePath, JSON.stringify({ version: 1, job: "j", batches }))
      const limiter = yield* RateLimiter.make({ budgets: [] }).pipe(Effect.provide(LimiterStore.layerMemory))
      const batch = yield* Batch.make({
        client: new OpenAIClient({ apiKey: "sk-progress" }),
        limiter,
        statePath,
        accepts: () => true,
        cancel: false,
        restart: false,
        poll: 1_000,
        lease: "2m",
        report: () => Effect.void
      })
      yield* batch.offload.prepare!
      expect(yield* batch.progress).toBe(
        "batches: 4 in_progress, 1 completed; lines 400 in batches, 0 back; in flight: gpt-4o 40/100 done, " +
          "in_progress, gpt-4o-mini 7/100 done, in_progress, gpt-4o 0/100 done, in_progress, 1 more"
      )
    }).pipe(Effect.scoped))
})

describe("sluice run --via (in process, embedded simulator)", () => {
  // `Cli.run` does real file I/O and runs the embedded simulator on the clock it installs itself (the Batch API's
  // timeline here is under a second of wall time).
  // live: Cli.run writes real files through Node streams, whose callbacks TestClock cannot advance to (as it.effect it hangs)
  it.live(
    "--via batch: every line through the Batch API once, the image line live, a refused line named",
    () =>
      Effect.gen(function*() {
        const lines = [
          ...chat(40),
          line("img-1", "dall-e-3", "a cat", "/v1/images/generations"),
          line("bad-1", "gpt-4o", "[sim:batch-invalid]")
        ]
        const job = setup(lines)
        const run = yield* capture(job.args("--via", "batch"))
        expect(run.exit._tag).toBe("Success")
        expect(run.exitCode).toBe(1) // the refused line is a failure
        const out = job.written()
        expect(out.map((l) => l.custom_id).sort()).toEqual(lines.map((l) => JSON.parse(l).custom_id).sort())
        const bad = out.find((l) => l.custom_id === "bad-1")
        expect(bad.error).toMatchObject({ kind: "BatchValidationError" })
        expect(bad.error.message).toBeTruthy()
        for (const l of out.filter((l) => l.custom_id.startsWith("id-"))) {
          expect(l.response.status_code).toBe(200)
          expect(l.response.body.object).toBe("chat.completion")
        }
        // two models and the resubmitted file without the refused line: each batch recorded, all finished
        const state = JSON.parse(NodeFs.readFileSync(job.state, "utf8"))
        expect(state.batches.length).toBeGreaterThanOrEqual(3)
        expect(state.batches.every((b: any) => b.finished && b.batchId)).toBe(true)
        expect(run.out).toMatch(/batch: job job_\w+; \d+ batches \(\d+ completed, 1 failed\)/)
        expect(run.out).toContain("batch lines: 40 succeeded, 1 failed")
        // each batch named, with the lines the Batch API did of it and those written from it
        for (const b of state.batches) {
          const done = b.requestCounts.completed + b.requestCounts.failed
          expect(run.out).toContain(
            `  ${b.batchId}: ${b.model} ${done}/${b.requestCounts.total || b.customIds.length} done, ${b.status}, `
          )
        }
        expect(run.out).toMatch(/^ {2}batch_\w+: gpt-4o-mini 20\/20 done, completed, 20 back$/m)
        expect(run.out).toMatch(/batch cost: \$\d+\.\d\d at the Batch API's half price \(saved \$\d+\.\d\d against/)
        expect(run.err).toMatch(/sluice: batch: line 42 \(bad-1\): BatchValidationError: /)

        // a rerun: nothing submitted or written again
        const again = yield* capture(job.args("--via", "batch"))
        expect(again.out).toContain("already done 42")
        expect(job.written().length).toBe(lines.length)
        expect(JSON.parse(NodeFs.readFileSync(job.state, "utf8")).batches.length).toBe(state.batches.length)
      }),
    60_000
  )

  // live: Cli.run writes real files through Node streams, whose callbacks TestClock cannot advance to (as it.effect it hangs)
  it.live(
    "--via auto: what the enqueued-token limits pass by the deadline goes by batch, the rest live",
    () =>
      Effect.gen(function*() {
        const lines = chat(40)
        // gpt-4o's queue holds about 2 of these lines (≈ 26 tokens each): 2 windows pass about 4 of its 20 lines
        const job = setup(lines, { "gpt-4o": 60 })
        const run = yield* capture(job.args("--via", "auto", "--deadline", "48h", "--tier", "1"))
        expect(run.exitCode).toBe(0)
        expect(run.out).toContain("auto: deadline 2.0 days = 2 Batch API windows of 24 h")
        const gpt4o =
          /gpt-4o: enqueued-token limit 60 → at most 120 tokens by the deadline; (\d+) lines via batch \(\d+ tokens\), (\d+) live/
            .exec(run.out)
        expect(gpt4o).not.toBeNull()
        const [viaBatch, live] = [Number(gpt4o![1]), Number(gpt4o![2])]
        expect(viaBatch).toBeGreaterThan(0)
        expect(viaBatch + live).toBe(20)
        expect(run.out).toContain("gpt-4o-mini: no enqueued-token limit given")
        expect(run.out).toMatch(
          new RegExp(`auto: ${live} lines live \\(≈ .+ at tier 1, .+ binding\\), ${20 + viaBatch} via batch`)
        )
        expect(run.out).toContain(`batch lines: ${20 + viaBatch} succeeded, 0 failed`)
        expect(job.written().length).toBe(40)

        // under 24 hours: every line live, no batch
        const short = setup(lines)
        const quick = yield* capture(short.args("--via", "auto", "--deadline", "2h"))
        expect(quick.out).toContain("shorter than the Batch API's 24 h window")
        expect(quick.out).toMatch(/^auto: 40 lines live \(≈ .+ binding\), 0 via batch$/m)
        expect(short.written().length).toBe(40)
        expect(NodeFs.existsSync(short.state)).toBe(false)
      }),
    60_000
  )

  // live: Cli.run writes real files through Node streams, whose callbacks TestClock cannot advance to (as it.effect it hangs)
  it.live(
    "--via auto meets --deadline: exactly the lines the queues cannot pass by then go live, the batches end in time",
    () =>
      Effect.gen(function*() {
        // each model's queue (60 enqueued tokens) holds 2 of these lines (≈ 26 tokens each), so its batches run one
        // after another, 2 lines each; a batch of 2 takes 12 h (6 h a request). A 48 h deadline is 2 windows: 4
        // lines of each model by batch (two batches in turn, 24 h), the other 4 live. (Batches nearer their 24 h
        // would leave too little margin for the real time a loaded machine adds at this speed: 170 ms of real time
        // between one batch's end and the next one's upload is 2.4 simulated hours.)
        const lines = chat(16)
        const limit = 60
        const job = setup(lines, { "gpt-4o": limit, "gpt-4o-mini": limit }, {
          validatingMs: 1000,
          inProgressMs: 0,
          perRequestMs: 6 * 3_600_000,
          finalizingMs: 1000
        })
        // at this speed a real millisecond is 50 simulated seconds: polls every 30 simulated minutes (not 20 ms: the
        // CPU of thousands of polls would be hours here), and a lease of hours (one of minutes is a few real
        // milliseconds: a busy event loop would let a running batch's hold lapse, and another batch of its model
        // start beside it)
        const run = yield* capture(
          job.args("--via", "auto", "--deadline", "48h", "--tier", "1", "--speed", "50000", "--batch-lease", "12h")
            .map((a) => a === "20ms" ? "30m" : a)
        )
        expect(run.exitCode, `${String(run.exit._tag === "Failure" && run.exit.cause)}\n${run.err}`).toBe(0)
        // the lines each model's queue passes by the deadline (2 x its limit), in input order, by the estimator the
        // plan uses; every other line is needed live
        const viaBatch = new Set<string>()
        const used = new Map<string, number>()
        for (const text of lines) {
          const { body, custom_id, url } = JSON.parse(text)
          const tokens = TokenEstimator.forEndpoint(url, body)!.tokens
          const held = used.get(body.model) ?? 0
          if (held + tokens <= 2 * limit) {
            used.set(body.model, held + tokens)
            viaBatch.add(custom_id)
          }
        }
        expect(viaBatch.size).toBe(8)
        expect(run.out).toContain("auto: 8 lines live (≈ ")
        expect(run.out).toMatch(/, 8 via batch/)
        // the batches held exactly those lines, two per batch, and every line was written once
        const state = JSON.parse(NodeFs.readFileSync(job.state, "utf8"))
        const held = state.batches.flatMap((b: any) => b.customIds)
        expect(new Set(held)).toEqual(viaBatch)
        expect(held).toHaveLength(8)
        expect(state.batches.map((b: any) => b.customIds.length)).toEqual([2, 2, 2, 2])
        const ids = job.written().map((l) => l.custom_id)
        expect(ids.sort()).toEqual(lines.map((l) => JSON.parse(l).custom_id).sort())
        expect(job.written().every((l) => l.response?.status_code === 200)).toBe(true)
        expect(run.out).toContain("batch lines: 8 succeeded, 0 failed")
        // met: the batches (both of a model in turn, the second sent once the first was seen ended) ended by the
        // deadline, after at least those 24 h, by the Batch API's own times: the summary's wall time would also count
        // the run's start and end, where a loaded machine's real milliseconds are minutes at this speed
        const first = Math.min(...state.batches.map((b: any) => b.uploadedAt as number))
        const last = Math.max(...state.batches.map((b: any) => b.endedAt as number))
        const hours = (last - first) / 3_600_000
        expect(hours, JSON.stringify(state.batches)).toBeGreaterThanOrEqual(24)
        expect(hours, JSON.stringify(state.batches)).toBeLessThanOrEqual(48)
      }),
    60_000
  )

  // live: Cli.run writes real files through Node streams, whose callbacks TestClock cannot advance to (as it.effect it hangs)
  it.live(
    "--via batch --retry-failed: a line a finished batch failed goes out again in a new batch",
    () =>
      Effect.gen(function*() {
        const lines = [...chat(6), line("policy-1", "gpt-4o-mini", "[sim:content-policy] no")]
        const job = setup(lines)
        const first = yield* capture(job.args("--via", "batch"))
        expect(first.exitCode).toBe(1)
        expect(job.written().find((l) => l.custom_id === "policy-1").error).not.toBeNull()
        const batches = JSON.parse(NodeFs.readFileSync(job.state, "utf8")).batches.length
        const retry = yield* capture(job.args("--via", "batch", "--retry-failed"))
        expect(retry.out).toContain("already done 6")
        expect(retry.out).toMatch(/not done 0/)
        const out = job.written()
        expect(out.map((l) => l.custom_id).sort()).toEqual(lines.map((l) => JSON.parse(l).custom_id).sort())
        // its new batch is recorded beside the old ones
        expect(JSON.parse(NodeFs.readFileSync(job.state, "utf8")).batches.length).toBe(batches + 1)
      }),
    60_000
  )

  // live: Cli.run writes real files through Node streams, whose callbacks TestClock cannot advance to (as it.effect it hangs)
  it.live("--via auto: the lines of a batch that expired go live, each custom_id once", () =>
    Effect.gen(function*() {
      // 4 simulated hours a request: each model's 10 lines need 40 h, so their batches expire at 24 h half done
      const job = setup(chat(20), {}, {
        validatingMs: 1000,
        inProgressMs: 0,
        perRequestMs: 14_400_000,
        finalizingMs: 1000
      })
      const run = yield* capture(
        job.args("--via", "auto", "--deadline", "72h", "--tier", "1", "--speed", "100000")
      )
      expect(run.exitCode, `${String(run.exit._tag === "Failure" && run.exit.cause)}\n${run.err}`).toBe(0)
      expect(run.out).toContain("auto: 0 lines live, 20 via batch")
      const back = /auto: (\d+) lines came back from the Batch API: sending them live/.exec(run.out)
      expect(back).not.toBeNull()
      expect(run.out).toContain(`${back![1]} not done (expired ${back![1]})`)
      expect(run.out).toMatch(/outcome: completed\n/)
      const ids = job.written().map((l) => l.custom_id)
      expect(ids).toHaveLength(20)
      expect(new Set(ids).size).toBe(20)
    }), 60_000)

  // live: Cli.run writes real files through Node streams, whose callbacks TestClock cannot advance to (as it.effect it hangs)
  it.live(
    "usage: --via auto needs --deadline; a bad enqueuedTokens is named; --cancel without a job says so",
    () =>
      Effect.gen(function*() {
        const job = setup(chat(2))
        const noDeadline = yield* capture(job.args("--via", "auto"))
        expect(noDeadline.exit._tag).toBe("Failure")
        expect(String(noDeadline.exit._tag === "Failure" && noDeadline.exit.cause)).toContain("--deadline")
        NodeFs.writeFileSync(
          NodePath.join(job.dir, "limits.json"),
          JSON.stringify({ models: { "gpt-4o": { enqueuedTokens: -5 } } })
        )
        const bad = yield* capture(job.args("--via", "batch"))
        expect(String(bad.exit._tag === "Failure" && bad.exit.cause)).toMatch(/enqueuedTokens/)
        const fresh = setup(chat(2))
        const lease = yield* capture(fresh.args("--via", "batch", "--batch-lease", "0s"))
        expect(String(lease.exit._tag === "Failure" && lease.exit.cause)).toContain("--batch-lease: cannot parse")
        const cancel = yield* capture(fresh.args("--cancel"))
        expect(cancel.exitCode).toBe(3)
        expect(cancel.out).toContain("--cancel: no batch state")
        expect(NodeFs.existsSync(fresh.output) ? fresh.written().length : 0).toBe(0)
      }),
    60_000
  )

  // regression: outputs `out.jsonl` and `out` share `out.batch.json` (and its `.tmp`), and each run held only its
  // output's lock while rewriting all of the state
  // live: two concurrent runs on real files (the second starts when the first's state file says in_progress)
  it.live(
    "two runs whose outputs map to one batch state file: the second is refused by the state's lock; the state's " +
      "temporary is never written through a link",
    () =>
      Effect.gen(function*() {
        const job = setup(chat(20), {}, { validatingMs: 50, inProgressMs: 1500, perRequestMs: 1, finalizingMs: 50 })
        const victim = NodePath.join(job.dir, "victim.txt")
        NodeFs.writeFileSync(victim, "keep me\n")
        NodeFs.symlinkSync(victim, `${job.state}.tmp`)
        const first = yield* Effect.fork(capture(job.args("--via", "batch")))
        const inProgress = () => {
          try {
            return JSON.parse(NodeFs.readFileSync(job.state, "utf8")).batches.some((b: any) =>
              b.status === "in_progress"
            )
          } catch {
            return false
          }
        }
        while (!inProgress()) yield* Effect.sleep("5 millis")
        const other = job.output.slice(0, -".jsonl".length)
        expect(Cli.defaultBatchStatePath(other)).toBe(job.state)
        const second = yield* capture(job.args("--via", "batch").map((a) => a === job.output ? other : a))
        expect(second.exit._tag).toBe("Failure")
        expect(String(second.exit._tag === "Failure" && second.exit.cause)).toContain(
          `another sluice run (pid ${process.pid}`
        )
        expect(NodeFs.existsSync(other)).toBe(false)
        const done = yield* Fiber.join(first)
        expect(done.exitCode, done.err).toBe(0)
        expect(job.written()).toHaveLength(20)
        expect(NodeFs.readFileSync(victim, "utf8")).toBe("keep me\n")
        expect(NodeFs.existsSync(`${job.state}.lock`)).toBe(false)
      }),
    60_000
  )

  // live: Cli.run writes real files through Node streams, whose callbacks TestClock cannot advance to (as it.effect it hangs)
  it.live("an unreadable batch state file stops --via batch, and only warns a --via live run", () =>
    Effect.gen(function*() {
      const job = setup(chat(4))
      NodeFs.writeFileSync(job.state, "not json\n")
      const batch = yield* capture(job.args("--via", "batch"))
      expect(batch.exit._tag).toBe("Failure")
      const live = yield* capture(job.args())
      expect(live.exitCode, live.err).toBe(0)
      expect(live.err).toContain("not read: a --via live run does not need it")
      expect(job.written()).toHaveLength(4)
      expect(NodeFs.readFileSync(job.state, "utf8")).toBe("not json\n")
    }))

  // live: Cli.run writes real files through Node streams, whose callbacks TestClock cannot advance to (as it.effect it hangs)
  it.live(
    "--cancel: a job stopped mid-poll has its batches cancelled and recorded; a live rerun is refused; a rerun ends it",
    () =>
      Effect.gen(function*() {
        const key = "sk-batch-cancel-0123456789"
        process.env.SLUICE_BATCH_TEST_KEY = key
        const sim = yield* Effect.promise(() =>
          startSim(key, { batch: { validatingMs: 50, inProgressMs: 1500, perRequestMs: 2, finalizingMs: 50 } })
        )
        const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-cancel-"))
        const n = 200
        writeChatInput(NodePath.join(dir, "in.jsonl"), n, (i) => `question ${i}`)
        const output = NodePath.join(dir, "out.jsonl")
        const statePath = Cli.defaultBatchStatePath(output)
        const state = (): any =>
          NodeFs.existsSync(statePath) ? JSON.parse(NodeFs.readFileSync(statePath, "utf8")) : undefined
        const args = (...extra: ReadonlyArray<string>) => [
          "run",
          "--input",
          NodePath.join(dir, "in.jsonl"),
          "--output",
          output,
          "--base-url",
          sim.url,
          "--api-key-env",
          "SLUICE_BATCH_TEST_KEY",
          "--batch-poll",
          "20ms",
          "--progress",
          "off",
          ...extra
        ]
        const first = yield* Effect.fork(capture(args("--via", "batch")))
        while (state()?.batches.some((b: any) => b.status === "in_progress") !== true) yield* Effect.sleep("5 millis")
        yield* Fiber.interrupt(first)

        const live = yield* capture(args())
        expect(live.exit._tag).toBe("Failure")
        expect(String(live.exit._tag === "Failure" && live.exit.cause)).toMatch(/not finished: rerun with --via batch/)

        const cancel = yield* capture(args("--cancel"))
        expect(cancel.exitCode).toBe(3)
        expect(cancel.out).toMatch(/--cancel: 2 batches cancelled; \d+ lines not done \(rerun without --cancel/)
        const recorded = state()
        expect(recorded.batches).toHaveLength(2)
        expect(recorded.batches.every((b: any) => b.finished && b.status === "cancelled")).toBe(true)

        const rerun = yield* capture(args("--via", "batch"))
        expect(rerun.exitCode).toBe(0)
        const ids = NodeFs.readFileSync(output, "utf8").trim().split("\n").map((l) => JSON.parse(l).custom_id)
        expect(ids).toHaveLength(n)
        expect(new Set(ids).size).toBe(n)
        yield* Effect.promise(() => sim.close())
      }),
    60_000
  )
})
