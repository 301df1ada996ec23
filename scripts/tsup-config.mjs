// The one tsup configuration every package builds with: ESM in dist/esm (.js) and CommonJS in dist/cjs
// (.cjs), with source maps, for Node 20 (shims: import.meta.url in CommonJS); code shared by several entry points
// goes to a shared chunk (splitting), so each class exists once per format. Declarations: tsc
// (tsconfig.build.json) into dist/dts, then scripts/dual-dts.mjs (dist/esm/*.d.ts and dist/cjs/*.d.cts).
import { defineConfig } from "tsup"

/** @param {ReadonlyArray<string>} entry the package's entry points */
export const packageConfig = (entry) =>
  defineConfig({
    entry: [...entry],
    format: ["esm", "cjs"],
    outDir: "dist",
    sourcemap: true,
    clean: true,
    shims: true,
    splitting: true,
    target: "node20",
    outExtension: ({ format }) => ({ js: format === "cjs" ? ".cjs" : ".js" }),
    esbuildOptions: (options, { format }) => {
      options.outdir = format === "cjs" ? "dist/cjs" : "dist/esm"
    }
  })
