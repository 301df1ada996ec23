// A large input through the real `sluice` process in bounded memory: the process runs with its V8 heap capped
// at 128 MB (a runner that kept the input, the output or the requests done in memory would die of it) and its
// peak RSS is measured from /proc. The simulator is the embedded one (`--simulate`, no latency), so the run
// measures the runner, the OpenAi service and the SDK, not a network. Real process and wall time: `it.live`.
//
// The suite runs 20,000 lines to stay within its time budget; the 100,000-line figure in packages/cli/README.md
// comes from: SLUICE_E2E_LINES=100000 npx vitest run packages/cli/test/e2e-memory.test.ts
import { beforeAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { sluiceEntry, writeChatInput } from "./helpers.js"

// the CLI's sources bundled once (see `sluiceEntry`): the process measured is the runner, not a TypeScript loader
let entry = ""
beforeAll(async () => {
  entry = await sluiceEntry()
}, 300_000)
const lines = Number(process.env.SLUICE_E2E_LINES ?? 20_000)

const scenario = {
  name: "memory",
  seed: 3,
  models: {
    "gpt-4o-mini": { limits: { rpm: 100_000_000, tpm: 1_000_000_000 }, contextWindow: 128_000 },
    "gpt-4o": { limits: { rpm: 100_000_000, tpm: 1_000_000_000 }, contextWindow: 128_000 }
  },
  latency: { request: { _tag: "fixed", ms: 0 }, perOutputTokenMs: 0 },
  output: { fixedTokens: 2 }
}

describe("sluice run in bounded memory (real process)", () => {
  // live: a real process whose heap and RSS are measured; TestClock cannot drive it
  it.live(`${lines} lines with a 128 MB heap: every line once, peak RSS measured`, () =>
    Effect.promise(async () => {
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-mem-"))
      const input = NodePath.join(dir, "in.jsonl")
      const output = NodePath.join(dir, "out.jsonl")
      const scenarioFile = NodePath.join(dir, "scenario.json")
      NodeFs.writeFileSync(scenarioFile, JSON.stringify(scenario))
      writeChatInput(input, lines, (i) => `request ${i}: ${"lorem ipsum ".repeat(i % 20)}`)

      const started = Date.now()
      const child = spawn(
        process.execPath,
        [entry, "run", "--input", input, "--output", output, "--simulate", scenarioFile, "--progress", "off"],
        { env: { ...process.env, NODE_OPTIONS: "--max-old-space-size=128" }, stdio: ["ignore", "pipe", "pipe"] }
      )
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (d) => (stdout += d))
      child.stderr.on("data", (d) => (stderr += d))
      let peakKb = 0
      const poll = setInterval(() => {
        try {
          const hwm = /VmHWM:\s+(\d+)/.exec(NodeFs.readFileSync(`/proc/${child.pid}/status`, "utf8"))
          if (hwm) peakKb = Math.max(peakKb, Number(hwm[1]))
        } catch {
          // exited
        }
      }, 50)
      const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)))
      clearInterval(poll)
      const seconds = (Date.now() - started) / 1000
      console.log(
        `bulk run: ${lines} lines in ${seconds.toFixed(1)} s (${((seconds * 1e6) / lines).toFixed(0)} µs a line), ` +
          `peak RSS ${(peakKb / 1024).toFixed(0)} MB with a 128 MB heap; input ${
            (NodeFs.statSync(input).size / 1e6).toFixed(1)
          } MB, output ${(NodeFs.statSync(output).size / 1e6).toFixed(1)} MB`
      )
      if (code !== 0) console.log(stdout, stderr.slice(-2000))
      expect(code).toBe(0)
      const ids = new Set<string>()
      let count = 0
      for (const line of NodeFs.readFileSync(output, "utf8").split("\n")) {
        if (line.length === 0) continue
        count++
        ids.add(JSON.parse(line).custom_id)
      }
      expect(count).toBe(lines)
      expect(ids.size).toBe(lines)
      expect(peakKb).toBeGreaterThan(0)
      expect(peakKb / 1024).toBeLessThan(400)
    }), Math.max(300_000, lines * 10))
})
