/**
 * A throwaway `redis-server` for tests, examples and benchmarks: started on a free loopback port with
 * a temporary directory and no persistence (`--save ""`, `--appendonly no`), stopped and started again
 * on the same port at will (an empty server each time, its scripts flushed), removed on `close`.
 *
 * It runs the `redis-server` binary on the `PATH` (Debian's `redis-server` package; the repository's
 * `scripts/ensure-redis.mjs` installs it). Imported from its own entry point,
 * `@sluice/redis/RedisServer`, so that the store never loads it.
 *
 * ```ts
 * import * as RedisServer from "@sluice/redis/RedisServer"
 *
 * const server = await RedisServer.start()
 * // ... RedisLimiterStore.layer({ url: server.url })
 * await server.close()
 * ```
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer, Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

/**
 * A running (or stopped) throwaway server.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisServer {
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** Stops the server (SIGTERM, then SIGKILL after 2 s). */
  readonly stop: () => Promise<void>
  /** Starts it again on the same port (after `stop`): an empty server, scripts flushed. */
  readonly start: () => Promise<void>
  /** Stops it and removes its temporary directory. */
  readonly close: () => Promise<void>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The port (default: a free one). */
  readonly port?: number | undefined
  /** The binary (default `"redis-server"`, looked up on the `PATH`). */
  readonly binary?: string | undefined
  /** How long to wait for the server to accept connections (default 10 seconds). */
  readonly startTimeoutMillis?: number | undefined
}

/**
 * The server could not be started.
 *
 * @since 0.1.0
 * @category errors
 */
export class RedisServerError
  extends Schema.TaggedError<RedisServerError>("@sluice/redis/RedisServerError")("RedisServerError", {
    message: Schema.String
  })
{}

/**
 * A free loopback port.
 *
 * @since 0.1.0
 * @category utils
 */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const canConnect = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = new Socket()
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => {
      socket.destroy()
      resolve(false)
    })
    socket.connect(port, "127.0.0.1")
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Starts a server and resolves once it accepts connections; rejects with {@link RedisServerError}
 * when the binary is missing, exits, or does not answer in time.
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = async (options: Options = {}): Promise<RedisServer> => {
  const port = options.port ?? (await freePort())
  const binary = options.binary ?? "redis-server"
  const startTimeout = options.startTimeoutMillis ?? 10_000
  const dir = mkdtempSync(join(tmpdir(), "sluice-redis-"))
  let child: ChildProcess | undefined

  const startOnce = async () => {
    let failure: string | undefined
    const current = spawn(
      binary,
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
      { stdio: "ignore" }
    )
    child = current
    current.once("error", (error: NodeJS.ErrnoException) => {
      failure = error.code === "ENOENT"
        ? `${binary} not found on the PATH (install Debian's redis-server package: node scripts/ensure-redis.mjs)`
        : `${binary} could not be started: ${error.message}`
    })
    const started = Date.now()
    while (!(await canConnect(port))) {
      if (failure === undefined && current.exitCode !== null) failure = `${binary} exited with ${current.exitCode}`
      if (failure === undefined && Date.now() - started > startTimeout) {
        current.kill("SIGKILL")
        failure = `${binary} did not accept connections on port ${port} within ${startTimeout} ms`
      }
      if (failure !== undefined) throw new RedisServerError({ message: failure })
      await sleep(20)
    }
  }

  const stop = async () => {
    const current = child
    child = undefined
    if (current === undefined || current.exitCode !== null || current.pid === undefined) return
    const exited = new Promise<void>((resolve) => current.once("exit", () => resolve()))
    current.kill("SIGTERM")
    const timer = setTimeout(() => current.kill("SIGKILL"), 2_000)
    await exited
    clearTimeout(timer)
  }

  const close = async () => {
    await stop()
    rmSync(dir, { recursive: true, force: true })
  }

  try {
    await startOnce()
  } catch (error) {
    await close()
    throw error
  }
  return { port, url: `redis://127.0.0.1:${port}`, start: startOnce, stop, close }
}

/**
 * {@link start} as a scoped resource: the server is closed with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<RedisServer, RedisServerError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => start(options),
      catch: (cause) => cause instanceof RedisServerError ? cause : new RedisServerError({ message: String(cause) })
    }),
    (server) => Effect.promise(() => server.close())
  )
