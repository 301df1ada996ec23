/**
 * Budgets: the limits that apply to a scope, and the cost a call is charged.
 *
 * A {@link Limit} is an amount of one {@link Dimension} per window (`500 requests / 1 minute`,
 * `10_000 tokens / 1 day`) with an optional burst capacity below the amount. A {@link Budget} is the
 * limits of one scope (`org:acme`, `pool:gpt-4o`, `tenant:*`). A {@link Cost} is, per dimension, what
 * one call is charged. Everything here is Schema-backed so configuration files decode with errors that
 * name the path of the bad value.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as parseIssues from "./internal/parseIssues.js"

/**
 * A dimension a limit counts: `requests`, `tokens`, `images`, or any other non-empty name
 * (`audioSeconds`, `inputTokens`, …).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Dimension = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z][A-Za-z0-9_-]*$/, {
    message: () => "a dimension is a name like requests, tokens or images"
  }),
  Schema.annotations({ identifier: "Dimension" })
)

/**
 * @since 0.1.0
 * @category models
 */
export type Dimension = "requests" | "tokens" | "images" | (string & {})

const windowAliases: Record<string, Duration.Duration> = {
  second: Duration.seconds(1),
  minute: Duration.minutes(1),
  hour: Duration.hours(1),
  day: Duration.days(1)
}

/**
 * A window length, decoded from milliseconds (`60000`), an alias (`"second"`, `"minute"`, `"hour"`,
 * `"day"`) or a duration string (`"1 minute"`, `"10 seconds"`, `"1 day"`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Window: Schema.Schema<Duration.Duration, string | number> = Schema.transformOrFail(
  Schema.Union(Schema.String, Schema.Number),
  Schema.DurationFromSelf,
  {
    strict: true,
    decode: (input, _, ast) => {
      const decoded = typeof input === "string" && input in windowAliases
        ? windowAliases[input]
        : Option.getOrUndefined(Duration.decodeUnknown(input))
      return decoded === undefined || !Duration.isFinite(decoded) || Duration.toMillis(decoded) <= 0
        ? ParseResult.fail(new ParseResult.Type(ast, input, windowMessage(input)))
        : ParseResult.succeed(decoded)
    },
    encode: (duration) => ParseResult.succeed(Duration.toMillis(duration))
  }
).annotations({ identifier: "Window" })

const windowMessage = (input: unknown) =>
  `expected a positive window such as "minute", "day", "10 seconds" or a number of milliseconds, got ${
    JSON.stringify(input)
  }`

const PositiveAmount = Schema.Number.pipe(Schema.finite(), Schema.positive())

/**
 * One limit: `amount` of `dimension` per `window`, refilled continuously (a token bucket whose
 * capacity is `burst`, by default `amount`).
 *
 * @since 0.1.0
 * @category models
 * @example
 * ```ts
 * import { Budget } from "@sluice/core"
 * import * as Duration from "effect/Duration"
 *
 * const rpm = Budget.Limit.perMinute("requests", 500)
 * const tpd = new Budget.Limit({ dimension: "tokens", amount: 10_000_000, window: Duration.days(1) })
 * ```
 */
export class Limit extends Schema.Class<Limit>("Limit")(
  Schema.Struct({
    dimension: Dimension,
    amount: PositiveAmount,
    window: Window,
    burst: Schema.optional(PositiveAmount)
  }).pipe(
    Schema.filter((limit) =>
      limit.burst === undefined || limit.burst <= limit.amount ||
      { path: ["burst"], message: `burst (${limit.burst}) must not exceed amount (${limit.amount})` }
    )
  )
) {
  /**
   * @since 0.1.0
   */
  static perSecond(dimension: Dimension, amount: number, burst?: number): Limit {
    return Limit.of(dimension, amount, Duration.seconds(1), burst)
  }
  /**
   * @since 0.1.0
   */
  static perMinute(dimension: Dimension, amount: number, burst?: number): Limit {
    return Limit.of(dimension, amount, Duration.minutes(1), burst)
  }
  /**
   * @since 0.1.0
   */
  static perDay(dimension: Dimension, amount: number, burst?: number): Limit {
    return Limit.of(dimension, amount, Duration.days(1), burst)
  }
  /**
   * @since 0.1.0
   */
  static of(dimension: Dimension, amount: number, window: Duration.DurationInput, burst?: number): Limit {
    return new Limit(
      burst === undefined
        ? { dimension, amount, window: Duration.decode(window) }
        : { dimension, amount, window: Duration.decode(window), burst }
    )
  }

  /**
   * The bucket capacity: `burst` when set, else `amount`.
   *
   * @since 0.1.0
   */
  get capacity(): number {
    return this.burst ?? this.amount
  }

  /**
   * The window in milliseconds.
   *
   * @since 0.1.0
   */
  get windowMillis(): number {
    return Duration.toMillis(this.window)
  }

  /**
   * A readable form, e.g. `500 requests / 1m`.
   *
   * @since 0.1.0
   */
  get label(): string {
    return `${this.amount} ${this.dimension} / ${Duration.format(this.window)}`
  }
}

/**
 * A scope key: what a call is charged against (`org:acme`, `org:acme/project:search`,
 * `pool:gpt-4o`, `tenant:42`). In a {@link Budget}, a key ending in `*` is a prefix pattern: every
 * concrete scope it matches gets its own buckets with those limits.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ScopeKey = Schema.String.pipe(
  Schema.minLength(1, { message: () => "a scope key is a non-empty string such as org:acme" }),
  Schema.annotations({ identifier: "ScopeKey" })
)

/**
 * The limits of one scope.
 *
 * @since 0.1.0
 * @category models
 * @example
 * ```ts
 * import { Budget } from "@sluice/core"
 *
 * const org = Budget.make("org:acme", [
 *   Budget.Limit.perMinute("requests", 500),
 *   Budget.Limit.perMinute("tokens", 30_000),
 *   Budget.Limit.perDay("requests", 10_000)
 * ])
 * ```
 */
export class Budget extends Schema.Class<Budget>("Budget")(
  Schema.Struct({
    scope: ScopeKey,
    limits: Schema.Array(Limit)
  }).pipe(
    Schema.filter((budget) => {
      const seen = new Set<string>()
      for (let i = 0; i < budget.limits.length; i++) {
        const limit = budget.limits[i]
        const key = `${limit.dimension}/${limit.windowMillis}`
        if (seen.has(key)) {
          return {
            path: ["limits", i],
            message: `duplicate limit for ${limit.dimension} per ${
              Duration.format(limit.window)
            } in scope ${budget.scope}`
          }
        }
        seen.add(key)
      }
      return true
    })
  )
) {}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make = (scope: string, limits: ReadonlyArray<Limit>): Budget => new Budget({ scope, limits })

/**
 * The theoretical minimum: the least time, in milliseconds, in which `charged` (the total cost admitted
 * against one scope) can be admitted under `limits`, buckets starting full. A limit's capacity is admitted at
 * once and the rest arrives at its refill rate (`amount / window`), so the minimum is the largest
 * `(charged − capacity) × window / amount` over the limits (0 when everything fits in the capacities). Latency
 * comes on top: a run at the limits ends some time after it. For several scopes, take the largest.
 *
 * @since 0.1.0
 * @category queries
 * @example
 * ```ts
 * import { Budget } from "@sluice/core"
 *
 * // 80,000 tokens at 30,000 a minute: 30,000 at once, the other 50,000 take 100 s
 * const ms = Budget.theoreticalMinimum([Budget.Limit.perMinute("tokens", 30_000)], { tokens: 80_000 }) // 100_000
 * ```
 */
export const theoreticalMinimum = (
  limits: ReadonlyArray<Pick<Limit, "dimension" | "amount" | "capacity" | "windowMillis">>,
  charged: Cost
): number => {
  let worst = 0
  for (const limit of limits) {
    const over = (charged[limit.dimension] ?? 0) - limit.capacity
    if (over > 0) worst = Math.max(worst, (over * limit.windowMillis) / limit.amount)
  }
  return worst
}

/**
 * Per dimension, the amount a call is charged (`{ requests: 1, tokens: 1_480 }`). Amounts are finite
 * and not negative.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Cost = Schema.Record({
  key: Dimension,
  value: Schema.Number.pipe(Schema.finite(), Schema.nonNegative())
}).annotations({ identifier: "Cost" })

/**
 * @since 0.1.0
 * @category models
 */
export type Cost = { readonly [dimension: string]: number }

/**
 * A list of budgets, as a configuration file holds it.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Budgets = Schema.Array(Budget).pipe(
  Schema.filter((budgets) => {
    const seen = new Set<string>()
    for (let i = 0; i < budgets.length; i++) {
      if (seen.has(budgets[i].scope)) {
        return { path: [i, "scope"], message: `duplicate budget for scope ${budgets[i].scope}` }
      }
      seen.add(budgets[i].scope)
    }
    return true
  })
)

/**
 * The issues of a configuration that does not decode, each with its path (`[0].limits[1].amount`): the `issues`
 * of {@link BudgetConfigError} and of the other configuration errors of Sluice (routing files, pipeline files).
 *
 * @since 0.2.0
 * @category errors
 * @example
 * ```ts
 * import { Budget } from "@sluice/core"
 * import * as Schema from "effect/Schema"
 *
 * const issues = Schema.decodeUnknownSync(Budget.ConfigIssues)([{ path: "[0].scope", message: "Expected string" }])
 * Budget.formatIssues(issues) // "  [0].scope: Expected string"
 * ```
 */
export const ConfigIssues = Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String }))

/**
 * Budgets failed to decode. `issues` lists every problem with its path (`[0].limits[1].amount`), and
 * the message has one line a problem.
 *
 * @since 0.1.0
 * @category errors
 */
export class BudgetConfigError
  extends Schema.TaggedError<BudgetConfigError>("@sluice/core/BudgetConfigError")("BudgetConfigError", {
    source: Schema.String,
    issues: ConfigIssues
  })
{
  override get message(): string {
    return `invalid budgets in ${this.source}:\n${formatIssues(this.issues)}`
  }
}

/**
 * Formats a path as `[0].limits[1].amount`; with `quoteKeys`, a key that is not an identifier as
 * `["a key"]`.
 *
 * `options`: since 0.2.0.
 *
 * @since 0.1.0
 * @category utils
 */
export const formatPath: (
  path: ReadonlyArray<PropertyKey>,
  options?: { readonly quoteKeys?: boolean | undefined }
) => string = parseIssues.formatPath

/**
 * Turns a parse error into `{ path, message }` issues. Every configuration decoder of Sluice formats its
 * errors with it: `quoteKeys` names a key that is not an identifier as `["a key"]`, and `concise` leaves
 * out the "Expected undefined" half of an optional field's reasons (when there is a real reason) and
 * repeated issues.
 *
 * `options`: since 0.2.0.
 *
 * @since 0.1.0
 * @category utils
 */
export const issuesOf: (
  error: ParseResult.ParseError,
  options?: {
    readonly quoteKeys?: boolean | undefined
    readonly concise?: boolean | undefined
  }
) => Array<{ path: string; message: string }> = parseIssues.issuesOf

/**
 * Formats {@link ConfigIssues} one a line, each indented by two spaces: `path: message`, or `at path: message` with
 * `at`; the root's path as `(root)`. The messages of {@link BudgetConfigError} and the other configuration errors
 * list their issues with it.
 *
 * @since 0.2.0
 * @category utils
 * @example
 * ```ts
 * import { Budget } from "@sluice/core"
 *
 * Budget.formatIssues([{ path: "[0].scope", message: "Expected string" }]) // "  [0].scope: Expected string"
 * ```
 */
export const formatIssues: (
  issues: ReadonlyArray<{ readonly path: string; readonly message: string }>,
  options?: { readonly at?: boolean | undefined }
) => string = parseIssues.formatIssues

/**
 * Decodes budgets from unknown input (a parsed JSON file, say); the error names the path of every bad
 * value.
 *
 * @since 0.1.0
 * @category decoding
 * @example
 * ```ts
 * import { Budget } from "@sluice/core"
 *
 * const budgets = Budget.decodeBudgets([
 *   { scope: "org:acme", limits: [{ dimension: "requests", amount: 500, window: "minute" }] }
 * ], "limits.json")
 * ```
 */
export const decodeBudgets = (
  input: unknown,
  source = "budgets"
): Effect.Effect<ReadonlyArray<Budget>, BudgetConfigError> =>
  Effect.mapError(
    Schema.decodeUnknown(Budgets, { errors: "all" })(input),
    (error) => new BudgetConfigError({ source, issues: issuesOf(error) })
  )

/**
 * Whether a budget's scope pattern matches a concrete scope.
 *
 * @since 0.1.0
 * @category utils
 */
export const matches = (pattern: string, scope: string): boolean =>
  pattern.endsWith("*") ? scope.startsWith(pattern.slice(0, -1)) : pattern === scope
