/**
 * The workload the two bulk benchmarks share (benchmarks/openai.ts: the `OpenAi` service; benchmarks/cli.ts:
 * `sluice run`): the simulated model's latency, the seeded requests (chat, and embeddings for the CLI), their
 * Batch API lines, and a metering `fetch` that records each HTTP attempt the same way for every in-process
 * implementation. The client processes (benchmarks/openai-client.ts) import this file, so it stays light:
 * no Effect, no simulator (those are in benchmarks/cli-harness.ts, for the orchestrators).
 */
import type { SimConfig } from "@sluice/testing"
import { readFileSync } from "node:fs"

export const MODEL = "gpt-4o-mini"
export const EMBEDDING_MODEL = "text-embedding-3-small"
/** The OpenAI benchmark's bulk: chat requests only. */
export const REQUESTS = 2_000
export const SEED = 20_260_611

/**
 * The limits of the OpenAI benchmark's simulated model: TPM-bound (the requests limit is never the binding
 * one). Scaled so that the theoretical minimum of the whole bulk is about a minute of real time.
 */
export const LIMITS = { rpm: 5_000, tpm: 450_000 } as const

/** Output: half of `max_tokens` is generated, so settling to `usage` matters. */
export const OUTPUT_FRACTION = 0.5

/** Time to first byte: lognormal around 500 ms (capped at 6 s), then 10 ms per generated token. */
export const LATENCY = {
  request: { _tag: "lognormal", median: 500, sigma: 0.5, max: 6_000 },
  perOutputTokenMs: 10
} as const satisfies SimConfig.ScenarioInput["latency"]

export const LATENCY_DESCRIPTION = "lognormal time to first byte (median 500 ms, σ 0.5, capped at 6 s) plus 10 ms " +
  "per generated token; every request generates half its `max_tokens`"

export const scenarioInput: SimConfig.ScenarioInput = {
  name: "bench-openai",
  description: "2,000 chat requests against a TPM-bound gpt-4o-mini with gpt-4o-mini-like latency",
  seed: SEED,
  models: { [MODEL]: { kind: "chat", limits: { ...LIMITS }, contextWindow: 128_000 } },
  latency: LATENCY,
  output: { fraction: OUTPUT_FRACTION }
}

// -----------------------------------------------------------------------------
// the requests
// -----------------------------------------------------------------------------

export const CHAT_URL = "/v1/chat/completions"
export const EMBEDDINGS_URL = "/v1/embeddings"

export interface ChatBody {
  readonly model: string
  readonly messages: ReadonlyArray<{ readonly role: "system" | "user"; readonly content: string }>
  readonly max_tokens: number
}

export interface EmbeddingBody {
  readonly model: string
  readonly input: ReadonlyArray<string>
}

export type BenchRequest =
  | {
    readonly id: string
    readonly url: typeof CHAT_URL
    readonly body: ChatBody
    /** What the simulator charges once it is served: `ceil(chars / 4)` of the prompt plus the output. */
    readonly knownUsage: number
    /** When the request arrives (ms after the run's start; absent: at once). */
    readonly at?: number
  }
  | {
    readonly id: string
    readonly url: typeof EMBEDDINGS_URL
    readonly body: EmbeddingBody
    /** What the simulator charges: `ceil(chars / 4)` of each input. */
    readonly knownUsage: number
    readonly at?: number
  }

export type ChatRequest = Extract<BenchRequest, { readonly url: typeof CHAT_URL }>

export const isChat = (request: BenchRequest): request is ChatRequest => request.url === CHAT_URL

/** mulberry32: a small seeded PRNG, so every process builds the same workload. */
export const prng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

type Random = () => number

const WORDS = (
  "account action answer area argument article audience balance basis benefit budget business capacity " +
  "case change choice claim client comment company concern context contract control cost customer data " +
  "decision delivery demand design detail development difference direction effect effort element energy " +
  "estimate event evidence example experience factor feature figure focus form function future goal group " +
  "growth history idea impact income increase industry information interest issue item job knowledge level " +
  "limit list market material measure method model moment network number object offer option order outcome " +
  "owner part party pattern payment period person plan point policy position practice pressure price " +
  "problem process product profit program project property purpose quality question range rate reason " +
  "record region report request research resource response result return review risk role rule sale scale " +
  "schedule scope section sector service share signal source space stage standard state step strategy " +
  "structure study subject success supply support system target task team term test theory time tool total " +
  "trade trend type unit value version view volume week window work year quickly carefully roughly usually " +
  "often rarely early late first last next final main major minor simple clear stable steady small large"
).split(" ")

/** Function words, drawn half the time, so the text tokenizes like English prose (about 4 characters a token). */
const GLUE = "the a of to and in for on with is was we it that this our by at as from not be are".split(" ")

const SYSTEM = "You are a concise assistant for an operations team. Answer in plain English, in at most a short " +
  "paragraph, without lists or headings."

const TASKS = [
  "Summarise these notes for the weekly report:",
  "Classify the main concern in this customer message and explain why:",
  "Rewrite the following as one clear sentence:",
  "List the risks you see in this plan, in prose:",
  "Extract the decision and its owner from this thread:"
]

const MAX_TOKENS = [64, 96, 128, 160, 192, 256, 320, 384, 448, 512]

const pick = <A>(random: Random, list: ReadonlyArray<A>): A => list[Math.floor(random() * list.length)]

const prose = (random: Random, words: number): string => {
  const text: Array<string> = []
  for (let w = 0; w < words; w++) text.push(random() < 0.5 ? pick(random, GLUE) : pick(random, WORDS))
  return text.join(" ")
}

/** The simulator's output for a chat call's `max_tokens` (`output.fraction` of it, at least 1). */
export const outputOf = (maxTokens: number): number =>
  Math.max(1, Math.min(Math.ceil(OUTPUT_FRACTION * maxTokens), maxTokens))

/**
 * What the simulator charges a request at admission (its estimate: the prompt plus `max_tokens`), which a server that
 * never trues up (`settle: "never"`) keeps; for embeddings, their usage.
 */
export const knownCharge = (request: BenchRequest): number =>
  request.url === CHAT_URL
    ? request.knownUsage - outputOf(request.body.max_tokens) + request.body.max_tokens
    : request.knownUsage

/** A chat request: the fixed system prompt, a seeded user prompt of 40–320 words, a seeded `max_tokens`. */
const chatRequest = (
  random: Random,
  id: string,
  size: { readonly words: readonly [number, number]; readonly maxTokens: ReadonlyArray<number> } = {
    words: [40, 320],
    maxTokens: MAX_TOKENS
  }
): BenchRequest => {
  const words = size.words[0] + Math.floor(random() * (size.words[1] - size.words[0] + 1))
  const text = prose(random, words)
  const user = `[req:${id}] ${pick(random, TASKS)} ${text}.`
  const maxTokens = pick(random, size.maxTokens)
  const prompt = Math.ceil((SYSTEM.length + user.length) / 4)
  const output = outputOf(maxTokens)
  return {
    id,
    url: CHAT_URL,
    body: {
      model: MODEL,
      messages: [{ role: "system", content: SYSTEM }, { role: "user", content: user }],
      max_tokens: maxTokens
    },
    knownUsage: prompt + output
  }
}

/** An embeddings request: 1–4 seeded inputs of 20–200 words each (the first carries the request's marker). */
const embeddingRequest = (random: Random, id: string): BenchRequest => {
  const count = 1 + Math.floor(random() * 4)
  const input: Array<string> = []
  for (let i = 0; i < count; i++) {
    const text = prose(random, 20 + Math.floor(random() * 181))
    input.push(i === 0 ? `[req:${id}] ${text}.` : `${text}.`)
  }
  return {
    id,
    url: EMBEDDINGS_URL,
    body: { model: EMBEDDING_MODEL, input },
    knownUsage: input.reduce((sum, text) => sum + Math.ceil(text.length / 4), 0)
  }
}

/** The OpenAI benchmark's requests: `count` chat requests (`b0000`, `b0001`, …). */
export const workload = (count: number = REQUESTS, seed: number = SEED): ReadonlyArray<BenchRequest> => {
  const random = prng(seed)
  const out: Array<BenchRequest> = []
  for (let i = 0; i < count; i++) out.push(chatRequest(random, `b${String(i).padStart(4, "0")}`))
  return out
}

/**
 * The CLI benchmark's requests: `lines` requests of which every `embeddingEvery`-th is an embeddings
 * request (`e00009`), the rest chat (`c00000`), interleaved as they would be in one file.
 */
export const mixedWorkload = (
  options: { readonly lines: number; readonly embeddingEvery: number; readonly seed: number }
): ReadonlyArray<BenchRequest> => {
  const random = prng(options.seed)
  const out: Array<BenchRequest> = []
  for (let i = 0; i < options.lines; i++) {
    const n = String(i).padStart(5, "0")
    out.push((i + 1) % options.embeddingEvery === 0 ? embeddingRequest(random, `e${n}`) : chatRequest(random, `c${n}`))
  }
  return out
}

/** One Batch API input line: `{custom_id, method, url, body}`. */
export const batchLine = (request: BenchRequest): string =>
  JSON.stringify({ custom_id: request.id, method: "POST", url: request.url, body: request.body })

/** Reads a Batch API input file back into requests (`knownUsage` is not in the file: 0). */
export const readBatchFile = (path: string): ReadonlyArray<BenchRequest> =>
  readFileSync(path, "utf8").split("\n").filter((line) => line.trim() !== "").map((line) => {
    const { body, custom_id, url } = JSON.parse(line) as { custom_id: string; url: string; body: never }
    return { id: custom_id, url: url as typeof CHAT_URL, body, knownUsage: 0 }
  })

// -----------------------------------------------------------------------------
// metering
// -----------------------------------------------------------------------------

/** One HTTP attempt as the client saw it (times relative to the run's start). */
export interface AttemptRecord {
  readonly sentAt: number
  readonly latency: number
  /** HTTP status; 0 when the fetch itself failed. */
  readonly status: number
}

/**
 * A `fetch` that records every attempt (when it was sent, how long until the response headers, the
 * status), wrapped around the global one. Every in-process implementation sends through one of these, so
 * the client-side figures are measured identically.
 */
export const makeMeter = () => {
  let origin = performance.now()
  const attempts: Array<AttemptRecord> = []
  /** Failed fetches by cause (`ECONNRESET`, `UND_ERR_SOCKET`, ...). */
  const errors: Record<string, number> = {}
  const fetch: typeof globalThis.fetch = async (input, init) => {
    const sentAt = performance.now() - origin
    try {
      const response = await globalThis.fetch(input, init)
      attempts.push({ sentAt, latency: performance.now() - origin - sentAt, status: response.status })
      return response
    } catch (error) {
      attempts.push({ sentAt, latency: performance.now() - origin - sentAt, status: 0 })
      const cause = (error as { readonly cause?: { readonly code?: unknown; readonly message?: unknown } })?.cause
      const key = String(cause?.code ?? cause?.message ?? (error as Error)?.name ?? error)
      errors[key] = (errors[key] ?? 0) + 1
      throw error
    }
  }
  return {
    fetch,
    attempts,
    errors,
    /** Restarts the clock: call just before the first request. */
    start: () => {
      origin = performance.now()
    },
    elapsed: () => performance.now() - origin
  }
}

export type Meter = ReturnType<typeof makeMeter>

/** What one implementation's run reports back to the orchestrator. */
export interface ClientReport {
  readonly name: string
  readonly wallMillis: number
  readonly succeeded: number
  readonly failed: number
  /** Retries the implementation itself counted (attempts beyond the first per request). */
  readonly retries: number
  readonly attempts: ReadonlyArray<AttemptRecord>
  /** Free-form notes (the configuration of the row). */
  readonly config: string
  /** Failed fetches (no HTTP answer) by cause. */
  readonly fetchErrors?: Readonly<Record<string, number>>
  /** CPU time the client process spent (user + system, ms), from its start. */
  readonly cpuMillis?: number
}

// -----------------------------------------------------------------------------
// shapes (pnpm bench:openai --shapes …)
// -----------------------------------------------------------------------------

/**
 * A named workload shape for `pnpm bench:openai --shapes`: its requests (count and sizes), when they arrive,
 * the server's limits and how it enforces them. Each is scaled so that its theoretical minimum is some
 * 10–20 s of real time.
 */
export interface Shape {
  readonly name: string
  readonly description: string
  readonly requests: number
  readonly words: readonly [number, number]
  readonly maxTokens: ReadonlyArray<number>
  readonly limits: { readonly rpm: number; readonly tpm: number }
  /** Arrivals: all at once, or Poisson at this share of the binding capacity. */
  readonly load?: number | undefined
  readonly enforcement?: SimConfig.ScenarioInput["enforcement"]
  /** With sub-minute enforcement: the server's burst as a share of each limit (the configured row is given it). */
  readonly burstShare?: number | undefined
}

const MIXED = { words: [40, 320] as const, maxTokens: MAX_TOKENS }

export const SHAPES: ReadonlyArray<Shape> = [
  {
    name: "few-large",
    description: "90 large calls (prompts of 200–400 words, max_tokens 2,048–8,192), all at once",
    requests: 90,
    words: [200, 400],
    maxTokens: [2_048, 4_096, 6_144, 8_192],
    limits: { rpm: 5_000, tpm: 200_000 }
  },
  {
    name: "few-large-kept",
    description:
      "the few-large calls against a server that keeps what it charges at admission (prompt + max_tokens) instead of trueing it up to the usage",
    requests: 90,
    words: [200, 400],
    maxTokens: [2_048, 4_096, 6_144, 8_192],
    limits: { rpm: 5_000, tpm: 200_000 },
    enforcement: { settle: "never" }
  },
  {
    name: "many-small",
    description: "1,200 small calls (prompts of 5–30 words, max_tokens 16–64), all at once; RPM-bound",
    requests: 1_200,
    words: [5, 30],
    maxTokens: [16, 32, 64],
    limits: { rpm: 1_000, tpm: 450_000 }
  },
  {
    name: "mixed",
    description: "650 mixed calls (the default workload's sizes), all at once",
    requests: 650,
    ...MIXED,
    limits: { rpm: 5_000, tpm: 200_000 }
  },
  {
    name: "poisson-90",
    description: "150 mixed calls arriving as a Poisson process at 90% of the token capacity",
    requests: 150,
    ...MIXED,
    limits: { rpm: 5_000, tpm: 200_000 },
    load: 0.9
  },
  {
    name: "poisson-120",
    description: "150 mixed calls arriving as a Poisson process at 120% of the token capacity",
    requests: 150,
    ...MIXED,
    limits: { rpm: 5_000, tpm: 200_000 },
    load: 1.2
  },
  {
    name: "sub-minute",
    description:
      "400 mixed calls, all at once, against a server whose buckets hold 5 s of each per-minute limit (sub-minute enforcement)",
    requests: 400,
    ...MIXED,
    limits: { rpm: 5_000, tpm: 450_000 },
    enforcement: { subWindowMs: 5_000 },
    burstShare: 5_000 / 60_000
  },
  {
    name: "no-headers",
    description:
      "650 mixed calls, all at once, against a server that sends no x-ratelimit-* headers and no retry-after",
    requests: 650,
    ...MIXED,
    limits: { rpm: 5_000, tpm: 200_000 },
    enforcement: { rateLimitHeaders: false, retryAfter: false, retryAfterMs: false }
  }
]

/** The shape a client process runs (`SLUICE_BENCH_SHAPE`), if any. */
export const activeShape = (): Shape | undefined => {
  const name = process.env.SLUICE_BENCH_SHAPE
  return name === undefined ? undefined : SHAPES.find((shape) => shape.name === name)
}

/** A shape's requests, with their arrival times. */
export const shapeWorkload = (shape: Shape, seed: number = SEED): ReadonlyArray<BenchRequest> => {
  const random = prng(seed)
  const out: Array<BenchRequest> = []
  for (let i = 0; i < shape.requests; i++) {
    out.push(chatRequest(random, `s${String(i).padStart(5, "0")}`, { words: shape.words, maxTokens: shape.maxTokens }))
  }
  if (shape.load === undefined) return out
  // Poisson arrivals at `load` of the binding capacity (the mean call's usage against the limits)
  const mean = out.reduce((sum, request) => sum + request.knownUsage, 0) / out.length
  const perMs = Math.min(shape.limits.rpm / 60_000, shape.limits.tpm / 60_000 / mean) * shape.load
  const arrivals = prng(seed + 1)
  let t = 0
  return out.map((request, i) => {
    if (i > 0) t += -Math.log(1 - Math.min(arrivals(), 0.999_999)) / perMs
    return { ...request, at: Math.round(t) }
  })
}

/** A shape's simulated server. */
export const shapeScenario = (shape: Shape): SimConfig.ScenarioInput => ({
  ...scenarioInput,
  name: `bench-openai-${shape.name}`,
  description: shape.description,
  models: { [MODEL]: { kind: "chat", limits: { ...shape.limits }, contextWindow: 128_000 } },
  ...(shape.enforcement === undefined ? {} : { enforcement: shape.enforcement })
})

/** Resolves once `at` ms have passed since `origin` (`performance.now()`). */
export const arrival = (origin: number, at: number | undefined): Promise<void> | undefined => {
  if (at === undefined) return undefined
  const wait = origin + at - performance.now()
  return wait > 0 ? new Promise((resolve) => setTimeout(resolve, wait)) : undefined
}
