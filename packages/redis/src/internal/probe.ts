/**
 * Test instrumentation, kept off the admission path: `make` looks this service up once, when the
 * store is built. Without it (every build outside the tests) the store's admission decoder has no
 * probe at all; with it, the probe is called with the store's time (the script's `now`, in epoch
 * milliseconds) and the debits of every admission the Redis store grants. The multi-process test
 * provides it so that its window check uses the exact instant each admission happened on the server.
 *
 * @internal
 */
import type { LimiterStore } from "@sluice/core"
import * as Context from "effect/Context"

/** @internal */
export class AdmissionProbe extends Context.Tag("@sluice/redis/internal/AdmissionProbe")<
  AdmissionProbe,
  (now: number, debits: ReadonlyArray<LimiterStore.Debit>) => void
>() {}
