/**
 * The Batch API offload's test harness: the offload over the real `openai` SDK and the in-process simulator,
 * under TestClock (virtual time driven by `drive`), with the results, states and problems it hands over
 * recorded.
 */
import { LimiterStore, RateLimiter } from "@sluice/core"
import { BatchOffload } from "@sluice/openai"
import type { SimConfig } from "@sluice/testing"
import { Scenario, Simulator } from "@sluice/testing"
import { Effect, Stream } from "effect"
import { drive, makeClient } from "./harness.js"

/** A chat line; `content` may carry the simulator's markers (`[sim:content-policy]`). */
export const chatLine = (id: string, content: string, model = "gpt-4o-mini", maxTokens = 20) =>
  JSON.stringify({
    custom_id: id,
    method: "POST",
    url: "/v1/chat/completions",
    body: { model, messages: [{ role: "user", content }], max_tokens: maxTokens }
  })

/** An embeddings line (the simulator's vectors are a function of the input: identical live and batched). */
export const embeddingLine = (id: string, input: string, model = "text-embedding-3-small") =>
  JSON.stringify({ custom_id: id, method: "POST", url: "/v1/embeddings", body: { model, input } })

/** Tier 1 with the Batch API's enqueued-token limits and timing given. */
export const scenario = (
  queue: Readonly<Record<string, number>>,
  batch: Partial<SimConfig.Scenario["batch"]> = {}
): SimConfig.Scenario => {
  const base = Scenario.tier1()
  const models = { ...base.models }
  for (const [model, tokens] of Object.entries(queue)) models[model] = { ...models[model], batchQueueTokens: tokens }
  return { ...base, models, batch: { ...base.batch, ...batch } }
}

/** What a run handed over. */
export interface Recorded {
  readonly results: Array<BatchOffload.Result>
  readonly states: Array<BatchOffload.State>
  readonly problems: Array<BatchOffload.BatchProblem>
}

export const recorder = (): Recorded & { readonly options: BatchOffload.RunOptions } => {
  const results: Array<BatchOffload.Result> = []
  const states: Array<BatchOffload.State> = []
  const problems: Array<BatchOffload.BatchProblem> = []
  return {
    results,
    states,
    problems,
    options: {
      job: "test",
      onResult: (r) => Effect.sync(() => void results.push(r)),
      onState: (s) => Effect.sync(() => void states.push(s)),
      onProblem: (p) => Effect.sync(() => void problems.push(p))
    }
  }
}

/** The offload over a simulator client and a memory limiter with `budgets` (enqueued tokens per model). */
export const offload = (
  queue: Readonly<Record<string, number>>,
  options: Omit<BatchOffload.Options, "client" | "limiter"> = {}
) =>
  Effect.gen(function*() {
    const client = yield* makeClient()
    const limiter = yield* RateLimiter.make({
      budgets: Object.entries(queue).map(([model, tokens]) => BatchOffload.budget(model, tokens))
    }).pipe(Effect.provide(LimiterStore.layerMemory))
    return yield* BatchOffload.make({ client, limiter, poll: { initial: "5 seconds", max: "1 minute" }, ...options })
  })

/** Runs `lines` through a fresh offload and drives virtual time to its end. */
export const runLines = (
  lines: ReadonlyArray<string>,
  queue: Readonly<Record<string, number>>,
  extra: Partial<BatchOffload.RunOptions> = {},
  options: Omit<BatchOffload.Options, "client" | "limiter"> = {}
) =>
  Effect.gen(function*() {
    const service = yield* offload(queue, options)
    const recorded = recorder()
    const { endedAt, exit } = yield* drive(
      service.run(Stream.fromIterable(lines), { ...recorded.options, ...extra }),
      60_000
    )
    return { service, recorded, exit, endedAt }
  }).pipe(Effect.scoped)

/** The simulator's batches, as its list endpoint shows them. */
export const simBatches = Effect.flatMap(makeClient(), (client) =>
  Effect.promise(async () => {
    const all = []
    for await (const b of client.batches.list({ limit: 100 })) all.push(b)
    return all
  }))

export const parse = (line: string): any => JSON.parse(line)

export { Simulator }
