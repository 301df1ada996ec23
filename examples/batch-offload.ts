/**
 * A bulk job through OpenAI's Batch API with `BatchOffload`, on the in-process simulator, in virtual time (no
 * API key, no network, no real waiting).
 *
 *   node scripts/run-ts.mjs examples/batch-offload.ts
 *
 * 600 requests for three models (chat on gpt-4o and gpt-4o-mini, embeddings) go out as Batch API files: one model
 * and endpoint per file, within 50,000 requests and 200 MB, and within each model's enqueued-token limit. Here
 * gpt-4o's queue holds 12,000 tokens (a small figure, to show it bind): its 200 lines (about 22,000 estimated
 * tokens) go out as files of at most 12,000, one at a time — each file's tokens are held on the limiter's
 * `enqueuedTokens` dimension while its batch runs and given back when it ends. One line is refused by the
 * Batch API's validation: it comes back as a failure naming its line, and the rest of its file goes out again.
 * Every `custom_id` ends in exactly one output line, in the live runner's format; the state (batch ids, file ids,
 * which lines each holds) is what a resume would start from.
 */
import { LimiterStore, RateLimiter } from "@sluice/core"
import { BatchOffload } from "@sluice/openai"
import { Scenario, SimFetch, Simulator } from "@sluice/testing"
import { Console, Effect, Fiber, Stream, TestClock, TestContext } from "effect"
import OpenAI from "openai"

const line = (id: string, url: string, body: Record<string, unknown>) =>
  JSON.stringify({ custom_id: id, method: "POST", url, body })

const chat = (i: number, model: string) =>
  line(`${model}-${i}`, "/v1/chat/completions", {
    model,
    // one line the Batch API's validation refuses (the simulator's marker)
    messages: [{ role: "user", content: i === 7 && model === "gpt-4o" ? "[sim:batch-invalid]" : `Tag item ${i}` }],
    max_tokens: 100
  })

const lines = [
  ...Array.from({ length: 200 }, (_, i) => chat(i, "gpt-4o")),
  ...Array.from({ length: 200 }, (_, i) => chat(i, "gpt-4o-mini")),
  ...Array.from(
    { length: 200 },
    (_, i) => line(`emb-${i}`, "/v1/embeddings", { model: "text-embedding-3-small", input: `passage ${i}` })
  )
]

const queue = { "gpt-4o": 12_000, "gpt-4o-mini": 2_000_000, "text-embedding-3-small": 3_000_000 }

const program = Effect.gen(function*() {
  // the simulated OpenAI enforces the same enqueued-token limits
  const base = Scenario.tier1()
  const models = { ...base.models }
  for (const [model, tokens] of Object.entries(queue)) models[model] = { ...models[model], batchQueueTokens: tokens }
  const sim = yield* Simulator.make({ ...base, models })
  const fetch = yield* Effect.provideService(SimFetch.make, Simulator.Simulator, sim)
  const client = new OpenAI({ apiKey: "sk-example", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })

  const limiter = yield* RateLimiter.make({
    budgets: Object.entries(queue).map(([model, tokens]) => BatchOffload.budget(model, tokens))
  }).pipe(Effect.provide(LimiterStore.layerMemory))
  const offload = yield* BatchOffload.make({ client, limiter })

  const plan = yield* offload.plan(Stream.fromIterable(lines))
  yield* Console.log(
    `plan: ${plan.files.length} files\n${
      plan.files.map((f) => `  ${f.model} ${f.endpoint}: ${f.requests} requests, ${f.tokens} tokens`).join("\n")
    }`
  )

  const output: Array<string> = []
  let state: BatchOffload.State | undefined
  const fiber = yield* Effect.fork(offload.run(Stream.fromIterable(lines), {
    job: "example",
    onResult: (result) => Effect.sync(() => void output.push(result.line)),
    onState: (s) => Effect.sync(() => void (state = s)), // a real job writes it to a file next to the output
    onProblem: (problem) => Console.log(`problem: ${problem._tag}: ${problem.message}`)
  }))
  // virtual time: let the SDK's promises settle, then move the clock on
  while (fiber.unsafePoll() === null) {
    yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    yield* TestClock.adjust("5 seconds")
  }
  const summary = yield* Fiber.join(fiber)
  yield* Console.log(
    `done: ${summary.succeeded} succeeded, ${summary.failed} failed, ${summary.unfinished.length} handed back; ` +
      `${output.length} output lines for ${lines.length} requests`
  )
  for (const record of state?.batches ?? []) {
    yield* Console.log(
      `  ${record.key} ${record.model}: ${record.customIds.length} lines, ${record.tokens} tokens, batch ${record.batchId} ${record.status}`
    )
  }
})

Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(TestContext.TestContext))).catch((error) => {
  console.error(error)
  process.exit(1)
})
