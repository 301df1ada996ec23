import { describe, expect, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { SimConfig } from "../src/index.js"

describe("README", () => {
  // The README's examples are run as tests under test/: the two must not drift apart.
  const root = Path.resolve(__dirname, "../../..")
  const readme = () => Fs.readFileSync(Path.join(root, "packages/testing/README.md"), "utf8")
  const examples = [
    ["### An Effect application on the `OpenAi` service", "test/readme-effect-app.test.ts"],
    ["### A Promise application on `wrapOpenAI`", "test/readme-promise-app.test.ts"],
    ["### The bare SDK against the simulator", "test/simulator-readme.test.ts"]
  ] as const
  for (const [heading, file] of examples) {
    it(`shows ${file} verbatim (less its first comment line) under "${heading}"`, () => {
      const test = Fs.readFileSync(Path.join(root, file), "utf8")
      const section = readme().split(heading)[1]
      expect(section).toBeDefined()
      const block = /```ts\n([\s\S]*?)```/.exec(section!)?.[1]
      expect(block).toBe(test.slice(test.indexOf("\n") + 1))
    })
  }

  it("leads with the two tests of your own application, each with at most 12 lines of setup", () => {
    const text = readme()
    expect(text.indexOf("### An Effect application")).toBeLessThan(text.indexOf("## Over HTTP"))
    expect(text.indexOf("### An Effect application")).toBeLessThan(text.indexOf("### The bare SDK"))
    for (const [, file] of examples.slice(0, 2)) {
      const code = Fs.readFileSync(Path.join(root, file), "utf8")
      // setup: what is neither an import, the application under test, an assertion, a comment nor a blank line
      const app = code.slice(
        code.indexOf("// your application"),
        code.indexOf("\n\n", code.indexOf("// your application"))
      )
      const setup = code.replace(app, "").split("\n").filter((line) =>
        line.trim() !== "" && !line.startsWith("import ") && !line.trim().startsWith("//") &&
        !line.trim().startsWith("expect(")
      )
      expect(setup.length, `${file}:\n${setup.join("\n")}`).toBeLessThanOrEqual(12)
    }
  })

  it("every JSON scenario in the README decodes", () => {
    const readme = Fs.readFileSync(Path.resolve(__dirname, "../README.md"), "utf8")
    const blocks = [...readme.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1])
    expect(blocks.length).toBeGreaterThan(0)
    for (const block of blocks) expect(() => SimConfig.make(JSON.parse(block))).not.toThrow()
  })
})
