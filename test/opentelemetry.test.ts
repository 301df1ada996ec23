/**
 * OpenTelemetry as a user wires it: the example's job (`examples/opentelemetry.ts`) run in virtual time against
 * the in-process simulator, with `@effect/opentelemetry`'s `NodeSdk` layer and the OpenTelemetry SDK's in-memory
 * exporters. The spans and metrics must tell the run as the simulator saw it: one span per call with the GenAI
 * attributes, attempts and retries that add up to the requests the server answered, 429s counted by kind,
 * tokens used equal to the answers' usage, and the limiter's gauges for the pool.
 */
import { NodeSdk } from "@effect/opentelemetry"
import { describe, expect, it } from "@effect/vitest"
import type { DataPoint, Histogram, MetricData } from "@opentelemetry/sdk-metrics"
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  PeriodicExportingMetricReader
} from "@opentelemetry/sdk-metrics"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { OpenAi } from "@sluice/openai"
import { Simulator, VirtualTime } from "@sluice/testing"
import { Chunk, Effect, Stream } from "effect"
import { job, OpenAiOnSimulator, scenario } from "../examples/opentelemetry.js"

const RUN = "sluice.test.run"

describe("OpenTelemetry (in-memory exporters)", () => {
  const spans = new InMemorySpanExporter()
  const metrics = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  // exports when flushed (in the test); the interval is never reached
  const reader = new PeriodicExportingMetricReader({ exporter: metrics, exportIntervalMillis: 3_600_000 })
  const Otel = NodeSdk.layer(() => ({
    resource: { serviceName: "sluice-test" },
    spanProcessor: new SimpleSpanProcessor(spans),
    metricReader: reader
  }))

  it.effect("spans and metrics of a simulated run", () =>
    Effect.gen(function*() {
      // this run's series carry a label of their own (metrics are global to the process)
      const run = `otel-${Math.random().toString(36).slice(2)}`
      const answers = yield* VirtualTime.run(job(40)).pipe(
        Effect.provide(OpenAiOnSimulator),
        Effect.tagMetrics(RUN, run)
      )
      expect(answers).toHaveLength(40)
      const sim = yield* Simulator.stats
      yield* Effect.promise(() => reader.forceFlush())

      // --- spans: one per call, GenAI attributes and Sluice's ---------------------------------------------
      const finished = spans.getFinishedSpans().filter((span) => span.name === "chat gpt-4o-mini")
      expect(finished).toHaveLength(40)
      let attempts = 0
      let input = 0
      let output = 0
      for (const span of finished) {
        const a = span.attributes
        expect(span.kind).toBe(2) // SpanKind.CLIENT
        expect(a["gen_ai.operation.name"]).toBe("chat")
        expect(a["openai.api.type"]).toBe("chat_completions")
        expect(a["gen_ai.provider.name"]).toBe("openai")
        expect(a["gen_ai.request.model"]).toBe("gpt-4o-mini")
        expect(typeof a["gen_ai.response.model"]).toBe("string")
        expect(a["gen_ai.usage.input_tokens"]).toBeGreaterThan(0)
        expect(a["gen_ai.usage.output_tokens"]).toBeGreaterThan(0)
        // a list attribute reaches OpenTelemetry as JSON (@effect/opentelemetry's conversion)
        expect(JSON.parse(a["sluice.scopes"] as string)).toEqual(["org:default", "org:default/pool:gpt-4o-mini"])
        expect(JSON.parse(a["gen_ai.response.finish_reasons"] as string)).toEqual(["stop"])
        expect(a["sluice.decision"]).toBe((a["sluice.attempts"] as number) > 1 ? "retried" : "ok")
        expect(a["sluice.wait.duration"]).toBeGreaterThanOrEqual(0)
        attempts += a["sluice.attempts"] as number
        input += a["gen_ai.usage.input_tokens"] as number
        output += a["gen_ai.usage.output_tokens"] as number
      }
      // every attempt reached the server: the spans' attempts are the requests it answered
      expect(attempts).toBe(sim.attempts.length)
      const rejected429 = sim.attempts.filter((a) => a.status === 429).length
      const overloaded = sim.attempts.filter((a) => a.status === 503).length
      // the run met both kinds of trouble (the scenario is seeded: this is the same on every run)
      expect(rejected429).toBeGreaterThan(0)
      expect(overloaded).toBeGreaterThan(0)
      // some calls waited in the limiter, in virtual seconds
      expect(finished.some((span) => (span.attributes["sluice.wait.duration"] as number) > 1)).toBe(true)

      // --- metrics --------------------------------------------------------------------------------------
      const all = metrics.getMetrics().flatMap((resource) => resource.scopeMetrics.flatMap((scope) => scope.metrics))
      const named = (name: string): MetricData => {
        const found = all.filter((metric) => metric.descriptor.name === name)
        expect(found, name).toHaveLength(1)
        return found[0]
      }
      const points = (name: string) =>
        (named(name).dataPoints as Array<DataPoint<unknown>>).filter((point) => point.attributes[RUN] === run)
      const total = (name: string, where: Record<string, string> = {}) =>
        points(name)
          .filter((point) => Object.entries(where).every(([key, value]) => point.attributes[key] === value))
          .reduce((sum, point) => sum + (point.value as number), 0)

      expect(total("sluice.openai.requests")).toBe(sim.attempts.length)
      expect(total("sluice.openai.requests", { outcome: "ok" })).toBe(40)
      expect(total("sluice.openai.requests", { outcome: "RateLimited" })).toBe(rejected429)
      expect(total("sluice.openai.requests", { outcome: "Overloaded" })).toBe(overloaded)
      expect(total("sluice.openai.rate_limited")).toBe(rejected429)
      expect(total("sluice.openai.rate_limited", { kind: "tokens_per_minute" })).toBe(rejected429)
      expect(total("sluice.openai.retries")).toBe(sim.attempts.length - 40)
      expect(total("sluice.openai.retries", { "error.type": "Overloaded" })).toBe(overloaded)
      expect(total("sluice.openai.admissions")).toBe(sim.attempts.length)
      expect(total("sluice.openai.admissions", { waited: "true" })).toBeGreaterThan(0)
      expect(total("sluice.openai.tokens.used")).toBe(input + output)
      expect(total("sluice.openai.tokens.reserved")).toBeGreaterThan(total("sluice.openai.tokens.used"))

      // GenAI conventions: seconds and tokens, one duration per call, an input and an output count per call
      const duration = named("gen_ai.client.operation.duration")
      expect(duration.descriptor.unit).toBe("s")
      const durations = points("gen_ai.client.operation.duration") as Array<DataPoint<Histogram>>
      expect(durations.reduce((n, point) => n + point.value.count, 0)).toBe(40)
      for (const point of durations) {
        expect(point.attributes["gen_ai.provider.name"]).toBe("openai")
        expect(point.attributes["gen_ai.request.model"]).toBe("gpt-4o-mini")
      }
      const usage = points("gen_ai.client.token.usage") as Array<DataPoint<Histogram>>
      expect(named("gen_ai.client.token.usage").descriptor.unit).toBe("{token}")
      const sumOf = (type: string) =>
        usage.filter((point) => point.attributes["gen_ai.token.type"] === type)
          .reduce((n, point) => n + (point.value.sum ?? 0), 0)
      expect(sumOf("input")).toBe(input)
      expect(sumOf("output")).toBe(output)
      const waits = points("sluice.openai.wait.duration") as Array<DataPoint<Histogram>>
      expect(named("sluice.openai.wait.duration").descriptor.unit).toBe("s")
      expect(waits.reduce((n, point) => n + point.value.count, 0)).toBe(sim.attempts.length)

      // the limiter: waits in seconds, and the pool's buckets sampled while the service lived
      expect(named("sluice.limiter.wait.duration").descriptor.unit).toBe("s")
      const pool = (name: string) =>
        points(name).filter((point) => point.attributes.scope === "org:default/pool:gpt-4o-mini")
      const limits = pool("sluice.limiter.limit")
      expect(limits.map((point) => point.attributes.dimension).sort()).toContain("tokens")
      // the bucket learned: the headers' 30,000 tokens a minute, held to the 10-second burst the 429s taught
      // (30,000 × 10 / 60)
      expect(
        limits.find((point) => point.attributes.dimension === "tokens" && point.attributes.window === "1m")?.value
      ).toBe(5_000)
      for (const point of pool("sluice.limiter.utilization")) expect(point.value).toBeGreaterThanOrEqual(0)
      expect(points("sluice.limiter.queue.depth").map((point) => point.attributes.lane).sort()).toEqual([
        "background",
        "interactive"
      ])
    }).pipe(Effect.provide(Simulator.layer(scenario)), Effect.provide(Otel)))

  // an exporter of its own: the first test's layer shut its exporter down
  const streamSpans = new InMemorySpanExporter()

  it.effect("a streamed call's span lasts until its stream ends, with the usage of its last chunk", () =>
    Effect.gen(function*() {
      const chunks = yield* VirtualTime.run(
        Effect.flatMap(OpenAi.OpenAi, (openai) =>
          Effect.zipLeft(
            Stream.runCollect(openai.chat.completions.stream({
              model: "gpt-4o-mini",
              messages: [{ role: "user", content: "[req:stream] Tell a short story." }],
              max_tokens: 120
            })),
            openai.responses.create({ model: "gpt-4o-mini", input: "[req:responses] Hello.", max_output_tokens: 16 })
          ))
      ).pipe(Effect.provide(OpenAiOnSimulator))
      expect(Chunk.size(chunks)).toBeGreaterThan(1)
      const [span, responses] = streamSpans.getFinishedSpans().filter((span) => span.name === "chat gpt-4o-mini")
      // a Responses call is operation `chat` too; `openai.api.type` tells them apart
      expect(span.attributes["openai.api.type"]).toBe("chat_completions")
      expect(responses.attributes["openai.api.type"]).toBe("responses")
      expect(span.attributes["gen_ai.provider.name"]).toBe("openai")
      expect(span.attributes["sluice.decision"]).toBe("ok")
      expect(span.attributes["gen_ai.usage.output_tokens"]).toBeGreaterThan(0)
      expect(span.attributes["gen_ai.usage.input_tokens"]).toBeGreaterThan(0)
      // from asking to the last chunk, in virtual time: the simulator's latency and its output
      const seconds = span.duration[0] + span.duration[1] / 1e9
      expect(seconds).toBeGreaterThan(0.2)
    }).pipe(
      Effect.provide(Simulator.layer(scenario)),
      // traces only: a metric reader binds to one provider, the first test's
      Effect.provide(NodeSdk.layer(() => ({
        resource: { serviceName: "sluice-test" },
        spanProcessor: new SimpleSpanProcessor(streamSpans)
      })))
    ))
})
