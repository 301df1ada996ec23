/**
 * A refused call's retry keeps its first attempt's place in its lane (DESIGN.md, invariant 4: FIFO within a lane),
 * against the in-process simulator (real `openai` SDK, TestClock): it is not queued behind the calls that arrived
 * while it waited out its 429. A router's fallback to another pool keeps its request's place there too.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { OpenAi, Routing } from "@sluice/openai"
import { SimConfig, Simulator } from "@sluice/testing"
import { Effect, Exit } from "effect"
import { drive, makeClient, withService } from "./harness.js"

const call = (openai: OpenAi.OpenAi.Service, key: string) =>
  openai.chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: `[req:${key}] hello` }],
    max_tokens: 20
  })

describe("OpenAi: a retry keeps its place", () => {
  // The server allows 6 requests a minute; the client was told 7 (one each 8.6 s). Of a burst of 7 at 0 s, the 7th
  // waits for the client's refill and is refused there (8.6 s: the server refills at 10 s); the 4 calls that arrived
  // at 1-4 s wait behind it, and are still waiting when its retry asks again (10 s, its retry-after). Before the
  // retry kept its place, it queued behind all 4 and was sent at 51.4 s (waited 41.4 s); now at 17.1 s (7.1 s).
  const scenario = Simulator.layer(SimConfig.make({
    seed: 3,
    models: { "gpt-4o-mini": { limits: { rpm: 6, tpm: 1_000_000 } } },
    latency: { request: { _tag: "fixed", ms: 0 }, perOutputTokenMs: 0 }
  }))
  const options: OpenAi.OpenAi.Options = {
    organization: "acme",
    budgets: [Budget.make("org:acme/pool:gpt-4o-mini", [Budget.Limit.perMinute("requests", 7)])]
  }

  it.effect("the refused call is admitted again before the calls that arrived after its first attempt", () =>
    withService(options, (openai, events) =>
      Effect.gen(function*() {
        const burst = Array.from({ length: 7 }, (_, i) => call(openai, `burst-${i}`))
        // one a second after the burst, while the refused one waits
        const later = Array.from({ length: 4 }, (_, i) => Effect.delay(call(openai, `later-${i}`), (i + 1) * 1_000))
        const { exit } = yield* drive(Effect.all([...burst, ...later], { concurrency: "unbounded" }))
        expect(Exit.isSuccess(exit)).toBe(true)
        const stats = yield* Simulator.stats
        const refused = stats.attempts.filter((a) => a.status === 429)
        expect(refused).toHaveLength(1)
        const key = refused[0].key
        const retry = stats.attempts.filter((a) => a.key === key)[1]
        const retried = events.find((e) => e._tag === "Admitted" && e.attempt === 2)!
        // when the retry asked for admission again (its admission less its wait)
        const asked = retried.at - (retried as { readonly waitedMillis: number }).waitedMillis
        const laterSent = stats.attempts.filter((a) => a.key?.startsWith("later-") === true)
        console.log(
          `retry place: ${key} refused at ${refused[0].at} ms, asked again at ${asked} ms, sent at ${retry.at} ms ` +
            `(waited ${retry.at - asked} ms); later calls sent at ${JSON.stringify(laterSent.map((a) => a.at))}`
        )
        // every later call still waiting when the retry asked again went after it
        for (const attempt of laterSent) {
          if (attempt.at > asked) expect(attempt.at).toBeGreaterThan(retry.at)
        }
        // and some were waiting then (else the test shows nothing)
        expect(laterSent.filter((a) => a.at > asked).length).toBeGreaterThanOrEqual(2)
      })).pipe(Effect.provide(scenario)))
})

describe("Routing: a fallback keeps its request's place", () => {
  // gpt-4o-mini times out (a 504 after 2 s) and the router falls over to gpt-4.1, whose pool admits one call each
  // 10 s; 4 calls made straight to gpt-4.1 (the same limiter) queue there from 0 to 1.5 s. The routed call
  // falls over as the request that arrived at 0 s: it was sent to gpt-4.1 at 10 s; before it kept its place, at
  // 40 s, behind the 3 that arrived after it.
  const scenario = SimConfig.make({
    models: {
      "gpt-4o-mini": { limits: { rpm: 1_000, tpm: 1_000_000 } },
      "gpt-4.1": { limits: { rpm: 1_000, tpm: 1_000_000 } }
    },
    faults: { timeoutMs: 2_000 },
    incidents: [{ fromMs: 0, toMs: 60_000, fault: "timeout", models: ["gpt-4o-mini"] }],
    latency: { request: { _tag: "fixed", ms: 0 } }
  })
  const budgets = [
    Budget.make("org:default/pool:gpt-4o-mini", [Budget.Limit.perMinute("requests", 1_000)]),
    Budget.make("org:default/pool:gpt-4.1", [Budget.Limit.perMinute("requests", 6, 1)])
  ]

  it.effect("the routed call is admitted on gpt-4.1 before the calls that arrived there after it", () =>
    Effect.gen(function*() {
      const sim = yield* Simulator.Simulator
      const client = yield* makeClient()
      const limiter = yield* RateLimiter.make({ budgets })
      const routed = yield* Routing.make({
        client,
        deployments: [{ id: "mini", model: "gpt-4o-mini" }, { id: "gpt-4.1", model: "gpt-4.1" }],
        budgets
      }).pipe(Effect.provideService(RateLimiter.RateLimiter, limiter))
      // the other calls straight to gpt-4.1's service, on the same limiter
      const direct = yield* OpenAi.make(client, { budgets }).pipe(
        Effect.provideService(RateLimiter.RateLimiter, limiter)
      )
      const other = (i: number) =>
        Effect.delay(
          direct.chat.completions.create({
            model: "gpt-4.1",
            messages: [{ role: "user", content: `[req:other-${i}] hi` }],
            max_tokens: 20
          }),
          i * 500
        )
      const { exit } = yield* drive(Effect.all([
        routed.chat.completions.create({ messages: [{ role: "user", content: "[req:routed] hi" }], max_tokens: 20 }),
        ...Array.from({ length: 4 }, (_, i) => other(i))
      ], { concurrency: "unbounded" }))
      expect(Exit.isSuccess(exit)).toBe(true)
      const attempts = (yield* sim.stats).attempts
      const sent = (key: string) => attempts.filter((a) => a.key === key && a.model === "gpt-4.1").map((a) => a.at)
      console.log(
        `fallback place: routed call sent to gpt-4.1 at ${sent("routed")} ms; other calls at ` +
          JSON.stringify([0, 1, 2, 3].map((i) => sent(`other-${i}`)[0]))
      )
      expect(attempts.find((a) => a.key === "routed")?.model).toBe("gpt-4o-mini") // the 504, then the fallback
      expect(sent("routed")).toHaveLength(1)
      // other-0 was admitted at once; the routed call went before the 3 that were still waiting
      for (const i of [1, 2, 3]) expect(sent(`other-${i}`)[0]).toBeGreaterThan(sent("routed")[0])
    }).pipe(Effect.provide(Simulator.layer(scenario)), Effect.provide(LimiterStore.layerMemory), Effect.scoped))
})
