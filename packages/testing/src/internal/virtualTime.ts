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
 * Moving the clock: on Effect's `TestClock` the driven fiber (and every fiber it forks) sleeps on the
 * driver's clock, the TestClock but for `sleep`, which puts the sleep straight in the driver's heap (no
 * `Deferred`, no list rebuilt, no warning check per sleep); so do fibers outside the run on the same TestClock
 * (the simulator's `fetch`, built before the run), whose TestClock's `sleep` is the driver's while it runs; sleeps
 * registered in the TestClock's state otherwise are taken out of it as they appear. The driver wakes the due ones, in
 * time and registration order, at the instant they were due. When it stops it gives the sleeps still
 * pending back to the TestClock, and a fiber that outlives the run sleeps on the TestClock from then on.
 * `TestClock.setTime` would also work but waits two real timer turns per sleep (about 2 ms each), far too
 * slow for a simulated day.
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import type * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as FiberStatus from "effect/FiberStatus"
import * as MutableRef from "effect/MutableRef"
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
  readonly activity: () => number
  /** Pending sleeps (their count) and the earliest's instant. */
  readonly pending: Effect.Effect<{ readonly count: number; readonly earliest: number | undefined }>
  /** Moves to `instant` (never back), waking every sleep due by then, in time and registration order. */
  readonly advanceTo: (instant: number) => Effect.Effect<void>
  /**
   * `pending`'s earliest and `advanceTo`, as plain calls, when the clock can be read and moved synchronously (the
   * driver then steps in host callbacks, without an effect per step).
   */
  readonly sync: {
    readonly earliest: () => number | undefined
    readonly advanceTo: (instant: number) => void
  } | undefined
  /** The clock the driven fiber sees (its sleeps go straight to the driver), when there is one. */
  readonly clock: Clock.Clock | undefined
  /** Gives back to the clock the sleeps the driver took over (when it stops). */
  readonly release: Effect.Effect<void>
}

type SleepEntry = readonly [number, Deferred.Deferred<void>]

/**
 * A sleep the driver holds: one taken over from the clock's list (`deferred`), or one registered with
 * the driver's clock (`wake` resumes its fiber; undefined once that sleep was interrupted).
 */
interface Owned {
  readonly at: number
  readonly seq: number
  readonly deferred: Deferred.Deferred<void> | undefined
  wake: (() => void) | undefined
}

/** A binary min-heap of sleeps by (instant, registration order). */
class Sleeps {
  private readonly heap: Array<Owned> = []
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
  push(at: number, deferred: Deferred.Deferred<void> | undefined, wake: (() => void) | undefined): Owned {
    const owned: Owned = { at, seq: this.seq++, deferred, wake }
    this.heap.push(owned)
    let i = this.heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.less(i, parent)) break
      this.swap(i, parent)
      i = parent
    }
    return owned
  }
  pop(): Owned {
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
    return top
  }
  /** Every entry, oldest first; empties the heap. */
  drain(): Array<Owned> {
    return this.heap.splice(0).sort((a, b) => a.seq - b.seq)
  }
}

/**
 * Effect's `TestClock` keeps its state (`TestClock.Data`: the instant and the pending sleeps) in a `Ref` named
 * `clockState` (whose value is a `MutableRef` named `ref`), and cancels its "nothing advances the clock" warning
 * with `warningDone`. None is in its public type, so they are checked for here, shape and all; without them the
 * driver uses the public `setTime`.
 */
interface TestClockInternals {
  readonly clockState: Ref.Ref<TestClock.Data> & { readonly ref: MutableRef.MutableRef<TestClock.Data> }
  readonly warningDone: () => Effect.Effect<void>
}

const MutableRefTypeId = Symbol.for("effect/MutableRef")

const internalsOf = (clock: TestClock.TestClock): TestClockInternals | undefined => {
  const candidate = clock as unknown as Partial<Record<keyof TestClockInternals, unknown>>
  const state = candidate.clockState
  if (
    typeof candidate.warningDone !== "function" || typeof state !== "object" || state === null ||
    !(Ref.RefTypeId in state) || !("ref" in state) || typeof state.ref !== "object" || state.ref === null ||
    !(MutableRefTypeId in state.ref)
  ) return undefined
  const data: unknown = MutableRef.get(state.ref as unknown as MutableRef.MutableRef<unknown>)
  return typeof data === "object" && data !== null && "instant" in data && typeof data.instant === "number" &&
      "sleeps" in data && Chunk.isChunk(data.sleeps)
    ? clock as unknown as TestClockInternals
    : undefined
}

const onTestClock = (clock: TestClock.TestClock, internals: TestClockInternals | undefined): Driven => {
  if (internals !== undefined) {
    // The driver takes the sleeps over: a heap finds the earliest in O(log n) where the clock's own list would be
    // scanned and rebuilt at every step (a day of traffic has tens of thousands). The driven fiber sleeps on a
    // clock that registers its sleeps in the heap directly (no Deferred, no list, no warning); sleeps registered
    // on the TestClock itself (fibers outside the run) are taken over as they appear. All of it synchronous: the
    // state is read and written through its MutableRef.
    const cell = internals.clockState.ref
    const owned = new Sleeps()
    let registered = 0
    let active = true
    /** Moves the sleeps registered on the TestClock since the last look into the heap (latest first there). */
    const absorb = () => {
      const data = MutableRef.get(cell)
      if (Chunk.isEmpty(data.sleeps)) return
      const fresh = Chunk.toReadonlyArray(data.sleeps)
      for (let i = fresh.length - 1; i >= 0; i--) owned.push(fresh[i][0], fresh[i][1], undefined)
      MutableRef.set(cell, TestClock.makeData(data.instant, Chunk.empty()))
    }
    const wakeEntry = (entry: Owned) => {
      if (entry.deferred !== undefined) Deferred.unsafeDone(entry.deferred, Exit.void)
      else entry.wake?.()
    }
    // the TestClock, but for `sleep`: its other methods (adjust, setTime, currentTimeMillis...) are the clock's
    const driverClock: TestClock.TestClock = Object.create(clock)
    const clockSleep = clock.sleep
    const sleepOnClock = (duration: Duration.Duration) => clockSleep.call(clock, duration)
    const sleep = (duration: Duration.Duration): Effect.Effect<void> => {
      const millis = Duration.toMillis(duration)
      if (!(millis > 0)) return Effect.void
      // the register runs when the sleep does (as a suspended effect would): the instant is read then; the two
      // answers in place are for a driver that has stopped and a sleep too short to move the clock's instant
      return Effect.async<void>((resume) => {
        // once the driver has stopped, a fiber still holding its clock sleeps on the TestClock
        if (!active) return resume(sleepOnClock(duration))
        const now = MutableRef.get(cell).instant
        const end = now + millis
        if (!(end > now)) return resume(Effect.void)
        registered++
        const entry = owned.push(end, undefined, () => resume(Effect.void))
        return Effect.sync(() => {
          entry.wake = undefined
        })
      })
    }
    Object.defineProperty(driverClock, "sleep", { value: sleep })
    const advanceTo = (instant: number) => {
      absorb()
      const data = MutableRef.get(cell)
      if (instant > data.instant) MutableRef.set(cell, TestClock.makeData(instant, data.sleeps))
      while (owned.size > 0 && owned.earliest! <= instant) wakeEntry(owned.pop())
    }
    // Fibers outside the run on the same TestClock (the simulator's `fetch` runs on the runtime it was built in)
    // sleep into the heap as well while the driver runs, rather than through `TestClock.sleep` (a Deferred, the
    // list, a synchronized warning check). Not when the clock's `sleep` is someone's
    // already (a driver within a driver): their sleeps are then taken over from the list, as they appear.
    const patched = !Object.prototype.hasOwnProperty.call(clock, "sleep")
    if (patched) Object.defineProperty(clock, "sleep", { value: sleep, configurable: true, writable: true })
    return {
      now: () => MutableRef.get(cell).instant,
      activity: () => registered + Chunk.size(MutableRef.get(cell).sleeps),
      pending: Effect.sync(() => {
        absorb()
        return { count: owned.size, earliest: owned.earliest }
      }),
      advanceTo: (instant) => Effect.sync(() => advanceTo(instant)),
      sync: {
        earliest: () => {
          absorb()
          return owned.earliest
        },
        advanceTo
      },
      clock: driverClock,
      release: Effect.suspend(() => {
        active = false
        if (patched) delete (clock as { sleep?: unknown }).sleep
        absorb()
        const left = owned.drain()
        const back: Array<SleepEntry> = []
        const forwarded: Array<Effect.Effect<void>> = []
        for (const entry of left) {
          if (entry.deferred !== undefined) back.push([entry.at, entry.deferred])
          else if (entry.wake !== undefined) {
            // a sleep of the driver's clock goes back as a Deferred of the TestClock's that wakes it
            const deferred = Deferred.unsafeMake<void>(FiberId.none)
            const wake = entry.wake
            back.push([entry.at, deferred])
            forwarded.push(Effect.zipRight(Deferred.await(deferred), Effect.sync(wake)))
          }
        }
        const data = MutableRef.get(cell)
        MutableRef.set(
          cell,
          TestClock.makeData(data.instant, Chunk.appendAll(data.sleeps, Chunk.unsafeFromArray(back.reverse())))
        )
        return forwarded.length === 0 ? Effect.void : Effect.asVoid(
          Effect.forkDaemon(Effect.forEach(forwarded, (f) => f, { concurrency: "unbounded", discard: true }))
        )
      })
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
    activity: () => 0,
    advanceTo: (instant) => clock.setTime(instant),
    sync: undefined,
    clock: undefined,
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
    const internals = internalsOf(clock)
    const driven = onTestClock(clock, internals)
    // the driver moves the clock: TestClock's warning that nothing does is moot
    if (internals !== undefined) yield* internals.warningDone()
    const start = driven.now()
    const deadline = start + options.deadlineMillis
    const scheduler = yield* FiberRef.get(FiberRef.currentScheduler)
    const tracking = new Tracking(scheduler)
    const forked = yield* Supervisor.track
    const seeded = self.pipe(
      Effect.supervised(forked),
      Effect.withRandom(Random.make(options.seed)),
      Effect.withScheduler(tracking)
    )
    const fiber = yield* Effect.fork(driven.clock === undefined ? seeded : Effect.withClock(seeded, driven.clock))
    let done = false
    fiber.addObserver(() => {
      done = true
    })

    /**
     * Turns of the loop until nothing is left to run and the pending sleeps stay as they are (`patience` turns
     * in a row without anything new; after two such, real timer turns rather than immediates).
     */
    const settle = (patience: number) =>
      Effect.async<void>((resume) => {
        let stable = 0
        let last = tracking.scheduled
        let lastCount = driven.activity()
        const look = () => {
          const count = driven.activity()
          if (tracking.pending === 0 && tracking.scheduled === last && count === lastCount) stable++
          else stable = 0
          last = tracking.scheduled
          lastCount = count
          if (stable >= patience || done) resume(Effect.void)
          else (stable >= 2 ? timer : macrotask)(look)
        }
        if (done) resume(Effect.void)
        else macrotask(look)
      })

    /**
     * `settle(1)`, then, while the fiber is not done and the earliest pending sleep is due by the deadline, moves the
     * clock to it and settles again: the loop below's common step, in host callbacks. Each step runs as a task of the
     * driver's scheduler, where the driver fiber's continuation after `settle` ran (so the same work runs before it,
     * in the same order), without resuming a fiber and building its effects at every one of a day's instants. Ends
     * settled, when the loop below has something else to do.
     */
    const sync = driven.sync
    const settleAndStep = sync === undefined ? settle(1) : Effect.async<void>((resume) => {
      let stable = 0
      let last = 0
      let lastCount = 0
      /** Set when the driver is interrupted meanwhile: the steps stop. */
      let cancelled = false
      const watch = () => {
        stable = 0
        last = tracking.scheduled
        lastCount = driven.activity()
        macrotask(look)
      }
      const step = () => {
        if (cancelled) return
        if (done) return resume(Effect.void)
        const earliest = sync.earliest()
        if (earliest === undefined || earliest > deadline) return resume(Effect.void)
        sync.advanceTo(earliest)
        watch()
      }
      const look = () => {
        if (cancelled) return
        const count = driven.activity()
        if (tracking.pending === 0 && tracking.scheduled === last && count === lastCount) stable++
        else stable = 0
        last = tracking.scheduled
        lastCount = count
        if (stable >= 1 || done) scheduler.scheduleTask(step, 0)
        else macrotask(look)
      }
      if (done) resume(Effect.void)
      else watch()
      return Effect.sync(() => {
        cancelled = true
      })
    })

    const loop = Effect.gen(function*() {
      while (true) {
        yield* settleAndStep
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
