#!/usr/bin/env node
// Run from a package directory after `tsc -p tsconfig.build.json` has written its declarations to dist/dts.
// Gives each module format its own declarations, so that each resolves its dependencies' types as the consumer
// does:
//   dist/esm/X.d.ts   ES module declarations (the package is "type": "module"), beside dist/esm/X.js; their
//                     `import "openai"` resolves openai's .d.mts, as an ES module consumer's does;
//   dist/cjs/X.d.cts  CommonJS declarations, beside dist/cjs/X.cjs, relative specifiers `./Y.js` → `./Y.cjs`;
//                     their `import "openai"` resolves openai's CommonJS .d.ts, as a `require` consumer's does.
// One set serving both (CommonJS-typed, as before) handed an ES module consumer's `new OpenAI()` to a parameter
// typed by openai's other flavour: TS2345, "Property '#private' … refers to a different member".
// Declaration maps follow (X.d.ts.map, X.d.cts.map; their sources stay ../../src/…). dist/dts is removed.
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"

const from = NodePath.resolve("dist/dts")
if (!NodeFs.existsSync(from)) {
  console.error(`dual-dts: ${from} does not exist (run tsc first)`)
  process.exit(1)
}
const relative = /(["'])(\.{1,2}\/[^"']*?)\.js\1/g

const walk = (dir) =>
  NodeFs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(NodePath.join(dir, entry.name)) : [NodePath.join(dir, entry.name)]
  )

let count = 0
for (const file of walk(from)) {
  const rel = NodePath.relative(from, file)
  const esm = NodePath.join("dist/esm", rel)
  NodeFs.mkdirSync(NodePath.dirname(esm), { recursive: true })
  if (rel.endsWith(".d.ts")) {
    const text = NodeFs.readFileSync(file, "utf8")
    NodeFs.writeFileSync(esm, text)
    const base = NodePath.basename(rel, ".d.ts")
    const cjs = NodePath.join("dist/cjs", NodePath.dirname(rel), `${base}.d.cts`)
    NodeFs.mkdirSync(NodePath.dirname(cjs), { recursive: true })
    NodeFs.writeFileSync(
      cjs,
      text.replace(relative, (_, quote, path) => `${quote}${path}.cjs${quote}`).replace(
        `//# sourceMappingURL=${base}.d.ts.map`,
        `//# sourceMappingURL=${base}.d.cts.map`
      )
    )
    count++
  } else if (rel.endsWith(".d.ts.map")) {
    NodeFs.copyFileSync(file, esm)
    const base = NodePath.basename(rel, ".d.ts.map")
    const map = JSON.parse(NodeFs.readFileSync(file, "utf8"))
    map.file = `${base}.d.cts`
    NodeFs.writeFileSync(NodePath.join("dist/cjs", NodePath.dirname(rel), `${base}.d.cts.map`), JSON.stringify(map))
  }
}
NodeFs.rmSync(from, { recursive: true, force: true })
console.log(`dual-dts: ${count} declaration files → dist/esm/*.d.ts and dist/cjs/*.d.cts`)
