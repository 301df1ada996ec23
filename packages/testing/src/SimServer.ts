/**
 * The HTTP face: the same {@link Simulator} served over HTTP with `@effect/platform` (Node), loopback by default.
 * Point any client at the returned `url` (`http://127.0.0.1:PORT/v1`). A connection-reset fault (and a `timeout`
 * fault ending in `connection_timeout` or `connection_reset`) destroys the socket; latency, slow responses, timeouts
 * and stream pacing wait on the `Clock` (real time when served live), so a client's own timeout (the SDK's
 * `timeout` option) fires during a hang; a client that gives up closes the connection, which interrupts the wait.
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as Headers from "@effect/platform/Headers"
import type * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Http from "node:http"
// by the package's own name, so that the built `@sluice/testing/node` shares the main entry point's classes
import { SimStats, Simulator } from "@sluice/testing"

/**
 * Where the server listens.
 *
 * @since 0.1.0
 * @category models
 */
export interface Address {
  readonly host: string
  readonly port: number
  /** The base URL for an OpenAI client, e.g. `http://127.0.0.1:4010/v1`. */
  readonly url: string
}

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace SimServer {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Options {
    /** Port; 0 (the default) picks a free one. */
    readonly port?: number | undefined
    /** Interface; `127.0.0.1` (loopback) by default. */
    readonly host?: string | undefined
  }
}

/**
 * The running server's address, as a service.
 *
 * @since 0.1.0
 * @category tags
 */
export class SimServer extends Context.Tag("@sluice/testing/SimServer")<SimServer, Address>() {}

const readBody = (request: HttpServerRequest.HttpServerRequest, contentType: string) =>
  Effect.gen(function*() {
    if (request.method === "GET" || request.method === "HEAD") return undefined
    if (contentType.startsWith("multipart/form-data")) {
      const buffer = yield* request.arrayBuffer
      const form = yield* Effect.promise(() =>
        new Response(buffer, { headers: { "content-type": contentType } }).formData()
      )
      const fields: Record<string, unknown> = {}
      for (const [name, value] of form.entries()) {
        fields[name] = typeof value === "string"
          ? value
          : { filename: (value as File).name, content: yield* Effect.promise(() => (value as File).text()) }
      }
      return fields
    }
    const text = yield* request.text
    if (text === "") return undefined
    try {
      return JSON.parse(text) as unknown
    } catch {
      return text
    }
  })

/**
 * Where the server answers with the run's {@link SimStats.Summary} as JSON (`GET`): requests by status and
 * code, 429s by kind, the peak rolling rate per limit.
 *
 * @since 0.1.0
 * @category constants
 */
export const STATS_PATH = "/_sluice/stats"

/**
 * The simulator as an `HttpApp`, for mounting in your own server. `GET /_sluice/stats` answers with the run's
 * summary ({@link STATS_PATH}).
 *
 * @since 0.1.0
 * @category handlers
 */
export const app: Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  HttpServerError.RequestError,
  HttpServerRequest.HttpServerRequest | Simulator.Simulator
> = Effect.gen(function*() {
  const sim = yield* Simulator.Simulator
  const request = yield* HttpServerRequest.HttpServerRequest
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(request.headers)) headers[name.toLowerCase()] = value
  const path = new URL(request.url, "http://sim.local").pathname
  if (path === STATS_PATH && request.method === "GET") {
    return yield* HttpServerResponse.json(SimStats.summary(yield* sim.stats, sim.scenario)).pipe(Effect.orDie)
  }
  const body = yield* readBody(request, headers["content-type"] ?? "")
  const response = yield* sim.handle({ method: request.method, path, headers, body })
  switch (response._tag) {
    case "Reset": {
      NodeHttpServerRequest.toIncomingMessage(request).socket.destroy()
      return HttpServerResponse.empty({ status: 500 })
    }
    case "Response": {
      const { "content-type": contentType, ...rest } = response.headers
      return HttpServerResponse.text(response.body, {
        status: response.status,
        headers: Headers.fromInput(rest),
        contentType: contentType ?? "application/json"
      })
    }
    case "Stream": {
      const { "content-type": contentType, ...rest } = response.headers
      const encoder = new TextEncoder()
      const stream = Stream.fromIterable(response.chunks).pipe(
        Stream.mapEffect((chunk) =>
          Effect.as(chunk.delayMs > 0 ? Effect.sleep(chunk.delayMs) : Effect.void, encoder.encode(chunk.data))
        )
      )
      return HttpServerResponse.stream(stream, {
        status: response.status,
        headers: Headers.fromInput(rest),
        contentType: contentType ?? "text/event-stream"
      })
    }
  }
})

/**
 * Serves the simulator in context until the scope closes; returns the bound address.
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { Scenario, Simulator } from "@sluice/testing"
 * import { SimServer } from "@sluice/testing/node"
 *
 * const program = Effect.gen(function*() {
 *   const { url } = yield* SimServer.serve({ port: 4010 })
 *   yield* Effect.log(`simulated OpenAI at ${url}`)
 *   yield* Effect.never
 * }).pipe(Effect.scoped, Effect.provide(Simulator.layer(Scenario.tier1())))
 * ```
 */
export const serve = (
  options: SimServer.Options = {}
): Effect.Effect<Address, HttpServerError.ServeError, Scope.Scope | Simulator.Simulator> =>
  Effect.gen(function*() {
    const host = options.host ?? "127.0.0.1"
    // Idle keep-alive sockets stay open for two minutes, as behind OpenAI's load balancers: Node's default of
    // five seconds races a client reusing the socket ("other side closed") on a busy machine.
    const server = yield* NodeHttpServer.make(() => {
      const http = Http.createServer()
      http.keepAliveTimeout = 120_000
      http.headersTimeout = 125_000
      return http
    }, { port: options.port ?? 0, host })
    yield* server.serve(Effect.catchAll(app, (error) => HttpServerResponse.text(String(error), { status: 400 })))
    const port = server.address._tag === "TcpAddress" ? server.address.port : 0
    const shown = host.includes(":") ? `[${host}]` : host
    return { host, port, url: `http://${shown}:${port}/v1` }
  })

/**
 * A layer that serves the simulator in context and provides its {@link Address}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: SimServer.Options = {}
): Layer.Layer<SimServer, HttpServerError.ServeError, Simulator.Simulator> => Layer.scoped(SimServer, serve(options))
