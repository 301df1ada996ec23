import { describe, expect, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { SimConfig } from "../src/index.js"

describe("README", () => {
  // The README's dozen-line test is run as test/simulator-readme.test.ts: the two must not drift apart.
  it("shows test/simulator-readme.test.ts verbatim (less its first comment line)", () => {
    const root = Path.resolve(__dirname, "../../..")
    const readme = Fs.readFileSync(Path.join(root, "packages/testing/README.md"), "utf8")
    const test = Fs.readFileSync(Path.join(root, "test/simulator-readme.test.ts"), "utf8")
    const block = /## A deterministic test of your application\n\n```ts\n([\s\S]*?)```/.exec(readme)?.[1]
    expect(block).toBeDefined()
    expect(block).toBe(test.slice(test.indexOf("\n") + 1))
  })

  it("every JSON scenario in the README decodes", () => {
    const readme = Fs.readFileSync(Path.resolve(__dirname, "../README.md"), "utf8")
    const blocks = [...readme.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1])
    expect(blocks.length).toBeGreaterThan(0)
    for (const block of blocks) expect(() => SimConfig.make(JSON.parse(block))).not.toThrow()
  })
})
