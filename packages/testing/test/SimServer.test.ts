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
import { Scenario, SimConfig, SimServer, Simulator } from "../src/index.js"

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
