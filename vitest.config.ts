import { configDefaults, defineConfig } from "vitest/config"

export default defineConfig({
  resolve: { conditions: ["sluice-source"] },
  ssr: { resolve: { conditions: ["sluice-source"] } },
  test: {
    include: ["packages/*/test/**/*.test.ts", "test/**/*.test.ts"],
    exclude: [...configDefaults.exclude, "**/.stryker-tmp/**"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // vitest's default is one fork fewer than the cores: on CI's 2 cores that ran the files one at a time (11 min);
    // two forks take the suite to about 6 min, and the live tests keep their margins (measured in a fresh clone).
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ["default"]
  }
})
