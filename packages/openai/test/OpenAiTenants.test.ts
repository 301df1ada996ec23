/**
 * Fairness between tenants sharing one organization, against the in-process simulator (real `openai`
 * SDK, TestClock): with `tenant:*` budgets, a tenant flooding the service cannot take the other's share.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import type { OpenAi } from "@sluice/openai"
import { Scenario, Simulator } from "@sluice/testing"
import { Clock, Effect, Exit } from "effect"
import { drive, sum, withService } from "./harness.js"

const MODEL = "gpt-4o"

/** The service over a simulator client, with its events recorded at their virtual times. */

interface Done {
  readonly tenant: string
  readonly at: number
  readonly tokens: number
}

/**
 * Tenant "flood" queues 100 calls at t=0, then tenant "quiet" queues 45 behind them; each call is
 * ~270 prompt tokens plus 1,300 reserved (the model writes half: ~920 tokens a call). The organization
 * has gpt-4o's Tier 1 30,000 tokens a minute; the quiet tenant's work is ~2.7 of its minutes.
 */
const run = (options: OpenAi.OpenAi.Options) =>
  withService(options, (openai) =>
    Effect.gen(function*() {
      const done: Array<Done> = []
      const call = (tenant: string, i: number) =>
        openai.chat.completions.create({
          model: MODEL,
          messages: [{
            role: "user",
            content: `[req:${tenant}-${i}] ${"Translate this sentence to French. ".repeat(30)}`
          }],
          max_tokens: 1_300
        }, { tenant }).pipe(
          Effect.zip(Clock.currentTimeMillis),
          Effect.tap(([completion, at]) =>
            Effect.sync(() => done.push({ tenant, at, tokens: completion.usage?.total_tokens ?? 0 }))
          )
        )
      const calls = [
        ...Array.from({ length: 100 }, (_, i) => call("flood", i)),
        ...Array.from({ length: 45 }, (_, i) => call("quiet", i))
      ]
      const { exit } = yield* drive(Effect.all(calls, { concurrency: "unbounded" }))
      expect(Exit.isSuccess(exit)).toBe(true)
      const stats = yield* Simulator.stats
      expect(stats.byStatus).toEqual({ "200": 145 })
      // while both had work: from the start until the quiet tenant's last call
      const quietEnd = Math.max(...done.filter((d) => d.tenant === "quiet").map((d) => d.at))
      const inWindow = (tenant: string) =>
        sum(done.filter((d) => d.tenant === tenant && d.at <= quietEnd).map((d) => d.tokens))
      const quiet = inWindow("quiet")
      const flood = inWindow("flood")
      return { quietEnd, quiet, flood, quietShare: quiet / (quiet + flood), floodShare: flood / (quiet + flood) }
    })).pipe(
      Effect.provide(Simulator.layer(Scenario.tier1({
        seed: 4,
        latency: { request: { _tag: "uniform", min: 200, max: 600 }, perOutputTokenMs: 1 }
      })))
    )

describe("OpenAi: tenants sharing an organization", () => {
  it.effect("a flooding tenant cannot take more than its share from the other (tenant:* budgets)", () =>
    Effect.gen(function*() {
      const fair = yield* run({
        organization: "acme",
        tier: 1,
        budgets: [Budget.make("tenant:*", [Budget.Limit.perMinute("tokens", 15_000)])]
      })
      const start = yield* Clock.currentTimeMillis
      const unfair = yield* run({ organization: "acme", tier: 1 })
      const unfairEnd = unfair.quietEnd - start
      console.log(
        `tenants with budgets: quiet done at ${
          Math.round(fair.quietEnd)
        } ms; while it worked, quiet ${fair.quiet} tokens ` +
          `(${(fair.quietShare * 100).toFixed(1)}%), flood ${fair.flood} (${(fair.floodShare * 100).toFixed(1)}%). ` +
          `Without: quiet done at ${Math.round(unfairEnd)} ms, share ${(unfair.quietShare * 100).toFixed(1)}%`
      )
      // each tenant's budget is half the organization's: the flood gets no more than its half, and no
      // more than its own bucket allows (15,000 at once, then 250 a second)
      expect(fair.floodShare).toBeLessThanOrEqual(0.55)
      expect(fair.flood).toBeLessThanOrEqual(15_000 + (15_000 / 60_000) * fair.quietEnd)
      expect(fair.quietShare).toBeGreaterThanOrEqual(0.45)
      // and the quiet tenant is not stuck behind the flood, as it is without tenant budgets
      expect(unfair.quietShare).toBeLessThan(0.35)
      expect(unfairEnd).toBeGreaterThan(1.8 * fair.quietEnd)
    }))
})
