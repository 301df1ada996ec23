import { mutationConfig } from "./vitest.shared.js"

// The runner's edge tests: the summary text, the progress renderer and hooks, exit codes (some through short runs);
// and the tenth session's tests written from this run's survivors (BulkRun.mutants.test.ts, also the bulk run's),
// which SLUICE_MUTATE_BEFORE leaves out.
export default mutationConfig([
  "packages/openai/test/BulkRunner.edges.test.ts",
  ...(process.env.SLUICE_MUTATE_BEFORE === undefined ? ["packages/openai/test/BulkRun.mutants.test.ts"] : [])
])
