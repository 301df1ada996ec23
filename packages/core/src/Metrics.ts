/**
 * The metric names Sluice reports, as Effect Metrics. Every exporter Effect supports (OpenTelemetry,
 * Prometheus through `@effect/opentelemetry`) sees them under these names.
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

/**
 * Admissions, tagged `lane`.
 *
 * @since 0.1.0
 * @category limiter
 */
export const admissions = Metric.counter("sluice_limiter_admissions_total", {
  description: "Calls admitted by the rate limiter",
  incremental: true
})

/**
 * Time from asking to admission, in milliseconds, tagged `lane`.
 *
 * @since 0.1.0
 * @category limiter
 */
export const waitMillis = Metric.histogram(
  "sluice_limiter_wait_ms",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 20 }),
  "Time a call waited for admission (ms)"
)

/**
 * Admissions refused, tagged `reason`: `capacity` (can never fit), `deadline`, `closed`, `store`.
 *
 * @since 0.1.0
 * @category limiter
 */
export const rejections = Metric.counter("sluice_limiter_rejections_total", {
  description: "Calls the rate limiter refused",
  incremental: true
})

/**
 * Units refunded by settle or release, tagged `dimension`.
 *
 * @since 0.1.0
 * @category limiter
 */
export const refunds = Metric.counter("sluice_limiter_refunded_total", {
  description: "Units refunded to budgets by settle or release",
  incremental: true
})

/**
 * The current level of a bucket, tagged `scope`, `dimension` and `window`; updated on every
 * snapshot.
 *
 * @since 0.1.0
 * @category limiter
 */
export const level = Metric.gauge("sluice_limiter_level", { description: "Units available in a budget bucket" })

/**
 * Gates closed, tagged `scope` and `dimension`.
 *
 * @since 0.1.0
 * @category limiter
 */
export const gates = Metric.counter("sluice_limiter_gates_total", {
  description: "Gates (not-before times) set on scopes",
  incremental: true
})
