// The bulk runner's guards in bulkFiles.ts (from line 228: path checks, the output lock, resume), through their
// internal functions, where `pnpm mutate:bulkfiles` (SLUICE_MUTATE_LINES=228-...) found the tests silent: the
// refusal messages, links (dangling, looped, in a linked directory), the lock's owner record, a lock that names
// no owner, a lock whose owner cannot be signalled (EPERM), a fresh lock taken between the stale check and the
// rename, a lock that is no longer ours at release, torn tails longer than one read, and --retry-failed's files.
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { afterEach, vi } from "vitest"
import * as Files from "../src/internal/bulkFiles.js"

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof NodeFs>()
  return { ...actual, renameSync: vi.fn(actual.renameSync) }
})

const fs = vi.mocked(NodeFs)
const real = await vi.importActual<typeof NodeFs>("node:fs")

afterEach(() => {
  vi.restoreAllMocks()
  fs.renameSync.mockImplementation(real.renameSync)
})

const tmp = () => NodeFs.realpathSync(NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-guards-mut-")))

const write = (path: string, text: string) => {
  NodeFs.writeFileSync(path, text)
  return path
}

const outputLine = (id: string, error: unknown = null) =>
  JSON.stringify({
    id: `batch_req_${id}`,
    custom_id: id,
    response: error === null ? { status_code: 200 } : null,
    error
  })

const ownerOf = (pid: number, host = NodeOs.hostname(), token = "t") =>
  JSON.stringify({ pid, host, started: "2026-01-01T00:00:00.000Z", token })

/** A pid that is not alive on this host. */
const deadPid = 2 ** 22 + 12345

describe("checkPaths", () => {
  it("distinct files pass; the first colliding pair is named, the later role first, with how they collide", () => {
    const dir = tmp()
    const input = write(NodePath.join(dir, "in.jsonl"), "x\n")
    const output = NodePath.join(dir, "out.jsonl")
    const errors = NodePath.join(dir, "errors.jsonl")
    expect(Files.checkPaths([{ role: "input", path: input }, { role: "output", path: output }])).toBeUndefined()

    const same = Files.checkPaths([
      { role: "input", path: input },
      { role: "output", path: output },
      { role: "errors file", path: input }
    ])
    expect(same).toBeInstanceOf(Files.PathProblem)
    expect(same).toMatchObject({ _tag: "PathProblem", reason: "same-file", path: input })
    expect(same?.message).toBe(
      `the errors file ${input} is the input ${input}: refusing to run, it would overwrite it; ` +
        `give the errors file another path`
    )

    const link = NodePath.join(dir, "link.jsonl")
    NodeFs.symlinkSync(input, link)
    const viaLink = Files.checkPaths([{ role: "input", path: input }, { role: "output", path: link }])
    expect(viaLink?.message).toBe(
      `the output ${link} is the input ${input} (both lead to ${input}): refusing to run, it would overwrite it; ` +
        `give the output another path`
    )

    const hard = NodePath.join(dir, "hard.jsonl")
    NodeFs.linkSync(input, hard)
    const viaHardLink = Files.checkPaths([{ role: "input", path: input }, { role: "errors file", path: hard }])
    expect(viaHardLink).toMatchObject({ reason: "same-file", path: hard })
    expect(viaHardLink?.message).toContain(" (hard links to one file): ")

    // two missing files are distinct unless their paths lead to one place
    expect(Files.checkPaths([{ role: "output", path: output }, { role: "errors file", path: errors }]))
      .toBeUndefined()
    expect(
      Files.checkPaths([
        { role: "output", path: output },
        { role: "errors file", path: `${dir}/./sub/../out.jsonl` }
      ])?.message
    ).toContain(`(both lead to ${output})`)
  })

  it("a dangling link leads to its missing target; a missing file in a linked directory to the directory's target", () => {
    const dir = tmp()
    const target = NodePath.join(dir, "target.jsonl") // missing
    const dangling = NodePath.join(dir, "dangling.jsonl")
    NodeFs.symlinkSync("target.jsonl", dangling) // relative to the link's directory
    expect(Files.checkPaths([{ role: "output", path: target }, { role: "errors file", path: dangling }])?.message)
      .toContain(`(both lead to ${target})`)

    NodeFs.mkdirSync(NodePath.join(dir, "real"))
    NodeFs.symlinkSync(NodePath.join(dir, "real"), NodePath.join(dir, "linked"))
    const inLinked = NodePath.join(dir, "linked", "out.jsonl")
    const inReal = NodePath.join(dir, "real", "out.jsonl")
    expect(Files.checkPaths([{ role: "output", path: inReal }, { role: "errors file", path: inLinked }])?.message)
      .toContain(`(both lead to ${inReal})`)
    // a chain of two dangling links
    const chain = NodePath.join(dir, "chain.jsonl")
    NodeFs.symlinkSync(dangling, chain)
    expect(Files.checkPaths([{ role: "output", path: target }, { role: "errors file", path: chain }])?.reason)
      .toBe("same-file")
  })

  it("a loop of links ends (depth bounded) and is distinct from other files", () => {
    const dir = tmp()
    const a = NodePath.join(dir, "a.jsonl")
    const b = NodePath.join(dir, "b.jsonl")
    NodeFs.symlinkSync(b, a)
    NodeFs.symlinkSync(a, b)
    const other = NodePath.join(dir, "other.jsonl")
    expect(Files.checkPaths([{ role: "output", path: a }, { role: "errors file", path: other }])).toBeUndefined()
    expect(Files.checkPaths([{ role: "output", path: a }, { role: "errors file", path: a }])?.reason).toBe(
      "same-file"
    )
  })
})

describe("acquireLock", () => {
  it.effect("creates <output>.lock (and its directory) with this process's pid, host, start and a token; removes it at the end", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = NodePath.join(dir, "deep", "er", "out.jsonl")
      expect(Files.lockPath(output)).toBe(`${output}.lock`)
      const owner = yield* Effect.scoped(Effect.gen(function*() {
        yield* Files.acquireLock(output)
        return JSON.parse(NodeFs.readFileSync(`${output}.lock`, "utf8"))
      }))
      expect(owner).toMatchObject({ pid: process.pid, host: NodeOs.hostname() })
      expect(new Date(owner.started).toISOString()).toBe(owner.started)
      expect(owner.token).toMatch(/^[0-9a-f-]{36}$/)
      expect(NodeFs.existsSync(`${output}.lock`)).toBe(false)
      // a second lock in the same scope is refused: the first one is live (this process)
      const refused = yield* Effect.scoped(Effect.gen(function*() {
        yield* Files.acquireLock(output)
        return yield* Effect.flip(Files.acquireLock(output))
      }))
      expect(refused).toMatchObject({ _tag: "PathProblem", reason: "locked", path: output })
      expect(refused.message).toMatch(
        new RegExp(`^another sluice run \\(pid ${process.pid}, since \\d{4}-\\d\\d-\\d\\dT[^)]*\\) is writing `)
      )
      expect(refused.message).toContain(`its lock is ${output}.lock`)
      expect(NodeFs.existsSync(`${output}.lock`)).toBe(false)
    }))

  it.effect("a lock file that names no owner (garbage, or fields of the wrong type) is never taken over", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = NodePath.join(dir, "out.jsonl")
      const lock = `${output}.lock`
      for (
        const text of [
          "",
          "not json",
          JSON.stringify({ pid: String(deadPid), host: NodeOs.hostname(), token: "t" }),
          JSON.stringify({ pid: deadPid, host: 7, token: "t" }),
          JSON.stringify({ pid: deadPid, host: NodeOs.hostname() })
        ]
      ) {
        write(lock, text)
        const error = yield* Effect.flip(Effect.scoped(Files.acquireLock(output)))
        expect(error).toMatchObject({ _tag: "PathProblem", reason: "locked" })
        expect(error.message).toBe(
          `${output} is locked (${lock} exists but names no owner); ` +
            `if no sluice run is writing ${output}, remove ${lock} and rerun`
        )
        expect(NodeFs.readFileSync(lock, "utf8")).toBe(text)
      }
    }))

  it.effect("another host's lock names its pid, host and start; a dead owner's lock is taken over, its aside copy removed", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = NodePath.join(dir, "out.jsonl")
      const lock = write(`${output}.lock`, ownerOf(4242, "elsewhere.example"))
      const remote = yield* Effect.flip(Effect.scoped(Files.acquireLock(output)))
      expect(remote.message).toBe(
        `${output} is locked by pid 4242 on host elsewhere.example (since 2026-01-01T00:00:00.000Z); ` +
          `if no sluice run is writing ${output}, remove ${lock} and rerun`
      )
      write(lock, ownerOf(deadPid))
      const taken = yield* Effect.scoped(Effect.gen(function*() {
        yield* Files.acquireLock(output)
        return JSON.parse(NodeFs.readFileSync(lock, "utf8"))
      }))
      expect(taken.pid).toBe(process.pid)
      expect(NodeFs.readdirSync(dir)).toEqual([])
    }))

  it.effect("an owner that cannot be signalled (EPERM: another user's process) is alive; any other error means dead", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = NodePath.join(dir, "out.jsonl")
      const lock = write(`${output}.lock`, ownerOf(deadPid))
      const kill = vi.spyOn(process, "kill").mockImplementation(() => {
        throw Object.assign(new Error("operation not permitted"), { code: "EPERM" })
      })
      const error = yield* Effect.flip(Effect.scoped(Files.acquireLock(output)))
      expect(error.message).toContain(`another sluice run (pid ${deadPid}`)
      expect(kill).toHaveBeenCalledWith(deadPid, 0)
      expect(NodeFs.readFileSync(lock, "utf8")).toBe(ownerOf(deadPid))
      kill.mockImplementation(() => {
        throw Object.assign(new Error("no such process"), { code: "ESRCH" })
      })
      yield* Effect.scoped(Files.acquireLock(output))
      expect(NodeFs.existsSync(lock)).toBe(false)
    }))

  it.effect("a fresh lock made between the stale check and the rename is put back, and then refuses the run", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = NodePath.join(dir, "out.jsonl")
      const lock = write(`${output}.lock`, ownerOf(deadPid))
      const fresh = ownerOf(process.pid, NodeOs.hostname(), "fresh")
      fs.renameSync.mockImplementationOnce((from, to) => {
        real.writeFileSync(lock, fresh) // another run took the stale lock over first
        real.renameSync(from, to)
      })
      const error = yield* Effect.flip(Effect.scoped(Files.acquireLock(output)))
      expect(error.message).toContain(`another sluice run (pid ${process.pid}`)
      expect(NodeFs.readFileSync(lock, "utf8")).toBe(fresh)
      expect(NodeFs.readdirSync(dir)).toEqual(["out.jsonl.lock"]) // the aside copy is gone
    }))

  it.effect("a rename that fails (someone else took the lock over) looks again; five failures give up", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = NodePath.join(dir, "out.jsonl")
      const lock = write(`${output}.lock`, ownerOf(deadPid))
      fs.renameSync.mockImplementation(() => {
        throw Object.assign(new Error("gone"), { code: "ENOENT" })
      })
      const error = yield* Effect.flip(Effect.scoped(Files.acquireLock(output)))
      expect(error).toMatchObject({ _tag: "PathProblem", reason: "locked", path: output })
      expect(error.message).toBe(`${output}: could not take its lock ${lock}`)
      expect(fs.renameSync).toHaveBeenCalledTimes(5)
      // one failed rename, then the lock is gone: taken on the second look
      fs.renameSync.mockReset()
      fs.renameSync.mockImplementationOnce(() => {
        real.unlinkSync(lock)
        throw Object.assign(new Error("gone"), { code: "ENOENT" })
      })
      fs.renameSync.mockImplementation(real.renameSync)
      yield* Effect.scoped(Files.acquireLock(output))
      expect(NodeFs.existsSync(lock)).toBe(false)
    }))

  it.effect("at the end, a lock that is no longer ours is left alone; a directory that cannot be made is a lock FileFailure", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = NodePath.join(dir, "out.jsonl")
      const lock = `${output}.lock`
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Files.acquireLock(output)
        write(lock, ownerOf(4242, "elsewhere.example", "theirs")) // replaced by hand while we ran
      }))
      expect(NodeFs.readFileSync(lock, "utf8")).toBe(ownerOf(4242, "elsewhere.example", "theirs"))

      // a lock removed by hand while the run held it: the release finds nothing and ends quietly
      NodeFs.unlinkSync(lock)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Files.acquireLock(output)
        NodeFs.unlinkSync(lock)
      }))
      expect(NodeFs.existsSync(lock)).toBe(false)

      const file = write(NodePath.join(dir, "a-file"), "")
      const failure = yield* Effect.flip(Effect.scoped(Files.acquireLock(NodePath.join(file, "out.jsonl"))))
      expect(failure).toBeInstanceOf(Files.FileFailure)
      expect(failure).toMatchObject({ operation: "lock", path: NodePath.join(file, "out.jsonl.lock") })
    }))
})

describe("resume", () => {
  it.effect("a missing output is a fresh start; the done and failed ids of an output, the last line of an id winning", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = NodePath.join(dir, "out.jsonl")
      expect(yield* Files.resume(output)).toEqual({
        done: new Set(),
        failed: new Set(),
        repairedBytes: 0,
        superseded: 0
      })
      expect(NodeFs.existsSync(output)).toBe(false)
      const text = [
        outputLine("a"),
        outputLine("b", { code: "c", message: "m" }),
        "  ",
        outputLine("c", { code: "c", message: "m" }),
        outputLine("c"),
        outputLine("d"),
        outputLine("d", { code: "c", message: "m" })
      ].join("\n") + "\n"
      write(output, text)
      const found = yield* Files.resume(output)
      expect([...found.done].sort()).toEqual(["a", "b", "c", "d"])
      expect([...found.failed].sort()).toEqual(["b", "d"])
      expect(found).toMatchObject({ repairedBytes: 0, superseded: 0 })
      expect(NodeFs.readFileSync(output, "utf8")).toBe(text)
    }))

  it.effect("the tail: blank or a prefix of a line of ours is cut, a whole line (CR too) completed, anything else refused", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = NodePath.join(dir, "out.jsonl")
      const head = outputLine("a") + "\n"
      for (
        const [tail, repaired] of [[" \t", 2], ["{\"i", 3], ["{\"id\":\"batch_req_b\",\"cus", 24], ["{", 1]] as const
      ) {
        write(output, head + tail)
        expect((yield* Files.resume(output)).repairedBytes, tail).toBe(repaired)
        expect(NodeFs.readFileSync(output, "utf8")).toBe(head)
      }
      for (const end of ["", "\r"]) {
        write(output, head + outputLine("b") + end)
        const found = yield* Files.resume(output)
        expect(found.repairedBytes).toBe(0)
        expect([...found.done].sort()).toEqual(["a", "b"])
        expect(NodeFs.readFileSync(output, "utf8")).toBe(head + outputLine("b") + end + "\n")
      }
      for (const tail of ["notes", "{\"custom_id\":\"b\"", "[1"]) {
        write(output, head + tail)
        const error = yield* Effect.flip(Files.resume(output))
        expect(error).toMatchObject({ _tag: "PathProblem", reason: "not-output", path: output })
        expect(error.message).toBe(
          `${output}:2 is not a Batch API output line ({"custom_id", "response", "error"}): refusing to append to ` +
            `a file that is not a sluice output; give --output a new or an output file`
        )
        expect(NodeFs.readFileSync(output, "utf8")).toBe(head + tail)
      }
    }))

  it.effect("a bad complete line is refused by its number even when the tail is torn; a torn tail alone is cut", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = NodePath.join(dir, "out.jsonl")
      const text = outputLine("a") + "\n\n" + "not output\n" + outputLine("c") + "\n" + "{\"id\":\"x"
      write(output, text)
      const error = yield* Effect.flip(Files.resume(output))
      expect(error.message).toMatch(new RegExp(`^${output.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:3 is not`))
      expect(NodeFs.readFileSync(output, "utf8")).toBe(text)
    }))

  it.effect("a torn tail longer than one 64 KiB read, and a file that is one unterminated line, are judged whole", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = NodePath.join(dir, "out.jsonl")
      const head = outputLine("a") + "\n"
      const long = "{\"id\":\"batch_req_b\",\"custom_id\":\"b\",\"response\":{\"body\":\"" + "x".repeat(150_000)
      write(output, head + long)
      expect((yield* Files.resume(output)).repairedBytes).toBe(Buffer.byteLength(long))
      expect(NodeFs.readFileSync(output, "utf8")).toBe(head)

      const whole = JSON.stringify({
        id: "batch_req_c",
        custom_id: "c",
        response: { body: "y".repeat(100_000) },
        error: null
      })
      write(output, whole)
      const found = yield* Files.resume(output)
      expect([...found.done]).toEqual(["c"])
      expect(NodeFs.readFileSync(output, "utf8")).toBe(whole + "\n")
      write(output, long)
      expect((yield* Files.resume(output)).repairedBytes).toBe(Buffer.byteLength(long))
      expect(NodeFs.readFileSync(output, "utf8")).toBe("")
    }))

  it.effect("retryFailed moves the failure lines to its file (appended, blank lines dropped) and the rest stays in order", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = NodePath.join(dir, "out.jsonl")
      const keep = write(NodePath.join(dir, "retried.jsonl"), outputLine("old", { code: "c", message: "m" }) + "\n")
      const failure = (id: string) => outputLine(id, { code: "c", message: id })
      write(output, [outputLine("a"), failure("b"), "", outputLine("c"), failure("d"), failure("c2")].join("\n") + "\n")
      const found = yield* Files.resume(output, { retryFailed: keep })
      expect(found.superseded).toBe(3)
      expect([...found.done]).toEqual(["a", "c"])
      expect(found.failed.size).toBe(0)
      expect(NodeFs.readFileSync(output, "utf8")).toBe(outputLine("a") + "\n" + outputLine("c") + "\n")
      expect(NodeFs.readFileSync(keep, "utf8")).toBe(
        [outputLine("old", { code: "c", message: "m" }), failure("b"), failure("d"), failure("c2")].join("\n") + "\n"
      )
      expect(NodeFs.readdirSync(dir).sort()).toEqual(["out.jsonl", "retried.jsonl"])

      // nothing failed: neither file is touched
      const other = NodePath.join(dir, "other.jsonl")
      const clean = yield* Files.resume(output, { retryFailed: other })
      expect(clean).toMatchObject({ superseded: 0, repairedBytes: 0 })
      expect([...clean.done]).toEqual(["a", "c"])
      expect(NodeFs.existsSync(other)).toBe(false)
    }))

  it.effect("retryFailed with a torn tail: the tail is cut first and counted, then the failures move", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = NodePath.join(dir, "out.jsonl")
      const keep = NodePath.join(dir, "retried.jsonl")
      write(output, outputLine("a", { code: "c", message: "m" }) + "\n" + "{\"id\":")
      const found = yield* Files.resume(output, { retryFailed: keep })
      expect(found).toMatchObject({ repairedBytes: 6, superseded: 1 })
      expect(found.done.size).toBe(0)
      expect(NodeFs.readFileSync(output, "utf8")).toBe("")
      expect(NodeFs.readFileSync(keep, "utf8")).toBe(outputLine("a", { code: "c", message: "m" }) + "\n")
    }))

  it.effect("a file whose only newline is its first byte: the torn line after it is cut, the newline kept", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = write(NodePath.join(dir, "out.jsonl"), "\n{\"id\":\"batch_req_x\"")
      expect((yield* Files.resume(output)).repairedBytes).toBe(19)
      expect(NodeFs.readFileSync(output, "utf8")).toBe("\n")
    }))

  it.effect("retryFailed: a temporary file left by an earlier run of the same pid is overwritten, not appended to", () =>
    Effect.gen(function*() {
      const dir = tmp()
      const output = write(
        NodePath.join(dir, "out.jsonl"),
        [outputLine("a"), outputLine("b", { code: "c" })].join("\n") + "\n"
      )
      write(`${output}.sluice-tmp-${process.pid}`, outputLine("stale") + "\n")
      const found = yield* Files.resume(output, { retryFailed: NodePath.join(dir, "retried.jsonl") })
      expect([...found.done]).toEqual(["a"])
      expect(NodeFs.readFileSync(output, "utf8")).toBe(outputLine("a") + "\n")
    }))
})
