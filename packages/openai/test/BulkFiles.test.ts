// The bulk runner's file and line handling, tested directly (found by mutation testing, `pnpm mutate:bulk`):
// line splitting across read chunks, line counting, torn-tail repair, the output writer and request decoding.
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
      // across the 1 MiB read buffer: a line cut by the boundary counts once
      const big = `${"q".repeat((1 << 20) - 2)}\nstraddles${"w".repeat(10)}\nend\n`
      expect(yield* Files.countLines(fileWith(big))).toBe(3)
      const error = yield* Effect.flip(Files.countLines(NodePath.join(tmp(), "none")))
      expect(error.operation).toBe("open")
    }))

  it.effect("repairTail cuts a torn last line and says how many bytes it cut", () =>
    Effect.gen(function*() {
      const dir = tmp()
      expect(yield* Files.repairTail(NodePath.join(dir, "absent"))).toBe(0)
      expect(NodeFs.existsSync(NodePath.join(dir, "absent"))).toBe(false)
      const empty = fileWith("")
      expect(yield* Files.repairTail(empty)).toBe(0)
      const whole = fileWith("{\"a\":1}\n{\"b\":2}\n")
      expect(yield* Files.repairTail(whole)).toBe(0)
      expect(NodeFs.readFileSync(whole, "utf8")).toBe("{\"a\":1}\n{\"b\":2}\n")
      const torn = fileWith("{\"a\":1}\n{\"b\"")
      expect(yield* Files.repairTail(torn)).toBe(4)
      expect(NodeFs.readFileSync(torn, "utf8")).toBe("{\"a\":1}\n")
      const noLine = fileWith("{\"partial")
      expect(yield* Files.repairTail(noLine)).toBe(9)
      expect(NodeFs.statSync(noLine).size).toBe(0)
    }))

  it.effect("repairTail finds the last complete line behind a torn tail longer than its 64 KiB read", () =>
    Effect.gen(function*() {
      const tail = "t".repeat(150 * 1024)
      const long = fileWith(`first\nsecond\n${tail}`)
      expect(yield* Files.repairTail(long)).toBe(tail.length)
      expect(NodeFs.readFileSync(long, "utf8")).toBe("first\nsecond\n")
      const noNewline = fileWith("n".repeat(130 * 1024))
      expect(yield* Files.repairTail(noNewline)).toBe(130 * 1024)
      expect(NodeFs.statSync(noNewline).size).toBe(0)
      // the newline is the very first byte
      const atStart = fileWith(`\n${"u".repeat(70 * 1024)}`)
      expect(yield* Files.repairTail(atStart)).toBe(70 * 1024)
      expect(NodeFs.readFileSync(atStart, "utf8")).toBe("\n")
    }))

  it.effect("repairTail of something that is not a file is a repair FileFailure", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Files.repairTail(tmp()))
      expect(error.operation).toBe("repair")
    }))

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
      "/v1/images/generations"
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
    expect(Input.decode(line({ url: "/v1/completions" }))).toEqual({
      _tag: "Invalid",
      reason: "unsupported-url",
      customId: "c1",
      message: "unsupported url \"/v1/completions\" (supported: /v1/chat/completions, /v1/responses, /v1/embeddings, " +
        "/v1/images/generations)"
    })
    const invalid = Input.decode(line({ body: [1] }))
    expect(invalid).toMatchObject({ _tag: "Invalid", reason: "invalid-line", customId: "c1" })
    expect((invalid as { message: string }).message).toContain("body")
  })

  it("outputCustomId reads the custom_id of an output line, or nothing", () => {
    expect(Input.outputCustomId(JSON.stringify({ id: "batch_req_1", custom_id: "x" }))).toBe("x")
    expect(Input.outputCustomId(JSON.stringify({ custom_id: 1 }))).toBeUndefined()
    expect(Input.outputCustomId("null")).toBeUndefined()
    expect(Input.outputCustomId("\"custom_id\"")).toBeUndefined()
    expect(Input.outputCustomId("{\"custom_id\":\"torn")).toBeUndefined()
  })
})
