import { mutationOptions } from "./stryker.shared.mjs"

export default mutationOptions("breaker", [
  "packages/core/src/CircuitBreaker.ts",
  "packages/core/src/internal/circuitBreaker.ts"
])
