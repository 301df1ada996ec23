import { mutationConfig } from "./vitest.shared.js"

export default mutationConfig(["packages/core/test/Retry*.test.ts"])
