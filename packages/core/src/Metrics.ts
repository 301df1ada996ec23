/**
 * The metric names Sluice reports, as Effect Metrics. Every exporter Effect supports (OpenTelemetry,
 * Prometheus through `@effect/opentelemetry`) sees them under these names.
 *
 * Durations are in seconds, as OpenTelemetry's conventions ask: `sluice.limiter.wait.duration` (unit `s`,
 * carried as the `unit` label, which `@effect/opentelemetry` reads as the instrument's unit). The older
 * `sluice_limiter_wait_ms` histogram is still updated beside it and is deprecated.
 *
 * Level gauges (`sluice_limiter_level`, `sluice.limiter.limit`, `sluice.limiter.utilization`) and the queue
 * depth (`sluice.limiter.queue.depth`) are set by `RateLimiter.Service.snapshot`; `RateLimiter.sampleMetrics`
 * takes a snapshot every interval, so they follow the limiter continuously. Scopes of tenants (a `tenant:`
 * segment) are left out of them by default (`RateLimiter.Options.metricScopes`): one series per tenant is
 * unbounded.
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import type * as MetricKeyType from "effect/MetricKeyType"
import type * as MetricState from "effect/MetricState"
import * as internal from "./internal/metrics.js"

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
 * @deprecated Since 0.2.0: use {@link waitSeconds} (`sluice.limiter.wait.duration`, in seconds). Still
 * updated, for dashboards built on it.
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
 * Bucket boundaries in seconds for waits and call durations: 1 ms to about 1.2 hours, doubling (a wait for
 * a per-day limit lands in the last, open bucket).
 *
 * @since 0.2.0
 * @category limiter
 */
export const secondsBoundaries: MetricBoundaries.MetricBoundaries = internal.secondsBoundaries

/**
 * Time from asking to admission, in seconds (`unit` `s`), tagged `lane`. A call admitted at once records 0.
 *
 * @since 0.2.0
 * @category limiter
 * @example
 * ```ts
 * import { Metrics } from "@sluice/core"
 * import * as Effect from "effect/Effect"
 * import * as Metric from "effect/Metric"
 *
 * // the histogram of the interactive lane's waits (Prometheus: sluice_limiter_wait_duration)
 * const waits = Metric.value(Metrics.waitSeconds.pipe(Metric.tagged("lane", "interactive")))
 * const program = Effect.flatMap(waits, (state) => Effect.log(`waits so far: ${state.count}`))
 * ```
 */
export const waitSeconds: Metric.Metric<
  MetricKeyType.MetricKeyType.Histogram,
  number,
  MetricState.MetricState.Histogram
> = internal.waitSeconds.pipe(Metric.taggedWithLabels([internal.unitSeconds]))

/**
 * Admissions that waited in the queue (a wait longer than 0), tagged `lane`: with
 * `sluice_limiter_admissions_total`, the share of calls the limits held back.
 *
 * @since 0.2.0
 * @category limiter
 */
export const admissionsWaited = Metric.counter("sluice.limiter.admissions.waited", {
  description: "Calls admitted after waiting in the rate limiter's queue",
  incremental: true
})

/**
 * Calls waiting for admission now, tagged `lane`; set by every snapshot.
 *
 * @since 0.2.0
 * @category limiter
 */
export const queueDepth = Metric.gauge("sluice.limiter.queue.depth", {
  description: "Calls waiting in the rate limiter's queue"
})

/**
 * A bucket's capacity (what it holds when full), tagged `scope`, `dimension` and `window`; set by every
 * snapshot, beside {@link level}.
 *
 * @since 0.2.0
 * @category limiter
 */
export const limit = Metric.gauge("sluice.limiter.limit", {
  description: "Capacity of a budget bucket (units it holds when full)"
})

/**
 * How much of a bucket is in use, `1 − level / capacity` (0 = full bucket, idle; 1 = empty, at the limit;
 * above 1 when a settle drove it into debt), tagged `scope`, `dimension` and `window`; set by every snapshot.
 *
 * @since 0.2.0
 * @category limiter
 */
export const utilization = Metric.gauge("sluice.limiter.utilization", {
  description: "Share of a budget bucket in use (1 - level / capacity)"
})

/**
 * Whether a scope's buckets appear in the level gauges by default: every scope but a tenant's (one with a
 * `tenant:` segment), whose series would grow with the number of tenants.
 *
 * @since 0.2.0
 * @category limiter
 */
export const sharedScope = (scope: string): boolean => !/(^|\/)tenant:/.test(scope)

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
