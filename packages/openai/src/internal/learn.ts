/**
 * Learning what the server enforces but does not announce (a burst also on a pool whose limits are
 * configured; the rest on a pool whose limits are learned):
 *
 * - **Burst capacity** (a limit enforced over a shorter period than announced: 60,000 TPM taken as 1,000
 *   a second), on learned and configured limits alike (a configured amount stands, but a bucket the server
 *   proved smaller is honoured): a 429 arrives while the announced bucket had room for the call (its message's `Used` plus
 *   `Requested` is within `Limit`). The bucket that refused holds `Requested − hint × rate` (the "try again
 *   in" hint at the limit's refill rate) and has lost at most what the announced bucket lost (`Used`), so
 *   its capacity is at most their sum: that upper bound (the least seen) becomes the learned limit's burst.
 *   One such 429 usually teaches it exactly. A call larger than the burst waits, as at the server, for the
 *   bucket to be full and takes it into debt (see `RateLimiter`: a learned burst).
 *   Until a pool has seen a 429, the herd that follows its first answer is let out over a ramp (the
 *   first 1/64 of its learned limits at once, the amount doubling every 650 ms, all of it after 3.9 s:
 *   never less than the limits refill, so no time is lost when the herd is larger than the bucket)
 *   rather than in one instant: a 429 takes a round trip to come back, so a bucket smaller than announced
 *   is found by the first calls that overflow it, not by the whole herd. A pool with configured limits gets
 *   the same ramp from its first admission (`firstContactRamp`, see {@link make}), a call going while what was
 *   let out is within it (whatever the call's size: the herd's calls never wait while the buckets sit full).
 *   Both ramps are in the limiter
 *   (`RateLimiter.Service.ramp`): a call they hold waits in its queue (in order, within its deadline,
 *   failing at once when its organization closes, counted as waiting).
 * - **Limits without headers** (a server or proxy that sends no `x-ratelimit-*`): the pool starts at the
 *   cautious adaptive limits and lets calls out over a ramp that doubles every 64 round trips of a 429 (an
 *   answer's round trip less the server's `openai-processing-ms`, within 400 ms and 16 s; without it, 4 round
 *   trips of the answer within 400 ms and 3.2 s, so a slow model slows the probe no further: a 429 takes a round
 *   trip to come back, and what the ramp lets out meanwhile is refused too), the round trips of its latest sends
 *   as their answers come (the herd's own queue slows it, see `repaced`), its learned limits growing ahead of
 *   it (a limit that grows gains the room it grew by), until the server pushes back; a ramp that ran more than a
 *   doubling ahead of the calls starts again from the last minute's sends (a slow start in the calls too).
 *   The 429's message names the limit ("Limit 600, Used 598"): the pool takes it and what is left, and that
 *   dimension stops probing. A 429 that names no limit sets it to what the pool's sends prove the server
 *   takes (see `accepted`), never to what the ramp allowed, a guess that never forbids a call: it is never
 *   below the largest call asked of it, and a larger call later raises it to its cost (it waits for a full
 *   bucket, as at the server, which takes any call within its limit; one beyond it, the server refuses). A
 *   guess grows back while busy and is cut again by a 429 for a call sent after it (see `REGROW`).
 *
 * - **The first answer** (the adaptive mode: a pool with no configured limit): the pool's first calls go as
 *   probes (up to 8 at once, within a quarter of the cautious limits, {@link Learner.probed}), and the herd is
 *   admitted once the first answer's `x-ratelimit-*` headers have taught the pool its real limits; an answer
 *   without them starts the pool at the cautious limits.
 *
 * What is learned is in the limiter (the learned limits and their bursts show in `snapshot`), in the
 * `sluice_openai_learned` gauge, and in {@link Learner.describe}.
 *
 * @internal
 */
import type { Budget, RateLimiter } from "@sluice/core"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Metric from "effect/Metric"
import type * as Errors from "../OpenAiError.js"
import * as Turn from "./turn.js"

/**
 * The ramps: the first-contact one (after a first answer that announced the limits; on a configured pool, from its
 * first admission, see `contact`) lets out 1/64 of them at
 * once and doubles every `FIRST_DOUBLING_MILLIS` (all of it after six doublings, 3.9 s); the blind one (no
 * headers) starts from the cautious limits and doubles every few round trips (see {@link ROUND_TRIPS}) until a 429
 * stops it.
 *
 * The first-contact ramp's pace: what it lets out by `t` is `S(t) = s · 2^(t / D)` of a limit `L` a minute,
 * from `s = L / 64`. With `D = ln 2 · s / (L / 60 s)` (650 ms), `S(t) = s · e^(t · rate / s) ≥ s + rate · t`:
 * it lets out at least what the limit refills, so the server's bucket is never left full and no refill is
 * lost — a herd larger than the bucket finishes when it would have with everything sent at once, and only a
 * herd that fits whole waits for the ramp (at most 3.9 s). A faster ramp gains only there, and blinds the
 * client: a 429 takes a round trip to come back (the network, and the queue the herd itself makes: 400 calls
 * released at once reached a loaded loopback simulator over 3–4 s), and what the ramp lets out meanwhile is
 * refused too. At 25 ms a doubling (the earlier pace) the whole herd was out in 150 ms, long before the first
 * 429 of a sub-minute bucket was read: 38% of the attempts were 429s in real time, none in virtual time. At
 * 650 ms a round trip of `R` lets out `2^(R / D) − 1` more than the bucket held: 5% at 50 ms.
 */
const FIRST_START = 1 / 64
const FIRST_DOUBLING_MILLIS = Math.LN2 * FIRST_START * 60_000
const BLIND_DOUBLING_MILLIS = 400
/**
 * The blind ramp doubles at most once every `ROUND_TRIPS` of the pool's answer round trip (see {@link doublingOf}),
 * and, when only answers' round trips are known, at least once every `SLOWEST_DOUBLING_MILLIS` however slow its
 * answers (with the server's time on them, `SLOWEST_NETWORK_DOUBLING_MILLIS`: below). A slow start in answers, as TCP's
 * (a window that grows by what is acknowledged) is paced by the round trip: when the server's bucket runs out, the
 * first 429 is read a round trip after the call it refused left, and the ramp has let out `2^(R / D) − 1` more
 * than the bucket held by then (`R` the round trip, `D` the doubling): at 400 ms a doubling behind a 1 s round
 * trip, 4.7 times it (202 × 429 in 602 attempts in the test), at 4 round trips 19% (11 in 411). A round trip is
 * measured from the answers, which a slow model makes slow while its 429s come back at once: the bound keeps a
 * 30 s answer from making the probe crawl (doubling every 3.2 s, 10× the cautious limits in 11 s). A window in
 * answers (never more out unanswered than a multiple of what was answered) would be the same pace with the same
 * need for a bound (a slow model's answers come late), and could only hold calls outside the limiter's queue.
 *
 * An answer that says the server's own time on it (`openai-processing-ms`, which OpenAI sends with every answer)
 * gives the round trip a 429 takes: the answer's less that time (the network both ways and the client's delays in
 * reading; a 429 does not wait for the model). That round trip is far shorter than an answer's (4 ms against 1–3 s
 * on a loopback server with a model's latency), so the ramp doubles every `NETWORK_ROUND_TRIPS` of it: what it
 * lets out over one round trip after the bucket ran out is then `ln 2 / NETWORK_ROUND_TRIPS` (1.1%) of what it let
 * out in all, the share of a herd the first 429 cannot stop. At 32 round trips that share was 2.2%, above the 2%
 * the learned rows aim at, and over loopback HTTP (`pnpm bench:cli --shapes no-headers`, 650 calls, an idle machine)
 * the 429s came as one burst of 13-22 calls sent within 30 ms as the server's bucket ran out (14-29 x 429, 2.1-4.3% of
 * the attempts, in five runs): the client read the first 429 some 30 ms after it was sent (its own event loop,
 * sending 150-200 calls a second), about its network round trip. At 64: 1-6 x 429 in eight runs (0.2-0.9%), the same
 * ratio (1.028-1.033 after start-up; 1.026-1.031 at 32). That share is the only brake: the probed limits grow
 * ahead of the ramp with the room they grow by (see {@link fit}), so the limiter's buckets let out what the ramp
 * does. The 3.2 s bound is not applied to it (a model does not slow it, and a 429 does take the network's round
 * trip to come back: at 3.2 s a doubling behind a 1 s round trip, 24% of what was let out is refused, 55 × 429 in
 * 455 attempts in the test); `SLOWEST_NETWORK_DOUBLING_MILLIS` only keeps a network slower than a 250 ms round trip
 * from making it crawl (10× the cautious limits in 53 s; a herd larger than the server's bucket loses nothing to
 * it while the ramp lets out more than the bucket refills, as the bucket is then never full).
 *
 * The round trip is the one of the latest sends, not the probe's: over loopback HTTP the probe's is a few ms, while
 * a herd makes its own queue (the client's CPU, the connections, the server), and a 429 sent into it came back 2–5 s
 * later in the benchmark (load 9), after the ramp, paced by the probe, had let the rest of the herd out. So the ramp
 * takes the pace of its latest sends' answers as they come (see {@link repaced}), slowing as the queue grows and
 * speeding up as it drains; but no slower than `SLOWEST_DOUBLING_MILLIS` unless the probe's path was already
 * slower (a queue drains once the ramp slows, while a pace of 32 queued round trips, then, let out less than the server
 * refilled: ×1.7 its minimum at load 13, with 0 × 429).
 */
const ROUND_TRIPS = 4
const NETWORK_ROUND_TRIPS = 64
const SLOWEST_DOUBLING_MILLIS = 3_200
const SLOWEST_NETWORK_DOUBLING_MILLIS = 16_000
/** How far back the answers' round trips are looked at. */
const ROUND_TRIP_MILLIS = 10_000
/** The blind ramp's pace is the slowest of the answers to this many of its latest sends (see {@link doublingOf}). */
const RECENT_ANSWERS = 5
/** …and of every answer read over this long: the ramp speeds up only once its slow answers are this old. */
const PACE_MEMORY_MILLIS = 2_000
/** A blind ramp takes a new pace when the answers' differs from its own by more than this factor. */
const REPACE = 1.25
/** A probed limit (no headers) is this much above what the ramp lets out by the call's turn. */
const GROWTH = 1.25
/**
 * How far back a blind pool's sends are kept to estimate its limits from (see {@link accepted}): windows
 * longer than this are not looked at.
 */
const HISTORY_MILLIS = 300_000
/**
 * A guessed limit refused again (a 429 for a call sent after the last cut) when what was sent does not prove it
 * too high (a bucket smaller than the minute's): cut by this factor.
 */
const RECUT = 0.9
/**
 * A guess is a lower bound of what the server takes (see {@link accepted}), tight against a bucket of a minute but
 * not against a smaller one (a bucket of 5 s of a limit proves a twelfth of it a minute): a guess the pool's calls
 * keep using (at least `BUSY` of it over the last minute) and that no 429 refused over `REGROW_MILLIS` grows by
 * `REGROW` (without the room it grew by: the rate grows, not the burst), until a 429 cuts it again, back to what
 * it was before it grew (it held) unless the sends prove more. Each growth a 429 undid doubles the wait before
 * the next one (a guess at the limit stops probing above it); one that held resets it.
 */
const REGROW = 2
const REGROW_MILLIS = 5_000
const BUSY = 0.75
/**
 * The probes: before a pool's first answer, at most `PROBES` of its calls are in flight, whose estimates sum to at
 * most `PROBE_SHARE` of the cautious tokens a minute (the first goes whatever its size), and no more calls than
 * that share of the cautious requests allows (at least one). The herd waits for the first answer, which comes
 * from the quickest of them: with one probe it came after that call's whole latency (2.5 s of a 22 s run of
 * mixed calls, where the server's bucket stayed full and its refill was lost); the quickest of eight is sooner.
 * The bound keeps them within what the pool is let out blind anyway (the cautious limits, after
 * {@link PROBE_PATIENCE}): a quarter of them, 5,000 tokens by default, so a server below them refuses at most
 * the few probes, whose 429s then teach the pool as a first answer does. Measured over HTTP (`pnpm bench:openai`,
 * learned rows, idle machine): mixed 1.13x -> 1.04x, sub-minute 1.16x -> 1.07x, no headers 1.16x -> 1.06x; an eighth (2,500
 * tokens, four or five of those calls) gave 1.07x, 1.10x, 1.10x. The cost: a bucket smaller than the probes (5 s
 * of 30,000 TPM, 2,500 tokens) refuses one or two of them where one probe alone met no 429 or one.
 */
const PROBES = 8
const PROBE_SHARE = 1 / 4
/**
 * How long calls wait for a pool's first answer before they probe its limits without it (a slow start from
 * the cautious limits: a server that does announce its limits is then found by 429s, so not too soon).
 */
const PROBE_PATIENCE = Duration.seconds(10)

type Dimension = "requests" | "tokens"

/** The per-minute learned limits' gauge: `kind` is `limit` or `burst`. */
const learnedGauge = Metric.gauge("sluice_openai_learned", {
  description: "What the OpenAi service learned of a pool's limits that the server does not announce"
})

/** What the learner found out about one pool and dimension. */
export interface Learned {
  readonly scope: string
  readonly dimension: Dimension
  /** `burst`: a capacity below the announced limit; `limit`: a limit found without headers. */
  readonly kind: "burst" | "limit"
  readonly amount: number
  /** The 429s it took (the pool's 429s on this dimension until it was learned). */
  readonly after: number
}

/**
 * A pool's ramp, as started in the limiter (which holds the calls): by `t` ms after `startedAt`, at most
 * `start × 2^(t / doubling)` of a dimension in all. A dimension leaves the ramp on its first 429; the ramp ends
 * when none is left (or, for the first-contact ramp, once it has reached the limits). `given` (the blind ramp's
 * calls so far, in the order they came) tells how far ahead of a call's turn its probed limits must grow.
 */
interface Ramp {
  startedAt: number
  doublingMillis: number
  /** Per dimension still ramped: the amount let out at once. */
  readonly start: Map<Dimension, number>
  /** The blind ramp: per dimension, what it lets out at once when it starts again (see {@link fit}). */
  readonly floor: Map<Dimension, number>
  /**
   * The blind ramp: the slowest pace its answers may give it (see {@link repaced}): its first pace (the probe's,
   * a path slow without a herd) or {@link SLOWEST_DOUBLING_MILLIS}, whichever is slower; `undefined` while a ramp
   * that started before any answer (a probe whose model took longer than the wait for it) has had none, then the
   * first answer's pace the same way (until then {@link SLOWEST_DOUBLING_MILLIS}).
   */
  slowest: number | undefined
  readonly given: Map<Dimension, number>
  /** When the ramp ends whatever happens (the first-contact one), else `undefined`. */
  readonly endsAt: number | undefined
  /**
   * A configured pool's first contact (see `contact`): its calls go while what went before them is within it
   * (`RateLimiter.Ramp.overshoot`), and a dimension leaves it on its own 429 (a 429 on tokens teaches nothing of a
   * requests bucket smaller than announced), where the adaptive pool's leaves it whole.
   */
  readonly configured?: boolean | undefined
}

/** A call a blind pool sent, and when: its permit's `charged` is the estimate until settled, then what it used. */
interface Send {
  readonly at: number
  readonly permit: RateLimiter.Permit
}

interface PoolState {
  ramp: Ramp | undefined
  /**
   * The pool's first contact (see {@link Learner.fit}): `undefined` before its first admission, then done once its
   * first-contact ramp is in the limiter (or none was needed); the calls that come meanwhile wait for it.
   */
  contact: Deferred.Deferred<void> | undefined
  /** …and it is done. */
  contacted: boolean
  /** The pool's answers carry no `x-ratelimit-*` headers: its limits are probes until a 429 names them. */
  blind: boolean
  /** 429s seen per dimension. */
  readonly rejections: Map<Dimension, number>
  /** A blind pool: the largest cost asked of each dimension (a guessed limit never goes below it). */
  readonly largest: Map<Dimension, number>
  /** A blind pool's dimensions whose limit is a guess (cut on a 429 that named no limit). */
  readonly guessed: Set<Dimension>
  /** When each guessed dimension was last cut: a 429 for a call sent before then was answered to the old guess. */
  readonly cutAt: Map<Dimension, number>
  /** When each guessed dimension last grew back (see {@link REGROW}). */
  readonly grownAt: Map<Dimension, number>
  /** A guessed dimension's limit before it last grew back (it held), until a 429 or the next growth. */
  readonly held: Map<Dimension, number>
  /** How many growths in a row a 429 undid, per guessed dimension. */
  readonly undone: Map<Dimension, number>
  /** A blind (or still probing) pool's sends over the last {@link HISTORY_MILLIS}, in the order sent. */
  readonly sends: Array<Send>
  /**
   * The pool's recent answers, in the order their calls were sent: when each was sent and when it was answered, and
   * the blind ramp's doubling its round trip allows (see {@link doublingOf}).
   */
  readonly answers: Array<{ readonly sentAt: number; readonly at: number; readonly doubling: number }>
  /**
   * The answers read over the last {@link PACE_MEMORY_MILLIS} that no later one is as slow as (in the order read, so
   * the slowest is first: a sliding maximum, one step an answer; see {@link doublingOf}).
   */
  readonly paces: Array<{ readonly at: number; readonly doubling: number }>
  readonly learned: Map<string, Learned>
}

/**
 * The adaptive mode's cautious starting limits (per minute), for a pool whose first answer announced none;
 * `undefined`: no adaptive mode (a pool with no configured limit stays unlimited).
 *
 * @internal
 */
export interface Adaptive {
  readonly requestsPerMinute: number
  readonly tokensPerMinute: number
}

/** @internal */
export interface Learner {
  /**
   * Runs an attempt on an adaptive pool that has not heard from the server yet as one of its few calls in
   * flight (the probes, see {@link PROBES}; `tokens` its estimate): the herd is admitted after the first answer's
   * `x-ratelimit-*` headers have replaced the cautious starting limits with the real ones, not before. Once the
   * pool has learned, this is the attempt itself.
   */
  readonly probed: <A, E, R>(
    poolScope: string,
    attempt: Effect.Effect<A, E, R>,
    tokens?: number
  ) => Effect.Effect<A, E, R>
  /**
   * An HTTP answer came back (its headers synced): the pool's probing ends. When they taught nothing (a server
   * or proxy that sends no `x-ratelimit-*`), the pool gets the cautious starting limits, which later headers
   * can still correct.
   */
  readonly answered: (poolScope: string, sentAt?: number, processingMillis?: number) => Effect.Effect<void>
  /**
   * Before admission: on a pool without headers, its probed limits grow ahead of the call's turn on the ramp (the
   * ramp itself is in the limiter, where the call waits for its turn); on a pool with configured limits, its first
   * call starts the first-contact ramp (`firstContactRamp`), and the calls that come meanwhile wait until it has.
   */
  readonly fit: (poolScope: string, cost: Budget.Cost) => Effect.Effect<void>
  /**
   * An admitted call left for the server (`at`): a pool without headers keeps its sends, what it learns its
   * limits from when a 429 names none.
   */
  readonly sent: (poolScope: string, permit: RateLimiter.Permit, at: number) => Effect.Effect<void>
  /** An answer with `x-ratelimit-*` headers came: the pool's limits are announced, its probes stop. */
  readonly heard: (poolScope: string, headers: Headers) => Effect.Effect<void>
  /** What a 429 teaches (after its headers are synced and its gate closed). */
  readonly rateLimited: (
    poolScope: string,
    error: Errors.RateLimited,
    since?: { readonly permit: RateLimiter.Permit; readonly sentAt: number; readonly adopt?: boolean | undefined }
  ) => Effect.Effect<void>
  /** Everything learned so far. */
  readonly learned: () => ReadonlyArray<Learned>
}

/** One line per thing learned: `tokens burst 10,000 on org:acme/pool:gpt-4o-mini after 3 429s`. */
export const describe = (learned: ReadonlyArray<Learned>): ReadonlyArray<string> =>
  learned.map((entry) =>
    `${entry.dimension} ${entry.kind === "burst" ? "burst" : "limit"} ${
      Math.round(entry.amount).toLocaleString("en-US")
    }${entry.kind === "limit" ? "/min" : ""} on ${entry.scope} after ${entry.after} 429${entry.after === 1 ? "" : "s"}`
  )

/** @internal */
export const make = (
  limiter: RateLimiter.Service,
  adaptive: Adaptive | undefined,
  firstContact: boolean
): Learner => {
  const pools = new Map<string, PoolState>()
  const stateOf = (poolScope: string): PoolState => {
    let state = pools.get(poolScope)
    if (state === undefined) {
      state = {
        ramp: undefined,
        contact: undefined,
        contacted: false,
        blind: false,
        rejections: new Map(),
        largest: new Map(),
        guessed: new Set(),
        cutAt: new Map(),
        grownAt: new Map(),
        held: new Map(),
        undone: new Map(),
        sends: [],
        answers: [],
        paces: [],
        learned: new Map()
      }
      pools.set(poolScope, state)
    }
    return state
  }

  /** The pool's per-minute buckets (with their learned flags), by dimension. */
  const levelsOf = (poolScope: string) =>
    Effect.map(Effect.orElseSucceed(limiter.peek([poolScope], {}), () => undefined), (estimate) => {
      const out = new Map<Dimension, RateLimiter.LevelInfo>()
      for (const level of estimate?.levels ?? []) {
        const dimension = level.dimension
        if (
          level.scope === poolScope && level.limit.windowMillis === 60_000 &&
          (dimension === "requests" || dimension === "tokens")
        ) out.set(dimension, level)
      }
      return out
    })

  const record = (poolScope: string, state: PoolState, entry: Omit<Learned, "scope" | "after">) =>
    Effect.suspend(() => {
      const learned: Learned = { ...entry, scope: poolScope, after: state.rejections.get(entry.dimension) ?? 0 }
      state.learned.set(`${entry.dimension}:${entry.kind}`, learned)
      return learnedGauge.pipe(
        Metric.tagged("scope", poolScope),
        Metric.tagged("dimension", entry.dimension),
        Metric.tagged("kind", entry.kind),
        Metric.set(entry.amount)
      )
    })

  /**
   * What the server has proved it takes of `dimension` a minute, from the pool's sends before `until` (before
   * `refused`, the call it refused, when given: calls sent in the same instant reached it in that order). A
   * bucket of `L` a minute holds at most `L` and refills `L` a minute, so whatever it took over a window of
   * length `d` is at most `L · (1 + d / 60 s)`: every window gives a lower bound, `sent / (1 + d / 60 s)`, and
   * the best of them is the estimate. When the server has just refused a call, the window from when its
   * bucket was last full (within {@link HISTORY_MILLIS}) gives nearly `L`: what it took there plus the refused
   * call was more than it held, so the bound is within one call of `L`. A send counts what its permit charges:
   * what it used once answered, nothing (tokens) once refused, its estimate while in flight.
   */
  const accepted = (state: PoolState, dimension: Dimension, until: number, refused?: RateLimiter.Permit) => {
    const sends = state.sends
    let end = sends.length
    if (refused !== undefined) {
      for (let i = sends.length - 1; i >= 0 && sends[i].at >= until; i--) {
        if (sends[i].permit === refused) {
          end = i
          break
        }
      }
    }
    let sum = 0
    let best = 0
    for (let i = end - 1; i >= 0; i--) {
      const send = sends[i]
      if (send.at > until) continue
      if (send.at < until - HISTORY_MILLIS) break
      const charged = send.permit.charged[dimension]
      if (charged !== undefined && charged > 0) sum += charged
      const bound = sum / (1 + (until - send.at) / 60_000)
      if (bound > best) best = bound
    }
    return best
  }

  /** What the pool's sends of `dimension` over the minute before `now` charge (see {@link accepted}). */
  const lastMinute = (state: PoolState, dimension: Dimension, now: number) => {
    const sends = state.sends
    let sum = 0
    for (let i = sends.length - 1; i >= 0 && sends[i].at > now - 60_000; i--) {
      const charged = sends[i].permit.charged[dimension]
      if (charged !== undefined && charged > 0) sum += charged
    }
    return sum
  }

  const sent: Learner["sent"] = (poolScope, permit, at) =>
    Effect.suspend(() => {
      const state = pools.get(poolScope)
      const probing = adaptivePools.get(poolScope)?.probing === true
      if ((state === undefined || !state.blind) && !probing) return Effect.void
      const pool = state ?? stateOf(poolScope)
      const sends = pool.sends
      sends.push({ at, permit })
      // forget what is older than the history, a batch at a time
      if (sends.length > 256 && sends[255].at < at - HISTORY_MILLIS) {
        let old = 256
        while (old < sends.length && sends[old].at < at - HISTORY_MILLIS) old++
        sends.splice(0, old)
      }
      // the calls queued behind a guess ask nothing more of `fit`: it grows back as they leave
      return regrow(poolScope, pool)
    })

  /**
   * The doubling the pool's round trip allows: the slowest of what the answers to its {@link RECENT_ANSWERS} latest
   * sends allow (of the calls answered over the last {@link ROUND_TRIP_MILLIS}, whenever they were sent: a slow model
   * answers 30 s after its call left, and a window on the sends kept no answer at all; each
   * {@link NETWORK_ROUND_TRIPS} of its round trip less the server's time when the answer says it, else
   * {@link ROUND_TRIPS} of its whole round trip: a call's departure to its answer read, the network both ways, the
   * server, and the client's own delays in reading it; each within its bounds, see {@link ROUND_TRIPS}), `undefined`
   * before any. A 429 comes back within the round trip (the
   * server refuses before it runs the model): what a ramp lets out in one round trip after the server's bucket ran
   * out is refused before the first 429 is read. The latest sends, not the latest answers nor the fastest: a herd
   * makes its own queue (in the client, the network and the server), and the round trip a 429 takes is the one of
   * the calls sent with it, not the probe's nor that of a call sent before the queue that a slow model answers late;
   * the slowest of five, as a burst's last calls wait behind its first (their median hid a queue of 100-300 ms).
   * And the slowest of every answer read over the last {@link PACE_MEMORY_MILLIS} (`PoolState.paces`): within a herd
   * the round trips of calls sent together differ (over loopback HTTP, 12 ms and 300 ms: the client reads some answers
   * late while it sends), so the five latest alone can swing the pace between 400 ms and 3.2 s a doubling several times
   * a second (seen in a traced run), each swing to the fast end letting out a burst at several times the rate. The
   * ramp slows at once and speeds up only once its slow answers are that old: behind round trips of 5 ms, and 150 ms
   * for one call in four (virtual time), 25 x 429 in 425 attempts became 5 in 405 (ratio 1.020 -> 1.029).
   */
  const doublingOf = (state: PoolState, now: number): number | undefined => {
    const answers = state.answers
    let slowest: number | undefined = undefined
    let latest = 0
    // the latest sent first; an answer read before the window is skipped (answers come in nearly the order sent)
    for (let i = answers.length - 1; i >= 0 && latest < RECENT_ANSWERS; i--) {
      const answer = answers[i]
      if (answer.at < now - ROUND_TRIP_MILLIS) continue
      if (slowest === undefined || answer.doubling > slowest) slowest = answer.doubling
      latest++
    }
    const paces = state.paces
    while (paces.length > 0 && paces[0].at < now - PACE_MEMORY_MILLIS) paces.shift()
    if (paces.length > 0 && (slowest === undefined || paces[0].doubling > slowest)) slowest = paces[0].doubling
    return slowest
  }

  /**
   * The blind ramp's doubling (see {@link doublingOf}; a pool with no answer yet: {@link SLOWEST_DOUBLING_MILLIS}).
   */
  const blindDoubling = (state: PoolState, now: number) => doublingOf(state, now) ?? SLOWEST_DOUBLING_MILLIS

  /**
   * An answer came for a call sent at `sentAt`: its round trip is kept (see {@link doublingOf}), less the server's
   * own time on it when it says (`openai-processing-ms`: a model's generation, which a 429 does not wait for).
   */
  const answeredAfter = (poolScope: string, sentAt: number | undefined, processingMillis: number | undefined) =>
    sentAt === undefined || sentAt < 0 ? Effect.void : Effect.flatMap(Clock.currentTimeMillis, (now) => {
      // kept for a blind pool, and a pool still probing (whose first answer may start the blind ramp)
      const state = pools.get(poolScope)
      if (state?.blind !== true && adaptivePools.get(poolScope)?.probing !== true) return Effect.void
      const pool = state ?? stateOf(poolScope)
      const answers = pool.answers
      const millis = Math.max(0, now - sentAt)
      const answer = {
        sentAt,
        at: now,
        doubling: Math.max(
          BLIND_DOUBLING_MILLIS,
          processingMillis === undefined
            ? Math.min(SLOWEST_DOUBLING_MILLIS, ROUND_TRIPS * millis)
            : Math.min(SLOWEST_NETWORK_DOUBLING_MILLIS, NETWORK_ROUND_TRIPS * Math.max(0, millis - processingMillis))
        )
      }
      // in the order sent (answers come in nearly that order: a short search from the end)
      let at = answers.length
      while (at > 0 && answers[at - 1].sentAt > sentAt) at--
      answers.splice(at, 0, answer)
      // the sliding maximum of the last PACE_MEMORY_MILLIS: an answer no slower than this one never leads it again
      const paces = pool.paces
      while (paces.length > 0 && paces[paces.length - 1].doubling <= answer.doubling) paces.pop()
      paces.push({ at: now, doubling: answer.doubling })
      // forget the earliest sent, a batch at a time, once they were answered before the window (never the latest)
      if (answers.length > 64 && answers[31].at < now - ROUND_TRIP_MILLIS) answers.splice(0, 32)
      return state === undefined ? Effect.void : repaced(poolScope, state, now)
    })

  /**
   * The blind ramp takes the pace its recent answers allow as they come (see {@link doublingOf}): the herd's own
   * queue (the client's and the server's) makes its answers' round trips, and its 429s', longer than the probe's, and
   * the ramp slows before the server's bucket runs out; once the queue drains, it speeds up again. The ramp goes on
   * from where it is (the amount it let out by now), at the new pace.
   */
  const repaced = (poolScope: string, state: PoolState, now: number) =>
    Effect.suspend(() => {
      const ramp = state.ramp
      if (!state.blind || ramp === undefined || ramp.endsAt !== undefined || ramp.start.size === 0) return Effect.void
      const paced = doublingOf(state, now)
      if (paced === undefined) return Effect.void
      // a ramp that started before any answer takes its bound from the first (a probe's, sent before the herd)
      if (ramp.slowest === undefined) ramp.slowest = Math.max(SLOWEST_DOUBLING_MILLIS, paced)
      const doubling = Math.min(ramp.slowest, paced)
      const ratio = doubling / ramp.doublingMillis
      if (ratio <= REPACE && ratio >= 1 / REPACE) return Effect.void
      for (const [dimension] of ramp.start) ramp.start.set(dimension, allowance(ramp, dimension, now))
      ramp.startedAt = now
      ramp.doublingMillis = doubling
      return Effect.forEach(
        [...ramp.start],
        ([dimension, from]) =>
          limiter.ramp(poolScope, dimension, { from, doubling: Duration.millis(doubling), continued: true }),
        { discard: true }
      )
    })

  /** What the ramp lets out of `dimension` by `at`. */
  const allowance = (ramp: Ramp, dimension: Dimension, at: number) =>
    (ramp.start.get(dimension) ?? 0) * 2 ** (Math.max(0, at - ramp.startedAt) / ramp.doublingMillis)

  /** Starts the pool's ramp, in the limiter: its calls wait for their turn in the limiter's queue. */
  const startRamp = (poolScope: string, state: PoolState, ramp: Ramp) => {
    state.ramp = ramp
    return Effect.forEach(ramp.start, ([dimension, from]) =>
      limiter.ramp(poolScope, dimension, {
        from,
        doubling: Duration.millis(ramp.doublingMillis),
        to: ramp.endsAt === undefined ? undefined : from * 2 ** ((ramp.endsAt - ramp.startedAt) / ramp.doublingMillis),
        // a configured pool's calls go while what went before them is within it, whatever their size
        overshoot: ramp.configured === true
      }), { discard: true })
  }

  /** Starts the first-contact ramp from `start` (nothing when it is empty): it reaches 64 times it after 3.9 s. */
  const startFirstContact = (
    poolScope: string,
    state: PoolState,
    start: Map<Dimension, number>,
    now: number,
    configured: boolean
  ) =>
    start.size === 0 ? Effect.void : startRamp(poolScope, state, {
      startedAt: now,
      doublingMillis: FIRST_DOUBLING_MILLIS,
      start,
      floor: new Map(),
      slowest: FIRST_DOUBLING_MILLIS,
      given: new Map(),
      endsAt: now + FIRST_DOUBLING_MILLIS * Math.log2(1 / FIRST_START),
      configured
    })

  /** Ends the pool's ramp on `dimension` (all of it: `undefined`). */
  const endRamp = (poolScope: string, state: PoolState, dimension?: Dimension) =>
    Effect.suspend(() => {
      const ramp = state.ramp
      if (ramp === undefined) return Effect.void
      const ended = dimension === undefined ? [...ramp.start.keys()] : ramp.start.has(dimension) ? [dimension] : []
      for (const each of ended) ramp.start.delete(each)
      if (dimension === undefined || ramp.start.size === 0) state.ramp = undefined
      return Effect.forEach(ended, (each) => limiter.ramp(poolScope, each, undefined), { discard: true })
    })

  /**
   * A blind pool's guessed limits never forbid a call: the server named no limit, so a call larger than the guess
   * may well be one it accepts (it takes any call within its limit, after a wait for a full bucket). The guess
   * grows to the call's cost, and the call waits for a full bucket of it; a call the server refuses for good is
   * refused by the server.
   */
  const widen = (poolScope: string, state: PoolState, cost: Budget.Cost) =>
    Effect.forEach(["requests", "tokens"] as const, (dimension) => {
      const amount = cost[dimension]
      if (amount === undefined || !(amount > 0)) return Effect.void
      if (amount > (state.largest.get(dimension) ?? 0)) state.largest.set(dimension, amount)
      if (!state.guessed.has(dimension)) return Effect.void
      const limit = limiter.limitsOf(poolScope).find((l) => l.dimension === dimension && l.windowMillis === 60_000)
      return limit === undefined || limit.amount >= amount
        ? Effect.void
        : Effect.ignore(limiter.sync(poolScope, { dimension, limit: Math.ceil(amount) }))
    }, { discard: true })

  /** A busy guess that no 429 refused for a while grows back (see {@link REGROW}). */
  const regrow = (poolScope: string, state: PoolState) =>
    state.guessed.size === 0 ?
      Effect.void :
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.flatMap(levelsOf(poolScope), (levels) =>
          Effect.forEach(state.guessed, (dimension) => {
            const level = levels.get(dimension)
            const since = Math.max(state.cutAt.get(dimension) ?? now, state.grownAt.get(dimension) ?? 0)
            const wait = REGROW_MILLIS * 2 ** (state.undone.get(dimension) ?? 0)
            if (level === undefined || !level.learned || now - since < wait) {
              return Effect.void
            }
            if (lastMinute(state, dimension, now) < BUSY * level.limit.amount) {
              return Effect.void
            }
            // the last growth held (no 429 undid it)
            if (state.held.has(dimension)) {
              state.undone.set(dimension, 0)
            }
            state.held.set(dimension, level.limit.amount)
            state.grownAt.set(dimension, now)
            // each growth a 429 undid halves the next one's step (2×, 1.41×, 1.19×…): what one costs in 429s is
            // what it lets out above the limit over a round trip, before the first of them is read
            const amount = Math.ceil(level.limit.amount * REGROW ** (1 / 2 ** (state.undone.get(dimension) ?? 0)))
            return Effect.zipRight(
              Effect.ignore(limiter.sync(poolScope, { dimension, limit: amount, remaining: Math.max(0, level.level) })),
              record(poolScope, state, { dimension, kind: "limit", amount })
            )
          }, { discard: true })))

  /**
   * A configured pool's first admission: its herd goes out over the first-contact ramp (`L / 64` of each configured
   * per-minute limit at once, doubling every 650 ms: it lets out at least what the limits refill, and a call goes
   * while what was let out is within it, whatever its size, so a herd larger than the bucket loses nothing) until
   * the pool's first 429 on each dimension or the end of the ramp (3.9 s), rather than in one instant. OpenAI enforces some limits
   * over a shorter period than it announces, and its headers give the minute's figures, not that bucket's: sent
   * whole, what a configured minute holds beyond the sub-minute bucket is refused before any 429 can be read, while
   * over the ramp the first calls that overflow it teach its size (see {@link Learner.rateLimited}).
   */
  const contact = (poolScope: string, state: PoolState) =>
    Effect.suspend(() => {
      // the calls that come while the first one starts the ramp (the limiter's levels may be a round trip away, in
      // Redis) wait for it, instead of going to admission unramped
      if (state.contact !== undefined) return Deferred.await(state.contact)
      // uninterruptible from here (a peek and an in-memory ramp): an interruption between taking the turn and
      // completing it would leave the pool's calls waiting for good, or the ramp unstarted for the herd behind it
      return Effect.uninterruptible(Effect.suspend(() => {
        const done = Deferred.unsafeMake<void>(FiberId.none)
        state.contact = done
        const start = Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.flatMap(levelsOf(poolScope), (levels) => {
            if (state.ramp !== undefined) return Effect.void
            const start = new Map<Dimension, number>()
            for (const [dimension, level] of levels) {
              // a burst given with the limit describes the server's bucket: nothing to find out
              if (level.learned || level.limit.burst !== undefined) continue
              start.set(dimension, level.limit.amount * FIRST_START)
            }
            return startFirstContact(poolScope, state, start, now, true)
          }))
        return Effect.ensuring(
          start,
          Effect.suspend(() => {
            state.contacted = true
            return Deferred.succeed(done, undefined)
          })
        )
      }))
    })

  const fit: Learner["fit"] = (poolScope, cost) =>
    Effect.suspend(() => {
      const state = pools.get(poolScope)
      if (state === undefined || !state.blind) {
        if (!firstContact) return Effect.void
        // done once the pool's first contact is (the usual case: one check)
        if (state?.contacted === true) return Effect.void
        // an adaptive pool's probes wait for the first answer already (its ramp starts from what that taught)
        if (adaptivePools.get(poolScope)?.probing === true) return Effect.void
        return contact(poolScope, state ?? stateOf(poolScope))
      }
      const ramp = state.ramp
      if (ramp === undefined) return Effect.zipRight(widen(poolScope, state, cost), regrow(poolScope, state))
      return Effect.flatMap(Clock.currentTimeMillis, (now) => {
        // a slow start is in the calls, not only in time: a ramp that ran more than a doubling ahead of them
        // (calls that came slower than it let out) would let a later herd out at once, far beyond anything the
        // server took yet, and grow the probed limits as far (and a 429 found them there). It starts again from
        // what the pool sent over the last minute (at least its start): a herd goes out over a ramp from there.
        let ahead = ramp.start.size > 0
        for (const [dimension, start] of ramp.start) {
          const given = (ramp.given.get(dimension) ?? 0) + (cost[dimension] ?? 0)
          if (allowance(ramp, dimension, now) <= 2 * Math.max(start, given)) ahead = false
        }
        if (ahead) {
          ramp.startedAt = now
          ramp.doublingMillis = Math.min(ramp.slowest ?? SLOWEST_DOUBLING_MILLIS, blindDoubling(state, now))
          for (const [dimension] of ramp.start) {
            ramp.start.set(dimension, Math.max(ramp.floor.get(dimension) ?? 0, lastMinute(state, dimension, now)))
            ramp.given.set(dimension, 0)
          }
        }
        const restart = ahead
          ? Effect.forEach(
            [...ramp.start],
            ([dimension, from]) =>
              limiter.ramp(poolScope, dimension, { from, doubling: Duration.millis(ramp.doublingMillis) }),
            { discard: true }
          )
          : Effect.void
        // the call's turn: when the ramp has let out what came before it and itself
        let due = now
        for (const [dimension, start] of ramp.start) {
          const amount = cost[dimension]
          if (amount === undefined || !(amount > 0)) continue
          const given = (ramp.given.get(dimension) ?? 0) + amount
          ramp.given.set(dimension, given)
          if (given > start) due = Math.max(due, ramp.startedAt + ramp.doublingMillis * Math.log2(given / start))
        }
        // a probe grows ahead of the ramp, so that the limiter lets the call out when the ramp does (a limit
        // that grows gains the room it grew by)
        return Effect.zipRight(
          Effect.zipRight(Effect.zipRight(restart, widen(poolScope, state, cost)), regrow(poolScope, state)),
          Effect.forEach(ramp.start.keys(), (dimension) => {
            const limit = limiter.limitsOf(poolScope).find((l) =>
              l.dimension === dimension && l.windowMillis === 60_000
            )
            const wanted = Math.max(allowance(ramp, dimension, due), cost[dimension] ?? 0)
            return limit === undefined || limit.amount >= wanted
              ? Effect.void
              : Effect.ignore(limiter.sync(poolScope, { dimension, limit: Math.ceil(wanted * GROWTH) }))
          }, { discard: true })
        )
      })
    })

  /** A pool's first answer taught its limits (headers): the herd goes out over the first-contact ramp. */
  const taught = (poolScope: string) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.flatMap(levelsOf(poolScope), (levels) => {
        const state = stateOf(poolScope)
        if (state.ramp !== undefined) return Effect.void
        // the limits the first answer taught (a configured one is the user's figure; a pool both adaptive and
        // configured, one dimension each, ramps only the learned one: `contact` finds this ramp and adds none)
        const start = new Map<Dimension, number>()
        for (const [dimension, level] of levels) {
          if (level.learned) start.set(dimension, level.limit.capacity * FIRST_START)
        }
        return startFirstContact(poolScope, state, start, now, false)
      }))

  /** A pool's first answer had no rate-limit headers: its (cautious) learned limits are probes. */
  const blind = (poolScope: string) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.flatMap(levelsOf(poolScope), (levels) => {
        const state = stateOf(poolScope)
        state.blind = true
        const start = new Map<Dimension, number>()
        for (const [dimension, level] of levels) if (level.learned) start.set(dimension, level.limit.capacity)
        const paced = doublingOf(state, now)
        const doublingMillis = paced ?? SLOWEST_DOUBLING_MILLIS
        return startRamp(poolScope, state, {
          startedAt: now,
          doublingMillis,
          start,
          floor: new Map(start),
          slowest: paced === undefined ? undefined : Math.max(SLOWEST_DOUBLING_MILLIS, paced),
          given: new Map(),
          endsAt: undefined
        })
      }))

  const heard: Learner["heard"] = (poolScope, headers) =>
    Effect.suspend(() => {
      const state = pools.get(poolScope)
      if (state === undefined || !state.blind) return Effect.void
      if (!headers.has("x-ratelimit-limit-requests") && !headers.has("x-ratelimit-limit-tokens")) return Effect.void
      state.blind = false
      return endRamp(poolScope, state)
    })

  const rateLimited: Learner["rateLimited"] = (poolScope, error, since) =>
    Effect.gen(function*() {
      const dimension = error.dimension
      if (dimension !== "requests" && dimension !== "tokens") return
      if (error.window !== undefined && error.window !== "minute") return
      const state = stateOf(poolScope)
      state.rejections.set(dimension, (state.rejections.get(dimension) ?? 0) + 1)
      // every figure a 429 gives is as of the refused call's arrival (see `RateLimiter.sync`, `since`)
      const asOf = { since: since?.permit, sentAt: since?.sentAt, adopt: since?.adopt }
      const now = yield* Clock.currentTimeMillis
      const ramp = state.ramp
      const ramped = ramp !== undefined && ramp.start.has(dimension)
      if (ramp !== undefined) {
        // the first-contact ramp ends on the first 429 (the server has spoken); the blind one, on that dimension
        yield* endRamp(poolScope, state, ramp.endsAt !== undefined && ramp.configured !== true ? undefined : dimension)
      }
      const level = (yield* levelsOf(poolScope)).get(dimension)
      if (level === undefined) return // no per-minute limit: nothing to learn a burst of
      const used = error.used
      const requested = error.requested
      const announced = error.limit
      // a configured limit is the user's figure: its amount stands (only a burst below it is learned)
      // a guess refused again, for a call sent after it was made (not one of the calls refused with the one that
      // made it, sent in the same instant)
      const refusedAgain = !ramped && state.guessed.has(dimension) &&
        (since?.sentAt ?? now) > (state.cutAt.get(dimension) ?? Number.POSITIVE_INFINITY)
      if (state.blind && (ramped || refusedAgain) && level.learned) {
        if (announced !== undefined && announced > 0) {
          // the server named its limit: take it, and what it says is left
          // taken as of the refused call's arrival, by send order: "Used" counts the calls in flight as the
          // server charged them (trued up to their usage when it admitted them), so their over-estimates are
          // not given back a second time when they are answered (see `RateLimiter.sync`, `since`)
          yield* Effect.ignore(limiter.sync(poolScope, {
            dimension,
            limit: announced,
            remaining: used === undefined ? undefined : Math.max(0, announced - used),
            ...asOf,
            refusal: true
          }))
          yield* record(poolScope, state, { dimension, kind: "limit", amount: announced })
        } else {
          // the limit is what the server proved it takes (see `accepted`), from the calls sent before the refused
          // one: never what a ramp allowed (one that ran ahead of the calls says nothing of the server). Refused
          // again, a guess the sends do not prove too high (a bucket smaller than the minute's) is cut by RECUT.
          // Never below a call already asked for (one waiting in the queue would fail: see `widen`).
          const current = level.limit.amount
          const held = state.held.get(dimension)
          const proved = Math.max(
            Math.floor(accepted(state, dimension, since?.sentAt ?? now, since?.permit)),
            held !== undefined && held < current ? held : 0
          )
          const cut = Math.max(
            1,
            Math.ceil(state.largest.get(dimension) ?? 0),
            proved < current ? proved : ramped ? current : Math.floor(current * RECUT)
          )
          if (held !== undefined) {
            // a growth undone: the next one waits longer
            state.held.delete(dimension)
            state.undone.set(dimension, (state.undone.get(dimension) ?? 0) + 1)
          }
          state.guessed.add(dimension)
          state.cutAt.set(dimension, now)
          // what the server took is also its bucket's capacity (a bucket smaller than the minute's is why a guess
          // grows back: its rate grows, its burst stays), never wider than it was
          const burst = limiter.limitsOf(poolScope).find((l) => l.dimension === dimension && l.windowMillis === 60_000)
            ?.burst
          // nothing left as of the refused call's departure: the calls sent after it are charged on top, and those
          // the server refuses too give back only what they took here (see `RateLimiter.sync`, `since`)
          yield* Effect.ignore(limiter.sync(poolScope, {
            dimension,
            limit: cut,
            burst: Math.min(cut, burst ?? cut),
            remaining: 0,
            ...asOf
          }))
          yield* record(poolScope, state, { dimension, kind: "limit", amount: cut })
        }
      }
      // burst: the announced bucket had room, yet the call was refused
      const limit = announced ?? level.limit.amount
      if (used === undefined || requested === undefined || !(limit > 0) || used + requested > limit) return
      const ratePerMs = limit / 60_000
      const hint = error.retryAfter === undefined ? 0 : Duration.toMillis(error.retryAfter)
      const left = Math.max(0, requested - hint * ratePerMs)
      const bound = Math.max(1, Math.floor(left + used))
      if (bound >= limit) return
      const current = limiter.limitsOf(poolScope).find((l) => l.dimension === dimension && l.windowMillis === 60_000)
      const burst = Math.min(bound, current?.burst ?? Number.POSITIVE_INFINITY)
      // as of the refused call's arrival: the calls sent before it are in "Used" as the server charged them, so their
      // refunds do not come back a second time (`refusal`), and those sent after it are charged on top
      yield* Effect.ignore(limiter.sync(poolScope, {
        dimension,
        burst,
        remaining: left,
        ...asOf,
        refusal: true
      }))
      yield* record(poolScope, state, { dimension, kind: "burst", amount: burst })
    })

  // ---------------------------------------------------------------------------------------------------------
  // the adaptive mode's first answer
  // ---------------------------------------------------------------------------------------------------------

  /**
   * The adaptive pools (no configured limit on requests or tokens): `probing` until the first HTTP answer has
   * taught the pool its limits, during which only its probes go (see {@link PROBES}).
   */
  const adaptivePools = new Map<string, { probing: boolean; readonly probe: Turn.Turn }>()
  const probes: Turn.Capacity | undefined = adaptive === undefined ? undefined : {
    calls: Math.max(1, Math.min(PROBES, Math.floor(adaptive.requestsPerMinute * PROBE_SHARE))),
    weight: adaptive.tokensPerMinute * PROBE_SHARE
  }

  /** The dimensions the adaptive mode governs. */
  const unknownDimensions = (poolScope: string) => {
    const known = new Set(limiter.limitsOf(poolScope).map((limit) => limit.dimension))
    return (["requests", "tokens"] as const).filter((dimension) => !known.has(dimension))
  }

  /** Ends a pool's probing (see {@link Learner.answered}); `impatient`: no answer came in time. */
  const ended = (poolScope: string, impatient: boolean) =>
    Effect.suspend(() => {
      const state = adaptivePools.get(poolScope)
      if (state === undefined || !state.probing || adaptive === undefined) return Effect.void
      state.probing = false
      // an answer: the herd waiting behind the probes goes, in order (each to the limiter's queue). Without one,
      // each call queued behind them waits out its own patience (10 s from its arrival), as before the probes
      // were several, while calls that come later go at once: a call that queued at 5 s can go after one that
      // came at 10.1 s. Opening here too would end that, but lets every queued call out in one instant, where
      // their own timers spread them by their arrivals (a 429 can then come back between them: one shape of the
      // pacing property, #26, goes from 1 to 2 x 429 and out of its bound in virtual time). The calls whose patience
      // ran out with this one's (those that came as long ago or before) go now, in the order they came: their own
      // timers, due at the same instant, fire in any order (Effect's TestClock: the last scheduled first, which sent a
      // largest-first herd smallest first in virtual time)
      const herd = impatient
        ? Effect.flatMap(
          Clock.currentTimeMillis,
          (now) => state.probe.admitArrivedBy(now - Duration.toMillis(PROBE_PATIENCE))
        )
        : state.probe.open
      if (limiter.limitsOf(poolScope).length > 0) {
        return Effect.zipRight(impatient ? Effect.void : taught(poolScope), herd)
      }
      return Effect.zipRight(
        Effect.ignore(Effect.forEach(
          unknownDimensions(poolScope),
          (dimension) =>
            limiter.sync(poolScope, {
              dimension,
              limit: dimension === "requests" ? adaptive.requestsPerMinute : adaptive.tokensPerMinute
            }),
          { discard: true }
        )),
        Effect.zipRight(blind(poolScope), herd)
      )
    })

  const probed: Learner["probed"] = (poolScope, attempt, tokens = 0) =>
    Effect.suspend(() => {
      let state = adaptivePools.get(poolScope)
      if (state === undefined && probes !== undefined) {
        // the pool's first call: it probes when a dimension has no configured limit
        state = { probing: unknownDimensions(poolScope).length > 0, probe: Turn.make(probes) }
        adaptivePools.set(poolScope, state)
      }
      if (state === undefined || !state.probing) return attempt
      const pool = state
      // the pool's turn to probe, unless the first answer is slow: then the herd stops waiting and probes the
      // pool's limits from the cautious ones (see the ramps above)
      const turn = Effect.flatMap(Clock.currentTimeMillis, (arrivedAt) =>
        pool.probe.takeOr(Effect.zipRight(Effect.sleep(PROBE_PATIENCE), ended(poolScope, true)), tokens, arrivedAt))
      const release = pool.probe.release(tokens)
      return Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(restore(turn), (mine) =>
          !mine
            ? restore(attempt)
            : pool.probing
            ? Effect.ensuring(restore(attempt), release)
            : Effect.zipRight(release, restore(attempt)))
      )
    })

  return {
    probed,
    answered: (poolScope, sentAt, processingMillis) =>
      Effect.zipRight(answeredAfter(poolScope, sentAt, processingMillis), ended(poolScope, false)),
    fit,
    sent,
    heard,
    rateLimited,
    learned: () => [...pools.values()].flatMap((state) => [...state.learned.values()])
  }
}
