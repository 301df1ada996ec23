/**
 * The Redis store against a real redis-server this file starts. Real sockets and a real server mean
 * real time: these tests use `it.live` (the conformance test below is the exception: in clock mode
 * the store takes its time from TestClock, like the memory store).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { LimiterStore } from "@sluice/core"
import { RedisLimiterStore } from "@sluice/redis"
import { ConfigProvider, Effect, Exit, FastCheck, Logger, Metric, TestClock } from "effect"
import { Redis } from "ioredis"
import { type RedisServer, startRedis } from "./redisServer.js"

let server: RedisServer
let admin: Redis
let prefixes = 0
const freshPrefix = () => `t${process.pid}x${prefixes++}`

beforeAll(async () => {
  server = await startRedis()
  admin = new Redis(server.url, { lazyConnect: false })
})
afterAll(async () => {
  admin?.disconnect()
  await server?.close()
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
      // 100 tokens short at 500/min: 12 s, give or take the milliseconds elapsed
      expect(second.waitMillis).toBeGreaterThan(11_000)
      expect(second.waitMillis).toBeLessThanOrEqual(12_000)
      const read = yield* store.levels([orgReq, orgTok, projTok], [])
      expect(read.levels[0]).toBeCloseTo(9, 1)
      expect(read.levels[1]).toBeCloseTo(600, 0)
      expect(read.levels[2]).toBeCloseTo(100, 0)
      // too large ever to fit
      const never = yield* store.tryAcquire([{ bucket: projTok, amount: 501 }], [])
      expect(never._tag === "Denied" && never.waitMillis).toBe(Number.POSITIVE_INFINITY)
    }).pipe(Effect.scoped))

  it.live("gates: the later not-before wins, every waiter on the scope sees it; adjust and observe", () =>
    Effect.gen(function*() {
      const store = yield* RedisLimiterStore.make({ url: server.url, keyPrefix: freshPrefix() })
      const bucket = spec("pool:mini", "tokens", 1000)
      yield* store.block({ scope: "pool:mini", dimension: "*" }, 5_000)
      yield* store.block({ scope: "pool:mini", dimension: "*" }, 1_000)
      const denied = yield* store.tryAcquire([{ bucket, amount: 1 }], [
        { scope: "pool:mini", dimension: "tokens" },
        { scope: "pool:mini", dimension: "*" }
      ])
      expect(denied._tag === "Denied" && denied.reason).toBe("gate")
      expect(denied._tag === "Denied" && denied.dimension).toBe("*")
      expect(denied._tag === "Denied" && denied.waitMillis).toBeGreaterThan(4_900)
      const gateRead = yield* store.levels([], [{ scope: "pool:mini", dimension: "*" }])
      expect(gateRead.gates[0]).toBeGreaterThan(4_900)

      yield* store.adjust([{ bucket, amount: 1_500 }])
      expect((yield* store.levels([bucket], [])).levels[0]).toBeCloseTo(-500, 0)
      yield* store.adjust([{ bucket, amount: -5_000 }])
      expect((yield* store.levels([bucket], [])).levels[0]).toBe(1000)
      yield* store.observe(bucket, 200)
      expect((yield* store.levels([bucket], [])).levels[0]).toBeCloseTo(200, 0)
      yield* store.observe(bucket, 900)
      expect((yield* store.levels([bucket], [])).levels[0]).toBeLessThan(210)
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
      yield* one.block({ scope: "org:acme", dimension: "tokens" }, 2_000) // a 429 seen by process one
      const denied = yield* two.tryAcquire([{ bucket, amount: 1 }], gates)
      expect(denied._tag === "Denied" && denied.reason).toBe("gate")
      expect(denied._tag === "Denied" && denied.waitMillis).toBeGreaterThan(1_900)
    }).pipe(Effect.scoped))

  it.live("keys carry the prefix and one hash tag per call; every key has a TTL and expires when idle", () =>
    Effect.gen(function*() {
      const prefix = freshPrefix()
      const monitor = yield* Effect.promise(() => admin.duplicate().monitor())
      const calls: Array<ReadonlyArray<string>> = []
      monitor.on("monitor", (_time: string, args: ReadonlyArray<string>) => {
        if (args[0]?.toLowerCase() === "evalsha" || args[0]?.toLowerCase() === "eval") {
          const n = Number(args[2])
          const keys = args.slice(3, 3 + n)
          if (keys.some((key) => key.startsWith(prefix))) calls.push(keys)
        }
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => monitor.disconnect()))
      const store = yield* RedisLimiterStore.make({
        url: server.url,
        keyPrefix: prefix,
        ttlMargin: "300 millis"
      })
      // 600/min = 10/ms... 6000 per minute refills 1 unit in 10 ms
      const fast = (scope: string, dimension: string) => spec(scope, dimension, 100, 600_000)
      yield* store.tryAcquire(
        [
          { bucket: fast("org:acme", "requests"), amount: 1 },
          { bucket: fast("org:acme/project:x", "tokens"), amount: 50 },
          { bucket: fast("org:acme/pool:gpt-4o", "tokens"), amount: 50 }
        ],
        [{ scope: "org:acme", dimension: "*" }, { scope: "org:acme/pool:gpt-4o", dimension: "tokens" }]
      )
      yield* store.block({ scope: "tenant:42", dimension: "*" }, 200)
      yield* store.block({ scope: "org:beta/project:y", dimension: "requests" }, 200)
      // a scope without an org gets the default tag, whichever call touches it
      yield* store.tryAcquire([{ bucket: fast("pool:shared", "tokens"), amount: 1 }], [])
      yield* Effect.sleep("100 millis")
      expect(calls.length).toBe(4)
      for (const keys of calls) {
        const tags = new Set(keys.map((key) => /^[^{]*\{([^}]*)\}/.exec(key)?.[1]))
        expect(tags.size).toBe(1)
        expect([...tags][0]).toBeDefined()
      }
      expect(calls[0]!.every((key) => key.startsWith(`${prefix}:{org:acme}:`))).toBe(true)
      expect(calls[1]![0]!.startsWith(`${prefix}:{sluice}:`)).toBe(true)
      expect(calls[2]![0]!.startsWith(`${prefix}:{org:beta}:`)).toBe(true)
      expect(calls[3]![0]!.startsWith(`${prefix}:{sluice}:b:pool:shared|tokens|60000`)).toBe(true)

      const keys = yield* Effect.promise(() => admin.keys(`${prefix}:*`))
      expect(keys.length).toBe(6)
      for (const key of keys) {
        const ttl = yield* Effect.promise(() => admin.pttl(key))
        expect(ttl).toBeGreaterThan(0)
        expect(ttl).toBeLessThan(1_000)
      }
      // 50 units at 10/ms refill in 5 ms; + 300 ms margin; gates 200 ms + margin
      yield* Effect.sleep("700 millis")
      expect(yield* Effect.promise(() => admin.keys(`${prefix}:*`))).toEqual([])
    }).pipe(Effect.scoped))

  it.live("survives SCRIPT FLUSH (NOSCRIPT reloads) and counts the reload", () =>
    Effect.gen(function*() {
      const store = yield* RedisLimiterStore.make({ url: server.url, keyPrefix: freshPrefix() })
      const bucket = spec("org:acme", "requests", 5)
      const before = (yield* Metric.value(RedisLimiterStore.scriptLoads)).count
      expect((yield* store.tryAcquire([{ bucket, amount: 1 }], []))._tag).toBe("Admitted")
      yield* Effect.promise(() => admin.script("FLUSH"))
      expect((yield* store.tryAcquire([{ bucket, amount: 1 }], []))._tag).toBe("Admitted")
      expect((yield* store.levels([bucket], [])).levels[0]).toBeCloseTo(3, 1)
      expect((yield* Metric.value(RedisLimiterStore.scriptLoads)).count).toBeGreaterThan(before)
    }).pipe(Effect.scoped))

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
  it.live("on a Cluster client, a call whose scopes map to different hash tags is refused whatever onUnavailable says", () =>
    Effect.gen(function*() {
      const client = admin.duplicate()
      yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
      ;(client as { isCluster: boolean }).isCluster = true
      const store = yield* RedisLimiterStore.make({ client, keyPrefix: freshPrefix(), onUnavailable: "fail-open" })
      const same = yield* store.tryAcquire(
        [{ bucket: spec("org:acme", "requests", 5), amount: 1 }, {
          bucket: spec("org:acme/pool:x", "tokens", 5),
          amount: 1
        }],
        []
      )
      expect(same._tag).toBe("Admitted")
      const error = yield* Effect.flip(
        store.tryAcquire(
          [{ bucket: spec("org:acme", "requests", 5), amount: 1 }, { bucket: spec("pool:x", "tokens", 5), amount: 1 }],
          []
        )
      )
      expect(error._tag).toBe("LimiterStoreError")
      expect(error.message).toContain("hash tags")
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

  it.live("rejects bad options with their paths", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Effect.scoped(RedisLimiterStore.make({ keyPrefix: "a{b", onUnavailable: { fallback: 2 } }))
      )
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(
        Effect.scoped(RedisLimiterStore.make({ keyPrefix: "a{b", onUnavailable: { fallback: 2 } }))
      )
      expect(error._tag).toBe("RedisStoreConfigError")
      expect(error.message).toContain("keyPrefix")
      expect(error.message).toContain("fallback")
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
