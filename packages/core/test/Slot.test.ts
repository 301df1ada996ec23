import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Slot from "../src/internal/slot.js"

describe("Slot (the limiter's one-shot wake-up)", () => {
  it.effect("a result given before the wait is had at once; the first result wins", () =>
    Effect.gen(function*() {
      const slot = Slot.make<number, string>()
      Slot.done(slot, Exit.succeed(1))
      Slot.done(slot, Exit.fail("late"))
      expect(yield* Slot.wait(slot)).toBe(1)
    }))

  it.effect("a waiter is woken by the result, a failure fails it", () =>
    Effect.gen(function*() {
      const ok = Slot.make<number>()
      const waiting = yield* Effect.fork(Slot.wait(ok))
      yield* Effect.yieldNow()
      expect(ok.resume).toBeDefined()
      Slot.done(ok, Exit.succeed(7))
      expect(yield* Fiber.join(waiting)).toBe(7)

      const failed = Slot.make<number, string>()
      const refused = yield* Effect.fork(Slot.wait(failed))
      yield* Effect.yieldNow()
      Slot.done(failed, Exit.fail("no"))
      expect(yield* Effect.flip(Fiber.join(refused))).toBe("no")
    }))

  it.effect("an interrupted waiter leaves the slot; a later result wakes nobody and stays for the next wait", () =>
    Effect.gen(function*() {
      const slot = Slot.make<number>()
      const waiting = yield* Effect.fork(Slot.wait(slot))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(waiting)
      expect(slot.resume).toBeUndefined()
      Slot.done(slot, Exit.succeed(3))
      expect(yield* Slot.wait(slot)).toBe(3)
    }))

  it.effect("onInterrupt runs when the wait is interrupted, and only then", () =>
    Effect.gen(function*() {
      const calls: Array<string> = []
      const note = (what: string) => () => Effect.sync(() => calls.push(what))
      const interrupted = Slot.make<number>()
      const waiting = yield* Effect.fork(Slot.wait(interrupted, note("interrupted")))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(waiting)
      expect(calls).toEqual(["interrupted"])
      expect(interrupted.resume).toBeUndefined()

      const answered = Slot.make<number>()
      const served = yield* Effect.fork(Slot.wait(answered, note("answered")))
      yield* Effect.yieldNow()
      Slot.done(answered, Exit.succeed(5))
      expect(yield* Fiber.join(served)).toBe(5)
      const ready = Slot.make<number>()
      Slot.done(ready, Exit.succeed(6))
      expect(yield* Slot.wait(ready, note("ready"))).toBe(6)
      expect(calls).toEqual(["interrupted"])
    }))
})
