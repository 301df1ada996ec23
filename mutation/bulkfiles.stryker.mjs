import { mutationOptions } from "./stryker.shared.mjs"

export default mutationOptions("bulkfiles", [
  "packages/openai/src/internal/bulkFiles.ts",
  "packages/openai/src/internal/bulkInput.ts"
])
