/**
 * The behaviour every `HoldStore` keeps (memory here, Redis in packages/redis/test), in virtual time (the Redis
 * store runs with `time: "clock"`, so the `TestClock` is its clock too):
 *
 * - a property over random sequences of take / renew / release / crash (a process that stops renewing) and clock
 *   advances against a model: every take is admitted exactly when it fits, the store's sum is the model's, the sum
 *   of live holds never exceeds the limit, and a crashed process's holds are free once its lease has passed;
 * - the examples the offload relies on: all-or-none over several scopes, a retake under the same id replaces.
 */
import { describe, expect, it } from "@effect/vitest"
import type { HoldStore } from "@sluice/core"
import { Effect, TestClock } from "effect"
import * as FastCheck from "effect/FastCheck"

const lease = 120_000
const scope = "batch:gpt-4o"

type Step =
  | { readonly op: "take"; readonly proc: number; readonly hold: number; readonly amount: number }
  | { readonly op: "renew"; readonly proc: number }
  | { readonly op: "release"; readonly proc: number; readonly hold: number }
  | { readonly op: "crash"; readonly proc: number }
  | { readonly op: "advance"; readonly millis: number }

const step: FastCheck.Arbitrary<Step> = FastCheck.oneof(
  FastCheck.record({
    op: FastCheck.constant("take" as const),
    proc: FastCheck.integer({ min: 0, max: 2 }),
    hold: FastCheck.integer({ min: 0, max: 3 }),
    amount: FastCheck.integer({ min: 1, max: 700 })
  }),
  FastCheck.record({ op: FastCheck.constant("renew" as const), proc: FastCheck.integer({ min: 0, max: 2 }) }),
  FastCheck.record({
    op: FastCheck.constant("release" as const),
    proc: FastCheck.integer({ min: 0, max: 2 }),
    hold: FastCheck.integer({ min: 0, max: 3 })
  }),
  FastCheck.record({ op: FastCheck.constant("crash" as const), proc: FastCheck.integer({ min: 0, max: 2 }) }),
  FastCheck.record({
    op: FastCheck.constant("advance" as const),
    millis: FastCheck.oneof(FastCheck.integer({ min: 1, max: lease / 3 }), FastCheck.constant(lease))
  })
)

const cases = FastCheck.sample(
  FastCheck.record({
    limit: FastCheck.integer({ min: 500, max: 2_000 }),
    steps: FastCheck.array(step, { maxLength: 60 })
  }),
  { numRuns: 25, seed: Number(process.env.SLUICE_HOLD_SEED ?? 18) }
)

/** Runs the suite on stores `make` builds (a fresh one, on fresh keys, per test). */
export const holdSuite = <E, R>(
  name: string,
  make: Effect.Effect<HoldStore.Service, E, R>,
  provide: <A, E2>(
    effect: Effect.Effect<A, E2, R>
  ) => Effect.Effect<A, E | E2>
) =>
  describe(`${name}: holds with a lease`, () => {
    it.effect("never over the limit; admitted exactly when it fits; a crashed process's holds free after the lease", () =>
      provide(Effect.gen(function*() {
        for (const c of cases) {
          const store = yield* make
          // the model: each hold's amount and expiry; the processes that still renew
          const model = new Map<string, { amount: number; expires: number; proc: number }>()
          const crashed = new Set<number>()
          let now = 0
          const live = () => [...model.values()].filter((h) => h.expires > now)
          const sum = (holds: ReadonlyArray<{ amount: number }>) => holds.reduce((a, h) => a + h.amount, 0)
          const base = yield* TestClock.currentTimeMillis
          for (const s of c.steps) {
            if (s.op === "advance") {
              yield* TestClock.adjust(s.millis)
              now += s.millis
            } else if (s.op === "crash") {
              crashed.add(s.proc)
            } else if (crashed.has(s.proc)) {
              continue // a crashed process does nothing more
            } else if (s.op === "take") {
              const id = `p${s.proc}-h${s.hold}`
              const others = sum(live().filter((h) => h !== model.get(id)))
              const taken = yield* store.take(id, [{ scope, capacity: c.limit }], s.amount, lease)
              expect(taken).toBe(others + s.amount <= c.limit)
              if (taken) model.set(id, { amount: s.amount, expires: now + lease, proc: s.proc })
            } else if (s.op === "renew") {
              for (const [id, h] of model) {
                if (h.proc !== s.proc) continue
                const renewed = yield* store.renew(id, [scope], lease)
                expect(renewed).toBe(h.expires > now)
                if (renewed) h.expires = now + lease
                else model.delete(id)
              }
            } else {
              const id = `p${s.proc}-h${s.hold}`
              yield* store.release(id, [scope])
              model.delete(id)
            }
            const held = yield* store.held(scope)
            expect(held).toBe(sum(live()))
            expect(held).toBeLessThanOrEqual(c.limit)
          }
          // every process crashes: a lease later, nothing is held and the whole limit can be taken
          yield* TestClock.adjust(lease)
          expect(yield* store.held(scope)).toBe(0)
          expect(yield* store.take("after", [{ scope, capacity: c.limit }], c.limit, lease)).toBe(true)
          yield* store.release("after", [scope])
          expect((yield* TestClock.currentTimeMillis) - base).toBe(now + lease)
        }
      })))

    it.effect("all or none over several scopes; a retake under the same id replaces; a lapsed hold is not renewed", () =>
      provide(Effect.gen(function*() {
        const store = yield* make
        const a = { scope: "batch:a", capacity: 100 }
        const b = { scope: "batch:b", capacity: 50 }
        expect(yield* store.take("x", [a, b], 40, lease)).toBe(true)
        // fits a (80 <= 100) but not b (80 > 50): neither is taken
        expect(yield* store.take("y", [a, b], 40, lease)).toBe(false)
        expect([yield* store.held("batch:a"), yield* store.held("batch:b")]).toEqual([40, 40])
        // the same id again (a resumed job): replaced, not added
        expect(yield* store.take("x", [a, b], 50, lease)).toBe(true)
        expect([yield* store.held("batch:a"), yield* store.held("batch:b")]).toEqual([50, 50])
        yield* TestClock.adjust(lease - 1)
        expect(yield* store.renew("x", ["batch:a", "batch:b"], lease)).toBe(true)
        yield* TestClock.adjust(lease)
        expect(yield* store.renew("x", ["batch:a", "batch:b"], lease)).toBe(false)
        expect(yield* store.held("batch:a")).toBe(0)
        expect(yield* store.take("y", [a, b], 50, lease)).toBe(true)
        yield* store.release("y", ["batch:a", "batch:b"])
        expect(yield* store.held("batch:b")).toBe(0)
      })))
  })
