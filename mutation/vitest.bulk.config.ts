import { mutationConfig } from "./vitest.shared.js"

// The tests that go through BulkRunner.run (internal/bulkRun.ts): the runner's behaviour, its edges (summary, exit
// codes, progress), the path guards and lock, the per-endpoint bodies and response checks (Bodies.test.ts) and the
// Batch API offload (BulkRunner.offload.test.ts).
// BulkRunner.mutants.test.ts holds the tests written from this run's survivors: SLUICE_MUTATE_BEFORE=1 leaves it
// out (the "before" figure of the fourth session). BulkRunner.mutants2.test.ts holds those of the sixth session's
// chunked runs: SLUICE_MUTATE_BEFORE=6 leaves only it out (their "before": BulkRunner.mutants.test.ts was on main).
// BulkRun.mutants.test.ts holds those of the tenth session's whole run: any SLUICE_MUTATE_BEFORE leaves it out.
export default mutationConfig([
  "packages/openai/test/BulkRunner.test.ts",
  "packages/openai/test/BulkRunner.edges.test.ts",
  "packages/openai/test/BulkRunnerGuards.test.ts",
  "packages/openai/test/Bodies.test.ts",
  "packages/openai/test/BulkRunner.offload.test.ts",
  ...(process.env.SLUICE_MUTATE_BEFORE === "1" ? [] : ["packages/openai/test/BulkRunner.mutants.test.ts"]),
  ...(process.env.SLUICE_MUTATE_BEFORE === undefined
    ? ["packages/openai/test/BulkRunner.mutants2.test.ts", "packages/openai/test/BulkRun.mutants.test.ts"]
    : [])
])
