import { mutationOptions } from "./stryker.shared.mjs"

// The bulk runner itself (`BulkRunner.run` is internal/bulkRun.ts); its file and line helpers are
// `bulkfiles.stryker.mjs`, its reporting `bulkreport.stryker.mjs`.
export default mutationOptions("bulk", ["packages/openai/src/internal/bulkRun.ts"])
