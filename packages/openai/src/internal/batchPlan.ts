/**
 * Splitting Batch API request lines into input files: one model and one endpoint per file, at most
 * `maxRequests` lines and `maxBytes` bytes (each line with its newline), and at most the model's enqueued-token
 * limit in estimated tokens (a file above it could never be accepted). Lines are grouped by model and endpoint
 * as they come; a group's file is closed when the next line would take it over a limit. Pure and synchronous.
 *
 * @internal
 */

/** One request line, measured. @internal */
export interface Item {
  readonly customId: string
  /** 1-based line number in the caller's input. */
  readonly line: number
  readonly url: string
  readonly model: string
  /** The request line as uploaded (JSON, no newline). */
  readonly text: string
  /** UTF-8 bytes of `text` plus its newline. */
  readonly bytes: number
  /** Estimated tokens (what the enqueued-token limit counts). */
  readonly tokens: number
}

/** @internal */
export interface Limits {
  readonly maxRequests: number
  readonly maxBytes: number
  /** The enqueued-token limit of a model; `undefined`: none. */
  readonly maxTokens: (model: string) => number | undefined
}

/** One input file to upload. @internal */
export interface File {
  readonly model: string
  readonly url: string
  readonly items: ReadonlyArray<Item>
  readonly bytes: number
  readonly tokens: number
}

/** Why a single line can never be in a file. @internal */
export interface TooLarge {
  readonly _tag: "TooLarge"
  readonly item: Item
  readonly dimension: "bytes" | "tokens"
  readonly limit: number
}

interface Open {
  items: Array<Item>
  bytes: number
  tokens: number
}

/** Measures a line: its bytes with the newline. @internal */
export const bytesOf = (text: string): number => Buffer.byteLength(text, "utf8") + 1

/** @internal */
export class Planner {
  private readonly open = new Map<string, Open>()
  constructor(readonly limits: Limits) {}

  /** Adds a line: the file it closed (if any), or why the line can never fit. */
  add(item: Item): File | TooLarge | undefined {
    const maxTokens = this.limits.maxTokens(item.model)
    if (item.bytes > this.limits.maxBytes) {
      return { _tag: "TooLarge", item, dimension: "bytes", limit: this.limits.maxBytes }
    }
    if (maxTokens !== undefined && item.tokens > maxTokens) {
      return { _tag: "TooLarge", item, dimension: "tokens", limit: maxTokens }
    }
    const key = `${item.model}\u0000${item.url}`
    let current = this.open.get(key)
    let closed: File | undefined
    if (
      current !== undefined && (
        current.items.length + 1 > this.limits.maxRequests ||
        current.bytes + item.bytes > this.limits.maxBytes ||
        (maxTokens !== undefined && current.tokens + item.tokens > maxTokens)
      )
    ) {
      closed = { model: item.model, url: item.url, items: current.items, bytes: current.bytes, tokens: current.tokens }
      current = undefined
    }
    if (current === undefined) {
      current = { items: [], bytes: 0, tokens: 0 }
      this.open.set(key, current)
    }
    current.items.push(item)
    current.bytes += item.bytes
    current.tokens += item.tokens
    return closed
  }

  /** Closes every open file. */
  flush(): Array<File> {
    const files: Array<File> = []
    for (const [key, open] of this.open) {
      const [model, url] = key.split("\u0000")
      if (open.items.length > 0) files.push({ model, url, items: open.items, bytes: open.bytes, tokens: open.tokens })
    }
    this.open.clear()
    return files
  }
}

/** Plans a whole list at once (the files in the order they were closed, then the open ones). @internal */
export const plan = (
  items: Iterable<Item>,
  limits: Limits
): { readonly files: Array<File>; readonly tooLarge: Array<TooLarge> } => {
  const planner = new Planner(limits)
  const files: Array<File> = []
  const tooLarge: Array<TooLarge> = []
  for (const item of items) {
    const added = planner.add(item)
    if (added === undefined) continue
    if ("_tag" in added) tooLarge.push(added)
    else files.push(added)
  }
  for (const file of planner.flush()) files.push(file)
  return { files, tooLarge }
}
