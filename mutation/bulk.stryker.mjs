import { mutationOptions } from "./stryker.shared.mjs"

// The bulk runner itself; its file and line helpers are `bulkfiles.stryker.mjs`.
export default mutationOptions("bulk", ["packages/openai/src/BulkRunner.ts"])
