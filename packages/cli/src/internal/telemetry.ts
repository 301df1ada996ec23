/**
 * `sluice run --otlp URL` and `--metrics-port N`: the run's spans and metrics (`packages/openai`'s README, "Metrics
 * and spans") exported while it lasts, through `@effect/opentelemetry`, loaded only when one of the options is
 * given (optional peers of `@sluice/cli`):
 *
 * - `--otlp URL`: traces, metrics and logs over OTLP/HTTP (JSON) to `URL/v1/traces`, `/v1/metrics`, `/v1/logs`;
 *   needs `@effect/opentelemetry`. What is still buffered is sent when the run ends, and the exports still on the
 *   wire are awaited (`otlpExports.ts`), within 15 s.
 * - `--metrics-port N`: a Prometheus scrape endpoint at `http://127.0.0.1:N/metrics` (`--metrics-host` to listen
 *   elsewhere) while the run lasts; needs `@effect/opentelemetry`, `@opentelemetry/exporter-prometheus` and
 *   `@opentelemetry/sdk-metrics` (with `@opentelemetry/api`, `@opentelemetry/resources`).
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { shownUrl } from "./handler.js"

/** What the options ask for. */
export interface Options {
  readonly otlp: string | undefined
  readonly metricsPort: number | undefined
  readonly metricsHost: string
}

const load = <A>(name: string, option: string, load: () => Promise<A>): Effect.Effect<A, string> =>
  Effect.tryPromise({
    try: load,
    catch: (cause) =>
      `${option} needs ${name} (an optional peer of @sluice/cli): install it beside sluice (${
        cause instanceof Error ? cause.message.split("\n")[0] : String(cause)
      })`
  })

/** The OTLP exporter of `--otlp URL`. */
const otlp = (url: string): Effect.Effect<Layer.Layer<never>, string> =>
  Effect.gen(function*() {
    if (!/^https?:\/\/\S+$/.test(url)) {
      // the value itself is not repeated: `user:token@host` (no scheme) would print a credential
      const shown = shownUrl(url)
      return yield* Effect.fail(
        `--otlp needs an http(s) URL (e.g. http://localhost:4318)${shown === undefined ? "" : `, not ${shown}`}`
      )
    }
    const Otlp = yield* load("@effect/opentelemetry", "--otlp", () => import("@effect/opentelemetry/Otlp"))
    const { layerUndici } = yield* load(
      "@effect/platform-node",
      "--otlp",
      () => import("@effect/platform-node/NodeHttpClient")
    )
    const { awaitingExports } = yield* Effect.promise(() => import("./otlpExports.js"))
    // what is still buffered, or on the wire, is sent when the run ends: a loaded machine may need a while
    const shutdownTimeout = "15 seconds"
    return awaitingExports(
      Otlp.layerJson({
        baseUrl: url.replace(/\/+$/, ""),
        resource: { serviceName: "sluice" },
        metricsExportInterval: "5 seconds",
        tracerExportInterval: "1 second",
        shutdownTimeout
      }),
      shutdownTimeout
    ).pipe(Layer.provide(layerUndici))
  })

/** The Prometheus endpoint of `--metrics-port N`, listening before the run starts, closed when it ends. */
const prometheus = (port: number, host: string): Effect.Effect<Layer.Layer<never, string>, string> =>
  Effect.gen(function*() {
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      return yield* Effect.fail(`--metrics-port must be a port number (1-65535), got ${port}`)
    }
    const Metrics = yield* load(
      "@effect/opentelemetry",
      "--metrics-port",
      () => import("@effect/opentelemetry/Metrics")
    )
    const Resource = yield* load(
      "@effect/opentelemetry",
      "--metrics-port",
      () => import("@effect/opentelemetry/Resource")
    )
    const { PrometheusExporter } = yield* load(
      "@opentelemetry/exporter-prometheus",
      "--metrics-port",
      () => import("@opentelemetry/exporter-prometheus")
    )
    return Layer.unwrapScoped(
      Effect.map(
        Effect.acquireRelease(
          Effect.tryPromise({
            try: async () => {
              const exporter = new PrometheusExporter({ port, host, preventServerStart: true })
              await exporter.startServer()
              return exporter
            },
            catch: (cause) => `--metrics-port ${port}: cannot listen on ${host}:${port}: ${String(cause)}`
          }),
          (exporter) => Effect.promise(() => exporter.stopServer())
        ),
        (exporter) => Metrics.layer(() => exporter).pipe(Layer.provide(Resource.layer({ serviceName: "sluice" })))
      )
    )
  })

/** The exporters the options ask for (none: an empty layer, nothing loaded). */
export const layer = (options: Options): Effect.Effect<Layer.Layer<never, string>, string> =>
  Effect.gen(function*() {
    let layer: Layer.Layer<never, string> = Layer.empty
    if (options.otlp !== undefined) layer = Layer.merge(layer, yield* otlp(options.otlp))
    if (options.metricsPort !== undefined) {
      layer = Layer.merge(layer, yield* prometheus(options.metricsPort, options.metricsHost))
    }
    return layer
  })
