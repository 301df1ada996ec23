import { mutationConfig } from "./vitest.shared.js"

// The direct tests of the line helpers and the decoder, and the guards (which read lines too); the end-to-end
// BulkRunner tests also reach these files but cost seconds of real file I/O per mutant.
export default mutationConfig([
  "packages/openai/test/BulkFiles.test.ts",
  "packages/openai/test/BulkFiles.mutants.test.ts",
  "packages/openai/test/BulkRunnerGuards.test.ts"
])
