// Writes a Stryker config (reports/mutation/<run>.targets.stryker.mjs) that retests only the mutants a report left
// alive (Survived or NoCoverage), each by its own position, with the lines moved by --shift (lines added above them
// since): `node mutation/targets.mjs <vitest config name> <report> [--shift N]`, then
// `nice -n 19 npx stryker run reports/mutation/<report>.targets.stryker.mjs`. Its report is
// reports/mutation/<report>.targets.json; `node mutation/summary.mjs <report> --targets` counts the two together
// (a killed or timed-out mutant of the first report stays so: tests were only added). Faster than an incremental
// rerun when new tests cover most of the file (that reruns every mutant they cover, timeouts included).
// Several reports (chunks of one run: `bulk.1-156,bulk.157-235`) give one config retesting all of their mutants (one
// dry run instead of one per chunk), named after them joined by `+`; `summary.mjs --targets-from <that name>` reads it.
import * as NodeFs from "node:fs"

const [run, name, ...rest] = process.argv.slice(2)
if (run === undefined || name === undefined) {
  console.error("usage: node mutation/targets.mjs <run> <report> [--shift N]")
  process.exit(2)
}
const shift = Number(rest[rest.indexOf("--shift") + 1] ?? 0) || 0
const ranges = []
for (const part of name.split(",")) {
  const report = JSON.parse(NodeFs.readFileSync(`reports/mutation/${part}.json`, "utf8"))
  for (const [file, { mutants }] of Object.entries(report.files)) {
    for (const m of mutants) {
      if (m.status !== "Survived" && m.status !== "NoCoverage") continue
      // the report's columns are 1-based, a mutate range's 0-based (its end column included)
      const { start, end } = m.location
      ranges.push(`${file}:${start.line + shift}:${start.column - 1}-${end.line + shift}:${end.column - 1}`)
    }
  }
}
const out = name.split(",").join("+")
const config = `import { mutationOptions } from "../../mutation/stryker.shared.mjs"

export default mutationOptions("${run}", [], {
  mutate: ${JSON.stringify([...new Set(ranges)], null, 2)},
  incremental: false,
  htmlReporter: { fileName: "reports/mutation/${out}.targets.html" },
  jsonReporter: { fileName: "reports/mutation/${out}.targets.json" }
})
`
NodeFs.writeFileSync(`reports/mutation/${out}.targets.stryker.mjs`, config)
console.log(`${ranges.length} mutants, reports/mutation/${out}.targets.stryker.mjs`)
