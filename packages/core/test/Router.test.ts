import { describe, expect, it } from "@effect/vitest"
import { Budget, CircuitBreaker, RateLimiter, Router } from "@sluice/core"
import { VirtualTime } from "@sluice/testing"
import type { Duration } from "effect"
import {
  Clock,
  Config,
  Effect,
  Either,
  Exit,
  FastCheck as fc,
  Fiber,
  Layer,
  Metric,
  Option,
  Schema,
  TestClock,
  Tracer
} from "effect"

// -----------------------------------------------------------------------------
// fake calls: tagged errors as a provider layer would raise them
// -----------------------------------------------------------------------------

class ContextLengthExceeded extends Schema.TaggedError<ContextLengthExceeded>()("ContextLengthExceeded", {
  model: Schema.String
}) {}
class ContentPolicy extends Schema.TaggedError<ContentPolicy>()("ContentPolicy", { model: Schema.String }) {}
class QuotaExhausted extends Schema.TaggedError<QuotaExhausted>()("QuotaExhausted", {
  organization: Schema.String
}) {}
class RateLimited extends Schema.TaggedError<RateLimited>()("RateLimited", {}) {}
class Overloaded extends Schema.TaggedError<Overloaded>()("Overloaded", { model: Schema.String }) {}

type CallError = ContextLengthExceeded | ContentPolicy | QuotaExhausted | Overloaded

/**
 * The fake provider's fallback rules for the errors above (the core knows none of them), and the tags it
 * always reports: passed to the router as a provider package passes its own.
 */
const provider: { readonly rules: Router.FallbackRules; readonly report: ReadonlyArray<string> } = {
  rules: {
    ContextLengthExceeded: "larger-context",
    RateLimited: { interactive: "wait", background: "other-pool" },
    Overloaded: "next",
    ContentPolicy: "none",
    QuotaExhausted: "other-organization"
  },
  report: ["QuotaExhausted"]
}

const large: Router.Candidate = {
  id: "gpt-4o",
  model: "gpt-4o",
  scopes: ["org:acme", "pool:gpt-4o"],
  organization: "acme",
  contextWindow: 128_000,
  price: { input: 2.5e-6, output: 10e-6 },
  capabilities: ["tools", "vision", "json"]
}
const mini: Router.Candidate = {
  id: "gpt-4o-mini",
  model: "gpt-4o-mini",
  scopes: ["org:acme", "pool:gpt-4o-mini"],
  organization: "acme",
  contextWindow: 128_000,
  price: { input: 0.15e-6, output: 0.6e-6 },
  capabilities: ["tools", "json"]
}
const longContext: Router.Candidate = {
  id: "gpt-4.1",
  model: "gpt-4.1",
  scopes: ["org:acme", "pool:gpt-4.1"],
  organization: "acme",
  contextWindow: 1_000_000,
  price: { input: 2e-6, output: 8e-6 },
  capabilities: ["tools", "json"]
}

const budgets = [
  Budget.make("org:acme", [Budget.Limit.perMinute("requests", 10_000)]),
  Budget.make("pool:gpt-4o", [Budget.Limit.perMinute("tokens", 60_000)]),
  Budget.make("pool:gpt-4o-mini", [Budget.Limit.perMinute("tokens", 60_000)]),
  Budget.make("pool:gpt-4.1", [Budget.Limit.perMinute("tokens", 60_000)]),
  Budget.make("org:other", [Budget.Limit.perMinute("requests", 10_000)]),
  Budget.make("pool:other/gpt-4o", [Budget.Limit.perMinute("tokens", 60_000)])
]

const Limits = RateLimiter.layerMemory({ budgets })

/** A call that charges the candidate's scopes through the real limiter and takes `latency`. */
const limitedCall = (
  limiter: RateLimiter.Service,
  candidate: Router.Candidate,
  cost: Budget.Cost,
  priority: RateLimiter.Lane,
  latency: Duration.DurationInput = "1 second"
) =>
  limiter.withPermit(
    candidate.scopes,
    cost,
    // a made call is charged (an unsettled permit would be refunded)
    (permit) => Effect.as(Effect.zipRight(Effect.sleep(latency), permit.settle(cost)), candidate.id),
    { priority }
  )

const cost = { requests: 1, tokens: 1_000 }

describe("Router", () => {
  it.effect("when the large pool is exhausted, background spills to mini and interactive waits", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.RateLimiter
      const router = yield* Router.make({ ...provider, candidates: [large, mini] })
      // exhaust gpt-4o's pool
      const hog = yield* limiter.acquire(["pool:gpt-4o"], { tokens: 60_000 })
      yield* hog.settle({ tokens: 60_000 })

      const [servedBy, decision] = yield* router.runWithDecision(
        { cost, priority: "background" },
        (c) => limitedCall(limiter, c, cost, "background", 0)
      )
      expect(servedBy).toBe("gpt-4o-mini")
      expect(decision.spilled).toBe(true)
      expect(decision.planned).toEqual(["gpt-4o", "gpt-4o-mini"])
      expect(decision.steps.map((s) => s._tag)).toEqual(["Skipped", "Spilled", "Attempt", "Succeeded"])
      expect(decision.steps[0]).toMatchObject({ candidate: "gpt-4o", reason: expect.stringContaining("saturated") })
      expect(decision.steps[1]).toMatchObject({ from: "gpt-4o", to: "gpt-4o-mini", reason: "Saturated" })

      const interactive = yield* Effect.fork(
        router.runWithDecision({ cost, priority: "interactive" }, (c) => limitedCall(limiter, c, cost, "interactive"))
      )
      yield* TestClock.adjust("500 millis")
      expect(Option.isNone(yield* Fiber.poll(interactive))).toBe(true)
      // 1,000 tokens refill in one second at 60,000 / minute; the call itself takes one more second
      yield* TestClock.adjust("1500 millis")
      const [servedInteractive, waited] = yield* Fiber.join(interactive)
      expect(servedInteractive).toBe("gpt-4o")
      expect(waited.spilled).toBe(false)
      expect(waited.steps[0]).toMatchObject({ _tag: "Waited", candidate: "gpt-4o", reason: "Saturated" })

      const summary = yield* router.summary
      expect(summary).toMatchObject({ decisions: 2, spilled: 1, chosen: { "gpt-4o": 1, "gpt-4o-mini": 1 } })
      expect(summary.spills).toEqual([{ from: "gpt-4o", to: "gpt-4o-mini", reason: "Saturated", count: 1 }])
      const spills = yield* Metric.value(
        Router.spillsTotal.pipe(
          Metric.tagged("from", "gpt-4o"),
          Metric.tagged("to", "gpt-4o-mini"),
          Metric.tagged("reason", "Saturated")
        )
      )
      expect(spills.count).toBeGreaterThanOrEqual(1)
    }).pipe(Effect.provide(Limits)))

  it.effect("a 429 (RateLimited) gates the pool: interactive waits and retries the same model, background moves", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.RateLimiter
      const router = yield* Router.make({ ...provider, candidates: [large, mini] })
      let rejectNext = 0
      const calls: Array<string> = []
      // what a provider layer does with a 429: gate the pool for retry-after, then fail with RateLimited
      const call = (c: Router.Candidate) =>
        Effect.suspend((): Effect.Effect<string, RateLimited | RateLimiter.AcquireError> => {
          calls.push(c.id)
          if (c.id === "gpt-4o" && rejectNext > 0) {
            rejectNext--
            return Effect.zipRight(limiter.block("pool:gpt-4o", "*", "2 seconds"), Effect.fail(new RateLimited()))
          }
          return limiter.withPermit(c.scopes, cost, (permit) => Effect.as(permit.settle(cost), c.id))
        })

      rejectNext = 1
      const fiber = yield* Effect.fork(router.runWithDecision({ cost, priority: "interactive" }, call))
      yield* TestClock.adjust("1 second")
      expect(Option.isNone(yield* Fiber.poll(fiber))).toBe(true)
      yield* TestClock.adjust("1 second")
      const [servedBy, decision] = yield* Fiber.join(fiber)
      expect(servedBy).toBe("gpt-4o")
      expect(calls).toEqual(["gpt-4o", "gpt-4o"])
      expect(decision.steps.map((s) => s._tag)).toEqual(["Attempt", "Failed", "Waited", "Attempt", "Succeeded"])
      expect(decision.spilled).toBe(false)

      calls.length = 0
      rejectNext = 1
      const [bg, bgDecision] = yield* router.runWithDecision({ cost, priority: "background" }, call)
      expect(bg).toBe("gpt-4o-mini")
      expect(calls).toEqual(["gpt-4o", "gpt-4o-mini"])
      expect(bgDecision.steps).toContainEqual(
        expect.objectContaining({ _tag: "Spilled", from: "gpt-4o", to: "gpt-4o-mini", reason: "RateLimited" })
      )

      // an interactive request whose deadline cannot cover the gate moves to another pool too
      yield* TestClock.adjust("5 seconds")
      calls.length = 0
      rejectNext = 1
      const now = yield* Clock.currentTimeMillis
      const [urgent] = yield* router.runWithDecision({ cost, priority: "interactive", deadline: now + 500 }, call)
      expect(urgent).toBe("gpt-4o-mini")
      expect(calls).toEqual(["gpt-4o", "gpt-4o-mini"])

      const chosen = yield* Metric.value(
        Router.decisionsTotal.pipe(Metric.tagged("candidate", "gpt-4o"), Metric.tagged("outcome", "failed"))
      )
      expect(chosen.count).toBeGreaterThanOrEqual(3)
    }).pipe(Effect.provide(Limits)))

  it.effect("the router's plan is a partition of the candidates, whatever a strategy returns", () =>
    Effect.gen(function*() {
      const ids = ["a", "b", "c", "d", "e"]
      const candidates = ids.map((id): Router.Candidate => ({ id, model: id, scopes: [`pool:${id}`] }))
      const picks = fc.sample(
        fc.record({
          order: fc.array(fc.constantFrom(...ids), { maxLength: 8 }),
          skipped: fc.array(fc.constantFrom(...ids), { maxLength: 8 })
        }),
        { numRuns: 100, seed: 7 }
      )
      for (const pick of picks) {
        // a careless user strategy: duplicates, candidates both ordered and skipped, some left out
        const careless: Router.RoutingStrategy = (_request, states) => ({
          order: pick.order.map((id) => states.find((s) => s.candidate.id === id)!),
          skipped: pick.skipped.map((id) => ({ state: states.find((s) => s.candidate.id === id)!, reason: "x" }))
        })
        const router = yield* Router.make({ ...provider, candidates, strategy: careless })
        const plan = yield* router.plan({ cost })
        const seen = [...plan.order, ...plan.skipped.map((s) => s.state)].map((s) => s.candidate.id)
        expect([...seen].sort()).toEqual(ids)
        expect(plan.order.map((s) => s.candidate.id)).toEqual([...new Set(pick.order)])
      }
    }).pipe(Effect.provide(RateLimiter.layerMemory({ budgets: [] }))))

  it.effect("each decision is annotated on the Router.run span", () =>
    Effect.gen(function*() {
      const spans: Array<Tracer.Span> = []
      const base = yield* Effect.tracer
      const recording = Tracer.make({
        span: (...args) => {
          const span = base.span(...args)
          spans.push(span)
          return span
        },
        context: base.context
      })
      const router = yield* Router.make({ ...provider, candidates: [large, mini] })
      yield* router.run(
        { cost, task: "classification" },
        (c) => c.id === "gpt-4o" ? Effect.fail(new Overloaded({ model: c.model })) : Effect.succeed(c.id)
      ).pipe(Effect.withTracer(recording))
      const run = spans.find((span) => span.name === "Router.run")!
      expect(run.attributes.get("sluice.router.task")).toBe("classification")
      expect(run.attributes.get("sluice.router.chosen")).toBe("gpt-4o-mini")
      expect(run.attributes.get("sluice.router.spilled")).toBe(true)
      expect(run.attributes.get("sluice.router.steps")).toContain("spilled gpt-4o -> gpt-4o-mini (Overloaded)")
      expect(spans.filter((span) => span.name === "Router.attempt")).toHaveLength(2)
    }).pipe(Effect.provide(Limits)))

  it.effect("two pools carry twice the background throughput of either pool alone", () =>
    Effect.gen(function*() {
      const measure = (candidates: ReadonlyArray<Router.Candidate>) =>
        Effect.gen(function*() {
          const limiter = yield* RateLimiter.RateLimiter
          const router = yield* Router.make({ ...provider, candidates, strategy: Router.leastWait })
          let done = 0
          const calls = Effect.forEach(
            // more than two pools can carry in 5 minutes (2 × 360), so every pool stays saturated
            Array.from({ length: 800 }, (_, i) => i),
            () =>
              Effect.fork(
                Effect.tap(
                  router.run({ cost, priority: "background" }, (c) => limitedCall(limiter, c, cost, "background")),
                  () => Effect.sync(() => done++)
                )
              ),
            { discard: true }
          )
          // 5 minutes of virtual time: every sleep due by then wakes, in order, and what it starts runs (as
          // `TestClock.adjust("5 minutes")` would, but stepped by @sluice/testing's driver, without a real timer
          // turn for each of the thousands of sleeps), then the calls are interrupted
          const stopped = yield* Effect.flip(
            VirtualTime.run(Effect.zipRight(calls, Effect.never), { deadline: "5 minutes" })
          )
          expect(stopped._tag).toBe("DeadlineReached")
          return { done, summary: yield* router.summary }
        }).pipe(Effect.provide(RateLimiter.layerMemory({ budgets })))

      const largeAlone = yield* measure([large])
      const miniAlone = yield* measure([mini])
      const both = yield* measure([large, mini])
      // 60,000 TPM at 1,000 tokens a call: a 60-call burst, then one call a second
      expect(largeAlone.done).toBeGreaterThanOrEqual(355)
      expect(largeAlone.done).toBeLessThanOrEqual(361)
      expect(miniAlone.done).toBe(largeAlone.done)
      const ratio = both.done / largeAlone.done
      // the figures the report quotes
      yield* Effect.log(`one pool ${largeAlone.done}, two pools ${both.done}: ${ratio.toFixed(3)}x`)
      expect(ratio).toBeGreaterThan(1.95)
      expect(ratio).toBeLessThanOrEqual(2.01)
      // both pools carried about half of it
      expect(both.summary.chosen["gpt-4o"]).toBeGreaterThan(both.done * 0.45)
      expect(both.summary.chosen["gpt-4o-mini"]).toBeGreaterThan(both.done * 0.45)
    }))

  it.effect("a context-length failure falls over to the long-context candidate exactly once", () =>
    Effect.gen(function*() {
      const router = yield* Router.make({ ...provider, candidates: [large, mini, longContext] })
      const calls: Array<string> = []
      const call = (fits: (c: Router.Candidate) => boolean) => (c: Router.Candidate) =>
        Effect.suspend(() => {
          calls.push(c.id)
          return fits(c)
            ? Effect.succeed(c.id)
            : Effect.fail<CallError>(new ContextLengthExceeded({ model: c.model }))
        })
      const request = { cost: { requests: 1, tokens: 150_000 }, promptTokens: 100_000, outputTokens: 10_000 }

      const [servedBy, decision] = yield* router.runWithDecision(request, call((c) => c.id === "gpt-4.1"))
      expect(servedBy).toBe("gpt-4.1")
      // gpt-4o-mini has the same window as gpt-4o: never tried
      expect(calls).toEqual(["gpt-4o", "gpt-4.1"])
      expect(decision.steps).toContainEqual(
        expect.objectContaining({ _tag: "Spilled", from: "gpt-4o", to: "gpt-4.1", reason: "ContextLengthExceeded" })
      )

      // when the long-context candidate is too small as well, it is tried once and the error surfaces
      calls.length = 0
      const error = yield* Effect.flip(router.run(request, call(() => false)))
      expect(error).toBeInstanceOf(ContextLengthExceeded)
      expect(calls).toEqual(["gpt-4o", "gpt-4.1"])
    }).pipe(Effect.provide(RateLimiter.layerMemory({ budgets: [] }))))

  it.effect("every attempt is given the request's arrival: a fallback keeps its place in the next pool's lane", () =>
    Effect.gen(function*() {
      const router = yield* Router.make({ ...provider, candidates: [large, longContext] })
      yield* TestClock.adjust("7 seconds")
      const seen: Array<{ readonly id: string; readonly arrivedAt: number; readonly at: number }> = []
      // the first candidate fails after 5 s; the fallback is attempted then, as of the request's arrival (7 s)
      const call = (c: Router.Candidate, attempt: Router.Attempt) =>
        Effect.flatMap(Clock.currentTimeMillis, (at) => {
          seen.push({ id: c.id, arrivedAt: attempt.arrivedAt, at })
          return c.id === "gpt-4.1"
            ? Effect.succeed(c.id)
            : Effect.delay(Effect.fail<CallError>(new ContextLengthExceeded({ model: c.model })), "5 seconds")
        })
      const request = { cost: { requests: 1, tokens: 150_000 }, promptTokens: 100_000, outputTokens: 10_000 }
      const fiber = yield* Effect.fork(router.run(request, call))
      yield* TestClock.adjust("5 seconds")
      expect(yield* Fiber.join(fiber)).toBe("gpt-4.1")
      expect(seen).toEqual([
        { id: "gpt-4o", arrivedAt: 7_000, at: 7_000 },
        { id: "gpt-4.1", arrivedAt: 7_000, at: 12_000 }
      ])
    }).pipe(Effect.provide(RateLimiter.layerMemory({ budgets: [] }))))

  it.effect("a content-policy failure does not fall over", () =>
    Effect.gen(function*() {
      const router = yield* Router.make({ ...provider, candidates: [large, mini, longContext] })
      const calls: Array<string> = []
      const exit = yield* Effect.exit(router.runWithDecision({ cost }, (c) =>
        Effect.suspend(() => {
          calls.push(c.id)
          return Effect.fail(new ContentPolicy({ model: c.model }))
        })))
      expect(calls).toEqual(["gpt-4o"])
      expect(Exit.isFailure(exit)).toBe(true)
      const decisions = yield* router.decisions
      expect(decisions[0].outcome).toBe("failure")
      expect(decisions[0].steps).toContainEqual(
        expect.objectContaining({ _tag: "Failed", candidate: "gpt-4o", error: "ContentPolicy", action: "none" })
      )
    }).pipe(Effect.provide(Limits)))

  it.effect("quota exhaustion on one organization moves traffic to the other, and is reported", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.RateLimiter
      const otherOrg: Router.Candidate = {
        ...large,
        id: "other/gpt-4o",
        organization: "other",
        scopes: ["org:other", "pool:other/gpt-4o"]
      }
      const reports: Array<Router.Decision> = []
      const router = yield* Router.make({
        ...provider,
        candidates: [large, mini, otherOrg],
        onDecision: (d) => Effect.sync(() => void (d.reported.length > 0 && reports.push(d)))
      })
      const calls: Array<string> = []
      const call = (c: Router.Candidate) =>
        Effect.suspend(() => {
          calls.push(c.id)
          if (c.organization === "acme") {
            // what a provider layer does on insufficient_quota: close the organization's scope
            return Effect.zipRight(
              limiter.close("org:acme", "insufficient_quota"),
              Effect.fail(new QuotaExhausted({ organization: "acme" }))
            )
          }
          return Effect.succeed(c.id)
        })

      const [servedBy, decision] = yield* router.runWithDecision({ cost }, call)
      expect(servedBy).toBe("other/gpt-4o")
      // gpt-4o-mini is in the same organization: skipped
      expect(calls).toEqual(["gpt-4o", "other/gpt-4o"])
      expect(decision.reported).toEqual([{ candidate: "gpt-4o", error: "QuotaExhausted" }])
      expect(reports).toHaveLength(1)

      // later traffic goes to the other organization at once: acme's scope is closed
      calls.length = 0
      const [again, next] = yield* router.runWithDecision({ cost }, call)
      expect(again).toBe("other/gpt-4o")
      expect(calls).toEqual(["other/gpt-4o"])
      expect(next.skipped).toEqual([
        { candidate: "gpt-4o", reason: "scope org:acme closed" },
        { candidate: "gpt-4o-mini", reason: "scope org:acme closed" }
      ])
      expect((yield* router.summary).reported).toBe(1)
    }).pipe(Effect.provide(Limits)))

  it.effect("quota exhaustion with no other organization fails with the quota error, reported", () =>
    Effect.gen(function*() {
      const router = yield* Router.make({ ...provider, candidates: [large, mini] })
      const calls: Array<string> = []
      const error = yield* Effect.flip(router.run({ cost }, (c) =>
        Effect.suspend(() => {
          calls.push(c.id)
          return Effect.fail(new QuotaExhausted({ organization: "acme" }))
        })))
      expect(error).toBeInstanceOf(QuotaExhausted)
      expect(calls).toEqual(["gpt-4o"])
      expect((yield* router.decisions)[0].reported).toEqual([{ candidate: "gpt-4o", error: "QuotaExhausted" }])
    }).pipe(Effect.provide(Limits)))

  it.effect("an open breaker is skipped until half-open, then probed", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.CircuitBreaker
      const router = yield* Router.make({ ...provider, candidates: [large, mini] })
      let healthy = false
      const calls: Array<string> = []
      const call = (c: Router.Candidate) =>
        Effect.suspend(() => {
          calls.push(c.id)
          return c.id === "gpt-4o" && !healthy ? Effect.fail(new Overloaded({ model: c.model })) : Effect.succeed(c.id)
        })
      // two overloads open gpt-4o's breaker; each request still succeeds on mini
      expect(yield* router.run({ cost }, call)).toBe("gpt-4o-mini")
      expect(yield* router.run({ cost }, call)).toBe("gpt-4o-mini")
      expect(yield* breaker.state("gpt-4o")).toBe("Open")

      calls.length = 0
      const [servedBy, decision] = yield* router.runWithDecision({ cost }, call)
      expect(servedBy).toBe("gpt-4o-mini")
      expect(calls).toEqual(["gpt-4o-mini"])
      expect(decision.skipped).toEqual([{ candidate: "gpt-4o", reason: "circuit breaker open" }])

      yield* TestClock.adjust("29 seconds")
      calls.length = 0
      yield* router.run({ cost }, call)
      expect(calls).toEqual(["gpt-4o-mini"])

      yield* TestClock.adjust("1 second")
      expect(yield* breaker.state("gpt-4o")).toBe("HalfOpen")
      healthy = true
      calls.length = 0
      const [probed, probe] = yield* router.runWithDecision({ cost }, call)
      expect(probed).toBe("gpt-4o")
      expect(calls).toEqual(["gpt-4o"])
      expect(probe.spilled).toBe(false)
      expect(yield* breaker.state("gpt-4o")).toBe("Closed")
    }).pipe(
      Effect.provide(Layer.merge(Limits, CircuitBreaker.layer({ consecutiveFailures: 2, openFor: "30 seconds" })))
    ))

  it.effect("a custom strategy routes as written", () =>
    Effect.gen(function*() {
      // cheap models for short prompts, never gpt-4o for background work, everything else by price
      const custom: Router.RoutingStrategy = (request, states) => ({
        order: [...states]
          .filter((s) => !(request.priority === "background" && s.candidate.id === "gpt-4o"))
          .sort((a, b) => (request.promptTokens ?? 0) < 1_000 ? a.price - b.price : b.price - a.price),
        skipped: request.priority === "background"
          ? states.filter((s) => s.candidate.id === "gpt-4o").map((state) => ({ state, reason: "no background on 4o" }))
          : []
      })
      const router = yield* Router.make({ ...provider, candidates: [large, mini, longContext], strategy: custom })
      const pick = (request: Router.RouteRequest) => router.runWithDecision(request, (c) => Effect.succeed(c.id))

      const [short] = yield* pick({ cost, promptTokens: 100, outputTokens: 100 })
      expect(short).toBe("gpt-4o-mini")
      const [long, decision] = yield* pick({ cost, promptTokens: 5_000, outputTokens: 100 })
      expect(long).toBe("gpt-4o")
      expect(decision.planned).toEqual(["gpt-4o", "gpt-4.1", "gpt-4o-mini"])
      const [bg, bgDecision] = yield* pick({ cost, promptTokens: 5_000, outputTokens: 100, priority: "background" })
      expect(bg).not.toBe("gpt-4o")
      expect(bgDecision.skipped).toEqual([{ candidate: "gpt-4o", reason: "no background on 4o" }])
    }).pipe(Effect.provide(Limits)))

  it.effect("filters, task table and NoCandidate with reasons", () =>
    Effect.gen(function*() {
      const table = yield* Router.decodeTaskTable({
        classification: ["gpt-4o-mini"],
        "customer-facing": ["gpt-4o"],
        "long-document": ["gpt-4.1", "gpt-4o"]
      })
      const router = yield* Router.make({
        ...provider,
        candidates: [large, mini, longContext],
        strategy: Router.eligible(Router.byTask(Router.priority, table))
      })
      const pick = (request: Router.RouteRequest) => router.run(request, (c) => Effect.succeed(c.id))
      expect(yield* pick({ cost, task: "classification" })).toBe("gpt-4o-mini")
      expect(yield* pick({ cost, task: "customer-facing" })).toBe("gpt-4o")
      expect(yield* pick({ cost, task: "long-document" })).toBe("gpt-4.1")
      expect(yield* pick({ cost, task: "unlisted" })).toBe("gpt-4o")

      const error = yield* Effect.flip(pick({ cost, task: "classification", capabilities: ["vision"] }))
      expect(error).toBeInstanceOf(Router.NoCandidate)
      expect((error as Router.NoCandidate).skipped).toEqual([
        { candidate: "gpt-4o-mini", reason: "missing capabilities: vision" },
        { candidate: "gpt-4.1", reason: "missing capabilities: vision" },
        { candidate: "gpt-4o", reason: "not listed for task classification" }
      ])

      const bad = yield* Effect.either(Router.decodeTaskTable({ classification: [] }))
      expect(Either.isLeft(bad)).toBe(true)
      if (Either.isLeft(bad)) expect(bad.left.message).toContain("classification")
    }).pipe(Effect.provide(Limits)))

  it.effect("layerConfig decodes candidates, task table and rules, naming the bad path", () =>
    Effect.gen(function*() {
      const json = JSON.stringify({
        candidates: [mini, large],
        tasks: { "customer-facing": ["gpt-4o"] },
        rules: { Overloaded: "none" }
      })
      const served = yield* Router.run({ cost, task: "customer-facing" }, (c) => Effect.succeed(c.id)).pipe(
        Effect.provide(Router.layerConfig(Config.succeed(json)))
      )
      expect(served).toBe("gpt-4o")
      const calls: Array<string> = []
      const error = yield* Effect.flip(
        Router.run({ cost }, (c) =>
          Effect.suspend(() => {
            calls.push(c.id)
            return Effect.fail(new Overloaded({ model: c.model }))
          })).pipe(Effect.provide(Router.layerConfig(Config.succeed(json))))
      )
      expect(error).toBeInstanceOf(Overloaded)
      expect(calls).toEqual(["gpt-4o-mini"])

      const bad = JSON.stringify({ candidates: [{ id: "x", model: "x", scopes: "pool:x" }], rules: { X: "sideways" } })
      const failure = yield* Effect.flip(
        Router.run({ cost }, () => Effect.void).pipe(Effect.provide(Router.layerConfig(Config.succeed(bad))))
      )
      expect(String(failure)).toContain("scopes")
      expect(String(failure)).toContain("sideways")
    }).pipe(Effect.provide(Limits)))

  it.effect("weighted random and cheapest-now are pure in the request", () =>
    Effect.gen(function*() {
      const weighted = [{ ...large, weight: 1 }, { ...mini, weight: 3 }]
      const router = yield* Router.make({ ...provider, candidates: weighted, strategy: Router.weightedRandom })
      const first = (random: number) => Effect.map(router.plan({ cost, random }), (p) => p.order[0].candidate.id)
      expect(yield* first(0.1)).toBe("gpt-4o")
      expect(yield* first(0.3)).toBe("gpt-4o-mini")
      expect(yield* first(0.99)).toBe("gpt-4o-mini")

      const limiter = yield* RateLimiter.RateLimiter
      const cheap = yield* Router.make({ ...provider, candidates: [large, mini], strategy: Router.cheapest })
      const request = { cost, promptTokens: 500, outputTokens: 500 }
      expect((yield* cheap.plan(request)).order.map((s) => s.candidate.id)).toEqual(["gpt-4o-mini", "gpt-4o"])
      const hog = yield* limiter.acquire(["pool:gpt-4o-mini"], { tokens: 60_000 })
      yield* hog.settle({ tokens: 60_000 })
      expect((yield* cheap.plan(request)).order.map((s) => s.candidate.id)).toEqual(["gpt-4o", "gpt-4o-mini"])
    }).pipe(Effect.provide(Limits)))

  it.effect("lowest latency follows the recorded EWMA", () =>
    Effect.gen(function*() {
      const router = yield* Router.make({ ...provider, candidates: [large, mini], strategy: Router.lowestLatency })
      yield* router.observe("gpt-4o", { latencyMillis: 900, success: true })
      yield* router.observe("gpt-4o-mini", { latencyMillis: 300, success: true })
      expect((yield* router.plan({ cost })).order[0].candidate.id).toBe("gpt-4o-mini")
      // the router measures its own attempts too (virtual time)
      for (let i = 0; i < 10; i++) {
        yield* router.run(
          { cost },
          (c) => Effect.as(Effect.sleep(c.id === "gpt-4o-mini" ? "2 seconds" : "1 second"), c.id)
        ).pipe(Effect.fork, Effect.zipLeft(TestClock.adjust("2 seconds")), Effect.flatMap(Fiber.join))
      }
      const states = yield* router.states({ cost })
      expect(states[1].latencyMillis!).toBeGreaterThan(states[0].latencyMillis!)
      expect((yield* router.plan({ cost })).order[0].candidate.id).toBe("gpt-4o")
    }).pipe(Effect.provide(Limits)))

  it.effect("an ExecutionPlan derived from a routing plan falls over while the rules allow", () =>
    Effect.gen(function*() {
      const router = yield* Router.make({ ...provider, candidates: [large, mini] })
      const plan = yield* Router.toExecutionPlan(yield* router.plan({ cost }), { rules: provider.rules })
      const calls: Array<string> = []
      const call = (fail: (c: Router.Candidate) => CallError | undefined) =>
        Effect.flatMap(Router.CurrentCandidate, (c) => {
          calls.push(c.id)
          const error = fail(c)
          return error === undefined ? Effect.succeed(c.id) : Effect.fail(error)
        })
      expect(
        yield* Effect.withExecutionPlan(
          call((c) => c.id === "gpt-4o" ? new Overloaded({ model: c.model }) : undefined),
          plan
        )
      ).toBe("gpt-4o-mini")
      expect(calls).toEqual(["gpt-4o", "gpt-4o-mini"])
      calls.length = 0
      const error = yield* Effect.flip(
        Effect.withExecutionPlan(call((c) => new ContentPolicy({ model: c.model })), plan)
      )
      expect(error).toBeInstanceOf(ContentPolicy)
      expect(calls).toEqual(["gpt-4o"])
    }).pipe(Effect.provide(Limits)))
})

// -----------------------------------------------------------------------------
// properties of strategies (pure: no router, fabricated states)
// -----------------------------------------------------------------------------

const capabilityArb = fc.constantFrom("tools", "vision", "json", "reasoning")
const stateArb = (id: string) =>
  fc.record({
    capabilities: fc.uniqueArray(capabilityArb),
    contextWindow: fc.constantFrom(8_000, 128_000, 1_000_000),
    tags: fc.uniqueArray(fc.constantFrom("fast", "eu", "long")),
    region: fc.constantFrom("us", "eu"),
    weight: fc.integer({ min: 0, max: 5 }),
    waitMillis: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 60_000 })),
    latency: fc.option(fc.integer({ min: 10, max: 5_000 }), { nil: undefined }),
    price: fc.double({ min: 0, max: 1, noNaN: true })
  }).map((r): Router.CandidateState => ({
    candidate: {
      id,
      model: id,
      scopes: [`pool:${id}`],
      capabilities: r.capabilities,
      contextWindow: r.contextWindow,
      tags: r.tags,
      region: r.region,
      weight: r.weight
    },
    waitMillis: r.waitMillis,
    estimatedWaitMillis: r.waitMillis,
    binding: Option.none(),
    headroom: {},
    headroomFraction: {},
    queued: 0,
    breaker: "Closed",
    latencyMillis: r.latency,
    ttftMillis: undefined,
    errorRate: 0,
    calls: 0,
    price: r.price
  }))

const statesArb = fc.integer({ min: 0, max: 7 }).chain((n) =>
  fc.tuple(...Array.from({ length: n }, (_, i) => stateArb(`c${i}`)))
)

const requestArb = fc.record({
  capabilities: fc.uniqueArray(capabilityArb, { maxLength: 2 }),
  promptTokens: fc.integer({ min: 0, max: 500_000 }),
  outputTokens: fc.integer({ min: 0, max: 20_000 }),
  tags: fc.uniqueArray(fc.constantFrom("fast", "eu", "long"), { maxLength: 1 }),
  region: fc.option(fc.constantFrom("us", "eu"), { nil: undefined }),
  priority: fc.constantFrom("interactive" as const, "background" as const),
  random: fc.double({ min: 0, max: 0.999, noNaN: true }),
  stream: fc.boolean()
}).map((r): Router.Request => ({ ...r, cost: { requests: 1 }, deadline: undefined, now: 0 }))

const baseArb = fc.constantFrom(
  Router.priority,
  Router.leastWait,
  Router.weightedRandom,
  Router.cheapest,
  Router.lowestLatency,
  Router.combine(Router.cheapest, Router.leastWait),
  Router.orderBy(Router.priority, (_, s) => -s.price)
)

describe("Router strategies (properties)", () => {
  it("a plan never contains a filtered-out candidate; every candidate is ordered or skipped, once", () =>
    fc.assert(
      fc.property(statesArb, requestArb, baseArb, (states, request, base) => {
        const strategy = Router.fallback(Router.eligible(base), Router.withTags(Router.cheapest, ["never-there"]))
        const plan = strategy(request, states)
        const needed = (request.promptTokens ?? 0) + (request.outputTokens ?? 0)
        for (const s of plan.order) {
          const c = s.candidate
          for (const cap of request.capabilities ?? []) expect(c.capabilities).toContain(cap)
          expect(c.contextWindow! >= needed).toBe(true)
          for (const tag of request.tags ?? []) expect(c.tags).toContain(tag)
          if (request.region !== undefined) expect(c.region).toBe(request.region)
        }
        const ids = [...plan.order, ...plan.skipped.map((s) => s.state)].map((s) => s.candidate.id)
        expect([...ids].sort()).toEqual(states.map((s) => s.candidate.id).sort())
        expect(new Set(ids).size).toBe(ids.length)
      }),
      { numRuns: 300 }
    ))
})

describe("Router: request scopes, only, Attempt.fallsOver", () => {
  it.effect("a request's own scopes are peeked with every candidate's; `only` restricts the candidates", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.RateLimiter
      const router = yield* Router.make({ ...provider, candidates: [large, mini] })
      // the tenant's one request a minute is used: every candidate waits on it
      const permit = yield* limiter.acquire(["tenant:t"], { requests: 1 })
      yield* permit.settle({ requests: 1 })
      const states = yield* router.states({ cost, scopes: ["tenant:t"] })
      for (const s of states) {
        expect(s.waitMillis).toBeGreaterThan(50_000)
        expect(Option.map(s.binding, (b) => b.scope)).toEqual(Option.some("tenant:t"))
      }
      // without the tenant, nothing waits
      for (const s of yield* router.states({ cost })) expect(s.waitMillis).toBe(0)

      const plan = yield* router.plan({ cost, only: ["gpt-4o-mini"] })
      expect(plan.order.map((s) => s.candidate.id)).toEqual(["gpt-4o-mini"])
      expect(plan.skipped.map((s) => [s.state.candidate.id, s.reason])).toEqual([["gpt-4o", "not requested"]])
    }).pipe(
      Effect.provide(RateLimiter.layerMemory({
        budgets: [...budgets, Budget.make("tenant:t", [Budget.Limit.perMinute("requests", 1)])]
      }))
    ))

  it.effect("Attempt.fallsOver says whether the router will take an error elsewhere", () =>
    Effect.gen(function*() {
      const router = yield* Router.make({ ...provider, candidates: [large, mini] })
      const seen: Array<string> = []
      const exit = yield* Effect.exit(router.run({ cost }, (c, attempt) =>
        Effect.suspend(() => {
          const overloaded = new Overloaded({ model: c.model })
          seen.push(
            `${attempt.number}:${c.id} overloaded=${attempt.fallsOver(overloaded)} policy=${
              attempt.fallsOver(new ContentPolicy({ model: c.model }))
            }`
          )
          return Effect.fail(overloaded)
        })))
      expect(Exit.isFailure(exit)).toBe(true)
      // on gpt-4o a 503 goes to mini; on mini (the last one standing) it goes nowhere; content policy never
      expect(seen).toEqual([
        "1:gpt-4o overloaded=true policy=false",
        "2:gpt-4o-mini overloaded=false policy=false"
      ])
    }).pipe(Effect.provide(Limits)))

  it.effect("a spill target's failure does not lose the request: it waits for the pool it left", () =>
    Effect.gen(function*() {
      const limiter = yield* RateLimiter.RateLimiter
      const router = yield* Router.make({ ...provider, candidates: [large, mini] })
      // drain gpt-4o's pool: background work spills to mini, which is overloaded
      const drained = yield* limiter.acquire(large.scopes, { tokens: 60_000 })
      yield* drained.settle({ tokens: 60_000 })
      const fiber = yield* Effect.fork(
        router.runWithDecision(
          { cost, priority: "background" },
          (c): Effect.Effect<string, unknown> =>
            c.id === "gpt-4o-mini"
              ? Effect.fail(new Overloaded({ model: c.model }))
              : limitedCall(limiter, c, cost, "background")
        )
      )
      yield* TestClock.adjust("5 seconds")
      const [servedBy, decision] = yield* Fiber.join(fiber)
      expect(servedBy).toBe("gpt-4o")
      expect(decision.steps.map((s) => s._tag)).toEqual([
        "Skipped",
        "Spilled",
        "Attempt",
        "Failed",
        "Waited",
        "Spilled",
        "Attempt",
        "Succeeded"
      ])
      expect(decision.steps.find((s) => s._tag === "Waited")).toMatchObject({
        candidate: "gpt-4o",
        reason: "no other pool could admit now"
      })
    }).pipe(Effect.provide(Limits)))
})
