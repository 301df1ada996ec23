import { mutationOptions } from "./stryker.shared.mjs"

export default mutationOptions("limiter", ["packages/core/src/RateLimiter.ts"])
