import { mutationOptions } from "./stryker.shared.mjs"

export default mutationOptions("bulk", [
  "packages/openai/src/BulkRunner.ts",
  "packages/openai/src/internal/bulkFiles.ts",
  "packages/openai/src/internal/bulkInput.ts"
])
