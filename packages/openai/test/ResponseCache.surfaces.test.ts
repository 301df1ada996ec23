/**
 * The response cache under the surfaces issue 22 names beside the `OpenAi` service: `wrapOpenAI` (plain
 * Promise code, its `cache` option) and `Routing` / `OpenAiRouter` (a cache in context when it is made), against
 * the in-process simulator under TestClock, counted at the simulator.
 */
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import { describe, expect, it } from "@effect/vitest"
import { LimiterStore, RateLimiter } from "@sluice/core"
import { ResponseCache, Routing, wrapOpenAI } from "@sluice/openai"
import { Scenario, SimFetch, Simulator } from "@sluice/testing"
import { Effect, Exit } from "effect"
import OpenAIClient from "openai"
import { drive } from "./harness.js"

const MODEL = "gpt-4o-mini"
const sim = () =>
  Simulator.layer(Scenario.single(MODEL, { rpm: 500, tpm: 200_000 }, {
    seed: 7,
    output: { fixedTokens: 40 },
    latency: { request: { _tag: "fixed", ms: 300 }, perOutputTokenMs: 1 }
  }))

const simClient = Effect.map(
  SimFetch.make,
  (fetch) => new OpenAIClient({ apiKey: "sk-test", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
)

const sent = Effect.map(Simulator.stats, (stats) => stats.attempts.length)

const ask = (key: string) => ({
  model: MODEL,
  temperature: 0,
  messages: [{ role: "user" as const, content: `[req:${key}] One fact, please.` }],
  max_tokens: 60
})

describe("ResponseCache under wrapOpenAI", () => {
  it.effect("identical concurrent calls send one request, a repeat none; close() releases the cache", () =>
    Effect.gen(function*() {
      const openai = wrapOpenAI(yield* simClient, {
        organization: "acme",
        tier: 1,
        cache: ResponseCache.layerMemory(),
        runtime: yield* Effect.runtime<never>()
      })
      const app = async () => {
        const together = await Promise.all([1, 2, 3, 4, 5].map(() => openai.chat.completions.create(ask("w"))))
        const again = await openai.chat.completions.create(ask("w"))
        const other = await openai.chat.completions.create(ask("other"))
        await openai.close()
        return { together, again, other }
      }
      const { exit } = yield* drive(Effect.promise(app))
      expect(Exit.isSuccess(exit)).toBe(true)
      if (!Exit.isSuccess(exit)) return
      const { again, other, together } = exit.value
      for (const answer of together) expect(answer).toEqual(together[0])
      expect(again).toEqual(together[0])
      expect(other.id).not.toBe(again.id)
      // one for the five and the repeat, one for `other`
      expect(yield* sent).toBe(2)
    }).pipe(Effect.provide(sim())))

  it.effect("without `cache`, every call is sent", () =>
    Effect.gen(function*() {
      const openai = wrapOpenAI(yield* simClient, {
        organization: "acme",
        tier: 1,
        runtime: yield* Effect.runtime<never>()
      })
      const { exit } = yield* drive(Effect.promise(() =>
        Promise.all([1, 2, 3].map(() => openai.chat.completions.create(ask("w")))).finally(() => openai.close())
      ))
      expect(Exit.isSuccess(exit)).toBe(true)
      expect(yield* sent).toBe(3)
    }).pipe(Effect.provide(sim())))
})

describe("ResponseCache under Routing (OpenAiRouter)", () => {
  it.scoped("a routed call goes through the cache in context: one request for identical calls, `cached` on a hit", () =>
    Effect.gen(function*() {
      const client = yield* simClient
      const cache = yield* ResponseCache.make().pipe(Effect.provide(KeyValueStore.layerMemory))
      const options: Routing.Routing.Options = {
        client,
        tier: 1,
        deployments: [{ id: "mini", model: MODEL, organization: "acme" }]
      }
      const limiter = yield* RateLimiter.make({ budgets: Routing.budgetsFor(options) }).pipe(
        Effect.provide(LimiterStore.layerMemory)
      )
      const routed = yield* Routing.make(options).pipe(
        Effect.provideService(RateLimiter.RateLimiter, limiter),
        Effect.provideService(ResponseCache.ResponseCache, cache)
      )
      const { model: _, ...params } = ask("r")
      const first = yield* drive(
        Effect.all([1, 2, 3, 4].map(() => routed.chat.completions.create(params)), { concurrency: "unbounded" })
      )
      expect(Exit.isSuccess(first.exit)).toBe(true)
      expect(yield* sent).toBe(1)
      const raw = yield* drive(routed.request("/v1/chat/completions", { ...params, model: MODEL }))
      expect(Exit.isSuccess(raw.exit) && raw.exit.value.cached).toBe(true)
      expect(Exit.isSuccess(raw.exit) && raw.exit.value.deployment).toBe("mini")
      expect(yield* sent).toBe(1)
      expect(yield* cache.stats).toMatchObject({ misses: 1, deduplicated: 3, hits: 1 })
    }).pipe(Effect.provide(sim())))
})
