/**
 * Sluice's metrics on a Prometheus scrape endpoint (no API key: the simulated OpenAI).
 *
 *   node scripts/run-ts.mjs examples/prometheus.ts        # then: curl http://localhost:9464/metrics
 *
 * The OpenTelemetry SDK's Prometheus exporter is the metric reader of `@effect/opentelemetry`'s `NodeSdk` layer:
 * every scrape reads Sluice's Effect Metrics as they are then. Names are OpenTelemetry's with dots turned into
 * underscores and counters ending in `_total` (`sluice.openai.requests` is `sluice_openai_requests_total`,
 * `gen_ai.client.operation.duration` is the histogram `gen_ai_client_operation_duration`), labels likewise
 * (`gen_ai_request_model`). The endpoint is served by a plain `node:http` server here, so an application can mount
 * the exporter's handler on a server of its own instead. The job is the OpenTelemetry example's
 * (`examples/opentelemetry.ts`); the endpoint stays up until Ctrl-C.
 */
import { NodeSdk } from "@effect/opentelemetry"
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus"
import { Simulator } from "@sluice/testing"
import { Console, Context, Effect, Layer } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { job, OpenAiOnSimulator, scenario } from "./opentelemetry.js"

/** Where the scrape endpoint listens. */
export class MetricsEndpoint extends Context.Tag("examples/MetricsEndpoint")<MetricsEndpoint, {
  readonly url: string
}>() {}

/**
 * Effect's metrics (Sluice's among them) served at `http://host:port/metrics` in Prometheus' text format, for as
 * long as the layer lives. Port 0 picks a free one (see `MetricsEndpoint`).
 */
export const PrometheusLive = (options: { readonly port?: number; readonly host?: string } = {}) =>
  Layer.unwrapScoped(
    Effect.gen(function*() {
      const exporter = new PrometheusExporter({ preventServerStart: true })
      const server = Http.createServer((request, response) => {
        if (request.url === "/metrics" || request.url?.startsWith("/metrics?")) {
          exporter.getMetricsRequestHandler(request, response)
        } else {
          response.statusCode = 404
          response.end()
        }
      })
      const host = options.host ?? "0.0.0.0"
      const address = yield* Effect.acquireRelease(
        Effect.async<AddressInfo>((resume) => {
          server.listen(options.port ?? 9464, host, () => resume(Effect.succeed(server.address() as AddressInfo)))
        }),
        () =>
          Effect.async<void>((resume) => {
            server.closeAllConnections()
            server.close(() => resume(Effect.void))
          })
      )
      const shown = host === "0.0.0.0" ? "localhost" : host
      return Layer.merge(
        Layer.succeed(MetricsEndpoint, { url: `http://${shown}:${address.port}/metrics` }),
        NodeSdk.layer(() => ({ resource: { serviceName: "sluice-example" }, metricReader: exporter }))
      )
    })
  )

const main = Effect.gen(function*() {
  const { url } = yield* MetricsEndpoint
  yield* Console.log(`metrics at ${url}; running the job`)
  const answers = yield* job(40).pipe(Effect.provide(OpenAiOnSimulator), Effect.provide(Simulator.layer(scenario)))
  yield* Console.log(`${answers.length} summaries done; the endpoint stays up (Ctrl-C to stop)`)
  yield* Effect.never
}).pipe(Effect.provide(PrometheusLive()))

if (process.argv[1]?.endsWith("prometheus.ts")) Effect.runPromise(main)
