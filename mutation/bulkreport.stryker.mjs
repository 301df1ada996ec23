import { mutationOptions } from "./stryker.shared.mjs"

// The bulk runner's reporting: live progress (its hooks, `view`, `render`), the summary and its text, the exit
// code, and the failures written for invalid bodies and responses (BulkRunner.ts lines 186-508 as of commit
// 63955ef: from the "progress" banner to `invalidResponse`; move the range when the file changes), against the
// runner's edge tests only. `run` itself (line 509 on) is `pnpm mutate:bulk`, hours on this machine.
export default mutationOptions("bulkreport", ["packages/openai/src/BulkRunner.ts:186-508"])
