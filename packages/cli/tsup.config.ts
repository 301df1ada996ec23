import { packageConfig } from "../../scripts/tsup-config.mjs"

// The bin (src/main.ts) is built as an ES module only (bin/sluice.mjs imports dist/esm/main.js), in one build with the
// main entry point and with code splitting: the modules they share are chunks of their own (one copy of each class),
// and each command's handler is a chunk loaded when the command runs, so start-up loads only the command tree. The
// CommonJS build has the main entry point alone, unsplit (a dynamic import of a handler initializes its bundled
// module then).
const esm = packageConfig(["src/index.ts", "src/main.ts"])
const cjs = packageConfig(["src/index.ts"])

export default [
  { ...esm, format: ["esm"], splitting: true, outDir: "dist/esm" },
  { ...cjs, format: ["cjs"], outDir: "dist/cjs" }
]
