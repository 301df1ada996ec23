// The limiter's gauges kept current by `sampleMetrics` (under TestClock), the seconds histogram, and tenant scopes
// left out of the level gauges unless asked for. Metric state is global to the process: each test tags its own
// series (`Effect.tagMetrics`) so no other test's updates are read.
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, Metrics, RateLimiter } from "@sluice/core"
import type { MetricState } from "effect"
import { Effect, Fiber, Metric, TestClock } from "effect"

const gauge = (metric: Metric.Metric.Gauge<number>, tags: Record<string, string>) =>
  Effect.map(
    Metric.value(Object.entries(tags).reduce((m, [key, value]) => Metric.tagged(m, key, value), metric)),
    (state: MetricState.MetricState.Gauge<number>) => state.value
  )

const budgets = [
  Budget.make("org:g", [Budget.Limit.perMinute("tokens", 600)]),
  Budget.make("tenant:*", [Budget.Limit.perMinute("tokens", 600)])
]

describe("RateLimiter gauges", () => {
  it.scoped("sampleMetrics keeps level, limit, utilisation and queue depth current on the Clock", () =>
    Effect.gen(function*() {
      const run = `gauges-${Math.random().toString(36).slice(2)}`
      const tokens = { scope: "org:g", dimension: "tokens", window: "1m", run }
      const limiter = yield* Effect.tagMetrics(RateLimiter.make({ budgets }), "run", run)
      yield* RateLimiter.sampleMetrics(limiter, "1 second")
      yield* TestClock.adjust("1 second")
      expect(yield* gauge(Metrics.limit, tokens)).toBe(600)
      expect(yield* gauge(Metrics.utilization, tokens)).toBe(0)
      // 480 of 600 taken: 80% in use, nobody waiting
      yield* limiter.acquire(["org:g"], { tokens: 480 })
      yield* TestClock.adjust("1 second")
      // a second has refilled 10 tokens since: 470 in use
      expect(yield* gauge(Metrics.level, tokens)).toBe(130)
      expect(yield* gauge(Metrics.utilization, tokens)).toBeCloseTo(470 / 600, 10)
      // a call of 300 waits (17 s at 10 a second), then is admitted
      const waiting = yield* Effect.fork(limiter.acquire(["org:g"], { tokens: 300 }, { priority: "background" }))
      yield* TestClock.adjust("1 second")
      expect(yield* gauge(Metrics.queueDepth, { lane: "background", run })).toBe(1)
      expect(yield* gauge(Metrics.queueDepth, { lane: "interactive", run })).toBe(0)
      yield* TestClock.adjust("20 seconds")
      yield* Fiber.join(waiting)
      expect(yield* gauge(Metrics.queueDepth, { lane: "background", run })).toBe(0)
      const waits = yield* Metric.value(
        Metrics.waitSeconds.pipe(Metric.tagged("lane", "background"), Metric.tagged("run", run))
      )
      expect(waits.count).toBe(1)
      // waited from t=2 s to its admission at t=19 s (17 s), in seconds
      expect(waits.sum).toBe(17)
      const waited = yield* Metric.value(
        Metrics.admissionsWaited.pipe(Metric.tagged("lane", "background"), Metric.tagged("run", run))
      )
      expect(waited.count).toBe(1)
    }).pipe(Effect.provide(LimiterStore.layerMemory)))

  it.scoped("tenant scopes are in the level gauges only when metricScopes asks", () =>
    Effect.gen(function*() {
      const run = `tenants-${Math.random().toString(36).slice(2)}`
      const tenant = { scope: "tenant:42", dimension: "tokens", window: "1m", run }
      const shared = yield* Effect.tagMetrics(RateLimiter.make({ budgets }), "run", run)
      yield* shared.acquire(["org:g", "tenant:42"], { tokens: 100 })
      yield* shared.snapshot
      expect(yield* gauge(Metrics.limit, { ...tenant, scope: "org:g" })).toBe(600)
      // never set: a gauge that was not updated reads 0 and has no series to export
      expect(yield* gauge(Metrics.limit, tenant)).toBe(0)
      const all = yield* Effect.tagMetrics(RateLimiter.make({ budgets, metricScopes: () => true }), "run", run)
      yield* all.acquire(["org:g", "tenant:42"], { tokens: 100 })
      yield* all.snapshot
      expect(yield* gauge(Metrics.limit, tenant)).toBe(600)
      // both limiters charge the one memory store: 200 of the tenant's 600 are taken
      expect(yield* gauge(Metrics.level, tenant)).toBe(400)
      expect(Metrics.sharedScope("org:a/project:b/pool:gpt-4o")).toBe(true)
      expect(Metrics.sharedScope("tenant:42")).toBe(false)
      expect(Metrics.sharedScope("org:a/tenant:42")).toBe(false)
    }).pipe(Effect.provide(LimiterStore.layerMemory)))
})
