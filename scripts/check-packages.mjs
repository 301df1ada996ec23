#!/usr/bin/env node
// After `pnpm build`: checks the built packages the way a consumer sees them (no "sluice-source" condition):
// an ES module and a CommonJS project each import every package, type-check against its .d.ts (module node16),
// and load it at run time. Usage: pnpm build && node scripts/check-packages.mjs
import { execFileSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"

const root = NodePath.resolve(NodePath.dirname(new URL(import.meta.url).pathname), "..")
const tsc = NodePath.join(root, "node_modules/.bin/tsc")
const packages = {
  "@sluice/core": ["Budget", "RateLimiter", "Router"],
  "@sluice/openai": ["OpenAi", "OpenAiError", "Routing", "BulkRunner"],
  "@sluice/testing": ["Simulator", "SimFetch", "Scenario"],
  "@sluice/redis": ["RedisLimiterStore"],
  "@sluice/cli": ["Cli"]
}
let failed = false
for (const kind of ["module", "commonjs"]) {
  const dir = NodePath.join(root, ".sluice-tmp", `consumer-${kind}`)
  NodeFs.rmSync(dir, { recursive: true, force: true })
  NodeFs.mkdirSync(dir, { recursive: true })
  NodeFs.writeFileSync(NodePath.join(dir, "package.json"), JSON.stringify({ type: kind }))
  const lines = Object.entries(packages).map(([name, names], i) =>
    `import { ${names.join(", ")} } from "${name}"\nexport const p${i} = [${names.join(", ")}].map((m) => typeof m)`
  )
  NodeFs.writeFileSync(
    NodePath.join(dir, "index.ts"),
    lines.join("\n") + "\nconsole.log(JSON.stringify([p0, p1, p2, p3, p4]))\n"
  )
  try {
    execFileSync(tsc, [
      "--module",
      "node16",
      "--moduleResolution",
      "node16",
      "--target",
      "es2022",
      "--strict",
      "--skipLibCheck",
      "--outDir",
      "out",
      "index.ts"
    ], { cwd: dir, stdio: "pipe" })
    NodeFs.writeFileSync(NodePath.join(dir, "out", "package.json"), JSON.stringify({ type: kind }))
    const printed = execFileSync(process.execPath, [NodePath.join(dir, "out", "index.js")], { cwd: dir, stdio: "pipe" })
      .toString()
    if (printed.includes("undefined")) throw new Error(`an export is missing at run time: ${printed}`)
    console.log(`${kind} consumer: types and run time ok`)
  } catch (error) {
    failed = true
    console.error(
      `${kind} consumer failed:\n${error.stdout?.toString() ?? ""}${error.stderr?.toString() ?? ""}${
        error.stdout ? "" : error.message
      }`
    )
  }
}
process.exit(failed ? 1 : 0)
