/**
 * The Redis store against a real redis-server this file starts. Real sockets and a real server mean
 * real time: these tests use `it.live` (the conformance test below is the exception: in clock mode
 * the store takes its time from TestClock, like the memory store). Buckets refill while a live test
 * runs, so a level is asserted within bounds from the server's `TIME` read before the first write
 * (`since`) and the store's own `now` of the read, never to a fixed number of decimals.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { LimiterStore } from "@sluice/core"
import { RedisLimiterStore } from "@sluice/redis"
import * as RedisServer from "@sluice/redis/RedisServer"
import { ConfigProvider, Effect, Exit, FastCheck, Logger, Metric, TestClock } from "effect"
import { Redis } from "ioredis"

let server: RedisServer.RedisServer
let admin: Redis
let prefixes = 0
const freshPrefix = () => `t${process.pid}x${prefixes++}`

beforeAll(async () => {
  server = await RedisServer.start()
  admin = new Redis(server.url, { lazyConnect: false })
})
afterAll(async () => {
  admin?.disconnect()
  await server?.close()
})

/** The server's clock in whole milliseconds, as the scripts read it. */
const serverTime = Effect.promise(() => admin.time()).pipe(
  Effect.map(([seconds, micros]) => Number(seconds) * 1000 + Math.floor(Number(micros) / 1000))
)

/**
 * A live bucket's level: `level` when it was last written (at or after `since`), plus what refilled
 * until the read at `now`, at most `refillPerMs * (now - since)`.
 */
const expectRefilled = (
  actual: number | undefined,
  level: number,
  bucket: LimiterStore.BucketSpec,
  since: number,
  now: number
) => {
  expect(actual).toBeGreaterThanOrEqual(level - 1e-9)
  expect(actual).toBeLessThanOrEqual(Math.min(bucket.capacity, level + bucket.refillPerMs * (now - since)) + 1e-9)
}

/** Collects the keys of every script call on keys under `prefix`, from a MONITOR connection. */
const monitorCalls = (prefix: string) =>
  Effect.gen(function*() {
    // monitor() opens a connection of its own (a duplicate of admin in monitor mode)
    const monitor = yield* Effect.promise(() => admin.monitor())
    yield* Effect.addFinalizer(() => Effect.sync(() => monitor.disconnect()))
    const calls: Array<ReadonlyArray<string>> = []
    monitor.on("monitor", (_time: string, args: ReadonlyArray<string>) => {
      if (args[0]?.toLowerCase() === "evalsha" || args[0]?.toLowerCase() === "eval") {
        const keys = args.slice(3, 3 + Number(args[2]))
        if (keys.some((key) => key.startsWith(prefix))) calls.push(keys)
      }
    })
    return calls
  })

/** MONITOR's lines arrive on their own connection: waits (up to 5 s) until `count` calls are seen. */
const untilCalls = (calls: ReadonlyArray<ReadonlyArray<string>>, count: number) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100 && calls.length < count; i++) yield* Effect.sleep("50 millis")
    expect(calls.length).toBe(count)
    return calls
  })

const untilNoKeys = (prefix: string, withinMillis: number) =>
  Effect.gen(function*() {
    const started = Date.now()
    while (Date.now() - started < withinMillis) {
      if ((yield* Effect.promise(() => admin.keys(`${prefix}:*`))).length === 0) return true
      yield* Effect.sleep("100 millis")
    }
    return false
  })

const spec = (
  scope: string,
  dimension: string,
  capacity: number,
  perMinute: number = capacity
): LimiterStore.BucketSpec => ({
  id: `${scope}\u0000${dimension}\u000060000`,
  scope,
  dimension,
  windowMillis: 60_000,
  capacity,
  refillPerMs: perMinute / 60_000
})

describe("RedisLimiterStore", () => {
  // real server, real time
  it.live("admits all or nothing across scopes and dimensions, and says what binds", () =>
    Effect.gen(function*() {
      const store = yield* RedisLimiterStore.make({ url: server.url, keyPrefix: freshPrefix() })
      const orgReq = spec("org:acme", "requests", 10)
      const orgTok = spec("org:acme", "tokens", 1000)
      const projTok = spec("org:acme/project:p", "tokens", 500)
      const since = yield* serverTime
      const first = yield* store.tryAcquire(
        [{ bucket: orgReq, amount: 1 }, { bucket: orgTok, amount: 400 }, { bucket: projTok, amount: 400 }],
        []
      )
      expect(first).toEqual({ _tag: "Admitted" })
      const second = yield* store.tryAcquire(
        [{ bucket: orgReq, amount: 1 }, { bucket: orgTok, amount: 200 }, { bucket: projTok, amount: 200 }],
        []
      )
      expect(second._tag).toBe("Denied")
      if (second._tag !== "Denied") return
      expect(second.scope).toBe("org:acme/project:p")
      expect(second.dimension).toBe("tokens")
      expect(second.reason).toBe("limit")
      // 100 tokens short at 500/min: 12 s, less what refilled since the first admission
      const read = yield* store.levels([orgReq, orgTok, projTok], [])
      expect(second.waitMillis).toBeLessThanOrEqual(12_000)
      expect(second.waitMillis).toBeGreaterThanOrEqual(12_000 - (read.now - since) - 1)
      expectRefilled(read.levels[0], 9, orgReq, since, read.now)
      expectRefilled(read.levels[1], 600, orgTok, since, read.now)
      expectRefilled(read.levels[2], 100, projTok, since, read.now)
      // above the capacity (a cost above a burst: the limiter refuses one above a limit's amount before the
      // store): it waits for the bucket to be full, 400 tokens at 500/min, and would then take it into debt
      // (the store says so: the limiter then sends such a cost as one debit, not in parts)
      expect(store.debitAboveCapacity).toBe(true)
      // a stall between the read above and this call (as a loaded machine makes one) lowers the wait by as much:
      // the bound is taken from the server's time after the call, not from the read's
      yield* Effect.sleep("20 millis")
      const full = yield* store.tryAcquire([{ bucket: projTok, amount: 501 }], [])
      const after = yield* serverTime
      expect(full._tag).toBe("Denied")
      if (full._tag !== "Denied") return
      expect(full.waitMillis).toBeLessThanOrEqual(48_000)
      expect(full.waitMillis).toBeGreaterThanOrEqual(48_000 - (after - since) - 1)
    }).pipe(Effect.scoped))

  // real server, real time (gates count down in the server's clock)
  it.live("gates: the later not-before wins, every waiter on the scope sees it; adjust and observe", () =>
    Effect.gen(function*() {
      const store = yield* RedisLimiterStore.make({ url: server.url, keyPrefix: freshPrefix() })
      const bucket = spec("pool:mini", "tokens", 1000)
      const blockedAt = yield* serverTime
      yield* store.block({ scope: "pool:mini", dimension: "*" }, 5_000)
      yield* store.block({ scope: "pool:mini", dimension: "*" }, 1_000)
      const denied = yield* store.tryAcquire([{ bucket, amount: 1 }], [
        { scope: "pool:mini", dimension: "tokens" },
        { scope: "pool:mini", dimension: "*" }
      ])
      expect(denied._tag === "Denied" && denied.reason).toBe("gate")
      expect(denied._tag === "Denied" && denied.dimension).toBe("*")
      const gateRead = yield* store.levels([], [{ scope: "pool:mini", dimension: "*" }])
      // 5 s from the block, less the time since (the later not-before won; the earlier would be 1 s)
      expect(denied._tag === "Denied" && denied.waitMillis).toBeLessThanOrEqual(5_000)
      expect(denied._tag === "Denied" && denied.waitMillis).toBeGreaterThanOrEqual(5_000 - (gateRead.now - blockedAt))
      expect(gateRead.gates[0]).toBeLessThanOrEqual(5_000)
      expect(gateRead.gates[0]).toBeGreaterThanOrEqual(5_000 - (gateRead.now - blockedAt))

      let since = yield* serverTime
      yield* store.adjust([{ bucket, amount: 1_500 }])
      let read = yield* store.levels([bucket], [])
      expectRefilled(read.levels[0], -500, bucket, since, read.now)
      yield* store.adjust([{ bucket, amount: -5_000 }])
      expect((yield* store.levels([bucket], [])).levels[0]).toBe(1000)
      since = yield* serverTime
      yield* store.observe(bucket, 200)
      read = yield* store.levels([bucket], [])
      expectRefilled(read.levels[0], 200, bucket, since, read.now)
      // never raised: 900 is above the level, which goes on refilling from 200
      yield* store.observe(bucket, 900)
      read = yield* store.levels([bucket], [])
      expectRefilled(read.levels[0], 200, bucket, since, read.now)
    }).pipe(Effect.scoped))

  // real server, two connections standing for two processes
  it.live("a gate set through one connection pauses admissions through another", () =>
    Effect.gen(function*() {
      const keyPrefix = freshPrefix()
      const one = yield* RedisLimiterStore.make({ url: server.url, keyPrefix })
      const two = yield* RedisLimiterStore.make({ url: server.url, keyPrefix })
      const bucket = spec("org:acme", "tokens", 1000)
      const gates = [{ scope: "org:acme", dimension: "tokens" }, { scope: "org:acme", dimension: "*" }]
      expect((yield* two.tryAcquire([{ bucket, amount: 1 }], gates))._tag).toBe("Admitted")
      const blockedAt = yield* serverTime
      yield* one.block({ scope: "org:acme", dimension: "tokens" }, 2_000) // a 429 seen by process one
      const denied = yield* two.tryAcquire([{ bucket, amount: 1 }], gates)
      const now = yield* serverTime
      expect(denied._tag === "Denied" && denied.reason).toBe("gate")
      expect(denied._tag === "Denied" && denied.dimension).toBe("tokens")
      expect(denied._tag === "Denied" && denied.waitMillis).toBeLessThanOrEqual(2_000)
      expect(denied._tag === "Denied" && denied.waitMillis).toBeGreaterThanOrEqual(2_000 - (now - blockedAt))
    }).pipe(Effect.scoped))

  // real server, real time (TTLs); MONITOR shows the keys of every script call
  it.live("by default every key of every call shares one hash tag; every key has a TTL and expires when idle", () =>
    Effect.gen(function*() {
      const prefix = freshPrefix()
      const calls = yield* monitorCalls(prefix)
      const store = yield* RedisLimiterStore.make({ url: server.url, keyPrefix: prefix, ttlMargin: "1 second" })
      // 600,000/min refills 10 units a millisecond: the buckets are full again at once, so their keys
      // live for about the margin; the gates for their 200 ms and the margin
      const fast = (scope: string, dimension: string) => spec(scope, dimension, 100, 600_000)
      // what the OpenAI service charges: the org, its pool, and a tenant without an org
      yield* store.tryAcquire(
        [
          { bucket: fast("org:acme", "requests"), amount: 1 },
          { bucket: fast("org:acme/pool:gpt-4o", "tokens"), amount: 50 },
          { bucket: fast("tenant:42", "tokens"), amount: 50 }
        ],
        [{ scope: "org:acme", dimension: "*" }, { scope: "tenant:42", dimension: "tokens" }]
      )
      yield* store.block({ scope: "tenant:42", dimension: "*" }, 200)
      yield* store.block({ scope: "org:beta/project:y", dimension: "requests" }, 200)
      // the same tenant under another organization: the same key, so the same bucket
      yield* store.tryAcquire(
        [{ bucket: fast("org:beta", "requests"), amount: 1 }, { bucket: fast("tenant:42", "tokens"), amount: 1 }],
        []
      )
      const keys = yield* Effect.promise(() => admin.keys(`${prefix}:*`))
      // five buckets (tenant:42's once) and two gates, one of them never written: an open gate is no key
      expect(keys.length).toBe(6)
      for (const key of keys) {
        expect(key.startsWith(`${prefix}:{sluice}:`)).toBe(true)
        const ttl = yield* Effect.promise(() => admin.pttl(key))
        expect(ttl).toBeGreaterThan(0)
        expect(ttl).toBeLessThanOrEqual(1_200)
      }
      const seen = yield* untilCalls(calls, 4)
      for (const call of seen) expect(call.every((key) => key.startsWith(`${prefix}:{sluice}:`))).toBe(true)
      expect(seen[0]).toContain(`${prefix}:{sluice}:b:tenant:42|tokens|60000`)
      expect(seen[3]).toContain(`${prefix}:{sluice}:b:tenant:42|tokens|60000`)
      expect(seen[1]).toEqual([`${prefix}:{sluice}:g:tenant:42|*`])
      // idle keys expire: within the margin plus the gates' 200 ms (and Redis's expiry cycle)
      const gone = yield* untilNoKeys(prefix, 5_000)
      expect(gone).toBe(true)
    }).pipe(Effect.scoped))

  // real server; MONITOR shows the keys of every script call
  it.live("with per-organization tags a key carries its own scope's tag, so a shared bucket keeps one key", () =>
    Effect.gen(function*() {
      const prefix = freshPrefix()
      const calls = yield* monitorCalls(prefix)
      const store = yield* RedisLimiterStore.make({
        url: server.url,
        keyPrefix: prefix,
        hashTag: RedisLimiterStore.byOrganization("shared")
      })
      const tenant = spec("tenant:42", "tokens", 5, 5)
      // a single Redis runs any mix; tenant:42 is charged from two organizations' calls
      const one = yield* store.tryAcquire(
        [{ bucket: spec("org:acme", "requests", 10), amount: 1 }, { bucket: tenant, amount: 3 }],
        [{ scope: "org:acme/project:x", dimension: "*" }]
      )
      expect(one._tag).toBe("Admitted")
      const two = yield* store.tryAcquire(
        [{ bucket: spec("org:beta", "requests", 10), amount: 1 }, { bucket: tenant, amount: 3 }],
        []
      )
      // one bucket, one state: 2 left of 5, whichever organization's call asks
      expect(two._tag === "Denied" && two.scope).toBe("tenant:42")
      const seen = yield* untilCalls(calls, 2)
      expect(seen[0]).toEqual([
        `${prefix}:{org:acme}:g:org:acme/project:x|*`,
        `${prefix}:{org:acme}:b:org:acme|requests|60000`,
        `${prefix}:{shared}:b:tenant:42|tokens|60000`
      ])
      expect(seen[1]).toEqual([
        `${prefix}:{org:beta}:b:org:beta|requests|60000`,
        `${prefix}:{shared}:b:tenant:42|tokens|60000`
      ])
    }).pipe(Effect.scoped))

  // real server (SCRIPT FLUSH), real time
  it.live("survives SCRIPT FLUSH (NOSCRIPT reloads) and counts the reload", () =>
    Effect.gen(function*() {
      const store = yield* RedisLimiterStore.make({ url: server.url, keyPrefix: freshPrefix() })
      const bucket = spec("org:acme", "requests", 5)
      const before = (yield* Metric.value(RedisLimiterStore.scriptLoads)).count
      const since = yield* serverTime
      expect((yield* store.tryAcquire([{ bucket, amount: 1 }], []))._tag).toBe("Admitted")
      yield* Effect.promise(() => admin.script("FLUSH"))
      expect((yield* store.tryAcquire([{ bucket, amount: 1 }], []))._tag).toBe("Admitted")
      const read = yield* store.levels([bucket], [])
      expectRefilled(read.levels[0], 3, bucket, since, read.now)
      expect((yield* Metric.value(RedisLimiterStore.scriptLoads)).count).toBeGreaterThan(before)
    }).pipe(Effect.scoped))

  // real server, a real client connection
  it.live("uses the given ioredis client and leaves it open", () =>
    Effect.gen(function*() {
      const client = admin.duplicate()
      yield* Effect.scoped(
        Effect.gen(function*() {
          const store = yield* RedisLimiterStore.make({ client, keyPrefix: freshPrefix() })
          expect((yield* store.tryAcquire([{ bucket: spec("org:a", "requests", 1), amount: 1 }], []))._tag).toBe(
            "Admitted"
          )
        })
      )
      expect(yield* Effect.promise(() => client.ping())).toBe("PONG")
      client.disconnect()
    }))

  // real server; the client is told it is a Cluster client (no cluster is started)
  it.live("on a Cluster client: one tag runs any mix; per-scope tags refuse a mixed call with HashTagConflict", () =>
    Effect.gen(function*() {
      const client = admin.duplicate()
      yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
      ;(client as { isCluster: boolean }).isCluster = true
      const mixed = [
        { bucket: spec("org:acme", "requests", 5), amount: 1 },
        { bucket: spec("org:acme/pool:x", "tokens", 5), amount: 1 },
        { bucket: spec("tenant:42", "tokens", 5), amount: 1 }
      ]
      // the default: one tag for every key, so the OpenAI service's mix of scopes runs
      const single = yield* RedisLimiterStore.make({ client, keyPrefix: freshPrefix() })
      expect((yield* single.tryAcquire(mixed, [{ scope: "tenant:42", dimension: "*" }]))._tag).toBe("Admitted")

      // per organization: scopes of one organization run; a call mixing tags is refused, whatever
      // onUnavailable says (a configuration error, not an outage)
      const store = yield* RedisLimiterStore.make({
        client,
        keyPrefix: freshPrefix(),
        onUnavailable: "fail-open",
        hashTag: RedisLimiterStore.byOrganization()
      })
      expect((yield* store.tryAcquire(mixed.slice(0, 2), []))._tag).toBe("Admitted")
      const error = yield* Effect.flip(store.tryAcquire(mixed, []))
      expect(error._tag).toBe("LimiterStoreError")
      expect(error.operation).toBe("tryAcquire")
      expect(error.cause).toBeInstanceOf(RedisLimiterStore.HashTagConflict)
      const conflict = error.cause as RedisLimiterStore.HashTagConflict
      expect(conflict.scopes).toEqual(["org:acme", "tenant:42"])
      expect(conflict.tags).toEqual(["org:acme", "sluice"])
      expect(error.message).toContain("tenant:42")
      expect(error.message).toContain("hash tag")
      expect((yield* Effect.flip(store.adjust(mixed)))._tag).toBe("LimiterStoreError")
      // a hold on scopes of two tags is refused the same way (not Redis's raw CROSSSLOT)
      const { holds } = yield* RedisLimiterStore.makeWithHolds({
        client,
        keyPrefix: freshPrefix(),
        hashTag: RedisLimiterStore.byOrganization()
      })
      const claims = [{ scope: "org:acme", capacity: 10 }, { scope: "tenant:42", capacity: 10 }]
      expect(yield* holds.take("h-1", claims.slice(0, 1), 5, 60_000)).toBe(true)
      const refusedHold = yield* Effect.flip(holds.take("h-2", claims, 5, 60_000))
      expect(refusedHold._tag).toBe("HoldStoreError")
      expect(refusedHold.operation).toBe("take")
      expect(refusedHold.cause).toBeInstanceOf(RedisLimiterStore.HashTagConflict)
      expect((refusedHold.cause as RedisLimiterStore.HashTagConflict).scopes).toEqual(["org:acme", "tenant:42"])
      // a read need not be atomic: one call per tag, merged in order
      const read = yield* store.levels(mixed.map((debit) => debit.bucket), [{ scope: "tenant:42", dimension: "*" }])
      expect(read.gates).toEqual([0])
      expect(read.levels.map((level) => Math.floor(level))).toEqual([4, 4, 5])
    }).pipe(Effect.scoped))

  // real server
  it.live("layerConfig reads REDIS_URL (kept Redacted) and gives the same store", () =>
    Effect.gen(function*() {
      const password = "hunter2-secret"
      const url = server.url.replace("redis://", `redis://default:${password}@`)
      const provider = ConfigProvider.fromMap(new Map([["REDIS_URL", url]]))
      const logs: Array<string> = []
      const logger = Logger.make(({ message }) => logs.push(String(message)))
      const answer = yield* Effect.gen(function*() {
        const store = yield* LimiterStore.LimiterStore
        return yield* store.tryAcquire([{ bucket: spec("org:cfg", "requests", 1), amount: 1 }], [])
      }).pipe(
        Effect.provide(RedisLimiterStore.layerConfig({ keyPrefix: freshPrefix() })),
        Effect.withConfigProvider(provider),
        Effect.provide(Logger.replace(Logger.defaultLogger, logger))
      )
      // the server has no password: ioredis's AUTH fails, the store fails closed without the secret
      const text = JSON.stringify(answer) + logs.join("\n")
      expect(text).not.toContain(password)
    }).pipe(
      Effect.either,
      Effect.map((result) => {
        expect(JSON.stringify(result)).not.toContain("hunter2-secret")
      })
    ))

  // decoding fails before make connects: no server and no clock involved (live like the rest of the file)
  it.live("rejects bad options with their paths", () =>
    Effect.gen(function*() {
      const options = { keyPrefix: "a{b", onUnavailable: { fallback: 2 }, hashTag: "x}" }
      const exit = yield* Effect.exit(Effect.scoped(RedisLimiterStore.make(options)))
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(Effect.scoped(RedisLimiterStore.make(options)))
      expect(error._tag).toBe("RedisStoreConfigError")
      expect(error.message).toContain("keyPrefix")
      expect(error.message).toContain("fallback")
      expect(error.message).toContain("hashTag")
    }))
})

// Conformance with the memory store: the same random operations at the same (TestClock) instants give
// the same answers and levels, to the last bit. The Redis store is in clock mode so TestClock drives it.
describe("RedisLimiterStore mirrors the memory store's arithmetic", () => {
  const buckets = [
    spec("org:acme", "requests", 5, 5),
    spec("org:acme", "tokens", 1000, 3000),
    { ...spec("org:acme/project:p", "tokens", 300, 700), capacity: 150 },
    spec("org:acme/project:p", "images", 1, 0)
  ]
  const gates = [{ scope: "org:acme", dimension: "*" }, { scope: "org:acme/project:p", dimension: "tokens" }]
  const Op = FastCheck.oneof(
    FastCheck.record({
      op: FastCheck.constant("acquire" as const),
      picks: FastCheck.uniqueArray(FastCheck.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 4 }),
      amount: FastCheck.double({ min: 0, max: 1200, noNaN: true })
    }),
    FastCheck.record({
      op: FastCheck.constant("adjust" as const),
      pick: FastCheck.integer({ min: 0, max: 3 }),
      amount: FastCheck.double({ min: -1500, max: 1500, noNaN: true })
    }),
    FastCheck.record({
      op: FastCheck.constant("block" as const),
      pick: FastCheck.integer({ min: 0, max: 1 }),
      millis: FastCheck.integer({ min: 0, max: 3000 })
    }),
    FastCheck.record({
      op: FastCheck.constant("observe" as const),
      pick: FastCheck.integer({ min: 0, max: 3 }),
      remaining: FastCheck.integer({ min: 0, max: 1000 })
    }),
    FastCheck.record({ op: FastCheck.constant("tick" as const), millis: FastCheck.integer({ min: 0, max: 2500 }) })
  )

  // real server (the I/O is real; the time is TestClock's)
  it.effect("random operation sequences", () =>
    Effect.gen(function*() {
      const samples = FastCheck.sample(FastCheck.array(Op, { minLength: 5, maxLength: 40 }), { numRuns: 25, seed: 42 })
      for (const ops of samples) {
        const memory = yield* LimiterStore.makeMemory
        const redis = yield* RedisLimiterStore.make({ url: server.url, keyPrefix: freshPrefix(), time: "clock" })
        for (const op of ops) {
          switch (op.op) {
            case "acquire": {
              const debits = op.picks.map((i) => ({ bucket: buckets[i]!, amount: op.picks.length > 1 ? 1 : op.amount }))
              if (op.picks.includes(1)) debits[op.picks.indexOf(1)] = { bucket: buckets[1]!, amount: op.amount }
              const a = yield* memory.tryAcquire(debits, gates)
              const b = yield* redis.tryAcquire(debits, gates)
              expect(b).toEqual(a)
              break
            }
            case "adjust": {
              yield* memory.adjust([{ bucket: buckets[op.pick]!, amount: op.amount }])
              yield* redis.adjust([{ bucket: buckets[op.pick]!, amount: op.amount }])
              break
            }
            case "block": {
              yield* memory.block(gates[op.pick]!, op.millis)
              yield* redis.block(gates[op.pick]!, op.millis)
              break
            }
            case "observe": {
              yield* memory.observe(buckets[op.pick]!, op.remaining)
              yield* redis.observe(buckets[op.pick]!, op.remaining)
              break
            }
            case "tick": {
              yield* TestClock.adjust(op.millis)
              break
            }
          }
          expect(yield* redis.levels(buckets, gates)).toEqual(yield* memory.levels(buckets, gates))
        }
      }
    }).pipe(Effect.scoped))
})
