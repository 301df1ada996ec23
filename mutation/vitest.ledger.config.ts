import { mutationConfig } from "./vitest.shared.js"

// The ledger's unit tests against a model, the limiter behaviour suite on the memory store, the sync tests (their
// property covers the ledger through RateLimiter.sync) and the ledger at scale through the limiter
// (Ledger.mutants: over 2,048 calls replayed, a compaction).
export default mutationConfig([
  "packages/core/test/Ledger.test.ts",
  "packages/core/test/Ledger.mutants.test.ts",
  "packages/core/test/RateLimiter.test.ts",
  "packages/core/test/RateLimiter.sync.test.ts"
])
