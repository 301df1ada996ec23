/**
 * Pure helpers of the router: plan normalisation, stable ordering, EWMA statistics and the fallback
 * constraint. Nothing here performs effects.
 *
 * @internal
 */

/** @internal */
export interface HasId {
  readonly candidate: { readonly id: string }
}

/** @internal */
export interface SkippedLike<S> {
  readonly state: S
  readonly reason: string
}

/**
 * Makes any plan a partition of `states`: every candidate exactly once, either in `order` (first
 * occurrence wins) or in `skipped` (a candidate neither ordered nor skipped is skipped "not planned").
 *
 * @internal
 */
export const normalize = <S extends HasId>(
  states: ReadonlyArray<S>,
  order: ReadonlyArray<S>,
  skipped: ReadonlyArray<SkippedLike<S>>
): { order: Array<S>; skipped: Array<SkippedLike<S>> } => {
  const known = new Map<string, S>()
  for (const state of states) known.set(state.candidate.id, state)
  const seen = new Set<string>()
  const outOrder: Array<S> = []
  for (const state of order) {
    const id = state.candidate.id
    if (!known.has(id) || seen.has(id)) continue
    seen.add(id)
    outOrder.push(known.get(id)!)
  }
  const outSkipped: Array<SkippedLike<S>> = []
  for (const entry of skipped) {
    const id = entry.state.candidate.id
    if (!known.has(id) || seen.has(id)) continue
    seen.add(id)
    outSkipped.push({ state: known.get(id)!, reason: entry.reason })
  }
  for (const state of states) {
    if (!seen.has(state.candidate.id)) {
      seen.add(state.candidate.id)
      outSkipped.push({ state, reason: "not planned by the strategy" })
    }
  }
  return { order: outOrder, skipped: outSkipped }
}

/**
 * A stable sort by an ascending numeric score (NaN sorts last).
 *
 * @internal
 */
export const stableSortBy = <A>(items: ReadonlyArray<A>, score: (a: A) => number): Array<A> =>
  items
    .map((item, index) => ({ item, index, score: score(item) }))
    .sort((a, b) => {
      const x = Number.isNaN(a.score) ? Number.POSITIVE_INFINITY : a.score
      const y = Number.isNaN(b.score) ? Number.POSITIVE_INFINITY : b.score
      return x === y ? a.index - b.index : x < y ? -1 : 1
    })
    .map((entry) => entry.item)

/**
 * Picks an index by weight with `random` in [0, 1); non-positive weights are never picked unless all
 * are non-positive (then the first).
 *
 * @internal
 */
export const pickWeighted = (weights: ReadonlyArray<number>, random: number): number => {
  let total = 0
  for (const w of weights) if (w > 0 && Number.isFinite(w)) total += w
  if (total <= 0) return 0
  let target = Math.min(Math.max(random, 0), 0.999999999) * total
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i]
    if (!(w > 0 && Number.isFinite(w))) continue
    if (target < w) return i
    target -= w
  }
  return weights.length - 1
}

/**
 * Running statistics of one candidate, kept by the router.
 *
 * @internal
 */
export class Stats {
  latency: number | undefined = undefined
  ttft: number | undefined = undefined
  errorRate = 0
  calls = 0
  failures = 0
  lastAt: number | undefined = undefined
  constructor(readonly alpha: number) {}
  latencyObserved(millis: number): void {
    this.latency = this.latency === undefined ? millis : this.latency + this.alpha * (millis - this.latency)
  }
  ttftObserved(millis: number): void {
    this.ttft = this.ttft === undefined ? millis : this.ttft + this.alpha * (millis - this.ttft)
  }
  outcome(success: boolean, at: number): void {
    this.calls++
    if (!success) this.failures++
    const x = success ? 0 : 1
    this.errorRate = this.calls === 1 ? x : this.errorRate + this.alpha * (x - this.errorRate)
    this.lastAt = at
  }
}

/**
 * Whether two scope lists share a scope.
 *
 * @internal
 */
export const sharesScope = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): boolean => {
  for (const scope of a) if (b.includes(scope)) return true
  return false
}

/**
 * The `_tag` of an error, if any.
 *
 * @internal
 */
export const tagOf = (error: unknown): string | undefined => {
  if (typeof error === "object" && error !== null && "_tag" in error) {
    const tag = (error as { readonly _tag: unknown })._tag
    return typeof tag === "string" ? tag : undefined
  }
  return undefined
}

// -----------------------------------------------------------------------------
// candidates and scopes
// -----------------------------------------------------------------------------

/** What the helpers below read of a candidate. */
interface CandidateLike {
  readonly id: string
  readonly scopes: ReadonlyArray<string>
  readonly pool?: string | undefined
  readonly price?: { readonly input: number; readonly output: number } | undefined
}

/**
 * The scopes a call on `c` charges for `request`: the candidate's, then the request's own.
 *
 * @internal
 */
export const scopesOf = (
  c: CandidateLike,
  request: { readonly scopes?: ReadonlyArray<string> | undefined }
): ReadonlyArray<string> =>
  request.scopes === undefined || request.scopes.length === 0 ? c.scopes : [...c.scopes, ...request.scopes]

/**
 * The scope that is a candidate's own pool: `pool`, or its last scope.
 *
 * @internal
 */
export const poolOf = (c: CandidateLike): string | undefined => c.pool ?? c.scopes[c.scopes.length - 1]

/**
 * A deadline as epoch milliseconds.
 *
 * @internal
 */
export const deadlineOf = (deadline: number | Date | undefined): number | undefined =>
  deadline === undefined ? undefined : typeof deadline === "number" ? deadline : deadline.getTime()

/**
 * A request's price on a candidate (0 without a price).
 *
 * @internal
 */
export const priceOf = (
  c: CandidateLike,
  request: { readonly promptTokens?: number | undefined; readonly outputTokens?: number | undefined }
): number =>
  c.price === undefined ? 0 : (request.promptTokens ?? 0) * c.price.input + (request.outputTokens ?? 0) * c.price.output
