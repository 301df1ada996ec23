import { mutationOptions } from "./stryker.shared.mjs"

// The bulk runner's reporting: live progress (its hooks, `view`, the periodic report), the summary's text, the
// deprecated exit code and renderer, and the failures written for invalid bodies and responses
// (internal/bulkProgress.ts and what code BulkRunner.ts holds beside its types), against the runner's edge tests
// only. `run` itself (internal/bulkRun.ts) is `pnpm mutate:bulk`, hours on this machine.
export default mutationOptions("bulkreport", [
  "packages/openai/src/internal/bulkProgress.ts",
  "packages/openai/src/BulkRunner.ts"
])
