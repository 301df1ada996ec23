// The limiter's Effect Metrics. Metric state is global to the process, so each check reads a delta.
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, Metrics, RateLimiter } from "@sluice/core"
import type { MetricState } from "effect"
import { Config, Effect, Fiber, Metric, TestClock } from "effect"

const counter = (metric: Metric.Metric.Counter<number>) =>
  Effect.map(Metric.value(metric), (state: MetricState.MetricState.Counter<number>) => state.count)

const histogramCount = (metric: ReturnType<typeof Metric.tagged<any, any, any>>) =>
  Effect.map(Metric.value(metric as any), (state: any) => state.count as number)

describe("RateLimiter metrics", () => {
  it.effect("admissions, waits, rejections, refunds, gates and levels are reported", () =>
    Effect.gen(function*() {
      const admissions = Metric.tagged(Metrics.admissions, "lane", "background")
      const waits = Metric.tagged(Metrics.waitMillis, "lane", "background")
      const deadline = Metric.tagged(Metrics.rejections, "reason", "deadline")
      const capacity = Metric.tagged(Metrics.rejections, "reason", "capacity")
      const refunds = Metric.tagged(Metrics.refunds, "dimension", "tokens")
      const gates = Metrics.gates.pipe(Metric.tagged("scope", "org:metrics"), Metric.tagged("dimension", "*"))
      const level = Metrics.level.pipe(
        Metric.tagged("scope", "org:metrics"),
        Metric.tagged("dimension", "tokens"),
        Metric.tagged("window", "1m")
      )
      const before = {
        admissions: yield* counter(admissions),
        waits: yield* histogramCount(waits),
        deadline: yield* counter(deadline),
        capacity: yield* counter(capacity),
        refunds: yield* counter(refunds),
        gates: yield* counter(gates)
      }
      const limiter = yield* RateLimiter.make({
        budgets: [Budget.make("org:metrics", [Budget.Limit.perMinute("tokens", 1000)])]
      })
      const scopes = ["org:metrics"]
      const background = { priority: "background" } as const
      const first = yield* limiter.acquire(scopes, { tokens: 800 }, background)
      yield* first.settle({ tokens: 300 }) // 500 refunded
      const second = yield* limiter.acquire(scopes, { tokens: 600 }, background)
      yield* second.release // 600 refunded
      yield* limiter.acquire(scopes, { tokens: 700 }, background) // empties the bucket
      const waiting = yield* Effect.fork(limiter.acquire(scopes, { tokens: 500 }, background))
      yield* TestClock.adjust("30 seconds")
      yield* Fiber.join(waiting)
      yield* Effect.flip(limiter.acquire(scopes, { tokens: 900 }, { ...background, maxWait: "1 second" }))
      yield* Effect.flip(limiter.acquire(scopes, { tokens: 5000 }, background))
      yield* limiter.block("org:metrics", "*", "1 second")
      yield* limiter.snapshot

      expect((yield* counter(admissions)) - before.admissions).toBe(4)
      expect((yield* histogramCount(waits)) - before.waits).toBe(4)
      expect((yield* counter(deadline)) - before.deadline).toBe(1)
      expect((yield* counter(capacity)) - before.capacity).toBe(1)
      expect((yield* counter(refunds)) - before.refunds).toBe(1100)
      expect((yield* counter(gates)) - before.gates).toBe(1)
      const gauge = yield* Metric.value(level)
      expect(gauge.value).toBe(0) // the waiter took what refilled
    }).pipe(Effect.scoped, Effect.provide(LimiterStore.layerMemory)))
})

describe("RateLimiter metrics: the series of a limiter's labels", () => {
  it.effect("an admission at once and one after a wait both count on the labels in force at make", () =>
    Effect.gen(function*() {
      const run = `labels-${Math.random().toString(36).slice(2)}`
      const admissions = Metrics.admissions.pipe(Metric.tagged("lane", "interactive"), Metric.tagged("run", run))
      const seconds = Metrics.waitSeconds.pipe(Metric.tagged("lane", "interactive"), Metric.tagged("run", run))
      const limiter = yield* Effect.tagMetrics(
        RateLimiter.make({ budgets: [Budget.make("org:labels", [Budget.Limit.perMinute("requests", 1)])] }),
        "run",
        run
      )
      // acquired from fibers without the label: the limiter's own labels decide the series
      yield* limiter.acquire(["org:labels"], { requests: 1 })
      expect(yield* counter(admissions)).toBe(1)
      expect(yield* histogramCount(seconds)).toBe(1)
      const waiting = yield* Effect.fork(limiter.acquire(["org:labels"], { requests: 1 }))
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(waiting)
      expect(yield* counter(admissions)).toBe(2)
      expect(yield* histogramCount(seconds)).toBe(2)
      expect(yield* tryCount(limiter, run)).toBe(3)
    }).pipe(Effect.scoped, Effect.provide(LimiterStore.layerMemory)))
})

describe("RateLimiter metrics: what the caller's fiber counts", () => {
  it.effect("a fast-path rejection, a refund and a gate count on the limiter's labels, not the caller's", () =>
    Effect.gen(function*() {
      const run = `caller-${Math.random().toString(36).slice(2)}`
      const limiter = yield* Effect.tagMetrics(
        RateLimiter.make({ budgets: [Budget.make("org:caller", [Budget.Limit.perMinute("tokens", 1_000)])] }),
        "run",
        run
      )
      const ours = {
        capacity: Metrics.rejections.pipe(Metric.tagged("reason", "capacity"), Metric.tagged("run", run)),
        deadline: Metrics.rejections.pipe(Metric.tagged("reason", "deadline"), Metric.tagged("run", run)),
        refunds: Metrics.refunds.pipe(Metric.tagged("dimension", "tokens"), Metric.tagged("run", run)),
        gates: Metrics.gates.pipe(
          Metric.tagged("scope", "org:caller"),
          Metric.tagged("dimension", "tokens"),
          Metric.tagged("run", run)
        )
      }
      const theirs = Metrics.rejections.pipe(Metric.tagged("reason", "capacity"), Metric.tagged("caller", run))
      // a caller of another service, with labels of its own
      yield* Effect.tagMetrics(
        Effect.gen(function*() {
          expect((yield* Effect.exit(limiter.acquire(["org:caller"], { tokens: 5_000 })))._tag).toBe("Failure")
          const permit = yield* limiter.acquire(["org:caller"], { tokens: 1_000 })
          yield* permit.settle({ tokens: 100 }) // 900 back
          yield* limiter.acquire(["org:caller"], { tokens: 900 }) // the bucket empty again
          const late = yield* Effect.exit(limiter.acquire(["org:caller"], { tokens: 500 }, { maxWait: 0 }))
          expect(late._tag).toBe("Failure")
          yield* limiter.block("org:caller", "tokens", "1 second")
        }),
        "caller",
        run
      )
      expect(yield* counter(ours.capacity)).toBe(1)
      expect(yield* counter(ours.deadline)).toBe(1)
      expect(yield* counter(ours.refunds)).toBe(900)
      expect(yield* counter(ours.gates)).toBe(1)
      expect(yield* counter(theirs)).toBe(0)
    }).pipe(Effect.scoped, Effect.provide(LimiterStore.layerMemory)))
})

/** One more admission through `tryAcquire` (a minute later, when the bucket has refilled): the count after it. */
const tryCount = (limiter: RateLimiter.Service, run: string) =>
  Effect.gen(function*() {
    yield* TestClock.adjust("1 minute")
    const permit = yield* limiter.tryAcquire(["org:labels"], { requests: 1 })
    expect(permit._tag).toBe("Some")
    return yield* counter(Metrics.admissions.pipe(Metric.tagged("lane", "interactive"), Metric.tagged("run", run)))
  })

describe("RateLimiter.layerConfig", () => {
  it.effect("decodes budgets from configuration (JSON), and names the bad path", () =>
    Effect.gen(function*() {
      const json = JSON.stringify([
        { scope: "org:cfg", limits: [{ dimension: "requests", amount: 2, window: "1 minute" }] }
      ])
      const admitted = yield* Effect.gen(function*() {
        const limiter = yield* RateLimiter.RateLimiter
        yield* limiter.acquire(["org:cfg"], { requests: 1 })
        yield* limiter.acquire(["org:cfg"], { requests: 1 })
        return yield* limiter.tryAcquire(["org:cfg"], { requests: 1 })
      }).pipe(
        Effect.provide(RateLimiter.layerConfig(Config.succeed(json))),
        Effect.provide(LimiterStore.layerMemory)
      )
      expect(admitted._tag).toBe("None") // the third of two per minute
      const bad = JSON.stringify([{ scope: "org:cfg", limits: [{ dimension: "requests", amount: -1, window: "1m" }] }])
      const error = yield* Effect.flip(
        RateLimiter.RateLimiter.pipe(
          Effect.provide(RateLimiter.layerConfig(Config.succeed(bad))),
          Effect.provide(LimiterStore.layerMemory)
        )
      )
      expect(String(error)).toContain("[0].limits[0].amount")
    }))
})
