/**
 * The `--limits` file's bursts: decoded per limit, refused with the path when they make no sense, and carried
 * into the budgets as the bucket's capacity (refilled at the limit's rate).
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { budgetsOfLimits, loadLimits } from "../src/internal/limits.js"

const load = (json: unknown) =>
  Effect.suspend(() => {
    const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-limits-"))
    const path = NodePath.join(dir, "limits.json")
    NodeFs.writeFileSync(path, JSON.stringify(json))
    return Effect.either(loadLimits(path))
  })

describe("--limits file: bursts", () => {
  it.effect("a burst per limit becomes the capacity of that limit's bucket, refilled at the limit's rate", () =>
    Effect.gen(function*() {
      const loaded = yield* load({
        models: { "gpt-4o-mini": { rpm: 5_000, tpm: 450_000, tpd: 9_000_000, burst: { rpm: 416, tpm: 37_500 } } }
      })
      if (Either.isLeft(loaded)) throw new Error(loaded.left.message)
      const [budget] = budgetsOfLimits(loaded.right, "default")
      expect(budget.scope).toBe("org:default/pool:gpt-4o-mini")
      expect(
        budget.limits.map((limit) => [limit.dimension, limit.amount, Duration.toMillis(limit.window), limit.capacity])
      )
        .toEqual([
          ["requests", 5_000, 60_000, 416],
          ["tokens", 450_000, 60_000, 37_500],
          ["tokens", 9_000_000, 86_400_000, 9_000_000]
        ])
    }))

  it.effect("a burst above its limit, without its limit, not a positive integer or for an unknown limit: an error naming the path", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [unknown, ReadonlyArray<string>]> = [
        [{ rpm: 5_000, tpm: 450_000, burst: { tpm: 450_001 } }, ["burst", "tpm", "450001 exceeds tpm 450000"]],
        [{ rpm: 5_000, burst: { tpm: 37_500 } }, ["burst", "tpm", "needs tpm"]],
        [{ tpm: 450_000, burst: { tpm: 1.5 } }, ["burst", "tpm", "1.5"]],
        [{ tpm: 450_000, burst: { tpm: 0 } }, ["burst", "tpm"]],
        [{ tpm: 450_000, burst: { tmp: 37_500 } }, ["burst", "tmp"]],
        [{ tpm: 450_000, burst: 37_500 }, ["burst", "37500"]]
      ]
      for (const [figures, words] of cases) {
        const loaded = yield* load({ models: { "gpt-4o-mini": figures } })
        expect(Either.isLeft(loaded), JSON.stringify(figures)).toBe(true)
        if (Either.isRight(loaded)) continue
        expect(loaded.left._tag).toBe("FileProblem")
        for (const word of words) expect(loaded.left.message, JSON.stringify(figures)).toContain(word)
      }
    }))
})
