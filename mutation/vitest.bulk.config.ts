import { mutationConfig } from "./vitest.shared.js"

export default mutationConfig(["packages/openai/test/BulkRunner*.test.ts"])
