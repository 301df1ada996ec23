/**
 * The HTML report in a real headless Chromium (Debian's `chromium`, installed by scripts/ensure-chromium.mjs,
 * which the test line starts in the background): the page loads without a console message (its own script reads
 * the embedded record and marks the page), and a screenshot is written. A copy whose embedded record is damaged
 * shows that the check sees a failing page.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { execFile, execSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { pathToFileURL } from "node:url"
// @ts-expect-error: a script of the repository (JavaScript, no declarations)
import { headlessArgs } from "../../../scripts/chromium-args.mjs"
import * as Record from "../src/internal/record.js"
import { capture, runRecorded, writeChatInput } from "./helpers.js"

const statusPath = NodePath.join(NodeOs.tmpdir(), "sluice-ensure-chromium.json")

const found = (): string | undefined => {
  if (process.env.SLUICE_CHROMIUM !== undefined) return process.env.SLUICE_CHROMIUM
  try {
    return execSync("command -v chromium", { shell: "/bin/sh", encoding: "utf8" }).trim() || undefined
  } catch {
    return undefined
  }
}

/** The browser, once there: waits for an install scripts/ensure-chromium.mjs started in the background. */
const chromium = Effect.gen(function*() {
  for (;;) {
    const path = found()
    if (path !== undefined) return path
    const status = NodeFs.existsSync(statusPath) ? JSON.parse(NodeFs.readFileSync(statusPath, "utf8")) : undefined
    if (status?.state !== "installing") {
      return yield* Effect.die(
        new Error(
          "chromium not found: run `node scripts/ensure-chromium.mjs` (Debian's chromium) or set SLUICE_CHROMIUM"
        )
      )
    }
    yield* Effect.sleep("1 second")
  }
})

/** `chromium --headless … --dump-dom --screenshot=png page`: the DOM, the log (stderr) and the exit code. */
const load = (binary: string, page: string, png: string) =>
  Effect.async<{ readonly dom: string; readonly log: string; readonly code: number }>((resume) => {
    const profile = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-chromium-"))
    const child = execFile(
      binary,
      [
        ...headlessArgs(profile),
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=840,2400",
        `--screenshot=${png}`,
        "--dump-dom",
        pathToFileURL(page).href
      ],
      { timeout: 60_000, maxBuffer: 64 << 20 },
      (error, stdout, stderr) => {
        NodeFs.rmSync(profile, { recursive: true, force: true })
        resume(Effect.succeed({ dom: stdout, log: stderr, code: error === null ? 0 : Number(error.code ?? 1) }))
      }
    )
    return Effect.sync(() => child.kill())
  })

/** What the page said on its console (Chromium logs each message as `INFO:CONSOLE(line)] "…", source: …`). */
const consoleLines = (log: string) => log.split("\n").filter((line) => /:CONSOLE[:(]/.test(line))

describe("sluice report in a headless Chromium", () => {
  // live: a real browser process, and a simulated run on its own scaled clock (`--speed 20`)
  it.live("loads without a console message, runs its script and is screenshot", () =>
    Effect.gen(function*() {
      const binary = yield* chromium
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-cli-report-"))
      const input = NodePath.join(dir, "in.jsonl")
      writeChatInput(input, 40, (i) => `[req:${i}] hi`)
      const record = NodePath.join(dir, "run.record.jsonl")
      const ran = yield* runRecorded({
        input,
        output: NodePath.join(dir, "out.jsonl"),
        simulate: "tier1",
        record,
        extra: ["--tier", "1"]
      })
      expect(ran.exit._tag, ran.err).toBe("Success")
      const html = NodePath.join(dir, "report.html")
      expect((yield* capture(["report", record, "--html", html])).exit._tag).toBe("Success")
      const entries = (yield* Record.read(record)).length
      // the control: the page's script finds the embedded record damaged and throws
      const damaged = NodePath.join(dir, "damaged.html")
      NodeFs.writeFileSync(
        damaged,
        NodeFs.readFileSync(html, "utf8").replace(/(id="sluice-record">)[\s\S]*?(<\/script>)/, "$1[1]$2")
      )
      const [good, bad] = yield* Effect.all([
        load(binary, html, NodePath.join(dir, "report.png")),
        load(binary, damaged, NodePath.join(dir, "damaged.png"))
      ], { concurrency: 2 })

      expect(good.code, good.log).toBe(0)
      expect(consoleLines(good.log)).toEqual([])
      expect(good.dom).toContain(`data-entries="${entries}"`)
      expect(good.dom.match(/<svg /g)?.length).toBeGreaterThanOrEqual(6)
      const png = NodeFs.readFileSync(NodePath.join(dir, "report.png"))
      expect(png.subarray(1, 4).toString("latin1")).toBe("PNG")
      expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([840, 2400])

      expect(consoleLines(bad.log).join("\n")).toContain("Uncaught Error: record: 1 entries")
      expect(bad.dom).not.toContain("data-entries=")
    }), 120_000)
})
