import { mutationOptions } from "./stryker.shared.mjs"

// A part of RateLimiter.ts that fits a session on a loaded machine: the ledger of admissions that report
// reconciliation and refunds replay (its constants, refundOn, lastAtMost and the Ledger class; lines as of commit
// d1f8db5 of RateLimiter.ts: move the range when the file changes). `pnpm mutate:limiter` mutates the whole file.
export default mutationOptions("ledger", ["packages/core/src/RateLimiter.ts:398-591"])
