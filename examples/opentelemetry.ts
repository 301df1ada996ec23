/**
 * Sluice's spans and metrics in OpenTelemetry, exported over OTLP/HTTP (no API key: the simulated OpenAI).
 *
 *   node scripts/run-ts.mjs examples/opentelemetry.ts
 *   OTEL_EXPORTER_OTLP_ENDPOINT=http://my-collector:4318 node scripts/run-ts.mjs examples/opentelemetry.ts
 *
 * Forty summaries on gpt-4o-mini go through the `OpenAi` service, which learns the limits from the response
 * headers (30,000 tokens a minute), then meets 429s: the simulated server, like OpenAI, enforces them over
 * 10-second windows too. The service learns that burst from the 429s, the rest wait their turn, and the 503s the
 * server throws now and then are retried. Every call is a span
 * (`chat gpt-4o-mini`, with OpenTelemetry's `gen_ai.*` attributes and Sluice's `sluice.*`), and the metrics
 * (`sluice.openai.*`, `gen_ai.client.*`, `sluice.limiter.*`) go to the same collector every 5 seconds and at the
 * end. `@effect/opentelemetry`'s `Otlp` layer needs no OpenTelemetry SDK; an application that already runs the
 * SDK uses `NodeSdk.layer` instead (see `test/opentelemetry.test.ts`, where the same job is exported to the SDK's
 * in-memory exporters).
 */
import * as Otlp from "@effect/opentelemetry/Otlp"
import { NodeHttpClient } from "@effect/platform-node"
import type { RateLimiter } from "@sluice/core"
import { LimiterStore } from "@sluice/core"
import { OpenAi } from "@sluice/openai"
import { Scenario, SimFetch, Simulator } from "@sluice/testing"
import { Config, Console, Effect, Layer } from "effect"
import OpenAI from "openai"

/**
 * The simulated server: gpt-4o-mini at 500 requests and 30,000 tokens a minute, enforced over 10-second windows
 * as OpenAI does (a whole minute's tokens at once are refused), 5% of calls overloaded (503).
 */
export const scenario = Scenario.single("gpt-4o-mini", { rpm: 500, tpm: 30_000 }, {
  seed: 7,
  enforcement: { subWindowMs: 10_000 },
  latency: { request: { _tag: "uniform", min: 200, max: 600 }, perOutputTokenMs: 1 },
  faults: { rates: { overloaded: 0.05 } }
})

/**
 * The `OpenAi` service on the simulator in context, with the limiter's gauges sampled every second
 * (`metrics.every`) so levels, utilisation and queue depth follow the run.
 */
export const OpenAiOnSimulator: Layer.Layer<OpenAi.OpenAi | RateLimiter.RateLimiter, never, Simulator.Simulator> = Layer
  .unwrapEffect(
    Effect.map(SimFetch.make, (fetch) =>
      OpenAi.layerClient(
        new OpenAI({ apiKey: "sk-example", baseURL: "http://sim.local/v1", fetch, maxRetries: 0 }),
        { metrics: { every: "1 second" } }
      ).pipe(Layer.provide(LimiterStore.layerMemory)))
  )

/** The job: `count` summaries at once (the limiter, not the caller, decides when each is sent). */
export const job = (count: number) =>
  Effect.flatMap(OpenAi.OpenAi, (openai) =>
    Effect.forEach(
      Array.from({ length: count }, (_, i) => i),
      (i) =>
        openai.chat.completions.create({
          model: "gpt-4o-mini",
          messages: [{
            role: "user",
            content: `[req:${i}] Summarise: ${"the quarterly figures rose in every region. ".repeat(10 + (i % 7) * 5)}`
          }],
          max_tokens: 200
        }),
      { concurrency: "unbounded" }
    ))

/** Traces and metrics (and logs) over OTLP/HTTP, as JSON, to `OTEL_EXPORTER_OTLP_ENDPOINT`. */
export const OtlpLive = Layer.unwrapEffect(
  Effect.map(
    Config.string("OTEL_EXPORTER_OTLP_ENDPOINT").pipe(Config.withDefault("http://localhost:4318")),
    (baseUrl) =>
      Otlp.layerJson({
        baseUrl,
        resource: { serviceName: "sluice-example" },
        metricsExportInterval: "5 seconds",
        tracerExportInterval: "1 second"
      })
  )
).pipe(Layer.provide(NodeHttpClient.layerUndici))

const main = job(40).pipe(
  Effect.tap((answers) => Console.log(`${answers.length} summaries; spans and metrics exported over OTLP`)),
  Effect.provide(OpenAiOnSimulator),
  Effect.provide(Simulator.layer(scenario)),
  Effect.provide(OtlpLive)
)

if (process.argv[1]?.endsWith("opentelemetry.ts")) Effect.runPromise(main)
