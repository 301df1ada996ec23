import { mutationOptions } from "./stryker.shared.mjs"

// The request-line decoder and the line helpers of bulkFiles.ts (lines, isBlank, countLines, lineWriter: lines
// 1-227 as of commit 95cb6b3; move the range when the file changes). The guards below them (path checks, the
// output lock, resume) are left out of this run: with every mutant of the file it needs over an hour here.
export default mutationOptions("bulkfiles", [
  "packages/openai/src/internal/bulkFiles.ts:1-227",
  "packages/openai/src/internal/bulkInput.ts"
])
