import { defineConfig } from "tsup"

export default defineConfig({
  entry: ["src/index.ts", "src/RedisServer.ts"],
  format: ["esm", "cjs"],
  outDir: "dist",
  sourcemap: true,
  clean: false,
  splitting: false,
  target: "node20",
  outExtension: ({ format }) => ({ js: format === "cjs" ? ".cjs" : ".js" }),
  esbuildOptions: (options, { format }) => {
    options.outdir = format === "cjs" ? "dist/cjs" : "dist/esm"
  }
})
