#!/usr/bin/env node
// Runs a TypeScript entry point from the workspace sources (no build step):
// tsx for the transform, the "sluice-source" export condition for @sluice/* packages.
import { spawnSync } from "node:child_process"
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)
const tsx = require.resolve("tsx")
const [entry, ...args] = process.argv.slice(2)
if (!entry) {
  console.error("usage: run-ts.mjs <entry.ts> [args...]")
  process.exit(2)
}
const result = spawnSync(process.execPath, ["--conditions=sluice-source", "--import", tsx, entry, ...args], {
  stdio: "inherit"
})
process.exit(result.status ?? 1)
