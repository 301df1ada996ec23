// A Stryker reporter that appends each mutant's result as it is known (reports/mutation/<report>.partial.jsonl, beside
// the JSON report), so that a run stopped before its end (Stryker writes its reports only at the end) still counts
// what it tested: `node mutation/partial.mjs <report>`. Declared without @stryker-mutator/api (not a direct
// dependency): a class plugin is `{ kind, name, injectableClass }`, and "options" is the options' injection token.
import * as NodeFs from "node:fs"

class PartialReporter {
  static inject = ["options"]
  constructor(options) {
    this.file = options.jsonReporter.fileName.replace(/\.json$/, ".partial.jsonl")
    NodeFs.mkdirSync(this.file.replace(/\/[^/]*$/, ""), { recursive: true })
    NodeFs.writeFileSync(this.file, "")
  }
  onMutantTested(result) {
    const { fileName, id, location, mutatorName, replacement, status, statusReason } = result
    NodeFs.appendFileSync(
      this.file,
      JSON.stringify({ id, fileName, mutatorName, replacement, location, status, statusReason }) + "\n"
    )
  }
}

export const strykerPlugins = [{ kind: "Reporter", name: "partial", injectableClass: PartialReporter }]
