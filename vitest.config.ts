import { configDefaults, defineConfig } from "vitest/config"

// Test files that must run in a process of their own: they read or reset process-wide state that another file in the
// same module graph would share (Effect's global metric registry and tracer, process.env, spies and mocks), or they
// drive real processes, signals, Redis, the browser or the CLI (packages/cli, packages/redis).
const isolated = [
  "packages/{cli,redis}/test/**/*.test.ts",
  "packages/core/test/CircuitBreaker.edges.test.ts",
  "packages/core/test/CircuitBreaker.test.ts",
  "packages/core/test/RateLimiter.gauges.test.ts",
  "packages/core/test/RateLimiter.metrics.test.ts",
  "packages/core/test/RateLimiter.mutants2.test.ts",
  "packages/core/test/RateLimiter.mutants3.test.ts",
  "packages/core/test/RateLimiter.storeContract.test.ts",
  "packages/core/test/RateLimiter.sync.test.ts",
  "packages/core/test/Retry.edges.test.ts",
  "packages/core/test/Router.test.ts",
  "packages/openai/test/BulkFiles.guards.test.ts",
  "packages/openai/test/BulkFiles.mutants.test.ts",
  "packages/openai/test/BulkRunner.mutants.test.ts",
  "packages/openai/test/OpenAiLearning.bareProperty.test.ts",
  "packages/openai/test/OpenAiMetrics.test.ts",
  "packages/openai/test/OpenAiPacing.property.test.ts",
  "packages/openai/test/OpenAiWire.test.ts",
  "packages/openai/test/Pipeline.test.ts",
  "packages/openai/test/ResponseCache.test.ts",
  "packages/openai/test/Routing.test.ts",
  "test/opentelemetry.test.ts",
  "test/prometheus.test.ts",
  "test/telemetry-names.test.ts"
]
const all = ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"]
const exclude = [...configDefaults.exclude, "**/.stryker-tmp/**"]

export default defineConfig({
  resolve: { conditions: ["sluice-source"] },
  ssr: { resolve: { conditions: ["sluice-source"] } },
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default"],
    poolOptions: {
      // The library's own tests (core, openai, testing, effect-ai, the root's) share one module graph in one worker
      // thread: Effect, the SDK and Sluice's sources load once instead of once per file. For those 85 files that took
      // the run from 436 s of CPU (collect 493 s summed) to 143 s (collect 40 s), measured side by side; they also
      // pass in a shuffled order (`npx vitest run --project shared --sequence.shuffle`).
      threads: { isolate: false, maxThreads: 1, minThreads: 1 },
      // The others, one fresh process per file, two at a time.
      forks: { maxForks: 2, minForks: 1 }
    },
    projects: [
      { extends: true, test: { name: "shared", include: all, exclude: [...exclude, ...isolated], pool: "threads" } },
      { extends: true, test: { name: "isolated", include: isolated, exclude, pool: "forks" } }
    ]
  }
})
