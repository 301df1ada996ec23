/**
 * `sluice run --otlp URL` and `--metrics-port N`: a short simulated run (in this process) exports its spans over
 * OTLP/HTTP to a receiver here, and serves its metrics for Prometheus while it lasts, scraped over HTTP.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import * as NodeFs from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Telemetry from "../src/internal/telemetry.js"
import { capture, chatBody, writeChatLines } from "./helpers.js"

const setup = (model: string, lines: number, latencyMs: number) => {
  const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-cli-telemetry-"))
  const scenario = NodePath.join(dir, "scenario.json")
  NodeFs.writeFileSync(
    scenario,
    JSON.stringify({
      name: "telemetry",
      seed: 1,
      models: { [model]: { limits: { rpm: 10_000, tpm: 10_000_000 }, contextWindow: 128_000 } },
      latency: { request: { _tag: "fixed", ms: latencyMs }, perOutputTokenMs: 0 },
      output: { fixedTokens: 4 }
    })
  )
  const input = NodePath.join(dir, "in.jsonl")
  writeChatLines(input, lines, "t", (i) => chatBody(model, `[req:t-${i}] hi`, 8))
  return (extra: ReadonlyArray<string>) =>
    capture([
      "run",
      "--input",
      input,
      "--output",
      NodePath.join(dir, "out.jsonl"),
      "--simulate",
      scenario,
      "--tier",
      "1",
      "--progress",
      "off",
      ...extra
    ])
}

/** A local OTLP/HTTP receiver: the JSON bodies posted to each path. */
interface Receiver {
  readonly url: string
  readonly bodies: Map<string, Array<any>>
  readonly server: Http.Server
  /** The paths of the requests whose client closed the connection before they were answered. */
  readonly abandoned: Array<string>
  /** Completes once `count` bodies have been posted to `path`. */
  readonly received: (path: string, count: number) => Effect.Effect<void>
}
/** The receiver; it answers `/v1/traces` only once `holdTraces` of them have been posted (the others at once). */
const receiver = (holdTraces = 1) =>
  Effect.acquireRelease(
    Effect.async<Receiver>((resume) => {
      const bodies = new Map<string, Array<any>>()
      const abandoned: Array<string> = []
      const waiters = new Set<() => boolean>()
      let held: Array<() => void> = []
      const server = Http.createServer((request, response) => {
        const path = request.url ?? ""
        let text = ""
        response.on("close", () => {
          if (!response.writableEnded) abandoned.push(path)
        })
        request.on("data", (chunk) => (text += chunk))
        request.on("end", () => {
          const list = bodies.get(path) ?? []
          list.push(JSON.parse(text))
          bodies.set(path, list)
          for (const waiter of waiters) if (waiter()) waiters.delete(waiter)
          held.push(() => response.writeHead(200, { "content-type": "application/json" }).end("{}"))
          if (path !== "/v1/traces" || list.length >= holdTraces) {
            for (const answer of held) answer()
            held = []
          }
        })
      })
      const received = (path: string, count: number) =>
        Effect.async<void>((resume) => {
          const waiter = () => (bodies.get(path)?.length ?? 0) >= count && (resume(Effect.void), true)
          if (!waiter()) waiters.add(waiter)
        })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          bodies,
          server,
          abandoned,
          received
        })))
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

/** The spans posted to a receiver. */
const spans = (otlp: Receiver): Array<any> =>
  (otlp.bodies.get("/v1/traces") ?? []).flatMap((body) =>
    body.resourceSpans.flatMap((r: any) => r.scopeSpans.flatMap((s: any) => s.spans))
  )

/** A free loopback port (listened on, then closed). */
const freePort = Effect.async<number>((resume) => {
  const server = Http.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** `sluice_openai_requests_total{…model…,outcome="ok"}` in a Prometheus exposition, summed. */
const okRequests = (text: string, model: string) =>
  text.split("\n").filter((line) =>
    line.startsWith("sluice_openai_requests_total{") && line.includes(`gen_ai_request_model="${model}"`) &&
    line.includes("outcome=\"ok\"")
  ).reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0)

describe("sluice run: OpenTelemetry and Prometheus switches", () => {
  // live: a real HTTP receiver (the exporter posts over the network)
  it.live(
    "--otlp URL: one span per line reaches the receiver, and the run's metrics",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const otlp = yield* receiver()
        const run = setup("gpt-4o-mini", 12, 50)
        const result = yield* run(["--speed", "20", "--otlp", otlp.url])
        expect(result.exit._tag, result.err).toBe("Success")
        const calls = spans(otlp).filter((span: any) => span.name === "chat gpt-4o-mini")
        expect(calls).toHaveLength(12)
        for (const span of calls) {
          const attributes = Object.fromEntries(span.attributes.map((a: any) => [a.key, Object.values(a.value)[0]]))
          expect(attributes["gen_ai.provider.name"]).toBe("openai")
          expect(attributes["sluice.decision"]).toBe("ok")
        }
        const metrics = (otlp.bodies.get("/v1/metrics") ?? []).flatMap((body) =>
          body.resourceMetrics.flatMap((r: any) => r.scopeMetrics.flatMap((s: any) => s.metrics))
        )
        expect(metrics.map((m: any) => m.name)).toContain("sluice.openai.requests")
        const bad = yield* run(["--otlp", "localhost:4318"])
        expect(String(bad.exit)).toContain("--otlp needs an http(s) URL")
      })),
    30_000
  )

  it.effect(
    "--otlp URL: an export still on the wire when the run ends is answered, not dropped (a slow receiver)",
    () =>
      Effect.scoped(Effect.gen(function*() {
        // the traces are answered once two are posted: the periodic export's ("first", 1 s in virtual time), then
        // the last flush's; the exporter alone (@effect/opentelemetry 0.64) aborts the first (otlpExports.ts)
        const otlp = yield* receiver(2)
        const telemetry = yield* Telemetry.layer({ otlp: otlp.url, metricsPort: undefined, metricsHost: "127.0.0.1" })
        yield* Effect.gen(function*() {
          yield* Effect.withSpan(Effect.void, "first")
          yield* TestClock.adjust("1 second")
          yield* otlp.received("/v1/traces", 1)
          yield* Effect.withSpan(Effect.void, "second")
        }).pipe(Effect.provide(telemetry))
        // the run's end waited for the periodic export's answer: its connection was not closed under it
        expect(otlp.abandoned).toEqual([])
        expect(spans(otlp).map((span) => span.name)).toEqual(["first", "second"])
      }))
  )

  // live: the scrape endpoint is a real HTTP server, scraped while the run (real time, --speed 1) goes on
  it.live(
    "--metrics-port N: scraped during the run, its requests counted; closed when it ends",
    () =>
      Effect.gen(function*() {
        const port = yield* freePort
        const run = setup("gpt-4o", 16, 250)
        const fiber = yield* Effect.fork(run(["--concurrency", "2", "--metrics-port", String(port)]))
        const url = `http://127.0.0.1:${port}/metrics`
        const scrape = Effect.promise(() => fetch(url).then((r) => r.text(), () => undefined as string | undefined))
        const scrapes: Array<number> = []
        // every 100 ms while the run lasts (16 lines, 2 at a time, 250 ms each: about 2 s)
        while (scrapes.length < 2 || scrapes.at(-1)! < 16) {
          const text = yield* scrape
          if (text !== undefined) scrapes.push(okRequests(text, "gpt-4o"))
          if (fiber.unsafePoll() !== null) break
          yield* Effect.sleep("100 millis")
        }
        const result = yield* Fiber.join(fiber)
        expect(result.exit._tag, result.err).toBe("Success")
        // seen during the run: some requests done, never more than the lines, never going back
        expect(scrapes.some((n) => n > 0 && n < 16)).toBe(true)
        for (let i = 1; i < scrapes.length; i++) expect(scrapes[i]!).toBeGreaterThanOrEqual(scrapes[i - 1]!)
        expect(Math.max(...scrapes)).toBeLessThanOrEqual(16)
        // the endpoint lasts as long as the run
        expect(yield* scrape).toBeUndefined()
      }),
    30_000
  )
})
