import { mutationOptions } from "./stryker.shared.mjs"

// The limiter's slow starts (internal/ramp.ts), against the limiter's tests (mutation/vitest.limiter.config.ts, which
// holds RateLimiter.ramp.test.ts): the vitest config is the limiter's, the report and incremental file ramp's.
export default mutationOptions("ramp", ["packages/core/src/internal/ramp.ts"], {
  vitest: { configFile: "mutation/vitest.limiter.config.ts", related: false }
})
