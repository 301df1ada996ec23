/**
 * The throwaway server helper: a real redis-server process, real sockets, real time (`it.live`).
 */
import { describe, expect, it } from "@effect/vitest"
import * as RedisServer from "@sluice/redis/RedisServer"
import { Effect } from "effect"
import { Socket } from "node:net"

const answers = (port: number) =>
  Effect.async<boolean>((resume) => {
    const socket = new Socket()
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
    socket.connect(port, "127.0.0.1")
  })

describe("RedisServer", () => {
  // a real process and its port
  it.live("starts on a free port, stops, starts again on the same port, and is closed with its scope", () =>
    Effect.gen(function*() {
      const server = yield* Effect.scoped(
        Effect.gen(function*() {
          const server = yield* RedisServer.make()
          expect(server.url).toBe(`redis://127.0.0.1:${server.port}`)
          expect(yield* answers(server.port)).toBe(true)
          yield* Effect.promise(() => server.stop())
          expect(yield* answers(server.port)).toBe(false)
          yield* Effect.promise(() => server.start())
          expect(yield* answers(server.port)).toBe(true)
          return server
        })
      )
      expect(yield* answers(server.port)).toBe(false)
    }))

  // a real spawn of a binary that is not there
  it.live("a missing binary fails with RedisServerError saying so", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.scoped(RedisServer.make({ binary: "redis-server-not-installed" })))
      expect(error._tag).toBe("RedisServerError")
      expect(error.message).toContain("not found on the PATH")
    }))
})
