import { mutationOptions } from "./stryker.shared.mjs"

// the limiter's mechanism (internal/rateLimiter.ts since the public module was split; the ledger is pnpm mutate:ledger)
export default mutationOptions("limiter", ["packages/core/src/internal/rateLimiter.ts"])
