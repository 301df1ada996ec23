#!/usr/bin/env node
// Type-checks every TypeScript snippet (```ts / ```typescript) of every README.md in the repository, under
// `strict`, with NodeNext and Bundler module resolution. A failure names the README and its line.
//
// A snippet is compiled as written (as its own ES module), unless the HTML comment right before its fence marks
// it a fragment and gives the context it is checked in:
//
//   <!-- fragment
//   import { Effect } from "effect"
//   declare const call: Effect.Effect<string>
//   -->
//
// The comment's text after `fragment` is placed before the snippet; a line `/* snippet */` in it places the
// snippet there instead (to wrap it, e.g. in an `Effect.gen`). A fragment is never skipped: it compiles in its
// context or the check fails.
//
// Usage:
//   node scripts/readme-snippets.mjs              in the workspace (packages resolved to their src/ through the
//                                                 "sluice-source" condition); the consumer test runs the same
//                                                 check against the installed tarballs (scripts/consumer-test.mjs).
import { execFile, execFileSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"

const fence = /^```(ts|typescript)\s*$/
const marker = "/* snippet */"

/**
 * Every TypeScript snippet of every README.md tracked by git under `root`.
 * @param {string} root
 * @returns {Array<{ readme: string, line: number, code: string, prelude: string | undefined, markerLine: number | undefined }>}
 */
export const findSnippets = (root) => {
  const readmes = execFileSync("git", ["ls-files", "-co", "--exclude-standard", "*README.md", "README.md"], {
    cwd: root
  }).toString().split("\n").filter((f) =>
    f !== "" && !f.includes("node_modules/") && NodeFs.existsSync(NodePath.join(root, f))
  )
  const snippets = []
  for (const readme of [...new Set(readmes)].sort()) {
    const lines = NodeFs.readFileSync(NodePath.join(root, readme), "utf8").split("\n")
    for (let i = 0; i < lines.length; i++) {
      if (!fence.test(lines[i])) continue
      let end = i + 1
      while (end < lines.length && !/^```\s*$/.test(lines[end])) end++
      if (end >= lines.length) throw new Error(`${readme}:${i + 1}: the code block is not closed`)
      // the HTML comment right before the fence (blank lines between are allowed)
      let j = i - 1
      while (j >= 0 && lines[j].trim() === "") j--
      let prelude
      let markerLine
      if (j >= 0 && lines[j].trim().endsWith("-->")) {
        let start = j
        while (start >= 0 && !lines[start].includes("<!--")) start--
        if (start >= 0) {
          const text = lines.slice(start, j + 1).join("\n")
          const body = text.slice(text.indexOf("<!--") + 4, text.lastIndexOf("-->")).trim()
          if (/^fragment\b/.test(body)) {
            prelude = body.replace(/^fragment:?/, "").replace(/^[ \t]*\n/, "")
            markerLine = start + 1
          }
        }
      }
      snippets.push({ readme, line: i + 1, code: lines.slice(i + 1, end).join("\n"), prelude, markerLine })
      i = end
    }
  }
  return snippets
}

/**
 * Writes one module per snippet into `dir` and type-checks them with `tsc` under each resolution.
 * `extraFiles` (e.g. a consumer's programs, `.mts` / `.cts`) join the same compilation in the modes they name;
 * with `emit`, the NodeNext compilation writes JavaScript to `dir/out` (to run those programs). The modes'
 * compilations run at once, each its own `tsc` process (`tsconfig.<mode>.json`), and never block the event loop:
 * the consumer test checks its three projects side by side.
 * @param {{ root: string, dir: string, tsc: string, node?: string, compilerOptions?: Record<string, unknown>, modes?: Array<"NodeNext" | "Bundler">, extraFiles?: Array<{ name: string, text: string, modes: Array<"NodeNext" | "Bundler"> }>, emit?: boolean, log?: (line: string) => void }} options
 * @returns {Promise<Array<string>>} the failures, each `README:line: message`
 */
export const checkSnippets = async (
  {
    compilerOptions = {},
    dir,
    emit = false,
    extraFiles = [],
    log = console.log,
    modes = ["NodeNext", "Bundler"],
    node = process.execPath,
    root,
    tsc
  }
) => {
  const snippets = findSnippets(root)
  NodeFs.rmSync(dir, { recursive: true, force: true })
  NodeFs.mkdirSync(dir, { recursive: true })
  NodeFs.writeFileSync(NodePath.join(dir, "package.json"), JSON.stringify({ type: "module", private: true }) + "\n")
  const files = snippets.map((snippet, index) => {
    const name = `${snippet.readme.replace(/[/.]/g, "_")}_L${snippet.line}.ts`
    let before = []
    let after = []
    if (snippet.prelude !== undefined) {
      const parts = snippet.prelude.split(marker)
      before = parts[0].split("\n")
      after = parts.length > 1 ? parts.slice(1).join(marker).split("\n") : []
      if (before[before.length - 1] === "") before.pop()
    }
    const text = [...before, snippet.code, ...after, "export {}", ""].join("\n")
    NodeFs.writeFileSync(NodePath.join(dir, name), text)
    return { name, index, offset: before.length }
  })
  for (const extra of extraFiles) NodeFs.writeFileSync(NodePath.join(dir, extra.name), extra.text)
  const compile = async (mode) => {
    const emitting = emit && mode === "NodeNext"
    const tsconfig = {
      compilerOptions: {
        target: "ES2022",
        lib: ["ES2022"],
        module: mode === "NodeNext" ? "NodeNext" : "ESNext",
        moduleResolution: mode,
        strict: true,
        noEmit: !emitting,
        outDir: "out",
        skipLibCheck: true,
        types: ["node"],
        ...compilerOptions
      },
      files: [...files.map((f) => f.name), ...extraFiles.filter((e) => e.modes.includes(mode)).map((e) => e.name)]
    }
    const config = `tsconfig.${mode}.json`
    NodeFs.writeFileSync(NodePath.join(dir, config), JSON.stringify(tsconfig, null, 2))
    const output = await new Promise((resolve) =>
      execFile(
        node,
        [tsc, "-p", config, "--pretty", "false"],
        { cwd: dir, maxBuffer: 64 * 1024 * 1024 },
        (error, stdout, stderr) => {
          if (error === null) return resolve("")
          const text = `${stdout ?? ""}${stderr ?? ""}`
          resolve(text.trim() === "" ? String(error.message) : text)
        }
      )
    )
    const failures = []
    for (const line of output.split("\n")) {
      const m = /^(.+?)\((\d+),(\d+)\): (error .*)$/.exec(line)
      if (m === null) {
        if (line.trim() !== "" && !line.startsWith(" ")) failures.push(`[${mode}] ${line}`)
        else if (line.trim() !== "" && failures.length > 0) failures[failures.length - 1] += `\n${line}`
        continue
      }
      const file = files.find((f) => NodePath.basename(m[1]) === f.name)
      if (file === undefined) {
        failures.push(`[${mode}] ${line}`)
        continue
      }
      const snippet = snippets[file.index]
      const at = Number(m[2]) - 1 - file.offset
      const where = at >= 0 && at < snippet.code.split("\n").length
        ? `${snippet.readme}:${snippet.line + 1 + at}`
        : `${snippet.readme}:${snippet.markerLine ?? snippet.line} (the fragment's context)`
      failures.push(`[${mode}] ${where}:${m[3]}: ${m[4]}`)
    }
    log(
      `${mode}: ${snippets.length} snippets from ${
        new Set(snippets.map((s) => s.readme)).size
      } READMEs, ${failures.length} errors`
    )
    return failures
  }
  return (await Promise.all(modes.map(compile))).flat()
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = NodePath.resolve(NodePath.dirname(fileURLToPath(import.meta.url)), "..")
  const failures = await checkSnippets({
    root,
    dir: NodePath.join(root, ".sluice-tmp", "readme-snippets"),
    tsc: NodePath.join(root, "node_modules", "typescript", "bin", "tsc"),
    compilerOptions: { customConditions: ["sluice-source"] }
  })
  for (const failure of failures) console.error(failure)
  process.exit(failures.length === 0 ? 0 : 1)
}
