// The flags a headless Chromium runs with here (the report's browser test, scripts/demo-report.mjs): no sandbox
// (containers run as root), no GPU, nothing fetched in the background, a profile of its own.
/** @param {string} profile the user data directory (a fresh temporary one) */
export const headlessArgs = (profile) => [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  `--user-data-dir=${profile}`
]
