/**
 * `--otlp URL`'s exporters (`telemetry.ts`) closed without losing an export on the wire: loaded with them.
 *
 * `@effect/opentelemetry`'s exporter (0.64, `internal/otlpExporter.js`) ends in reverse order of its scope's
 * finalizers: it interrupts its fibers (the periodic export, the exports a full batch started) before its last flush.
 * An export on the wire when the run ends was aborted there, and its spans or logs, already taken out of the buffer,
 * were lost (`sluice run --otlp` on a loaded machine: the 1-second export of the run's last spans still waiting
 * for its answer). Here each request of the exporters runs in a fiber of this layer, the exporter only waits for
 * it: interrupted, it stops waiting and the request goes on. When the run ends the exporters close first (their
 * last flush), then the requests still on the wire are awaited; the two together within `timeout`, after which
 * what is left is interrupted.
 *
 * @internal
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"

/** `exporters`, their requests outliving the fibers that started them until the layer closes (see above). */
export const awaitingExports = <E>(
  exporters: Layer.Layer<never, E, HttpClient.HttpClient>,
  timeout: Duration.DurationInput
): Layer.Layer<never, E, HttpClient.HttpClient> =>
  Layer.scopedContext(Effect.gen(function*() {
    // closed last: interrupts the requests still running after the wait below
    const requests = yield* FiberSet.make<HttpClientResponse.HttpClientResponse, HttpClientError.HttpClientError>()
    const client = HttpClient.transformResponse(yield* HttpClient.HttpClient, (response) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(FiberSet.run(requests, Effect.interruptible(response)), (request) =>
          restore(Fiber.join(request)))
      ))
    const exportersScope = yield* Scope.make()
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        const start = yield* Clock.currentTimeMillis
        yield* Scope.close(exportersScope, Exit.void)
        const left = Duration.toMillis(timeout) - ((yield* Clock.currentTimeMillis) - start)
        yield* Effect.timeoutOption(FiberSet.awaitEmpty(requests), Math.max(0, left))
      })
    )
    return yield* Layer.buildWithScope(exporters, exportersScope).pipe(
      Effect.provideService(HttpClient.HttpClient, client)
    )
  }))
