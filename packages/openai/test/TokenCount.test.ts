/**
 * Token counting is linear with a cap: exact while every piece is short and the budget lasts, an upper
 * bound (never below the exact count) otherwise; estimators never throw, whatever the body.
 */
import { describe, expect, it } from "@effect/vitest"
import { TokenEstimator } from "@sluice/openai"
import * as FastCheck from "effect/FastCheck"
import * as TokenCount from "../src/internal/tokenCount.js"

const encodings = ["o200k_base", "cl100k_base"] as const

/** Text from pieces that exercise the split: words, digits, whitespace runs, punctuation, CJK, emoji, specials. */
const text = FastCheck.array(
  FastCheck.oneof(
    FastCheck.constantFrom(
      " ",
      "  ",
      "\n",
      "\n\n",
      "\t",
      "\r\n",
      "'s",
      "'LL",
      "!",
      "?!",
      "/",
      "<|endoftext|>",
      "<|im_start|>",
      "中文",
      "日本語",
      "🙂",
      "𝔘",
      "\ud800",
      "é",
      "Ω"
    ),
    FastCheck.stringMatching(/^[a-zA-Z]{1,12}$/),
    FastCheck.stringMatching(/^[0-9]{1,7}$/),
    FastCheck.string({ maxLength: 6 }),
    FastCheck.string({ unit: "binary", maxLength: 4 })
  ),
  { maxLength: 30 }
).map((parts) => parts.join(""))

describe("token counting", () => {
  it("property: with no limit in reach the count is exact", () =>
    FastCheck.assert(
      FastCheck.property(text, FastCheck.constantFrom(...encodings), (s, encoding) => {
        expect(TokenCount.count(s, encoding)).toBe(TokenCount.exact(s, encoding))
      }),
      { numRuns: 300 }
    ))

  it("property: with tiny limits (pieces, budget) the count is never below the exact count", () =>
    FastCheck.assert(
      FastCheck.property(
        text,
        FastCheck.constantFrom(...encodings),
        FastCheck.integer({ min: 0, max: 12 }),
        FastCheck.integer({ min: 0, max: 40 }),
        (s, encoding, pieceLimit, budget) => {
          const capped = TokenCount.count(s, encoding, TokenCount.makeBudget(budget), pieceLimit)
          expect(capped).toBeGreaterThanOrEqual(TokenCount.exact(s, encoding))
          expect(capped).toBeLessThanOrEqual(TokenCount.utf8Length(s))
        }
      ),
      { numRuns: 300 }
    ))

  it("property: a long run with no cut position counts its bytes; one with cuts less; never below the exact count", () =>
    FastCheck.assert(
      FastCheck.property(
        FastCheck.constantFrom("a", "A", "aA", "1", "中", "!", " ", "\n", "ab1", "é"),
        FastCheck.integer({ min: 1, max: 200 }),
        text,
        (unit, extra, around) => {
          const run = unit.repeat(Math.ceil((TokenCount.RUN_LIMIT + extra) / unit.length))
          const s = `${around}${run}${around}`
          expect(TokenCount.hasLongRun(s)).toBe(true)
          const counted = TokenCount.count(s, "o200k_base")
          expect(counted).toBeGreaterThanOrEqual(TokenCount.exact(s, "o200k_base"))
          expect(counted).toBeLessThanOrEqual(TokenCount.utf8Length(s))
          // "ab1" × n is cut after every "b" and every "1": counted piece by piece ("ab", "1": 2 tokens per 3
          // bytes), not as its bytes
          if (unit === "ab1") {
            expect(counted).toBeLessThanOrEqual(0.67 * TokenCount.utf8Length(run) + 2 * TokenCount.utf8Length(around))
          } else expect(counted).toBeGreaterThanOrEqual(TokenCount.utf8Length(run))
        }
      ),
      // the exact count of a 4,000-character piece is the slow part: a few runs suffice
      { numRuns: 12 }
    ))

  /** Text without whitespace (or little of it): words, numbers, punctuation, marks, apostrophes, astral. */
  const dense = FastCheck.array(
    FastCheck.oneof(
      FastCheck.constantFrom(
        "'s",
        "'",
        "'LL",
        "’",
        ".",
        "+",
        "/",
        "=",
        "{\"",
        "\":",
        "_",
        "-",
        "é",
        "e\u0301",
        "\u0301",
        "中文",
        "Ω",
        "½",
        "٣",
        "𝔘",
        "🙂",
        "\ud800",
        " ",
        "\n",
        "\r\n"
      ),
      FastCheck.stringMatching(/^[a-zA-Z]{1,8}$/),
      FastCheck.stringMatching(/^[0-9]{1,5}$/),
      FastCheck.string({ maxLength: 4 }),
      FastCheck.string({ unit: "binary", maxLength: 3 })
    ),
    { maxLength: 60 }
  ).map((parts) => parts.join(""))

  const pieces = (s: string, encoding: (typeof encodings)[number]) =>
    Array.from(s.matchAll(TokenCount.api(encoding).bytePairEncodingCoreProcessor!.tokenSplitRegex), (m) => m[0])

  it("property: cut at every cut position, the slices split into exactly the pieces of the whole", () =>
    FastCheck.assert(
      FastCheck.property(dense, FastCheck.constantFrom(...encodings), (s, encoding) => {
        const slices: Array<string> = []
        let start = 0
        for (let at = 1; at < s.length; at++) {
          if (TokenCount.cutsAt(s, at)) {
            slices.push(s.slice(start, at))
            start = at
          }
        }
        slices.push(s.slice(start))
        expect(slices.flatMap((slice) => pieces(slice, encoding))).toEqual(pieces(s, encoding))
      }),
      { numRuns: 1_000 }
    ))

  it("property: texts with runs over the run limit count exactly when every uncut stretch fits; never below", () =>
    FastCheck.assert(
      FastCheck.property(
        dense,
        FastCheck.constantFrom(...encodings),
        FastCheck.integer({ min: 1, max: 24 }),
        (s, encoding, runLimit) => {
          const counted = TokenCount.count(s, encoding, TokenCount.makeBudget(), TokenCount.PIECE_LIMIT, runLimit)
          const exact = TokenCount.exact(s, encoding)
          expect(counted).toBeGreaterThanOrEqual(exact)
          expect(counted).toBeLessThanOrEqual(TokenCount.utf8Length(s))
          let longest = 0
          let start = 0
          for (let at = 1; at <= s.length; at++) {
            if (at === s.length || TokenCount.cutsAt(s, at)) {
              longest = Math.max(longest, at - start)
              start = at
            }
          }
          if (longest <= runLimit) expect(counted).toBe(exact)
        }
      ),
      { numRuns: 1_000 }
    ))

  it("base64-like text over the run limit is counted piece by piece: within 5% of the exact count", () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    let x = 7
    let s = ""
    for (let i = 0; i < 40_000; i++) {
      x = (x * 1_103_515_245 + 12_345) >>> 0
      s += alphabet[(x >>> 8) % 64]
    }
    for (const encoding of encodings) {
      const counted = TokenCount.count(s, encoding)
      const exact = TokenCount.exact(s, encoding)
      expect(counted).toBeGreaterThanOrEqual(exact)
      expect(counted).toBeLessThanOrEqual(exact * 1.05)
    }
  })

  it("the UTF-8 length is the encoder's", () =>
    FastCheck.assert(
      FastCheck.property(FastCheck.string({ unit: "binary", maxLength: 40 }), (s) => {
        expect(TokenCount.utf8Length(s)).toBe(new TextEncoder().encode(s).length)
      })
    ))

  it("special-token strings count as text and never throw", () => {
    expect(() => TokenEstimator.countText("<|endoftext|> and <|im_start|>", "cl100k_base")).not.toThrow()
    expect(TokenEstimator.countText("<|endoftext|>", "o200k_base")).toBeGreaterThan(1)
  })

  it("5 MB without whitespace: counted at once, an upper bound, without blocking", () => {
    // the speed is measured in benchmarks/tokens.ts; here only that it returns the bound
    const s = "a".repeat(5_000_000)
    expect(TokenEstimator.countText(s, "o200k_base")).toBe(5_000_000)
  })
})

/** Bodies of any JSON shape, and objects whose known fields have any JSON type. */
const anyBody = FastCheck.oneof(
  FastCheck.jsonValue({ maxDepth: 4 }),
  FastCheck.record({
    model: FastCheck.jsonValue({ maxDepth: 2 }),
    messages: FastCheck.jsonValue({ maxDepth: 3 }),
    input: FastCheck.jsonValue({ maxDepth: 3 }),
    prompt: FastCheck.jsonValue({ maxDepth: 2 }),
    best_of: FastCheck.jsonValue({ maxDepth: 1 }),
    suffix: FastCheck.jsonValue({ maxDepth: 1 }),
    instructions: FastCheck.jsonValue({ maxDepth: 2 }),
    n: FastCheck.jsonValue({ maxDepth: 1 }),
    max_tokens: FastCheck.jsonValue({ maxDepth: 1 }),
    max_completion_tokens: FastCheck.jsonValue({ maxDepth: 1 }),
    max_output_tokens: FastCheck.jsonValue({ maxDepth: 1 }),
    tools: FastCheck.jsonValue({ maxDepth: 3 }),
    response_format: FastCheck.jsonValue({ maxDepth: 2 }),
    quality: FastCheck.jsonValue({ maxDepth: 1 }),
    size: FastCheck.jsonValue({ maxDepth: 1 })
  }, { requiredKeys: [] }),
  FastCheck.record({
    model: FastCheck.constantFrom("gpt-4o-mini", "gpt-image-1", "text-embedding-3-small"),
    messages: FastCheck.array(
      FastCheck.record({
        role: FastCheck.jsonValue({ maxDepth: 1 }),
        content: FastCheck.jsonValue({ maxDepth: 3 }),
        name: FastCheck.jsonValue({ maxDepth: 1 }),
        tool_calls: FastCheck.jsonValue({ maxDepth: 2 })
      }, { requiredKeys: [] }),
      { maxLength: 4 }
    )
  })
)

const isCount = (n: number) => Number.isFinite(n) && n >= 0

describe("estimators on any body", () => {
  it("property: every estimator returns finite, non-negative figures and never throws", () =>
    FastCheck.assert(
      FastCheck.property(anyBody, (body) => {
        const estimates = [
          TokenEstimator.chat(body as any),
          TokenEstimator.responses(body as any),
          TokenEstimator.embeddings(body as any),
          TokenEstimator.images(body as any),
          TokenEstimator.completions(body as any),
          TokenEstimator.moderations(body as any),
          TokenEstimator.forEndpoint("/v1/chat/completions", body),
          TokenEstimator.forEndpoint("/v1/embeddings", body),
          TokenEstimator.forEndpoint("/v1/completions", body),
          TokenEstimator.forEndpoint("/v1/moderations", body)
        ]
        for (const estimate of estimates) {
          expect(estimate).toBeDefined()
          expect(typeof estimate!.model).toBe("string")
          for (
            const figure of [estimate!.promptTokens, estimate!.maxOutputTokens, estimate!.tokens, estimate!.images]
          ) {
            expect(isCount(figure)).toBe(true)
          }
        }
      }),
      { numRuns: 300 }
    ))

  it("huge n and max_tokens give a finite count (found by the property: n = 1.76e305)", () => {
    const chat = TokenEstimator.chat({ model: "gpt-4o-mini", messages: [], n: 1.7555597020139804e305, max_tokens: 10 })
    expect(chat.maxOutputTokens).toBe(Number.MAX_SAFE_INTEGER)
    expect(chat.tokens).toBe(Number.MAX_SAFE_INTEGER)
    const image = TokenEstimator.images({ model: "gpt-image-1", prompt: "a cat", n: 1e308 })
    expect(Number.isFinite(image.tokens)).toBe(true)
  })

  it("cyclic or too deep values and huge strings never throw", () => {
    const cyclic: Record<string, unknown> = { a: 1 }
    cyclic.self = cyclic
    let deep: unknown = "leaf"
    for (let i = 0; i < 100_000; i++) deep = [deep]
    for (const tools of [cyclic, deep, 10n]) {
      const estimate = TokenEstimator.chat({ model: "gpt-4o", messages: [], tools } as any)
      expect(isCount(estimate.tokens)).toBe(true)
    }
    const huge = TokenEstimator.chat({ model: "gpt-4o", messages: [{ role: "user", content: "x".repeat(3_000_000) }] })
    expect(huge.promptTokens).toBeGreaterThanOrEqual(3_000_000 / 4)
    expect(TokenEstimator.forEndpoint(42 as any, {})).toBeUndefined()
    expect(TokenEstimator.chat(null as any).tokens).toBeGreaterThan(0)
  })
})
