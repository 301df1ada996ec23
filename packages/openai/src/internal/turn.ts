/**
 * A single permit taken in turns, first come first served: a release hands the permit to the longest
 * waiting caller and wakes only that one.
 *
 * Effect's `Semaphore` wakes every waiter at each release (each then checks the permit and, but for
 * one, waits again): with `n` callers queued behind one permit that is O(n) fibers resumed per release
 * and O(n²) over the queue. The adaptive pools' probe (see `OpenAi`) queues every call of a herd behind
 * it: 10,000 calls at once are about 5·10⁷ wake-ups, which ran a simulated day out of memory.
 *
 * @internal
 */
import type * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"

interface Waiter {
  /** Handed the permit (out of the queue, resumed). */
  woken: boolean
  /** `takeOr`: the wait's outcome (true: handed the permit; false: gave up), kept until its fiber waits for it. */
  outcome: boolean | undefined
  resume: ((effect: Effect.Effect<boolean>) => void) | undefined
}

/** A permit taken in turns (FIFO); `release` hands it to the next waiter, or frees it. */
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
  readonly takeOr: <E, R>(giveUp: Effect.Effect<void, E, R>) => Effect.Effect<boolean, E, R>
  /** Gives the permit back: to the longest waiting caller, if any, else it is free. Only its holder calls it. */
  readonly release: Effect.Effect<void>
  /** How many wait. */
  readonly waiting: () => number
}

const succeedTrue = Effect.succeed(true)
const succeedFalse = Effect.succeed(false)

/** Makes a free {@link Turn}. */
export const make = (): Turn => {
  let held = false
  // a Set iterates in insertion order: the first is the longest waiting
  const waiters = new Set<Waiter>()
  const handOn = () => {
    const next = waiters.values().next()
    if (next.done === true) {
      held = false
      return
    }
    // the permit goes to the waiter as it is (still held)
    waiters.delete(next.value)
    next.value.woken = true
    settle(next.value, true)
  }
  const settle = (waiter: Waiter, outcome: boolean) => {
    if (waiter.outcome !== undefined) return
    waiter.outcome = outcome
    const resume = waiter.resume
    waiter.resume = undefined
    resume?.(outcome ? succeedTrue : succeedFalse)
  }
  return {
    take: Effect.suspend(() => {
      if (!held) {
        held = true
        return Effect.void
      }
      const waiter: Waiter = { woken: false, outcome: undefined, resume: undefined }
      return Effect.onInterrupt(
        Effect.asVoid(Effect.async<boolean>((resume) => {
          waiter.resume = resume
          waiters.add(waiter)
        })),
        () =>
          Effect.sync(() => {
            if (waiter.woken) handOn()
            else waiters.delete(waiter)
          })
      )
    }),
    takeOr: <E, R>(giveUp: Effect.Effect<void, E, R>): Effect.Effect<boolean, E, R> =>
      Effect.suspend(() => {
        if (!held) {
          held = true
          return succeedTrue
        }
        // in the queue now, in the caller's order
        const waiter: Waiter = { woken: false, outcome: undefined, resume: undefined }
        waiters.add(waiter)
        let failed: Cause.Cause<E> | undefined
        // `giveUp` done first (or failed): out of the queue, and the caller is told
        const impatient = Effect.onExit(giveUp, (exit) =>
          Effect.sync(() => {
            if (!waiters.delete(waiter)) return
            if (Exit.isFailure(exit)) failed = exit.cause
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
                    if (waiter.woken) handOn()
                    else waiters.delete(waiter)
                  })),
                (mine) => {
                  if (mine) {
                    stop()
                    return succeedTrue
                  }
                  return failed !== undefined ? Effect.failCause(failed) : succeedFalse
                }
              )
            }))
        )
      }),
    release: Effect.sync(handOn),
    waiting: () => waiters.size
  }
}
