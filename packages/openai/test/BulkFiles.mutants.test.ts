// The bulk runner's line writer and line counter against a watched `node:fs` (found by mutation testing,
// `pnpm mutate:bulkfiles`): when the writer fsyncs (every `fsyncEvery` lines, on the first write after a second
// without one, on close), that it closes its file even when the last fsync fails, that a short write is
// completed, and that an I/O error in the middle of a file is a typed failure that still closes the file. The
// file system calls are the real ones, recorded; a test makes one of them fail or write short where it says so.
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { beforeEach, vi } from "vitest"
import * as Files from "../src/internal/bulkFiles.js"
import * as Input from "../src/internal/bulkInput.js"

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof NodeFs>()
  return {
    ...actual,
    fsyncSync: vi.fn(actual.fsyncSync),
    closeSync: vi.fn(actual.closeSync),
    writeSync: vi.fn(actual.writeSync),
    readSync: vi.fn(actual.readSync),
    mkdirSync: vi.fn(actual.mkdirSync)
  }
})

const fs = vi.mocked(NodeFs)
const real = await vi.importActual<typeof NodeFs>("node:fs")
const tmp = () => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-files-mut-"))

beforeEach(() => {
  vi.clearAllMocks()
})

/** The fsyncs of one file descriptor so far. */
const syncsOf = (fd: number) => fs.fsyncSync.mock.calls.filter(([d]) => d === fd).length

/**
 * Opens a writer, writes a first line ("probe") and returns it with its file descriptor. The recorded calls are
 * cleared first: a descriptor number is reused once closed.
 */
const openWriter = (path: string, options: Parameters<typeof Files.lineWriter>[1]) =>
  Effect.gen(function*() {
    vi.clearAllMocks()
    const before = fs.writeSync.mock.calls.length
    const writer = yield* Files.lineWriter(path, options)
    expect(fs.writeSync.mock.calls.length).toBe(before)
    yield* writer.write("probe")
    const fd = fs.writeSync.mock.calls[fs.writeSync.mock.calls.length - 1][0] as number
    return { writer, fd }
  })

describe("lineWriter: durability", () => {
  it.effect("fsyncs on the first write, every fsyncEvery lines, after a second without one, and on close", () =>
    Effect.gen(function*() {
      const path = NodePath.join(tmp(), "out.jsonl")
      let fd = -1
      yield* Effect.scoped(Effect.gen(function*() {
        const opened = yield* openWriter(path, { fsyncEvery: 4 })
        fd = opened.fd
        const { writer } = opened
        // line 1 (the probe): first write, fsynced (no fsync yet)
        expect(syncsOf(fd)).toBe(1)
        yield* writer.write("2")
        yield* writer.write("3")
        expect(syncsOf(fd)).toBe(1)
        yield* writer.write("4") // fourth line
        expect(syncsOf(fd)).toBe(2)
        yield* TestClock.adjust(999)
        yield* writer.write("5")
        expect(syncsOf(fd)).toBe(2) // 999 ms since the last: not yet
        yield* TestClock.adjust(1)
        yield* writer.write("6")
        expect(syncsOf(fd)).toBe(3) // a second since the last
        yield* writer.write("7")
        expect(syncsOf(fd)).toBe(3)
        yield* writer.write("8") // eighth line
        expect(syncsOf(fd)).toBe(4)
        yield* TestClock.adjust(5_000)
        yield* writer.write("9")
        expect(syncsOf(fd)).toBe(5)
        expect(writer.written()).toBe(9)
        expect(fs.closeSync.mock.calls.some(([d]) => d === fd)).toBe(false)
      }))
      expect(syncsOf(fd)).toBe(6) // on close
      expect(fs.closeSync.mock.calls.filter(([d]) => d === fd)).toHaveLength(1)
      expect(NodeFs.readFileSync(path, "utf8")).toBe("probe\n2\n3\n4\n5\n6\n7\n8\n9\n")
    }))

  it.effect("fsyncEvery defaults to 256 lines; below 1 it is every line", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const byDefault = yield* Effect.scoped(Effect.gen(function*() {
        const { fd, writer } = yield* openWriter(NodePath.join(dir, "a.jsonl"), {})
        for (let i = 2; i <= 255; i++) yield* writer.write(String(i))
        const before = syncsOf(fd)
        yield* writer.write("256")
        return [before, syncsOf(fd)]
      }))
      expect(byDefault).toEqual([1, 2])
      const every = yield* Effect.scoped(Effect.gen(function*() {
        const { fd, writer } = yield* openWriter(NodePath.join(dir, "b.jsonl"), { fsyncEvery: 0 })
        yield* writer.write("2")
        yield* writer.write("3")
        return syncsOf(fd)
      }))
      expect(every).toBe(3)
      const negative = yield* Effect.scoped(Effect.gen(function*() {
        const { fd, writer } = yield* openWriter(NodePath.join(dir, "c.jsonl"), { fsyncEvery: -3 })
        yield* writer.write("2")
        return syncsOf(fd)
      }))
      expect(negative).toBe(2)
    }))

  it.effect("a failing fsync on close still closes the file, and the scope ends without a defect", () =>
    Effect.gen(function*() {
      const path = NodePath.join(tmp(), "out.jsonl")
      let fd = -1
      const exit = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
        const opened = yield* openWriter(path, { fsyncEvery: 1_000 })
        fd = opened.fd
        fs.fsyncSync.mockImplementationOnce(() => {
          throw new Error("EIO")
        })
      })))
      expect(exit._tag).toBe("Success")
      expect(fs.closeSync.mock.calls.filter(([d]) => d === fd)).toHaveLength(1)
      expect(() => NodeFs.fstatSync(fd)).toThrow()
    }))

  it.effect("a short write is completed: every byte of the line lands, in order, once", () =>
    Effect.gen(function*() {
      const path = NodePath.join(tmp(), "out.jsonl")
      const sizes: Array<number> = []
      fs.writeSync.mockImplementation(
        ((fd: number, buffer: Buffer, offset: number, length: number) => {
          sizes.push(length)
          // the kernel takes at most 3 bytes a call
          return real.writeSync(fd, buffer, offset, Math.min(3, length))
        }) as typeof NodeFs.writeSync
      )
      try {
        yield* Effect.scoped(Effect.gen(function*() {
          const writer = yield* Files.lineWriter(path, {})
          yield* writer.write("abcdefgh") // 9 bytes with the newline
          yield* writer.write("é") // 3 bytes
        }))
      } finally {
        fs.writeSync.mockImplementation(real.writeSync)
      }
      expect(NodeFs.readFileSync(path, "utf8")).toBe("abcdefgh\né\n")
      expect(sizes).toEqual([9, 6, 3, 3])
    }))

  it.effect("a failing write is a write FileFailure naming the path, and the line is not counted", () =>
    Effect.gen(function*() {
      const path = NodePath.join(tmp(), "out.jsonl")
      const result = yield* Effect.scoped(Effect.gen(function*() {
        const writer = yield* Files.lineWriter(path, {})
        yield* writer.write("one")
        fs.writeSync.mockImplementationOnce(() => {
          throw new Error("ENOSPC: no space left on device")
        })
        const error = yield* Effect.flip(writer.write("two"))
        return { error, written: writer.written() }
      }))
      expect(result.error).toBeInstanceOf(Files.FileFailure)
      expect(result.error.operation).toBe("write")
      expect(result.error.path).toBe(path)
      expect(result.error.message).toBe(`write ${path}: ENOSPC: no space left on device`)
      expect(result.written).toBe(1)
    }))

  it.effect("an existing directory is not created again; a missing one is, with its parents", () =>
    Effect.gen(function*() {
      const dir = tmp()
      yield* Effect.scoped(Files.lineWriter(NodePath.join(dir, "out.jsonl"), {}))
      expect(fs.mkdirSync).not.toHaveBeenCalled()
      const nested = NodePath.join(dir, "a", "b", "out.jsonl")
      yield* Effect.scoped(Files.lineWriter(nested, {}))
      expect(fs.mkdirSync.mock.calls).toEqual([[NodePath.join(dir, "a", "b"), { recursive: true }]])
      expect(NodeFs.existsSync(nested)).toBe(true)
    }))
})

describe("countLines: I/O", () => {
  it.effect("a read error in the middle of a file is a read FileFailure, and the file is closed", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const path = NodePath.join(dir, "in.jsonl")
      NodeFs.writeFileSync(path, "a\n".repeat(1 << 20)) // 2 MiB: two reads and more
      let reads = 0
      fs.readSync.mockImplementation(
        ((...args: Parameters<typeof NodeFs.readSync>) => {
          if (++reads === 2) throw new Error("EIO: i/o error")
          return (real.readSync as (...a: typeof args) => number)(...args)
        }) as typeof NodeFs.readSync
      )
      try {
        const error = yield* Effect.flip(Files.countLines(path))
        expect(error).toBeInstanceOf(Files.FileFailure)
        expect(error.operation).toBe("read")
        expect(error.message).toBe(`read ${path}: EIO: i/o error`)
      } finally {
        fs.readSync.mockImplementation(real.readSync)
      }
      const fd = fs.readSync.mock.calls[0][0] as number
      expect(fs.closeSync.mock.calls.filter(([d]) => d === fd)).toHaveLength(1)
      // and without the failure the same file counts in full, closed once
      vi.clearAllMocks()
      expect(yield* Files.countLines(path)).toBe(1 << 20)
      expect(fs.closeSync).toHaveBeenCalledTimes(1)
    }))

  it.effect("a file of exactly three bytes that is not a byte order mark counts as a line", () =>
    Effect.gen(function*() {
      const dir = tmp()
      for (const bytes of [[0xef, 0xbb, 0x41], [0xef, 0x41, 0xbf], [0x41, 0xbb, 0xbf]]) {
        const path = NodePath.join(dir, `f${bytes.join("-")}`)
        NodeFs.writeFileSync(path, Buffer.from(bytes))
        expect(yield* Files.countLines(path)).toBe(1)
      }
      // a byte order mark only at the start of the file, not at the start of the second 1 MiB block
      const path = NodePath.join(dir, "second-block")
      NodeFs.writeFileSync(
        path,
        Buffer.concat([Buffer.from("\n".repeat(1 << 20)), Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from("\n")])
      )
      expect(yield* Files.countLines(path)).toBe(1)
    }))
})

describe("decode: body.stream", () => {
  const line = (body: Record<string, unknown>) =>
    JSON.stringify({ custom_id: "c1", method: "POST", url: "/v1/chat/completions", body: { model: "m", ...body } })

  it("accepts a stream of false, null or absent; refuses any other value, naming it and how to fix the line", () => {
    for (const body of [{}, { stream: false }, { stream: null }]) {
      expect(Input.decode(line(body))).toMatchObject({ _tag: "Ok", customId: "c1" })
    }
    for (const stream of [true, "yes", 0, 1, {}, []]) {
      expect(Input.decode(line({ stream }))).toEqual({
        _tag: "Invalid",
        reason: "invalid-line",
        customId: "c1",
        message: `body.stream ${JSON.stringify(stream)} is not supported (the output records whole JSON bodies; ` +
          `remove "stream")`
      })
    }
  })
})

describe("lines: the byte order mark", () => {
  const CHUNK = 256 * 1024
  const readLines = (content: string | Buffer) =>
    Effect.gen(function*() {
      const path = NodePath.join(tmp(), "in.jsonl")
      NodeFs.writeFileSync(path, content)
      const got: Array<[number, string]> = []
      yield* Stream.runForEach(Files.lines(path), (l) => Effect.sync(() => got.push([l.line, l.text])))
      return got
    })

  it.effect("only EF BB BF first in the file is dropped: not E1 BB BF (U+1EFF), not a mark first in a later read", () =>
    Effect.gen(function*() {
      expect(yield* readLines("\u1eff\nb\n")).toEqual([[1, "\u1eff"], [2, "b"]])
      expect(yield* readLines("\u1eff")).toEqual([[1, "\u1eff"]])
      // a file that is only the mark, without a newline, has no line
      expect(yield* readLines(Buffer.from([0xef, 0xbb, 0xbf]))).toEqual([])
      expect(yield* readLines(Buffer.from([0xef, 0xbb, 0xbf, 0x61]))).toEqual([[1, "a"]])
      // the second 256 KiB read begins with U+FEFF: it is a line's content there, kept
      const head = "x".repeat(CHUNK - 1)
      expect(yield* readLines(`${head}\n\ufeffy\n`)).toEqual([[1, head], [2, "\ufeffy"]])
    }))

  it.effect("countLines: only EF BB BF first in the file is not content (E1 BB BF is a line)", () =>
    Effect.gen(function*() {
      const path = NodePath.join(tmp(), "in.jsonl")
      NodeFs.writeFileSync(path, "\u1eff\n")
      expect(yield* Files.countLines(path)).toBe(1)
    }))

  it.effect("a failure is tagged FileFailure (what catchTag matches on)", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Files.countLines(NodePath.join(tmp(), "missing")))
      expect(error._tag).toBe("FileFailure")
      const caught = yield* Effect.catchTag(Files.countLines(NodePath.join(tmp(), "missing")), "FileFailure", () =>
        Effect.succeed(-1))
      expect(caught).toBe(-1)
    }))
})
