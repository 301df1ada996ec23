/**
 * `sluice report`'s handler (its options: `reportCommand.ts`): the records read, the page and the evidence written.
 *
 * @internal
 */
import { BulkRunner } from "@sluice/openai"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as NodeFs from "node:fs"
import * as Evidence from "./evidence.js"
import { usage } from "./handler.js"
import * as Record from "./record.js"
import * as Report from "./report.js"
import type { ReportOptions } from "./reportCommand.js"

/** @internal */
export const handler = ({ evidence, html, records }: ReportOptions) =>
  Effect.gen(function*() {
    if (Option.isNone(html) && Option.isNone(evidence)) {
      return yield* usage("report: give --html FILE, --evidence FILE or both")
    }
    let entries: ReadonlyArray<Record.Entry> = []
    for (const path of records) {
      entries = entries.concat(
        yield* Effect.mapError(Record.read(path), (e) => usage(`${e.path}:${e.line}: ${e.message}`))
      )
    }
    const csvPath = Option.map(evidence, (path) => `${path.replace(/\.md$/, "")}.csv`)
    yield* BulkRunner.checkPaths([
      ...records.map((path) => ({ role: "run record", path })),
      ...Option.toArray(Option.map(html, (path) => ({ role: "report", path }))),
      ...Option.toArray(Option.map(evidence, (path) => ({ role: "evidence", path }))),
      ...Option.toArray(Option.map(csvPath, (path) => ({ role: "evidence CSV", path })))
    ]).pipe(Effect.mapError((e) => usage(e.message)))
    const write = (path: string, text: string) =>
      Effect.try({
        try: () => NodeFs.writeFileSync(path, text),
        catch: (cause) => usage(`${path}: ${cause instanceof Error ? cause.message : String(cause)}`)
      })
    if (Option.isSome(html)) {
      yield* write(html.value, Report.html(entries, records.join(", ")))
      yield* Console.log(`report: ${html.value} (${entries.length} entries of ${records.length} record(s))`)
    }
    if (Option.isSome(evidence) && Option.isSome(csvPath)) {
      const figures = Evidence.compute(entries)
      yield* write(evidence.value, Evidence.markdown(figures))
      yield* write(csvPath.value, Evidence.csv(figures))
      yield* Console.log(`evidence: ${evidence.value}, ${csvPath.value}`)
    }
  })
