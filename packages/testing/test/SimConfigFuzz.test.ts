/**
 * Fuzzing the scenario file decoder: any JSON, and scenarios whose known fields hold any JSON, decode to a
 * scenario or fail with a ScenarioError naming the path — never a defect.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as FastCheck from "effect/FastCheck"
import { SimConfig } from "../src/index.js"

const any = (depth: number) => FastCheck.jsonValue({ maxDepth: depth })

const number = FastCheck.oneof(
  FastCheck.double(),
  FastCheck.integer(),
  FastCheck.constantFrom(0, -1, 1e308, Number.MAX_SAFE_INTEGER, 0.5),
  any(1)
)

const limits = FastCheck.record({ rpm: number, tpm: number, rpd: number, tpd: number, ipm: number }, {
  requiredKeys: []
})

/** Scenarios a careful user writes, with extreme figures. */
const plausible = FastCheck.record({
  models: FastCheck.dictionary(
    FastCheck.constantFrom("gpt-4o", "gpt-4o-mini", "text-embedding-3-small"),
    FastCheck.record({
      limits: FastCheck.record({
        rpm: FastCheck.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        tpm: FastCheck.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })
      }, { requiredKeys: [] }),
      contextWindow: FastCheck.integer({ min: 1, max: 1e9 })
    }, { requiredKeys: [] }),
    { maxKeys: 2 }
  ),
  seed: FastCheck.integer()
}, { requiredKeys: [] })

const scenario = FastCheck.oneof(
  any(4),
  plausible,
  FastCheck.record({
    models: FastCheck.oneof(
      FastCheck.dictionary(
        FastCheck.oneof(
          FastCheck.constantFrom("gpt-4o", "gpt-4o-mini", "__proto__", "constructor", ""),
          FastCheck.string()
        ),
        FastCheck.oneof(
          FastCheck.record({
            kind: FastCheck.oneof(FastCheck.constantFrom("chat", "embedding", "image"), any(1)),
            limits: FastCheck.oneof(limits, any(2)),
            pool: any(1),
            contextWindow: number,
            access: any(1)
          }, { requiredKeys: [] }),
          any(2)
        ),
        { maxKeys: 3 }
      ),
      any(2)
    ),
    seed: number,
    faults: FastCheck.oneof(
      FastCheck.record(
        { rates: FastCheck.dictionary(FastCheck.string({ maxLength: 12 }), number), timeoutMs: number },
        {
          requiredKeys: []
        }
      ),
      any(3)
    ),
    latency: FastCheck.oneof(
      FastCheck.record({
        request: FastCheck.oneof(
          FastCheck.record({
            _tag: FastCheck.constantFrom("fixed", "uniform", "lognormal"),
            ms: number,
            min: number,
            max: number
          }, {
            requiredKeys: []
          }),
          any(2)
        ),
        perOutputTokenMs: number
      }, { requiredKeys: [] }),
      any(2)
    ),
    enforcement: any(3),
    output: any(2),
    organizations: any(3),
    background: any(3)
  }, { requiredKeys: [] })
)

describe("SimConfig: fuzzed", () => {
  it.effect("decode: a scenario or a ScenarioError with a path, never a defect", () =>
    Effect.gen(function*() {
      let decoded = 0
      for (const input of FastCheck.sample(scenario, { numRuns: 1_500, seed: 16 })) {
        const exit = yield* Effect.exit(SimConfig.decode(input, "fuzz.json"))
        if (Exit.isFailure(exit)) {
          expect(exit.cause._tag, JSON.stringify(input).slice(0, 300)).toBe("Fail")
          if (exit.cause._tag === "Fail") {
            expect(exit.cause.error.message).toMatch(/^Invalid scenario fuzz\.json:\n {2}at /)
          }
        } else decoded++
      }
      // the near-valid half reaches past the first field often enough to decode
      expect(decoded).toBeGreaterThan(0)
    }))
})
