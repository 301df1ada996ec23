import { configDefaults, defineConfig } from "vitest/config"

// Test files that run in a process of their own: they drive real processes, signals, Redis, the browser or the
// CLI (packages/cli, packages/redis), or they mock node:fs with vi.mock/vi.spyOn, which a shared module graph would
// carry into the next file (the three below failed in a shared thread, every other library file passed there in
// shuffled orders); and one long job moved off the shared threads' lines.
const isolated = [
  "packages/{cli,redis}/test/**/*.test.ts",
  "packages/openai/test/BulkFiles.guards.test.ts",
  "packages/openai/test/BulkFiles.mutants.test.ts",
  "packages/openai/test/BulkRunner.mutants.test.ts",
  // the 120,000-line Batch job (11 s of CPU): beside the forks' real-time waits, not in a shared thread's line
  // (with one shared thread, the suite's longest: 29 s of its 321 s in a fresh-clone run at load 6)
  "packages/openai/test/BatchOffload.large.test.ts"
]
const all = ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"]
const exclude = [...configDefaults.exclude, "**/.stryker-tmp/**"]

export default defineConfig({
  resolve: { conditions: ["sluice-source"] },
  ssr: { resolve: { conditions: ["sluice-source"] } },
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default"],
    poolOptions: {
      // The library's own tests (core, openai, testing, effect-ai, the root's) share a module graph per worker thread
      // (isolate: false; each file runs in one of the two): Effect, the SDK and Sluice's sources load once a thread
      // instead of once per file. For the first 85 of them one thread took the run from 436 s of CPU (collect 493 s
      // summed) to 143 s (collect 40 s), measured side by side; all 105 then passed in shuffled orders (`npx vitest
      // run --project shared --sequence.shuffle`). Two threads since the twentieth session: the one thread's line
      // (419 s of the 120 files' tests) was the suite's longest, and a fresh-clone CI took 11m15s on a slow day; with
      // two, 8m54s on the same machine (vitest 433 s -> 316 s). No shared test sets process.env, mocks a module, or
      // uses a fixed port or temp path.
      threads: { isolate: false, maxThreads: 2, minThreads: 2 },
      // The others, one fresh process per file, two at a time.
      forks: { maxForks: 2, minForks: 1 }
    },
    projects: [
      { extends: true, test: { name: "shared", include: all, exclude: [...exclude, ...isolated], pool: "threads" } },
      { extends: true, test: { name: "isolated", include: isolated, exclude, pool: "forks" } }
    ]
  }
})
