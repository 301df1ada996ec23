/**
 * The adaptive pools' probe permit (`internal/turn.ts`): first come first served, one waiter woken per
 * release (Effect's `Semaphore` wakes them all: O(n²) resumptions for a herd of n, which ran the simulated
 * day out of memory), and a waiter interrupted as it is handed the permit passes it on.
 */
import { describe, expect, it } from "@effect/vitest"
import { VirtualTime } from "@sluice/testing"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Scheduler from "effect/Scheduler"
import * as TestClock from "effect/TestClock"
import * as TestContext from "effect/TestContext"
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
              Effect.zipRight(Effect.sync(() => order.push(i)), Effect.zipRight(Effect.yieldNow(), turn.release()))
            ).pipe(
              Effect.withScheduler(scheduler)
            )
          ),
        { concurrency: 1 }
      )
      yield* settle
      expect(turn.waiting()).toBe(n)
      const before = scheduler.tasks
      yield* turn.release()
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
                      Effect.zipRight(turn.take, Effect.zipRight(Effect.sync(() => order.push(i)), turn.release()))
                    ),
                  { concurrency: 1 }
                )
                yield* settle
                const handed = asHanded && interrupted[0]
                if (handed) {
                  // the first waiter is interrupted just as it is handed the permit: it passes it on
                  yield* Effect.sync(() => {
                    fibers[0].unsafeInterruptAsFork(FiberId.none)
                    Effect.runSync(turn.release())
                  })
                } else {
                  yield* Effect.forEach(fibers.filter((_, i) => interrupted[i]), Fiber.interrupt, { discard: true })
                  yield* turn.release()
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

  it.effect("takeOr: the same outcomes, at the same virtual times, as a race of take and the caller's own timer", () =>
    Effect.gen(function*() {
      // arrivals, holds and the first release on even milliseconds, patience odd: no timer ends as a release comes
      const herd = FastCheck.array(
        FastCheck.record({
          arrival: FastCheck.integer({ min: 0, max: 6 }).map((n) => 2 * n),
          patience: FastCheck.integer({ min: 0, max: 12 }).map((n) => 2 * n + 1),
          hold: FastCheck.integer({ min: 0, max: 4 }).map((n) => 2 * n)
        }),
        { minLength: 1, maxLength: 10 }
      )
      const firstRelease = FastCheck.integer({ min: 1, max: 15 }).map((n) => 2 * n)
      type Waiter = { readonly arrival: number; readonly patience: number; readonly hold: number }
      /** Runs the herd against a held permit; what each waiter got (permit or not) and when, and the taking order. */
      const run = (
        waiters: ReadonlyArray<Waiter>,
        release: number,
        wait: (turn: Turn.Turn, patience: number) => Effect.Effect<boolean>
      ) =>
        Effect.gen(function*() {
          const turn = Turn.make()
          yield* turn.take
          const outcomes: Array<string> = []
          const order: Array<number> = []
          yield* Effect.fork(Effect.zipRight(Effect.sleep(release), turn.release()))
          const fibers = yield* Effect.forEach(waiters, (w, i) =>
            Effect.fork(Effect.gen(function*() {
              yield* Effect.sleep(w.arrival)
              const mine = yield* wait(turn, w.patience)
              outcomes.push(`${i}:${mine}@${yield* TestClock.currentTimeMillis}`)
              if (mine) {
                order.push(i)
                yield* Effect.sleep(w.hold)
                yield* turn.release()
              }
            })))
          yield* Fiber.joinAll(fibers)
          return { outcomes: outcomes.sort(), order, waiting: turn.waiting() }
        }).pipe(VirtualTime.run(), Effect.provide(TestContext.TestContext))
      yield* Effect.promise(() =>
        FastCheck.assert(
          FastCheck.asyncProperty(herd, firstRelease, (waiters, release) =>
            Effect.runPromise(Effect.gen(function*() {
              const raced = yield* run(
                waiters,
                release,
                (turn, patience) =>
                  Effect.raceFirst(Effect.as(turn.take, true), Effect.as(Effect.sleep(patience), false))
              )
              const taken = yield* run(waiters, release, (turn, patience) => turn.takeOr(Effect.sleep(patience)))
              expect(taken).toEqual(raced)
              expect(taken.waiting).toBe(0)
            }))),
          { numRuns: 12, seed: 20261206 }
        )
      )
    }))

  it.effect("takeOr: a waiter interrupted leaves the queue and stops its timer; one handed the permit passes it on", () =>
    Effect.gen(function*() {
      const turn = Turn.make()
      yield* turn.take
      let gaveUp = 0
      const giveUp = Effect.zipRight(Effect.sleep("1 second"), Effect.sync(() => gaveUp++))
      const first = yield* Effect.fork(turn.takeOr(giveUp))
      const second = yield* Effect.fork(turn.takeOr(giveUp))
      const third = yield* Effect.fork(turn.takeOr(giveUp))
      yield* settle
      expect(turn.waiting()).toBe(3)
      yield* Fiber.interrupt(second)
      expect(turn.waiting()).toBe(2)
      // the first is handed the permit and interrupted before it runs: the permit goes on to the third
      yield* Effect.sync(() => {
        Effect.runSync(turn.release())
        first.unsafeInterruptAsFork(FiberId.none)
      })
      yield* settle
      expect(yield* Fiber.join(third)).toBe(true)
      yield* TestClock.adjust("2 seconds")
      yield* settle
      // no timer of an interrupted or served waiter gave up
      expect(gaveUp).toBe(0)
      expect(turn.waiting()).toBe(0)
      yield* turn.release()
      // and one that waits long enough gives up, out of the queue
      yield* turn.take
      const impatient = yield* Effect.fork(turn.takeOr(giveUp))
      yield* settle
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(impatient)).toBe(false)
      expect(gaveUp).toBe(1)
      expect(turn.waiting()).toBe(0)
    }))

  it.effect("with a capacity: holders within its calls and weight (the first alone whatever its weight), in arrival order, as a model of it", () =>
    Effect.promise(() =>
      FastCheck.assert(
        FastCheck.asyncProperty(
          FastCheck.record({
            calls: FastCheck.integer({ min: 1, max: 5 }),
            weight: FastCheck.integer({ min: 1, max: 100 }),
            weights: FastCheck.array(FastCheck.integer({ min: 0, max: 60 }), { minLength: 1, maxLength: 30 }),
            // frees a holder; opens the turn; a waiter gives up (the head, that may not fit, or another); the head
            // is handed a permit by a release and interrupted before it runs (it passes it on)
            steps: FastCheck.array(
              FastCheck.record({
                kind: FastCheck.constantFrom("release", "release", "open", "giveUp", "giveUpHead", "interruptHead"),
                at: FastCheck.nat(30)
              }),
              { maxLength: 40 }
            )
          }),
          ({ calls, steps, weight, weights }) =>
            Effect.runPromise(Effect.gen(function*() {
              const turn = Turn.make({ calls, weight })
              const granted: Array<number> = []
              const holding: Array<number> = []
              const giveUps = yield* Effect.forEach(weights, () => Deferred.make<void>())
              const fibers = yield* Effect.forEach(weights, (w, i) =>
                Effect.fork(Effect.flatMap(
                  turn.takeOr(Deferred.await(giveUps[i]!), w),
                  (mine) =>
                    Effect.sync(() => {
                      if (!mine) return
                      granted.push(i)
                      holding.push(i)
                    })
                )))
              yield* settle
              // the model: in arrival order, the head goes when none hold or it fits both bounds
              let opened = false
              const queue = weights.map((_, i) => i)
              const modelGranted: Array<number> = []
              const modelHolding: Array<number> = []
              const fits = (i: number) =>
                opened || modelHolding.length === 0 ||
                (modelHolding.length < calls &&
                  modelHolding.reduce((sum, j) => sum + weights[j]!, 0) + weights[i]! <= weight)
              const admit = () => {
                while (queue.length > 0 && fits(queue[0]!)) {
                  const i = queue.shift()!
                  modelHolding.push(i)
                  modelGranted.push(i)
                }
              }
              admit()
              const check = () => {
                expect(granted).toEqual(modelGranted)
                expect([...holding].sort((a, b) => a - b)).toEqual([...modelHolding].sort((a, b) => a - b))
                expect(turn.waiting()).toBe(queue.length)
                if (!opened && holding.length > 1) {
                  expect(holding.length).toBeLessThanOrEqual(calls)
                  expect(holding.reduce((sum, i) => sum + weights[i]!, 0)).toBeLessThanOrEqual(weight)
                }
              }
              check()
              const releaseOne = (at: number) => {
                const i = holding.splice(at % holding.length, 1)[0]!
                modelHolding.splice(modelHolding.indexOf(i), 1)
                return turn.release(weights[i]!)
              }
              for (const step of steps) {
                if (step.kind === "open") {
                  yield* turn.open
                  opened = true
                } else if (step.kind === "release" && holding.length > 0) {
                  yield* releaseOne(step.at)
                } else if ((step.kind === "giveUp" || step.kind === "giveUpHead") && queue.length > 0) {
                  const i = queue.splice(step.kind === "giveUpHead" ? 0 : step.at % queue.length, 1)[0]!
                  yield* Deferred.succeed(giveUps[i]!, undefined)
                } else if (step.kind === "interruptHead" && queue.length > 0 && holding.length > 0) {
                  // in one step, as a release resumes the head: the head, handed a permit or not, is interrupted
                  const head = queue.shift()!
                  const release = releaseOne(step.at)
                  yield* Effect.sync(() => {
                    Effect.runSync(release)
                    fibers[head]!.unsafeInterruptAsFork(FiberId.none)
                  })
                }
                admit()
                yield* settle
                check()
              }
            }))
        ),
        { numRuns: 200 }
      )
    ))

  it.effect("with a capacity: a head that gives up goes on before the callers behind it that its leaving lets go", () =>
    Effect.gen(function*() {
      const turn = Turn.make({ calls: 3, weight: 10 })
      yield* turn.takeOr(Effect.never, 8)
      const order: Array<string> = []
      // the head (5) does not fit beside the holder (8) and gives up after 1 s; the one behind it (1) would fit,
      // and waits behind it
      const head = yield* Effect.fork(Effect.flatMap(
        turn.takeOr(Effect.sleep("1 second"), 5),
        (mine) => Effect.sync(() => order.push(`head ${mine}`))
      ))
      const behind = yield* Effect.fork(Effect.flatMap(
        turn.takeOr(Effect.never, 1),
        (mine) => Effect.sync(() => order.push(`behind ${mine}`))
      ))
      yield* settle
      expect(order).toEqual([])
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(head)
      yield* Fiber.join(behind)
      expect(order).toEqual(["head false", "behind true"])
      expect(turn.waiting()).toBe(0)
    }))

  it.effect("admitArrivedBy: the waiters that came by the cutoff get a permit in the order they came, whatever the capacity and the order their timers fire in", () =>
    Effect.gen(function*() {
      const turn = Turn.make({ calls: 1, weight: 10 })
      yield* turn.takeOr(Effect.never, 1, 0)
      const order: Array<string> = []
      // five waiters whose patience ends at one instant (TestClock fires those sleeps last-scheduled first), the
      // patient one that came later stays
      const fibers = []
      for (const [name, at] of [["a", 0], ["b", 0], ["c", 5], ["d", 10], ["e", 10], ["late", 11]] as const) {
        const giveUp = name === "late"
          ? Effect.never
          : Effect.zipRight(Effect.sleep("10 seconds"), turn.admitArrivedBy(10))
        fibers.push(
          yield* Effect.fork(Effect.flatMap(
            turn.takeOr(giveUp, 1, at),
            (mine) => Effect.sync(() => order.push(`${name} ${mine}`))
          ))
        )
      }
      yield* settle
      expect(turn.waiting()).toBe(6)
      yield* TestClock.adjust("10 seconds")
      yield* settle
      expect(order).toEqual(["a true", "b true", "c true", "d true", "e true"])
      expect(turn.waiting()).toBe(1)
      // the late one still waits its turn: the holders give their permits back, and it gets one
      yield* turn.release(1)
      for (let i = 0; i < 5; i++) yield* turn.release(1)
      yield* settle
      expect(order).toEqual(["a true", "b true", "c true", "d true", "e true", "late true"])
      for (const fiber of fibers) yield* Fiber.join(fiber)
    }))
})
