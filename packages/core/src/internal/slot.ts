/**
 * A one-shot result one fiber waits for: what a `Deferred` does for a single waiter, at a fraction of its cost.
 * `Deferred.unsafeMake` copies Effect's whole prototype into every instance (an object spread), and the limiter
 * made one per pass of its dispatcher and one per waiter: tens of thousands in a simulated day.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"

/** @internal */
export interface Slot<A, E = never> {
  exit: Exit.Exit<A, E> | undefined
  resume: ((effect: Effect.Effect<A, E>) => void) | undefined
}

/** @internal */
export const make = <A, E = never>(): Slot<A, E> => ({ exit: undefined, resume: undefined })

/** Completes the slot (the first completion wins, as a `Deferred`'s) and wakes its waiter, if one waits. */
export const done = <A, E>(slot: Slot<A, E>, exit: Exit.Exit<A, E>): void => {
  if (slot.exit !== undefined) return
  slot.exit = exit
  const resume = slot.resume
  if (resume !== undefined) {
    slot.resume = undefined
    resume(exit)
  }
}

/**
 * Waits for the slot's result (at once if it has one); interruptible, as `Deferred.await`. One waiter at a time.
 * `onInterrupt`, if given, runs when the wait is interrupted (what `Effect.onInterrupt` around the wait would do,
 * without a second interruption handler: the wait's own is the one).
 */
export const wait = <A, E>(slot: Slot<A, E>, onInterrupt?: () => Effect.Effect<void>): Effect.Effect<A, E> =>
  Effect.async<A, E>((resume) => {
    if (slot.exit !== undefined) return resume(slot.exit)
    slot.resume = resume
    return Effect.suspend(() => {
      if (slot.resume === resume) slot.resume = undefined
      return onInterrupt === undefined ? Effect.void : onInterrupt()
    })
  })

/**
 * Waits for the slot's result, as `wait`, for a slot that only this fiber ever waits on and that is forgotten once
 * the wait is interrupted (the limiter's dispatcher's wake-up): without an interruption handler, which costs an
 * `onInterrupt` around every wait. An interrupted wait leaves its resume in the slot; a result given later calls
 * it, which does nothing (a fiber ignores the resume of an asynchronous step it was interrupted out of).
 */
export const waitOwned = <A, E>(slot: Slot<A, E>): Effect.Effect<A, E> =>
  Effect.async<A, E>((resume) => {
    if (slot.exit !== undefined) return resume(slot.exit)
    slot.resume = resume
  })
