/**
 * Internal: the untagged instruments behind the tagged ones `../Metrics.ts` exports, for the dispatcher's
 * in-place updates (`unsafeUpdate` with one labels array per series; a tagged metric unions its labels at
 * every update, which misses the metric's hook cache).
 *
 * @internal
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricLabel from "effect/MetricLabel"

/** The `unit` label `@effect/opentelemetry` reads as an instrument's unit: seconds. */
export const unitSeconds = MetricLabel.make("unit", "s")

/** Bucket boundaries in seconds: 1 ms to about 1.2 hours, doubling. */
export const secondsBoundaries = MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 23 })

/** `sluice.limiter.wait.duration`, without its `unit` label. */
export const waitSeconds = Metric.histogram(
  "sluice.limiter.wait.duration",
  secondsBoundaries,
  "Time a call waited for admission"
)
