/**
 * Pure retry decisions: backoff, jitter, floors, caps and deadlines. No effects here, so every
 * delay sequence can be checked with plain inputs (a clock reading and a uniform random number).
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import type * as Retry from "../Retry.js"

/** @internal */
export type Jitter = Retry.Jitter

/** @internal */
export type KindSettings = Retry.KindSettings

/** @internal */
export type Settings<E> = Retry.Settings<E>

/** @internal */
export interface State {
  readonly startedAt: number | undefined
  readonly retries: number
  readonly perKind: Readonly<Record<string, number>>
  readonly previousDelay: number | undefined
}

/** @internal */
export const initialState: State = { startedAt: undefined, retries: 0, perKind: {}, previousDelay: undefined }

/** @internal The reasons a policy stops on its own (the retry budget's `Budget` is decided outside it). */
export type StopReason = Exclude<Retry.StopReason, "Budget">

/** @internal */
export type Decision =
  | {
    readonly _tag: "Retry"
    readonly state: State
    readonly kind: string
    readonly attempt: number
    readonly delay: number
    readonly backoff: number
    readonly retryAfter: number | undefined
  }
  | {
    readonly _tag: "Stop"
    readonly reason: StopReason
    readonly kind: string
    /** the wait the next retry would have needed, when the reason is a time cap */
    readonly wait: number | undefined
  }

/** Exponential delay before jitter: `base × factor^n`, capped at `maxDelay`. @internal */
export const exponential = (settings: KindSettings, n: number): number =>
  Math.min(settings.maxDelay, settings.base * Math.pow(settings.factor, n))

/**
 * The backoff for the `n`-th retry (0-based) of a kind, given a uniform `u ∈ [0, 1)`.
 *
 * - `none`: the exponential delay.
 * - `full`: uniform in `[0, exponential]` ("full jitter").
 * - `decorrelated`: uniform in `[base, 3 × previous]`, capped at `maxDelay` ("decorrelated jitter").
 *
 * @internal
 */
export const backoff = (settings: KindSettings, n: number, previous: number | undefined, u: number): number => {
  switch (settings.jitter) {
    case "none":
      return exponential(settings, n)
    case "full":
      return u * exponential(settings, n)
    case "decorrelated": {
      const prev = previous === undefined ? settings.base : Math.max(previous, settings.base)
      const high = Math.max(settings.base, prev * 3)
      return Math.min(settings.maxDelay, settings.base + u * (high - settings.base))
    }
  }
}

/**
 * Decides what to do after `error`, at time `now` (milliseconds), with `u ∈ [0, 1)` for jitter and an
 * optional absolute `deadline` (milliseconds on the same clock). When a deadline is given it replaces
 * `maxElapsed` as the time cap.
 *
 * @internal
 */
export const decide = <E>(
  settings: Settings<E>,
  state: State,
  error: unknown,
  now: number,
  u: number,
  deadline: number | undefined
): Decision => {
  if (!settings.is(error)) return { _tag: "Stop", reason: "NotRetryable", kind: "unknown", wait: undefined }
  const kind = settings.kind(error)
  if (!settings.retryable(error)) return { _tag: "Stop", reason: "NotRetryable", kind, wait: undefined }
  const ks = Object.prototype.hasOwnProperty.call(settings.kinds, kind) ? settings.kinds[kind] : undefined
  if (ks === undefined) return { _tag: "Stop", reason: "NotConfigured", kind, wait: undefined }
  const n = state.perKind[kind] ?? 0
  if (n >= ks.maxRetries || state.retries >= settings.maxRetries) {
    return { _tag: "Stop", reason: "MaxRetries", kind, wait: undefined }
  }
  const startedAt = state.startedAt ?? now
  const previous = state.previousDelay
  const b = Math.max(0, backoff(ks, n, previous, u))
  const ra = ks.honorRetryAfter ? settings.retryAfter(error) : undefined
  const raMillis = ra === undefined ? undefined : Math.max(0, Duration.toMillis(ra))
  const delay = raMillis === undefined ? b : Math.max(b, raMillis)
  if (!Number.isFinite(delay)) {
    return { _tag: "Stop", reason: deadline === undefined ? "MaxElapsed" : "Deadline", kind, wait: delay }
  }
  if (deadline !== undefined) {
    if (now + delay > deadline) return { _tag: "Stop", reason: "Deadline", kind, wait: delay }
  } else if (now + delay - startedAt > settings.maxElapsed) {
    return { _tag: "Stop", reason: "MaxElapsed", kind, wait: delay }
  }
  return {
    _tag: "Retry",
    kind,
    attempt: state.retries + 1,
    delay,
    backoff: b,
    retryAfter: raMillis,
    state: {
      startedAt,
      retries: state.retries + 1,
      perKind: { ...state.perKind, [kind]: n + 1 },
      previousDelay: ks.jitter === "decorrelated" ? b : delay
    }
  }
}

/**
 * A sliding-window retry budget: over the last `window` milliseconds, retries may not exceed
 * `floor + ratio × first attempts`. Counts live in `slots` buckets, so memory is bounded.
 *
 * @internal
 */
export class BudgetWindow {
  private readonly firsts: Array<number>
  private readonly retries: Array<number>
  private readonly slotMillis: number
  private current = 0
  private currentSlot: number | undefined = undefined
  constructor(
    readonly window: number,
    readonly ratio: number,
    readonly floor: number,
    readonly slots: number
  ) {
    this.firsts = Array.from({ length: slots }, () => 0)
    this.retries = Array.from({ length: slots }, () => 0)
    this.slotMillis = Math.max(1, window / slots)
  }
  private advance(now: number): void {
    const slot = Math.floor(now / this.slotMillis)
    if (this.currentSlot === undefined) {
      this.currentSlot = slot
      return
    }
    const steps = slot - this.currentSlot
    if (steps <= 0) return
    const clear = Math.min(steps, this.slots)
    for (let i = 1; i <= clear; i++) {
      const idx = (this.current + i) % this.slots
      this.firsts[idx] = 0
      this.retries[idx] = 0
    }
    this.current = (this.current + steps) % this.slots
    this.currentSlot = slot
  }
  recordFirst(now: number): void {
    this.advance(now)
    this.firsts[this.current]++
  }
  tryRetry(now: number): boolean {
    this.advance(now)
    const firsts = this.firsts.reduce((a, b) => a + b, 0)
    const retries = this.retries.reduce((a, b) => a + b, 0)
    if (retries + 1 > this.floor + this.ratio * firsts) return false
    this.retries[this.current]++
    return true
  }
  snapshot(now: number): { readonly firstAttempts: number; readonly retries: number; readonly available: number } {
    this.advance(now)
    const firstAttempts = this.firsts.reduce((a, b) => a + b, 0)
    const retries = this.retries.reduce((a, b) => a + b, 0)
    return {
      firstAttempts,
      retries,
      available: Math.max(0, Math.floor(this.floor + this.ratio * firstAttempts - retries))
    }
  }
}
