// Prints a module's mutation score from its Stryker JSON report (reports/mutation/<name>.json):
//   node mutation/summary.mjs <name>[,<name>...] [--without <test file part> ...]
// Several names (the chunks of one run, e.g. limiter.1-350,limiter.351-520) are added up. With --targets [--shift N],
// the mutants a report left alive take their result from its retest (<name>.targets.json, see targets.mjs); with
// --targets-from <retest> (a retest of several chunks, `a+b`), from <retest>.targets.json; with --all as well, every
// mutant the retest holds (killed ones added to its config by hand) takes the retest's result.
// With --without, also the score had the named test files not existed: a mutant counts as killed only when a test
// outside them killed it (needs a run with disableBail, where killedBy lists every killing test; with bail,
// killedBy holds the first killer only and the figure is a lower bound). Timeouts count as detected.
import * as NodeFs from "node:fs"

const [name, ...rest] = process.argv.slice(2)
if (name === undefined) {
  console.error("usage: node mutation/summary.mjs <name> [--without <test file part> ...]")
  process.exit(2)
}
const without = rest.filter((_, i) => rest[i - 1] === "--without")
const targetsFrom = rest.includes("--targets-from") ? rest[rest.indexOf("--targets-from") + 1] : undefined
const targets = rest.includes("--targets") || targetsFrom !== undefined
// with --all, every mutant the retest holds takes its result, a killed one too (kills found spurious, retested)
const retestAll = rest.includes("--all")
const shift = rest.includes("--shift") ? Number(rest[rest.indexOf("--shift") + 1]) : 0
const read = (file) => JSON.parse(NodeFs.readFileSync(`reports/mutation/${file}.json`, "utf8"))
const reports = name.split(",").map((part) => {
  const one = read(part)
  if (!targets) return one
  const again = read(`${targetsFrom ?? part}.targets`)
  const key = (m, by) =>
    `${m.mutatorName} ${m.replacement} ${m.location.start.line + by}:${m.location.start.column}-${
      m.location.end.line + by
    }:${m.location.end.column}`
  for (const [file, { mutants }] of Object.entries(one.files)) {
    const retested = new Map((again.files[file]?.mutants ?? []).map((m) => [key(m, 0), m]))
    one.files[file].mutants = mutants.map((m) => {
      const alive = m.status === "Survived" || m.status === "NoCoverage"
      if (!alive && !retestAll) return m
      const r = retested.get(key(m, shift))
      if (r === undefined && !alive) return m
      if (r === undefined) throw new Error(`not retested: ${key(m, shift)}`)
      // the retest's test ids are its own report's: --without does not apply to a retested mutant
      return { ...r, killedBy: [], coveredBy: [] }
    })
  }
  return one
})
const fileOf = new Map()
// test ids are per report: prefix them with the report's index so that chunks do not mix them up
const report = { files: {} }
reports.forEach((one, index) => {
  for (const [file, { tests }] of Object.entries(one.testFiles ?? {})) {
    for (const test of tests) fileOf.set(`${index}:${test.id}`, file)
  }
  const ids = (list) => list?.map((id) => `${index}:${id}`)
  for (const [file, { mutants }] of Object.entries(one.files)) {
    const into = (report.files[file] ??= { mutants: [] })
    for (const m of mutants) into.mutants.push({ ...m, killedBy: ids(m.killedBy), coveredBy: ids(m.coveredBy) })
  }
})
const tally = (killedBy, keep = () => true) => {
  const t = { killed: 0, timeout: 0, survived: 0, noCoverage: 0, other: 0 }
  for (const { mutants } of Object.values(report.files)) {
    for (const m of mutants.filter(keep)) {
      if (m.status === "Killed") {
        if (killedBy(m)) t.killed++
        else if ((m.coveredBy ?? []).some((id) => !without.some((w) => (fileOf.get(id) ?? "").includes(w)))) {
          t.survived++
        } else t.noCoverage++
      } else if (m.status === "Timeout") t.timeout++
      else if (m.status === "Survived") t.survived++
      else if (m.status === "NoCoverage") t.noCoverage++
      else t.other++
    }
  }
  const valid = t.killed + t.timeout + t.survived + t.noCoverage
  return { ...t, score: valid === 0 ? 0 : (100 * (t.killed + t.timeout)) / valid }
}
const row = (label, t) =>
  `| ${label} | ${t.killed} | ${t.survived} | ${t.timeout} | ${t.noCoverage} | ${t.score.toFixed(2)}% |`
console.log("| run | killed | survived | timeout | no coverage | score |")
console.log("| --- | ---: | ---: | ---: | ---: | ---: |")
console.log(row(`${name}: all tests`, tally(() => true)))
// Static mutants (module-level code: metric names, tags, schema annotations) need the module reloaded; the vitest
// runner does not reload it between mutants, so they survive whatever the tests check.
console.log(row(`${name}: all tests, static mutants left out`, tally(() => true, (m) => m.static !== true)))
if (without.length > 0) {
  const old = (m) => (m.killedBy ?? []).some((id) => !without.some((w) => (fileOf.get(id) ?? "").includes(w)))
  console.log(row(`${name}: without ${without.join(", ")}`, tally(old)))
}
