import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as TestClock from "effect/TestClock"
import * as Path from "node:path"
import OpenAI from "openai"
import { SimConfig, SimFetch, SimStats, Simulator } from "../src/index.js"
import { call, chat } from "./helpers.js"

const withSim = (scenario: SimConfig.Scenario) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provide(effect, Simulator.layer(scenario))

const send = (
  apiKey: string,
  options: { path?: string; body?: unknown; headers?: Record<string, string>; method?: string } = {}
) =>
  Effect.gen(function*() {
    const sim = yield* Simulator.Simulator
    const response = yield* sim.judge({
      method: options.method ?? "POST",
      path: options.path ?? "/v1/chat/completions",
      headers: { authorization: `Bearer ${apiKey}`, ...options.headers },
      body: options.body ?? { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], max_tokens: 10 }
    })
    if (response._tag !== "Response") throw new Error(`unexpected ${response._tag}`)
    return { status: response.status, headers: response.headers, json: JSON.parse(response.body) }
  })

const twoOrgs = (extra: Partial<SimConfig.ScenarioInput> = {}) =>
  SimConfig.make({
    organization: "org-a",
    apiKeys: ["sk-a"],
    organizations: { "org-b": { apiKeys: ["sk-b"] } },
    models: { "gpt-4o-mini": { limits: { rpm: 1 } } },
    ...extra
  })

const sdkError = <A>(either: Either.Either<A, unknown>) => {
  if (Either.isRight(either)) throw new Error("expected a failure")
  return either.left as InstanceType<typeof OpenAI.APIError>
}

describe("organizations", () => {
  it.effect("API keys map to organizations; each has its own buckets, openai-organization and 429 messages", () =>
    Effect.gen(function*() {
      const a1 = yield* send("sk-a")
      expect(a1.status).toBe(200)
      expect(a1.headers["openai-organization"]).toBe("org-a")
      expect(a1.headers["x-ratelimit-remaining-requests"]).toBe("0")
      const a2 = yield* send("sk-a")
      expect(a2.status).toBe(429)
      expect(a2.json.error.message).toContain(
        "Rate limit reached for gpt-4o-mini in organization org-a on requests per min (RPM): Limit 1, Used 1"
      )
      expect(a2.headers["openai-organization"]).toBe("org-a")
      // org-b's bucket for the same model is untouched by org-a's traffic
      const b1 = yield* send("sk-b")
      expect(b1.status).toBe(200)
      expect(b1.headers["openai-organization"]).toBe("org-b")
      expect(b1.headers["x-ratelimit-remaining-requests"]).toBe("0")
      const b2 = yield* send("sk-b")
      expect(b2.status).toBe(429)
      expect(b2.json.error.message).toContain("in organization org-b on requests per min (RPM)")
      // a key of neither organization
      const stranger = yield* send("sk-c")
      expect(stranger.status).toBe(401)
      expect(stranger.json.error.code).toBe("invalid_api_key")

      const stats = yield* Simulator.stats
      expect(stats.attempts.map((a) => [a.organization, a.status])).toEqual([
        ["org-a", 200],
        ["org-a", 429],
        ["org-b", 200],
        ["org-b", 429],
        [undefined, 401]
      ])
      expect(stats.admissions.map((a) => a.organization)).toEqual(["org-a", "org-b"])
      expect(SimStats.peak(stats, { dimension: "requests", windowMs: 60_000, organization: "org-a" })).toBe(1)
      expect(SimStats.peak(stats, { dimension: "requests", windowMs: 60_000, organization: "org-b" })).toBe(1)
      expect(SimStats.peak(stats, { dimension: "requests", windowMs: 60_000 })).toBe(2)
      yield* TestClock.adjust("1 minute")
      expect((yield* send("sk-a")).status).toBe(200)
    }).pipe(withSim(twoOrgs())))

  it.effect("per-organization limits replace the model's (or pool's) for that organization only", () =>
    Effect.gen(function*() {
      const a = yield* send("sk-a")
      expect(a.headers["x-ratelimit-limit-requests"]).toBe("1")
      const b = yield* send("sk-b")
      expect(b.headers["x-ratelimit-limit-requests"]).toBe("5")
      expect(b.headers["x-ratelimit-limit-tokens"]).toBe("5000")
      // a pooled model is overridden by its pool's name
      const pooled = { model: "p1", messages: [{ role: "user", content: "hi" }], max_tokens: 10 }
      expect((yield* send("sk-a", { body: pooled })).headers["x-ratelimit-limit-requests"]).toBe("2")
      expect((yield* send("sk-b", { body: pooled })).headers["x-ratelimit-limit-requests"]).toBe("7")
      expect((yield* send("sk-b", { body: { ...pooled, model: "p2" } })).headers["x-ratelimit-remaining-requests"])
        .toBe("5")
    }).pipe(withSim(twoOrgs({
      models: { "gpt-4o-mini": { limits: { rpm: 1 } }, p1: { pool: "family" }, p2: { pool: "family" } },
      pools: { family: { rpm: 2 } },
      organizations: {
        "org-b": { apiKeys: ["sk-b"], limits: { "gpt-4o-mini": { rpm: 5, tpm: 5000 }, family: { rpm: 7 } } }
      }
    }))))

  it.effect("each organization has its own spend against its own quota", () =>
    Effect.gen(function*() {
      // 4000 chars → 1000 prompt tokens; 10 $/M input: 0.01 $ per call
      const body = { model: "gpt-4o-mini", messages: [{ role: "user", content: "x".repeat(4000) }], max_tokens: 1 }
      expect((yield* send("sk-a", { body })).status).toBe(200)
      const a = yield* send("sk-a", { body })
      expect(a.status).toBe(429)
      expect(a.json.error.code).toBe("insufficient_quota")
      expect(a.headers["openai-organization"]).toBe("org-a")
      // org-b's spend is its own, held against the scenario's faults.quotaUsd (0.015 $): two calls, then it is out
      expect((yield* send("sk-b", { body })).status).toBe(200)
      expect((yield* send("sk-b", { body })).status).toBe(200)
      expect((yield* send("sk-b", { body })).json.error.code).toBe("insufficient_quota")
      // org-c overrides the quota upwards
      for (let i = 0; i < 4; i++) expect((yield* send("sk-c", { body })).status).toBe(200)
      const stats = yield* Simulator.stats
      expect(stats.spendByOrganization).toEqual({ "org-a": 0.01, "org-b": 0.02, "org-c": 0.04 })
      expect(stats.spendUsd).toBeCloseTo(0.07, 10)
    }).pipe(withSim(SimConfig.make({
      organization: "org-a",
      organizations: {
        "org-a": { apiKeys: ["sk-a"], quotaUsd: 0.005 },
        "org-b": { apiKeys: ["sk-b"] },
        "org-c": { apiKeys: ["sk-c"], quotaUsd: 1 }
      },
      models: { "gpt-4o-mini": { pricing: { inputPerMillion: 10 } } },
      faults: { quotaUsd: 0.015 }
    }))))

  it.effect("OpenAI-Organization picks among a key's organizations; a mismatch is 401 mismatched_organization", () =>
    Effect.gen(function*() {
      expect((yield* send("sk-shared")).headers["openai-organization"]).toBe("org-a")
      const picked = yield* send("sk-shared", { headers: { "openai-organization": "org-b" } })
      expect(picked.status).toBe(200)
      expect(picked.headers["openai-organization"]).toBe("org-b")
      for (const asked of ["org-b", "org-nowhere"]) {
        const r = yield* send("sk-a", { headers: { "openai-organization": asked } })
        expect(r.status).toBe(401)
        expect(r.json.error).toEqual({
          message: "OpenAI-Organization header should match organization for API key",
          type: "invalid_request_error",
          param: null,
          code: "mismatched_organization"
        })
      }
      expect((yield* send("sk-a", { headers: { "openai-organization": "org-a" } })).status).toBe(200)
    }).pipe(withSim(twoOrgs({
      models: { "gpt-4o-mini": {} },
      organizations: { "org-a": { apiKeys: ["sk-shared"] }, "org-b": { apiKeys: ["sk-b", "sk-shared"] } }
    }))))

  it.effect("with no keys configured any key is accepted and the header picks the organization", () =>
    Effect.gen(function*() {
      expect((yield* send("sk-anything")).headers["openai-organization"]).toBe("org-sim")
      const b = yield* send("sk-anything", { headers: { "openai-organization": "org-b" } })
      expect(b.headers["openai-organization"]).toBe("org-b")
      expect(b.headers["x-ratelimit-limit-requests"]).toBe("9")
      expect((yield* send("sk-anything", { headers: { "openai-organization": "org-x" } })).status).toBe(401)
    }).pipe(withSim(SimConfig.make({
      organizations: { "org-b": { limits: { "gpt-4o-mini": { rpm: 9 } } } },
      models: { "gpt-4o-mini": { limits: { rpm: 3 } } }
    }))))

  it.effect("without organizations the header is ignored, as before (the SDK's organization option)", () =>
    Effect.gen(function*() {
      const fetch = yield* SimFetch.make
      const c = new OpenAI({
        apiKey: "sk-test",
        organization: "org-elsewhere",
        baseURL: "http://sim.local/v1",
        fetch,
        maxRetries: 0
      })
      const { response } = Either.getOrThrow(yield* call(() => c.chat.completions.create(chat("hi")).withResponse()))
      expect(response.status).toBe(200)
      expect(response.headers.get("openai-organization")).toBe("org-sim")
    }).pipe(withSim(SimConfig.make({ models: { "gpt-4o-mini": {} } }))))

  it.effect("per-organization access, project phrase and background load", () =>
    Effect.gen(function*() {
      const image = { model: "dall-e-3", prompt: "a cat" }
      expect((yield* send("sk-a", { path: "/v1/images/generations", body: image })).status).toBe(200)
      const denied = yield* send("sk-b", { path: "/v1/images/generations", body: image })
      expect(denied.status).toBe(403)
      expect(denied.json.error.message).toBe("Project `proj_b` does not have access to model `dall-e-3`")
      // org-b's background load (600 of its 1000 TPM) drains only its own buckets; its 429s name its project
      const half = { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], max_tokens: 998 }
      expect((yield* send("sk-b", { body: half })).headers["x-ratelimit-remaining-tokens"]).toBe("500")
      expect((yield* send("sk-a", { body: half })).headers["x-ratelimit-remaining-tokens"]).toBe("500")
      yield* TestClock.adjust("30 seconds")
      // 30 s refill 500 tokens, less 300 for org-b's background, less this call's 6
      expect((yield* send("sk-b")).headers["x-ratelimit-remaining-tokens"]).toBe("694")
      expect((yield* send("sk-a")).headers["x-ratelimit-remaining-tokens"]).toBe("994")
      const limited = yield* send("sk-b", {
        body: { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], max_tokens: 900 }
      })
      expect(limited.status).toBe(429)
      expect(limited.json.error.message).toContain("in project proj_b organization org-b on tokens per min (TPM)")
    }).pipe(withSim(twoOrgs({
      models: { "gpt-4o-mini": { limits: { tpm: 1000 } }, "dall-e-3": { kind: "image", limits: { ipm: 5 } } },
      organizations: {
        "org-b": {
          apiKeys: ["sk-b"],
          access: { "dall-e-3": false },
          project: "proj_b",
          background: { "gpt-4o-mini": { tpm: 600 } }
        }
      }
    }))))

  it.effect("a batch is billed to the organization that created it", () =>
    Effect.gen(function*() {
      const line = JSON.stringify({
        custom_id: "only",
        method: "POST",
        url: "/v1/embeddings",
        body: { model: "emb", input: "x".repeat(4000) }
      })
      const file = yield* send("sk-b", {
        path: "/v1/files",
        body: { purpose: "batch", file: { filename: "in.jsonl", content: line } }
      })
      const batch = yield* send("sk-b", {
        path: "/v1/batches",
        body: { input_file_id: file.json.id, endpoint: "/v1/embeddings", completion_window: "24h" }
      })
      const done = yield* send("sk-b", { method: "GET", path: `/v1/batches/${batch.json.id}`, body: undefined })
      expect(done.json.status).toBe("completed")
      // 1000 tokens at 10 $/M, half price
      expect((yield* Simulator.stats).spendByOrganization).toEqual({ "org-b": 0.005 })
    }).pipe(withSim(twoOrgs({
      models: { emb: { kind: "embedding", pricing: { inputPerMillion: 10 } } },
      batch: { validatingMs: 0, inProgressMs: 0, perRequestMs: 0, finalizingMs: 0 }
    }))))

  it.effect("examples/scenarios/two-organizations.json: quota out on one organization, the other still answers", () =>
    Effect.gen(function*() {
      const scenario = yield* SimConfig.load(
        Path.resolve(__dirname, "../../../examples/scenarios/two-organizations.json")
      )
      const sim = yield* Simulator.make(scenario)
      const fetch = yield* SimFetch.make.pipe(Effect.provideService(Simulator.Simulator, sim))
      const sdk = (apiKey: string) => new OpenAI({ apiKey, baseURL: "http://sim.local/v1", fetch, maxRetries: 0 })
      const primary = sdk("sk-primary")
      const fallback = sdk("sk-fallback")
      const big = chat("x".repeat(40_000), { model: "gpt-4o", max_tokens: 100 })
      let calls = 0
      let quota: InstanceType<typeof OpenAI.APIError> | undefined = undefined
      while (quota === undefined && calls < 50) {
        calls++
        const r = yield* call(() => primary.chat.completions.create(big), 5_000)
        if (Either.isLeft(r)) quota = sdkError(r)
      }
      expect(calls).toBeGreaterThan(1)
      expect(quota).toBeInstanceOf(OpenAI.RateLimitError)
      expect(quota?.code).toBe("insufficient_quota")
      expect(quota?.headers?.get("openai-organization")).toBe("org-primary")
      // the same request on the other organization succeeds: its own spend, quota and buckets
      const moved = yield* call(() => fallback.chat.completions.create(big).withResponse(), 5_000)
      const { response } = Either.getOrThrow(moved)
      expect(response.headers.get("openai-organization")).toBe("org-fallback")
      expect(response.headers.get("x-ratelimit-limit-tokens")).toBe("800000")
      const stats = yield* sim.stats
      expect(stats.spendByOrganization?.["org-primary"]).toBeGreaterThanOrEqual(0.05)
      expect(stats.spendByOrganization?.["org-fallback"]).toBeGreaterThan(0)
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})
