/**
 * The vitest configuration a mutation run uses: the root one, with only the given test files, and the
 * workspace packages resolved to the sources beside this file. Stryker runs vitest in a sandbox copy of the
 * repository whose `node_modules` links to the real one, so `@sluice/core` would otherwise resolve to the
 * unmutated sources and every mutant would survive.
 */
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"
import root from "../vitest.config.js"

const repo = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "..")
// The root's `projects` (shared and isolated) are left out: each names its own files, which vitest runs instead of
// `include` (every test of the repository: a dry run of 10 minutes that failed on tests of other packages).
const { projects: _projects, ...rootTest } = root.test ?? {}
const packages = ["core", "openai", "testing", "redis", "cli"]

export const mutationConfig = (include: ReadonlyArray<string>) =>
  defineConfig({
    ...root,
    resolve: {
      ...root.resolve,
      alias: packages.map((name) => ({
        find: new RegExp(`^@sluice/${name}$`),
        replacement: NodePath.join(repo, "packages", name, "src", "index.ts")
      }))
    },
    // Stryker bounds each mutant's run itself (timeoutMS and timeoutFactor over the dry run's times); vitest's own 60 s
    // per test is only in the way of the dry run, which on a loaded machine took over 60 s for one property of
    // RateLimiter.sync.test.ts and so stopped the run before any mutant (limiter, 07:05 UTC, load average 21).
    //
    // Each test file in a fresh module graph (the root's shared thread has `isolate: false`, and Stryker runs every file
    // in one thread): a file that mocks node:fs (vi.mock) mocks it only for the modules it loads first, so in a shared
    // graph its mock did not apply whenever another file had loaded the runner before it. The tenth session's whole
    // `mutate:bulk` run counted 17 mutants killed by the write-failure test of BulkRunner.mutants.test.ts whose run
    // had completed (the mock not applied, the mutant not the cause), and with one more test file the dry run failed.
    test: {
      ...rootTest,
      include: [...include],
      testTimeout: 600_000,
      hookTimeout: 600_000,
      poolOptions: { ...rootTest.poolOptions, threads: { ...rootTest.poolOptions?.threads, isolate: true } }
    }
  })
