/**
 * Fuzzing the `--limits` file: any bytes, any JSON, and limits whose fields hold any JSON give limits or a
 * FileProblem naming the file, never a defect.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as FastCheck from "effect/FastCheck"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { loadLimits } from "../src/internal/limits.js"

const number = FastCheck.oneof(FastCheck.double(), FastCheck.integer(), FastCheck.jsonValue({ maxDepth: 1 }))

const file = FastCheck.oneof(
  FastCheck.string({ unit: "binary", maxLength: 40 }),
  FastCheck.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
  FastCheck.record({
    models: FastCheck.oneof(
      FastCheck.dictionary(
        FastCheck.oneof(FastCheck.constantFrom("gpt-4o", "__proto__", ""), FastCheck.string()),
        FastCheck.oneof(
          FastCheck.record({ rpm: number, tpm: number, rpd: number, tpd: number, ipm: number }, { requiredKeys: [] }),
          FastCheck.record({
            tpm: FastCheck.integer({ min: 1, max: 100 }),
            burst: FastCheck.record({ tpm: number, rpm: number }, { requiredKeys: [] })
          }, { requiredKeys: [] }),
          FastCheck.jsonValue({ maxDepth: 2 })
        ),
        { maxKeys: 3 }
      ),
      FastCheck.jsonValue({ maxDepth: 2 })
    )
  }, { requiredKeys: [] }).map((v) => JSON.stringify(v))
)

describe("--limits file: fuzzed", () => {
  it.effect("loadLimits: limits or a FileProblem, never a defect", () =>
    Effect.gen(function*() {
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-limits-"))
      const path = NodePath.join(dir, "limits.json")
      for (const text of FastCheck.sample(file, { numRuns: 1_000, seed: 17 })) {
        NodeFs.writeFileSync(path, text)
        const exit = yield* Effect.exit(loadLimits(path))
        if (Exit.isFailure(exit)) {
          expect(exit.cause._tag, text.slice(0, 200)).toBe("Fail")
          if (exit.cause._tag === "Fail") expect(exit.cause.error.path).toBe(path)
        } else {
          for (const { burst, ...figures } of Object.values(exit.value.models)) {
            for (const n of Object.values(figures)) expect(Number.isSafeInteger(n) && n! > 0).toBe(true)
            for (const [name, n] of Object.entries(burst ?? {})) {
              expect(Number.isSafeInteger(n) && n! > 0 && n! <= figures[name as keyof typeof figures]!).toBe(true)
            }
          }
        }
      }
    }))
})
