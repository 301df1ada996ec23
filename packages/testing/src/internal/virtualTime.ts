/**
 * The virtual-time driver: runs a fiber, lets everything in flight settle, then moves `TestClock` to the
 * earliest pending sleep, and again, until the fiber is done.
 *
 * "Settled" is judged on the host's event loop, which is the one place this module touches real time: a
 * macrotask turn (`setImmediate`) runs after every pending microtask (Effect's scheduler runs fibers in
 * microtasks; the `openai` SDK's promise chains and the simulator's `fetch` are microtasks too), and a
 * scheduler wrapped around the driven fiber (and every fiber it forks) counts the tasks it still has to
 * run (Effect moves a long-running fiber to a `setTimeout` every 2,048 yields). Virtual time moves only
 * when nothing is left to run, so what runs at each virtual instant, and in what order, does not depend on
 * how fast the machine is.
 *
 * Moving the clock: on Effect's `TestClock` the driver takes the due sleeps out of its state and completes
 * them, in the order they were registered, at the instant they were due; `TestClock.setTime` would also
 * work but waits two real timer turns per sleep (about 2 ms each), far too slow for a simulated day.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as FiberStatus from "effect/FiberStatus"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import type * as Scheduler from "effect/Scheduler"
import * as Supervisor from "effect/Supervisor"
import * as TestClock from "effect/TestClock"

/** A macrotask turn of the host's loop, taken at load (fake timers installed later do not replace it). */
const macrotask: (f: () => void) => void = typeof globalThis.setImmediate === "function"
  ? globalThis.setImmediate.bind(globalThis)
  : (f) => globalThis.setTimeout(f, 0)
const timer: (f: () => void) => void = (f) => globalThis.setTimeout(f, 0)

const turn = (schedule: (f: () => void) => void) => Effect.async<void>((resume) => schedule(() => resume(Effect.void)))

/** Wraps the fiber's scheduler, counting the tasks scheduled and those not yet run. */
class Tracking implements Scheduler.Scheduler {
  scheduled = 0
  pending = 0
  constructor(readonly inner: Scheduler.Scheduler) {}
  shouldYield(fiber: Parameters<Scheduler.Scheduler["shouldYield"]>[0]): number | false {
    return this.inner.shouldYield(fiber)
  }
  scheduleTask(task: Scheduler.Task, priority: number, fiber?: Parameters<Scheduler.Scheduler["shouldYield"]>[0]) {
    this.scheduled++
    this.pending++
    this.inner.scheduleTask(
      () => {
        this.pending--
        task()
      },
      priority,
      fiber
    )
  }
}

/** What the driver reads of the clock and how it moves it. */
interface Driven {
  readonly now: () => number
  /** Pending sleeps (their count) and the earliest's instant. */
  readonly pending: Effect.Effect<{ readonly count: number; readonly earliest: number | undefined }>
  /** Moves to `instant` (never back), waking every sleep due by then, in time and registration order. */
  readonly advanceTo: (instant: number) => Effect.Effect<void>
}

type SleepEntry = readonly [number, Deferred.Deferred<void>]

/**
 * Effect's `TestClock` keeps its state (`TestClock.Data`: the instant and the pending sleeps) in a `Ref` named
 * `clockState`, and cancels its "nothing advances the clock" warning with `warningDone`. Neither is in its public
 * type, so they are checked for here, shape and all; without them the driver uses the public `setTime`.
 */
interface TestClockInternals {
  readonly clockState: Ref.Ref<TestClock.Data>
  readonly warningDone: () => Effect.Effect<void>
}

const internalsOf = (clock: TestClock.TestClock): Effect.Effect<TestClockInternals | undefined> => {
  const candidate = clock as unknown as Partial<Record<keyof TestClockInternals, unknown>>
  const state = candidate.clockState
  if (
    typeof candidate.warningDone !== "function" || typeof state !== "object" || state === null ||
    !(Ref.RefTypeId in state)
  ) return Effect.succeed(undefined)
  return Effect.map(
    Ref.get(state as Ref.Ref<unknown>),
    (data) =>
      typeof data === "object" && data !== null && "instant" in data && typeof data.instant === "number" &&
        "sleeps" in data && Chunk.isChunk(data.sleeps)
        ? clock as unknown as TestClockInternals
        : undefined
  )
}

const onTestClock = (clock: TestClock.TestClock, internals: TestClockInternals | undefined): Driven => {
  if (internals !== undefined) {
    const state = internals.clockState
    return {
      now: () => clock.unsafeCurrentTimeMillis(),
      pending: Effect.map(Ref.get(state), ({ sleeps }) => {
        let earliest: number | undefined = undefined
        for (const [at] of sleeps) if (earliest === undefined || at < earliest) earliest = at
        return { count: Chunk.size(sleeps), earliest }
      }),
      advanceTo: (instant) =>
        Effect.flatMap(
          Ref.modify(state, (data): [Array<SleepEntry>, TestClock.Data] => {
            const due: Array<SleepEntry> = []
            const rest: Array<SleepEntry> = []
            // the chunk holds the latest first: walk it backwards for registration order
            const all = Chunk.toReadonlyArray(data.sleeps)
            for (let i = all.length - 1; i >= 0; i--) (all[i][0] <= instant ? due : rest).push(all[i])
            if (due.length === 0 && instant <= data.instant) return [due, data]
            due.sort((a, b) => a[0] - b[0]) // stable: registration order within an instant
            return [due, TestClock.makeData(Math.max(instant, data.instant), Chunk.unsafeFromArray(rest.reverse()))]
          }),
          (due) => Effect.forEach(due, ([, deferred]) => Deferred.succeed(deferred, undefined), { discard: true })
        )
    }
  }
  // another TestClock implementation: its public interface (slower: it waits for real timers)
  return {
    now: () => clock.unsafeCurrentTimeMillis(),
    pending: Effect.map(clock.sleeps, (sleeps) => {
      let earliest: number | undefined = undefined
      for (const at of sleeps) if (earliest === undefined || at < earliest) earliest = at
      return { count: Chunk.size(sleeps), earliest }
    }),
    advanceTo: (instant) => clock.setTime(instant)
  }
}

/** A fiber still running when the run stopped, as the errors name it. */
export interface Waiting {
  readonly fiber: string
  readonly status: string
}

const describe = (fiber: Fiber.RuntimeFiber<unknown, unknown>): Effect.Effect<Waiting> =>
  Effect.map(fiber.status, (status) => ({
    fiber: FiberId.threadName(fiber.id()),
    status: FiberStatus.isSuspended(status)
      ? `suspended, waiting on ${
        status.blockingOn._tag === "None"
          ? "something other than a fiber (a promise, a Deferred, a queue)"
          : FiberId.threadName(status.blockingOn)
      }`
      : FiberStatus.isRunning(status)
      ? "running"
      : "done"
  }))

/** The fiber and every fiber forked in it that is still alive (the first 50). */
const alive = (
  root: Fiber.RuntimeFiber<unknown, unknown>,
  forked: Supervisor.Supervisor<Array<Fiber.RuntimeFiber<unknown, unknown>>>
): Effect.Effect<Array<Waiting>> =>
  Effect.gen(function*() {
    const out: Array<Waiting> = []
    for (const fiber of [root, ...(yield* forked.value)]) {
      if (out.length >= 50) break
      if (!FiberStatus.isDone(yield* fiber.status)) out.push(yield* describe(fiber))
    }
    return out
  })

/** Options, resolved. */
export interface Resolved {
  readonly deadlineMillis: number
  readonly seed: unknown
}

/** How the run ended when it did not complete. */
export type Stop =
  | { readonly _tag: "Stuck"; readonly at: number; readonly waiting: ReadonlyArray<Waiting> }
  | {
    readonly _tag: "Deadline"
    readonly at: number
    readonly deadlineMillis: number
    readonly nextSleepAt: number | undefined
    readonly pendingSleeps: number
    readonly waiting: ReadonlyArray<Waiting>
  }

/**
 * Runs `self` to completion in virtual time. Succeeds with its exit, or with how it was stopped (it is
 * then interrupted).
 */
export const drive = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  options: Resolved
): Effect.Effect<Exit.Exit<A, E> | Stop, never, R> =>
  Effect.gen(function*() {
    const clock = yield* TestClock.testClock()
    if (typeof (clock as Partial<TestClock.TestClock>).setTime !== "function") {
      return yield* Effect.dieMessage(
        "VirtualTime.run needs TestClock in its context (it.effect provides one; else Effect.provide(TestContext.TestContext))"
      )
    }
    const internals = yield* internalsOf(clock)
    const driven = onTestClock(clock, internals)
    // the driver moves the clock: TestClock's warning that nothing does is moot
    if (internals !== undefined) yield* internals.warningDone()
    const start = driven.now()
    const deadline = start + options.deadlineMillis
    const tracking = new Tracking(yield* FiberRef.get(FiberRef.currentScheduler))
    const forked = yield* Supervisor.track
    const fiber = yield* Effect.fork(
      self.pipe(Effect.supervised(forked), Effect.withRandom(Random.make(options.seed)), Effect.withScheduler(tracking))
    )
    let done = false
    fiber.addObserver(() => {
      done = true
    })

    /** Turns of the loop until nothing is left to run and the pending sleeps stay as they are. */
    const settle = (patience: number) =>
      Effect.gen(function*() {
        let stable = 0
        let last = -1
        let lastCount = -1
        while (stable < patience && !done) {
          yield* turn(stable >= 2 ? timer : macrotask)
          const { count } = yield* driven.pending
          if (tracking.pending === 0 && tracking.scheduled === last && count === lastCount) stable++
          else stable = 0
          last = tracking.scheduled
          lastCount = count
        }
      })

    while (true) {
      yield* settle(2)
      if (done) break
      let { count, earliest } = yield* driven.pending
      if (earliest === undefined) {
        // nothing to wake: make sure (real timers, I/O) before calling it stuck
        yield* settle(6)
        if (done) break
        ;({ count, earliest } = yield* driven.pending)
        if (earliest === undefined) {
          const waiting = yield* alive(fiber, forked)
          yield* Fiber.interruptFork(fiber)
          return { _tag: "Stuck", at: driven.now() - start, waiting } as const
        }
      }
      if (earliest > deadline) {
        yield* driven.advanceTo(deadline)
        const waiting = yield* alive(fiber, forked)
        yield* Fiber.interruptFork(fiber)
        return {
          _tag: "Deadline",
          at: driven.now() - start,
          deadlineMillis: options.deadlineMillis,
          nextSleepAt: earliest - start,
          pendingSleeps: count,
          waiting
        } as const
      }
      yield* driven.advanceTo(earliest)
    }
    return yield* Fiber.await(fiber)
  })

/** The default deadline: thirty virtual days. */
export const DEFAULT_DEADLINE = Duration.days(30)
