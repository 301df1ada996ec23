/**
 * Test instrumentation: when set, called with the store's time (the script's `now`, in epoch
 * milliseconds) and the debits of every admission the Redis store grants. The multi-process test logs
 * admissions with it so that its window check uses the exact instant each admission happened.
 *
 * @internal
 */
import type { LimiterStore } from "@sluice/core"

/** @internal */
export const hooks: {
  onAdmitted: ((now: number, debits: ReadonlyArray<LimiterStore.Debit>) => void) | undefined
} = { onAdmitted: undefined }
