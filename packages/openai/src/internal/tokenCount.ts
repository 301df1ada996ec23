/**
 * Token counting in linear time, with each encoding loaded on first use.
 *
 * `gpt-tokenizer` splits a text with its encoding's regular expression into pieces (words, number groups,
 * punctuation and whitespace runs) and byte-pair-encodes each piece on its own. Byte-pair encoding is
 * quadratic in a piece's length, so one long run without whitespace (`"a"` × 80,000, base64, a minified
 * blob) would block the thread for seconds to minutes. Here the same split is walked piece by piece and:
 *
 * - a piece in the vocabulary counts 1 (as the tokenizer does);
 * - a piece of at most {@link PIECE_LIMIT} characters is byte-pair-encoded exactly, while the estimate's
 *   budget of exactly-encoded characters ({@link EXACT_BUDGET}) lasts;
 * - any other piece counts its UTF-8 length in bytes: every token is at least one byte, so this is never
 *   below the piece's true count;
 * - a text holding a run of more than {@link RUN_LIMIT} characters without whitespace (or of whitespace) is
 *   not split at all (the split expression itself backtracks over a whole run and overflows the stack on
 *   millions of characters): it counts its UTF-8 length in bytes, the sum of its pieces' bounds.
 *
 * The total is therefore the exact count whenever no piece is over the limit and the budget holds, and an
 * upper bound otherwise (never lower than the true count: an admission estimate may reserve too much, which
 * settling refunds, never too little). Special-token strings (`<|endoftext|>`) are counted as the text they
 * are, as OpenAI counts a user's text, and never throw.
 *
 * The encodings are loaded synchronously on first use (`require` of `gpt-tokenizer`'s per-encoding entry
 * points), so importing `@sluice/openai` does not pay for both vocabularies up front.
 *
 * @internal
 */
import { createRequire } from "node:module"

/** @internal */
export type Encoding = "o200k_base" | "cl100k_base"

/** The longest piece byte-pair-encoded exactly, in UTF-16 code units; longer pieces count their bytes. */
export const PIECE_LIMIT = 256

/** Characters byte-pair-encoded exactly per estimate; beyond it, pieces not in the vocabulary count their bytes. */
export const EXACT_BUDGET = 1_000_000

/**
 * The longest run of whitespace or of non-whitespace a text may hold to be split at all: the split
 * expression backtracks over a whole run, and on a run of millions of characters it overflows the stack.
 * A text with a longer run counts its UTF-8 length in bytes.
 */
export const RUN_LIMIT = 4_096

/** The parts of `gpt-tokenizer`'s encoder this module walks (present in gpt-tokenizer 2 and 3). */
interface Core {
  readonly tokenSplitRegex: RegExp
  readonly getBpeRankFromString: (piece: string) => number | undefined
  readonly bytePairEncode: (piece: string) => { readonly length: number }
}

interface Api {
  readonly countTokens: (text: string, options?: { readonly disallowedSpecial?: ReadonlySet<string> }) => number
  readonly bytePairEncodingCoreProcessor?: Core | undefined
}

const entryPoints: Record<Encoding, string> = {
  o200k_base: "gpt-tokenizer/cjs/encoding/o200k_base",
  cl100k_base: "gpt-tokenizer/cjs/encoding/cl100k_base"
}

/**
 * A `require` for this module: from its file name in the CommonJS build, from `import.meta.url` in the ESM
 * one (not the bare `require`, which a bundler's ESM output replaces with a shim that throws).
 */
const load = (id: string): unknown =>
  createRequire(typeof __filename === "string" && __filename.length > 0 ? __filename : import.meta.url)(id)

const apis: Partial<Record<Encoding, Api>> = {}

/**
 * The encoding's tokenizer, loaded on first use.
 *
 * @internal
 */
export const api = (encoding: Encoding): Api => {
  let loaded = apis[encoding]
  if (loaded === undefined) {
    const module = load(entryPoints[encoding]) as { readonly default?: Api } & Api
    loaded = module.default ?? module
    apis[encoding] = loaded
  }
  return loaded
}

/** Special-token strings are plain text (the tokenizer's default throws on them). */
const asText = { disallowedSpecial: new Set<string>() }

/**
 * The exact count, special-token strings counted as text. Quadratic on long pieces: for tests and
 * benchmarks, never on the admission path.
 *
 * @internal
 */
export const exact = (text: string, encoding: Encoding): number =>
  text.length === 0 ? 0 : api(encoding).countTokens(text, asText)

/**
 * The UTF-8 length of a string in bytes (a lone surrogate is encoded as U+FFFD, three bytes).
 *
 * @internal
 */
export const utf8Length = (text: string): number => {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    if (unit < 0x80) bytes += 1
    else if (unit < 0x800) bytes += 2
    else if (unit >= 0xd800 && unit <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4
      i++
    } else bytes += 3
  }
  return bytes
}

/** JavaScript's `\s` (what the split expressions mean by whitespace). */
const isSpace = (unit: number): boolean =>
  unit === 0x20 || (unit >= 0x09 && unit <= 0x0d) || (unit >= 0x80 &&
    (unit === 0xa0 || unit === 0x1680 || (unit >= 0x2000 && unit <= 0x200a) || unit === 0x2028 ||
      unit === 0x2029 || unit === 0x202f || unit === 0x205f || unit === 0x3000 || unit === 0xfeff))

/**
 * Whether a text holds a run of more than `limit` code units of whitespace or of non-whitespace.
 *
 * @internal
 */
export const hasLongRun = (text: string, limit: number = RUN_LIMIT): boolean => {
  if (text.length <= limit) return false
  let run = 0
  let space = false
  for (let i = 0; i < text.length; i++) {
    const s = isSpace(text.charCodeAt(i))
    run = s === space ? run + 1 : 1
    space = s
    if (run > limit) return true
  }
  return false
}

/**
 * How many characters may still be encoded exactly (shared by the texts of one estimate).
 *
 * @internal
 */
export interface Budget {
  remaining: number
}

/** @internal */
export const makeBudget = (characters: number = EXACT_BUDGET): Budget => ({ remaining: characters })

/**
 * Counts a text's tokens: exact when every piece is short and the budget lasts, otherwise an upper bound.
 * Linear in the text's length. Never throws on a string.
 *
 * @internal
 */
export const count = (
  text: string,
  encoding: Encoding,
  budget: Budget = makeBudget(),
  pieceLimit: number = PIECE_LIMIT
): number => {
  if (text.length === 0) return 0
  if (hasLongRun(text)) return utf8Length(text)
  const tokenizer = api(encoding)
  const core = tokenizer.bytePairEncodingCoreProcessor
  if (core === undefined || typeof core.bytePairEncode !== "function") {
    // a tokenizer without the internals walked here: exact for a short text, the byte bound otherwise
    if (text.length > pieceLimit || text.length > budget.remaining) return utf8Length(text)
    budget.remaining -= text.length
    return tokenizer.countTokens(text, asText)
  }
  let total = 0
  for (const match of text.matchAll(core.tokenSplitRegex)) {
    const piece = match[0]
    if (piece.length <= pieceLimit && core.getBpeRankFromString(piece) !== undefined) {
      total += 1
    } else if (piece.length <= pieceLimit && piece.length <= budget.remaining) {
      budget.remaining -= piece.length
      total += core.bytePairEncode(piece).length
    } else {
      total += utf8Length(piece)
    }
  }
  return total
}
