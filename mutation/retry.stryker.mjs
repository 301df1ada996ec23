import { mutationOptions } from "./stryker.shared.mjs"

export default mutationOptions("retry", ["packages/core/src/Retry.ts", "packages/core/src/internal/retry.ts"])
