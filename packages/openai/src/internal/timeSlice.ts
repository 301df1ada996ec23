/**
 * Letting the event loop in during a burst of calls.
 *
 * Effect's default scheduler runs every ready fiber in one go, in microtasks. A burst of thousands of
 * calls (`Effect.forEach(..., { concurrency: "unbounded" })`) then estimates, admits and prepares every
 * one of them before the first request can leave: no socket is written until the whole burst has run,
 * and meanwhile the server's bucket sits full, its refill wasted. `enter` makes a call that starts after
 * the current macrotask has already been busy for a slice (or while calls are waiting) wait for a later
 * turn of the event loop (after its I/O) before it is even estimated; the calls that waited go on in the
 * order they came, a slice's worth per turn. Node only (`setImmediate`); elsewhere nothing is sliced. Once a call has started it runs as before (its admission is not split from what
 * decided it, a router's choice included).
 *
 * It measures real time (`performance.now()`), not the `Clock`: it is about sharing the thread, not about
 * when anything happens. A call that starts within its slice is never delayed.
 *
 * Only on the live `Clock`. Under any other (`TestClock`, a scaled simulation clock) nothing here reads real
 * time or waits for the host's event loop: a call yields once through Effect's own scheduler instead
 * (`Effect.yieldNow`), so the calls of a burst still go in the order they came, and the same program gives
 * the same order, at the same virtual times, on every run.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as DefaultServices from "effect/DefaultServices"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"
import * as Scheduler from "effect/Scheduler"

/**
 * The event loop's next turn, taken when this module loads (fake timers installed later do not stop it);
 * `undefined` where there is none (no `setImmediate`: not Node): then nothing is sliced.
 */
const nextTurnOfLoop: ((f: () => void) => void) | undefined = typeof globalThis.setImmediate === "function"
  ? globalThis.setImmediate.bind(globalThis)
  : undefined

/** The process's thread is one: so is its slicer. */
class TimeSliced implements Scheduler.Scheduler {
  /** When the current slice began (`-1`: none; the next turn of the event loop ends it). */
  private sliceStart = -1
  /** The calls waiting for a turn; while there are any, a drain is due. */
  private readonly queue: Array<Scheduler.Task> = []
  /** The slice the waiting calls asked for (the shortest). */
  private sliceMillis = Infinity

  private readonly endSlice = () => {
    this.sliceStart = -1
  }

  /**
   * Whether a call starting now must wait for its turn: calls are waiting already (it goes behind them),
   * or the current macrotask has run for longer than `sliceMillis` (starting a slice if none is).
   */
  exhausted(sliceMillis: number): boolean {
    if (this.queue.length > 0) return true
    const now = performance.now()
    if (this.sliceStart < 0) {
      this.sliceStart = now
      nextTurnOfLoop!(this.endSlice)
      return false
    }
    if (now - this.sliceStart <= sliceMillis) return false
    if (sliceMillis < this.sliceMillis) this.sliceMillis = sliceMillis
    return true
  }

  shouldYield(fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    return Scheduler.defaultScheduler.shouldYield(fiber)
  }

  /** Only the yield of a call that waits for a turn is scheduled here. */
  scheduleTask(task: Scheduler.Task): void {
    // the first to wait books the drain; later ones are taken by it (or by the drain it books in turn)
    if (this.queue.push(task) === 1) nextTurnOfLoop!(this.drain)
  }

  /** One slice's worth of the calls that waited, in order; the rest wait for the next turn. */
  private readonly drain = () => {
    // a slice this turn's I/O callbacks began goes on: the turn gets one slice in all
    if (this.sliceStart < 0) {
      this.sliceStart = performance.now()
      nextTurnOfLoop!(this.endSlice)
    }
    const slice = this.sliceMillis
    let i = 0
    try {
      while (i < this.queue.length && (i === 0 || performance.now() - this.sliceStart <= slice)) this.queue[i++]()
    } finally {
      // even if a task threw, what is left waits for the next turn rather than forever
      this.queue.splice(0, i)
      if (this.queue.length > 0) nextTurnOfLoop!(this.drain)
      else this.sliceMillis = Infinity
    }
  }
}

const slicer = globalValue("@sluice/openai/timeSlice", () => new TimeSliced())

/** Set inside a call that has entered: a call it makes (a router's, to the service) does not wait again. */
const entered = globalValue("@sluice/openai/timeSlice/entered", () => FiberRef.unsafeMake(false))

const nextTurn = Effect.withScheduler(Effect.yieldNow(), slicer)

/** The live clock's class: `Clock.make()` builds one of these, `TestClock` and scaled clocks are others. */
const LiveClock = Context.get(DefaultServices.liveServices, Clock.Clock).constructor

/** Whether `clock` reads real time (the live clock): only then is the host's event loop waited for. */
const isLive = (clock: Clock.Clock): boolean => clock.constructor === LiveClock

/**
 * Runs `self` as a call that shares the thread: when the current macrotask has been busy for longer than
 * `sliceMillis`, it first waits for a later turn of the event loop. `undefined`: no slicing. On a clock
 * other than the live one, it yields once through Effect's scheduler instead (deterministic).
 */
export const enter = <A, E, R>(sliceMillis: number | undefined, self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  sliceMillis === undefined ? self : Effect.flatMap(FiberRef.get(entered), (inside) =>
    inside ? self : Effect.locally(
      Effect.clockWith((clock) =>
        isLive(clock)
          ? Effect.suspend(() => slicer.exhausted(sliceMillis) ? Effect.zipRight(nextTurn, self) : self)
          : Effect.zipRight(Effect.yieldNow(), self)
      ),
      entered,
      true
    ))

/** The default slice. */
const DEFAULT_SLICE = Duration.millis(4)

/** An option's slice in milliseconds (`false`: `undefined`, no slicing). */
export const millisOf = (option: Duration.DurationInput | false | undefined): number | undefined =>
  option === false || nextTurnOfLoop === undefined
    ? undefined
    : Duration.toMillis(Duration.decode(option ?? DEFAULT_SLICE))
