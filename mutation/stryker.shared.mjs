// The Stryker options every module's run shares. A run mutates only its module's files and runs only that module's
// tests (its own vitest config, beside this file). Slow: run it by hand (`pnpm mutate:<module>`), not in CI.
/**
 * @param {string} name the module: breaker, retry, limiter, bulk or bulkfiles
 * @param {ReadonlyArray<string>} mutate the files to mutate
 * @param {import("@stryker-mutator/api/core").PartialStrykerOptions} [extra] options of this module's run
 * @returns {import("@stryker-mutator/api/core").PartialStrykerOptions}
 */
export const mutationOptions = (name, mutate, extra = {}) => ({
  testRunner: "vitest",
  plugins: ["@stryker-mutator/vitest-runner"],
  vitest: { configFile: `mutation/vitest.${name}.config.ts`, related: false },
  mutate: [...mutate],
  coverageAnalysis: "perTest",
  concurrency: Number(process.env.STRYKER_CONCURRENCY ?? 1),
  timeoutMS: 3_000,
  incremental: true,
  incrementalFile: `reports/mutation/${name}.incremental.json`,
  reporters: ["clear-text", "progress-append-only", "html", "json"],
  htmlReporter: { fileName: `reports/mutation/${name}.html` },
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  clearTextReporter: { allowColor: false, logTests: false, maxTestsToLog: 0 },
  tempDirName: ".stryker-tmp",
  cleanTempDir: "always",
  ignorePatterns: ["reports", ".sluice-tmp", "benchmarks/results", "dist"],
  thresholds: { high: 90, low: 85, break: null },
  ...extra
})
