#!/usr/bin/env node
// The report's browser test (packages/cli/test/report-browser.test.ts) loads the HTML report in a headless
// Chromium; this makes sure the binary is there. On Debian/Ubuntu as root (or with sudo) it installs Debian's
// `chromium` package (without recommends) when missing, as scripts/ensure-redis.mjs installs redis-server.
//
// `--background`: the install runs detached while the tests start (it takes about a minute: 348 MB installed);
// its state is in <tmpdir>/sluice-ensure-chromium.json ({ state: "installing" | "done" | "failed", seconds }),
// which the browser test waits on. Without it, the install runs in the foreground.
import { execSync, spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"

export const statusPath = NodePath.join(NodeOs.tmpdir(), "sluice-ensure-chromium.json")

const has = () => {
  try {
    execSync("command -v chromium", { stdio: "ignore", shell: "/bin/sh" })
    return true
  } catch {
    return false
  }
}

const install = () => {
  const root = typeof process.getuid === "function" && process.getuid() === 0
  const sudo = root ? "" : "sudo "
  const started = Date.now()
  const write = (state) =>
    NodeFs.writeFileSync(
      statusPath,
      JSON.stringify({ state, pid: process.pid, seconds: Math.round((Date.now() - started) / 100) / 10 }) + "\n"
    )
  write("installing")
  try {
    execSync(
      `${sudo}apt-get update -qq && ${sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium`,
      { stdio: "inherit", shell: "/bin/sh" }
    )
  } catch {
    write("failed")
    console.error("could not install chromium; install it (apt-get install chromium) and rerun")
    process.exit(1)
  }
  write(has() ? "done" : "failed")
  console.error(`chromium installed in ${Math.round((Date.now() - started) / 1000)}s`)
  if (!has()) process.exit(1)
}

if (process.env.SLUICE_CHROMIUM !== undefined || has()) {
  // there already (or another browser named)
} else if (process.argv.includes("--install")) {
  install()
} else if (process.argv.includes("--background")) {
  console.error("chromium not found: installing Debian's chromium package in the background")
  NodeFs.writeFileSync(statusPath, JSON.stringify({ state: "installing", seconds: 0 }) + "\n")
  const log = NodeFs.openSync(`${statusPath}.log`, "w")
  spawn(process.execPath, [new URL(import.meta.url).pathname, "--install"], {
    detached: true,
    stdio: ["ignore", log, log]
  }).unref()
} else {
  console.error("chromium not found: installing Debian's chromium package")
  install()
}
