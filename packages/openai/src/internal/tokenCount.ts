/**
 * Token counting in linear time, with each encoding loaded on first use.
 *
 * `gpt-tokenizer` splits a text with its encoding's regular expression into pieces (words, number groups,
 * punctuation and whitespace runs) and byte-pair-encodes each piece on its own. Byte-pair encoding is
 * quadratic in a piece's length, so one long run without whitespace (`"a"` × 80,000, base64, a minified
 * blob) would block the thread for seconds to minutes. Here the same split is walked piece by piece and:
 *
 * - a piece in the vocabulary counts 1 (as the tokenizer does);
 * - a piece of at most {@link PIECE_LIMIT} characters is byte-pair-encoded exactly;
 * - any other piece counts its UTF-8 length in bytes: every token is at least one byte, so this is never
 *   below the piece's true count;
 * - once the estimate's budget of split characters ({@link EXACT_BUDGET}, shared by the texts of one
 *   estimate) is spent, the rest of the text counts its UTF-8 length in bytes, unsplit: the work per
 *   estimate is bounded, whatever the size of the body;
 * - a text holding a run of more than {@link RUN_LIMIT} characters without whitespace (or of whitespace) is
 *   never handed to the split expression whole (it backtracks over a whole run and overflows the stack on
 *   millions of characters). It is cut first, at positions where every split of the text has a piece
 *   boundary (see {@link cutsAt}), into chunks of at most {@link RUN_LIMIT} characters, and each chunk is
 *   split and counted as above: the pieces of the chunks are exactly the pieces of the whole text. A stretch
 *   of more than {@link RUN_LIMIT} characters with no such position inside (`"a"` × 80,000) counts its
 *   UTF-8 length in bytes, the sum of its pieces' bounds.
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

/** Characters split and counted exactly per estimate; beyond it, the rest of the text counts its bytes. */
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
 * The UTF-8 length of a string in bytes, from `from` on (a lone surrogate is encoded as U+FFFD, three
 * bytes).
 *
 * @internal
 */
export const utf8Length = (text: string, from: number = 0): number => {
  let bytes = 0
  for (let i = Math.max(0, from); i < text.length; i++) {
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

// -----------------------------------------------------------------------------------------------------------
// cutting a long run where every split has a piece boundary
// -----------------------------------------------------------------------------------------------------------

/** Character classes of BMP code units, for {@link cutsAt}: letter, mark, number, other. */
const LETTER = 1
const MARK = 2
const NUMBER = 3
const OTHER = 0

let classes: Uint8Array | undefined

/** The class of every BMP code unit (surrogates: other), computed once (65,536 tests, a few milliseconds). */
const classTable = (): Uint8Array => {
  if (classes !== undefined) return classes
  const table = new Uint8Array(0x10000)
  const letter = /^\p{L}$/u
  const mark = /^\p{M}$/u
  const number = /^\p{N}$/u
  for (let unit = 0; unit < 0x10000; unit++) {
    if (unit >= 0xd800 && unit <= 0xdfff) continue
    const char = String.fromCharCode(unit)
    table[unit] = letter.test(char) ? LETTER : mark.test(char) ? MARK : number.test(char) ? NUMBER : OTHER
  }
  classes = table
  return table
}

/**
 * Whether both encodings' split expressions end a piece between `text[at - 1]` and `text[at]`, whatever
 * the rest of the text:
 *
 * - after a letter, before a character that is neither a letter, a mark nor `'`: a letter can only be in a
 *   word piece (the optional leading character of a word excludes letters), which extends over letters and
 *   marks and an optional `'s`-like suffix only;
 * - after a number, before a character that is not one: a number can only be in a `\p{N}{1,3}` piece.
 *
 * The next piece then starts at `at` in the whole text and in any slice that starts there, and a slice that
 * ends at such a position ends with a letter or a number, where no lookahead (`\s+(?!\S)`, `\s+$`) can
 * match: so splitting slices cut at these positions gives exactly the pieces of the whole. Surrogates (an
 * astral character on either side) never cut: fewer cuts, never a wrong one.
 *
 * @internal
 */
export const cutsAt = (text: string, at: number): boolean => {
  if (at <= 0 || at >= text.length) return false
  const table = classTable()
  const before = table[text.charCodeAt(at - 1)]
  const after = text.charCodeAt(at)
  const afterClass = table[after]
  if (before === LETTER) {
    return afterClass === NUMBER || (afterClass === OTHER && after !== 0x27 && (after < 0xd800 || after > 0xdfff))
  }
  return before === NUMBER && afterClass !== NUMBER && (after < 0xd800 || after > 0xdfff)
}

/**
 * How many characters may still be split and counted exactly (shared by the texts of one estimate).
 *
 * @internal
 */
export interface Budget {
  remaining: number
}

/** @internal */
export const makeBudget = (characters: number = EXACT_BUDGET): Budget => ({ remaining: characters })

/**
 * Counts a text the split expression can take (no run longer than {@link RUN_LIMIT}), piece by piece, until
 * the budget is spent; the rest counts its bytes.
 */
const countPieces = (text: string, core: Core, budget: Budget, pieceLimit: number): number => {
  let total = 0
  for (const match of text.matchAll(core.tokenSplitRegex)) {
    const piece = match[0]
    if (piece.length > budget.remaining) {
      budget.remaining = 0
      return total + utf8Length(text, match.index)
    }
    budget.remaining -= piece.length
    if (piece.length > pieceLimit) total += utf8Length(piece)
    else if (core.getBpeRankFromString(piece) !== undefined) total += 1
    else total += core.bytePairEncode(piece).length
  }
  return total
}

/**
 * Counts a text that holds a long run: cut where every split has a piece boundary ({@link cutsAt}) into
 * chunks of at most `runLimit` characters, each counted piece by piece; a stretch longer than `runLimit`
 * with no cut inside counts its UTF-8 bytes. One pass over the text, plus the chunks' counts.
 */
const countLong = (text: string, core: Core, budget: Budget, pieceLimit: number, runLimit: number): number => {
  let total = 0
  let start = 0
  let lastCut = 0
  const emit = (end: number) => {
    const chunk = text.slice(start, end)
    total += chunk.length > runLimit ? utf8Length(chunk) : countPieces(chunk, core, budget, pieceLimit)
    start = end
  }
  const spent = () => budget.remaining <= 0 && start < text.length
  const reach = (at: number) => {
    // a chunk may not exceed runLimit: close it at the last cut, or take the uncut stretch as bytes
    if (at - start > runLimit && lastCut > start) emit(lastCut)
    if (at - start > runLimit) emit(at)
  }
  for (let at = 1; at < text.length; at++) {
    if (!cutsAt(text, at)) continue
    reach(at)
    // the budget spent: the rest counts its bytes, uncut
    if (spent()) return total + utf8Length(text, start)
    lastCut = at
  }
  reach(text.length)
  if (spent()) return total + utf8Length(text, start)
  if (start < text.length) emit(text.length)
  return total
}

/**
 * Counts a text's tokens: exact when every piece is short, the budget lasts and every run longer than
 * {@link RUN_LIMIT} can be cut ({@link cutsAt}) into chunks within it; otherwise an upper bound. Linear in
 * the text's length. Never throws on a string.
 *
 * @internal
 */
export const count = (
  text: string,
  encoding: Encoding,
  budget: Budget = makeBudget(),
  pieceLimit: number = PIECE_LIMIT,
  runLimit: number = RUN_LIMIT
): number => {
  if (text.length === 0) return 0
  const tokenizer = api(encoding)
  const core = tokenizer.bytePairEncodingCoreProcessor
  if (core === undefined || typeof core.bytePairEncode !== "function") {
    // a tokenizer without the internals walked here: exact for a short text, the byte bound otherwise
    if (text.length > pieceLimit || text.length > budget.remaining) return utf8Length(text)
    budget.remaining -= text.length
    return tokenizer.countTokens(text, asText)
  }
  return hasLongRun(text, runLimit)
    ? countLong(text, core, budget, pieceLimit, runLimit)
    : countPieces(text, core, budget, pieceLimit)
}
