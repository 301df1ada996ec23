import { describe, expect, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { requestKeyOf, requestKeyPattern, unknownKey } from "../src/internal/simulator.js"

/** What the simulator's request key is defined as: the first `[req:…]` in the body's JSON text. */
const fromJson = (body: unknown): string | undefined => {
  const match = requestKeyPattern.exec(JSON.stringify(body))
  return match === null ? undefined : match[1]
}

/** Strings likely to hold keys, brackets, quotes, escapes and surrogates. */
const piece = FastCheck.array(
  FastCheck.constantFrom("[req:", "]", "[", "a", "7", " ", "\"", "\\", "\n", "\u0001", "\ud83d", "\ude00", "é", "req:"),
  { maxLength: 12 }
).map((parts) => parts.join(""))
const text = FastCheck.oneof(
  piece,
  FastCheck.tuple(piece, piece, piece).map(([before, key, after]) => `${before}[req:${key}]${after}`)
)

const body: FastCheck.Arbitrary<unknown> = FastCheck.letrec((tie) => ({
  value: FastCheck.oneof(
    { depthSize: "small" },
    text,
    FastCheck.integer(),
    FastCheck.boolean(),
    FastCheck.constant(null),
    FastCheck.constant(undefined),
    FastCheck.array(tie("value"), { maxLength: 4 }),
    FastCheck.dictionary(text, tie("value"), { maxKeys: 4 })
  )
})).value

describe("the simulator's request key", () => {
  it("read from the body's strings, it is the first [req:…] of the body's JSON text, or it defers to the text", () => {
    let read = 0
    FastCheck.assert(
      FastCheck.property(body, (value) => {
        const found = requestKeyOf(value)
        if (found === unknownKey) return
        expect(found).toBe(fromJson(value))
        if (found !== undefined) read++
      }),
      { numRuns: 2_000, seed: 20261206 }
    )
    // the property is not vacuous: keys were read from the strings
    expect(read).toBeGreaterThan(25)
  })

  it("is read from the strings for an ordinary chat body, and defers on what is not plain JSON data", () => {
    const chat = {
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "[req:42] one line, please" }],
      max_tokens: 16
    }
    expect(requestKeyOf(chat)).toBe("42")
    expect(requestKeyOf({ ...chat, messages: [{ role: "user", content: "no key" }] })).toBeUndefined()
    expect(requestKeyOf({ note: "[req:a\"b] quoted" })).toBe(unknownKey)
    expect(fromJson({ note: "[req:a\"b] quoted" })).toBe("a\\\"b")
    expect(requestKeyOf({ at: new Date(0), content: "[req:1]" })).toBe(unknownKey)
    expect(requestKeyOf({ first: "[req:", second: "x]" })).toBe(unknownKey)
    expect(fromJson({ first: "[req:", second: "x]" })).toBe("\",\"second\":\"x")
  })
})
