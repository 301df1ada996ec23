// The one tsup configuration every package builds with: ESM in dist/esm (.js) and CommonJS in dist/cjs
// (.cjs), with source maps, for Node 20 (shims: import.meta.url in CommonJS). No code splitting: tsup's CommonJS
// splitting rewrites `a ?? (yield* b)` into an arrow function, which is a syntax error in a generator. A second entry
// point that needs the first one's modules imports them by the package's own name (listed in `external`), so
// each class exists once per format. Declarations: tsc
// (tsconfig.build.json) into dist/dts, then scripts/dual-dts.mjs (dist/esm/*.d.ts and dist/cjs/*.d.cts).
import { defineConfig } from "tsup"

/**
 * @param {ReadonlyArray<string>} entry the package's entry points
 * @param {ReadonlyArray<string>} [external] modules left as imports besides the dependencies (the package's own
 *   name, for a second entry point that imports the first)
 */
export const packageConfig = (entry, external = []) =>
  defineConfig({
    entry: [...entry],
    format: ["esm", "cjs"],
    outDir: "dist",
    sourcemap: true,
    clean: true,
    shims: true,
    splitting: false,
    external: [...external],
    target: "node20",
    outExtension: ({ format }) => ({ js: format === "cjs" ? ".cjs" : ".js" }),
    esbuildOptions: (options, { format }) => {
      options.outdir = format === "cjs" ? "dist/cjs" : "dist/esm"
    }
  })
