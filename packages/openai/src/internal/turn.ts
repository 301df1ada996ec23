/**
 * Permits taken in turns, first come first served: a release hands what it frees to the longest waiting
 * callers, in order, and wakes only those it admits.
 *
 * Effect's `Semaphore` wakes every waiter at each release (each then checks the permit and, but for
 * one, waits again): with `n` callers queued behind one permit that is O(n) fibers resumed per release
 * and O(n²) over the queue. The adaptive pools' probe (see `OpenAi`) queues every call of a herd behind
 * it: 10,000 calls at once are about 5·10⁷ wake-ups, which ran a simulated day out of memory.
 *
 * By default one permit (a single holder). With a {@link Capacity}, up to `calls` holders whose weights (a
 * call's token estimate) sum to at most `weight`; when none hold, the queue's head goes whatever its weight.
 * The head waits for room and the callers behind it wait behind it (no overtaking); a head that leaves (gave up,
 * interrupted) lets those behind it go as far as they fit. `open` lifts the bound for good: every waiter is
 * admitted, in order.
 *
 * @internal
 */
import type * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"

interface Waiter {
  readonly weight: number
  /** When it came (`takeOr`'s `arrivedAt`), for {@link Turn.admitArrivedBy}. */
  readonly arrivedAt: number
  /** Handed the permit (out of the queue, resumed). */
  woken: boolean
  /** `takeOr`: the wait's outcome (true: handed the permit; false: gave up), kept until its fiber waits for it. */
  outcome: boolean | undefined
  resume: ((effect: Effect.Effect<boolean>) => void) | undefined
}

/** How many may hold at once, and the most their weights may sum to (the first holder is admitted alone). */
export interface Capacity {
  readonly calls: number
  readonly weight: number
}

/** Permits taken in turns (FIFO); `release` hands what it frees to the next waiters, or frees it. */
export interface Turn {
  /**
   * Waits for the permit. A waiter interrupted once it was handed the permit, before it took it, passes
   * it on. As with any permit, a caller interrupted after `take` succeeded must release it.
   */
  readonly take: Effect.Effect<void>
  /**
   * Waits for the permit (true) unless `giveUp` completes first (false; the caller is then out of the queue), as
   * a race of `take` and `giveUp` would, with one fiber (for `giveUp`) instead of two and a race: a herd of
   * 10,000 calls queued behind the probe raced each. `giveUp` is interrupted once the permit is handed over
   * first; a caller interrupted while it waits leaves the queue, or passes the permit on if it was handed it.
   */
  readonly takeOr: <E, R>(
    giveUp: Effect.Effect<void, E, R>,
    weight?: number,
    arrivedAt?: number
  ) => Effect.Effect<boolean, E, R>
  /**
   * Gives a permit back (of the weight it was taken with, 0 by default): to the longest waiting callers that then
   * fit, else it is free. Only its holder calls it, exactly once, with the weight it took.
   */
  readonly release: (weight?: number) => Effect.Effect<void>
  /** Lifts the capacity for good: every waiter is handed a permit, in order, and every later caller at once. */
  readonly open: Effect.Effect<void>
  /**
   * Hands a permit, in the queue's order and whatever the capacity, to every waiter that came (`takeOr`'s
   * `arrivedAt`) at or before `cutoff`: the waiters whose own patience ran out at once go in the order they came, not
   * in the order their timers fire (Effect's TestClock fires the sleeps due at one instant last-scheduled first).
   */
  readonly admitArrivedBy: (cutoff: number) => Effect.Effect<void>
  /** How many wait. */
  readonly waiting: () => number
}

const succeedTrue = Effect.succeed(true)
const succeedFalse = Effect.succeed(false)

/** Makes a free {@link Turn}: one permit, or the {@link Capacity} given. */
export const make = (capacity: Capacity = { calls: 1, weight: Number.POSITIVE_INFINITY }): Turn => {
  let opened = false
  let holders = 0
  let held = 0
  // a Set iterates in insertion order: the first is the longest waiting
  const waiters = new Set<Waiter>()
  const fits = (weight: number) =>
    opened || holders === 0 || (holders < capacity.calls && held + weight <= capacity.weight)
  const grant = (weight: number) => {
    holders++
    held += weight
  }
  /** The permit goes to a waiter as it is (held for it): out of the queue, resumed. */
  const handTo = (waiter: Waiter) => {
    grant(waiter.weight)
    waiters.delete(waiter)
    waiter.woken = true
    settle(waiter, true)
  }
  const handOn = () => {
    for (const next of waiters) {
      if (!fits(next.weight)) return
      handTo(next)
    }
  }
  const free = (weight: number) => {
    holders--
    held -= weight
    handOn()
  }
  /**
   * A waiter out of the queue (interrupted, or it gave up): one handed a permit passes it on; one still waiting
   * leaves, and the callers behind it that now fit go (it may have been the head that did not fit).
   */
  const leave = (waiter: Waiter) => {
    if (waiter.woken) free(waiter.weight)
    else if (waiters.delete(waiter)) handOn()
  }
  const settle = (waiter: Waiter, outcome: boolean) => {
    if (waiter.outcome !== undefined) return
    waiter.outcome = outcome
    const resume = waiter.resume
    waiter.resume = undefined
    resume?.(outcome ? succeedTrue : succeedFalse)
  }
  /** Granted at once when none wait and it fits (true); else in the queue now, in the caller's order. */
  const arrive = (weight: number, arrivedAt = Number.POSITIVE_INFINITY): Waiter | true => {
    if (waiters.size === 0 && fits(weight)) {
      grant(weight)
      return true
    }
    const waiter: Waiter = { weight, arrivedAt, woken: false, outcome: undefined, resume: undefined }
    waiters.add(waiter)
    return waiter
  }
  return {
    take: Effect.suspend(() => {
      const waiter = arrive(0)
      if (waiter === true) return Effect.void
      return Effect.onInterrupt(
        Effect.asVoid(Effect.async<boolean>((resume) => {
          if (waiter.outcome !== undefined) return resume(succeedTrue)
          waiter.resume = resume
          return Effect.sync(() => {
            waiter.resume = undefined
          })
        })),
        () => Effect.sync(() => leave(waiter))
      )
    }),
    takeOr: <E, R>(giveUp: Effect.Effect<void, E, R>, weight = 0, arrivedAt?: number): Effect.Effect<boolean, E, R> =>
      Effect.suspend(() => {
        const waiter = arrive(weight, arrivedAt)
        if (waiter === true) return succeedTrue
        let failed: Cause.Cause<E> | undefined
        // out of the queue on `giveUp`, the callers behind it not yet let go: its own fiber lets them go once it
        // runs (or is interrupted), so that it goes on before them, in its order
        let handOff = false
        const handingOff = () => {
          if (!handOff) return
          handOff = false
          handOn()
        }
        // `giveUp` done first (or failed): out of the queue, and the caller is told
        const impatient = Effect.onExit(giveUp, (exit) =>
          Effect.sync(() => {
            if (!waiters.delete(waiter)) return
            if (Exit.isFailure(exit)) failed = exit.cause
            handOff = true
            settle(waiter, false)
          }))
        const wait = Effect.async<boolean>((resume) => {
          if (waiter.outcome !== undefined) return resume(waiter.outcome ? succeedTrue : succeedFalse)
          waiter.resume = resume
          return Effect.sync(() => {
            waiter.resume = undefined
          })
        })
        return Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(Effect.fork(restore(impatient)), (timer) =>
            Effect.fiberIdWith((self) => {
              const stop = () => {
                if (timer.unsafePoll() === null) timer.unsafeInterruptAsFork(self)
              }
              return Effect.flatMap(
                Effect.onInterrupt(restore(wait), () =>
                  Effect.sync(() => {
                    stop()
                    if (handOff) handingOff()
                    else leave(waiter)
                  })),
                (mine) => {
                  if (mine) {
                    stop()
                    return succeedTrue
                  }
                  handingOff()
                  return failed !== undefined ? Effect.failCause(failed) : succeedFalse
                }
              )
            }))
        )
      }),
    release: (weight = 0) => Effect.sync(() => free(weight)),
    open: Effect.sync(() => {
      opened = true
      handOn()
    }),
    admitArrivedBy: (cutoff) =>
      Effect.sync(() => {
        for (const next of waiters) if (next.arrivedAt <= cutoff) handTo(next)
      }),
    waiting: () => waiters.size
  }
}
