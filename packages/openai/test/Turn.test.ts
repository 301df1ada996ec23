/**
 * The adaptive pools' probe permit (`internal/turn.ts`): first come first served, one waiter woken per
 * release (Effect's `Semaphore` wakes them all: O(n²) resumptions for a herd of n, which ran the simulated
 * day out of memory), and a waiter interrupted as it is handed the permit passes it on.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Scheduler from "effect/Scheduler"
import * as Turn from "../src/internal/turn.js"

/** A scheduler counting the tasks it is given (a fiber resumed is one). */
const counting = () => {
  const inner = Scheduler.defaultScheduler
  const scheduler = {
    tasks: 0,
    shouldYield: (fiber: Parameters<Scheduler.Scheduler["shouldYield"]>[0]) => inner.shouldYield(fiber),
    scheduleTask: (
      task: Scheduler.Task,
      priority: number,
      fiber?: Parameters<Scheduler.Scheduler["shouldYield"]>[0]
    ) => {
      scheduler.tasks++
      inner.scheduleTask(task, priority, fiber)
    }
  }
  return scheduler
}

/** Lets every forked fiber run until it waits. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

describe("Turn (the probe's permit)", () => {
  it.effect("a herd behind the permit: taken in arrival order, one fiber resumed per release (O(n), not O(n²))", () =>
    Effect.gen(function*() {
      const n = 400
      const turn = Turn.make()
      yield* turn.take
      const order: Array<number> = []
      const scheduler = counting()
      const herd = yield* Effect.forEach(
        Array.from({ length: n }, (_, i) => i),
        (i) =>
          Effect.fork(
            // between taking and releasing, the holder yields (in `OpenAi` the take's result goes through a race)
            Effect.zipRight(
              turn.take,
              Effect.zipRight(Effect.sync(() => order.push(i)), Effect.zipRight(Effect.yieldNow(), turn.release))
            ).pipe(
              Effect.withScheduler(scheduler)
            )
          ),
        { concurrency: 1 }
      )
      yield* settle
      expect(turn.waiting()).toBe(n)
      const before = scheduler.tasks
      yield* turn.release
      yield* Fiber.joinAll(herd)
      expect(order).toEqual(Array.from({ length: n }, (_, i) => i))
      // each waiter is resumed once and yields once: 3 tasks each (Effect's Semaphore: 80,000 or so)
      expect(scheduler.tasks - before).toBeLessThanOrEqual(4 * n)
      // and the permit is free again
      expect(turn.waiting()).toBe(0)
      yield* turn.take
    }))

  it.effect("interrupted waiters leave the queue; the others keep their order; the permit is never lost", () =>
    Effect.gen(function*() {
      yield* Effect.promise(() =>
        FastCheck.assert(
          FastCheck.asyncProperty(
            FastCheck.array(FastCheck.boolean(), { minLength: 1, maxLength: 30 }),
            FastCheck.boolean(),
            (interrupted, asHanded) =>
              Effect.runPromise(Effect.gen(function*() {
                const turn = Turn.make()
                yield* turn.take
                const order: Array<number> = []
                const fibers = yield* Effect.forEach(
                  interrupted.map((_, i) => i),
                  (i) =>
                    Effect.fork(
                      Effect.zipRight(turn.take, Effect.zipRight(Effect.sync(() => order.push(i)), turn.release))
                    ),
                  { concurrency: 1 }
                )
                yield* settle
                const handed = asHanded && interrupted[0]
                if (handed) {
                  // the first waiter is interrupted just as it is handed the permit: it passes it on
                  yield* Effect.sync(() => {
                    fibers[0].unsafeInterruptAsFork(FiberId.none)
                    Effect.runSync(turn.release)
                  })
                } else {
                  yield* Effect.forEach(fibers.filter((_, i) => interrupted[i]), Fiber.interrupt, { discard: true })
                  yield* turn.release
                }
                yield* Fiber.awaitAll(fibers)
                const gone = handed ? interrupted.map((_, i) => i === 0) : interrupted
                expect(order).toEqual(gone.flatMap((out, i) => out ? [] : [i]))
                expect(turn.waiting()).toBe(0)
                // free: taken at once
                const again = yield* Effect.fork(turn.take)
                yield* settle
                expect(again.unsafePoll()).not.toBeNull()
              }))
          ),
          { numRuns: 200 }
        )
      )
    }))
})
