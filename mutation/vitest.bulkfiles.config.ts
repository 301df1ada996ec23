import { mutationConfig } from "./vitest.shared.js"

// The direct tests of the line helpers and the decoder, and the guards (which read lines too); the end-to-end
// BulkRunner tests also reach these files but cost seconds of real file I/O per mutant. BulkFiles.guards.test.ts
// holds the tests written from the survivors of lines 228 to the end (path checks, the lock, resume):
// SLUICE_MUTATE_BEFORE=1 leaves it out (the "before" figure of that chunk).
export default mutationConfig([
  "packages/openai/test/BulkFiles.test.ts",
  "packages/openai/test/BulkFiles.mutants.test.ts",
  "packages/openai/test/BulkRunnerGuards.test.ts",
  ...(process.env.SLUICE_MUTATE_BEFORE === "1" ? [] : ["packages/openai/test/BulkFiles.guards.test.ts"])
])
