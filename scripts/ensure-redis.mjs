#!/usr/bin/env node
// The Redis tests start their own redis-server on a loopback port; this makes sure the
// binary is there. On Debian/Ubuntu as root it installs Debian's package when missing.
import { execSync } from "node:child_process"

const has = () => {
  try {
    execSync("command -v redis-server", { stdio: "ignore", shell: "/bin/sh" })
    return true
  } catch {
    return false
  }
}

if (!has()) {
  const root = typeof process.getuid === "function" && process.getuid() === 0
  const sudo = root ? "" : "sudo "
  console.error("redis-server not found: installing Debian's redis-server package")
  try {
    execSync(
      `${sudo}apt-get update -qq && ${sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server`,
      {
        stdio: "inherit",
        shell: "/bin/sh"
      }
    )
  } catch {
    console.error("could not install redis-server; install it (apt-get install redis-server) and rerun")
    process.exit(1)
  }
  if (!has()) process.exit(1)
}
