#!/usr/bin/env node
// Marks a package's dist/dts as CommonJS-format declarations (run from the package directory after tsc).
// The packages are "type": "module", so without this marker TypeScript reads the .d.ts files as ES modules and
// a CommonJS consumer (module node16) gets TS1479 when it `require`s the package. Declarations in CommonJS form
// serve both: an ES module may import a CommonJS-typed package, as it does effect's own.
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"

const dir = NodePath.resolve("dist/dts")
if (!NodeFs.existsSync(dir)) {
  console.error(`dts-commonjs: ${dir} does not exist (run tsc first)`)
  process.exit(1)
}
NodeFs.writeFileSync(NodePath.join(dir, "package.json"), JSON.stringify({ type: "commonjs" }) + "\n")
