#!/usr/bin/env node
// The README's report screenshot: the demo run (`pnpm demo`) with `--record`, `sluice report --html --evidence`
// (the evidence to .sluice-tmp/demo/evidence.md), and a headless Chromium screenshot of the page to docs/report.png.
// Needs `chromium` (scripts/ensure-chromium.mjs).
import { execFileSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { headlessArgs } from "./chromium-args.mjs"

const root = fileURLToPath(new URL("../", import.meta.url))
process.chdir(root)
const dir = NodePath.join(".sluice-tmp", "demo")
NodeFs.mkdirSync(dir, { recursive: true })
const record = NodePath.join(dir, "run.record.jsonl")
const html = NodePath.join(dir, "report.html")
NodeFs.rmSync(record, { force: true })
const sluice = (args) =>
  execFileSync(process.execPath, [NodePath.join(root, "packages/cli/bin/sluice.mjs"), ...args], {
    stdio: ["ignore", "inherit", "inherit"]
  })
try {
  sluice([
    "run",
    "--input",
    "examples/demo/requests.jsonl",
    "--output",
    NodePath.join(dir, "results.jsonl"),
    "--simulate",
    "examples/demo/scenario.json",
    "--tier",
    "1",
    "--speed",
    "10",
    "--restart",
    "--progress",
    "off",
    "--record",
    record
  ])
} catch (error) {
  if (error.status !== 1) throw error // 1: some lines failed, as the demo's faults make them
}
// the limit-increase evidence of the same record (the README shows it)
const evidence = NodePath.join(dir, "evidence.md")
sluice(["report", record, "--html", html, "--evidence", evidence])
const profile = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-chromium-"))
const png = NodePath.join(root, "docs", "report.png")
NodeFs.mkdirSync(NodePath.dirname(png), { recursive: true })
execFileSync(process.env.SLUICE_CHROMIUM ?? "chromium", [
  ...headlessArgs(profile),
  "--hide-scrollbars",
  "--window-size=820,3000",
  `--screenshot=${png}`,
  pathToFileURL(NodePath.resolve(html)).href
], { stdio: "ignore" })
NodeFs.rmSync(profile, { recursive: true, force: true })
console.log(`screenshot: ${NodePath.relative(root, png)}`)
console.log(NodeFs.readFileSync(evidence, "utf8"))
