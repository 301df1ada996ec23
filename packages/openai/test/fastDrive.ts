/**
 * A faster `drive` for the long virtual-time runs of the learning tests. The driven effect runs on a
 * scheduler that only ever yields through microtasks (Effect's default one falls back to a `setTimeout`
 * after 2,048 ticks in a row), and nothing else in the run schedules a timer (the simulator's `fetch`
 * answers through promises; `timeSlice: false`), so one `setImmediate` turn lets every piece of work in
 * flight run until it waits again: the TestClock moves once three such turns change nothing. A timer turn
 * (a millisecond or more, far longer on a loaded machine) is never needed.
 */
import { expect } from "@effect/vitest"
import { OpenAi } from "@sluice/openai"
import { type SimStats, Simulator } from "@sluice/testing"
import { Chunk, Effect, Exit, type Layer, Scheduler, TestClock } from "effect"
import type { ChatCompletionCreateParamsNonStreaming } from "openai/resources/chat/completions"
import { driveWith } from "./harness.js"

const immediate = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
const microtasksOnly = new Scheduler.MixedScheduler(Number.MAX_SAFE_INTEGER)

const fingerprint = Effect.map(
  TestClock.sleeps(),
  (sleeps) => `${Chunk.size(sleeps)}:${Chunk.reduce(sleeps, 0, (a, b) => a + b)}`
)

/** Settles: the pending sleeps unchanged over three immediate turns. */
const settle = Effect.gen(function*() {
  let last = yield* fingerprint
  let stable = 0
  while (stable < 3) {
    yield* immediate
    const now = yield* fingerprint
    if (now === last) stable++
    else {
      stable = 0
      last = now
    }
  }
})

/** Runs `effect` while virtual time advances to each next pending sleep; returns its exit and end time. */
export const fastDrive = <A, E, R>(effect: Effect.Effect<A, E, R>, maxStepMillis = 1_000) =>
  driveWith(effect, maxStepMillis, settle, Effect.withScheduler(microtasksOnly))

/**
 * Sends every chat call of `batch` at once through the `OpenAi` service of `layer` (virtual time, {@link fastDrive}),
 * checks they all succeeded, and returns when the run ended and the simulator's stats.
 */
export const fastBatch = (
  layer: Layer.Layer<OpenAi.OpenAi>,
  batch: ReadonlyArray<ChatCompletionCreateParamsNonStreaming>
): Effect.Effect<{ readonly endedAt: number; readonly stats: SimStats.Snapshot }, never, Simulator.Simulator> =>
  Effect.gen(function*() {
    const { endedAt, exit } = yield* Effect.flatMap(
      OpenAi.OpenAi,
      (openai) =>
        fastDrive(
          Effect.forEach(batch, (params) => openai.chat.completions.create(params), { concurrency: "unbounded" })
        )
    )
      .pipe(Effect.provide(layer))
    expect(Exit.isSuccess(exit)).toBe(true)
    return { endedAt, stats: yield* Simulator.stats }
  })
