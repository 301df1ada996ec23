/**
 * The `--limits` file: per-model (or per-pool) limits, decoded with Schema (errors carry the path).
 *
 * @internal
 */
import { Tiers } from "@sluice/openai"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as NodeFs from "node:fs"

const Count = Schema.Number.pipe(Schema.int(), Schema.positive())

/** @internal */
export const ModelLimits = Schema.Struct({
  rpm: Schema.optional(Count),
  tpm: Schema.optional(Count),
  rpd: Schema.optional(Count),
  tpd: Schema.optional(Count),
  ipm: Schema.optional(Count)
})

/**
 * `{ "models": { "gpt-4o-mini": { "rpm": 500, "tpm": 200000 } } }`
 *
 * @internal
 */
export const LimitsFile = Schema.Struct({
  models: Schema.Record({ key: Schema.String, value: ModelLimits })
})

/** @internal */
export type LimitsFile = typeof LimitsFile.Type

/** @internal */
export class FileProblem extends Schema.TaggedError<FileProblem>("@sluice/cli/FileProblem")("FileProblem", {
  path: Schema.String,
  message: Schema.String
}) {}

/** @internal */
export const readJson = (path: string): Effect.Effect<unknown, FileProblem> =>
  Effect.try({
    try: () => JSON.parse(NodeFs.readFileSync(path, "utf8")) as unknown,
    catch: (error) => new FileProblem({ path, message: `cannot read ${path}: ${(error as Error).message}` })
  })

/**
 * Reads and decodes a limits file. An unknown field (a typo such as `tmp` for `tpm`, or a key beside `models`)
 * is an error naming its path: a limit silently ignored would let a run exceed it.
 *
 * @internal
 */
export const loadLimits = (path: string): Effect.Effect<LimitsFile, FileProblem> =>
  Effect.flatMap(
    readJson(path),
    (json) =>
      Schema.decodeUnknown(LimitsFile, { errors: "all", onExcessProperty: "error" })(json).pipe(
        Effect.mapError((error) =>
          new FileProblem({
            path,
            message: `invalid limits file ${path}:\n${ParseResult.TreeFormatter.formatErrorSync(error)}`
          })
        )
      )
  )

/**
 * The models of a limits file with no tier preset: likely typos (a warning, not an error, since a deployment may
 * serve a model this version does not know). Their limits apply only to lines naming exactly that model.
 *
 * @internal
 */
export const unknownModels = (limits: LimitsFile): ReadonlyArray<string> =>
  Object.keys(limits.models).filter((model) => Tiers.limits(1, model) === undefined)
