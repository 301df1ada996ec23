/**
 * Routing against the in-process simulator, with the real `openai` SDK (its own retries off), under
 * TestClock: spills, waits, fallbacks by error kind, breakers, custom strategies, the task table, and the
 * routing file.
 */
import { describe, expect, it } from "@effect/vitest"
import type { Router } from "@sluice/core"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { Routing } from "@sluice/openai"
import { SimConfig, SimFetch, Simulator } from "@sluice/testing"
import { Chunk, Clock, Effect, Exit, Fiber, Layer, Option, Redacted, Stream, TestClock } from "effect"
import OpenAIClient from "openai"

const BASE_URL = "http://sim.local/v1"

/** The SDK on one simulator (one organization). */
const clientOf = (sim: Simulator.Simulator.Service) =>
  Effect.map(
    Effect.provideService(SimFetch.make, Simulator.Simulator, sim),
    (fetch) => new OpenAIClient({ apiKey: "sk-test", baseURL: BASE_URL, fetch: fetch as any, maxRetries: 0 })
  )

/** A routing service on its own in-memory limiter, with the options' budgets. */
const routedWith = (options: Routing.Routing.Options) =>
  Effect.gen(function*() {
    const limiter = yield* RateLimiter.make({ budgets: Routing.budgetsFor(options) }).pipe(
      Effect.provide(LimiterStore.layerMemory)
    )
    return yield* Routing.make(options).pipe(Effect.provideService(RateLimiter.RateLimiter, limiter))
  })

/** Lets the SDK's promises settle before virtual time moves. */
const settle = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve))).pipe(
  Effect.zipRight(Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve))))
)

/** Runs the effects concurrently while virtual time advances in steps, until all are done. */
const drive = <A, E>(effects: ReadonlyArray<Effect.Effect<A, E>>, stepMillis = 100, maxSteps = 20_000) =>
  Effect.gen(function*() {
    const fibers = yield* Effect.forEach(effects, (effect) => Effect.fork(effect))
    for (let step = 0; step < maxSteps; step++) {
      yield* settle
      let done = true
      for (const fiber of fibers) {
        if (Option.isNone(yield* Fiber.poll(fiber))) {
          done = false
          break
        }
      }
      if (done) break
      yield* TestClock.adjust(stepMillis)
    }
    return yield* Effect.forEach(fibers, Fiber.await)
  })

/** Runs the effects concurrently for `millis` of virtual time, then interrupts what is left. */
const runFor = <A, E>(millis: number, effects: ReadonlyArray<Effect.Effect<A, E>>, stepMillis = 100) =>
  Effect.gen(function*() {
    const fibers = yield* Effect.forEach(effects, (effect) => Effect.fork(effect))
    for (let elapsed = 0; elapsed < millis; elapsed += stepMillis) {
      yield* settle
      yield* TestClock.adjust(stepMillis)
    }
    yield* settle
    yield* Fiber.interruptAll(fibers)
  })

const perMinute = (scope: string, requests: number, tokens: number) =>
  Budget.make(scope, [Budget.Limit.perMinute("requests", requests), Budget.Limit.perMinute("tokens", tokens)])

const attemptsOf = (sim: Simulator.Simulator.Service, model?: string) =>
  Effect.map(sim.stats, (s) => s.attempts.filter((a) => model === undefined || a.model === model))

/** About 2,000 characters: 500 prompt tokens by OpenAI's character rule. */
const DOCUMENT = Array.from(
  { length: 40 },
  (_, i) => `Paragraph ${i} of the quarterly report discusses revenue, churn and hiring.`
).join(" ").slice(0, 2_000)

const summarise = (key: string, maxTokens = 500) => ({
  messages: [{ role: "user" as const, content: `[req:${key}] Summarise: ${DOCUMENT}` }],
  max_tokens: maxTokens
})

describe("Routing (simulator, real SDK, TestClock)", () => {
  it.scoped(
    "when the large model's TPM is exhausted, background spills to mini and interactive waits; two pools carry the sum",
    () =>
      Effect.gen(function*() {
        const scenario = SimConfig.make({
          organization: "org-acme",
          models: {
            "gpt-4o": { limits: { rpm: 10_000, tpm: 10_000 } },
            "gpt-4o-mini": { limits: { rpm: 10_000, tpm: 20_000 } }
          },
          latency: { request: { _tag: "fixed", ms: 1_000 } }
        })
        const budgets = [
          perMinute("org:acme/pool:gpt-4o", 10_000, 10_000),
          perMinute("org:acme/pool:gpt-4o-mini", 10_000, 20_000)
        ]
        const large: Routing.Deployment = { id: "gpt-4o", model: "gpt-4o", organization: "acme" }
        const mini: Routing.Deployment = { id: "gpt-4o-mini", model: "gpt-4o-mini", organization: "acme" }
        const windowMillis = 120_000

        const throughput = (deployments: ReadonlyArray<Routing.Deployment>, interactive: number) =>
          Effect.gen(function*() {
            const sim = yield* Simulator.make(scenario)
            const client = yield* clientOf(sim)
            const routed = yield* routedWith({ client, deployments, budgets })
            const start = yield* Clock.currentTimeMillis
            const done: Array<number> = []
            const finished = Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => done.push(now - start)))
            // a bulk job: 200 summaries, 40 in flight at most (as the bulk runner's concurrency bounds them)
            let next = 0
            const worker = Effect.whileLoop({
              while: () => next < 200,
              body: () =>
                Effect.zipRight(
                  routed.chat.completions.create(summarise(`bg-${next++}`), { priority: "background" }),
                  finished
                ),
              step: () => {}
            })
            const background = Array.from({ length: 40 }, () => worker)
            // interactive calls arrive once gpt-4o's pool is drained
            const foreground = Array.from({ length: interactive }, (_, i) =>
              Effect.zipRight(
                Effect.sleep(`${30 + i} seconds`),
                routed.chat.completions.create(summarise(`fg-${i}`, 100), { priority: "interactive" })
              ))
            yield* runFor(windowMillis, [...background, ...foreground], 1_000)
            const stats = yield* sim.stats
            return {
              served: done.filter((t) => t <= windowMillis).length,
              summary: yield* routed.summary,
              decisions: yield* routed.decisions,
              tooMany: stats.byStatus["429"] ?? 0
            }
          })

        const largeAlone = yield* throughput([large], 0)
        const miniAlone = yield* throughput([mini], 0)
        const both = yield* throughput([large, mini], 6)
        if (process.env.ROUTING_FIGURES) {
          console.log(JSON.stringify({
            large: largeAlone.served,
            mini: miniAlone.served,
            both: both.served,
            spills: both.summary.spills,
            chosen: both.summary.chosen,
            waits: both.decisions.filter((d) => d.priority === "interactive").map((d) => d.endedAt - d.startedAt)
          }))
        }

        // both pools at once carry (about) the sum of what each carries alone
        expect(largeAlone.served).toBeGreaterThan(30)
        expect(miniAlone.served).toBeGreaterThan(1.7 * largeAlone.served)
        expect(both.served).toBeGreaterThanOrEqual(0.9 * (largeAlone.served + miniAlone.served))
        expect(both.served).toBeGreaterThan(2.5 * largeAlone.served)
        expect(both.served).toBeGreaterThan(1.3 * miniAlone.served)
        // at the limit, not over it
        expect([largeAlone.tooMany, miniAlone.tooMany, both.tooMany]).toEqual([0, 0, 0])

        // background work spilled from the saturated gpt-4o pool, and the records say so
        const spill = both.summary.spills.find((s) => s.from === "gpt-4o" && s.to === "gpt-4o-mini")
        expect(spill?.reason).toBe("Saturated")
        expect(spill!.count).toBeGreaterThan(40)
        expect(both.summary.chosen["gpt-4o-mini"]).toBeGreaterThan(both.summary.chosen["gpt-4o"])

        // interactive work stayed on gpt-4o and waited there
        const interactive = both.decisions.filter((d) => d.priority === "interactive")
        expect(interactive).toHaveLength(6)
        for (const d of interactive) {
          expect(d.outcome).toBe("success")
          expect(d.chosen).toEqual(Option.some("gpt-4o"))
          expect(d.spilled).toBe(false)
        }
        // the first may find room; the rest find the pool saturated and wait (rule Saturated: interactive wait)
        const waited = interactive.filter((d) => d.steps.some((s) => s._tag === "Waited" && s.reason === "Saturated"))
        expect(waited.length).toBeGreaterThanOrEqual(interactive.length - 1)
        const waits = interactive.map((d) => d.endedAt - d.startedAt)
        // served ahead of the background queue: seconds, not the minutes background work waits
        expect(Math.max(...waits)).toBeLessThan(30_000)
        expect(Math.min(...waits)).toBeGreaterThan(800)
      }),
    30_000
  )

  it.scoped("a context-length failure falls over to the long-context model exactly once", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make(SimConfig.make({
        models: {
          "gpt-4o-mini": { limits: { rpm: 1_000, tpm: 1_000_000 }, contextWindow: 2_000 },
          "gpt-4o": { limits: { rpm: 1_000, tpm: 1_000_000 }, contextWindow: 3_000 },
          "gpt-4.1": { limits: { rpm: 1_000, tpm: 1_000_000 }, contextWindow: 1_000_000 }
        }
      }))
      const routed = yield* routedWith({
        client: yield* clientOf(sim),
        deployments: [
          // its window is not declared: the router cannot know it does not fit
          { id: "mini", model: "gpt-4o-mini" },
          { id: "gpt-4o", model: "gpt-4o", contextWindow: 3_000 },
          { id: "gpt-4.1", model: "gpt-4.1", contextWindow: 1_000_000 }
        ],
        budgets: ["gpt-4o-mini", "gpt-4o", "gpt-4.1"].map((m) => perMinute(`org:default/pool:${m}`, 1_000, 1_000_000))
      })
      const long = `[req:long] ${"A long contract clause about indemnities and liabilities. ".repeat(300)}`
      const [exit] = yield* drive([
        routed.chat.completions.create({ messages: [{ role: "user", content: long }], max_tokens: 200 })
      ])
      expect(Exit.isSuccess(exit)).toBe(true)

      const attempts = yield* attemptsOf(sim)
      expect(attempts.map((a) => [a.model, a.status, a.code])).toEqual([
        ["gpt-4o-mini", 400, "context_length_exceeded"],
        ["gpt-4.1", 200, undefined]
      ])
      const [decision] = yield* routed.decisions
      // gpt-4o's declared window was too small up front: skipped, never tried
      expect(decision.skipped).toHaveLength(1)
      expect(decision.skipped[0].candidate).toBe("gpt-4o")
      expect(decision.skipped[0].reason).toMatch(/^context window 3000 < \d+ tokens needed$/)
      expect(decision.steps.filter((s) => s._tag === "Failed")).toEqual([
        expect.objectContaining({ candidate: "mini", error: "ContextLengthExceeded", action: "larger-context" })
      ])
      expect(decision.steps.filter((s) => s._tag === "Spilled")).toEqual([
        expect.objectContaining({ from: "mini", to: "gpt-4.1", reason: "ContextLengthExceeded" })
      ])
      expect(decision.chosen).toEqual(Option.some("gpt-4.1"))
    }))

  it.scoped("a content-policy failure does not fall over: one attempt", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make(SimConfig.make({
        models: {
          "gpt-4o": { limits: { rpm: 1_000, tpm: 1_000_000 } },
          "gpt-4o-mini": { limits: { rpm: 1_000, tpm: 1_000_000 } }
        }
      }))
      const routed = yield* routedWith({
        client: yield* clientOf(sim),
        deployments: [{ id: "gpt-4o", model: "gpt-4o" }, { id: "mini", model: "gpt-4o-mini" }]
      })
      const [exit] = yield* drive([
        routed.chat.completions.create({
          messages: [{ role: "user", content: "[req:cp] please [sim:content-policy] this" }],
          max_tokens: 20
        })
      ])
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) expect(String(exit.cause)).toContain("ContentPolicy")
      const attempts = yield* attemptsOf(sim)
      expect(attempts.map((a) => [a.model, a.status, a.code])).toEqual([["gpt-4o", 400, "content_policy_violation"]])
      const [decision] = yield* routed.decisions
      expect(decision.outcome).toBe("failure")
      expect(decision.spilled).toBe(false)
      expect(decision.steps.filter((s) => s._tag === "Failed")).toEqual([
        expect.objectContaining({ candidate: "gpt-4o", error: "ContentPolicy", action: "none" })
      ])
    }))

  it.scoped("quota exhaustion on one organization moves traffic to the other, and is reported", () =>
    Effect.gen(function*() {
      const models = { "gpt-4o-mini": { limits: { rpm: 1_000, tpm: 1_000_000 } } }
      // one simulator per organization: each has its own key, limits and billing
      const simA = yield* Simulator.make(SimConfig.make({ organization: "org-a", models, faults: { quotaUsd: 0 } }))
      const simB = yield* Simulator.make(SimConfig.make({ organization: "org-b", models }))
      const clientA = yield* clientOf(simA)
      const clientB = yield* clientOf(simB)
      const routed = yield* routedWith({
        deployments: [
          { id: "a/mini", model: "gpt-4o-mini", organization: "a", client: clientA },
          { id: "a/mini-2", model: "gpt-4o-mini", organization: "a", project: "search", client: clientA },
          { id: "b/mini", model: "gpt-4o-mini", organization: "b", client: clientB }
        ]
      })
      const call = (key: string) =>
        routed.chat.completions.create({ messages: [{ role: "user", content: `[req:${key}] hi` }], max_tokens: 20 })

      const [first] = yield* drive([call("q0")])
      expect(Exit.isSuccess(first)).toBe(true)
      const [decision] = yield* routed.decisions
      expect(decision.chosen).toEqual(Option.some("b/mini"))
      expect(decision.reported).toEqual([{ candidate: "a/mini", error: "QuotaExhausted" }])
      // a/mini-2 is in the same organization: not a fallback for quota
      expect(decision.steps.map((s) => s._tag)).toEqual([
        "Attempt",
        "Failed",
        "Reported",
        "Spilled",
        "Attempt",
        "Succeeded"
      ])
      expect(decision.steps.find((s) => s._tag === "Spilled")).toMatchObject({
        from: "a/mini",
        to: "b/mini",
        reason: "QuotaExhausted"
      })

      // the organization's scope is closed: later traffic goes to b at once, a is never called again
      const rest = yield* drive(Array.from({ length: 4 }, (_, i) => call(`q${i + 1}`)))
      expect(rest.every(Exit.isSuccess)).toBe(true)
      expect((yield* attemptsOf(simA)).map((a) => [a.status, a.code])).toEqual([[429, "insufficient_quota"]])
      expect(yield* attemptsOf(simB)).toHaveLength(5)
      const later = (yield* routed.decisions).slice(1)
      for (const d of later) {
        expect(d.skipped).toEqual([
          { candidate: "a/mini", reason: "scope org:a closed" },
          { candidate: "a/mini-2", reason: "scope org:a closed" }
        ])
      }
      const summary = yield* routed.summary
      expect(summary.reported).toBe(1)
      expect(summary.chosen).toEqual({ "b/mini": 5 })
      expect(summary.spills).toEqual([{ from: "a/mini", to: "b/mini", reason: "QuotaExhausted", count: 1 }])
    }))

  it.scoped("an open breaker is skipped until half-open, then probed", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make(SimConfig.make({
        models: {
          "gpt-4o": { limits: { rpm: 1_000, tpm: 1_000_000 } },
          "gpt-4o-mini": { limits: { rpm: 1_000, tpm: 1_000_000 } }
        },
        latency: { request: { _tag: "fixed", ms: 200 } },
        incidents: [{ fromMs: 0, toMs: 20_000, fault: "overloaded", models: ["gpt-4o"] }]
      }))
      const t0 = yield* Clock.currentTimeMillis
      const transitions: Array<string> = []
      const routed = yield* routedWith({
        client: yield* clientOf(sim),
        deployments: [{ id: "gpt-4o", model: "gpt-4o" }, { id: "mini", model: "gpt-4o-mini" }],
        breaker: {
          consecutiveFailures: 3,
          openFor: "30 seconds",
          onTransition: (t) => Effect.sync(() => void transitions.push(`${t.to}@${t.at - t0}`))
        }
      })
      // one interactive call a second for 40 seconds
      const results: Array<string> = []
      yield* drive([
        Effect.forEach(Array.from({ length: 40 }, (_, i) => i), (i) =>
          Effect.gen(function*() {
            const now = yield* Clock.currentTimeMillis
            yield* Effect.sleep(Math.max(0, t0 + i * 1_000 - now))
            const completion = yield* routed.chat.completions.create({
              messages: [{ role: "user", content: `[req:s${i}] hi` }],
              max_tokens: 20
            })
            results.push(completion.model)
          }), { discard: true })
      ], 200)
      expect(results).toHaveLength(40)

      // three 503s (0, 1, 2 s; each answered after 200 ms) open gpt-4o's breaker at 2.2 s for 30 s
      expect(transitions).toEqual(["Open@2200", "HalfOpen@32200", "Closed@33200"])
      const large = yield* attemptsOf(sim, "gpt-4o")
      expect(large.slice(0, 3).map((a) => [a.at, a.status])).toEqual([[0, 503], [1_000, 503], [2_000, 503]])
      // nothing reaches gpt-4o while open; the first call after half-open is the probe
      expect(large[3].at).toBe(33_000)
      expect(large[3].status).toBe(200)
      expect(large.every((a) => a.at < 2_200 || a.at >= 32_200)).toBe(true)
      // every 503 fell over to mini at once (the service did not retry it: mini was there)
      expect(large.filter((a) => a.status === 503)).toHaveLength(3)

      const decisions = yield* routed.decisions
      const whileOpen = decisions.filter((d) => d.startedAt - t0 >= 3_000 && d.startedAt - t0 <= 32_000)
      expect(whileOpen).toHaveLength(30)
      for (const d of whileOpen) {
        expect(d.skipped).toEqual([{ candidate: "gpt-4o", reason: "circuit breaker open" }])
        expect(d.chosen).toEqual(Option.some("mini"))
      }
      expect(results.slice(0, 33).every((m) => m === "gpt-4o-mini")).toBe(true)
      expect(results.slice(33).every((m) => m === "gpt-4o")).toBe(true)
      expect(yield* routed.breakers.state("gpt-4o")).toBe("Closed")
    }))

  it.scoped("the last deployment standing retries a 503 in place; with a fallback it does not", () =>
    Effect.gen(function*() {
      const scenario = SimConfig.make({
        models: {
          "gpt-4o": { limits: { rpm: 1_000, tpm: 1_000_000 } },
          "gpt-4o-mini": { limits: { rpm: 1_000, tpm: 1_000_000 } }
        },
        incidents: [{ fromMs: 0, toMs: 3_000, fault: "overloaded", models: ["gpt-4o"] }]
      })
      const sim = yield* Simulator.make(scenario)
      const routed = yield* routedWith({
        client: yield* clientOf(sim),
        deployments: [{ id: "gpt-4o", model: "gpt-4o" }, { id: "mini", model: "gpt-4o-mini" }]
      })
      const call = (key: string, options?: Routing.Routing.CallOptions) =>
        routed.chat.completions.create(
          { messages: [{ role: "user", content: `[req:${key}] hi` }], max_tokens: 20 },
          options
        )
      // pinned to gpt-4o: no fallback, so the service's policy retries the 503s until the incident ends
      const [pinned] = yield* drive([call("pinned", { deployments: ["gpt-4o"] })])
      expect(Exit.isSuccess(pinned)).toBe(true)
      const retried = (yield* sim.stats).attempts.filter((a) => a.key === "pinned")
      expect(retried.length).toBeGreaterThan(1)
      expect(retried.slice(0, -1).every((a) => a.status === 503)).toBe(true)
      expect(retried[retried.length - 1]).toMatchObject({ model: "gpt-4o", status: 200 })
      expect(retried[retried.length - 1].at).toBeGreaterThanOrEqual(3_000)

      // a fresh incident: with mini in the plan, one 503 and straight to mini
      const sim2 = yield* Simulator.make(scenario)
      const routed2 = yield* routedWith({
        client: yield* clientOf(sim2),
        deployments: [{ id: "gpt-4o", model: "gpt-4o" }, { id: "mini", model: "gpt-4o-mini" }]
      })
      const [free] = yield* drive([
        routed2.chat.completions.create({ messages: [{ role: "user", content: "[req:free] hi" }], max_tokens: 20 })
      ])
      expect(Exit.isSuccess(free)).toBe(true)
      expect((yield* sim2.stats).attempts.map((a) => [a.model, a.status, a.at])).toEqual([
        ["gpt-4o", 503, 0],
        ["gpt-4o-mini", 200, 0]
      ])
    }))

  it.scoped("a stream's opening is routed: a 503 falls over, then the chunks flow from the fallback", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make(SimConfig.make({
        models: {
          "gpt-4o": { limits: { rpm: 1_000, tpm: 1_000_000 } },
          "gpt-4o-mini": { limits: { rpm: 1_000, tpm: 1_000_000 } }
        },
        latency: { request: { _tag: "fixed", ms: 300 }, perOutputTokenMs: 10 },
        incidents: [{ fromMs: 0, toMs: 60_000, fault: "overloaded", models: ["gpt-4o"] }]
      }))
      const routed = yield* routedWith({
        client: yield* clientOf(sim),
        deployments: [{ id: "gpt-4o", model: "gpt-4o" }, { id: "mini", model: "gpt-4o-mini" }]
      })
      const [exit] = yield* drive([
        Stream.runCollect(routed.chat.completions.stream({
          messages: [{ role: "user", content: "[req:stream] tell me a story" }],
          max_tokens: 40
        }))
      ])
      expect(Exit.isSuccess(exit)).toBe(true)
      if (Exit.isSuccess(exit)) {
        const chunks = Chunk.toReadonlyArray(exit.value)
        expect(chunks.length).toBeGreaterThan(2)
        expect(chunks.every((c) => c.model === "gpt-4o-mini")).toBe(true)
      }
      expect((yield* attemptsOf(sim)).map((a) => [a.model, a.status])).toEqual([["gpt-4o", 503], ["gpt-4o-mini", 200]])
      const [state] = (yield* routed.router.states({ cost: { requests: 1 } })).filter((st) =>
        st.candidate.id === "mini"
      )
      // the time to the first chunk (300 ms of latency) is the stream's TTFT
      expect(state.ttftMillis).toBe(300)
    }))

  it.scoped("a call too large for one pool, or a deployment with a bad key, falls over (and the key is reported)", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make(SimConfig.make({
        models: {
          "gpt-4o": { limits: { rpm: 1_000, tpm: 2_000 } },
          "gpt-4o-mini": { limits: { rpm: 1_000, tpm: 200_000 } }
        }
      }))
      // a second organization whose key the server does not accept
      const locked = yield* Simulator.make(SimConfig.make({
        apiKeys: ["sk-someone-else"],
        models: { "gpt-4o-mini": { limits: { rpm: 1_000, tpm: 200_000 } } }
      }))
      const routed = yield* routedWith({
        client: yield* clientOf(sim),
        deployments: [
          { id: "locked/mini", model: "gpt-4o-mini", organization: "locked", client: yield* clientOf(locked) },
          { id: "gpt-4o", model: "gpt-4o" },
          { id: "mini", model: "gpt-4o-mini" }
        ],
        // no local limits: only the server knows gpt-4o's pool is too small for this call
        adaptive: false
      })
      const [exit] = yield* drive([
        routed.chat.completions.create({
          messages: [{ role: "user", content: `[req:big] ${DOCUMENT}` }],
          max_tokens: 2_000
        })
      ])
      expect(Exit.isSuccess(exit)).toBe(true)
      expect((yield* attemptsOf(locked)).map((a) => a.status)).toEqual([401])
      expect((yield* attemptsOf(sim)).map((a) => [a.model, a.status, a.limit])).toEqual([
        ["gpt-4o", 429, "request_too_large"],
        ["gpt-4o-mini", 200, undefined]
      ])
      const [decision] = yield* routed.decisions
      expect(decision.steps.filter((st) => st._tag === "Failed").map((st) => st._tag === "Failed" && st.error)).toEqual(
        [
          "Unauthorized",
          "RequestTooLarge"
        ]
      )
      expect(decision.reported).toEqual([{ candidate: "locked/mini", error: "Unauthorized" }])
      expect(decision.chosen).toEqual(Option.some("mini"))
    }))

  it.scoped("a custom strategy written here routes as written", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make(SimConfig.make({
        models: {
          "gpt-4o": { limits: { rpm: 1_000, tpm: 1_000_000 } },
          "gpt-4o-mini": { limits: { rpm: 1_000, tpm: 1_000_000 } }
        }
      }))
      // short prompts to mini, long ones to gpt-4o, and the tenant "vip" always to gpt-4o first
      const custom: Router.RoutingStrategy = (request, states) => {
        const vip = request.scopes?.includes("tenant:vip") ?? false
        const want = vip || (request.promptTokens ?? 0) >= 200 ? "gpt-4o" : "gpt-4o-mini"
        return {
          order: states.filter((s) => s.candidate.model === want),
          skipped: states.filter((s) => s.candidate.model !== want).map((state) => ({
            state,
            reason: vip ? "vip goes to gpt-4o" : want === "gpt-4o" ? "long prompt" : "short prompt"
          }))
        }
      }
      const routed = yield* routedWith({
        client: yield* clientOf(sim),
        deployments: [{ id: "mini", model: "gpt-4o-mini" }, { id: "large", model: "gpt-4o" }],
        strategy: custom
      })
      const ask = (key: string, content: string, tenant?: string) =>
        routed.chat.completions.create(
          { messages: [{ role: "user", content: `[req:${key}] ${content}` }], max_tokens: 20 },
          { tenant }
        )
      yield* drive([
        ask("short", "What is 2 + 2?"),
        ask("long", DOCUMENT),
        ask("vip", "What is 2 + 2?", "vip")
      ])
      const stats = yield* sim.stats
      const modelOf = (key: string) => stats.attempts.filter((a) => a.key === key).map((a) => a.model)
      expect(modelOf("short")).toEqual(["gpt-4o-mini"])
      expect(modelOf("long")).toEqual(["gpt-4o"])
      expect(modelOf("vip")).toEqual(["gpt-4o"])
      const reasons = (yield* routed.decisions).map((d) => d.skipped.map((s) => `${s.candidate}: ${s.reason}`))
      expect(reasons.sort()).toEqual([["large: short prompt"], ["mini: long prompt"], ["mini: vip goes to gpt-4o"]])
    }))

  it.scoped("the task table routes classification to mini and long documents to the large model", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make(SimConfig.make({
        models: {
          "gpt-4o": { limits: { rpm: 1_000, tpm: 1_000_000 } },
          "gpt-4o-mini": { limits: { rpm: 1_000, tpm: 1_000_000 } },
          "text-embedding-3-small": { kind: "embedding", limits: { rpm: 1_000, tpm: 1_000_000 } }
        }
      }))
      const routed = yield* routedWith({
        client: yield* clientOf(sim),
        deployments: [
          { id: "large", model: "gpt-4o", contextWindow: 128_000 },
          { id: "mini", model: "gpt-4o-mini", contextWindow: 128_000, aliases: ["fast"] },
          { id: "embed", model: "text-embedding-3-small" }
        ],
        strategy: "leastWait",
        tasks: { classification: ["fast"], "long-document": ["gpt-4o"], "short-summary": ["mini", "large"] }
      })
      const chat = (key: string) => ({
        messages: [{ role: "user" as const, content: `[req:${key}] text` }],
        max_tokens: 5
      })
      const exits = yield* drive<unknown, unknown>([
        routed.chat.completions.create(chat("classify"), { task: "classification" }),
        routed.chat.completions.create(chat("contract"), { task: "long-document" }),
        // the bulk runner's path: a body whose model is a task, an alias, a model, or absent
        routed.request("/v1/chat/completions", { ...chat("bulk-task"), model: "classification" }),
        routed.request("/v1/chat/completions", { ...chat("bulk-alias"), model: "fast" }),
        routed.request("/v1/chat/completions", { ...chat("bulk-model"), model: "gpt-4o" }),
        routed.request("/v1/chat/completions", chat("bulk-none")),
        routed.embeddings.create({ input: "[req:embed] vectors please" })
      ])
      expect(exits.every(Exit.isSuccess)).toBe(true)
      const stats = yield* sim.stats
      const modelOf = (key: string) => stats.attempts.filter((a) => a.key === key).map((a) => a.model)
      expect(modelOf("classify")).toEqual(["gpt-4o-mini"])
      expect(modelOf("contract")).toEqual(["gpt-4o"])
      expect(modelOf("bulk-task")).toEqual(["gpt-4o-mini"])
      expect(modelOf("bulk-alias")).toEqual(["gpt-4o-mini"])
      expect(modelOf("bulk-model")).toEqual(["gpt-4o"])
      // no model, no task: any chat deployment (least wait: the first), never the embedding model
      expect(modelOf("bulk-none")).toEqual(["gpt-4o"])
      expect(modelOf("embed")).toEqual(["text-embedding-3-small"])
      const bulk = exits[2]
      if (Exit.isSuccess(bulk)) {
        const result = bulk.value as Routing.Routing.RequestResult
        expect(result).toMatchObject({ status: 200, deployment: "mini", model: "gpt-4o-mini" })
        expect(result.decision.task).toBe("classification")
        expect(result.decision.skipped).toEqual([
          { candidate: "large", reason: "not listed for task classification" },
          { candidate: "embed", reason: "not requested" }
        ])
      }
      // a model no deployment serves and no task names
      const unknown = yield* Effect.flip(routed.request("/v1/chat/completions", { ...chat("x"), model: "gpt-5" }))
      expect(unknown._tag).toBe("NoCandidate")
      expect(unknown.message).toContain(`large: does not serve "gpt-5"`)
    }))

  it.scoped("a routing file decodes, routes through a default client, and names the bad path when invalid", () =>
    Effect.gen(function*() {
      const bad = yield* Effect.flip(Routing.decodeConfig({
        deployments: [
          { model: "gpt-4o", price: { input: "cheap", output: 1e-5 } },
          { model: "gpt-4o-mini", contextwindow: 128_000 }
        ],
        strategy: "leastWait"
      }, "routing.json"))
      expect(bad._tag).toBe("RoutingConfigError")
      expect(bad.issues.map((i) => i.path)).toEqual(["deployments[0].price.input", "deployments[1].contextwindow"])
      expect(bad.message).toContain("routing.json")
      expect(bad.message).toContain("at deployments[0].price.input: Expected number, actual \"cheap\"")

      const crossField = yield* Effect.flip(Routing.decodeConfig({
        deployments: [{ model: "gpt-4o" }, { model: "gpt-4o" }],
        tasks: { classification: ["gpt-4o-nano"] },
        strategy: "fastest"
      }))
      expect(crossField.issues.map((i) => i.path)).toEqual(["deployments[1]", "tasks.classification[0]", "strategy"])

      // a valid file, through the layer the CLI uses: the default client is the CLI's
      const sim = yield* Simulator.make(SimConfig.make({
        models: {
          "gpt-4o": { limits: { rpm: 1_000, tpm: 1_000_000 } },
          "gpt-4o-mini": { limits: { rpm: 1_000, tpm: 1_000_000 } }
        }
      }))
      const fetch = yield* Effect.provideService(SimFetch.make, Simulator.Simulator, sim)
      const file = {
        deployments: [
          { id: "large", model: "gpt-4o", organization: "acme", contextWindow: 128000 },
          { id: "mini", model: "gpt-4o-mini", organization: "acme", contextWindow: 128000 }
        ],
        strategy: "cheapest",
        tasks: { classification: ["mini"] },
        rules: { Overloaded: "none" },
        tier: 1
      }
      const served = yield* Effect.gen(function*() {
        const routed = yield* Routing.Routing
        const [exit] = yield* drive([
          routed.request("/v1/chat/completions", {
            model: "classification",
            messages: [{ role: "user", content: "[req:file] positive or negative?" }],
            max_tokens: 2
          })
        ])
        return Exit.isSuccess(exit) ? exit.value.deployment : "failed"
      }).pipe(
        Effect.provide(
          Routing.layerConfig(file, {
            client: { apiKey: Redacted.make("sk-test"), baseURL: BASE_URL, fetch: fetch as typeof globalThis.fetch },
            source: "routing.json"
          }).pipe(Layer.provide(LimiterStore.layerMemory))
        )
      )
      expect(served).toBe("mini")
    }))

  it.scoped("decision records and call events name the deployment; the breaker map is keyed by id", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.make(
        SimConfig.make({ models: { "gpt-4o-mini": { limits: { rpm: 10, tpm: 100_000 } } } })
      )
      const events: Array<string> = []
      const routed = yield* routedWith({
        client: yield* clientOf(sim),
        deployments: [{ id: "mini", model: "gpt-4o-mini" }],
        breaker: false,
        onEvent: (deployment, event) => Effect.sync(() => void events.push(`${deployment}:${event._tag}`))
      })
      yield* drive([routed.chat.completions.create({ messages: [{ role: "user", content: "hi" }], max_tokens: 5 })])
      expect(events).toEqual(["mini:Admitted", "mini:Succeeded"])
      expect(yield* routed.breakers.states).toEqual(new Map([["mini", "Closed"]]))
      expect(Routing.formatSummary(yield* routed.summary)).toContain("served: mini 1")
      // the candidates charge exactly the scopes the OpenAi service charges
      expect(routed.targets[0].candidate.scopes).toEqual(routed.targets[0].openai.scopesFor("gpt-4o-mini"))
      expect(routed.targets[0].candidate.scopes).toEqual(["org:default", "org:default/pool:gpt-4o-mini"])
    }))
})
