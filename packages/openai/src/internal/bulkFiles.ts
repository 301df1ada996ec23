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
import { isUtf8 } from "node:buffer"
import { randomUUID } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"

/** @internal */
export interface NumberedLine {
  readonly line: number
  readonly text: string
  /** The line's bytes are not valid UTF-8. */
  readonly invalidUtf8?: true
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
 * whatever the file's size. `\r\n` endings are accepted; a last line without a newline is a line too; a UTF-8
 * byte order mark at the start is dropped. A line that is not valid UTF-8 comes with `invalidUtf8: true` (its
 * text has U+FFFD where the bad bytes were): the caller rejects it rather than send an altered line.
 *
 * @internal
 */
export const lines = (path: string): Stream.Stream<NumberedLine, FileFailure> =>
  Stream.suspend(() => {
    let n = 0
    // bytes after the last newline so far, kept as parts (a long line is joined once, not block by block)
    let carry: Array<Buffer> = []
    let first = true
    const numbered = (text: string, valid: boolean): NumberedLine =>
      valid ? { line: ++n, text } : { line: ++n, text, invalidUtf8: true }
    /** Whole lines (`bytes` ends with a newline), decoded at once when the block is valid UTF-8. */
    const split = (bytes: Buffer, out: Array<NumberedLine>) => {
      if (isUtf8(bytes)) {
        const text = bytes.toString("utf8")
        let from = 0
        let at = text.indexOf("\n", from)
        while (at >= 0) {
          const end = at > from && text.charCodeAt(at - 1) === 13 ? at - 1 : at
          out.push(numbered(text.slice(from, end), true))
          from = at + 1
          at = text.indexOf("\n", from)
        }
        return
      }
      let from = 0
      let at = bytes.indexOf(10, from)
      while (at >= 0) {
        const end = at > from && bytes[at - 1] === 13 ? at - 1 : at
        const line = bytes.subarray(from, end)
        out.push(numbered(line.toString("utf8"), isUtf8(line)))
        from = at + 1
        at = bytes.indexOf(10, from)
      }
    }
    const dropBom = (bytes: Buffer): Buffer => {
      if (!first || bytes.length < 3) return bytes
      first = false
      return bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? bytes.subarray(3) : bytes
    }
    return Stream.fromAsyncIterable(
      NodeFs.createReadStream(path, { highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>,
      (cause) => new FileFailure(path, "read", cause)
    ).pipe(
      Stream.mapChunks((buffers) => {
        const out: Array<NumberedLine> = []
        for (const buffer of buffers) {
          if (buffer.indexOf(10) < 0) {
            carry.push(buffer)
            continue
          }
          const bytes = dropBom(carry.length === 0 ? buffer : Buffer.concat([...carry, buffer]))
          const last = bytes.lastIndexOf(10)
          split(bytes.subarray(0, last + 1), out)
          carry = last + 1 < bytes.length ? [bytes.subarray(last + 1)] : []
        }
        return Chunk.unsafeFromArray(out)
      }),
      Stream.concat(Stream.suspend(() => {
        const rest = dropBom(Buffer.concat(carry))
        carry = []
        if (rest.length === 0) return Stream.empty
        const bytes = rest[rest.length - 1] === 13 ? rest.subarray(0, -1) : rest
        return Stream.make(numbered(bytes.toString("utf8"), isUtf8(bytes)))
      }))
    )
  })

/**
 * Whether a line counts as blank: only spaces, tabs and carriage returns (JSON's whitespace). Anything else
 * (a form feed, U+00A0) is a line, and an invalid one; {@link countLines} counts by the same rule, so the
 * summary's totals and the exit code agree.
 *
 * @internal
 */
export const isBlank = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c !== 32 && c !== 9 && c !== 13) return false
  }
  return true
}

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
        let start = true
        while (true) {
          const read = yield* Effect.try({
            try: () => NodeFs.readSync(fd, buffer, 0, buffer.length, null),
            catch: (cause) => new FileFailure(path, "read", cause)
          })
          if (read === 0) break
          // a UTF-8 byte order mark is not content (lines drops it)
          const from = start && read >= 3 && buffer[0] === 0xef && buffer[1] === 0xbb && buffer[2] === 0xbf ? 3 : 0
          start = false
          for (let i = from; i < read; i++) {
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

// ---------------------------------------------------------------------------------------------------------------
// guards: path collisions, the output lock, what may be appended to
// ---------------------------------------------------------------------------------------------------------------

/**
 * A run that must not start: two roles name one file, another run holds the output's lock, or the output is
 * not a Batch API output file.
 *
 * @internal
 */
export class PathProblem {
  readonly _tag = "PathProblem"
  constructor(
    readonly reason: "same-file" | "locked" | "not-output",
    readonly path: string,
    readonly message: string
  ) {}
}

/** Where a path leads: its real path (a missing file: its parent's real path; a dangling link: its target). */
const realPath = (path: string, depth = 0): string => {
  const absolute = NodePath.resolve(path)
  try {
    return NodeFs.realpathSync(absolute)
  } catch {
    // missing: follow a dangling symbolic link, else resolve the directory
  }
  if (depth < 40) {
    try {
      return realPath(NodePath.resolve(NodePath.dirname(absolute), NodeFs.readlinkSync(absolute)), depth + 1)
    } catch {
      // not a link
    }
  }
  const dir = NodePath.dirname(absolute)
  return NodePath.join(dir === absolute ? dir : realPath(dir, depth + 1), NodePath.basename(absolute))
}

/** Device and inode of an existing file (hard links share them), else `undefined`. */
const fileId = (path: string): string | undefined => {
  try {
    const stat = NodeFs.statSync(path)
    return `${stat.dev}:${stat.ino}`
  } catch {
    return undefined
  }
}

/**
 * The first pair of roles that name one file — by real path (through symbolic links) or, for files that
 * exist, by device and inode (hard links) — or `undefined` when they are all distinct. Nothing is opened.
 *
 * @internal
 */
export const checkPaths = (
  files: ReadonlyArray<{ readonly role: string; readonly path: string }>
): PathProblem | undefined => {
  const ids = files.map((file) => ({ ...file, real: realPath(file.path), id: fileId(file.path) }))
  for (let i = 0; i < ids.length; i++) {
    for (let j = i + 1; j < ids.length; j++) {
      const a = ids[i]!
      const b = ids[j]!
      if (a.real === b.real || (a.id !== undefined && a.id === b.id)) {
        const how = a.real === b.real
          ? a.path === b.path ? "" : ` (both lead to ${a.real})`
          : " (hard links to one file)"
        return new PathProblem(
          "same-file",
          b.path,
          `the ${b.role} ${b.path} is the ${a.role} ${a.path}${how}: refusing to run, it would overwrite it; ` +
            `give the ${b.role} another path`
        )
      }
    }
  }
  return undefined
}

/** The lock file of an output: `<output>.lock`. @internal */
export const lockPath = (output: string): string => `${output}.lock`

interface LockOwner {
  readonly pid: number
  readonly host: string
  readonly started: string
  readonly token: string
}

const readOwner = (path: string): LockOwner | undefined => {
  try {
    const owner = JSON.parse(NodeFs.readFileSync(path, "utf8")) as Partial<LockOwner>
    return typeof owner.pid === "number" && typeof owner.host === "string" && typeof owner.token === "string"
      ? { pid: owner.pid, host: owner.host, started: String(owner.started), token: owner.token }
      : undefined
  } catch {
    return undefined
  }
}

/** Whether a process of this host is alive (`EPERM`: it is, under another user). */
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Holds `<output>.lock` for the scope: created atomically (`O_EXCL`) with the owner's pid, host, start time and
 * a random token, removed on release when it is still ours. A lock left by a dead process of this host (a
 * `kill -9`, a crash) is taken over: renamed aside atomically, so of two runs taking over only one wins. A lock
 * from another host is never taken over (its process cannot be checked): the error names the host and the file
 * to remove.
 *
 * @internal
 */
export const acquireLock = (output: string) => {
  const path = lockPath(output)
  const host = NodeOs.hostname()
  const token = randomUUID()
  const create = (): boolean => {
    let fd: number
    try {
      const dir = NodePath.dirname(path)
      if (!NodeFs.existsSync(dir)) NodeFs.mkdirSync(dir, { recursive: true })
      fd = NodeFs.openSync(path, "wx")
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") return false
      throw error
    }
    try {
      const owner: LockOwner = { pid: process.pid, host, started: new Date().toISOString(), token }
      NodeFs.writeSync(fd, JSON.stringify(owner) + "\n")
      NodeFs.fsyncSync(fd)
    } finally {
      NodeFs.closeSync(fd)
    }
    return true
  }
  const acquire = Effect.suspend((): Effect.Effect<void, PathProblem | FileFailure> => {
    for (let attempt = 0; attempt < 5; attempt++) {
      let created: boolean
      try {
        created = create()
      } catch (cause) {
        return Effect.fail(new FileFailure(path, "lock", cause))
      }
      if (created) return Effect.void
      const owner = readOwner(path)
      const remove = `if no sluice run is writing ${output}, remove ${path} and rerun`
      if (owner === undefined) {
        // a lock being written this instant, or a file that is not ours: never guess
        return Effect.fail(
          new PathProblem("locked", output, `${output} is locked (${path} exists but names no owner); ${remove}`)
        )
      }
      if (owner.host !== host) {
        return Effect.fail(
          new PathProblem(
            "locked",
            output,
            `${output} is locked by pid ${owner.pid} on host ${owner.host} (since ${owner.started}); ${remove}`
          )
        )
      }
      if (alive(owner.pid)) {
        return Effect.fail(
          new PathProblem(
            "locked",
            output,
            `another sluice run (pid ${owner.pid}, since ${owner.started}) is writing ${output}: ` +
              `wait for it to end or stop it (its lock is ${path})`
          )
        )
      }
      // stale: its process is gone. Rename it aside (atomic: one taker wins), check it is the one judged stale.
      const aside = `${path}.stale-${process.pid}-${token}`
      try {
        NodeFs.renameSync(path, aside)
      } catch {
        continue // someone else took it over first: look again
      }
      const moved = readOwner(aside)
      if (moved?.token !== owner.token) {
        // a fresh lock was created between our read and the rename: put it back
        try {
          NodeFs.linkSync(aside, path)
        } catch {
          // another lock is there already
        }
      }
      try {
        NodeFs.unlinkSync(aside)
      } catch {
        // gone already
      }
    }
    return Effect.fail(new PathProblem("locked", output, `${output}: could not take its lock ${path}`))
  })
  const release = Effect.sync(() => {
    if (readOwner(path)?.token === token) {
      try {
        NodeFs.unlinkSync(path)
      } catch {
        // best effort
      }
    }
  })
  return Effect.acquireRelease(acquire, () => release)
}

/**
 * An output line's `custom_id` and whether it records a failure (`error` set), or `undefined` when the line is
 * not a Batch API output line (an object with a string `custom_id` and a `response` or `error` field).
 *
 * @internal
 */
export const outputLine = (text: string): { readonly customId: string; readonly failed: boolean } | undefined => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return undefined
  const record = json as Record<string, unknown>
  const id = record["custom_id"]
  if (typeof id !== "string" || !("response" in record || "error" in record)) return undefined
  return { customId: id, failed: record["error"] !== null && record["error"] !== undefined }
}

/** How every output line the runner writes begins (`JSON.stringify` keeps the key order: `id` first). */
const linePrefix = "{\"id\":"

/** What resuming found in an existing output. */
export interface Resume {
  /** Every `custom_id` with a line (including failures, unless they were taken out to be retried). */
  readonly done: Set<string>
  /** The `custom_id`s among `done` whose line records a failure. */
  readonly failed: Set<string>
  /** Bytes of a torn last line removed (a write cut short by a crash). */
  readonly repairedBytes: number
  /** Failure lines taken out of the output to be retried (`retryFailed`). */
  readonly superseded: number
}

/** The bytes after the last newline of a file (its unterminated last line), and where they start. */
const tailOf = (fd: number, size: number): { readonly start: number; readonly bytes: Buffer } => {
  const chunk = Buffer.alloc(64 * 1024)
  let end = size
  while (end > 0) {
    const start = Math.max(0, end - chunk.length)
    const read = NodeFs.readSync(fd, chunk, 0, end - start, start)
    const index = chunk.subarray(0, read).lastIndexOf(10)
    if (index >= 0) {
      end = start + index + 1
      break
    }
    end = start
  }
  const bytes = Buffer.alloc(size - end)
  if (bytes.length > 0) NodeFs.readSync(fd, bytes, 0, bytes.length, end)
  return { start: end, bytes }
}

/**
 * Prepares an existing output for appending and reads what it holds. Every complete line must be a Batch API
 * output line, else nothing is touched and the run is refused (`not-output`): appending to a notes file or a
 * request file would damage it. The unterminated last line, if any, is completed with a newline when it is a
 * whole output line, truncated when it is a torn line of ours (it begins `{"id":`, as every line
 * the runner writes), and refused
 * otherwise. With `retryFailed` (a path), the failure lines are appended to that file (fsynced) and the output is
 * rewritten without them (a temporary file renamed over it, so a crash leaves one or the other), so each
 * `custom_id` still ends in exactly one output line once it is resent.
 *
 * @internal
 */
export const resume = (
  output: string,
  options: { readonly retryFailed?: string | undefined } = {}
): Effect.Effect<Resume, FileFailure | PathProblem> =>
  Effect.gen(function*() {
    const done = new Set<string>()
    const failed = new Set<string>()
    if (!NodeFs.existsSync(output)) return { done, failed, repairedBytes: 0, superseded: 0 }

    // 1. the unterminated last line, judged before anything is written
    const tail = yield* Effect.try({
      try: () => {
        const fd = NodeFs.openSync(output, "r")
        try {
          return tailOf(fd, NodeFs.fstatSync(fd).size)
        } finally {
          NodeFs.closeSync(fd)
        }
      },
      catch: (cause) => new FileFailure(output, "read", cause)
    })
    const tailText = tail.bytes.toString("utf8").replace(/\r$/, "")
    const action = tail.bytes.length === 0
      ? "none"
      : isBlank(tailText)
      ? "truncate"
      : outputLine(tailText) !== undefined
      ? "complete"
      : tailText.startsWith(linePrefix) || linePrefix.startsWith(tailText)
      ? "truncate"
      : "refuse"

    // 2. every complete line must be an output line
    let bad: number | undefined
    let last = 0
    yield* Stream.runForEachChunk(lines(output), (chunk) =>
      Effect.sync(() => {
        for (const { line, text } of chunk) {
          last = line
          if (isBlank(text)) continue
          const parsed = outputLine(text)
          if (parsed === undefined) {
            if (bad === undefined) bad = line
            continue
          }
          done.add(parsed.customId)
          if (parsed.failed) failed.add(parsed.customId)
          else failed.delete(parsed.customId)
        }
      }))
    const tornLast = action === "truncate" && bad === last
    if ((bad !== undefined && !tornLast) || action === "refuse") {
      const at = bad ?? last
      return yield* Effect.fail(
        new PathProblem(
          "not-output",
          output,
          `${output}:${at} is not a Batch API output line ({"custom_id", "response", "error"}): ` +
            `refusing to append to a file that is not a sluice output; give --output a new or an output file`
        )
      )
    }

    // 3. repair the tail
    yield* Effect.try({
      try: () => {
        if (action === "none") return
        const fd = NodeFs.openSync(output, "r+")
        try {
          if (action === "truncate") NodeFs.ftruncateSync(fd, tail.start)
          else NodeFs.writeSync(fd, "\n", NodeFs.fstatSync(fd).size)
          NodeFs.fsyncSync(fd)
        } finally {
          NodeFs.closeSync(fd)
        }
      },
      catch: (cause) => new FileFailure(output, "repair", cause)
    })
    const repairedBytes = action === "truncate" ? tail.bytes.length : 0

    // 4. --retry-failed: move the failure lines out
    if (options.retryFailed === undefined || failed.size === 0) return { done, failed, repairedBytes, superseded: 0 }
    const keep = options.retryFailed
    const temporary = `${output}.sluice-tmp-${process.pid}`
    let superseded = 0
    yield* Effect.scoped(Effect.gen(function*() {
      const moved = yield* lineWriter(keep, { fsyncEvery: 1 << 30 })
      const kept = yield* lineWriter(temporary, { truncate: true, fsyncEvery: 1 << 30 })
      yield* Stream.runForEachChunk(lines(output), (chunk) =>
        Effect.forEach(chunk, ({ text }) => {
          if (isBlank(text)) return Effect.void
          const parsed = outputLine(text)
          if (parsed !== undefined && parsed.failed) {
            superseded++
            return moved.write(text)
          }
          return kept.write(text)
        }, { discard: true }))
    }))
    // both files are fsynced on close (the writers' release); now the rename
    yield* Effect.try({
      try: () => {
        NodeFs.renameSync(temporary, output)
        const dir = NodeFs.openSync(NodePath.dirname(NodePath.resolve(output)), "r")
        try {
          NodeFs.fsyncSync(dir)
        } catch {
          // not every platform fsyncs a directory
        } finally {
          NodeFs.closeSync(dir)
        }
      },
      catch: (cause) => new FileFailure(output, "rewrite", cause)
    })
    for (const id of failed) done.delete(id)
    failed.clear()
    return { done, failed, repairedBytes, superseded }
  })
