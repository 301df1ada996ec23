/**
 * Several worker processes share one organization's budget through Redis.
 *
 *   node scripts/run-ts.mjs examples/redis-workers.ts            (starts a throwaway redis-server)
 *   REDIS_URL=redis://127.0.0.1:6379 node scripts/run-ts.mjs examples/redis-workers.ts
 *   node scripts/run-ts.mjs examples/redis-workers.ts --memory   (the same workers, in-memory stores)
 *
 * The story: org:acme may make 300 requests a minute (5 a second, bursts of 10). Three workers, each
 * in its own OS process, each as greedy as it can be, run for the same 6 seconds. With the memory store
 * each process has a budget of its own: 3 × (10 + 5 × 6) = 120 calls, three times what OpenAI allows (a
 * 429 storm). With the Redis store they share one: all three together make at most 10 + 5 × 6 = 40.
 * The only difference is the store layer.
 */
import { Budget, LimiterStore, RateLimiter } from "@sluice/core"
import { RedisLimiterStore } from "@sluice/redis"
import * as RedisServer from "@sluice/redis/RedisServer"
import { Console, Effect, Layer, Redacted } from "effect"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

const WORKERS = 3
const FIBERS = 4
const RUN_MILLIS = 6_000
const budgets = [Budget.make("org:acme", [Budget.Limit.perMinute("requests", 300, 10)])]

// --- a worker: one process, greedy fibers, one shared budget ------------------------------------------
const worker = (url: string, name: string, memory: boolean) => {
  // the one line that makes the budget shared: the Redis store instead of LimiterStore.layerMemory
  const Store = memory
    ? LimiterStore.layerMemory
    : RedisLimiterStore.layer({ url: Redacted.make(url), onUnavailable: { fallback: 1 / WORKERS } })
  const Limits = RateLimiter.layer({ budgets, wakeJitter: 0.2 }).pipe(Layer.provide(Store))

  const program = Effect.gen(function*() {
    const limiter = yield* RateLimiter.RateLimiter
    // ready; wait for the main process's "go" so that all workers run over the same 6 seconds
    yield* Console.log("ready")
    yield* Effect.async<void>((resume) => {
      process.stdin.once("data", () => resume(Effect.void))
    })
    const until = Date.now() + RUN_MILLIS
    // A greedy fiber: acquire, call, again. The deadline is the end of the run: when the limiter says
    // there is no room before it (DeadlineExceeded, at once, not after waiting), the fiber is done.
    const greedy = Effect.gen(function*() {
      let calls = 0
      while (true) {
        const permit = yield* Effect.either(limiter.acquire(["org:acme"], { requests: 1 }, { deadline: until }))
        if (permit._tag === "Left") return calls
        calls++ // here the worker would call OpenAI (and settle the permit with the usage)
      }
    })
    const counts = yield* Effect.all(Array.from({ length: FIBERS }, () => greedy), { concurrency: "unbounded" })
    const calls = counts.reduce((a, b) => a + b, 0)
    yield* Console.log(`${name}: ${calls} calls`)
  })
  return Effect.runPromise(program.pipe(Effect.provide(Limits)))
}

// --- the main process: Redis, then the workers ------------------------------------------------------
const main = async (memory: boolean) => {
  const server = memory || process.env.REDIS_URL !== undefined ? undefined : await RedisServer.start()
  const url = process.env.REDIS_URL ?? server?.url ?? ""
  const self = fileURLToPath(import.meta.url)
  const children: Array<ReturnType<typeof spawn>> = []
  let ready = 0
  try {
    const counts = await Promise.all(
      Array.from({ length: WORKERS }, (_, i) =>
        new Promise<number>((resolve, reject) => {
          let out = ""
          const args = [...process.execArgv, self, "worker", url, `worker ${i + 1}`, ...(memory ? ["--memory"] : [])]
          const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "inherit"] })
          children.push(child)
          child.stdout!.on("data", (chunk) => {
            out += String(chunk)
            if (String(chunk).includes("ready")) {
              if (++ready === WORKERS) { for (const c of children) c.stdin!.end("go\n") }
            } else {
              process.stdout.write(chunk)
            }
          })
          child.on("exit", (code) =>
            code === 0
              ? resolve(Number(/(\d+) calls/.exec(out)?.[1] ?? 0))
              : reject(new Error(`worker ${i + 1} exited ${code}`)))
        }))
    )
    const total = counts.reduce((a, b) => a + b, 0)
    const seconds = RUN_MILLIS / 1000
    const allowed = 10 + 5 * seconds
    process.stdout.write(
      memory
        ? `all ${WORKERS} workers, each with its own memory store: ${total} calls in ${seconds} s, where OpenAI ` +
          `allows the organization ${allowed} (10 + 5/s × ${seconds} s): over the limit\n`
        : `all ${WORKERS} workers, one budget on Redis: ${total} calls in ${seconds} s; ` +
          `the shared budget allows at most 10 + 5/s × ${seconds} s = ${allowed}\n`
    )
  } finally {
    for (const child of children) child.kill()
    await server?.close()
  }
}

if (process.argv[2] === "worker") {
  worker(process.argv[3]!, process.argv[4]!, process.argv.includes("--memory")).then(() => process.exit(0), (error) => {
    process.stderr.write(`${String(error)}\n`)
    process.exit(1)
  })
} else {
  main(process.argv.includes("--memory")).then(() => process.exit(0), (error) => {
    process.stderr.write(`${String(error)}\n`)
    process.exit(1)
  })
}
