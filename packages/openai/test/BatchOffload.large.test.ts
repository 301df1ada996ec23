/**
 * The 120,000-line job for three models end to end (issue 18), in process under TestClock: submitted
 * through the simulator's Batch API in files that keep every limit (50,000 requests, the bytes given, gpt-4o's
 * enqueued tokens, which the simulator enforces too: never refused), every custom_id delivered once, and each
 * result identical in content to the live answer to the same line.
 *
 * `BatchOffload.plan` foretells those files exactly.
 *
 * The live side is the simulator's live endpoint judged directly (`Simulator.judge`: the answer the live runner would
 * receive, without the SDK) for every 41st line, 2,927 lines from every file of every model: judging all 120,000
 * doubled the test's time (22 s more at load 10), and an answer is a function of its request alone.
 * `BatchOffload.test.ts` shows on a small job that the live runner turns such answers into the same output lines as
 * the offload does. The whole test is about 11 s of CPU, more than the 10 s a cheap test would take: planning 120,000
 * lines (a token estimate each) is about 3 s of it, the job through the Batch API (planned again, uploaded, answered by
 * the simulator, downloaded, parsed) about 8 s; it replaces the plan-only test of the same job (3 s).
 */
import { describe, expect, it } from "@effect/vitest"
import { LimiterStore, RateLimiter } from "@sluice/core"
import { BatchOffload } from "@sluice/openai"
import { SimFetch, Simulator } from "@sluice/testing"
import { Effect, Exit, Stream } from "effect"
import OpenAIClient from "openai"
import { chatLine, scenario } from "./batchHarness.js"
import { fastDrive } from "./fastDrive.js"

const N = 120_000
const GPT4O_QUEUE = 90_000
const MAX_BYTES = 9_000_000
/** Prime to the 5 of the models' cycle: the sample holds lines of every model. */
const STRIDE = 41

/** A fifth gpt-4o, three fifths gpt-4o-mini, a fifth embeddings (8 dimensions: small answers). */
const lineOf = (i: number) =>
  i % 5 === 0
    ? chatLine(`c4-${i}`, `classify item ${i}`, "gpt-4o", 4)
    : i % 5 === 4
    ? JSON.stringify({
      custom_id: `e-${i}`,
      method: "POST",
      url: "/v1/embeddings",
      body: { model: "text-embedding-3-small", input: `passage ${i} `.repeat(30), dimensions: 8 }
    })
    : chatLine(`cm-${i}`, `tag item ${i}`, "gpt-4o-mini", 4)

/** What may differ between two answers to one request: ids, times, the words sampled (their count may not). */
const content = (body: any) => ({
  ...body,
  id: undefined,
  created: undefined,
  choices: body.choices?.map((c: any) => ({
    ...c,
    message: { ...c.message, content: c.message.content.split(" ").length }
  }))
})

describe("BatchOffload: the 120,000-line job", () => {
  // about 11 s of CPU (see above): the time allowed covers a machine loaded several times over
  it.effect(
    "three models, files within every limit, each line once, the same answers as live",
    () =>
      Effect.gen(function*() {
        const fetch = yield* SimFetch.make
        const client = new OpenAIClient({ apiKey: "sk-large", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
        const limiter = yield* RateLimiter.make({ budgets: [BatchOffload.budget("gpt-4o", GPT4O_QUEUE)] }).pipe(
          Effect.provide(LimiterStore.layerMemory)
        )
        const offload = yield* BatchOffload.make({
          client,
          limiter,
          maxBytes: MAX_BYTES,
          poll: { initial: "1 minute", max: "10 minutes" }
        })
        const input = Stream.map(Stream.range(0, N - 1), lineOf)
        const plan = yield* offload.plan(input)
        const answers = new Map<string, string>()
        const { exit } = yield* fastDrive(
          offload.run(input, {
            job: "large",
            onResult: (r) => Effect.sync(() => void answers.set(r.customId, r.line))
          }),
          60_000
        )
        expect(Exit.isSuccess(exit), String(Exit.isFailure(exit) && exit.cause)).toBe(true)
        if (!Exit.isSuccess(exit)) return
        const summary = exit.value
        expect([summary.succeeded, summary.failed, summary.unfinished.length, summary.problems.length]).toEqual([
          N,
          0,
          0,
          0
        ])
        expect(answers.size).toBe(N)

        // files within every limit, each line in one of them
        const records = summary.state.batches
        expect(records.reduce((a, r) => a + r.customIds.length, 0)).toBe(N)
        for (const r of records) {
          expect(r.customIds.length).toBeLessThanOrEqual(50_000)
          expect(r.bytes).toBeLessThanOrEqual(MAX_BYTES)
          if (r.model === "gpt-4o") expect(r.tokens).toBeLessThanOrEqual(GPT4O_QUEUE)
          expect(r.status).toBe("completed")
        }
        // the plan foretold those files
        const shape = (f: { model: string; requests: number; bytes: number; tokens: number }) =>
          `${f.model} ${f.requests} ${f.bytes} ${f.tokens}`
        expect(records.map((r) => shape({ ...r, requests: r.customIds.length })).sort()).toEqual(
          plan.files.map((f) => shape(f)).sort()
        )
        expect([plan.tooLarge, plan.ineligible]).toEqual([0, 0])
        // each limit binds for one model: gpt-4o's queue, gpt-4o-mini's 50,000 requests, the embeddings' bytes
        const by = (model: string) => records.filter((r) => r.model === model)
        const gpt4o = by("gpt-4o")
        expect(gpt4o.length).toBeGreaterThan(2)
        // (all but one full to within a line: the last one planned holds what was left)
        expect(gpt4o.filter((r) => r.tokens <= GPT4O_QUEUE - 100).length).toBeLessThanOrEqual(1)
        expect(by("gpt-4o-mini").map((r) => r.customIds.length)).toEqual([50_000, 22_000])
        const embeddings = by("text-embedding-3-small")
        expect(embeddings.length).toBe(2)
        expect(embeddings[0].bytes).toBeGreaterThan(MAX_BYTES - 1_000)

        // the same lines live: the simulator's live endpoint (its limits lifted, so none is refused) answers each
        const base = scenario({})
        const models = Object.fromEntries(
          Object.entries(base.models).map(([m, spec]) => [m, { ...spec, limits: { rpm: 1e9, tpm: 1e12 } }])
        )
        const live = yield* Simulator.make({ ...base, models } as typeof base)
        let compared = 0
        for (let i = 0; i < N; i += STRIDE) {
          const { body, custom_id, url } = JSON.parse(lineOf(i))
          const answer = yield* live.judge({
            method: "POST",
            path: url,
            headers: { authorization: "Bearer sk-large" },
            body
          })
          if (answer._tag !== "Response") throw new Error(`live ${custom_id}: ${answer._tag}`)
          const batched = JSON.parse(answers.get(custom_id)!)
          if (answer.status !== 200 || batched.response?.status_code !== 200) {
            expect([custom_id, batched.response?.status_code]).toEqual([custom_id, answer.status])
          }
          const same =
            JSON.stringify(content(batched.response.body)) === JSON.stringify(content(JSON.parse(answer.body)))
          if (!same) {
            expect([custom_id, content(batched.response.body)]).toEqual([custom_id, content(JSON.parse(answer.body))])
          }
          compared++
        }
        expect(compared).toBe(Math.ceil(N / STRIDE))
      }).pipe(
        Effect.scoped,
        Effect.provide(Simulator.layer(scenario({ "gpt-4o": GPT4O_QUEUE }, {
          validatingMs: 0,
          inProgressMs: 0,
          perRequestMs: 10,
          finalizingMs: 0
        })))
      ),
    180_000
  )
})
