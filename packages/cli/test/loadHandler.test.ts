/**
 * A command's handler is loaded when the command runs: a module that cannot be loaded (a peer dependency left out of
 * the install) is a usage error naming the package to install, not a defect with a stack trace.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cli } from "@sluice/cli"
import * as Cause from "effect/Cause"
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

  it.effect("any other failure to load (a module of its own, an error while loading): a defect with its stack", () =>
    Effect.gen(function*() {
      const relative = new Error("Cannot find module './gone.js' imported from /a.js")
      Object.assign(relative, { code: "ERR_MODULE_NOT_FOUND" })
      const syntax = new SyntaxError("Unexpected token")
      for (const cause of [relative, syntax]) {
        const exit = yield* Effect.exit(loadHandler("plan", () => Promise.reject(cause)))
        expect(exit._tag).toBe("Failure")
        if (exit._tag === "Failure") {
          expect(Cause.isDie(exit.cause)).toBe(true)
          expect(Cause.squash(exit.cause)).toBe(cause)
        }
      }
      expect(yield* loadHandler("sim", () => Promise.resolve({ ok: 1 }))).toEqual({ ok: 1 })
    }))
})
