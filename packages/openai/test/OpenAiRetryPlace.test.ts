/**
 * A refused call's retry keeps its first attempt's place in its lane (DESIGN.md, invariant 4: FIFO within a lane),
 * against the in-process simulator (real `openai` SDK, TestClock): it is not queued behind the calls that arrived
 * while it waited out its 429.
 */
import { describe, expect, it } from "@effect/vitest"
import { Budget } from "@sluice/core"
import type { OpenAi } from "@sluice/openai"
import { SimConfig, Simulator } from "@sluice/testing"
import { Effect, Exit } from "effect"
import { drive, withService } from "./harness.js"

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
