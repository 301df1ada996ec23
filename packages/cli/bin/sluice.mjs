#!/usr/bin/env node
// The `sluice` bin. In the workspace (tsx resolvable and src/ present) it runs the TypeScript sources with the
// "sluice-source" export condition, in this same process (so signals and kill -9 hit the runner itself);
// otherwise (an installed package) it runs the built dist/. SLUICE_DIST=1 forces dist.
import { existsSync } from "node:fs"
import { register } from "node:module"
import { fileURLToPath } from "node:url"

const src = new URL("../src/main.ts", import.meta.url)
const dist = new URL("../dist/esm/main.js", import.meta.url)

const canRunSource = () => {
  if (process.env.SLUICE_DIST === "1" || !existsSync(fileURLToPath(src))) return false
  try {
    import.meta.resolve("tsx/esm/api")
    return true
  } catch {
    return false
  }
}

if (canRunSource()) {
  const conditions = "export async function resolve(specifier, context, next) {" +
    " return next(specifier, { ...context, conditions: [...context.conditions, 'sluice-source'] }) }"
  register(`data:text/javascript,${encodeURIComponent(conditions)}`, import.meta.url)
  const { register: registerTsx } = await import("tsx/esm/api")
  registerTsx()
  await import(src.href)
} else {
  await import(dist.href)
}
