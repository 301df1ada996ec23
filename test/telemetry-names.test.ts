/**
 * The metric and span names table of `packages/openai/README.md` ("Metrics and spans") against the code: every
 * metric the packages' sources define (`Metric.counter|gauge|histogram("name"`, and the OpenAI telemetry's own
 * `counter("name"`), with its kind, and every span name and span attribute they set, must be in the tables, and
 * nothing else. Reading the sources (not a run) sees every metric, also those a given run never updates.
 */
import { describe, expect, it } from "@effect/vitest"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../", import.meta.url))

/** The `.ts` files under `dir`, recursively. */
const sources = (dir: string): Array<string> =>
  NodeFs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = NodePath.join(dir, entry.name)
    return entry.isDirectory() ? sources(path) : entry.name.endsWith(".ts") ? [path] : []
  })

const packages = NodeFs.readdirSync(NodePath.join(root, "packages"))
const files = packages.flatMap((name) => {
  const src = NodePath.join(root, "packages", name, "src")
  return NodeFs.existsSync(src) ? sources(src).map((path) => ({ pkg: name, path })) : []
})

/** Text without comments (so a name in JSDoc or an example is not taken for a definition). */
const code = (path: string) =>
  NodeFs.readFileSync(path, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "")

/** The rows of the table between `<!-- {name}-table` and `<!-- /{name}-table -->`: its cells, header cut. */
const table = (text: string, name: string): Array<Array<string>> => {
  const start = text.indexOf(`<!-- ${name}-table`)
  const end = text.indexOf(`<!-- /${name}-table -->`)
  expect(start, `the ${name} table's markers`).toBeGreaterThanOrEqual(0)
  expect(end).toBeGreaterThan(start)
  return text.slice(start, end).split("\n").filter((line) => line.startsWith("| `")).map((line) =>
    line.slice(1, -1).split(" | ").map((cell) => cell.trim())
  )
}
const ticked = (cell: string) => Array.from(cell.matchAll(/`([^`]+)`/g), (m) => m[1]!)

const readme = NodeFs.readFileSync(NodePath.join(root, "packages/openai/README.md"), "utf8")

describe("the metric and span names table", () => {
  it("lists exactly the metrics the code defines, with their package and kind", () => {
    const defined = new Map<string, string>()
    for (const { path, pkg } of files) {
      const text = code(path)
      for (const m of text.matchAll(/Metric\.(counter|gauge|histogram|summary|frequency)\(\s*"([^"]+)"/g)) {
        defined.set(m[2]!, `${pkg} ${m[1]}`)
      }
      // a file's own helper around Metric.counter (the OpenAI telemetry's)
      if (/const counter = \(name: string[^)]*\) => Metric\.counter\(name/.test(text)) {
        for (const m of text.matchAll(/\bcounter\(\s*"([^"]+)"/g)) defined.set(m[1]!, `${pkg} counter`)
      }
    }
    const documented = new Map(table(readme, "metrics").map((row) => [ticked(row[0]!)[0]!, `${row[1]} ${row[2]}`]))
    expect(defined.size).toBeGreaterThan(30)
    expect(Object.fromEntries(documented)).toEqual(Object.fromEntries(defined))
  })

  it("lists exactly the spans and span attributes the code sets", () => {
    const spans = table(readme, "spans")
    const documented = Object.fromEntries(spans.map((row) => [ticked(row[0]!)[0]!, ticked(row[1]!).sort()]))
    /** Attribute keys set in a file: object keys and `attributes["…"]` of the span attribute namespaces. */
    const attributes = (path: string) => {
      const text = code(path)
      const keys = new Set<string>()
      for (const m of text.matchAll(/"((?:gen_ai|sluice|error|openai)\.[a-z_.]+)"\s*:/g)) keys.add(m[1]!)
      for (const m of text.matchAll(/attributes\["([^"]+)"\]\s*=/g)) keys.add(m[1]!)
      return Array.from(keys).sort()
    }
    /** Spans named by a literal, and the file that sets each (its attributes are that file's). */
    const literal = new Map<string, string>()
    for (const { path } of files) {
      for (
        const m of code(path).matchAll(/(?:withSpan|makeSpan|makeSpanScoped|useSpan)\(\s*(?:[\w$.]+\s*,\s*)?"([^"]+)"/g)
      ) {
        literal.set(m[1]!, path)
      }
    }
    const call = NodePath.join(root, "packages/openai/src/internal/call.ts")
    // the call's span is named from its operation and model (not a literal)
    expect(code(call)).toContain("name: `${call.operation} ${call.model}`")
    const inCode = Object.fromEntries([
      ["{gen_ai.operation.name} {gen_ai.request.model}", attributes(call)],
      ...Array.from(literal, ([name, path]) => [name, attributes(path)])
    ])
    expect(literal.size).toBeGreaterThan(0)
    expect(documented).toEqual(inCode)
  })
})
