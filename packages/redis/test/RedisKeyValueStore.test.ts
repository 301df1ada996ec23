/**
 * The `KeyValueStore` on a real redis-server (started here): its operations, its prefix, its ttl, and the
 * response cache's behaviour suite on it (the same suite as on memory and disk, `packages/openai/test`).
 */
import * as KeyValueStore from "@effect/platform/KeyValueStore"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { RedisKeyValueStore } from "@sluice/redis"
import * as RedisServer from "@sluice/redis/RedisServer"
import { Effect, Exit, Layer, Option } from "effect"
import * as net from "node:net"
import { cacheSuite } from "../../openai/test/cacheSuite.js"

let server: RedisServer.RedisServer
beforeAll(async () => {
  server = await RedisServer.start()
})
afterAll(async () => {
  await server?.close()
})

let builds = 0
/** A store on its own prefix: a clean slate on one server. */
const store = (options: Omit<RedisKeyValueStore.RedisKeyValueStore.Options, "url"> = {}) =>
  Layer.unwrapEffect(
    Effect.sync(() =>
      RedisKeyValueStore.layer({ url: server.url, keyPrefix: `kv${process.pid}x${builds++}:`, ...options })
    )
  )

const withStore = <A, E>(
  body: (kv: KeyValueStore.KeyValueStore) => Effect.Effect<A, E>,
  options?: Omit<RedisKeyValueStore.RedisKeyValueStore.Options, "url">
) => Effect.flatMap(KeyValueStore.KeyValueStore, body).pipe(Effect.provide(store(options)))

describe("RedisKeyValueStore", () => {
  // a real server: real sockets and, for the ttl, Redis's own clock
  it.live("get, set, has, remove, size and clear, strings and bytes, within its prefix only", () =>
    Effect.gen(function*() {
      yield* withStore((kv) => kv.set("mine", "other's"), { keyPrefix: "other:" })
      yield* withStore((kv) =>
        Effect.gen(function*() {
          expect(yield* kv.get("a")).toEqual(Option.none())
          yield* kv.set("a", "héllo ✓")
          yield* kv.set("b*[x]", new Uint8Array([0, 1, 255]))
          expect(yield* kv.get("a")).toEqual(Option.some("héllo ✓"))
          expect(yield* kv.getUint8Array("b*[x]")).toEqual(Option.some(new Uint8Array([0, 1, 255])))
          expect(yield* kv.has("a")).toBe(true)
          expect(yield* kv.size).toBe(2)
          yield* kv.remove("a")
          expect(yield* kv.has("a")).toBe(false)
          yield* kv.clear
          expect(yield* kv.size).toBe(0)
        })
      )
      // another prefix's keys are untouched by clear
      yield* withStore((kv) => Effect.map(kv.get("mine"), (v) => expect(v).toEqual(Option.some("other's"))), {
        keyPrefix: "other:"
      })
    }))

  // live: Redis expires keys on its own clock, which TestClock does not move
  it.live("with a ttl, Redis expires the keys it is given", () =>
    withStore((kv) =>
      Effect.gen(function*() {
        yield* kv.set("short", "x")
        expect(yield* kv.has("short")).toBe(true)
        yield* Effect.sleep("120 millis") // Redis's clock, not the Effect Clock: a real wait
        expect(yield* kv.has("short")).toBe(false)
      }), { ttl: "50 millis" }))

  it.live("an unreachable server fails each operation with a SystemError", () =>
    Effect.flatMap(KeyValueStore.KeyValueStore, (kv) =>
      Effect.map(Effect.flip(kv.get("a")), (error) => {
        expect(error._tag).toBe("SystemError")
        expect(error.message).toContain("KeyValueStore")
      })).pipe(Effect.provide(RedisKeyValueStore.layer({ url: "redis://127.0.0.1:1" }))))
})

cacheSuite("redis", () => store())

describe("RedisKeyValueStore: a stalled server", () => {
  // a socket that accepts and never answers: without a command timeout, ioredis waits for ever
  it.live("a client made from a url fails a command the server does not answer, after commandTimeout", () => {
    const sockets = new Set<net.Socket>()
    return Effect.acquireUseRelease(
      Effect.async<net.Server>((resume) => {
        const silent = net.createServer((socket) => {
          sockets.add(socket)
        })
        silent.listen(0, "127.0.0.1", () => resume(Effect.succeed(silent)))
      }),
      (silent) =>
        Effect.gen(function*() {
          const port = (silent.address() as net.AddressInfo).port
          const exit = yield* Effect.exit(
            Effect.flatMap(KeyValueStore.KeyValueStore, (kv) => kv.get("k")).pipe(
              Effect.provide(RedisKeyValueStore.layer({
                url: `redis://127.0.0.1:${port}`,
                commandTimeout: "50 millis",
                connectTimeout: "50 millis"
              }))
            )
          )
          expect(Exit.isFailure(exit)).toBe(true)
        }),
      (silent) =>
        Effect.async<void>((resume) => {
          for (const socket of sockets) socket.destroy()
          silent.close(() => resume(Effect.void))
        })
    )
  }, 10_000)
})
