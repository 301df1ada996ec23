/**
 * The circuit breaker state machine of one key, as plain synchronous code over a clock reading.
 *
 * @internal
 */

import type { State } from "../CircuitBreaker.js"

/** @internal */
export type Status = State

/** @internal */
export interface Settings {
  readonly consecutiveFailures: number | undefined
  readonly failureRate:
    | { readonly threshold: number; readonly window: number; readonly minimumCalls: number }
    | undefined
  readonly openFor: number
  readonly openBackoff: number
  readonly maxOpenFor: number
  readonly halfOpenProbes: number
  readonly successesToClose: number
}

/** @internal */
export interface Transition {
  readonly from: Status
  readonly to: Status
  readonly at: number
}

const SLOTS = 10

/** @internal */
export class KeyState {
  status: Status = "Closed"
  consecutive = 0
  openedAt = 0
  openUntil = 0
  opens = 0
  inFlight = 0
  probeSuccesses = 0
  private readonly successes: Array<number> = Array.from({ length: SLOTS }, () => 0)
  private readonly failures: Array<number> = Array.from({ length: SLOTS }, () => 0)
  private slot: number | undefined = undefined
  constructor(readonly settings: Settings) {}

  private advance(now: number): void {
    const rate = this.settings.failureRate
    if (rate === undefined) return
    const slot = Math.floor(now / Math.max(1, rate.window / SLOTS))
    if (this.slot === undefined) {
      this.slot = slot
      return
    }
    const steps = Math.min(SLOTS, slot - this.slot)
    for (let i = 1; i <= steps; i++) {
      this.successes[(slot - steps + i) % SLOTS] = 0
      this.failures[(slot - steps + i) % SLOTS] = 0
    }
    if (slot > this.slot) this.slot = slot
  }

  private record(now: number, failed: boolean): void {
    if (this.settings.failureRate === undefined) return
    this.advance(now)
    const idx = (this.slot ?? 0) % SLOTS
    if (failed) this.failures[idx]++
    else this.successes[idx]++
  }

  private clearWindow(): void {
    for (let i = 0; i < SLOTS; i++) {
      this.successes[i] = 0
      this.failures[i] = 0
    }
  }

  /** Calls and failures in the current window. */
  window(now: number): { readonly calls: number; readonly failures: number } {
    this.advance(now)
    const failures = this.failures.reduce((a, b) => a + b, 0)
    return { calls: failures + this.successes.reduce((a, b) => a + b, 0), failures }
  }

  private transition(to: Status, now: number, out: Array<Transition>): void {
    if (this.status === to) return
    out.push({ from: this.status, to, at: now })
    this.status = to
    switch (to) {
      case "Open": {
        const s = this.settings
        const duration = Math.min(s.maxOpenFor, s.openFor * Math.pow(s.openBackoff, this.opens))
        this.opens++
        this.openedAt = now
        this.openUntil = now + duration
        this.inFlight = 0
        this.probeSuccesses = 0
        break
      }
      case "HalfOpen": {
        this.inFlight = 0
        this.probeSuccesses = 0
        break
      }
      case "Closed": {
        this.opens = 0
        this.consecutive = 0
        this.inFlight = 0
        this.probeSuccesses = 0
        this.clearWindow()
        break
      }
    }
  }

  /** Moves an open breaker whose time has passed to half-open. */
  refresh(now: number, out: Array<Transition>): Status {
    if (this.status === "Open" && now >= this.openUntil) this.transition("HalfOpen", now, out)
    return this.status
  }

  /** Asks to run a call: `"call"` when closed, `"probe"` for a half-open probe, or `undefined` if refused. */
  acquire(now: number, out: Array<Transition>): "call" | "probe" | undefined {
    const status = this.refresh(now, out)
    if (status === "Closed") return "call"
    if (status === "HalfOpen" && this.inFlight < this.settings.halfOpenProbes) {
      this.inFlight++
      return "probe"
    }
    return undefined
  }

  onSuccess(now: number, permit: "call" | "probe", out: Array<Transition>): void {
    if (permit === "probe") {
      if (this.status !== "HalfOpen") return
      this.inFlight = Math.max(0, this.inFlight - 1)
      this.probeSuccesses++
      if (this.probeSuccesses >= this.settings.successesToClose) this.transition("Closed", now, out)
      return
    }
    if (this.status !== "Closed") return
    this.consecutive = 0
    this.record(now, false)
  }

  onFailure(now: number, permit: "call" | "probe", out: Array<Transition>): void {
    if (permit === "probe") {
      if (this.status !== "HalfOpen") return
      this.transition("Open", now, out)
      return
    }
    if (this.status !== "Closed") return
    this.consecutive++
    this.record(now, true)
    const s = this.settings
    if (s.consecutiveFailures !== undefined && this.consecutive >= s.consecutiveFailures) {
      this.transition("Open", now, out)
      return
    }
    if (s.failureRate !== undefined) {
      const w = this.window(now)
      if (w.calls >= s.failureRate.minimumCalls && w.failures / w.calls >= s.failureRate.threshold) {
        this.transition("Open", now, out)
      }
    }
  }

  /** A call that ended without counting (ignored error, interruption): frees its probe slot. */
  onIgnored(permit: "call" | "probe"): void {
    if (permit === "probe" && this.status === "HalfOpen") this.inFlight = Math.max(0, this.inFlight - 1)
  }

  /** Forces a state (administrative open or reset). */
  force(to: Status, now: number, out: Array<Transition>): void {
    if (to === "Open" && this.status === "Open") return
    this.transition(to, now, out)
  }
}
