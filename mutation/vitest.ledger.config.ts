import { mutationConfig } from "./vitest.shared.js"

export default mutationConfig([
  "packages/core/test/Ledger.test.ts",
  "packages/core/test/RateLimiter.test.ts",
  "packages/core/test/RateLimiter.sync.test.ts"
])
