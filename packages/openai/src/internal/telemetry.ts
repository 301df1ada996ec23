/**
 * Internal: the `OpenAi` service's metrics and span attributes (the public names are in `../OpenAiMetrics.ts`).
 *
 * Metrics are updated in place (`unsafeUpdate`) with one labels array per series, made once and cached: the
 * metric's hook is found by the array's identity, so an update is a map lookup and a hook update, not a registry
 * lookup with hashing (which `Metric.tagged` costs at every update). The labels of the fiber that made the
 * service (`Effect.tagMetrics` around the layer) are folded into every series, as `Metric.update` would.
 *
 * @internal
 */
import * as Arr from "effect/Array"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricLabel from "effect/MetricLabel"
import type * as Endpoints from "./endpoint.js"

const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

/** OpenTelemetry's advice for `gen_ai.client.operation.duration` (seconds). */
const operationBoundaries = MetricBoundaries.fromIterable([
  0.01,
  0.02,
  0.04,
  0.08,
  0.16,
  0.32,
  0.64,
  1.28,
  2.56,
  5.12,
  10.24,
  20.48,
  40.96,
  81.92
])
/** OpenTelemetry's advice for `gen_ai.client.token.usage`. */
const tokenBoundaries = MetricBoundaries.fromIterable([
  1,
  4,
  16,
  64,
  256,
  1024,
  4096,
  16384,
  65536,
  262144,
  1048576,
  4194304,
  16777216,
  67108864
])
/** Waits: 1 ms to about 1.2 hours, doubling (as `Metrics.secondsBoundaries` in core). */
const waitBoundaries = MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 23 })

/** The instruments, untagged (their `unit` label is added per series). */
export const instruments = {
  requests: counter("sluice.openai.requests", "Requests sent to OpenAI, by outcome (ok or the error kind)"),
  rateLimited: counter("sluice.openai.rate_limited", "429 answers from OpenAI, by kind"),
  retries: counter("sluice.openai.retries", "Attempts that retried a failed one, by the kind retried"),
  admissions: counter("sluice.openai.admissions", "Attempts admitted by the rate limiter, waited or not"),
  wait: Metric.histogram(
    "sluice.openai.wait.duration",
    waitBoundaries,
    "Time an attempt waited for admission by the rate limiter"
  ),
  tokensReserved: counter("sluice.openai.tokens.reserved", "Tokens reserved at admission (the estimate)"),
  tokensUsed: counter("sluice.openai.tokens.used", "Tokens used, as the answers' usage says"),
  operationDuration: Metric.histogram(
    "gen_ai.client.operation.duration",
    operationBoundaries,
    "GenAI operation duration"
  ),
  tokenUsage: Metric.histogram(
    "gen_ai.client.token.usage",
    tokenBoundaries,
    "Measures number of input and output tokens used"
  )
}

/** `gen_ai.operation.name` of an endpoint (OpenTelemetry's well-known values where one applies). */
export const operationOf = (path: Endpoints.Path): string => {
  switch (path) {
    case "/chat/completions":
    case "/responses":
      return "chat"
    case "/embeddings":
      return "embeddings"
    case "/completions":
      return "text_completion"
    case "/images/generations":
      return "image_generation"
    case "/moderations":
      return "moderation"
  }
}

/** How tenants appear in metric labels: not at all, as themselves, or bucketed. */
export type Tenants = "omit" | "label" | ((tenant: string) => string)

/** The kind of a 429 (`sluice.openai.rate_limited`'s `kind`), or `undefined` when the error is not one. */
export const rateLimitKind = (error: {
  readonly _tag: string
  readonly status?: number | undefined
  readonly dimension?: string | undefined
  readonly window?: string | undefined
}): string | undefined => {
  switch (error._tag) {
    case "RateLimited":
      return error.dimension === undefined
        ? (error.window === "day" ? "per_day" : "per_minute")
        : `${error.dimension}_per_${error.window ?? "minute"}`
    case "RequestTooLarge":
      return "request_too_large"
    case "QuotaExhausted":
      return error.status === 429 ? "insufficient_quota" : undefined
    default:
      return undefined
  }
}

/** Input and output tokens of an answer's `usage` (chat, Responses, embeddings). */
export const usageTokens = (data: unknown): { input: number | undefined; output: number | undefined } => {
  const usage = (data as { readonly usage?: Record<string, unknown> | null } | null | undefined)?.usage
  if (usage === null || usage === undefined || typeof usage !== "object") return { input: undefined, output: undefined }
  const num = (value: unknown) => (typeof value === "number" && Number.isFinite(value) ? value : undefined)
  return {
    input: num(usage.prompt_tokens) ?? num(usage.input_tokens),
    output: num(usage.completion_tokens) ?? num(usage.output_tokens)
  }
}

/** The series of the service's metrics, each labels array made once. */
export interface Telemetry {
  readonly tenantLabel: (tenant: string | undefined) => string | undefined
  readonly admitted: (
    model: string,
    lane: string,
    tenant: string | undefined,
    waitedMillis: number,
    reservedTokens: number,
    retryOf: string | undefined
  ) => void
  readonly answered: (
    model: string,
    operation: string,
    tenant: string | undefined,
    outcome: string,
    rateLimit: string | undefined
  ) => void
  readonly used: (model: string, tenant: string | undefined, tokens: number) => void
  readonly operation: (
    operation: string,
    model: string,
    responseModel: string | undefined,
    errorType: string | undefined,
    seconds: number,
    input: number | undefined,
    output: number | undefined
  ) => void
}

const unitSeconds = MetricLabel.make("unit", "s")
const unitTokens = MetricLabel.make("unit", "{token}")

/** The telemetry of one service: `base` are the labels of the fiber that made it. */
export const make = (tenants: Tenants | undefined, base: ReadonlyArray<MetricLabel.MetricLabel>): Telemetry => {
  const cache = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
  /** The labels of one series: `pairs` flattened (key, value, key, value…), `undefined` values left out. */
  const labels = (unit: MetricLabel.MetricLabel | undefined, ...pairs: Array<string | undefined>) => {
    const key = `${unit?.value ?? ""}\u0000${pairs.join("\u0000")}`
    let found = cache.get(key)
    if (found === undefined) {
      const made: Array<MetricLabel.MetricLabel> = unit === undefined ? [] : [unit]
      for (let i = 0; i < pairs.length; i += 2) {
        if (pairs[i + 1] !== undefined) made.push(MetricLabel.make(pairs[i]!, pairs[i + 1]!))
      }
      found = Arr.union(made, base)
      cache.set(key, found)
    }
    return found
  }
  const tenantLabel = (tenant: string | undefined): string | undefined =>
    tenant === undefined || tenants === undefined || tenants === "omit"
      ? undefined
      : tenants === "label"
      ? tenant
      : tenants(tenant)
  return {
    tenantLabel,
    admitted: (model, lane, tenant, waitedMillis, reservedTokens, retryOf) => {
      const waited = waitedMillis > 0 ? "true" : "false"
      instruments.admissions.unsafeUpdate(
        1,
        labels(undefined, "gen_ai.request.model", model, "lane", lane, "waited", waited, "tenant", tenant)
      )
      instruments.wait.unsafeUpdate(
        waitedMillis / 1000,
        labels(unitSeconds, "gen_ai.request.model", model, "lane", lane, "tenant", tenant)
      )
      if (reservedTokens > 0) {
        instruments.tokensReserved.unsafeUpdate(
          reservedTokens,
          labels(unitTokens, "gen_ai.request.model", model, "tenant", tenant)
        )
      }
      if (retryOf !== undefined) {
        instruments.retries.unsafeUpdate(
          1,
          labels(undefined, "gen_ai.request.model", model, "error.type", retryOf, "tenant", tenant)
        )
      }
    },
    answered: (model, operation, tenant, outcome, rateLimit) => {
      instruments.requests.unsafeUpdate(
        1,
        labels(
          undefined,
          "gen_ai.request.model",
          model,
          "gen_ai.operation.name",
          operation,
          "outcome",
          outcome,
          "tenant",
          tenant
        )
      )
      if (rateLimit !== undefined) {
        instruments.rateLimited.unsafeUpdate(
          1,
          labels(undefined, "gen_ai.request.model", model, "kind", rateLimit, "tenant", tenant)
        )
      }
    },
    used: (model, tenant, tokens) => {
      if (tokens > 0) {
        instruments.tokensUsed.unsafeUpdate(tokens, labels(unitTokens, "gen_ai.request.model", model, "tenant", tenant))
      }
    },
    operation: (operation, model, responseModel, errorType, seconds, input, output) => {
      const common = [
        "gen_ai.operation.name",
        operation,
        "gen_ai.provider.name",
        "openai",
        "gen_ai.request.model",
        model,
        "gen_ai.response.model",
        responseModel
      ]
      instruments.operationDuration.unsafeUpdate(seconds, labels(unitSeconds, ...common, "error.type", errorType))
      if (input !== undefined) {
        instruments.tokenUsage.unsafeUpdate(input, labels(unitTokens, ...common, "gen_ai.token.type", "input"))
      }
      if (output !== undefined) {
        instruments.tokenUsage.unsafeUpdate(output, labels(unitTokens, ...common, "gen_ai.token.type", "output"))
      }
    }
  }
}
