/**
 * The peers Sluice is measured against, each given the same requests and the same OpenAI-compatible
 * endpoint (the HTTP simulator):
 *
 * - `bareSdk`: the official SDK with its built-in retries (exponential backoff that honours
 *   `retry-after`), concurrency bounded with `p-limit`. What most applications do.
 * - `cookbook`: a processor in the style of the OpenAI cookbook's parallel request processor: it keeps
 *   its own request and token capacities, refilled by the elapsed time at the configured per-minute
 *   limits, reserves each request's estimated tokens before sending, and on a rate-limit error pauses
 *   every sender for a fixed 15 seconds and requeues the request (up to 5 attempts).
 *
 * Both count what they sent and what came back, so the runs can be compared on 429s and retries.
 */
import OpenAI from "openai"
import pLimit from "p-limit"

export interface PeerRequest {
  readonly id: string
  readonly body: {
    readonly model: string
    readonly messages: ReadonlyArray<{ readonly role: "user" | "system"; readonly content: string }>
    readonly max_tokens: number
  }
  /** The caller's token estimate (prompt + max_tokens), as the cookbook computes it. */
  readonly estimate: number
}

export interface PeerResult {
  readonly name: string
  readonly wallMillis: number
  readonly succeeded: number
  readonly failed: number
  readonly attempts: number
  readonly rateLimited: number
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export const bareSdk = async (
  requests: ReadonlyArray<PeerRequest>,
  options: { readonly baseURL: string; readonly concurrency: number; readonly maxRetries?: number }
): Promise<PeerResult> => {
  let attempts = 0
  let rateLimited = 0
  const counting: typeof fetch = async (input, init) => {
    attempts++
    const response = await fetch(input, init)
    if (response.status === 429) rateLimited++
    return response
  }
  const client = new OpenAI({
    apiKey: "sk-bench",
    baseURL: options.baseURL,
    maxRetries: options.maxRetries ?? 2,
    fetch: counting
  })
  const limit = pLimit(options.concurrency)
  let succeeded = 0
  let failed = 0
  const start = Date.now()
  await Promise.all(requests.map((request) =>
    limit(async () => {
      try {
        await client.chat.completions.create(request.body as any, {
          headers: { "x-sim-request-key": request.id }
        })
        succeeded++
      } catch {
        failed++
      }
    })
  ))
  return { name: "bare SDK + p-limit", wallMillis: Date.now() - start, succeeded, failed, attempts, rateLimited }
}

export const cookbook = async (
  requests: ReadonlyArray<PeerRequest>,
  options: {
    readonly baseURL: string
    readonly requestsPerMinute: number
    readonly tokensPerMinute: number
    readonly maxAttempts?: number
    readonly pauseAfterRateLimitMillis?: number
  }
): Promise<PeerResult> => {
  const maxAttempts = options.maxAttempts ?? 5
  const pause = options.pauseAfterRateLimitMillis ?? 15_000
  const queue: Array<{ request: PeerRequest; attemptsLeft: number }> = requests.map((request) => ({
    request,
    attemptsLeft: maxAttempts
  }))
  let requestCapacity = options.requestsPerMinute
  let tokenCapacity = options.tokensPerMinute
  let lastUpdate = Date.now()
  let lastRateLimit = 0
  let inFlight = 0
  let attempts = 0
  let rateLimited = 0
  let succeeded = 0
  let failed = 0
  const start = Date.now()

  const send = async (item: { request: PeerRequest; attemptsLeft: number }) => {
    attempts++
    try {
      const response = await fetch(`${options.baseURL}/chat/completions`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: "Bearer sk-bench",
          "x-sim-request-key": item.request.id
        },
        body: JSON.stringify(item.request.body)
      })
      if (response.status === 429) {
        rateLimited++
        lastRateLimit = Date.now()
        item.attemptsLeft--
        if (item.attemptsLeft > 0) queue.push(item)
        else failed++
      } else if (response.ok) {
        await response.json()
        succeeded++
      } else {
        item.attemptsLeft--
        if (item.attemptsLeft > 0 && response.status >= 500) queue.push(item)
        else failed++
      }
    } catch {
      item.attemptsLeft--
      if (item.attemptsLeft > 0) queue.push(item)
      else failed++
    } finally {
      inFlight--
    }
  }

  while (queue.length > 0 || inFlight > 0) {
    const now = Date.now()
    const elapsed = (now - lastUpdate) / 60_000
    requestCapacity = Math.min(options.requestsPerMinute, requestCapacity + options.requestsPerMinute * elapsed)
    tokenCapacity = Math.min(options.tokensPerMinute, tokenCapacity + options.tokensPerMinute * elapsed)
    lastUpdate = now
    const sincePause = now - lastRateLimit
    if (sincePause < pause) {
      await sleep(pause - sincePause)
      continue
    }
    const next = queue[0]
    if (next !== undefined && requestCapacity >= 1 && tokenCapacity >= next.request.estimate) {
      queue.shift()
      requestCapacity -= 1
      tokenCapacity -= next.request.estimate
      inFlight++
      void send(next)
      continue
    }
    await sleep(1) // the cookbook's loop sleeps a millisecond between checks
  }
  return { name: "cookbook-style processor", wallMillis: Date.now() - start, succeeded, failed, attempts, rateLimited }
}
