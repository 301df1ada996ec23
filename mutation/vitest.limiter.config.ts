import { mutationConfig } from "./vitest.shared.js"

// RateLimiter.property.test.ts is left out: its properties take about 50 s uninstrumented (one is a throughput
// bound under saturation), which times out under Stryker's instrumentation on every mutant they cover.
export default mutationConfig([
  "packages/core/test/RateLimiter.test.ts",
  "packages/core/test/RateLimiter.queue.test.ts",
  "packages/core/test/RateLimiter.metrics.test.ts",
  "packages/core/test/RateLimiter.sync.test.ts"
])
