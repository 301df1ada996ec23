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
import * as Effect from "effect/Effect"

interface Waiter {
  /** Handed the permit (out of the queue, resumed). */
  woken: boolean
  resume: ((effect: Effect.Effect<void>) => void) | undefined
}

/** A permit taken in turns (FIFO); `release` hands it to the next waiter, or frees it. */
export interface Turn {
  /**
   * Waits for the permit. A waiter interrupted once it was handed the permit, before it took it, passes
   * it on. As with any permit, a caller interrupted after `take` succeeded must release it.
   */
  readonly take: Effect.Effect<void>
  /** Gives the permit back: to the longest waiting caller, if any, else it is free. Only its holder calls it. */
  readonly release: Effect.Effect<void>
  /** How many wait. */
  readonly waiting: () => number
}

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
    next.value.resume?.(Effect.void)
  }
  return {
    take: Effect.suspend(() => {
      if (!held) {
        held = true
        return Effect.void
      }
      const waiter: Waiter = { woken: false, resume: undefined }
      return Effect.onInterrupt(
        Effect.async<void>((resume) => {
          waiter.resume = resume
          waiters.add(waiter)
        }),
        () =>
          Effect.sync(() => {
            if (waiter.woken) handOn()
            else waiters.delete(waiter)
          })
      )
    }),
    release: Effect.sync(handOn),
    waiting: () => waiters.size
  }
}
