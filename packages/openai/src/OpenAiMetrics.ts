/**
 * The `OpenAi` service's metrics, as Effect Metrics: what a platform team graphs and alerts on, under
 * OpenTelemetry's conventions. Durations are in seconds and carry their unit in the `unit` label (`s`; tokens
 * `{token}`), which `@effect/opentelemetry` reads as the instrument's unit. Nothing here needs OpenTelemetry:
 * the metrics are counted in any case, and an exporter (`@effect/opentelemetry`'s `NodeSdk` or `Otlp` layers,
 * a Prometheus reader) reads them when there is one.
 *
 * | metric | kind | unit | labels |
 * |---|---|---|---|
 * | `sluice.openai.requests` | counter | | `gen_ai.request.model`, `gen_ai.operation.name`, `outcome` (`ok` or the error kind: `RateLimited`, `ServerError`, …) |
 * | `sluice.openai.rate_limited` | counter | | `gen_ai.request.model`, `kind`: `requests_per_minute`, `tokens_per_minute`, `requests_per_day`, `tokens_per_day`, `images_per_minute`, `per_minute` (no dimension said), `request_too_large`, `insufficient_quota` |
 * | `sluice.openai.retries` | counter | | `gen_ai.request.model`, `error.type` (the kind retried) |
 * | `sluice.openai.admissions` | counter | | `gen_ai.request.model`, `lane`, `waited` (`true`/`false`) |
 * | `sluice.openai.wait.duration` | histogram | `s` | `gen_ai.request.model`, `lane` |
 * | `sluice.openai.tokens.reserved` | counter | `{token}` | `gen_ai.request.model` |
 * | `sluice.openai.tokens.used` | counter | `{token}` | `gen_ai.request.model` |
 * | `gen_ai.client.operation.duration` | histogram | `s` | `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.response.model`, `error.type` |
 * | `gen_ai.client.token.usage` | histogram | `{token}` | as above, and `gen_ai.token.type` (`input`/`output`) |
 *
 * Exporters see labels as a set; Effect's `Metric.value` finds a series by its labels in order: tag a metric
 * in that order to read it: `unit` first where the metric has one, then the table's labels, then `tenant`, then
 * your own `Effect.tagMetrics` labels.
 *
 * With `OpenAi.Options.metrics.tenants`, the `sluice.openai.*` series also carry `tenant` (as given, or
 * bucketed by a function); by default they do not. The limiter's own metrics (levels, utilisation, queue
 * depth, waits per lane) are in `@sluice/core`'s `Metrics`; the breakers' (`sluice_breaker_state`, …) in
 * `CircuitBreaker`.
 *
 * @since 0.2.0
 */
import type * as Metric from "effect/Metric"
import type * as MetricKeyType from "effect/MetricKeyType"
import type * as MetricState from "effect/MetricState"
import * as internal from "./internal/telemetry.js"

type Counter = Metric.Metric.Counter<number>
type Histogram = Metric.Metric<MetricKeyType.MetricKeyType.Histogram, number, MetricState.MetricState.Histogram>

/**
 * Requests sent (each attempt once answered or failed), tagged `gen_ai.request.model`, `gen_ai.operation.name`
 * and `outcome`.
 *
 * @since 0.2.0
 * @category metrics
 * @example
 * ```ts
 * import { OpenAiMetrics } from "@sluice/openai"
 * import * as Effect from "effect/Effect"
 * import * as Metric from "effect/Metric"
 *
 * // the 429s gpt-4o-mini got on its tokens per minute so far
 * const tpm429s = Metric.value(
 *   OpenAiMetrics.rateLimited.pipe(
 *     Metric.tagged("gen_ai.request.model", "gpt-4o-mini"),
 *     Metric.tagged("kind", "tokens_per_minute")
 *   )
 * )
 * const program = Effect.flatMap(tpm429s, (state) => Effect.log(`429s on TPM: ${state.count}`))
 * ```
 */
export const requests: Counter = internal.instruments.requests

/**
 * 429 answers, tagged `gen_ai.request.model` and `kind`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const rateLimited: Counter = internal.instruments.rateLimited

/**
 * Retries (attempts after the first), tagged `gen_ai.request.model` and `error.type`, the kind of failure
 * retried.
 *
 * @since 0.2.0
 * @category metrics
 */
export const retries: Counter = internal.instruments.retries

/**
 * Attempts admitted by the limiter, tagged `gen_ai.request.model`, `lane` and `waited`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const admissions: Counter = internal.instruments.admissions

/**
 * Time each attempt waited for admission, in seconds, tagged `gen_ai.request.model`, `lane` and `unit` (`s`).
 *
 * @since 0.2.0
 * @category metrics
 */
export const waitSeconds: Histogram = internal.instruments.wait

/**
 * Tokens reserved at admission (the estimate, each attempt), tagged `gen_ai.request.model` and `unit`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const tokensReserved: Counter = internal.instruments.tokensReserved

/**
 * Tokens used as the answers' `usage` says, tagged `gen_ai.request.model` and `unit`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const tokensUsed: Counter = internal.instruments.tokensUsed

/**
 * OpenTelemetry's `gen_ai.client.operation.duration`: a call from asking to its end, waits and retries
 * included, in seconds.
 *
 * @since 0.2.0
 * @category metrics
 */
export const operationDuration: Histogram = internal.instruments.operationDuration

/**
 * OpenTelemetry's `gen_ai.client.token.usage`: the input and output tokens of each call that succeeded.
 *
 * @since 0.2.0
 * @category metrics
 */
export const tokenUsage: Histogram = internal.instruments.tokenUsage
