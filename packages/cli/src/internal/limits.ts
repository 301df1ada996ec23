/**
 * The `--limits` file: per-model (or per-pool) limits, decoded with Schema (errors carry the path).
 *
 * @internal
 */
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
export class FileProblem extends Schema.TaggedError<FileProblem>()("FileProblem", {
  path: Schema.String,
  message: Schema.String
}) {}

/** @internal */
export const readJson = (path: string): Effect.Effect<unknown, FileProblem> =>
  Effect.try({
    try: () => JSON.parse(NodeFs.readFileSync(path, "utf8")) as unknown,
    catch: (error) => new FileProblem({ path, message: `cannot read ${path}: ${(error as Error).message}` })
  })

/** @internal */
export const loadLimits = (path: string): Effect.Effect<LimitsFile, FileProblem> =>
  Effect.flatMap(readJson(path), (json) =>
    Schema.decodeUnknown(LimitsFile, { errors: "all" })(json).pipe(
      Effect.mapError((error) =>
        new FileProblem({
          path,
          message: `invalid limits file ${path}:\n${ParseResult.TreeFormatter.formatErrorSync(error)}`
        })
      )
    ))
