/**
 * Runs an effect, or a Promise-returning function, to completion under `TestClock`, moving virtual time
 * only as far as the run needs: once everything in flight has settled, the clock jumps to the earliest
 * pending sleep (never a fixed step, so it cannot overshoot a deadline or a timeout), wakes what was due,
 * and settles again — until the run is done. Sleeps scheduled after any jump (a call admitted later, a
 * retry's back-off) are taken as they come, so one call drives a whole run where one `TestClock.adjust`
 * would leave it stuck half-way.
 *
 * The run is deterministic: what runs at each virtual instant, and in what order, does not depend on the
 * machine's speed, and Effect's `Random` is seeded. A run that can never finish fails with a typed error
 * naming what still waits: {@link Stuck} (fibers suspended with no pending sleep to wake them) or
 * {@link DeadlineReached} (the virtual deadline came first; the clock then reads the deadline exactly).
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Schema from "effect/Schema"
import * as internal from "./internal/virtualTime.js"

const Waiting = Schema.Struct({
  /** The fiber, e.g. `#12`. */
  fiber: Schema.String,
  /** What it does, e.g. `suspended, waiting on something outside Effect (a promise, a callback)`. */
  status: Schema.String
})

const waitingLines = (waiting: ReadonlyArray<{ readonly fiber: string; readonly status: string }>) =>
  waiting.length === 0 ? "" : `\n${waiting.map((w) => `  fiber ${w.fiber}: ${w.status}`).join("\n")}`

/**
 * The run cannot finish: its fibers are suspended and no sleep is pending to wake them (a promise that never
 * settles, a queue nobody offers to, a real-time timer under `TestClock`). `waiting` names the fibers still
 * alive (the run's own and those it forked).
 *
 * @since 0.1.0
 * @category errors
 */
export class Stuck extends Schema.TaggedError<Stuck>("@sluice/testing/VirtualTime/Stuck")("Stuck", {
  /** Virtual milliseconds since the run started. */
  atMillis: Schema.Number,
  waiting: Schema.Array(Waiting)
}) {
  override get message(): string {
    return `the run cannot finish: at ${this.atMillis} ms of virtual time its fibers are suspended and no sleep is pending${
      waitingLines(this.waiting)
    }`
  }
}

/**
 * The virtual deadline came before the run finished: the clock reads the deadline exactly, and the run was
 * interrupted. `nextSleepAtMillis` is when the earliest pending sleep was due.
 *
 * @since 0.1.0
 * @category errors
 */
export class DeadlineReached
  extends Schema.TaggedError<DeadlineReached>("@sluice/testing/VirtualTime/DeadlineReached")("DeadlineReached", {
    deadlineMillis: Schema.Number,
    nextSleepAtMillis: Schema.optional(Schema.Number),
    pendingSleeps: Schema.Number,
    waiting: Schema.Array(Waiting)
  })
{
  override get message(): string {
    return `the run did not finish by its virtual deadline (${
      Duration.format(Duration.millis(this.deadlineMillis))
    }): ${this.pendingSleeps} sleep(s) pending, the earliest due at ${this.nextSleepAtMillis} ms${
      waitingLines(this.waiting)
    }`
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export declare namespace VirtualTime {
  /**
   * @since 0.1.0
   * @category models
   */
  export interface Options {
    /** How much virtual time the run may take (default 30 days): past it, {@link DeadlineReached}. */
    readonly deadline?: Duration.DurationInput | undefined
    /** The seed of Effect's `Random` in the run (retry jitter); default `"sluice"`. */
    readonly seed?: string | number | undefined
  }
}

const resolve = (options: VirtualTime.Options | undefined): internal.Resolved => ({
  deadlineMillis: Duration.toMillis(Duration.decode(options?.deadline ?? internal.DEFAULT_DEADLINE)),
  seed: options?.seed ?? "sluice"
})

/**
 * Runs `self` to completion in virtual time (see the module's description). Needs `TestClock` (`it.effect`
 * provides it). The clock is left where the run ended, so `Clock.currentTimeMillis` (or `Simulator.elapsed`)
 * tells how long it took.
 *
 * @since 0.1.0
 * @category running
 * @example
 * ```ts
 * import { expect, it } from "@effect/vitest"
 * import * as Effect from "effect/Effect"
 * import { VirtualTime } from "@sluice/testing"
 *
 * it.effect("a day goes by in no time", () =>
 *   Effect.gen(function*() {
 *     const value = yield* VirtualTime.run(Effect.as(Effect.sleep("1 day"), 42))
 *     expect(value).toBe(42)
 *   }))
 * ```
 */
export const run: {
  (
    options?: VirtualTime.Options
  ): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | Stuck | DeadlineReached, R>
  <A, E, R>(
    self: Effect.Effect<A, E, R>,
    options?: VirtualTime.Options
  ): Effect.Effect<A, E | Stuck | DeadlineReached, R>
} = dual(
  (args) => Effect.isEffect(args[0]),
  <A, E, R>(self: Effect.Effect<A, E, R>, options?: VirtualTime.Options) =>
    Effect.flatMap(internal.drive(self, resolve(options)), (ended): Effect.Effect<A, E | Stuck | DeadlineReached> => {
      switch (ended._tag) {
        case "Stuck":
          return new Stuck({ atMillis: ended.at, waiting: ended.waiting })
        case "Deadline":
          return new DeadlineReached({
            deadlineMillis: ended.deadlineMillis,
            ...(ended.nextSleepAt === undefined ? {} : { nextSleepAtMillis: ended.nextSleepAt }),
            pendingSleeps: ended.pendingSleeps,
            waiting: ended.waiting
          })
        default:
          return ended
      }
    })
)

/**
 * {@link run} for plain Promise code (an application on `wrapOpenAI`): calls `f` and drives virtual time
 * until its promise settles. A rejection fails with `UnknownException` (the reason in `error`). Give the
 * wrapper the test's runtime (`wrapOpenAI(client, { runtime: yield* Effect.runtime<never>() })`) so
 * `TestClock` drives its waits.
 *
 * @since 0.1.0
 * @category running
 * @example
 * ```ts
 * import { it } from "@effect/vitest"
 * import * as Effect from "effect/Effect"
 * import { VirtualTime } from "@sluice/testing"
 *
 * declare const app: () => Promise<Array<string>>
 *
 * it.effect("the app finishes", () =>
 *   Effect.gen(function*() {
 *     const summaries = yield* VirtualTime.runPromise(app)
 *   }))
 * ```
 */
export const runPromise = <A>(
  f: () => PromiseLike<A>,
  options?: VirtualTime.Options
): Effect.Effect<A, Cause.UnknownException | Stuck | DeadlineReached> =>
  run(Effect.tryPromise(() => Promise.resolve(f())), options)
