// A Stryker ignorer for a sampled run (see sample.mjs): a mutate range per sampled mutant also takes in every mutant of
// the nodes inside it (a block statement's range holds the whole block), so this ignores each node whose subtree holds
// no sampled mutant's location. Left running beside a sampled mutant: the other mutants of its own node (a condition's
// `true` beside its `false`) and of nodes that contain another sampled one; sample.mjs counts only the sampled ones.
// The sample's locations come from the file named by the option `sluiceSample` (0-based lines and columns).
import * as NodeFs from "node:fs"

class SampleIgnorer {
  static inject = ["options"]
  constructor(options) {
    this.locations = JSON.parse(NodeFs.readFileSync(options.sluiceSample, "utf8")).mutants.map((m) => m.location)
  }
  shouldIgnore(path) {
    const loc = path.node.loc
    if (loc === undefined || loc === null) return undefined
    // babel's lines are 1-based, the sample's 0-based; columns are 0-based in both
    const start = { line: loc.start.line - 1, column: loc.start.column }
    const end = { line: loc.end.line - 1, column: loc.end.column }
    const before = (a, b) => a.line < b.line || (a.line === b.line && a.column <= b.column)
    const holds = this.locations.some((l) => before(start, l.start) && before(l.end, end))
    return holds ? undefined : "not in the sample (mutation/sample.mjs)"
  }
}

export const strykerPlugins = [{ kind: "Ignore", name: "sample", injectableClass: SampleIgnorer }]
