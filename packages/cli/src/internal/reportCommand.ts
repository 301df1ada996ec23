/**
 * `sluice report`: run records (`sluice run --record`) as one self-contained HTML page, and the limit-increase
 * evidence per model and limit as Markdown and CSV. Its options; the handler (`reportHandler.ts`) is loaded when the
 * command runs.
 *
 * @internal
 */
import * as Args from "@effect/cli/Args"
import type * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import { optional } from "./options.js"
import type { Handled } from "./options.js"
import { loadHandler } from "./usageError.js"

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
export type ReportOptions = Command.Command.ParseConfig<typeof options>

/** @internal */
export const handler = (options: ReportOptions): Handled =>
  Effect.flatMap(loadHandler("report", () => import("./reportHandler.js")), (report) => report.handler(options))
