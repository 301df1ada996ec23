import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { CallStats, Scenario, SimStats } from "../src/index.js"
import type { Admission, Snapshot } from "../src/SimStats.js"

const failed = (error: Extract<CallStats.Event, { _tag: "Failed" }>["error"], attempt = 1): CallStats.Event => ({
  _tag: "Failed",
  model: "gpt-4o",
  attempt,
  error
})
const admitted = (attempt: number, waitedMillis = 0, retryOf?: string): CallStats.Event => ({
  _tag: "Admitted",
  model: "gpt-4o",
  attempt,
  waitedMillis,
  ...(retryOf === undefined ? {} : { retryOf })
})

describe("CallStats", () => {
  it.effect("counts 429s by kind, retries by the kind they retry, and the admissions that waited", () =>
    Effect.gen(function*() {
      const stats = yield* CallStats.make
      const events: Array<CallStats.Event> = [
        admitted(1, 0),
        failed({ _tag: "RateLimited", status: 429, dimension: "tokens", window: "minute" }),
        admitted(2, 1_500, "RateLimited"),
        failed({ _tag: "RateLimited", status: 429, dimension: "requests", window: "minute" }, 2),
        admitted(3, 500, "RateLimited"),
        { _tag: "Succeeded", model: "gpt-4o", attempt: 3 },
        admitted(1, 0),
        failed({ _tag: "RateLimited", status: 429, dimension: "requests", window: "day" }),
        admitted(1, 0),
        failed({ _tag: "RateLimited", status: 429, dimension: "tokens", window: "day" }),
        admitted(1, 0),
        failed({ _tag: "RateLimited", status: 429, dimension: "images" }),
        admitted(1, 0),
        failed({ _tag: "RateLimited", status: 429 }),
        admitted(1, 0),
        failed({ _tag: "RequestTooLarge", status: 429, dimension: "tokens" }),
        admitted(1, 0),
        failed({ _tag: "QuotaExhausted", status: 429 }),
        admitted(1, 2_000),
        failed({ _tag: "Overloaded", status: 503 }),
        admitted(2, 0, "Overloaded"),
        { _tag: "Succeeded", model: "gpt-4o", attempt: 2 }
      ]
      for (const event of events) yield* stats.onEvent(event)
      const snapshot = yield* stats.snapshot
      expect(snapshot).toEqual({
        calls: 8,
        attempts: 11,
        succeeded: 2,
        failed: { RateLimited: 6, RequestTooLarge: 1, QuotaExhausted: 1, Overloaded: 1 },
        rateLimited: {
          total: 8,
          byKind: { tpm: 1, rpm: 1, rpd: 1, tpd: 1, ipm: 1, rate_limit: 1, request_too_large: 1, insufficient_quota: 1 }
        },
        retries: { total: 3, byKind: { RateLimited: 2, Overloaded: 1 } },
        waited: { admissions: 3, totalMillis: 4_000, maxMillis: 2_000 }
      })
      // a snapshot is a copy
      yield* stats.onEvent(admitted(1, 10))
      expect(snapshot.waited.admissions).toBe(3)
      expect((yield* stats.snapshot).waited.admissions).toBe(4)
    }))

  it.effect("as a layer", () =>
    Effect.gen(function*() {
      const recorder = yield* CallStats.CallStats
      yield* recorder.onEvent(admitted(1, 0))
      expect((yield* CallStats.snapshot).calls).toBe(1)
    }).pipe(Effect.provide(CallStats.layer)))
})

const snapshot = (admissions: Array<Admission>): Snapshot => ({
  attempts: admissions.map((a) => ({
    at: a.at,
    requestId: "r",
    method: "POST",
    path: "/v1/chat/completions",
    key: undefined,
    model: a.model,
    status: 200,
    code: undefined,
    limit: undefined,
    fault: undefined
  })),
  admissions,
  byStatus: {},
  byCode: {},
  attemptsByKey: {},
  tokensByModel: {},
  requestsByModel: {},
  spendUsd: 0
})
const admission = (model: string, tokens: number, extra: Partial<Admission> = {}): Admission => ({
  at: 0,
  model,
  scope: model,
  project: undefined,
  requests: 1,
  tokens,
  images: 0,
  ...extra
})

describe("SimStats.theoreticalMinimum", () => {
  it("each scope against its own limits, the largest wins", () => {
    const scenario = Scenario.tier1() // gpt-4o 500 RPM / 30k TPM, gpt-4o-mini 500 / 200k
    const s = snapshot([
      ...Array.from({ length: 10 }, () => admission("gpt-4o", 8_000)), // 80k: 50k over at 500/s = 100 s
      ...Array.from({ length: 10 }, () => admission("gpt-4o-mini", 30_000)) // 300k: 100k over at 3,333/s = 30 s
    ])
    expect(SimStats.theoreticalMinimum(s, scenario)).toBeCloseTo(100_000, 6)
    expect(SimStats.theoreticalMinimum(s, scenario, { model: "gpt-4o-mini" })).toBeCloseTo(30_000, 6)
    // plain limits: every admission (after the filters) against them together
    expect(SimStats.theoreticalMinimum(s, { tpm: 380_000 })).toBe(0)
    expect(SimStats.theoreticalMinimum(s, { rpm: 10 })).toBeCloseTo(60_000, 6)
  })

  it("organizations' overrides, pools, projects and sub-minute buckets", () => {
    const scenario = Scenario.single("gpt-4o", { tpm: 60_000 }, {
      organizations: { "org-b": { limits: { "gpt-4o": { tpm: 6_000 } } } },
      projects: { "proj-1": { limits: { "gpt-4o": { tpm: 12_000 } } } }
    })
    const b = snapshot([admission("gpt-4o", 12_000, { organization: "org-b" })]) // 6k over at 100/s
    expect(SimStats.theoreticalMinimum(b, scenario)).toBeCloseTo(60_000, 6)
    const p = snapshot([admission("gpt-4o", 24_000, { project: "proj-1" })]) // the project binds: 12k over at 200/s
    expect(SimStats.theoreticalMinimum(p, scenario)).toBeCloseTo(60_000, 6)
    const sub = Scenario.single("gpt-4o", { tpm: 60_000 }, { enforcement: { subWindowMs: 1_000 } })
    // a 1 s share is 1,000 tokens: 30,000 take 29 s at 1,000/s, not 0
    expect(SimStats.theoreticalMinimum(snapshot([admission("gpt-4o", 30_000)]), sub)).toBeCloseTo(29_000, 6)
    const pooled = Scenario.single("gpt-4o", {}, {
      models: { "gpt-4o": { limits: {}, pool: "family" }, "gpt-4o-2024": { limits: {}, pool: "family" } },
      pools: { family: { tpm: 6_000 } }
    })
    const both = snapshot([
      admission("gpt-4o", 6_000, { scope: "family" }),
      admission("gpt-4o-2024", 6_000, { scope: "family" })
    ])
    expect(SimStats.theoreticalMinimum(both, pooled)).toBeCloseTo(60_000, 6)
  })

  it("from the counters when only counters are kept", () => {
    const counts: Snapshot = { ...snapshot([]), requestsByModel: { "gpt-4o": 1_500 }, tokensByModel: { "gpt-4o": 0 } }
    expect(SimStats.theoreticalMinimum(counts, Scenario.tier1())).toBeCloseTo(120_000, 6) // 1,000 over at 500/min
  })
})
