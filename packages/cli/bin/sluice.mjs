#!/usr/bin/env node
// The `sluice` bin. Installed, it always runs the built dist/ (the package's src/ ships for declaration maps only;
// a tsx in the user's project is never used). In the Sluice repository itself — this file not under a
// node_modules directory and the workspace's pnpm-workspace.yaml three levels up — it runs the TypeScript sources
// with the "sluice-source" export condition, in this same process (so signals and kill -9 hit the runner itself),
// so `pnpm sluice` / `pnpm demo` need no build step. SLUICE_DIST=1 forces dist/ there too.
import { existsSync, realpathSync } from "node:fs"
import { register } from "node:module"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const self = realpathSync(fileURLToPath(import.meta.url))
const src = new URL("../src/main.ts", import.meta.url)
const dist = new URL("../dist/esm/main.js", import.meta.url)

const inWorkspace = () =>
  process.env.SLUICE_DIST !== "1" &&
  !self.split(/[\\/]/).includes("node_modules") &&
  existsSync(join(dirname(self), "..", "..", "..", "pnpm-workspace.yaml")) &&
  existsSync(fileURLToPath(src))

if (inWorkspace()) {
  const conditions = "export async function resolve(specifier, context, next) {" +
    " return next(specifier, { ...context, conditions: [...context.conditions, 'sluice-source'] }) }"
  register(`data:text/javascript,${encodeURIComponent(conditions)}`, import.meta.url)
  const { register: registerTsx } = await import("tsx/esm/api")
  registerTsx()
  await import(src.href)
} else {
  await import(dist.href)
}
