// Counts a run's mutants from its partial results (reports/mutation/<report>.partial.jsonl, see partial.reporter.mjs):
// `node mutation/partial.mjs <report>`; with --survivors, lists those left alive (line, mutator, replacement).
import * as NodeFs from "node:fs"

const [name, ...rest] = process.argv.slice(2)
if (name === undefined) {
  console.error("usage: node mutation/partial.mjs <report> [--survivors]")
  process.exit(2)
}
const results = NodeFs.readFileSync(`reports/mutation/${name}.partial.jsonl`, "utf8").split("\n").filter(Boolean)
  .map((line) => JSON.parse(line))
const count = (status) => results.filter((m) => m.status === status).length
const killed = count("Killed")
const survived = count("Survived")
const timeout = count("Timeout")
const noCoverage = count("NoCoverage")
const detected = killed + timeout
const valid = detected + survived + noCoverage
const score = valid === 0 ? "n/a" : `${(100 * detected / valid).toFixed(2)}%`
console.log(`| ${name} (${results.length} tested) | ${killed} | ${survived} | ${timeout} | ${noCoverage} | ${score} |`)
const other = results.length - valid
if (other > 0) console.log(`(${other} others: ${[...new Set(results.map((m) => m.status))].join(", ")})`)
if (rest.includes("--survivors")) {
  for (const m of results.filter((m) => m.status === "Survived" || m.status === "NoCoverage")) {
    console.log(
      `${m.location.start.line}:${m.location.start.column} ${m.status} ${m.mutatorName} ${
        JSON.stringify(m.replacement)
      }`
    )
  }
}
