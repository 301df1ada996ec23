/**
 * The `--limits` file: per-model (or per-pool) limits, decoded with Schema (errors carry the path).
 *
 * @internal
 */
import { Budget } from "@sluice/core"
import { Tiers } from "@sluice/openai"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as NodeFs from "node:fs"

const Count = Schema.Number.pipe(Schema.int(), Schema.positive())

const figures = {
  rpm: Schema.optional(Count),
  tpm: Schema.optional(Count),
  rpd: Schema.optional(Count),
  tpd: Schema.optional(Count),
  ipm: Schema.optional(Count)
}

/** The names of a model's limits (the keys a `burst` may name). */
const limitNames = ["rpm", "tpm", "rpd", "tpd", "ipm"] as const

/**
 * A model's limits, and optionally the bursts the server allows on them: `burst.tpm` is the most the server
 * takes at once of its `tpm` (a limit enforced over a shorter period than announced, such as 450,000 TPM
 * taken as 37,500 tokens per 5 s). A burst needs its limit and must not exceed it.
 *
 * @internal
 */
export const ModelLimits = Schema.Struct({
  ...figures,
  /** The Batch API's enqueued-token limit of this model (`sluice run --via batch|auto`). */
  enqueuedTokens: Schema.optional(Count),
  burst: Schema.optional(Schema.Struct(figures))
}).pipe(Schema.filter((limits) => {
  const issues: Array<Schema.FilterIssue> = []
  for (const name of limitNames) {
    const burst = limits.burst?.[name]
    if (burst === undefined) continue
    const limit = limits[name]
    if (limit === undefined) {
      issues.push({ path: ["burst", name], message: `a burst for ${name} needs ${name} itself` })
    } else if (burst > limit) {
      issues.push({ path: ["burst", name], message: `burst ${burst} exceeds ${name} ${limit}` })
    }
  }
  return issues
}))

/**
 * `{ "models": { "gpt-4o-mini": { "rpm": 500, "tpm": 200000, "burst": { "tpm": 16667 } } } }`
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

/**
 * The budgets of a `--limits` file: each model's figures on its pool's scope, a burst as its limit's bucket
 * capacity (refilled at the limit's rate).
 *
 * @internal
 */
export const budgetsOfLimits = (limits: LimitsFile, organization: string): ReadonlyArray<Budget.Budget> => {
  const byPool = new Map<string, Array<Budget.Limit>>()
  for (const [model, figures] of Object.entries(limits.models)) {
    const pool = Tiers.poolOf(model)
    const list = byPool.get(pool) ?? []
    const burst = figures.burst ?? {}
    if (figures.rpm !== undefined) list.push(Budget.Limit.perMinute("requests", figures.rpm, burst.rpm))
    if (figures.tpm !== undefined) list.push(Budget.Limit.perMinute("tokens", figures.tpm, burst.tpm))
    if (figures.ipm !== undefined) list.push(Budget.Limit.perMinute("images", figures.ipm, burst.ipm))
    if (figures.rpd !== undefined) list.push(Budget.Limit.perDay("requests", figures.rpd, burst.rpd))
    if (figures.tpd !== undefined) list.push(Budget.Limit.perDay("tokens", figures.tpd, burst.tpd))
    if (list.length > 0) byPool.set(pool, list)
  }
  return Array.from(byPool, ([pool, list]) => Budget.make(`org:${organization}/pool:${pool}`, list))
}

/**
 * The enqueued-token limits of a `--limits` file, by model (the Batch API's queue, per model).
 *
 * @internal
 */
export const enqueuedOfLimits = (limits: LimitsFile | undefined): ReadonlyMap<string, number> => {
  const out = new Map<string, number>()
  for (const [model, figures] of Object.entries(limits?.models ?? {})) {
    if (figures.enqueuedTokens !== undefined) out.set(model, figures.enqueuedTokens)
  }
  return out
}

/**
 * The live limits of a `--limits` file for a pool (the first model of the pool that gives any), for the plan.
 *
 * @internal
 */
export const poolLimitsOf = (limits: LimitsFile | undefined) => (pool: string): Tiers.ModelLimits | undefined => {
  for (const [model, figures] of Object.entries(limits?.models ?? {})) {
    if (Tiers.poolOf(model) !== pool) continue
    const { enqueuedTokens: _, ...live } = figures
    if (Object.keys(live).length > 0) return { ...live, interpolated: false }
  }
  return undefined
}
