/**
 * The two peers of the bulk benchmarks (benchmarks/openai.ts, benchmarks/cli.ts), written for them:
 *
 * - `bareSdk`: the official SDK with its built-in retries (exponential back-off that honours
 *   `retry-after-ms` / `retry-after`), concurrency bounded with `p-limit`. What most applications do.
 * - `cookbook`: a processor in the manner of the OpenAI cookbook's `api_request_parallel_processor.py`:
 *   one dispatch loop keeps its own request and token capacities, refilled continuously from the elapsed
 *   time at the configured per-minute limits (capped at one minute's worth); each request's tokens are
 *   estimated up front (tokenizer count of the messages with the chat overhead, plus `n × max_tokens`; for
 *   embeddings the inputs' tokens) and taken from the capacity before it is sent — and never given back;
 *   failures go to a retry queue that the loop serves first (up to 5 attempts); after a rate-limit error
 *   every sender pauses for 15 seconds; the loop sleeps a millisecond between iterations. The cookbook's
 *   script takes one pair of limits for one endpoint; for a file that mixes models it keeps one pair of
 *   capacities per model here, with one dispatch loop (a request waiting for its model's capacity holds
 *   back the requests behind it, as in the script).
 *
 * Both send through the benchmark's metering `fetch`, so attempts and latencies are measured the same way
 * as Sluice's in-process rows, and can hand every request's outcome to `onResult` (the CLI benchmark writes
 * them to an output file in the Batch API format).
 */
import { createRequire } from "node:module"
import OpenAI from "openai"
import type { ChatCompletionCreateParamsNonStreaming } from "openai/resources/chat/completions"
import pLimit from "p-limit"
import type { BenchRequest, ChatBody, ClientReport, Meter } from "./openai-workload.js"
import { arrival, EMBEDDINGS_URL } from "./openai-workload.js"

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** A request's final outcome, as a peer hands it to `onResult`. */
export type Outcome =
  | { readonly ok: true; readonly status: number; readonly requestId: string | null; readonly body: unknown }
  | {
    readonly ok: false
    readonly status: number | undefined
    readonly requestId: string | null
    readonly code: string
    readonly message: string
  }

export type OnResult = (request: BenchRequest, outcome: Outcome) => void

const sdkParams = (body: ChatBody): ChatCompletionCreateParamsNonStreaming => ({
  model: body.model,
  messages: body.messages.map((message) => ({ role: message.role, content: message.content })),
  max_tokens: body.max_tokens
})

// -----------------------------------------------------------------------------
// (a) the bare SDK with p-limit
// -----------------------------------------------------------------------------

export const bareSdk = async (
  requests: ReadonlyArray<BenchRequest>,
  options: {
    readonly baseURL: string
    readonly concurrency: number
    readonly maxRetries: number
    readonly meter: Meter
    readonly onResult?: OnResult | undefined
  }
): Promise<ClientReport> => {
  const client = new OpenAI({
    apiKey: "sk-bench",
    baseURL: options.baseURL,
    maxRetries: options.maxRetries,
    fetch: options.meter.fetch
  })
  const limit = pLimit(options.concurrency)
  const send = (request: BenchRequest) =>
    request.url === EMBEDDINGS_URL
      ? client.embeddings.create({ model: request.body.model, input: [...request.body.input] })
      : client.chat.completions.create(sdkParams(request.body))
  let succeeded = 0
  let failed = 0
  options.meter.start()
  const origin = performance.now()
  await Promise.all(requests.map(async (request) => {
    await arrival(origin, request.at)
    return limit(async () => {
      try {
        const body = await send(request)
        succeeded++
        options.onResult?.(request, { ok: true, status: 200, requestId: body._request_id ?? null, body })
      } catch (error) {
        failed++
        const api = error instanceof OpenAI.APIError ? error : undefined
        options.onResult?.(request, {
          ok: false,
          status: api?.status,
          requestId: api?.requestID ?? null,
          code: String(api?.code ?? api?.type ?? (error as Error)?.name ?? "error"),
          message: String((error as Error)?.message ?? error)
        })
      }
    })
  }))
  const wallMillis = options.meter.elapsed()
  return {
    name: `bare SDK + p-limit(${options.concurrency}), maxRetries ${options.maxRetries}`,
    wallMillis,
    succeeded,
    failed,
    // the SDK does not report its retries: every attempt beyond one per request is one
    retries: options.meter.attempts.length - requests.length,
    attempts: options.meter.attempts,
    config: `openai SDK, maxRetries: ${options.maxRetries}, p-limit concurrency ${options.concurrency}`
  }
}

// -----------------------------------------------------------------------------
// (b) the cookbook-style processor
// -----------------------------------------------------------------------------

/** The o200k tokenizer (gpt-4o-mini's encoding), from the workspace's `gpt-tokenizer`. */
const countTokens: (text: string) => number = createRequire(
  new URL("../packages/openai/package.json", import.meta.url)
)("gpt-tokenizer/encoding/o200k_base").countTokens

/**
 * The cookbook's estimate. Chat: 4 tokens per message, each value's tokens, 2 for the reply, plus
 * n × max_tokens. Embeddings: the inputs' tokens.
 */
export const cookbookEstimate = (request: BenchRequest): number => {
  if (request.url === EMBEDDINGS_URL) {
    return request.body.input.reduce((sum, input) => sum + countTokens(input), 0)
  }
  let prompt = 2
  for (const message of request.body.messages) prompt += 4 + countTokens(message.role) + countTokens(message.content)
  return prompt + request.body.max_tokens
}

interface Job {
  readonly request: BenchRequest
  readonly tokens: number
  attemptsLeft: number
}

interface Capacity {
  readonly rpm: number
  readonly tpm: number
  requests: number
  tokens: number
}

export const cookbook = async (
  requests: ReadonlyArray<BenchRequest>,
  options: {
    readonly baseURL: string
    /** Per model: the requests and tokens per minute to keep to (the rate limits). */
    readonly limits: Readonly<Record<string, { readonly rpm: number; readonly tpm: number }>>
    readonly meter: Meter
    readonly maxAttempts?: number
    readonly cooldownMillis?: number
    readonly loopSleepMillis?: number
    readonly onResult?: OnResult | undefined
  }
): Promise<ClientReport> => {
  const maxAttempts = options.maxAttempts ?? 5
  const cooldown = options.cooldownMillis ?? 15_000
  const loopSleep = options.loopSleepMillis ?? 1
  const origin = options.baseURL.replace(/\/$/, "").replace(/\/v1$/, "")
  const capacities = new Map<string, Capacity>(
    Object.entries(options.limits).map(([model, { rpm, tpm }]) => [model, { rpm, tpm, requests: rpm, tokens: tpm }])
  )
  const capacityOf = (model: string): Capacity => {
    const capacity = capacities.get(model)
    if (capacity === undefined) throw new Error(`cookbook: no limits for ${model}`)
    return capacity
  }

  const retryQueue: Array<Job> = []
  let cursor = 0
  let next: Job | undefined
  let lastUpdate = performance.now()
  let lastRateLimitAt = Number.NEGATIVE_INFINITY
  let inFlight = 0
  let succeeded = 0
  let failed = 0
  let retries = 0
  let rateLimitErrors = 0

  const call = async (job: Job): Promise<void> => {
    let error: string | undefined
    let outcome: Outcome | undefined
    try {
      const response = await options.meter.fetch(`${origin}${job.request.url}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer sk-bench" },
        body: JSON.stringify(job.request.body)
      })
      const json = (await response.json()) as {
        readonly error?: { readonly message?: string; readonly code?: unknown }
      }
      const requestId = response.headers.get("x-request-id")
      if (json.error !== undefined) {
        error = json.error.message ?? `HTTP ${response.status}`
        outcome = {
          ok: false,
          status: response.status,
          requestId,
          code: String(json.error.code ?? `http_${response.status}`),
          message: error
        }
      } else outcome = { ok: true, status: response.status, requestId, body: json }
    } catch (cause) {
      error = String(cause)
      outcome = { ok: false, status: undefined, requestId: null, code: "connection_error", message: error }
    }
    inFlight--
    if (error === undefined) {
      succeeded++
      options.onResult?.(job.request, outcome)
      return
    }
    if (error.includes("Rate limit")) {
      lastRateLimitAt = performance.now()
      rateLimitErrors++
    }
    if (job.attemptsLeft > 0) retryQueue.push(job)
    else {
      failed++
      options.onResult?.(job.request, outcome)
    }
  }

  options.meter.start()
  while (true) {
    if (next === undefined) {
      const retry = retryQueue.shift()
      if (retry !== undefined) {
        next = retry
        retries++
      } else if (cursor < requests.length && options.meter.elapsed() >= (requests[cursor].at ?? 0)) {
        const request = requests[cursor++]
        next = { request, tokens: cookbookEstimate(request), attemptsLeft: maxAttempts }
      }
    }

    // refill the capacities from the time elapsed, at most one minute's worth
    const now = performance.now()
    const elapsedMinutes = (now - lastUpdate) / 60_000
    for (const capacity of capacities.values()) {
      capacity.requests = Math.min(capacity.rpm, capacity.requests + capacity.rpm * elapsedMinutes)
      capacity.tokens = Math.min(capacity.tpm, capacity.tokens + capacity.tpm * elapsedMinutes)
    }
    lastUpdate = now

    if (next !== undefined) {
      const capacity = capacityOf(next.request.body.model)
      if (capacity.requests >= 1 && capacity.tokens >= next.tokens) {
        capacity.requests -= 1
        capacity.tokens -= next.tokens
        next.attemptsLeft--
        inFlight++
        void call(next)
        next = undefined
      }
    }

    if (next === undefined && cursor >= requests.length && retryQueue.length === 0 && inFlight === 0) break

    await sleep(loopSleep)

    // cool down after a rate-limit error: everyone waits
    const sinceRateLimit = performance.now() - lastRateLimitAt
    if (sinceRateLimit < cooldown) await sleep(cooldown - sinceRateLimit)
  }
  const wallMillis = options.meter.elapsed()
  const limits = [...capacities].map(([model, c]) =>
    `${c.rpm} RPM / ${c.tpm} TPM${capacities.size > 1 ? ` (${model})` : ""}`
  )
  return {
    name: "cookbook-style processor",
    wallMillis,
    succeeded,
    failed,
    retries,
    attempts: options.meter.attempts,
    config: `own capacities at ${limits.join(", ")} (100% of the limits), ${maxAttempts} attempts, ${
      cooldown / 1000
    } s cool-down after a rate limit (${rateLimitErrors} seen), ${loopSleep} ms loop sleep`
  }
}
