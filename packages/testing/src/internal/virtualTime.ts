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
  /** A cheap reading that changes when sleeps are registered (for telling when things have settled). */
  readonly activity: Effect.Effect<number>
  /** Pending sleeps (their count) and the earliest's instant. */
  readonly pending: Effect.Effect<{ readonly count: number; readonly earliest: number | undefined }>
  /** Moves to `instant` (never back), waking every sleep due by then, in time and registration order. */
  readonly advanceTo: (instant: number) => Effect.Effect<void>
  /** Gives back to the clock the sleeps the driver took over (when it stops). */
  readonly release: Effect.Effect<void>
}

type SleepEntry = readonly [number, Deferred.Deferred<void>]

/** A binary min-heap of sleeps by (instant, registration order). */
class Sleeps {
  private readonly heap: Array<{ readonly at: number; readonly seq: number; readonly entry: SleepEntry }> = []
  private seq = 0
  get size(): number {
    return this.heap.length
  }
  get earliest(): number | undefined {
    return this.heap[0]?.at
  }
  private less(i: number, j: number): boolean {
    const a = this.heap[i]
    const b = this.heap[j]
    return a.at < b.at || (a.at === b.at && a.seq < b.seq)
  }
  private swap(i: number, j: number): void {
    const t = this.heap[i]
    this.heap[i] = this.heap[j]
    this.heap[j] = t
  }
  push(entry: SleepEntry): void {
    this.heap.push({ at: entry[0], seq: this.seq++, entry })
    let i = this.heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.less(i, parent)) break
      this.swap(i, parent)
      i = parent
    }
  }
  pop(): SleepEntry {
    const top = this.heap[0]
    const last = this.heap.pop()!
    if (this.heap.length > 0) {
      this.heap[0] = last
      let i = 0
      while (true) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < this.heap.length && this.less(l, m)) m = l
        if (r < this.heap.length && this.less(r, m)) m = r
        if (m === i) break
        this.swap(i, m)
        i = m
      }
    }
    return top.entry
  }
  /** Every entry, oldest first; empties the heap. */
  drain(): Array<SleepEntry> {
    const all = this.heap.splice(0).sort((a, b) => a.seq - b.seq)
    return all.map((e) => e.entry)
  }
}

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
    // The driver takes the sleeps over as they are registered: a heap finds the earliest in O(log n) where the
    // clock's own list would be scanned and rebuilt at every step (a day of traffic has tens of thousands).
    const state = internals.clockState
    const owned = new Sleeps()
    /** Moves the sleeps registered since the last look into the heap (the clock's list holds the latest first). */
    const absorb = Ref.modify(state, (data): [void, TestClock.Data] => {
      if (Chunk.isEmpty(data.sleeps)) return [undefined, data]
      const fresh = Chunk.toReadonlyArray(data.sleeps)
      for (let i = fresh.length - 1; i >= 0; i--) owned.push(fresh[i])
      return [undefined, TestClock.makeData(data.instant, Chunk.empty())]
    })
    return {
      now: () => clock.unsafeCurrentTimeMillis(),
      activity: Effect.map(Ref.get(state), (data) => Chunk.size(data.sleeps)),
      pending: Effect.zipRight(absorb, Effect.sync(() => ({ count: owned.size, earliest: owned.earliest }))),
      advanceTo: (instant) =>
        Effect.zipRight(
          absorb,
          Effect.flatMap(
            Ref.modify(state, (data): [Array<SleepEntry>, TestClock.Data] => {
              const due: Array<SleepEntry> = []
              while (owned.size > 0 && owned.earliest! <= instant) due.push(owned.pop())
              return [due, instant > data.instant ? TestClock.makeData(instant, data.sleeps) : data]
            }),
            (due) => Effect.forEach(due, ([, deferred]) => Deferred.succeed(deferred, undefined), { discard: true })
          )
        ),
      release: Effect.zipRight(
        absorb,
        Ref.update(
          state,
          (data) =>
            TestClock.makeData(
              data.instant,
              Chunk.appendAll(data.sleeps, Chunk.unsafeFromArray(owned.drain().reverse()))
            )
        )
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
    activity: Effect.map(clock.sleeps, Chunk.size),
    advanceTo: (instant) => clock.setTime(instant),
    release: Effect.void
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
        let last = tracking.scheduled
        let lastCount = yield* driven.activity
        while (stable < patience && !done) {
          yield* turn(stable >= 2 ? timer : macrotask)
          const count = yield* driven.activity
          if (tracking.pending === 0 && tracking.scheduled === last && count === lastCount) stable++
          else stable = 0
          last = tracking.scheduled
          lastCount = count
        }
      })

    const loop = Effect.gen(function*() {
      while (true) {
        yield* settle(1)
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
    // the sleeps the driver took over go back to the clock, whatever happens
    return yield* Effect.ensuring(loop, driven.release)
  })

/** The default deadline: thirty virtual days. */
export const DEFAULT_DEADLINE = Duration.days(30)
