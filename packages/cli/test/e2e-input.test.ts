// Careless and hostile input to `sluice run`: path collisions, the output lock, reruns over failed lines, base URL
// checks, Ctrl-C, --concurrency and small input defects. A run that needs a process of its own (it holds a lock
// another run meets, it is killed or signalled, it has a heap limit) is the real `sluice` process
// (packages/cli/src/main.ts, bundled once: see `sluiceEntry` in helpers.ts); the others run `sluice` in this process
// as the process would (`sluiceInProcess`: its stdout, stderr and exit code), which spares a process start (about
// 2 s of CPU at load 20) each. Real files, signals, sockets and wall time, which TestClock cannot drive: `it.live`.
import { beforeAll, describe, expect, it } from "@effect/vitest"
import { Cli } from "@sluice/cli"
import type * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { sluiceEntry, sluiceInProcess, startSim, writeChatInput } from "./helpers.js"

let entry = ""
beforeAll(async () => {
  entry = await sluiceEntry()
}, 300_000)
const KEY = "sk-e2e-input-0123456789"
const S = ["--simulate", "tier1", "--progress", "off"]

const tmp = () => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-input-"))

const start = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const child = spawn(process.execPath, [entry, "run", ...args], {
    env: { ...process.env, SLUICE_INPUT_KEY: KEY, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let out = ""
  let err = ""
  child.stdout!.on("data", (d) => (out += d))
  child.stderr!.on("data", (d) => (err += d))
  const done = new Promise<{ code: number | null; out: string; err: string }>((resolve) =>
    child.on("exit", (code) => resolve({ code, out, err }))
  )
  return { child, done, lines: () => out }
}
/** `sluice run <args…>` in this process: its exit code, stdout and stderr, as the process's. */
const sluice = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  sluiceInProcess(["run", ...args], { SLUICE_INPUT_KEY: KEY, ...env })

const lineCount = (path: string) => {
  try {
    return NodeFs.readFileSync(path, "utf8").split("\n").length - 1
  } catch {
    return 0
  }
}
const outputLines = (path: string): Array<any> =>
  NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l))

// real time on purpose: the child is a separate OS process, polled at wall-clock moments
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const waitFor = async (what: () => boolean, child: ChildProcess) => {
  while (!what() && child.exitCode === null) await sleep(20)
}

const chat = (dir: string, name: string, n: number, content: (i: number) => string = (i) => `request ${i}`) => {
  const path = NodePath.join(dir, name)
  writeChatInput(path, n, content)
  return path
}

/** A simulated scenario whose every answer takes `ms`: a run on it holds its locks as long as a test needs. */
const slowScenario = (dir: string, ms: number) => {
  const path = NodePath.join(dir, "slow.json")
  const model = { limits: { rpm: 10_000, tpm: 10_000_000 }, contextWindow: 128_000 }
  NodeFs.writeFileSync(
    path,
    JSON.stringify({
      name: "slow",
      seed: 1,
      models: { "gpt-4o-mini": model, "gpt-4o": model },
      latency: { request: { _tag: "fixed", ms }, perOutputTokenMs: 0 }
    })
  )
  return path
}

describe("sluice run: careless and hostile input", () => {
  // live: real files and the simulator on the live clock; `sluiceInProcess` runs the command in a runtime of its own
  // (`Effect.runPromise`, as the process does), whose Clock is the live one: a TestClock in this test cannot reach it
  it.live(
    "path collisions are refused with exit 2 before any file is written; a non-JSONL output too",
    () =>
      Effect.promise(async () => {
        const dir = tmp()
        const input = chat(dir, "in.jsonl", 3)
        const original = NodeFs.readFileSync(input, "utf8")
        const refused = async (args: ReadonlyArray<string>, expected: RegExp) => {
          const before = Object.fromEntries(
            NodeFs.readdirSync(dir).map((n) => [n, NodeFs.readFileSync(NodePath.join(dir, n), "utf8")])
          )
          const run = await sluice([...args, ...S])
          expect(run.code, run.err).toBe(2)
          expect(run.err).toMatch(expected)
          expect(run.err).not.toMatch(/\n\s+at /) // a message, not a stack trace
          const after = Object.fromEntries(
            NodeFs.readdirSync(dir).map((n) => [n, NodeFs.readFileSync(NodePath.join(dir, n), "utf8")])
          )
          expect(after).toEqual(before)
        }
        const p = (name: string) => NodePath.join(dir, name)
        // --errors equal to --input
        await refused(["--input", input, "--output", p("o.jsonl"), "--errors", input], /errors file .* is the input/)
        // the default errors path of x.jsonl is x.errors.jsonl: the input
        NodeFs.copyFileSync(input, p("x.errors.jsonl"))
        await refused(["--input", p("x.errors.jsonl"), "--output", p("x.jsonl")], /errors file .* is the input/)
        // --restart with input = output, and input = output without it; through a symbolic link too
        await refused(["--input", input, "--output", input, "--restart"], /output .* is the input/)
        NodeFs.symlinkSync(input, p("link.jsonl"))
        await refused(["--input", input, "--output", p("link.jsonl")], /output .* is the input .*both lead to/)
        // --errors equal to --output would wipe the earlier results
        const done = await sluice(["--input", input, "--output", p("results.jsonl"), ...S])
        expect(done.code).toBe(0)
        await refused(["--input", input, "--output", p("results.jsonl"), "--errors", p("results.jsonl")], /errors file/)
        expect(lineCount(p("results.jsonl"))).toBe(3)
        // an output that is not JSONL (a notes file without a final newline) keeps every byte
        NodeFs.writeFileSync(p("notes.txt"), "my notes\nno final newline")
        await refused(["--input", input, "--output", p("notes.txt")], /notes\.txt:1 is not a Batch API output line/)
        expect(NodeFs.readFileSync(input, "utf8")).toBe(original)
      }),
    240_000
  )

  // live: a real `sluice run` process holds the output lock (an O_EXCL file) while a run in this process meets it;
  // TestClock cannot drive another OS process
  it.live(
    "the output lock: a second run on the same output is refused (exit 2) while the first runs; after a kill -9 a rerun takes the stale lock over",
    () =>
      Effect.promise(async () => {
        const dir = tmp()
        const input = chat(dir, "in.jsonl", 200)
        const output = NodePath.join(dir, "out.jsonl")
        // the first run's answers take an hour, all 200 in flight at once: it holds its lock while the second
        // starts and is refused, however slow the machine (a fast first run could end before the second
        // process has started: it then finds the job done, not the lock)
        const slow = slowScenario(dir, 3_600_000)
        const args = (simulate: string) => [
          "--input",
          input,
          "--output",
          output,
          "--simulate",
          simulate,
          "--concurrency",
          "200",
          "--progress",
          "off"
        ]
        const first = start(args(slow))
        await waitFor(() => NodeFs.existsSync(`${output}.lock`), first.child)
        const second = await sluice(args("tier5"))
        expect(first.child.exitCode, "the first run was still running when the second was refused").toBeNull()
        expect(second.code, second.err).toBe(2)
        expect(second.err).toContain(`another sluice run (pid ${first.child.pid}`)
        expect(second.err).toContain(`${output}.lock`)
        // the first dies holding its lock (kill -9, its 200 answers still on the wire: nothing written); the lock is
        // stale (this host, its process gone) and a rerun takes it over and finishes the job, one line per id
        first.child.kill("SIGKILL")
        await first.done
        expect(NodeFs.existsSync(`${output}.lock`)).toBe(true)
        const third = await sluice(args("tier5"))
        expect(third.code, third.out + third.err).toBe(0)
        const ids = outputLines(output).map((l) => l.custom_id)
        expect(ids.length).toBe(200)
        expect(new Set(ids).size).toBe(200)
        expect(NodeFs.existsSync(`${output}.lock`)).toBe(false)
      }),
    240_000
  )

  // live: a real `sluice run` process and a run in this process, distinct outputs, one errors file; a real kill -9
  // (TestClock cannot drive another OS process)
  it.live(
    "the errors lock: a second run writing the same errors file is refused (exit 2) while the first runs; a stale one is taken over",
    () =>
      Effect.promise(async () => {
        const dir = tmp()
        const errors = NodePath.join(dir, "shared.errors.jsonl")
        const p = (name: string) => NodePath.join(dir, name)
        // the first run's answers take an hour: it holds its locks for as long as the test needs, however
        // slow the machine
        const slow = slowScenario(dir, 3_600_000)
        const args = (input: string, output: string, simulate: string) => [
          "--input",
          input,
          "--output",
          output,
          "--errors",
          errors,
          "--simulate",
          simulate,
          "--progress",
          "off"
        ]
        const first = start(args(chat(dir, "a.jsonl", 3), p("a.out.jsonl"), slow))
        await waitFor(() => NodeFs.existsSync(`${errors}.lock`), first.child)
        expect(first.child.exitCode).toBeNull()
        const second = await sluice(args(chat(dir, "b.jsonl", 3), p("b.out.jsonl"), "tier1"))
        expect(second.code, second.err).toBe(2)
        expect(second.err).toContain(`another sluice run (pid ${first.child.pid}`)
        expect(second.err).toContain(`${errors}.lock`)
        // refused before anything was written; its output's lock released
        expect(NodeFs.existsSync(p("b.out.jsonl"))).toBe(false)
        expect(NodeFs.existsSync(`${p("b.out.jsonl")}.lock`)).toBe(false)
        // the first dies holding its locks: a stale errors lock (this host, its process gone) is taken over
        first.child.kill("SIGKILL")
        await first.done
        expect(NodeFs.existsSync(`${errors}.lock`)).toBe(true)
        const third = await sluice(args(p("b.jsonl"), p("b.out.jsonl"), "tier1"))
        expect(third.code, third.err).toBe(0)
        expect(lineCount(p("b.out.jsonl"))).toBe(3)
        expect(NodeFs.existsSync(`${errors}.lock`)).toBe(false)
      }),
    240_000
  )

  // live: runs over a real output file, the simulator on the live clock; `sluiceInProcess` runs the command in a
  // runtime of its own (`Effect.runPromise`, as the process does), whose Clock is the live one: a TestClock in this
  // test cannot reach it
  it.live(
    "a rerun over failed lines exits 1; --retry-failed resends only those, one line per custom_id",
    () =>
      Effect.promise(async () => {
        const dir = tmp()
        const input = chat(dir, "in.jsonl", 6, (i) => `request ${i}${i % 3 === 1 ? " [sim:content-policy]" : ""}`)
        const output = NodePath.join(dir, "out.jsonl")
        const first = await sluice(["--input", input, "--output", output, ...S])
        expect(first.code).toBe(1)
        const rerun = await sluice(["--input", input, "--output", output, ...S])
        expect(rerun.code).toBe(1)
        expect(rerun.out).toContain("already done 6 (2 of them failed)")
        expect(rerun.out).toContain("--retry-failed resends them")
        const retry = await sluice(["--input", input, "--output", output, "--retry-failed", ...S])
        expect(retry.code).toBe(1) // they fail again: the content is the same
        expect(retry.out).toContain("already done 4; succeeded 0; failed 2")
        const lines = outputLines(output)
        expect(lines.map((l) => l.custom_id).sort()).toEqual(["id-0", "id-1", "id-2", "id-3", "id-4", "id-5"])
        expect(outputLines(NodePath.join(dir, "out.retried.jsonl")).map((l) => l.custom_id).sort()).toEqual([
          "id-1",
          "id-4"
        ])
      }),
    240_000
  )

  // live: real sockets, one that refuses connections (sluice in this process)
  it.live(
    "base URL: checked at startup (exit 2); an unreachable server is an outage (exit 3), lines resumable",
    () =>
      Effect.promise(async () => {
        const dir = tmp()
        const input = chat(dir, "in.jsonl", 40)
        const output = NodePath.join(dir, "out.jsonl")
        const real = ["--input", input, "--output", output, "--api-key-env", "SLUICE_INPUT_KEY", "--progress", "off"]
        for (const url of ["not a url", "", "ftp://example.com/v1"]) {
          const run = await sluice([...real, "--base-url", url])
          expect(run.code, url).toBe(2)
          expect(run.err).toContain("--base-url")
          expect(NodeFs.existsSync(output)).toBe(false)
        }
        const empty = await sluice([...real, "--base-url", "http://127.0.0.1:1/v1"], { SLUICE_INPUT_KEY: "" })
        expect(empty.code).toBe(2)
        expect(empty.err).toContain("SLUICE_INPUT_KEY is empty")
        expect(empty.err).not.toMatch(/\n\s+at /)

        // port 1 on loopback: nothing listens
        const down = await sluice([...real, "--base-url", "http://127.0.0.1:1/v1"])
        expect(down.code).toBe(3)
        expect(down.out).toContain("stopped by: Outage")
        expect(lineCount(output)).toBe(0)
        // with limits given every line goes at once: the calls that fail after the outage is found (they were on
        // the wire when it was) stop too (they went on retrying behind the open breaker until their retries ran
        // out: the run took 4 minutes); it ends at once, its wall time under a minute
        const downAtOnce = await sluice([...real, "--tier", "1", "--base-url", "http://127.0.0.1:1/v1"])
        expect(downAtOnce.code).toBe(3)
        expect(downAtOnce.out).toContain("stopped by: Outage")
        expect(downAtOnce.out).toMatch(/wall time: \d+(\.\d+)?s\b/)
        expect(lineCount(output)).toBe(0)
        const sim = await startSim(KEY)
        try {
          const up = await sluice([...real, "--base-url", sim.url])
          expect(up.code).toBe(0)
          expect(lineCount(output)).toBe(40)
        } finally {
          await sim.close()
        }
      }),
    240_000
  )

  // live: a real SIGINT to a real process, with requests on the wire
  it.live(
    "Ctrl-C: calls waiting for admission fail at once, unsent; only those in flight finish",
    () =>
      Effect.promise(async () => {
        const dir = tmp()
        const input = chat(dir, "in.jsonl", 1000)
        const output = NodePath.join(dir, "out.jsonl")
        const run = start(["--input", input, "--output", output, ...S])
        await waitFor(() => lineCount(output) >= 30, run.child)
        const atSignal = lineCount(output)
        run.child.kill("SIGINT")
        const r = await run.done
        expect(r.code).toBe(3)
        expect(r.out).toContain("stopped by: signal")
        // 256 calls were waiting for admission (tier 1 paces them); before, every one of them was sent
        expect(lineCount(output) - atSignal).toBeLessThan(40)
        const resume = await sluice([
          "--input",
          input,
          "--output",
          output,
          "--concurrency",
          "64",
          "--simulate",
          "tier5",
          "--progress",
          "off"
        ])
        expect(resume.code).toBe(0)
        expect(new Set(outputLines(output).map((l) => l.custom_id)).size).toBe(1000)
      }),
    240_000
  )

  // live: real input and output files through Node's streams, the simulator on the live clock; `sluiceInProcess` runs
  // the command in a runtime of its own (`Effect.runPromise`, as the process does), whose Clock is the live one: a
  // TestClock in this test cannot reach it
  it.live(
    "--order: largest first by default (by max_tokens, then length; the smallest line ahead), the file's order with --order input",
    () =>
      Effect.promise(async () => {
        const dir = tmp()
        const input = NodePath.join(dir, "in.jsonl")
        const sizes = [16, 512, 64, 2_048, 16]
        NodeFs.writeFileSync(
          input,
          sizes.map((max_tokens, i) =>
            JSON.stringify({
              custom_id: `o${i}`,
              method: "POST",
              url: "/v1/chat/completions",
              // the last line is the first one's size and longer
              body: {
                model: "gpt-4o-mini",
                messages: [{ role: "user", content: i === 4 ? "hi ".repeat(40) : "hi" }],
                max_tokens
              }
            })
          ).join("\n") + "\n"
        )
        // one call at a time: the output's order is the order the lines went out in
        const order = async (extra: ReadonlyArray<string>) => {
          const output = NodePath.join(dir, `out-${extra.join("-")}.jsonl`)
          const r = await sluice(["--input", input, "--output", output, "--concurrency", "1", ...extra, ...S])
          expect(r.code, r.err).toBe(0)
          return outputLines(output).map((l) => l.custom_id)
        }
        // the smallest line (o0: o4's size, shorter) ahead as the pool's probe, then the largest first
        expect(await order([])).toEqual(["o0", "o3", "o1", "o2", "o4"])
        expect(await order(["--order", "largest-first"])).toEqual(["o0", "o3", "o1", "o2", "o4"])
        expect(await order(["--order", "input"])).toEqual(["o0", "o1", "o2", "o3", "o4"])
        const bad = await sluice([
          "--input",
          input,
          "--output",
          NodePath.join(dir, "x.jsonl"),
          "--order",
          "smallest",
          ...S
        ])
        expect(bad.code).toBe(2)
      }),
    60_000
  )

  // live: a real process's heap limit (--max-old-space-size)
  it.live("--concurrency 1000000 on a 3-line file runs in a 96 MB heap", () =>
    Effect.promise(async () => {
      const dir = tmp()
      const input = chat(dir, "in.jsonl", 3)
      const output = NodePath.join(dir, "out.jsonl")
      const run = await start(["--input", input, "--output", output, "--concurrency", "1000000", ...S], {
        NODE_OPTIONS: "--max-old-space-size=96"
      }).done
      expect(run.code, run.err).toBe(0)
      expect(lineCount(output)).toBe(3)
    }), 240_000)

  // live: real bytes (BOM, invalid UTF-8) read from disk, the simulator on the live clock (sluice in this process)
  it.live(
    "small defects: BOM, stream: true, invalid UTF-8, \\f and U+00A0 lines, limits-file typos",
    () =>
      Effect.promise(async () => {
        const dir = tmp()
        const line = (id: string, extra: Record<string, unknown> = {}) =>
          JSON.stringify({
            custom_id: id,
            method: "POST",
            url: "/v1/chat/completions",
            body: { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], max_tokens: 5, ...extra }
          })
        const input = NodePath.join(dir, "in.jsonl")
        NodeFs.writeFileSync(
          input,
          Buffer.concat([
            Buffer.from([0xef, 0xbb, 0xbf]),
            Buffer.from(`${line("a")}\n${line("s", { stream: true })}\n\f\n\u00a0\n`),
            Buffer.from(`{"custom_id":"x`),
            Buffer.from([0xff]),
            Buffer.from(
              `y","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[]}}\n`
            )
          ])
        )
        const output = NodePath.join(dir, "out.jsonl")
        const run = await sluice(["--input", input, "--output", output, ...S])
        expect(run.code).toBe(1)
        expect(outputLines(output).map((l) => l.custom_id)).toEqual(["a"])
        expect(run.out).toContain("lines: 5; already done 0; succeeded 1; failed 0; invalid 4")
        expect(run.out).toContain("not done 0")
        expect(run.err).toMatch(/in\.jsonl:2: invalid-line \(s\): body\.stream true is not supported/)
        expect(run.err).toMatch(/in\.jsonl:3: malformed-json/)
        expect(run.err).toMatch(/in\.jsonl:4: malformed-json/)
        expect(run.err).toMatch(/in\.jsonl:5: invalid-line .*not valid UTF-8/)

        const limits = NodePath.join(dir, "limits.json")
        NodeFs.writeFileSync(limits, JSON.stringify({ models: { "gpt-4o-mini": { rpm: 500, tmp: 10 } } }))
        const typo = await sluice([
          "--input",
          input,
          "--output",
          NodePath.join(dir, "o2.jsonl"),
          "--limits",
          limits,
          ...S
        ])
        expect(typo.code).toBe(2)
        expect(typo.err).toContain(limits)
        expect(typo.err).toContain(`["tmp"]`)
        NodeFs.writeFileSync(limits, JSON.stringify({ models: { "gpt-4o-mni": { rpm: 500 } } }))
        const unknown = await sluice([
          "--input",
          input,
          "--output",
          NodePath.join(dir, "o3.jsonl"),
          "--limits",
          limits,
          ...S
        ])
        expect(unknown.code).toBe(1)
        expect(unknown.err).toContain(`${limits}: models.gpt-4o-mni is not a model sluice knows`)
      }),
    240_000
  )
})

describe("sluice logging", () => {
  it.effect("logs (an executor defect's, for one) go to stderr, never into the summary on stdout", () =>
    Effect.gen(function*() {
      const out: Array<string> = []
      const err: Array<string> = []
      const base = yield* Effect.console
      const console: Console.Console = {
        ...base,
        log: (...args: ReadonlyArray<any>) => Effect.sync(() => out.push(args.join(" "))),
        error: (...args: ReadonlyArray<any>) => Effect.sync(() => err.push(args.join(" "))),
        unsafe: {
          ...base.unsafe,
          log: (...args: ReadonlyArray<any>) => out.push(args.join(" ")),
          error: (...args: ReadonlyArray<any>) => err.push(args.join(" "))
        }
      } as Console.Console
      yield* Effect.logError("bulk executor defect; stopping").pipe(
        Effect.provide(Cli.logToStderr),
        Effect.withConsole(console)
      )
      expect(out).toEqual([])
      expect(err.join("\n")).toContain("bulk executor defect; stopping")
    }))
})
