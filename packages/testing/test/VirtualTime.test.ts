import { describe, expect, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Exit, Fiber, TestClock } from "effect"
import { VirtualTime } from "../src/index.js"

describe("VirtualTime.run", () => {
  it.effect("follows sleeps scheduled after every advance, and ends where the run ended", () =>
    Effect.gen(function*() {
      // each step's sleep only exists once the previous one has woken
      const steps = Effect.forEach([3_000, 1, 7_000, 60_000], (ms) => Effect.sleep(ms), { discard: true })
      const value = yield* VirtualTime.run(Effect.as(steps, "done"))
      expect(value).toBe("done")
      expect(yield* Clock.currentTimeMillis).toBe(70_001)
    }))

  it.effect("never overshoots a timeout: the clock stops at the earliest pending sleep", () =>
    Effect.gen(function*() {
      const raced = Effect.sleep("9 seconds").pipe(Effect.as("slept"), Effect.timeout("10 seconds"))
      expect(yield* VirtualTime.run(raced)).toBe("slept")
      expect(yield* Clock.currentTimeMillis).toBe(9_000)
      const late = Effect.sleep("11 seconds").pipe(Effect.timeout("10 seconds"), Effect.exit)
      expect(Exit.isFailure(yield* VirtualTime.run(late))).toBe(true)
      expect(yield* Clock.currentTimeMillis).toBe(19_000)
    }))

  it.effect("concurrent sleepers wake at their own instants", () =>
    Effect.gen(function*() {
      const woke: Array<readonly [number, number]> = []
      const sleeper = (i: number) =>
        Effect.flatMap(Effect.sleep((i % 7) * 1_000 + i), () =>
          Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => woke.push([i, now]))))
      yield* VirtualTime.run(Effect.forEach(
        Array.from({ length: 50 }, (_, i) =>
          i),
        sleeper,
        { concurrency: "unbounded" }
      ))
      expect(woke).toHaveLength(50)
      for (const [i, at] of woke) expect(at).toBe((i % 7) * 1_000 + i)
      expect(woke.map(([, at]) => at)).toEqual([...woke.map(([, at]) => at)].sort((a, b) => a - b))
    }))

  it.effect("stops at a virtual deadline exactly, naming what still waits", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(VirtualTime.run(Effect.sleep("2 hours"), { deadline: "90 minutes" }))
      expect(error._tag).toBe("DeadlineReached")
      if (error._tag !== "DeadlineReached") return
      expect(yield* Clock.currentTimeMillis).toBe(90 * 60_000)
      expect(error.deadlineMillis).toBe(90 * 60_000)
      expect(error.nextSleepAtMillis).toBe(2 * 3_600_000)
      expect(error.pendingSleeps).toBe(1)
      expect(error.message).toContain("did not finish by its virtual deadline (1h 30m)")
    }))

  it.effect("a sleep due at the deadline itself still wakes", () =>
    Effect.gen(function*() {
      expect(yield* VirtualTime.run(Effect.as(Effect.sleep("1 hour"), 1), { deadline: "1 hour" })).toBe(1)
      expect(yield* Clock.currentTimeMillis).toBe(3_600_000)
    }))

  it.effect("fails clearly on a run that cannot finish: suspended fibers and no pending sleep", () =>
    Effect.gen(function*() {
      const never = yield* Deferred.make<void>()
      const stuck = Effect.zipRight(Effect.sleep("5 seconds"), Deferred.await(never))
      const error = yield* Effect.flip(VirtualTime.run(stuck))
      expect(error._tag).toBe("Stuck")
      if (error._tag !== "Stuck") return
      expect(error.atMillis).toBe(5_000)
      expect(error.waiting.length).toBeGreaterThan(0)
      expect(error.message).toMatch(/cannot finish: at 5000 ms of virtual time.*\n\s+fiber #\d+: suspended/)
      // a promise that never settles, with forked fibers waiting too
      const forked = Effect.forEach([1, 2], () => Effect.promise(() => new Promise<void>(() => {})), {
        concurrency: "unbounded"
      })
      const error2 = yield* Effect.flip(VirtualTime.runPromise(() => Effect.runPromise(Effect.never)))
      expect(error2._tag).toBe("Stuck")
      const error3 = yield* Effect.flip(VirtualTime.run(forked))
      expect(error3._tag).toBe("Stuck")
      if (error3._tag === "Stuck") {
        expect(error3.waiting.length).toBeGreaterThanOrEqual(3)
        expect(error3.message).toContain("other than a fiber")
      }
    }))

  it.effect("sleeps interrupted during a run leave nothing on the TestClock; live ones go back to it", () =>
    Effect.gen(function*() {
      // three timeouts, one after the other, whose sleeps (1 hour) are interrupted when their work (1 s) ends
      yield* VirtualTime.run(Effect.forEach([1, 2, 3], () => Effect.timeout(Effect.sleep("1 second"), "1 hour")))
      expect(yield* Clock.currentTimeMillis).toBe(3_000)
      expect(yield* TestClock.sleeps()).toHaveLength(0)
      // a later run does not step through them: stuck where it starts
      const error = yield* Effect.flip(VirtualTime.run(Effect.never))
      expect(error._tag).toBe("Stuck")
      expect(yield* Clock.currentTimeMillis).toBe(3_000)
      // a fiber still sleeping when a run ends sleeps on, on the TestClock, to its own instant
      const woke = yield* Deferred.make<number>()
      yield* VirtualTime.run(
        Effect.zipRight(
          Effect.forkDaemon(
            Effect.zipRight(
              Effect.sleep("5 seconds"),
              Effect.flatMap(Clock.currentTimeMillis, (t) => Deferred.succeed(woke, t))
            )
          ),
          Effect.sleep("2 seconds")
        )
      )
      expect(yield* Clock.currentTimeMillis).toBe(5_000)
      yield* TestClock.adjust("2 seconds")
      expect(yield* Deferred.isDone(woke)).toBe(false)
      yield* TestClock.adjust("1 second")
      expect(yield* Deferred.isDone(woke)).toBe(true)
      expect(yield* Deferred.await(woke)).toBe(8_000)
    }))

  it.effect("runs Promise code and fails with its rejection", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(VirtualTime.runPromise(() => Promise.reject(new Error("boom"))))
      expect(error._tag).toBe("UnknownException")
      if (error._tag === "UnknownException") expect((error.error as Error).message).toBe("boom")
    }))

  it.effect("a run interrupted at its deadline is interrupted", () =>
    Effect.gen(function*() {
      const finalized = yield* Deferred.make<void>()
      const run = Effect.sleep("1 day").pipe(Effect.onInterrupt(() => Deferred.succeed(finalized, undefined)))
      yield* Effect.flip(VirtualTime.run(run, { deadline: "1 hour" }))
      yield* Deferred.await(finalized)
      expect(yield* Fiber.interrupt(yield* Effect.fork(Effect.void))).toBeDefined()
    }))

  // The driven fiber sleeps on the driver's own clock (the TestClock but for `sleep`): what lives on past the run,
  // or moves the TestClock itself, still sees one clock.
  it.effect("TestClock.adjust inside a run moves the same clock", () =>
    Effect.gen(function*() {
      expect(yield* VirtualTime.run(Effect.zipRight(TestClock.adjust("15 seconds"), Clock.currentTimeMillis))).toBe(
        15_000
      )
      expect(yield* Clock.currentTimeMillis).toBe(15_000)
    }))

  it.effect("a fiber that outlives the run sleeps on the TestClock: its sleeps pending at the end, and later ones", () =>
    Effect.gen(function*() {
      const first = yield* Deferred.make<number>()
      const gate = yield* Deferred.make<void>()
      const second = yield* Deferred.make<number>()
      const wokeAt = (deferred: Deferred.Deferred<number>) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => Deferred.succeed(deferred, now))
      yield* VirtualTime.run(Effect.gen(function*() {
        yield* Effect.forkDaemon(Effect.zipRight(Effect.sleep("1 hour"), wokeAt(first)))
        yield* Effect.forkDaemon(
          Effect.zipRight(Deferred.await(gate), Effect.zipRight(Effect.sleep("2 hours"), wokeAt(second)))
        )
        yield* Effect.yieldNow()
      }))
      expect(yield* Clock.currentTimeMillis).toBe(0)
      expect((yield* TestClock.sleeps()).length).toBe(1)
      yield* Deferred.succeed(gate, undefined)
      yield* Effect.repeatN(Effect.yieldNow(), 10)
      // the daemon's next sleep, registered after the run, is the TestClock's (due at 2 h)
      expect((yield* TestClock.sleeps()).length).toBe(2)
      yield* TestClock.adjust("1 hour")
      expect(yield* Deferred.await(first)).toBe(3_600_000)
      yield* TestClock.adjust("2 hours")
      expect(yield* Deferred.await(second)).toBe(2 * 3_600_000)
    }))

  it.effect("a run stopped at its deadline gives its pending sleeps back to the TestClock", () =>
    Effect.gen(function*() {
      const woke = yield* Deferred.make<number>()
      const outside = Effect.zipRight(
        Effect.sleep("3 hours"),
        Effect.flatMap(Clock.currentTimeMillis, (now) => Deferred.succeed(woke, now))
      )
      const error = yield* Effect.flip(VirtualTime.run(
        Effect.zipRight(Effect.forkDaemon(outside), Effect.sleep("1 day")),
        { deadline: "1 hour" }
      ))
      expect(error._tag).toBe("DeadlineReached")
      if (error._tag === "DeadlineReached") expect(error.pendingSleeps).toBe(2)
      yield* TestClock.adjust("2 hours")
      expect(yield* Deferred.await(woke)).toBe(3 * 3_600_000)
    }))

  it.effect("a fiber outside the run, on the same TestClock, sleeps into the run's time; the clock is its own after", () =>
    Effect.gen(function*() {
      const clock = yield* TestClock.testClock()
      const woke: Array<number> = []
      const tick = Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => woke.push(now)))
      // forked before the run, on the test's runtime: not a fiber of the run (as the simulator's fetch is not)
      const start = yield* Deferred.make<void>()
      const outside = yield* Effect.fork(
        Effect.zipRight(Deferred.await(start), Effect.repeatN(Effect.zipRight(Effect.sleep("10 minutes"), tick), 2))
      )
      yield* VirtualTime.run(Effect.zipRight(Deferred.succeed(start, undefined), Fiber.join(outside)))
      expect(woke).toEqual([600_000, 1_200_000, 1_800_000])
      expect(yield* Clock.currentTimeMillis).toBe(1_800_000)
      expect(Object.prototype.hasOwnProperty.call(clock, "sleep")).toBe(false)
      // after the run, a sleep is the TestClock's own again
      const later = yield* Effect.fork(Effect.zipRight(Effect.sleep("1 minute"), tick))
      yield* Effect.yieldNow()
      expect((yield* TestClock.sleeps()).length).toBe(1)
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(later)
      expect(woke.at(-1)).toBe(1_860_000)
    }))
})
