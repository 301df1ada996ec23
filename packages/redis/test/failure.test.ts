/**
 * What the store does when Redis is down or slow, and that it recovers. A real redis-server that this
 * file stops and restarts, and real timeouts: `it.live`, each test bounded to a few seconds.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import type { LimiterStore } from "@sluice/core"
import { RedisLimiterStore } from "@sluice/redis"
import * as RedisServer from "@sluice/redis/RedisServer"
import { Duration, Effect, Metric } from "effect"
import { Redis } from "ioredis"

let server: RedisServer.RedisServer
beforeAll(async () => {
  server = await RedisServer.start()
})
afterAll(async () => {
  await server?.close()
})

let prefixes = 0
const freshPrefix = () => `f${process.pid}x${prefixes++}`
const bucket: LimiterStore.BucketSpec = {
  id: "org:acme|requests",
  scope: "org:acme",
  dimension: "requests",
  windowMillis: 60_000,
  capacity: 10,
  refillPerMs: 10 / 60_000
}
const one = [{ bucket, amount: 1 }]

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(
    Effect.timed(Effect.either(effect)),
    ([duration, result]) => ({ millis: Duration.toMillis(duration), result })
  )

/**
 * Polls until Redis answers again (ioredis reconnects on its own): the restarted server is empty, so
 * the bucket reads full. At most 5 s.
 */
const untilRecovered = (store: LimiterStore.Service) =>
  Effect.gen(function*() {
    const started = Date.now()
    while (true) {
      const read = yield* Effect.either(store.levels([bucket], []))
      if (read._tag === "Right" && read.right.levels[0] === 10) return read.right
      if (Date.now() - started > 5_000) return yield* Effect.die(new Error("Redis store did not recover in 5 s"))
      yield* Effect.sleep("50 millis")
    }
  })

const withDownServer = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.promise(() => server.stop()),
    () => effect,
    () => Effect.promise(() => server.start())
  )

describe("RedisLimiterStore when Redis is unavailable", () => {
  // real server stopped and restarted: real time
  it.live("fail-closed: a typed LimiterStoreError at once, counted; recovery when Redis returns", () =>
    Effect.gen(function*() {
      const store = yield* RedisLimiterStore.make({ url: server.url, keyPrefix: freshPrefix() })
      expect((yield* store.tryAcquire(one, []))._tag).toBe("Admitted")
      const before = (yield* Metric.value(Metric.tagged(RedisLimiterStore.errors, "operation", "tryAcquire"))).count
      yield* withDownServer(Effect.gen(function*() {
        const { millis, result } = yield* timed(store.tryAcquire(one, []))
        expect(result._tag).toBe("Left")
        if (result._tag === "Left") {
          expect(result.left._tag).toBe("LimiterStoreError")
          expect(result.left.operation).toBe("tryAcquire")
          // at once: the connection refused the call, the store did not wait for its command timeout
          expect(result.left.message).not.toContain("no answer within")
        }
        expect(millis).toBeLessThan(2_000) // and, loaded machine or not, never a hang
        const blocked = yield* Effect.either(store.block({ scope: "org:acme", dimension: "*" }, 1000))
        expect(blocked._tag).toBe("Left")
      }))
      const after = (yield* Metric.value(Metric.tagged(RedisLimiterStore.errors, "operation", "tryAcquire"))).count
      expect(after).toBeGreaterThan(before)
      // the restarted server is empty (scripts flushed): EVAL on NOSCRIPT, and the bucket starts full
      const read = yield* untilRecovered(store)
      expect(read.levels[0]).toBe(10)
      expect((yield* store.tryAcquire(one, []))._tag).toBe("Admitted")
    }).pipe(Effect.scoped))

  // real server stopped and restarted: real time
  it.live("fail-open: admits and drops writes while Redis is down, counted", () =>
    Effect.gen(function*() {
      const store = yield* RedisLimiterStore.make({
        url: server.url,
        keyPrefix: freshPrefix(),
        onUnavailable: "fail-open"
      })
      const fallbacks = Metric.tagged(
        Metric.tagged(RedisLimiterStore.fallbacks, "operation", "tryAcquire"),
        "mode",
        "fail-open"
      )
      const before = (yield* Metric.value(fallbacks)).count
      yield* withDownServer(Effect.gen(function*() {
        for (let i = 0; i < 20; i++) expect((yield* store.tryAcquire(one, []))._tag).toBe("Admitted")
        yield* store.adjust(one)
        expect((yield* store.levels([bucket], [])).levels[0]).toBe(10)
      }))
      expect((yield* Metric.value(fallbacks)).count - before).toBe(20)
      yield* untilRecovered(store)
    }).pipe(Effect.scoped))

  // real server stopped and restarted: real time
  it.live("fallback: a local bucket with the declared share of the budget, then Redis again", () =>
    Effect.gen(function*() {
      const store = yield* RedisLimiterStore.make({
        url: server.url,
        keyPrefix: freshPrefix(),
        onUnavailable: { fallback: 0.25 }
      })
      yield* withDownServer(Effect.gen(function*() {
        // a quarter of 10 is 2.5: two admissions, then a wait at a quarter of the refill rate
        expect((yield* store.tryAcquire(one, []))._tag).toBe("Admitted")
        expect((yield* store.tryAcquire(one, []))._tag).toBe("Admitted")
        const third = yield* store.tryAcquire(one, [])
        expect(third._tag).toBe("Denied")
        // 0.5 short at 2.5 per minute: 12 s
        expect(third._tag === "Denied" && third.waitMillis).toBeGreaterThan(11_000)
        // a cost above the reduced capacity (5 > 2.5) is admitted on a full local bucket, into debt, as on Redis
        const tokens = { ...bucket, id: "org:acme|tokens", dimension: "tokens" }
        expect((yield* store.tryAcquire([{ bucket: tokens, amount: 5 }], []))._tag).toBe("Admitted")
        const again = yield* store.tryAcquire([{ bucket: tokens, amount: 5 }], [])
        // 2.5 in debt: full again after 5 at 2.5 a minute, 120 s
        expect(again._tag === "Denied" && again.waitMillis).toBeGreaterThan(119_000)
      }))
      const read = yield* untilRecovered(store)
      expect(read.levels[0]).toBe(10)
    }).pipe(Effect.scoped))

  // a real server made to stall (CLIENT PAUSE): real time
  it.live("a slow server: the command timeout bounds every call, also on a client with an offline queue", () =>
    Effect.gen(function*() {
      const client = new Redis(server.url) // default options: offline queue on, no command timeout
      yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
      const store = yield* RedisLimiterStore.make({ client, keyPrefix: freshPrefix(), commandTimeout: "150 millis" })
      expect((yield* store.tryAcquire(one, []))._tag).toBe("Admitted")
      const admin = new Redis(server.url)
      yield* Effect.addFinalizer(() => Effect.sync(() => admin.disconnect()))
      yield* Effect.promise(() => admin.call("CLIENT", "PAUSE", "1000", "ALL"))
      yield* Effect.sleep("50 millis")
      const { millis, result } = yield* timed(store.tryAcquire(one, []))
      // the store's own timer answered, not the server at the end of its pause
      expect(result._tag === "Left" && result.left.message).toContain("no answer within 150 ms")
      expect(millis).toBeLessThan(2_000) // bounded, however late a loaded machine fires the timer
      yield* Effect.sleep("1200 millis")
      expect((yield* store.tryAcquire(one, []))._tag).toBe("Admitted")
    }).pipe(Effect.scoped))

  // real time: the server is never there
  it.live("starting without Redis does not hang: make returns after connectTimeout, calls fail closed", () =>
    Effect.gen(function*() {
      const { millis, result } = yield* timed(Effect.gen(function*() {
        const store = yield* RedisLimiterStore.make({ url: "redis://127.0.0.1:1", connectTimeout: "300 millis" })
        return yield* store.tryAcquire(one, [])
      }))
      expect(result._tag).toBe("Left")
      expect(millis).toBeLessThan(3_000) // connectTimeout (300 ms), then at once: never ioredis's retries
    }).pipe(Effect.scoped))
})
