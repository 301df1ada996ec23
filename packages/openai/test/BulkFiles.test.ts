// The bulk runner's file and line handling, tested directly (found by mutation testing, `pnpm mutate:bulk`):
// line splitting across read chunks, line counting, the output writer, output lines and request decoding.
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Stream from "effect/Stream"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Files from "../src/internal/bulkFiles.js"
import * as Input from "../src/internal/bulkInput.js"

const tmp = () => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-files-"))

const fileWith = (content: string | Buffer) => {
  const path = NodePath.join(tmp(), "f.jsonl")
  NodeFs.writeFileSync(path, content)
  return path
}

const readLines = (path: string) =>
  Effect.map(Stream.runCollect(Files.lines(path)), (c) => Chunk.toReadonlyArray(c).map((l) => [l.line, l.text]))

// The reference: split on \n, drop one \r before it, keep a last line without \n unless it is empty.
const modelLines = (content: string): Array<[number, string]> => {
  const parts = content.split("\n")
  const last = parts.pop()!
  const out = parts.map((p, i): [number, string] => [i + 1, p.endsWith("\r") ? p.slice(0, -1) : p])
  if (last.length > 0) out.push([out.length + 1, last.endsWith("\r") ? last.slice(0, -1) : last])
  return out
}

const CHUNK = 256 * 1024

describe("bulk files", () => {
  it.effect("lines: numbers every line, strips one CR before LF, keeps a last line without LF", () =>
    Effect.gen(function*() {
      expect(yield* readLines(fileWith("a\r\n\nb\r\r\n  \nlast\r"))).toEqual([
        [1, "a"],
        [2, ""],
        [3, "b\r"],
        [4, "  "],
        [5, "last"]
      ])
      expect(yield* readLines(fileWith(""))).toEqual([])
      expect(yield* readLines(fileWith("one"))).toEqual([[1, "one"]])
      expect(yield* readLines(fileWith("\r\n"))).toEqual([[1, ""]])
    }))

  it.effect("lines: a line and a multi-byte character across the 256 KiB read boundary", () =>
    Effect.gen(function*() {
      // "é" is two bytes: put its first byte last in the first chunk
      const head = "x".repeat(CHUNK - 1 - 3)
      const content = `ab\n${head}é tail\nz\n`
      expect(Buffer.byteLength(content.slice(0, 3 + head.length + 1))).toBe(CHUNK + 1)
      expect(yield* readLines(fileWith(content))).toEqual([[1, "ab"], [2, `${head}é tail`], [3, "z"]])
      // a CR as the last byte of a chunk and its LF first in the next
      const crlf = `${"y".repeat(CHUNK - 1)}\r\nnext`
      expect(yield* readLines(fileWith(crlf))).toEqual([[1, "y".repeat(CHUNK - 1)], [2, "next"]])
    }))

  it.effect.prop(
    "lines agree with a plain split on any text",
    {
      text: FastCheck.array(FastCheck.constantFrom("a", "é", "\n", "\r", " ", "{}"), { maxLength: 60 }).map((xs) =>
        xs.join("")
      )
    },
    ({ text }) =>
      Effect.map(readLines(fileWith(text)), (got) => {
        expect(got).toEqual(modelLines(text))
      }),
    { fastCheck: { numRuns: 50 } }
  )

  it.effect("lines of a missing file fail with a read FileFailure naming the path", () =>
    Effect.gen(function*() {
      const path = NodePath.join(tmp(), "missing.jsonl")
      const exit = yield* Effect.exit(Stream.runDrain(Files.lines(path)))
      expect(Exit.isFailure(exit)).toBe(true)
      const error = yield* Effect.flip(Stream.runDrain(Files.lines(path)))
      expect(error).toBeInstanceOf(Files.FileFailure)
      expect(error.operation).toBe("read")
      expect(error.message).toMatch(new RegExp(`^read ${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: .*ENOENT`))
    }))

  it.effect("countLines counts the lines with anything but blanks, the last one with or without LF", () =>
    Effect.gen(function*() {
      expect(yield* Files.countLines(fileWith(""))).toBe(0)
      expect(yield* Files.countLines(fileWith("a"))).toBe(1)
      expect(yield* Files.countLines(fileWith("a\n"))).toBe(1)
      expect(yield* Files.countLines(fileWith("a\n \t\r\n\n\nb\r\nc"))).toBe(3)
      expect(yield* Files.countLines(fileWith("a\n  \t "))).toBe(1)
      expect(yield* Files.countLines(fileWith("\n\n x\n"))).toBe(1)
      // a byte order mark is not content
      expect(yield* Files.countLines(fileWith(Buffer.from([0xef, 0xbb, 0xbf, 0x0a, 0x0a])))).toBe(0)
      expect(yield* Files.countLines(fileWith(Buffer.from([0xef, 0xbb, 0xbf])))).toBe(0)
      expect(yield* Files.countLines(fileWith("\ufec0\n"))).toBe(1)
      expect(yield* Files.countLines(fileWith("a\u00bf\n"))).toBe(1)
      expect(yield* Files.countLines(fileWith("\u00ef\u00bb\n"))).toBe(1)
      // across the 1 MiB read buffer: a line cut by the boundary counts once
      const big = `${"q".repeat((1 << 20) - 2)}\nstraddles${"w".repeat(10)}\nend\n`
      expect(yield* Files.countLines(fileWith(big))).toBe(3)
      const error = yield* Effect.flip(Files.countLines(NodePath.join(tmp(), "none")))
      expect(error.operation).toBe("open")
    }))

  it.effect("lines: a byte order mark is dropped; a line that is not UTF-8 says so", () =>
    Effect.gen(function*() {
      const bom = fileWith(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from("a\nb\n")]))
      expect(yield* readLines(bom)).toEqual([[1, "a"], [2, "b"]])
      const bad = fileWith(Buffer.concat([Buffer.from("ok\n"), Buffer.from([0x7b, 0xff, 0x7d]), Buffer.from("\nfine")]))
      const got = Chunk.toReadonlyArray(yield* Stream.runCollect(Files.lines(bad)))
      expect(got.map((l) => [l.line, l.invalidUtf8 === true])).toEqual([[1, false], [2, true], [3, false]])
      expect(got[0].invalidUtf8).toBeUndefined()
      // a block that is not UTF-8 is split byte by byte: same CR handling, a newline first of all
      const badCrlf = fileWith(
        Buffer.concat([Buffer.from("\nx\r\n"), Buffer.from([0xff]), Buffer.from("\r\n\r\nz\r\n")])
      )
      expect(yield* readLines(badCrlf)).toEqual([[1, ""], [2, "x"], [3, "\ufffd"], [4, ""], [5, "z"]])
      // only the three bytes EF BB BF are a byte order mark: not EF BB 80 (U+FEC0), not a BF in third place
      expect(yield* readLines(fileWith("\ufec0\nb\n"))).toEqual([[1, "\ufec0"], [2, "b"]])
      expect(yield* readLines(fileWith("a\u00bf\n"))).toEqual([[1, "a\u00bf"]])
      expect(yield* readLines(fileWith("\u00ef\u00bb\n"))).toEqual([[1, "\u00ef\u00bb"]])
      const badLast = fileWith(Buffer.concat([Buffer.from("ok\n"), Buffer.from([0xc3])]))
      const last = Chunk.toReadonlyArray(yield* Stream.runCollect(Files.lines(badLast)))
      expect(last.map((l) => [l.line, l.invalidUtf8 === true])).toEqual([[1, false], [2, true]])
    }))

  it("isBlank: only spaces, tabs and carriage returns", () => {
    expect(Files.isBlank("")).toBe(true)
    expect(Files.isBlank(" \t\r ")).toBe(true)
    expect(Files.isBlank(" \f")).toBe(false)
    expect(Files.isBlank("\u00a0")).toBe(false)
    expect(Files.isBlank("  x")).toBe(false)
  })

  it.effect("lineWriter appends lines (or truncates), creates the directory and counts what it wrote", () =>
    Effect.gen(function*() {
      const path = NodePath.join(tmp(), "nested", "deeper", "out.jsonl")
      yield* Effect.scoped(Effect.gen(function*() {
        const writer = yield* Files.lineWriter(path, { fsyncEvery: 2 })
        expect(writer.written()).toBe(0)
        yield* writer.write("one")
        yield* writer.write("twö")
        yield* writer.write("three")
        expect(writer.written()).toBe(3)
      }))
      expect(NodeFs.readFileSync(path, "utf8")).toBe("one\ntwö\nthree\n")
      yield* Effect.scoped(Effect.flatMap(Files.lineWriter(path, {}), (w) => w.write("four")))
      expect(NodeFs.readFileSync(path, "utf8")).toBe("one\ntwö\nthree\nfour\n")
      yield* Effect.scoped(Effect.flatMap(Files.lineWriter(path, { truncate: true }), (w) => w.write("only")))
      expect(NodeFs.readFileSync(path, "utf8")).toBe("only\n")
      const dir = tmp()
      const error = yield* Effect.flip(Effect.scoped(Files.lineWriter(dir, {})))
      expect(error.operation).toBe("open")
    }))
})

describe("bulk input lines", () => {
  const line = (fields: Record<string, unknown>) =>
    JSON.stringify({ custom_id: "c1", method: "POST", url: "/v1/chat/completions", body: { model: "m" }, ...fields })

  it("decodes a request line for every supported endpoint", () => {
    for (const url of Input.supportedUrls) {
      expect(Input.decode(line({ url, body: { model: "m", n: 1 } }))).toEqual({
        _tag: "Ok",
        customId: "c1",
        url,
        body: { model: "m", n: 1 }
      })
    }
    expect(Input.supportedUrls).toEqual([
      "/v1/chat/completions",
      "/v1/responses",
      "/v1/embeddings",
      "/v1/images/generations",
      "/v1/completions",
      "/v1/moderations"
    ])
  })

  it("says why a line is refused, with its custom_id once known", () => {
    expect(Input.decode("{nope")).toMatchObject({ _tag: "Invalid", reason: "malformed-json" })
    expect((Input.decode("{nope") as { message: string }).message).toMatch(/^not JSON: /)
    for (const text of ["[]", "null", "3", "\"s\""]) {
      expect(Input.decode(text)).toEqual({
        _tag: "Invalid",
        reason: "not-an-object",
        message: "a request line must be a JSON object"
      })
    }
    expect(Input.decode(JSON.stringify({ method: "POST" }))).toEqual({
      _tag: "Invalid",
      reason: "missing-custom-id",
      message: "custom_id is missing"
    })
    for (const id of ["", 7, null]) {
      expect(Input.decode(line({ custom_id: id }))).toEqual({
        _tag: "Invalid",
        reason: "missing-custom-id",
        message: "custom_id must be a non-empty string"
      })
    }
    expect(Input.decode(line({ method: "GET" }))).toEqual({
      _tag: "Invalid",
      reason: "unsupported-method",
      customId: "c1",
      message: "unsupported method \"GET\" (only POST)"
    })
    expect(Input.decode(line({ url: "/v1/audio/speech" }))).toEqual({
      _tag: "Invalid",
      reason: "unsupported-url",
      customId: "c1",
      message: "unsupported url \"/v1/audio/speech\" (supported: /v1/chat/completions, /v1/responses, " +
        "/v1/embeddings, /v1/images/generations, /v1/completions, /v1/moderations)"
    })
    const invalid = Input.decode(line({ body: [1] }))
    expect(invalid).toMatchObject({ _tag: "Invalid", reason: "invalid-line", customId: "c1" })
    expect((invalid as { message: string }).message).toContain("body")
  })

  it("outputLine reads the custom_id of an output line and whether it records a failure, or nothing", () => {
    expect(Files.outputLine(JSON.stringify({ id: "batch_req_1", custom_id: "x", response: {}, error: null }))).toEqual({
      customId: "x",
      failed: false
    })
    expect(Files.outputLine(JSON.stringify({ custom_id: "y", error: { code: "c" } }))).toEqual({
      customId: "y",
      failed: true
    })
    expect(Files.outputLine(JSON.stringify({ custom_id: "z", response: null }))).toEqual({
      customId: "z",
      failed: false
    })
    expect(Files.outputLine(JSON.stringify({ custom_id: 1, response: null }))).toBeUndefined()
    expect(Files.outputLine(JSON.stringify({ custom_id: "no-fields" }))).toBeUndefined()
    expect(Files.outputLine("null")).toBeUndefined()
    expect(Files.outputLine("[{\"custom_id\":\"a\",\"error\":null}]")).toBeUndefined()
    expect(Files.outputLine("\"custom_id\"")).toBeUndefined()
    expect(Files.outputLine("{\"custom_id\":\"torn")).toBeUndefined()
  })
})
