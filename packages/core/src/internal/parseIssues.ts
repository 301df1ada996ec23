/**
 * A `ParseError` as `{ path, message }` issues, and issues as the lines of an error's message: one place for every
 * configuration decoder (budgets, routing files, pipeline files, simulator scenarios).
 *
 * @internal
 */
import * as ParseResult from "effect/ParseResult"

/** @internal */
export interface Issue {
  readonly path: string
  readonly message: string
}

/** @internal */
export interface Options {
  /**
   * Name a key that is not an identifier as `["a key"]` (`tasks["long doc"][0]`); by default every key is
   * `.key` (`[0].limits[1].amount`).
   */
  readonly quoteKeys?: boolean | undefined
  /**
   * Leave out the "Expected undefined" half of an optional field's reasons (it decodes as
   * `X | undefined`) when there is a real reason, and repeated issues.
   */
  readonly concise?: boolean | undefined
}

const identifier = /^[A-Za-z_$][A-Za-z0-9_$]*$/

/**
 * A path as `[0].limits[1].amount` (the root: the empty string).
 *
 * @internal
 */
export const formatPath = (path: ReadonlyArray<PropertyKey>, options?: Options): string =>
  options?.quoteKeys === true
    ? path.map((key, i) =>
      typeof key === "number"
        ? `[${key}]`
        : typeof key === "string" && identifier.test(key)
        ? `${i === 0 ? "" : "."}${key}`
        : `[${JSON.stringify(typeof key === "symbol" ? String(key) : key)}]`
    ).join("")
    : path.map((key) => typeof key === "number" ? `[${key}]` : `.${String(key)}`).join("").replace(/^\./, "")

/**
 * The issues of a parse error, each with its path.
 *
 * @internal
 */
export const issuesOf = (error: ParseResult.ParseError, options?: Options): Array<Issue> => {
  const all = ParseResult.ArrayFormatter.formatErrorSync(error)
  if (options?.concise !== true) {
    return all.map((issue) => ({ path: formatPath(issue.path, options), message: issue.message }))
  }
  const useful = all.filter((issue) => !issue.message.startsWith("Expected undefined"))
  const seen = new Set<string>()
  const issues: Array<Issue> = []
  for (const issue of useful.length > 0 ? useful : all) {
    const entry = { path: formatPath(issue.path, options), message: issue.message }
    const key = `${entry.path}\u0000${entry.message}`
    if (!seen.has(key)) {
      seen.add(key)
      issues.push(entry)
    }
  }
  return issues
}

/**
 * Issues one a line, each indented by two spaces: `path: message` (`at path: message` with `at`), the root's
 * path as `(root)`.
 *
 * @internal
 */
export const formatIssues = (
  issues: ReadonlyArray<Issue>,
  options?: { readonly at?: boolean | undefined }
): string =>
  issues.map((issue) => `  ${options?.at === true ? "at " : ""}${issue.path || "(root)"}: ${issue.message}`).join("\n")
