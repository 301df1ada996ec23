/**
 * Benchmark (issue 3): admission on the Redis store, loopback, one call charged against 3 scopes × 3
 * dimensions, against rate-limiter-flexible's RateLimiterRedis doing a single-key consume, in the
 * same run and on the same (throwaway) redis-server.
 *
 *   node scripts/run-ts.mjs benchmarks/redis.ts      (writes benchmarks/results/redis.md)
 *
 * Round trips are counted on the client: every command an ioredis client sends is one request and
 * one reply (pipelined or not); the server's `INFO commandstats` (EVALSHA calls) cross-checks it.
 * Limits are high so that nothing is denied: this measures the admission path itself.
 */
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { RedisLimiterStore } from "@sluice/redis"
import * as RedisServer from "@sluice/redis/RedisServer"
import { Layer, ManagedRuntime } from "effect"
import { Redis } from "ioredis"
import { writeFileSync } from "node:fs"
import { cpus, loadavg } from "node:os"
import { RateLimiterRedis } from "rate-limiter-flexible"

const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? 5_000)
const CONCURRENT = Number(process.env.BENCH_CONCURRENT ?? 20_000)
const IN_FLIGHT = 64

const scopes = ["org:acme", "org:acme/project:search", "org:acme/pool:gpt-4o"] as const
const dimensions = ["requests", "tokens", "images"] as const
const HUGE = 1e12
const cost = { requests: 1, tokens: 1480, images: 1 }

const countingClient = (url: string) => {
  const client = new Redis(url, { enableOfflineQueue: true })
  let sent = 0
  const original = client.sendCommand.bind(client)
  client.sendCommand = ((...args: Parameters<Redis["sendCommand"]>) => {
    sent++
    return original(...args)
  }) as Redis["sendCommand"]
  return { client, sent: () => sent, reset: () => (sent = 0) }
}

interface Row {
  readonly name: string
  readonly ops: number
  readonly perSecond: number
  readonly p50: number
  readonly p99: number
  readonly roundTrips: number
  readonly evalsha: number
  readonly serverMicros: number
}

const percentile = (sorted: Float64Array, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!

const evalshaCalls = async (admin: Redis) => {
  const info = await admin.info("commandstats")
  let calls = 0
  let micros = 0
  for (const line of info.split("\n")) {
    const match = /^cmdstat_(evalsha|eval):calls=(\d+),usec=(\d+)/.exec(line)
    if (match !== null) {
      calls += Number(match[2])
      micros += Number(match[3])
    }
  }
  return { calls, micros }
}

const measure = async (
  name: string,
  admin: Redis,
  counter: { sent: () => number; reset: () => void },
  ops: number,
  inFlight: number,
  once: () => Promise<unknown>
): Promise<Row> => {
  for (let i = 0; i < 500; i++) await once() // warm-up
  await admin.config("RESETSTAT")
  counter.reset()
  const latencies = new Float64Array(ops)
  let next = 0
  const started = performance.now()
  const lane = async () => {
    while (next < ops) {
      const i = next++
      const t0 = performance.now()
      await once()
      latencies[i] = performance.now() - t0
    }
  }
  await Promise.all(Array.from({ length: inFlight }, lane))
  const elapsed = performance.now() - started
  latencies.sort()
  return {
    name,
    ops,
    perSecond: ops / (elapsed / 1000),
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    roundTrips: counter.sent() / ops,
    ...(await evalshaCalls(admin).then(({ calls, micros }) => ({ evalsha: calls / ops, serverMicros: micros / ops })))
  }
}

const main = async () => {
  const server = await RedisServer.start()
  const admin = new Redis(server.url)
  const rows: Array<Row> = []
  let redisVersion = "redis-server"
  try {
    redisVersion = `Redis ${/redis_version:(\S+)/.exec(await admin.info("server"))?.[1] ?? "?"}`
    // --- sluice: the store directly, one tryAcquire of 9 debits --------------------------------------
    const sluice = countingClient(server.url)
    const runtime = ManagedRuntime.make(
      Layer.mergeAll(
        RedisLimiterStore.layer({ client: sluice.client, keyPrefix: "bench", commandTimeout: "5 seconds" }),
        RateLimiter.layer({
          budgets: scopes.map((scope) => Budget.make(scope, dimensions.map((d) => Budget.Limit.perMinute(d, HUGE))))
        }).pipe(
          Layer.provide(
            RedisLimiterStore.layer({ client: sluice.client, keyPrefix: "bench-rl", commandTimeout: "5 seconds" })
          )
        )
      ).pipe(Layer.orDie)
    )
    const store = await runtime.runPromise(LimiterStore.LimiterStore)
    const limiter = await runtime.runPromise(RateLimiter.RateLimiter)
    const debits: Array<LimiterStore.Debit> = []
    for (const scope of scopes) {
      for (const dimension of dimensions) {
        debits.push({
          bucket: {
            id: `${scope}|${dimension}`,
            scope,
            dimension,
            windowMillis: 60_000,
            capacity: HUGE,
            refillPerMs: HUGE / 60_000
          },
          amount: cost[dimension]
        })
      }
    }
    const storeOnce = () =>
      runtime.runPromise(store.tryAcquire(debits, [])).then((answer) => {
        if (answer._tag !== "Admitted") throw new Error("denied")
      })
    const limiterOnce = () => runtime.runPromise(limiter.acquire(scopes, cost))

    // --- rate-limiter-flexible: one key, one consume ------------------------------------------------
    const flexible = countingClient(server.url)
    const rlf = new RateLimiterRedis({ storeClient: flexible.client, points: HUGE, duration: 60, keyPrefix: "rlf" })
    const rlfOnce = () => rlf.consume("org:acme", 1)
    const rlf9Once = () =>
      Promise.all(
        scopes.flatMap((scope) => dimensions.map((dimension) => rlf.consume(`${scope}|${dimension}`, cost[dimension])))
      )

    rows.push(
      await measure("sluice store.tryAcquire, 3 scopes × 3 dims, sequential", admin, sluice, SEQUENTIAL, 1, storeOnce)
    )
    rows.push(
      await measure(
        "sluice RateLimiter.acquire (Redis store), 3 × 3, sequential",
        admin,
        sluice,
        SEQUENTIAL,
        1,
        limiterOnce
      )
    )
    rows.push(
      await measure(
        "rate-limiter-flexible RateLimiterRedis, 1 key consume, sequential",
        admin,
        flexible,
        SEQUENTIAL,
        1,
        rlfOnce
      )
    )
    rows.push(
      await measure(
        "rate-limiter-flexible RateLimiterRedis, 9 key consumes (not atomic), sequential",
        admin,
        flexible,
        SEQUENTIAL,
        1,
        rlf9Once
      )
    )
    rows.push(
      await measure(
        `sluice store.tryAcquire, 3 × 3, ${IN_FLIGHT} in flight`,
        admin,
        sluice,
        CONCURRENT,
        IN_FLIGHT,
        storeOnce
      )
    )
    rows.push(
      await measure(
        `sluice RateLimiter.acquire (Redis store), 3 × 3, ${IN_FLIGHT} in flight`,
        admin,
        sluice,
        CONCURRENT,
        IN_FLIGHT,
        limiterOnce
      )
    )
    rows.push(
      await measure(
        `rate-limiter-flexible, 1 key consume, ${IN_FLIGHT} in flight`,
        admin,
        flexible,
        CONCURRENT,
        IN_FLIGHT,
        rlfOnce
      )
    )
    rows.push(
      await measure(
        `rate-limiter-flexible, 9 key consumes, ${IN_FLIGHT} in flight`,
        admin,
        flexible,
        CONCURRENT,
        IN_FLIGHT,
        rlf9Once
      )
    )

    await runtime.dispose()
    sluice.client.disconnect()
    flexible.client.disconnect()
  } finally {
    admin.disconnect()
    await server.close()
  }

  const fmt = (n: number, digits = 0) =>
    n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits })
  const table = [
    "| implementation | admissions/s | p50 ms | p99 ms | round trips / admission | EVALSHA / admission (server) | server µs in scripts / admission |",
    "|---|---:|---:|---:|---:|---:|---:|",
    ...rows.map((row) =>
      `| ${row.name} | ${fmt(row.perSecond)} | ${fmt(row.p50, 3)} | ${fmt(row.p99, 3)} | ${fmt(row.roundTrips, 2)} | ${
        fmt(row.evalsha, 2)
      } | ${fmt(row.serverMicros, 1)} |`
    )
  ].join("\n")
  const markdown = `# Redis store admission benchmark

One admission charged against 3 scopes × 3 dimensions (requests, tokens, images) on the Redis
store, against rate-limiter-flexible's \`RateLimiterRedis\` consuming one key (and, for scale, nine
keys: its nearest equivalent, which is not atomic across keys and cannot wait). Limits are high, so
nothing is denied: this is the admission path itself. Loopback, one throwaway \`redis-server\`
(no persistence), one ioredis connection per implementation.

Command: \`node scripts/run-ts.mjs benchmarks/redis.ts\`. Node ${process.version}, ${cpus().length} × ${
    cpus()[0]?.model.trim() ?? "cpu"
  }, ${redisVersion}, ${new Date().toISOString().slice(0, 10)}; load average at the end ${
    loadavg().map((n) => n.toFixed(1)).join(" / ")
  } (a shared machine: absolute figures are noisy, the rows of one run compare).
Sequential rows: ${SEQUENTIAL} admissions one after another; "in flight" rows: ${CONCURRENT} admissions, ${IN_FLIGHT} at a time
(pipelined on the one connection).

${table}

Round trips are counted on the client (every command an ioredis client sends); the EVALSHA column
counts EVALSHA/EVAL calls on the server (\`INFO commandstats\`, reset before each row). The sluice
store's admission is one EVALSHA whatever the number of scopes and dimensions; \`RateLimiter.acquire\`
adds nothing when there is room. A server restart costs one extra EVAL per script (NOSCRIPT).
The last column is the time Redis spent running scripts per admission (\`INFO commandstats\` usec):
the 3 × 3 script reads nine buckets with one MGET and writes nine keys with their TTLs, so it costs
the single-threaded server several times a one-key INCRBY; that, not the round trip, is what bounds
the "in flight" rows. Sluice's row is one atomic all-or-nothing admission over nine buckets; the
nine-consume peer row is what rate-limiter-flexible needs for the same coverage, without atomicity.
`
  writeFileSync(new URL("./results/redis.md", import.meta.url), markdown)
  process.stdout.write(markdown)
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${String(error)}\n`)
    process.exit(1)
  }
)
