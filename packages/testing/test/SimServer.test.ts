import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import OpenAI, { toFile } from "openai"
import { Scenario, SimConfig, Simulator } from "../src/index.js"
import { SimServer } from "../src/node.js"

const attempt = <A>(f: () => Promise<A>) => Effect.either(Effect.tryPromise({ try: f, catch: (e) => e }))

describe("HTTP face", () => {
  // Real sockets need real time: this test serves on a loopback port (0 = any free one) and uses the SDK's own
  // fetch. Latency is zero in the scenario, so it takes a few milliseconds.
  it.live("serves the same model over HTTP: success, 429 with headers, reset, stream", () =>
    Effect.gen(function*() {
      const { host, url } = yield* SimServer.serve()
      expect(host).toBe("127.0.0.1")
      const client = new OpenAI({ apiKey: "sk-test", baseURL: url, maxRetries: 0 })
      const ok = yield* attempt(() =>
        client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] })
          .withResponse()
      )
      const { data, response } = Either.getOrThrow(ok)
      expect(data.object).toBe("chat.completion")
      expect(response.headers.get("x-ratelimit-remaining-requests")).toBe("1")
      expect(response.headers.get("content-type")).toContain("application/json")

      const stream = yield* attempt(async () => {
        const s = await client.chat.completions.create({
          model: "gpt-4o-mini",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 8,
          stream: true,
          stream_options: { include_usage: true }
        })
        let usage: unknown
        for await (const chunk of s) if (chunk.usage) usage = chunk.usage
        return usage
      })
      expect(Either.getOrThrow(stream)).toMatchObject({ completion_tokens: 4 })

      const limited = yield* attempt(() =>
        client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] })
      )
      const e = Either.getLeft(limited).pipe((o) => (o._tag === "Some" ? o.value : undefined))
      expect(e).toBeInstanceOf(OpenAI.RateLimitError)
      const rate = e as InstanceType<typeof OpenAI.RateLimitError>
      expect(rate.type).toBe("requests")
      expect(rate.headers?.get("retry-after")).toBe("30")

      const reset = yield* attempt(() =>
        client.chat.completions.create({ model: "reset-me", messages: [{ role: "user", content: "hi" }] })
      )
      expect(Either.getLeft(reset).pipe((o) => (o._tag === "Some" ? o.value : undefined))).toBeInstanceOf(
        OpenAI.APIConnectionError
      )
      const stats = yield* Simulator.stats
      expect(stats.byStatus).toEqual({ "0": 1, "200": 2, "429": 1 })

      // multipart upload and a batch over HTTP (batch timings are zero in this scenario)
      const jsonl = JSON.stringify({
        custom_id: "only",
        method: "POST",
        url: "/v1/embeddings",
        body: { model: "emb", input: "abcd" }
      })
      const done = yield* attempt(async () => {
        const file = await client.files.create({ file: await toFile(Buffer.from(jsonl), "in.jsonl"), purpose: "batch" })
        const batch = await client.batches.create({
          input_file_id: file.id,
          endpoint: "/v1/embeddings",
          completion_window: "24h"
        })
        const finished = await client.batches.retrieve(batch.id)
        return (await client.files.content(finished.output_file_id!)).text()
      })
      expect(JSON.parse(Either.getOrThrow(done)).custom_id).toBe("only")
    }).pipe(
      Effect.scoped,
      Effect.provide(Simulator.layer(SimConfig.make({
        models: { "gpt-4o-mini": { limits: { rpm: 2 } }, "reset-me": {}, emb: { kind: "embedding" } },
        batch: { validatingMs: 0, inProgressMs: 0, perRequestMs: 0, finalizingMs: 0 },
        incidents: [{ fromMs: 0, toMs: 3_600_000, fault: "connection_reset", models: ["reset-me"] }]
      })))
    ))
})

describe("the openai SDK over HTTP: every error kind", () => {
  // One scenario, one server, many calls. Real sockets need real time (it.live): the server listens on a loopback
  // port and the SDK uses its own fetch. Latency is zero and the one hang is cut by a 150 ms client timeout, so the
  // whole test takes well under a second.
  const incident = (fault: SimConfig.FaultKind, model: string) => ({
    fromMs: 0,
    toMs: 3_600_000,
    fault,
    models: [model]
  })
  const scenario = SimConfig.make({
    organization: "org-main",
    apiKeys: ["sk-main"],
    organizations: { "org-broke": { apiKeys: ["sk-broke"], quotaUsd: 0 } },
    models: {
      rpm: { limits: { rpm: 1, tpm: 10_000 } },
      tpm: { limits: { rpm: 100, tpm: 100 } },
      rpd: { limits: { rpd: 1 } },
      tpd: { limits: { tpd: 100 } },
      small: { contextWindow: 50 },
      locked: { access: false },
      plain: {},
      "m-500": {},
      "m-502": {},
      "m-503": {},
      "m-504": {},
      "m-409": {},
      "m-reset": {},
      "m-hang": {}
    },
    faults: { timeoutMs: 60_000 },
    incidents: [
      incident("server_error", "m-500"),
      incident("bad_gateway", "m-502"),
      incident("overloaded", "m-503"),
      incident("gateway_timeout", "m-504"),
      incident("conflict", "m-409"),
      incident("connection_reset", "m-reset"),
      incident("timeout", "m-hang")
    ]
  })

  // live: a real HTTP server and the SDK's real fetch over a socket
  it.live("surfaces as the SDK's own error classes with status, code, type and headers", () =>
    Effect.gen(function*() {
      const { url } = yield* SimServer.serve()
      const sdk = (apiKey: string, extra: { organization?: string; timeout?: number } = {}) =>
        new OpenAI({ apiKey, baseURL: url, maxRetries: 0, ...extra })
      const main = sdk("sk-main")
      const create = (client: OpenAI, model: string, content = "hi", max_tokens = 10) =>
        attempt(() => client.chat.completions.create({ model, messages: [{ role: "user", content }], max_tokens }))
      const failure = (either: Either.Either<unknown, unknown>) => {
        if (Either.isRight(either)) throw new Error("expected a failure")
        return either.left as InstanceType<typeof OpenAI.APIError>
      }

      // x-ratelimit-* headers on a success
      const ok = yield* attempt(() =>
        main.chat.completions.create({ model: "rpm", messages: [{ role: "user", content: "hi" }], max_tokens: 10 })
          .withResponse()
      )
      const headers = Either.getOrThrow(ok).response.headers
      expect(headers.get("x-ratelimit-limit-requests")).toBe("1")
      expect(headers.get("x-ratelimit-remaining-requests")).toBe("0")
      expect(headers.get("x-ratelimit-reset-requests")).toBe("1m0s")
      expect(headers.get("x-ratelimit-limit-tokens")).toBe("10000")
      expect(headers.get("x-ratelimit-remaining-tokens")).toBe("9994")
      expect(headers.get("x-ratelimit-reset-tokens")).toBe("36ms")
      expect(headers.get("openai-organization")).toBe("org-main")
      expect(headers.get("x-request-id")).toMatch(/^req_[0-9a-f]{32}$/)

      // 429 RPM: retry-after and retry-after-ms
      const rpm = failure(yield* create(main, "rpm"))
      expect(rpm).toBeInstanceOf(OpenAI.RateLimitError)
      expect([rpm.status, rpm.code, rpm.type]).toEqual([429, "rate_limit_exceeded", "requests"])
      expect(rpm.message).toMatch(
        /^429 Rate limit reached for rpm in organization org-main on requests per min \(RPM\): Limit 1, Used 1, Requested 1\. Please try again in (\d+(\.\d+)?s|1m0s)\./
      )
      // real time passes between the calls (a loaded machine may take a while): bounds, not exact values
      const rpmWaitMs = Number(rpm.headers?.get("retry-after-ms"))
      expect(rpmWaitMs).toBeGreaterThan(30_000)
      expect(rpmWaitMs).toBeLessThanOrEqual(60_000)
      expect(Number(rpm.headers?.get("retry-after"))).toBe(Math.ceil(rpmWaitMs / 1000))
      expect(rpm.headers?.get("x-ratelimit-remaining-requests")).toBe("0")

      // 429 TPM: 'hi' + 60 max tokens leaves 69 of 100; 81 more must wait 12 / (100 / 60 s) = 7.2 s
      expect(Either.isRight(yield* create(main, "tpm", "hi", 60))).toBe(true)
      const tpm = failure(yield* create(main, "tpm", "hi", 80))
      expect(tpm).toBeInstanceOf(OpenAI.RateLimitError)
      expect([tpm.status, tpm.code, tpm.type]).toEqual([429, "rate_limit_exceeded", "tokens"])
      expect(tpm.message).toMatch(
        /on tokens per min \(TPM\): Limit 100, Used \d+, Requested 81\. Please try again in \d+(\.\d+)?s\./
      )
      const tpmWaitMs = Number(tpm.headers?.get("retry-after-ms"))
      expect(tpmWaitMs).toBeGreaterThan(3_000)
      expect(tpmWaitMs).toBeLessThanOrEqual(7_200)
      expect(Number(tpm.headers?.get("retry-after"))).toBe(Math.ceil(tpmWaitMs / 1000))

      // 429 request too large: never succeeds by waiting, so no retry-after
      const large = failure(yield* create(main, "tpm", "hi", 200))
      expect(large).toBeInstanceOf(OpenAI.RateLimitError)
      expect([large.status, large.code, large.type]).toEqual([429, "rate_limit_exceeded", "tokens"])
      expect(large.message).toContain(
        "Request too large for tpm in organization org-main on tokens per min (TPM): Limit 100, Requested 201. The input or output tokens must be reduced in order to run successfully."
      )
      expect(large.headers?.get("retry-after")).toBeNull()
      expect(large.headers?.get("retry-after-ms")).toBeNull()

      // 429 RPD and TPD: the message names "per day"; daily limits are never in x-ratelimit headers
      expect(Either.isRight(yield* create(main, "rpd"))).toBe(true)
      const rpd = failure(yield* create(main, "rpd"))
      expect([rpd.status, rpd.code, rpd.type]).toEqual([429, "rate_limit_exceeded", "requests"])
      expect(rpd.message).toContain("on requests per day (RPD): Limit 1, Used 1, Requested 1. Please try again in")
      expect(Number(rpd.headers?.get("retry-after"))).toBeGreaterThan(86_000)
      expect(rpd.headers?.get("x-ratelimit-limit-requests")).toBeNull()
      expect(Either.isRight(yield* create(main, "tpd", "hi", 60))).toBe(true)
      const tpd = failure(yield* create(main, "tpd", "hi", 80))
      expect([tpd.status, tpd.code, tpd.type]).toEqual([429, "rate_limit_exceeded", "tokens"])
      expect(tpd.message).toContain("on tokens per day (TPD): Limit 100, Used 31, Requested 81.")

      // 429 insufficient_quota, in the organization that ran out (its own spend and quota)
      const broke = failure(yield* create(sdk("sk-broke"), "plain"))
      expect(broke).toBeInstanceOf(OpenAI.RateLimitError)
      expect([broke.status, broke.code, broke.type]).toEqual([429, "insufficient_quota", "insufficient_quota"])
      expect(broke.message).toContain("You exceeded your current quota, please check your plan and billing details.")
      expect(broke.headers?.get("openai-organization")).toBe("org-broke")
      expect(broke.headers?.get("retry-after")).toBeNull()
      expect(Either.isRight(yield* create(main, "plain"))).toBe(true)

      // 400s
      const context = failure(yield* create(main, "small", "x".repeat(400)))
      expect(context).toBeInstanceOf(OpenAI.BadRequestError)
      expect([context.status, context.code, context.type, context.param]).toEqual([
        400,
        "context_length_exceeded",
        "invalid_request_error",
        "messages"
      ])
      const policy = failure(yield* create(main, "plain", "[sim:content-policy] no"))
      expect(policy).toBeInstanceOf(OpenAI.BadRequestError)
      expect([policy.status, policy.code, policy.type]).toEqual([
        400,
        "content_policy_violation",
        "invalid_request_error"
      ])

      // 401 wrong key (masked), 401 an organization the key is not in, 403 tier, 404 model
      const wrong = failure(yield* create(sdk("sk-nope-12345678"), "plain"))
      expect(wrong).toBeInstanceOf(OpenAI.AuthenticationError)
      expect([wrong.status, wrong.code, wrong.type]).toEqual([401, "invalid_api_key", "invalid_request_error"])
      expect(wrong.message).not.toContain("sk-nope-12345678")
      const mismatched = failure(yield* create(sdk("sk-main", { organization: "org-broke" }), "plain"))
      expect(mismatched).toBeInstanceOf(OpenAI.AuthenticationError)
      expect([mismatched.status, mismatched.code]).toEqual([401, "mismatched_organization"])
      const forbidden = failure(yield* create(main, "locked"))
      expect(forbidden).toBeInstanceOf(OpenAI.PermissionDeniedError)
      expect([forbidden.status, forbidden.code]).toEqual([403, "model_not_found"])
      expect(forbidden.message).toContain("does not have access to model `locked`")
      const missing = failure(yield* create(main, "gpt-9"))
      expect(missing).toBeInstanceOf(OpenAI.NotFoundError)
      expect([missing.status, missing.code, missing.type]).toEqual([404, "model_not_found", "invalid_request_error"])

      // 409 and the 5xx faults
      const conflict = failure(yield* create(main, "m-409"))
      expect(conflict).toBeInstanceOf(OpenAI.ConflictError)
      expect([conflict.status, conflict.code]).toEqual([409, "conflict"])
      for (
        const [model, status, type] of [
          ["m-500", 500, "server_error"],
          ["m-502", 502, "cf_bad_gateway"],
          ["m-503", 503, "server_error"],
          ["m-504", 504, "cf_gateway_timeout"]
        ] as const
      ) {
        const e = failure(yield* create(main, model))
        expect(e).toBeInstanceOf(OpenAI.InternalServerError)
        expect([e.status, e.type]).toEqual([status, type])
        expect(e.headers?.get("x-request-id")).toMatch(/^req_/)
      }

      // a reset, and a hang the client's own (real-time) timeout cuts
      const reset = failure(yield* create(main, "m-reset"))
      expect(reset).toBeInstanceOf(OpenAI.APIConnectionError)
      expect(reset).not.toBeInstanceOf(OpenAI.APIConnectionTimeoutError)
      const started = Date.now()
      const hung = failure(yield* create(sdk("sk-main", { timeout: 150 }), "m-hang"))
      expect(hung).toBeInstanceOf(OpenAI.APIConnectionTimeoutError)
      expect(Date.now() - started).toBeLessThan(10_000)

      const stats = yield* Simulator.stats
      expect(stats.byStatus).toEqual({
        "0": 1,
        "200": 5,
        "400": 2,
        "401": 2,
        "403": 1,
        "404": 1,
        "409": 1,
        "429": 6,
        "500": 1,
        "502": 1,
        "503": 1,
        "504": 2
      })
      expect(stats.spendByOrganization).toEqual({ "org-main": 0 })
    }).pipe(Effect.scoped, Effect.provide(Simulator.layer(scenario))))
})

describe("scenario files", () => {
  const write = (content: string) => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "sluice-sim-"))
    const file = Path.join(dir, "scenario.json")
    Fs.writeFileSync(file, content)
    return file
  }

  it.effect("decodes a scenario file with defaults", () =>
    Effect.gen(function*() {
      const file = write(JSON.stringify({ models: { "gpt-4o": { limits: { rpm: 500, tpm: 30000 } } }, seed: 3 }))
      const scenario = yield* SimConfig.load(file)
      expect(scenario.seed).toBe(3)
      expect(scenario.models["gpt-4o"].contextWindow).toBe(128_000)
      expect(scenario.enforcement.retryAfter).toBe(true)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.effect("a bad file fails with the path of the bad field", () =>
    Effect.gen(function*() {
      const file = write(JSON.stringify({ models: { "gpt-4o": { limits: { rpm: -5 } } } }))
      const exit = yield* Effect.exit(SimConfig.load(file))
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(SimConfig.load(file))
      expect(error._tag).toBe("ScenarioError")
      expect(error.message).toContain("at models[\"gpt-4o\"].limits.rpm: Expected a positive number, actual -5")
      const badJson = yield* Effect.flip(SimConfig.load(write("{ nope")))
      expect(badJson.message).toContain("not valid JSON")
      const typo = yield* Effect.flip(SimConfig.decode({ models: {}, faultz: {} }))
      expect(typo.message).toContain("faultz")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.effect("every example scenario decodes", () =>
    Effect.gen(function*() {
      const dir = Path.resolve(__dirname, "../../../examples/scenarios")
      const files = Fs.existsSync(dir) ? Fs.readdirSync(dir).filter((f) => f.endsWith(".json")) : []
      expect(files.length).toBeGreaterThan(15)
      for (const f of files) yield* SimConfig.load(Path.join(dir, f))
      expect(Scenario.tier1().models["gpt-4o"].limits.rpm).toBe(500)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.effect("Simulator.layerConfig reads the scenario path from Config", () =>
    Effect.gen(function*() {
      const file = write(JSON.stringify({ name: "from-config", models: { m: {} } }))
      const sim = yield* Effect.provide(
        Simulator.Simulator,
        Simulator.layerConfig(Config.string("SIM_SCENARIO")).pipe(
          Layer.provide(NodeFileSystem.layer),
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map([["SIM_SCENARIO", file]]))))
        )
      )
      expect(sim.scenario.name).toBe("from-config")
    }))
})
