/**
 * The Batch API offload end to end, against the in-process simulator under TestClock: files within the limits,
 * holds on the enqueued-token budget, results in the live runner's format, and every way a batch ends (completed,
 * expired, failed for a line, refused for the queue, cancelled) leaving nothing lost.
 */
import { describe, expect, it } from "@effect/vitest"
import { LimiterStore, RateLimiter } from "@sluice/core"
import { BatchOffload, BulkExecutor, BulkRunner } from "@sluice/openai"
import { Duration, Effect, Exit } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import OpenAIClient from "openai"
import { chatLine, embeddingLine, parse, runLines, scenario, simBatches, Simulator } from "./batchHarness.js"
import { drive, withService } from "./harness.js"

describe("BatchOffload", () => {
  it.effect("splits by model and endpoint, delivers one live-format line per custom_id", () =>
    Effect.gen(function*() {
      const lines = [
        ...Array.from({ length: 30 }, (_, i) => chatLine(`mini-${i}`, `hello ${i}`)),
        ...Array.from({ length: 10 }, (_, i) => chatLine(`4o-${i}`, `hi ${i}`, "gpt-4o")),
        ...Array.from({ length: 5 }, (_, i) => embeddingLine(`emb-${i}`, `text ${i}`)),
        chatLine("policy", "[sim:content-policy] no")
      ]
      const { exit, recorded } = yield* runLines(lines, {}, {}, { maxRequests: 12 })
      expect(Exit.isSuccess(exit)).toBe(true)
      const summary = Exit.isSuccess(exit) ? exit.value : undefined
      const ids = recorded.results.map((r) => r.customId).sort()
      expect(ids).toEqual(lines.map((l) => parse(l).custom_id).sort())
      expect(summary?.succeeded).toBe(45)
      expect(summary?.failed).toBe(1)
      expect(summary?.unfinished).toEqual([])
      // 31 mini lines in files of at most 12: 3 files; 10 gpt-4o: 1; 5 embeddings: 1
      const batches = yield* simBatches
      expect(batches).toHaveLength(5)
      expect(summary?.state.batches.every((b) => b.finished)).toBe(true)
      const policy = parse(recorded.results.find((r) => r.customId === "policy")!.line)
      expect(policy.response).toBeNull()
      expect(policy.error.status_code).toBe(400)
      const ok = parse(recorded.results.find((r) => r.customId === "mini-3")!.line)
      expect(Object.keys(ok)).toEqual(["id", "custom_id", "response", "error"])
      expect(ok.response.status_code).toBe(200)
      expect(ok.response.body.object).toBe("chat.completion")
      // nothing went through the live pools
      expect((yield* Simulator.stats).admissions).toHaveLength(0)
    }).pipe(Effect.provide(Simulator.layer(scenario({})))))
})

/** A line's content with what differs between two runs of the same request left out (ids, times, sampled words). */
const normalize = (line: string) => {
  const { custom_id, error, response } = parse(line)
  const body = response?.body
  const words = (text: unknown) => typeof text === "string" ? text.split(" ").length : text
  return {
    custom_id,
    error,
    status: response?.status_code,
    body: body === undefined ? undefined : {
      ...body,
      id: undefined,
      created: undefined,
      choices: body.choices?.map((c: any) => ({ ...c, message: { ...c.message, content: words(c.message.content) } }))
    }
  }
}

describe("BatchOffload: the same results as live", () => {
  it.effect("chat, embeddings, a content-policy refusal, a context too long: identical in content", () =>
    Effect.gen(function*() {
      const lines = [
        ...Array.from(
          { length: 12 },
          (_, i) => chatLine(`c-${i}`, `question ${i} `.repeat(i + 1), "gpt-4o-mini", 16 + i)
        ),
        ...Array.from({ length: 8 }, (_, i) => embeddingLine(`e-${i}`, `passage number ${i}`)),
        chatLine("policy", "[sim:content-policy] not this"),
        chatLine("long", "word ".repeat(130_000), "gpt-4o-mini", 10)
      ]
      const { exit, recorded } = yield* runLines(lines, {})
      expect(Exit.isSuccess(exit)).toBe(true)
      const batched = new Map(recorded.results.map((r) => [r.customId, normalize(r.line)]))

      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-offload-live-"))
      const input = NodePath.join(dir, "in.jsonl")
      const output = NodePath.join(dir, "out.jsonl")
      NodeFs.writeFileSync(input, lines.join("\n") + "\n")
      yield* withService({ tier: 1 }, (openai) =>
        drive(BulkRunner.run({
          input,
          output,
          execute: (request) =>
            Effect.map(
              openai.request(request.url, request.body as Record<string, unknown>),
              (r): BulkRunner.Response => ({ statusCode: r.status, requestId: r.requestId, body: r.body })
            ),
          describe: BulkExecutor.describeError,
          countTotal: false
        })))
      const live = new Map(
        NodeFs.readFileSync(output, "utf8").trim().split("\n").map((l) => [parse(l).custom_id, normalize(l)])
      )
      expect(live.size).toBe(lines.length)
      expect(batched.size).toBe(lines.length)
      for (const [id, line] of live) expect(batched.get(id), id).toEqual(line)
      expect(batched.get("policy")?.error?.kind).toBe("ContentPolicy")
      expect(batched.get("long")?.error?.code).toBe("context_length_exceeded")
    }).pipe(Effect.provide(Simulator.layer(scenario({})))))
})

describe("BatchOffload: lines done per batch", () => {
  it.effect("the state follows each batch's request_counts while it runs, up to all of its lines", () =>
    Effect.gen(function*() {
      // 10 lines, a minute each: polled every 5 s to 1 min, the counts move on between polls
      const lines = Array.from({ length: 10 }, (_, i) => chatLine(`p-${i}`, `progress ${i}`))
      const { exit, recorded } = yield* runLines(lines, {})
      expect(Exit.isSuccess(exit)).toBe(true)
      const seen = recorded.states.map((s) => s.batches[0]).filter((b) => b?.status === "in_progress")
        .map((b) => b.requestCounts?.completed ?? -1)
      // several distinct counts, rising, between none and all
      expect(new Set(seen).size).toBeGreaterThan(3)
      expect(seen).toEqual([...seen].sort((a, b) => a - b))
      expect(seen.every((d) => d >= 0 && d <= 10)).toBe(true)
      const last = recorded.states[recorded.states.length - 1].batches[0]
      expect([last.status, last.requestCounts]).toEqual(["completed", { total: 10, completed: 10, failed: 0 }])
    }).pipe(Effect.provide(Simulator.layer(scenario({}, { inProgressMs: 0, perRequestMs: 60_000 })))))
})

describe("BatchOffload.isTerminal", () => {
  it("the four statuses a batch ends in, and none of those it passes through", () => {
    expect(BatchOffload.terminalStatuses).toEqual(["completed", "failed", "expired", "cancelled"])
    for (const status of BatchOffload.terminalStatuses) expect(BatchOffload.isTerminal(status)).toBe(true)
    for (const status of ["validating", "in_progress", "finalizing", "cancelling", "uploaded", "", undefined]) {
      expect(BatchOffload.isTerminal(status), String(status)).toBe(false)
    }
  })
})

describe("BatchOffload.make: options", () => {
  const bad: ReadonlyArray<readonly [string, Partial<BatchOffload.Options>]> = [
    ["poll.factor", { poll: { factor: 0.5 } }],
    ["poll.factor", { poll: { factor: Number.NaN } }],
    ["poll.initial", { poll: { initial: "0 seconds" } }],
    ["poll.initial", { poll: { initial: "soon" as Duration.DurationInput } }],
    ["poll.max", { poll: { initial: "1 minute", max: "10 seconds" } }],
    ["poll.max", { poll: { max: Duration.infinity } }],
    ["maxRequests", { maxRequests: 0 }],
    ["maxRequests", { maxRequests: 50_001 }],
    ["maxRequests", { maxRequests: 2.5 }],
    ["maxBytes", { maxBytes: 200_000_001 }],
    ["tokenLimitRetries", { tokenLimitRetries: -1 }]
  ]
  it.effect("an option out of range fails with a typed error that names it", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.make({ budgets: [] }).pipe(Effect.provide(LimiterStore.layerMemory))
      const client = new OpenAIClient({ apiKey: "sk-options" })
      for (const [option, options] of bad) {
        const error = yield* Effect.flip(BatchOffload.make({ client, limiter, ...options }))
        expect(error).toBeInstanceOf(BatchOffload.BatchOffloadConfigError)
        expect(error.option, JSON.stringify(options)).toBe(option)
        expect(error.message.startsWith(`${option}: `)).toBe(true)
      }
      const ok = yield* BatchOffload.make({
        client,
        limiter,
        maxRequests: 50_000,
        maxBytes: 1,
        tokenLimitRetries: 0,
        poll: { initial: "1 second", max: "1 second", factor: 1 }
      })
      expect(ok.maxTokens("gpt-4o-mini")).toBeUndefined()
    }).pipe(Effect.scoped))
})
