/**
 * The two peers of the OpenAI bulk benchmark (benchmarks/openai.ts), written for it:
 *
 * - `bareSdk`: the official SDK with its built-in retries (exponential back-off that honours
 *   `retry-after-ms` / `retry-after`), concurrency bounded with `p-limit`. What most applications do.
 * - `cookbook`: a processor in the manner of the OpenAI cookbook's `api_request_parallel_processor.py`:
 *   one dispatch loop keeps its own request and token capacities, refilled continuously from the elapsed
 *   time at the configured per-minute limits (capped at one minute's worth); each request's tokens are
 *   estimated up front (tokenizer count of the messages with the chat overhead, plus `n × max_tokens`)
 *   and taken from the capacity before it is sent — and never given back; failures go to a retry queue
 *   that the loop serves first (up to 5 attempts); after a rate-limit error every sender pauses for 15
 *   seconds; the loop sleeps a millisecond between iterations.
 *
 * Both send through the benchmark's metering `fetch`, so attempts and latencies are measured the same way
 * as Sluice's.
 */
import { createRequire } from "node:module"
import OpenAI from "openai"
import type { ChatCompletionCreateParamsNonStreaming } from "openai/resources/chat/completions"
import pLimit from "p-limit"
import type { BenchRequest, ChatBody, ClientReport, Meter } from "./openai-workload.js"

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

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
  }
): Promise<ClientReport> => {
  const client = new OpenAI({
    apiKey: "sk-bench",
    baseURL: options.baseURL,
    maxRetries: options.maxRetries,
    fetch: options.meter.fetch
  })
  const limit = pLimit(options.concurrency)
  let succeeded = 0
  let failed = 0
  options.meter.start()
  await Promise.all(requests.map((request) =>
    limit(async () => {
      try {
        await client.chat.completions.create(sdkParams(request.body))
        succeeded++
      } catch {
        failed++
      }
    })
  ))
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

/** The cookbook's estimate: 4 tokens per message, each value's tokens, 2 for the reply, plus n × max_tokens. */
export const cookbookEstimate = (body: ChatBody): number => {
  let prompt = 2
  for (const message of body.messages) prompt += 4 + countTokens(message.role) + countTokens(message.content)
  return prompt + body.max_tokens
}

interface Job {
  readonly request: BenchRequest
  readonly tokens: number
  attemptsLeft: number
}

export const cookbook = async (
  requests: ReadonlyArray<BenchRequest>,
  options: {
    readonly baseURL: string
    readonly requestsPerMinute: number
    readonly tokensPerMinute: number
    readonly meter: Meter
    readonly maxAttempts?: number
    readonly cooldownMillis?: number
    readonly loopSleepMillis?: number
  }
): Promise<ClientReport> => {
  const maxAttempts = options.maxAttempts ?? 5
  const cooldown = options.cooldownMillis ?? 15_000
  const loopSleep = options.loopSleepMillis ?? 1
  const rpm = options.requestsPerMinute
  const tpm = options.tokensPerMinute
  const url = `${options.baseURL.replace(/\/$/, "")}/chat/completions`

  const retryQueue: Array<Job> = []
  let cursor = 0
  let next: Job | undefined
  let requestCapacity = rpm
  let tokenCapacity = tpm
  let lastUpdate = performance.now()
  let lastRateLimitAt = Number.NEGATIVE_INFINITY
  let inFlight = 0
  let succeeded = 0
  let failed = 0
  let retries = 0
  let rateLimitErrors = 0

  const call = async (job: Job): Promise<void> => {
    let error: string | undefined
    try {
      const response = await options.meter.fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer sk-bench" },
        body: JSON.stringify(job.request.body)
      })
      const json = (await response.json()) as { readonly error?: { readonly message?: string } }
      if (json.error !== undefined) error = json.error.message ?? `HTTP ${response.status}`
    } catch (cause) {
      error = String(cause)
    }
    inFlight--
    if (error === undefined) {
      succeeded++
      return
    }
    if (error.includes("Rate limit")) {
      lastRateLimitAt = performance.now()
      rateLimitErrors++
    }
    if (job.attemptsLeft > 0) retryQueue.push(job)
    else failed++
  }

  options.meter.start()
  while (true) {
    if (next === undefined) {
      const retry = retryQueue.shift()
      if (retry !== undefined) {
        next = retry
        retries++
      } else if (cursor < requests.length) {
        const request = requests[cursor++]
        next = { request, tokens: cookbookEstimate(request.body), attemptsLeft: maxAttempts }
      }
    }

    // refill the capacities from the time elapsed, at most one minute's worth
    const now = performance.now()
    const elapsedMinutes = (now - lastUpdate) / 60_000
    requestCapacity = Math.min(rpm, requestCapacity + rpm * elapsedMinutes)
    tokenCapacity = Math.min(tpm, tokenCapacity + tpm * elapsedMinutes)
    lastUpdate = now

    if (next !== undefined && requestCapacity >= 1 && tokenCapacity >= next.tokens) {
      requestCapacity -= 1
      tokenCapacity -= next.tokens
      next.attemptsLeft--
      inFlight++
      void call(next)
      next = undefined
    }

    if (next === undefined && cursor >= requests.length && retryQueue.length === 0 && inFlight === 0) break

    await sleep(loopSleep)

    // cool down after a rate-limit error: everyone waits
    const sinceRateLimit = performance.now() - lastRateLimitAt
    if (sinceRateLimit < cooldown) await sleep(cooldown - sinceRateLimit)
  }
  const wallMillis = options.meter.elapsed()
  return {
    name: "cookbook-style processor",
    wallMillis,
    succeeded,
    failed,
    retries,
    attempts: options.meter.attempts,
    config: `own capacities at ${rpm} RPM / ${tpm} TPM (100% of the limits), ${maxAttempts} attempts, ${
      cooldown / 1000
    } s cool-down after a rate limit (${rateLimitErrors} seen), ${loopSleep} ms loop sleep`
  }
}
