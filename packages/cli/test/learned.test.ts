/**
 * `sluice run`'s summary says what the run learned that the server enforces but does not announce (issue 13):
 * the in-process program on the embedded simulator (`--simulate scenario.json`), in virtual time
 * (`VirtualTime.run` under TestClock: the run's files are real, its waits and the simulator's are not).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { capture, chatBody, writeChatLines } from "./helpers.js"

/** `sluice run` on `scenario` over `lines` chat lines to gpt-4o, no limits given, at `--speed 20`. */
const runLearning = (scenario: object, lines: number, extra: ReadonlyArray<string> = []) =>
  Effect.gen(function*() {
    const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-cli-learned-"))
    const scenarioPath = NodePath.join(dir, "scenario.json")
    NodeFs.writeFileSync(scenarioPath, JSON.stringify(scenario))
    const input = NodePath.join(dir, "in.jsonl")
    writeChatLines(
      input,
      lines,
      "l",
      (i) => chatBody("gpt-4o", `[req:${i}] ${"lorem ipsum dolor sit amet ".repeat(5 + (i % 7) * 10)}`, 40)
    )
    return yield* capture([
      "run",
      "--input",
      input,
      "--output",
      NodePath.join(dir, "out.jsonl"),
      "--simulate",
      scenarioPath,
      "--speed",
      "20",
      "--progress",
      "off",
      ...extra
    ])
  })

/** The summary's `learned:` line as figures: `[dimension, kind, amount, after]` per thing learned. */
const learnedOf = (out: string) => {
  const line = out.split("\n").find((l) => l.startsWith("learned: "))
  if (line === undefined) return undefined
  return line.slice("learned: ".length).split("; ").map((entry) => {
    const m = /^(requests|tokens) (burst|limit) ([\d,]+)(?:\/(min|day))? on (\S+?)(?: after (\d+) 429s?)?$/.exec(entry)
    if (m === null) throw new Error(`not a learned entry: ${entry}`)
    return {
      dimension: m[1],
      kind: m[2],
      amount: Number(m[3].replaceAll(",", "")),
      per: m[4],
      scope: m[5],
      after: m[6] === undefined ? undefined : Number(m[6])
    }
  })
}

/** The 429s the summary's `binding:` line counts for the whole run. */
const rejectedOf = (out: string) => Number(/429s (\d+)/.exec(out)?.[1] ?? NaN)

// live: `Cli.run` reads and writes real files through Node streams (VirtualTime would call the run stuck while
// they are pending), so the embedded simulator runs on its own scaled clock (`--speed 20`): a minute of
// simulated time in about 3 s. The figures are the simulator's, so a loaded machine shifts them a little: the
// amounts are checked within 5% of what the server enforces.
describe("sluice run: the summary's learned line", () => {
  it.live("sub-minute enforcement: the tokens burst, and after how many 429s", () =>
    Effect.gen(function*() {
      const { exitCode, out } = yield* runLearning({
        name: "sub-minute",
        seed: 3,
        models: { "gpt-4o": { limits: { rpm: 500, tpm: 30_000 }, contextWindow: 128_000 } },
        enforcement: { subWindowMs: 5_000 },
        latency: { request: { _tag: "uniform", min: 200, max: 800 }, perOutputTokenMs: 1 }
      }, 150)
      expect(exitCode).toBe(0)
      expect(out).toContain("succeeded 150; failed 0")
      // the server's tokens bucket holds 5 s of the 30,000 TPM its headers announce: 2,500. Its requests bucket
      // holds 5 s of the 500 RPM: 41.7. The tokens burst binds these lines (about 9 fit in 2,500 tokens), so it
      // is always learned; the requests burst is learned too when the first herd (sent on the announced
      // per-minute limits, before the first 429 is read) puts more than 41 requests into one 5 s window, which
      // depends on how fast this machine lets them out. Either way, what is learned must be what the server
      // enforces, and nothing else.
      const learned = learnedOf(out) ?? []
      const tokens = learned.find((l) => l.dimension === "tokens")
      const others = learned.filter((l) => l !== tokens)
      expect(tokens, out).toMatchObject({ kind: "burst", scope: "org:default/pool:gpt-4o" })
      expect(tokens!.amount, out).toBeGreaterThanOrEqual(2_375)
      expect(tokens!.amount, out).toBeLessThanOrEqual(2_625)
      expect(tokens!.after).toBeGreaterThanOrEqual(1)
      expect(tokens!.after).toBeLessThanOrEqual(rejectedOf(out))
      expect(tokens!.per).toBeUndefined()
      expect(others.length, out).toBeLessThanOrEqual(1)
      for (const requests of others) {
        expect(requests, out).toMatchObject({ dimension: "requests", kind: "burst", scope: "org:default/pool:gpt-4o" })
        expect(requests.amount, out).toBeGreaterThanOrEqual(39)
        expect(requests.amount, out).toBeLessThanOrEqual(44)
        expect(requests.after).toBeGreaterThanOrEqual(1)
        expect(requests.per).toBeUndefined()
      }
    }), 120_000)

  // live: a real child process (TestClock cannot drive another process)
  it.live("a daily limit: the requests per day the first daily 429s taught", () =>
    Effect.gen(function*() {
      // 4 requests a day, 8 lines, no limits given: 4 pass, the others are refused for the day (they fail: the
      // bulk retry policy gives up after 30 minutes, and the day is further). A line the first-contact ramp still
      // holds when the per-day bucket is learned waits for it in the limiter: `--deadline 30m` fails it at once
      // (without it, it would wait the day out)
      const { exitCode, out } = yield* runLearning(
        {
          name: "daily",
          seed: 3,
          models: { "gpt-4o": { limits: { rpm: 500, tpm: 30_000, rpd: 4 }, contextWindow: 128_000 } },
          latency: { request: { _tag: "uniform", min: 200, max: 800 }, perOutputTokenMs: 1 }
        },
        8,
        ["--deadline", "30m"]
      )
      expect(exitCode, out).toBe(1)
      expect(out).toContain("succeeded 4; failed 4")
      expect(learnedOf(out), out).toEqual([
        {
          dimension: "requests",
          kind: "limit",
          amount: 4,
          per: "day",
          scope: "org:default/pool:gpt-4o",
          after: undefined
        }
      ])
    }), 120_000)
})
