// The Stryker options every module's run shares. A run mutates only its module's files and runs only that module's
// tests (its own vitest config, beside this file). Slow: run it by hand (`pnpm mutate:<module>`), not in CI.
/**
 * @param {string} name the module: breaker, retry, limiter, bulk or bulkfiles
 * @param {ReadonlyArray<string>} mutate the files to mutate
 * @param {import("@stryker-mutator/api/core").PartialStrykerOptions} [extra] options of this module's run
 * @returns {import("@stryker-mutator/api/core").PartialStrykerOptions}
 */
export const mutationOptions = (name, mutate, extra = {}) => {
  // SLUICE_MUTATE_LINES=START-END mutates only those lines of the run's first file, as a chunk with its own report and
  // incremental file (reports/mutation/<run>.START-END.*), so a long run can be done, resumed and counted in parts
  // of under half an hour each: `node mutation/summary.mjs <run>.1-350,<run>.351-520,...` adds the chunks up.
  const lines = process.env.SLUICE_MUTATE_LINES
  if (lines === undefined || lines === "") return options(name, name, mutate, extra)
  if (!/^\d+-\d+$/.test(lines)) throw new Error(`SLUICE_MUTATE_LINES must be START-END, got ${lines}`)
  const file = mutate[0].replace(/:\d+-\d+$/, "")
  return options(name, `${name}.${lines}`, [`${file}:${lines}`], extra)
}

const options = (name, report, mutate, extra) => ({
  testRunner: "vitest",
  plugins: ["@stryker-mutator/vitest-runner", "./mutation/partial.reporter.mjs"],
  vitest: { configFile: `mutation/vitest.${name}.config.ts`, related: false },
  mutate: [...mutate],
  coverageAnalysis: "perTest",
  concurrency: Number(process.env.STRYKER_CONCURRENCY ?? 1),
  timeoutMS: 3_000,
  // the initial test run (which also measures each test's time) took over Stryker's default 5 minutes at load 28-30
  dryRunTimeoutMinutes: 30,
  incremental: true,
  incrementalFile: `reports/mutation/${report}.incremental.json`,
  reporters: ["clear-text", "progress-append-only", "html", "json", "partial"],
  htmlReporter: { fileName: `reports/mutation/${report}.html` },
  jsonReporter: { fileName: `reports/mutation/${report}.json` },
  clearTextReporter: { allowColor: false, logTests: false, maxTestsToLog: 0 },
  tempDirName: ".stryker-tmp",
  cleanTempDir: "always",
  ignorePatterns: ["reports", ".sluice-tmp", "benchmarks/results", "dist"],
  thresholds: { high: 90, low: 85, break: null },
  ...extra
})
