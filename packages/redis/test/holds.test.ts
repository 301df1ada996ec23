/**
 * The Redis `HoldStore` (`RedisLimiterStore.makeWithHolds`) under the shared hold suite: the store is in clock
 * mode, so the TestClock drives the time its script sees (`it.effect`); the server and its sockets are real.
 */
import { afterAll, beforeAll } from "@effect/vitest"
import { RedisLimiterStore } from "@sluice/redis"
import * as RedisServer from "@sluice/redis/RedisServer"
import { Effect } from "effect"
import { holdSuite } from "../../core/test/suite/holdSuite.js"

let server: RedisServer.RedisServer
beforeAll(async () => {
  server = await RedisServer.start()
})
afterAll(async () => {
  await server?.close()
})

let builds = 0
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
