/**
 * Several worker processes share one organization's budget through Redis.
 *
 *   node scripts/run-ts.mjs examples/redis-workers.ts            (starts a throwaway redis-server)
 *   REDIS_URL=redis://127.0.0.1:6379 node scripts/run-ts.mjs examples/redis-workers.ts
 *
 * The story: org:acme may make 300 requests a minute (5 a second, bursts of 10). Three workers,
 * each in its own OS process, each as greedy as it can be, run for 6 seconds. With the memory store
 * each process would have its own budget (3 × 40 = 120 calls, a 429 storm); with the Redis store they
 * share one, so all three together make about 10 + 5 × 6 = 40. The only change is one layer.
 */
import { Budget, RateLimiter } from "@sluice/core"
import { RedisLimiterStore } from "@sluice/redis"
import { Console, Effect, Layer, Redacted } from "effect"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { startRedis } from "../packages/redis/test/redisServer.js"

const WORKERS = 3
const RUN_MILLIS = 6_000
const budgets = [Budget.make("org:acme", [Budget.Limit.perMinute("requests", 300, 10)])]

// --- a worker: one process, greedy fibers, one shared budget ------------------------------------------
const worker = (url: string, name: string) => {
  const Limits = RateLimiter.layer({ budgets, wakeJitter: 0.2 }).pipe(
    // the one line that makes the budget shared: the Redis store instead of LimiterStore.layerMemory
    Layer.provide(RedisLimiterStore.layer({ url: Redacted.make(url), onUnavailable: { fallback: 1 / WORKERS } }))
  )
  const program = Effect.gen(function*() {
    const limiter = yield* RateLimiter.RateLimiter
    // ready; wait for the main process's "go" so that all workers run over the same 6 seconds
    yield* Console.log("ready")
    yield* Effect.async<void>((resume) => {
      process.stdin.once("data", () => resume(Effect.void))
    })
    const until = Date.now() + RUN_MILLIS
    let calls = 0
    yield* Effect.forEach([1, 2, 3, 4], () =>
      Effect.gen(function*() {
        while (Date.now() < until) {
          const permit = yield* limiter.acquire(["org:acme"], { requests: 1 }, { deadline: until }).pipe(
            Effect.option
          )
          if (permit._tag === "Some") calls++ // here the worker would call OpenAI
        }
      }), { concurrency: "unbounded" })
    yield* Console.log(`${name}: ${calls} calls`)
    return calls
  })
  return Effect.runPromise(program.pipe(Effect.provide(Limits)))
}

// --- the main process: Redis, then the workers ------------------------------------------------------
const main = async () => {
  const server = process.env.REDIS_URL === undefined ? await startRedis() : undefined
  const url = process.env.REDIS_URL ?? server!.url
  const self = fileURLToPath(import.meta.url)
  let ready = 0
  const children: Array<ReturnType<typeof spawn>> = []
  let started = 0
  const counts = await Promise.all(
    Array.from({ length: WORKERS }, (_, i) =>
      new Promise<number>((resolve, reject) => {
        let out = ""
        const child = spawn(process.execPath, [...process.execArgv, self, "worker", url, `worker ${i + 1}`], {
          stdio: ["pipe", "pipe", "inherit"],
          env: { ...process.env, REDIS_URL: undefined }
        })
        children.push(child)
        child.stdout!.on("data", (chunk) => {
          out += String(chunk)
          if (String(chunk).includes("ready") && ++ready === WORKERS) {
            started = Date.now()
            for (const c of children) c.stdin!.end("go\n")
          } else if (!String(chunk).includes("ready")) {
            process.stdout.write(chunk)
          }
        })
        child.on("exit", (code) =>
          code === 0 ? resolve(Number(/(\d+) calls/.exec(out)?.[1] ?? 0)) : reject(new Error(`worker exited ${code}`)))
      }))
  )
  const total = counts.reduce((a, b) => a + b, 0)
  const seconds = (Date.now() - started) / 1000
  process.stdout.write(
    `all ${WORKERS} workers: ${total} calls in ${seconds.toFixed(1)} s; ` +
      `the shared budget allows at most 10 + 5/s × ${seconds.toFixed(1)} s = ${Math.floor(10 + 5 * seconds)}\n`
  )
  await server?.close()
}

if (process.argv[2] === "worker") {
  worker(process.argv[3]!, process.argv[4]!).then(() => process.exit(0), (error) => {
    process.stderr.write(`${String(error)}\n`)
    process.exit(1)
  })
} else {
  main().then(() => process.exit(0), (error) => {
    process.stderr.write(`${String(error)}\n`)
    process.exit(1)
  })
}
