import { mutationConfig } from "./vitest.shared.js"

// RateLimiter.property.test.ts is left out: its properties take about 50 s uninstrumented (one is a throughput
// bound under saturation), which times out under Stryker's instrumentation on every mutant they cover. So is
// RateLimiter.dispatch.test.ts: its one property (25 random queues against a full scan) takes about 8 s
// uninstrumented and covers nearly every mutant of the dispatcher. RateLimiter.mutants.test.ts holds the tests
// written from the survivors of lines 1-350, RateLimiter.mutants2.test.ts those of the later lines (and
// RateLimiter.mutants3.test.ts those of the seventh session's sample of lines 351-end, mutation/sample.mjs, and
// RateLimiter.mutants4.test.ts those of the ninth session's sample of the lines after the dispatcher's pass, and
// RateLimiter.mutants5.test.ts those of the tenth session's sample of the whole file):
// SLUICE_MUTATE_BEFORE=1 leaves both out (the "before" figure of lines 1-350). The later lines' before runs (from line
// 351, fifth session) ran without it, before RateLimiter.mutants2.test.ts existed: RateLimiter.mutants.test.ts was on
// main by then. RateLimiter.ramp.test.ts (the slow starts, internal/ramp.ts) is in since the fifth session (and
// RateLimiter.ramp.mutants.test.ts, from the survivors of ramp.ts's whole run, since the tenth), and
// RateLimiter.gauges.test.ts (sampleMetrics, the gauges at the file's end) since the eighth.
// SLUICE_MUTATE_LEAN=1 also leaves out RateLimiter.sync.test.ts and Ledger.mutants.test.ts (about 60 s and 12 s
// uninstrumented, mostly properties of report adoption), for the chunks away from `sync` (the dispatcher, acquire):
// those files cover nearly every mutant there, and a surviving mutant runs every test that covers it. The figure is
// then a lower bound (a mutant only those files kill counts as survived).
const lean = process.env.SLUICE_MUTATE_LEAN === "1"
export default mutationConfig([
  "packages/core/test/RateLimiter.test.ts",
  "packages/core/test/RateLimiter.queue.test.ts",
  "packages/core/test/RateLimiter.metrics.test.ts",
  ...(lean ? [] : ["packages/core/test/RateLimiter.sync.test.ts"]),
  "packages/core/test/RateLimiter.learned.test.ts",
  "packages/core/test/RateLimiter.ramp.test.ts",
  "packages/core/test/RateLimiter.ramp.mutants.test.ts",
  "packages/core/test/RateLimiter.gauges.test.ts",
  ...(lean ? [] : ["packages/core/test/Ledger.mutants.test.ts"]),
  ...(process.env.SLUICE_MUTATE_BEFORE === "1" ? [] : [
    "packages/core/test/RateLimiter.mutants.test.ts",
    "packages/core/test/RateLimiter.mutants2.test.ts",
    "packages/core/test/RateLimiter.mutants3.test.ts",
    "packages/core/test/RateLimiter.mutants4.test.ts",
    "packages/core/test/RateLimiter.mutants5.test.ts"
  ])
])
