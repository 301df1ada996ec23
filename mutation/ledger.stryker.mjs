import { mutationOptions } from "./stryker.shared.mjs"

// The ledger of admissions that report reconciliation and refunds replay (internal/ledger.ts: its constants,
// refundOn, lastAtMost and the Ledger class). `pnpm mutate:limiter` mutates internal/rateLimiter.ts.
export default mutationOptions("ledger", ["packages/core/src/internal/ledger.ts"])
