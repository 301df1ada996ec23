import * as NodeContext from "@effect/platform-node/NodeContext"
import { describe, expect, it } from "@effect/vitest"
import { Cli, Plan } from "@sluice/cli"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Cache from "../src/internal/cache.js"
import { shownUrl } from "../src/internal/handler.js"
import * as Telemetry from "../src/internal/telemetry.js"
import { capture, chatBody, writeChatLines } from "./helpers.js"

describe("sluice CLI (in process)", () => {
  it.effect("plan prints the binding limit, drain time and cost", () =>
    Effect.gen(function*() {
      const result = yield* capture([
        "plan",
        "--tier",
        "1",
        "--mix",
        "gpt-4o-mini=0.8,gpt-4o=0.2",
        "--requests",
        "5000",
        "--input-tokens",
        "1000",
        "--output-tokens",
        "500"
      ])
      expect(result.exit._tag).toBe("Success")
      expect(result.out).toContain("binding limit: tokens/min (gpt-4o)")
      // gpt-4o: 1000 requests × 1500 tokens / 30k TPM = 50 minutes
      expect(result.out).toContain("time to drain: 50.0 min")
      // gpt-4o-mini: 4000 × (1000 × 0.15 + 500 × 0.6) / 1e6 = 1.8; gpt-4o: 1000 × (1000 × 2.5 + 500 × 10) / 1e6 = 7.5
      expect(result.out).toContain("cost: $9.30")
    }))

  it.effect("plan --json and the peak-minute headroom", () =>
    Effect.gen(function*() {
      const result = yield* capture([
        "plan",
        "--json",
        "--tier",
        "5",
        "--mix",
        "gpt-image-2",
        "--requests",
        "3000",
        "--images",
        "2",
        "--peak-per-minute",
        "100"
      ])
      const plan = JSON.parse(result.out) as Plan.Plan
      expect(plan.pools[0]!.binding).toBe("images/min")
      expect(plan.minutes).toBe(24) // 6000 images / 250 IPM
      expect(plan.pools[0]!.peakHeadroom).toBeCloseTo(1 - 200 / 250)
      expect(plan.warnings.some((w) => w.includes("headroom"))).toBe(true)
    }))

  it("Plan.compute: a daily cap binds when the workload exceeds it", () => {
    const plan = Plan.compute({
      tier: 1,
      mix: [{ model: "text-embedding-3-small", share: 1 }],
      requests: 25_000,
      inputTokens: 100,
      outputTokens: 0,
      images: 0
    })
    expect(plan.pools[0]!.binding).toBe("requests/day")
    expect(plan.pools[0]!.cost).toBeCloseTo((25_000 * 100 * 0.02) / 1e6)
  })

  it.effect("bad usage: missing --input, unknown option value, bad --mix", () =>
    Effect.gen(function*() {
      const missing = yield* capture(["run", "--output", "/tmp/x.jsonl"])
      expect(missing.exit._tag).toBe("Failure")
      const tier = yield* capture(["plan", "--tier", "9"])
      expect(tier.exit._tag).toBe("Failure")
      const mix = yield* capture(["plan", "--mix", "gpt-4o=abc"])
      expect(mix.exit._tag).toBe("Failure")
      const noKey = yield* capture([
        "run",
        "--input",
        "package.json",
        "--output",
        "/tmp/never.jsonl",
        "--api-key-env",
        "SLUICE_TEST_NO_SUCH_KEY"
      ])
      expect(noKey.exit._tag).toBe("Failure")
      expect(JSON.stringify(noKey.exit)).toContain("SLUICE_TEST_NO_SUCH_KEY")
      // a bad limits file: the path and the field
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-cli-"))
      const limits = NodePath.join(dir, "limits.json")
      NodeFs.writeFileSync(limits, JSON.stringify({ models: { "gpt-4o": { rpm: -5 } } }))
      const badLimits = yield* capture([
        "run",
        "--input",
        "package.json",
        "--output",
        NodePath.join(dir, "out.jsonl"),
        "--simulate",
        "tier1",
        "--limits",
        limits
      ])
      expect(badLimits.exit._tag).toBe("Failure")
      expect(JSON.stringify(badLimits.exit)).toContain("limits.json")
      expect(JSON.stringify(badLimits.exit)).toMatch(/rpm/)
    }))

  it("a bad URL option is named, never echoed: at most its scheme and host (it may hold credentials)", () => {
    const failure = <A>(effect: Effect.Effect<A, unknown>): string => {
      const exit = Effect.runSyncExit(effect)
      expect(Exit.isFailure(exit)).toBe(true)
      return JSON.stringify(exit)
    }
    const otlp = (url: string) =>
      failure(Telemetry.layer({ otlp: url, metricsPort: undefined, metricsHost: "127.0.0.1" }))
    const baseUrl = (text: string) => failure(Cli.checkBaseUrl({ text, from: "--base-url" }))
    const cache = (spec: string) => failure(Effect.provide(Effect.scoped(Cache.open(spec)), NodeContext.layer))
    expect(otlp("localhost:4318")).toContain("--otlp needs an http(s) URL")
    expect(otlp("ftp://u:p@collector:4318/x")).toContain("not ftp://collector:4318")
    expect(baseUrl("user:pw@host")).toContain("--base-url must be an http:// or https:// URL")
    expect(baseUrl("wss://api.example/v1")).toContain("not wss://api.example")
    expect(baseUrl("not a url")).toContain("--base-url is not an absolute URL")
    expect(shownUrl("rediss://:pw@cache.internal:6380/2?password=pw")).toBe("rediss://cache.internal:6380")
    expect(shownUrl("user:pw@host")).toBeUndefined()
    // --cache: a URL that is not Redis's is refused (never made a directory named after it), whatever its case
    expect(cache("ftp://u:pw@files.internal/x")).toContain("--cache ftp://files.internal: a directory or a redis://")
    expect(NodeFs.existsSync("ftp:")).toBe(false)
    const secret = FastCheck.stringMatching(/^[A-Za-z0-9]{1,12}$/).map((s) => `SECRET${s}`)
    FastCheck.assert(
      FastCheck.property(
        secret,
        FastCheck.constantFrom("", "ftp://", "wss://", "redis://", "http:"),
        FastCheck.constantFrom("", "/v1", `/v1?key=`, "#"),
        (token, scheme, tail) => {
          // the secret as a password, a username, a path or query: no message holds it
          for (
            const value of [
              `${scheme}user:${token}@host${tail}`,
              `${scheme}${token}@host`,
              `${scheme}h/${tail}${token}`
            ]
          ) {
            expect(otlp(value)).not.toContain(token)
            if (/^[a-z]+:\/\//.test(value) && !value.startsWith("redis")) {
              expect(cache(value.toUpperCase().replace(token.toUpperCase(), token))).not.toContain(token)
            }
            if (!/^https?:/.test(value)) expect(baseUrl(value)).not.toContain(token)
            expect(shownUrl(value) ?? "").not.toContain(token)
          }
        }
      ),
      { numRuns: 200 }
    )
  })

  it("parseMix and defaultErrorsPath", () => {
    expect(Cli.parseMix("a=1, b=3")).toEqual([{ model: "a", share: 1 }, { model: "b", share: 3 }])
    expect(Cli.parseMix("gpt-4o")).toEqual([{ model: "gpt-4o", share: 1 }])
    expect(Cli.parseMix("x=-1")).toBeUndefined()
    expect(Cli.defaultErrorsPath("out/results.jsonl")).toBe("out/results.errors.jsonl")
    expect(Cli.defaultErrorsPath("results")).toBe("results.errors.jsonl")
  })

  // `Cli.run` reads and writes real files through Node streams and runs the embedded simulator on the clock it
  // installs itself (no latency here, so well under a second of wall time).
  // live: Cli.run writes real files through Node streams, whose callbacks TestClock cannot advance to (as it.effect it hangs)
  it.live(
    "run --routing: lines naming a task go through the router, spill when a pool is full, and the summary says so",
    () =>
      Effect.gen(function*() {
        const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-cli-"))
        const scenario = NodePath.join(dir, "scenario.json")
        NodeFs.writeFileSync(
          scenario,
          JSON.stringify({
            name: "routing",
            models: {
              "gpt-4o": { limits: { rpm: 10_000, tpm: 20_000 }, contextWindow: 128_000 },
              "gpt-4o-mini": { limits: { rpm: 10_000, tpm: 2_000_000 }, contextWindow: 128_000 }
            },
            latency: { request: { _tag: "fixed", ms: 0 }, perOutputTokenMs: 0 },
            output: { fixedTokens: 300 }
          })
        )
        const routing = NodePath.join(dir, "routing.json")
        NodeFs.writeFileSync(
          routing,
          JSON.stringify({
            deployments: [{ id: "large", model: "gpt-4o" }, { id: "mini", model: "gpt-4o-mini" }],
            tasks: { summary: ["large", "mini"] },
            limits: undefined
          })
        )
        const input = NodePath.join(dir, "in.jsonl")
        writeChatLines(input, 200, "s", (i) => chatBody("summary", `summarise ${i}`, 400))
        const output = NodePath.join(dir, "out.jsonl")
        const result = yield* capture([
          "run",
          "--input",
          input,
          "--output",
          output,
          "--simulate",
          scenario,
          "--routing",
          routing,
          "--limits",
          writeLimits(dir),
          "--priority",
          "background",
          "--progress",
          "off"
        ])
        expect(result.exit._tag).toBe("Success")
        expect(result.exitCode).toBe(0)
        const written = NodeFs.readFileSync(output, "utf8").trim().split("\n").map((l) => JSON.parse(l))
        expect(written).toHaveLength(200)
        const byModel: Record<string, number> = {}
        for (const line of written) byModel[line.response.body.model] = (byModel[line.response.body.model] ?? 0) + 1
        // gpt-4o's 20k TPM holds about 48 of these calls at once; the rest spilled to mini instead of waiting
        expect(byModel["gpt-4o"]).toBeGreaterThan(20)
        expect(byModel["gpt-4o"]).toBeLessThan(100)
        expect(byModel["gpt-4o-mini"]).toBeGreaterThan(100)
        expect(result.out).toContain("routing: 200 calls routed")
        expect(result.out).toMatch(/large -> mini \(Saturated\): \d+/)
        expect(result.out).toContain("429s 0")

        // a bad routing file: exit 2 naming the path
        NodeFs.writeFileSync(routing, JSON.stringify({ deployments: [{ model: "gpt-4o", price: { input: "cheap" } }] }))
        const bad = yield* capture([
          "run",
          "--input",
          input,
          "--output",
          output,
          "--simulate",
          scenario,
          "--routing",
          routing
        ])
        expect(bad.exit._tag).toBe("Failure")
        expect(JSON.stringify(bad.exit)).toContain("deployments[0].price.input")
      }),
    60_000
  )
})

const writeLimits = (dir: string) => {
  const path = NodePath.join(dir, "limits.json")
  NodeFs.writeFileSync(path, JSON.stringify({ models: { "gpt-4o": { rpm: 10_000, tpm: 20_000 } } }))
  return path
}
