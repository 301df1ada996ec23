/**
 * The simulated OpenAI as an Effect service: one model of OpenAI's limiter, faults and endpoints, judged at
 * `Clock` time, shared by both faces (the in-process `fetch` in {@link SimFetch} and the HTTP server in
 * {@link SimServer}).
 *
 * @since 0.1.0
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Internal from "./internal/simulator.js"
import * as SimConfig from "./SimConfig.js"
import type * as SimStats from "./SimStats.js"

/**
 * A request as the simulator sees it: method, path without query, lowercased headers and the parsed body
 * (JSON; for a multipart file upload `{ purpose, file: { filename, content } }`).
 *
 * @since 0.1.0
 * @category models
 */
export interface SimRequest {
  readonly method: string
  /** Path without query, e.g. `/v1/chat/completions`. */
  readonly path: string
  /** Header names lowercased. */
  readonly headers: Readonly<Record<string, string>>
  /** Parsed JSON body; for a multipart upload `{ purpose, file: { filename, content } }`. */
  readonly body: unknown
}

/**
 * What to send back: a JSON (or raw) response, a server-sent-event stream whose chunks carry their own delays,
 * or a dropped connection (`Reset`, with `reason: "timeout"` for a connection that timed out with no answer).
 * `delayMs` is the time before the first byte (or before the connection drops).
 *
 * @since 0.1.0
 * @category models
 */
export type SimResponse =
  | {
    readonly _tag: "Response"
    readonly status: number
    readonly headers: Record<string, string>
    readonly body: string
    readonly delayMs: number
  }
  | {
    readonly _tag: "Stream"
    readonly status: number
    readonly headers: Record<string, string>
    readonly chunks: ReadonlyArray<SseChunk>
    readonly delayMs: number
  }
  | {
    readonly _tag: "Reset"
    readonly delayMs: number
    /**
     * Why the connection ends: `reset` (absent: the same) drops it; `timeout` is a connection that timed out with
     * no answer (in-process `fetch` rejects like undici's headers timeout; over HTTP the socket is destroyed).
     */
    readonly reason?: "reset" | "timeout" | undefined
  }

/**
 * One server-sent event chunk of a stream and the delay before it.
 *
 * @since 0.1.0
 * @category models
 */
export interface SseChunk {
  readonly delayMs: number
  readonly data: string
}

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace Simulator {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Service {
    readonly scenario: SimConfig.Scenario
    /** Judges a request at the current `Clock` time without waiting. */
    readonly judge: (request: SimRequest) => Effect.Effect<SimResponse>
    /** Judges a request, then sleeps (on `Clock`) for the response's `delayMs`. */
    readonly handle: (request: SimRequest) => Effect.Effect<SimResponse>
    /** A snapshot of everything seen so far. */
    readonly stats: Effect.Effect<SimStats.Snapshot>
    /** Simulated milliseconds since the simulator started. */
    readonly elapsed: Effect.Effect<number>
  }
}

/**
 * The simulator service.
 *
 * @since 0.1.0
 * @category tags
 */
export class Simulator extends Context.Tag("@sluice/testing/Simulator")<Simulator, Simulator.Service>() {}

/**
 * Builds a simulator for a scenario. Its clock starts now (`Clock.currentTimeMillis`); incidents are relative to
 * that start.
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { Scenario, Simulator } from "@sluice/testing"
 *
 * const program = Effect.gen(function*() {
 *   const sim = yield* Simulator.make(Scenario.tier1())
 *   const response = yield* sim.handle({
 *     method: "POST",
 *     path: "/v1/chat/completions",
 *     headers: { authorization: "Bearer sk-test" },
 *     body: { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], max_tokens: 16 }
 *   })
 * })
 * ```
 */
export const make = (scenario: SimConfig.Scenario): Effect.Effect<Simulator.Service> =>
  Effect.gen(function*() {
    const startedAt = yield* Clock.currentTimeMillis
    const model = new Internal.Model(scenario, startedAt)
    const judge = (request: SimRequest) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => model.handle(request, now)))
    return {
      scenario,
      judge,
      // judged and slept on the fiber's clock in one step (what `judge` then `Effect.sleep` do, with fewer effects:
      // a simulated day makes one call per request)
      handle: (request) =>
        Effect.clockWith((clock) => {
          const response = model.handle(request, clock.unsafeCurrentTimeMillis())
          return response.delayMs > 0
            ? Effect.as(clock.sleep(Duration.millis(response.delayMs)), response)
            : Effect.succeed(response)
        }),
      stats: Effect.sync(() => model.snapshot()),
      elapsed: Effect.map(Clock.currentTimeMillis, (now) => now - startedAt)
    }
  })

/**
 * A layer providing a {@link Simulator} for a scenario.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (scenario: SimConfig.Scenario): Layer.Layer<Simulator> => Layer.effect(Simulator, make(scenario))

/**
 * A layer providing a {@link Simulator} for a JSON scenario file (decoded with Schema; a bad file fails with
 * the path of the bad field).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFile = (
  path: string
): Layer.Layer<Simulator, SimConfig.ScenarioError, FileSystem.FileSystem> =>
  Layer.effect(Simulator, Effect.flatMap(SimConfig.load(path), make))

/**
 * A layer providing a {@link Simulator} from a scenario file whose path comes from `Config`, e.g.
 * `Simulator.layerConfig(Config.string("SLUICE_SIM_SCENARIO"))`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  path: Config.Config<string>
): Layer.Layer<Simulator, SimConfig.ScenarioError | ConfigError.ConfigError, FileSystem.FileSystem> =>
  Layer.effect(Simulator, Effect.flatMap(Effect.flatMap(path, SimConfig.load), make))

/**
 * The token estimate the simulator charges for a text at admission: `ceil(chars / 4)`, the character-count rule
 * OpenAI documents. Deterministic; no tokenizer.
 *
 * @since 0.1.0
 * @category utils
 */
export const estimateTokens: (text: string) => number = Internal.estimateTokens

/**
 * A snapshot of the simulator's statistics.
 *
 * @since 0.1.0
 * @category accessors
 */
export const stats: Effect.Effect<SimStats.Snapshot, never, Simulator> = Effect.flatMap(Simulator, (s) => s.stats)

/**
 * The virtual (or, served live, real) milliseconds since the simulator started: how long a run took.
 *
 * @since 0.1.0
 * @category accessors
 */
export const elapsed: Effect.Effect<number, never, Simulator> = Effect.flatMap(Simulator, (s) => s.elapsed)
