/**
 * `sluice report`: run records (`sluice run --record`) as one self-contained HTML page, and the limit-increase
 * evidence per model and limit as Markdown and CSV.
 *
 * @internal
 */
import * as Args from "@effect/cli/Args"
import type * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { BulkRunner } from "@sluice/openai"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as NodeFs from "node:fs"
import * as Evidence from "./evidence.js"
import { optional, usage } from "./options.js"
import * as Record from "./record.js"
import * as Report from "./report.js"

/** @internal */
export const options = {
  html: optional(Options.file("html"), "Write the report to this HTML file (self-contained)"),
  evidence: optional(
    Options.file("evidence"),
    "Write the limit-increase evidence per model and limit to this Markdown file, and as CSV beside it (.csv)"
  ),
  records: Args.file({ name: "record", exists: "yes" }).pipe(
    Args.withDescription("A run record (sluice run --record FILE)"),
    Args.atLeast(1)
  )
} as const

/** @internal */
export const handler = ({ evidence, html, records }: Command.Command.ParseConfig<typeof options>) =>
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
