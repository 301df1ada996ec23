import { mutationConfig } from "./vitest.shared.js"

// The runner's edge tests: the summary text, the progress renderer and hooks, exit codes (some through short runs).
export default mutationConfig(["packages/openai/test/BulkRunner.edges.test.ts"])
