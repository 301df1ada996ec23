/**
 * A command's handler is loaded when the command runs: a module that cannot be loaded (a peer dependency left out of
 * the install) is a usage error naming the package to install, not a defect with a stack trace.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cli } from "@sluice/cli"
import * as Effect from "effect/Effect"
import { loadHandler } from "../src/internal/usageError.js"

const notFound = (message: string, code: string) => Promise.reject(Object.assign(new Error(message), { code }))

describe("loadHandler", () => {
  it.effect("a missing package (ESM or CommonJS, scoped or not): a UsageError saying what to install", () =>
    Effect.gen(function*() {
      for (
        const [message, code, pkg] of [
          [
            "Cannot find package 'openai' imported from /app/node_modules/@sluice/openai/dist/index.js",
            "ERR_MODULE_NOT_FOUND",
            "openai"
          ],
          [
            "Cannot find module '@sluice/testing/SimFetch'\nRequire stack:\n- /app/x.cjs",
            "MODULE_NOT_FOUND",
            "@sluice/testing"
          ],
          ["Cannot find package 'gpt-tokenizer' imported from /a.js", "ERR_MODULE_NOT_FOUND", "gpt-tokenizer"]
        ] as const
      ) {
        const error = yield* Effect.flip(loadHandler("run", () => notFound(message, code)))
        expect(error).toBeInstanceOf(Cli.UsageError)
        expect(error.message).toBe(`sluice run needs the ${pkg} package, which is not installed: npm install ${pkg}`)
      }
    }))

  it.effect("any other failure to load: a UsageError with Node's first line, no stack", () =>
    Effect.gen(function*() {
      const relative = yield* Effect.flip(
        loadHandler("pipeline worker", () =>
          notFound("Cannot find module './gone.js' imported from /a.js", "ERR_MODULE_NOT_FOUND"))
      )
      expect(relative.message).toBe(
        "sluice pipeline worker could not load its modules (Cannot find module './gone.js' imported from /a.js): reinstall @sluice/cli"
      )
      const syntax = yield* Effect.flip(loadHandler("plan", () =>
        Promise.reject(new SyntaxError("Unexpected token\n  at x"))))
      expect(syntax.message).toBe("sluice plan could not load its modules (Unexpected token): reinstall @sluice/cli")
      expect(
        yield* loadHandler("sim", () =>
          Promise.resolve({ ok: 1 }))
      ).toEqual({ ok: 1 })
    }))
})
