/**
 * Starts a throwaway `redis-server` on a free loopback port with a temporary directory, for tests,
 * benchmarks and examples. No persistence (`--save ""`, `--appendonly no`).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer, Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

export interface RedisServer {
  readonly port: number
  readonly url: string
  /** Stops the server (SIGTERM, then SIGKILL after 2 s). */
  readonly stop: () => Promise<void>
  /** Starts it again on the same port (after `stop`): an empty server, scripts flushed. */
  readonly start: () => Promise<void>
  /** Stops and removes the temporary directory. */
  readonly close: () => Promise<void>
}

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

export const startRedis = async (port?: number): Promise<RedisServer> => {
  const chosen = port ?? (await freePort())
  const dir = mkdtempSync(join(tmpdir(), "sluice-redis-"))
  let child: ChildProcess | undefined

  const start = async () => {
    child = spawn(
      "redis-server",
      ["--port", String(chosen), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
      { stdio: "ignore" }
    )
    const started = Date.now()
    while (!(await canConnect(chosen))) {
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`)
      if (Date.now() - started > 10_000) throw new Error("redis-server did not start within 10 s")
      await sleep(20)
    }
  }

  const stop = async () => {
    const current = child
    child = undefined
    if (current === undefined || current.exitCode !== null) return
    const exited = new Promise<void>((resolve) => current.once("exit", () => resolve()))
    current.kill("SIGTERM")
    const timer = setTimeout(() => current.kill("SIGKILL"), 2_000)
    await exited
    clearTimeout(timer)
  }

  await start()
  return {
    port: chosen,
    url: `redis://127.0.0.1:${chosen}`,
    start,
    stop,
    close: async () => {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
