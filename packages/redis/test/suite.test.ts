/**
 * The core limiter's behaviour suite, unchanged, on the Redis store, and the hold suite on its holds
 * (`RedisLimiterStore.makeWithHolds`). The store is in clock mode, so
 * TestClock drives its time (`it.effect`); the server and its sockets are real (started here). One case runs the
 * holds on the server's `TIME` (the default).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { LimiterStore } from "@sluice/core"
import { RedisLimiterStore } from "@sluice/redis"
import * as RedisServer from "@sluice/redis/RedisServer"
import { Effect, Layer } from "effect"
import { holdSuite } from "../../core/test/suite/holdSuite.js"
import { limiterBehaviourSuite } from "../../core/test/suite/limiterSuite.js"

let server: RedisServer.RedisServer
beforeAll(async () => {
  server = await RedisServer.start()
})
afterAll(async () => {
  await server?.close()
})

let builds = 0
// Every build (the suite uses Layer.fresh per test) gets its own key prefix: a clean slate on one server. The
// command timeout is long: the suite is about the limiter's behaviour, and on a loaded machine (load 30) a
// call slower than the default 250 ms failed a test now and then (fail-closed: the acquire failed).
const store = Layer.scoped(
  LimiterStore.LimiterStore,
  Effect.suspend(() =>
    RedisLimiterStore.make({
      url: server.url,
      keyPrefix: `suite${process.pid}x${builds++}`,
      time: "clock",
      commandTimeout: "5 seconds"
    })
  )
)

limiterBehaviourSuite("redis store, clock mode", store)

holdSuite(
  "RedisLimiterStore.makeWithHolds, clock mode",
  Effect.suspend(() =>
    Effect.map(
      RedisLimiterStore.makeWithHolds({
        url: server.url,
        keyPrefix: `holds${process.pid}x${builds++}`,
        time: "clock",
        commandTimeout: "5 seconds"
      }),
      (both) => both.holds
    )
  ),
  Effect.scoped
)

describe("RedisLimiterStore.makeWithHolds, server TIME (the default)", () => {
  // it.live: expiry is decided by the Redis server's clock in this mode, which a TestClock cannot move
  it.live("a hold lapses on the server's clock after its lease; a live one stays; a lapsed one cannot be renewed", () =>
    Effect.gen(function*() {
      const { holds } = yield* RedisLimiterStore.makeWithHolds({
        url: server.url,
        keyPrefix: `holds${process.pid}x${builds++}`,
        commandTimeout: "5 seconds"
      })
      const claims = [{ scope: "batch:m", capacity: 10 }]
      expect(yield* holds.take("long", claims, 6, 60_000)).toBe(true)
      expect(yield* holds.take("short", claims, 6, 200)).toBe(false)
      expect(yield* holds.take("short", claims, 4, 200)).toBe(true)
      yield* Effect.sleep("600 millis")
      expect(yield* holds.held("batch:m")).toBe(6)
      expect(yield* holds.renew("short", ["batch:m"], 60_000)).toBe(false)
      expect(yield* holds.renew("long", ["batch:m"], 60_000)).toBe(true)
      yield* holds.release("long", ["batch:m"])
      expect(yield* holds.held("batch:m")).toBe(0)
    }).pipe(Effect.scoped))
})
