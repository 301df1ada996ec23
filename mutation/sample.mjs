// A uniform random sample of one file's mutants, for a file too long to run whole on a loaded machine:
//   node mutation/sample.mjs <run> <file> --from A [--to B] --n N --seed S [--skip K]
// enumerates every mutant of <file> with Stryker's own instrumenter (the mutators and options of a Stryker run), keeps
// those starting on lines A-B (1-based, B the file's end by default), draws N of them without replacement with a seeded
// generator (mulberry32, Fisher-Yates), and writes reports/mutation/<name>.sample.json (the sample) and
// reports/mutation/<name>.stryker.mjs (a config mutating only their positions, with mutation/sample.ignorer.mjs),
// <name> being <run>.sample-A-B-nN-sS. Then `nice -n 19 npx stryker run reports/mutation/<name>.stryker.mjs`, and
//   node mutation/sample.mjs --score <name> [--to B] [--partial]
// counts the sampled mutants alone in its report (the others Stryker ran beside them are listed apart), with the 95%
// Wilson interval of the detected share. Timeouts count as detected, as in Stryker's score, and are also given apart.
// The draws are a prefix of one seeded permutation, so `--n 200 --skip 120` grows a sample of 120 to 200 (a config
// for the 80 new ones only), and `--score <first>,<grown>` counts both.
// --retest <name> <report> writes <name>.retest.stryker.mjs retesting the sampled mutants the report left alive, and
// --score <name> --retest-report <report> counts the sample with their retest's results.
import * as NodeFs from "node:fs"
import { createRequire } from "node:module"

const args = process.argv.slice(2)
const opt = (flag) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined)
const read = (file) => JSON.parse(NodeFs.readFileSync(file, "utf8"))
const key = (m) =>
  `${m.mutatorName} ${
    JSON.stringify(m.replacement)
  } ${m.location.start.line}:${m.location.start.column}-${m.location.end.line}:${m.location.end.column}`
// a Stryker JSON report's locations are 1-based (lines and columns), the instrumenter's 0-based
const fromReport = (m) => ({
  ...m,
  location: {
    start: { line: m.location.start.line - 1, column: m.location.start.column - 1 },
    end: { line: m.location.end.line - 1, column: m.location.end.column - 1 }
  }
})
const range = (file, l) => `${file}:${l.start.line + 1}:${l.start.column}-${l.end.line + 1}:${l.end.column}`

const config = (run, name, file, mutants, report) =>
  `import { mutationOptions } from "../../mutation/stryker.shared.mjs"

// written by mutation/sample.mjs: the positions of ${mutants.length} sampled mutants of ${file}
const base = mutationOptions("${run}", [])
export default {
  ...base,
  plugins: [...base.plugins, "./mutation/sample.ignorer.mjs"],
  ignorers: ["sample"],
  sluiceSample: "reports/mutation/${name}.sample.json",
  mutate: ${JSON.stringify([...new Set(mutants.map((m) => range(file, m.location)))], null, 2)},
  incremental: false,
  htmlReporter: { fileName: "reports/mutation/${report}.html" },
  jsonReporter: { fileName: "reports/mutation/${report}.json" }
}
`

if (args[0] === "--score") {
  // several names (a sample and its extensions by --skip, each run on its own) are counted together
  const names = args[1].split(",")
  const samples = names.map((name) => read(`reports/mutation/${name}.sample.json`))
  // --to B: only the sampled mutants starting on lines up to B (those a stopped run reached: still a uniform sample
  // of the lines from the sample's start to B)
  const upTo = Number(opt("--to") ?? Number.POSITIVE_INFINITY)
  const sample = {
    ...samples[0],
    mutants: samples.flatMap((one) => one.mutants).filter((m) => m.location.start.line + 1 <= upTo)
  }
  if (new Set(sample.mutants.map(key)).size !== sample.mutants.length) throw new Error("a mutant sampled twice")
  const results = new Map()
  const all = []
  // --partial: a run stopped before its end (no JSON report) counts what its partial reporter wrote; the sampled
  // mutants it had not tested yet are left out of the count and listed by line (the score is then a sample of the
  // lines it reached: Stryker tests them in the order of the file)
  const partial = args.includes("--partial")
  const reportOf = (name) =>
    partial
      ? [
        NodeFs.readFileSync(`reports/mutation/${name}.partial.jsonl`, "utf8").split("\n").filter(Boolean)
          .map((line) => JSON.parse(line))
      ]
      : Object.values(read(`reports/mutation/${name}.json`).files).map((file) => file.mutants)
  for (const name of names) {
    for (const mutants of reportOf(name)) {
      for (const m of mutants) {
        all.push(m)
        // a mutant another run already tested as part of its sample keeps that result
        const k = key(fromReport(m))
        if (!results.has(k) || results.get(k).status === "Ignored") results.set(k, m)
      }
    }
  }
  const retest = opt("--retest-report")
  if (retest !== undefined) {
    for (const { mutants } of Object.values(read(`reports/mutation/${retest}.json`).files)) {
      for (const m of mutants) {
        const k = key(fromReport(m))
        const before = results.get(k)
        if (before !== undefined && (before.status === "Survived" || before.status === "NoCoverage")) results.set(k, m)
      }
    }
  }
  const t = { Killed: 0, Timeout: 0, Survived: 0, NoCoverage: 0, other: 0 }
  const alive = []
  const untested = []
  for (const m of sample.mutants) {
    const r = results.get(key(m))
    if (r === undefined && partial) {
      untested.push(m.location.start.line + 1)
      continue
    }
    if (r === undefined) throw new Error(`not in the report: ${key(m)}`)
    if (r.status in t) t[r.status]++
    else t.other++
    if (r.status === "Survived" || r.status === "NoCoverage") alive.push({ ...m, status: r.status })
  }
  const n = t.Killed + t.Timeout + t.Survived + t.NoCoverage
  const detected = t.Killed + t.Timeout
  // the 95% Wilson score interval of a binomial share
  const wilson = (x, n, z = 1.959964) => {
    const p = x / n
    const centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    const half = (z / (1 + z * z / n)) * Math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [centre - half, centre + half]
  }
  const pct = (x) => `${(100 * x).toFixed(2)}%`
  const [lo, hi] = wilson(detected, n)
  const [lo2, hi2] = wilson(t.Killed, n)
  console.log(
    `sample of ${sample.mutants.length} (of ${sample.inRange} mutants on lines ${sample.from}-${sample.to}, ${sample.total} in the file), seed ${sample.seed}`
  )
  console.log(`| killed | survived | timeout | no coverage | other | score | 95% Wilson |`)
  console.log(
    `| ${t.Killed} | ${t.Survived} | ${t.Timeout} | ${t.NoCoverage} | ${t.other} | ${pct(detected / n)} | ${pct(lo)}-${
      pct(hi)
    } |`
  )
  console.log(`timeouts counted as survived: ${pct(t.Killed / n)} (${pct(lo2)}-${pct(hi2)})`)
  if (untested.length > 0) {
    console.log(`not tested yet (the run was stopped): ${untested.length}, lines ${untested.join(" ")}`)
    const last = Math.max(...sample.mutants.filter((m) => results.has(key(m))).map((m) => m.location.start.line + 1))
    const within = sample.mutants.filter((m) => m.location.start.line + 1 <= last && !results.has(key(m))).length
    console.log(`tested: every sampled mutant up to line ${last}${within > 0 ? ` but ${within}` : ""}`)
  }
  const extra = all.filter((m) => m.status !== "Ignored").length - (sample.mutants.length - untested.length)
  console.log(`run beside the sample (same node, or a node holding another sampled one), not counted: ${extra}`)
  for (const m of alive) {
    console.log(
      `${m.location.start.line + 1}:${m.location.start.column} ${m.status} ${m.mutatorName} ${
        JSON.stringify(m.replacement)
      }`
    )
  }
  process.exit(0)
}

if (args[0] === "--retest") {
  const [, name, report] = args
  const sample = read(`reports/mutation/${name}.sample.json`)
  const results = new Map()
  for (const { mutants } of Object.values(read(`reports/mutation/${report ?? name}.json`).files)) {
    for (const m of mutants) results.set(key(fromReport(m)), m.status)
  }
  const alive = sample.mutants.filter((m) => ["Survived", "NoCoverage"].includes(results.get(key(m))))
  NodeFs.writeFileSync(
    `reports/mutation/${name}.retest.sample.json`,
    JSON.stringify({ ...sample, mutants: alive }, null, 1)
  )
  NodeFs.writeFileSync(
    `reports/mutation/${name}.retest.stryker.mjs`,
    config(sample.run, `${name}.retest`, sample.file, alive, `${name}.retest`)
  )
  console.log(`${alive.length} mutants, reports/mutation/${name}.retest.stryker.mjs`)
  process.exit(0)
}

const [run, file] = args
const from = Number(opt("--from") ?? 1)
const n = Number(opt("--n"))
const seed = Number(opt("--seed"))
// --skip K: only the draws K+1..N of the same permutation (a sample grown from K to N, run on its own)
const skip = Number(opt("--skip") ?? 0)
if (run === undefined || file === undefined || !(n > 0) || !Number.isInteger(seed)) {
  console.error("usage: node mutation/sample.mjs <run> <file> --from A [--to B] --n N --seed S")
  process.exit(2)
}
const content = NodeFs.readFileSync(file, "utf8")
const to = Number(opt("--to") ?? content.replace(/\n$/, "").split("\n").length)
// the instrumenter is a dependency of @stryker-mutator/core, not of the repository: resolve it from there
const require = createRequire(NodeFs.realpathSync("node_modules/@stryker-mutator/core/package.json"))
const { Instrumenter } = await import(require.resolve("@stryker-mutator/instrumenter"))
const quiet = () => false
const logger = {
  isTraceEnabled: quiet,
  isDebugEnabled: quiet,
  isInfoEnabled: quiet,
  isWarnEnabled: quiet,
  isErrorEnabled: quiet,
  isFatalEnabled: quiet,
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
  fatal() {}
}
// Stryker's defaults: no excluded mutations, the default parser plugins, no ignorers
const { mutants } = await new Instrumenter(logger).instrument(
  [{ name: file, content, mutate: true }],
  { plugins: null, ignorers: [], excludedMutations: [] }
)
const inRange = mutants.filter((m) => m.location.start.line + 1 >= from && m.location.start.line + 1 <= to)
let state = seed >>> 0
const random = () => {
  state = (state + 0x6d2b79f5) >>> 0
  let t = state
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const pool = [...inRange]
for (let i = pool.length - 1; i > 0; i--) {
  const j = Math.floor(random() * (i + 1))
  ;[pool[i], pool[j]] = [pool[j], pool[i]]
}
const picked = pool.slice(skip, n).sort((a, b) => Number(a.id) - Number(b.id))
const name = `${run}.sample-${from}-${to}-n${n}-s${seed}${skip > 0 ? `-skip${skip}` : ""}`
NodeFs.mkdirSync("reports/mutation", { recursive: true })
NodeFs.writeFileSync(
  `reports/mutation/${name}.sample.json`,
  JSON.stringify(
    { run, file, from, to, seed, skip, total: mutants.length, inRange: inRange.length, mutants: picked },
    null,
    1
  )
)
NodeFs.writeFileSync(`reports/mutation/${name}.stryker.mjs`, config(run, name, file, picked, name))
console.log(`${mutants.length} mutants in ${file}, ${inRange.length} on lines ${from}-${to}; sampled ${picked.length}:`)
console.log(`reports/mutation/${name}.stryker.mjs`)
