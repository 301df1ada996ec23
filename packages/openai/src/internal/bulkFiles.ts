/**
 * File plumbing for the bulk runner: line streams with line numbers, the torn-tail repair and the
 * done-set scan of an existing output file, and an append-only line writer with batched fsync.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { StringDecoder } from "node:string_decoder"

/** @internal */
export interface NumberedLine {
  readonly line: number
  readonly text: string
}

/** @internal */
export class FileFailure {
  readonly _tag = "FileFailure"
  constructor(readonly path: string, readonly operation: string, readonly cause: unknown) {}
  get message(): string {
    const detail = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `${this.operation} ${this.path}: ${detail}`
  }
}

/**
 * The lines of a file, numbered from 1, in chunks of whole lines (one chunk per block read), with
 * backpressure: the file is read 256 KiB at a time as the stream is pulled, so memory stays bounded
 * whatever the file's size. `\r\n` endings are accepted; a last line without a newline is a line too.
 *
 * @internal
 */
export const lines = (path: string): Stream.Stream<NumberedLine, FileFailure> =>
  Stream.suspend(() => {
    let n = 0
    let carry = ""
    const decoder = new StringDecoder("utf8")
    const split = (text: string): Chunk.Chunk<NumberedLine> => {
      const out: Array<NumberedLine> = []
      let from = 0
      let at = text.indexOf("\n", from)
      while (at >= 0) {
        const end = at > from && text.charCodeAt(at - 1) === 13 ? at - 1 : at
        out.push({ line: ++n, text: text.slice(from, end) })
        from = at + 1
        at = text.indexOf("\n", from)
      }
      carry = text.slice(from)
      return Chunk.unsafeFromArray(out)
    }
    return Stream.fromAsyncIterable(
      NodeFs.createReadStream(path, { highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>,
      (cause) => new FileFailure(path, "read", cause)
    ).pipe(
      Stream.mapChunks((buffers) => {
        let out = Chunk.empty<NumberedLine>()
        for (const buffer of buffers) out = Chunk.appendAll(out, split(carry + decoder.write(buffer)))
        return out
      }),
      Stream.concat(Stream.suspend(() => {
        const rest = carry + decoder.end()
        carry = ""
        return rest.length === 0
          ? Stream.empty
          : Stream.make({ line: ++n, text: rest.endsWith("\r") ? rest.slice(0, -1) : rest })
      }))
    )
  })

/**
 * Counts the non-blank lines of a file by scanning its bytes (no decoding), for the progress total. It reads
 * 1 MiB at a time synchronously and yields between blocks: a busy runtime cannot starve it of I/O callbacks,
 * and the work in flight keeps going while it counts.
 *
 * @internal
 */
export const countLines = (path: string): Effect.Effect<number, FileFailure> =>
  Effect.acquireUseRelease(
    Effect.try({ try: () => NodeFs.openSync(path, "r"), catch: (cause) => new FileFailure(path, "open", cause) }),
    (fd) =>
      Effect.gen(function*() {
        const buffer = Buffer.alloc(1 << 20)
        let count = 0
        let blank = true
        while (true) {
          const read = yield* Effect.try({
            try: () => NodeFs.readSync(fd, buffer, 0, buffer.length, null),
            catch: (cause) => new FileFailure(path, "read", cause)
          })
          if (read === 0) break
          for (let i = 0; i < read; i++) {
            const byte = buffer[i]
            if (byte === 10) {
              if (!blank) count++
              blank = true
            } else if (byte !== 32 && byte !== 9 && byte !== 13) {
              blank = false
            }
          }
          yield* Effect.yieldNow()
        }
        return blank ? count : count + 1
      }),
    (fd) => Effect.sync(() => NodeFs.closeSync(fd))
  )

/**
 * Truncates a torn last line (bytes after the last newline: a write cut short by a crash). Returns the
 * number of bytes removed (0 when the file ends cleanly or does not exist).
 *
 * @internal
 */
export const repairTail = (path: string): Effect.Effect<number, FileFailure> =>
  Effect.try({
    try: () => {
      if (!NodeFs.existsSync(path)) return 0
      const fd = NodeFs.openSync(path, "r+")
      try {
        const size = NodeFs.fstatSync(fd).size
        if (size === 0) return 0
        const chunk = Buffer.alloc(64 * 1024)
        let end = size
        while (end > 0) {
          const start = Math.max(0, end - chunk.length)
          const read = NodeFs.readSync(fd, chunk, 0, end - start, start)
          const index = chunk.subarray(0, read).lastIndexOf(10)
          if (index >= 0) {
            const keep = start + index + 1
            if (keep < size) {
              NodeFs.ftruncateSync(fd, keep)
              NodeFs.fsyncSync(fd)
            }
            return size - keep
          }
          end = start
        }
        NodeFs.ftruncateSync(fd, 0)
        NodeFs.fsyncSync(fd)
        return size
      } finally {
        NodeFs.closeSync(fd)
      }
    },
    catch: (cause) => new FileFailure(path, "repair", cause)
  })

/**
 * An append-only line sink: every line is written whole with one synchronous write (so it is in the
 * kernel before the next request is recorded) and the file is fsynced every `fsyncEvery` lines, on the first
 * write after a second without one (time from `Clock`), and on close.
 *
 * @internal
 */
export interface LineWriter {
  readonly write: (line: string) => Effect.Effect<void, FileFailure>
  readonly written: () => number
}

/** @internal */
export const lineWriter = (
  path: string,
  options: { readonly truncate?: boolean; readonly fsyncEvery?: number }
) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        const dir = NodePath.dirname(path)
        if (!NodeFs.existsSync(dir)) NodeFs.mkdirSync(dir, { recursive: true })
        return NodeFs.openSync(path, options.truncate === true ? "w" : "a")
      },
      catch: (cause) => new FileFailure(path, "open", cause)
    }),
    (fd) =>
      Effect.sync(() => {
        try {
          NodeFs.fsyncSync(fd)
        } catch {
          // best effort on close
        }
        NodeFs.closeSync(fd)
      })
  ).pipe(
    Effect.map((fd): LineWriter => {
      const every = Math.max(1, options.fsyncEvery ?? 256)
      let count = 0
      let lastSync = -Infinity
      return {
        written: () => count,
        write: (line) =>
          Effect.flatMap(Clock.currentTimeMillis, (now) =>
            Effect.try({
              try: () => {
                const buffer = Buffer.from(line + "\n", "utf8")
                let offset = 0
                while (offset < buffer.length) {
                  offset += NodeFs.writeSync(fd, buffer, offset, buffer.length - offset)
                }
                count++
                if (count % every === 0 || now - lastSync >= 1000) {
                  NodeFs.fsyncSync(fd)
                  lastSync = now
                }
              },
              catch: (cause) => new FileFailure(path, "write", cause)
            }))
      }
    })
  )
