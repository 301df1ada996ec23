/**
 * Internal: what one limiter has charged one bucket lately, in send order (`Ledger`), and where each permit
 * stands in that order (`SendPoint`). Reports from the server are replayed over it (`RateLimiter.sync`), and
 * refunds consult it so that nothing the server already trued up is refunded twice (`refundOn`). Pure data:
 * no Effect, no clock (times are passed in), so it is unit-tested directly.
 *
 * @internal
 */
import type * as LimiterStore from "../LimiterStore.js"

/** Where a permit stands in its limiter's send order: see `Ledger`. */
export interface SendPoint {
  /** The limiter's admission count at its admission. */
  readonly admission: number
  /** Its send sequence once marked sent, else the last send sequence when it was admitted. */
  readonly sequence: number
  /** Its own entry in the send order (marked sent, or settled), if any. */
  readonly entry: number | undefined
  /** The buckets on which a report that counted it was adopted: its corrections there are the server's already. */
  readonly absorbed: ReadonlyArray<string> | undefined
  /** The buckets on which a report folded in by send order counted it unmarked: see `Ledger.counted`. */
  readonly counted: ReadonlyArray<string> | undefined
  /**
   * Per scope, the share of the calls on their way before it that a report of its answer on a dimension counted
   * exactly showed the server had not counted (see `RateLimiter.sync`): the same answer's report on another
   * dimension holds that share back.
   */
  readonly unseen: ReadonlyMap<string, number> | undefined
  readonly debits: ReadonlyArray<LimiterStore.Debit>
  /** The limiter that admitted it (its ledgers): a permit of another limiter ages nothing here. */
  readonly owner: object
}

/** How long a bucket's ledger keeps admissions: reports about older requests are ignored. */
export const LEDGER_RETENTION_MILLIS = 120_000

/**
 * How much earlier than the answered call a call must have been sent to count as having reached the
 * server before it: calls sent in the same moment can arrive in another order (concurrent connections),
 * so a report adopted both ways treats those sent within this of the answered one as not counted yet.
 */
export const REPORT_SKEW_MILLIS = 50

/** How long a report's lag is remembered (see `Ledger.lagAt`). */
export const LAG_MEMORY_MILLIS = 2_000

/** The most calls a report is replayed over one by one (see `Ledger.replay`). */
export const REPLAY_LIMIT = 2_048

/**
 * What of a refund (`amount`, negative) on this bucket is applied: none where a report adopted both ways
 * counted this permit (`Ledger.absorbed`); where a report folded in by send order counted it
 * (`Ledger.counted`), as much as that report still leaves room for (`Ledger.credit`, which it uses up);
 * else all of it.
 */
export const refundOn = (
  point: SendPoint,
  ledgers: ReadonlyMap<string, Ledger>,
  bucket: string,
  amount: number
): number => {
  if (point.absorbed !== undefined && point.absorbed.includes(bucket)) return 0
  const ledger = ledgers.get(bucket)
  if (ledger === undefined) return amount
  const marked = point.entry !== undefined && point.entry === point.sequence
  if (marked && point.sequence <= ledger.absorbed) return 0
  if ((marked && point.sequence <= ledger.counted) || (point.counted !== undefined && point.counted.includes(bucket))) {
    const applied = Math.max(amount, -ledger.credit)
    ledger.credit += applied
    return applied
  }
  return amount
}

/** The last index in `[lo, hi]` of an ascending array whose value is at most `bound` (`lo - 1`: none). */
export const lastAtMost = (values: ReadonlyArray<number>, bound: number, lo: number, hi: number): number => {
  let found = lo - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    if (values[mid] <= bound) {
      found = mid
      lo = mid + 1
    } else {
      hi = mid - 1
    }
  }
  return found
}

/**
 * What this limiter has charged one bucket lately, in the order the calls were sent: each sent permit's
 * current charge (its estimate until settled, its actual after, nothing once released) in a Fenwick tree,
 * so recording, settling and asking what was sent after a given point are O(log n); plus `unsent`, what
 * the permits admitted and not sent yet hold. Entries older than the retention are dropped as new ones
 * arrive.
 */
export class Ledger {
  /** The limiter's admission count when this bucket was first charged: an earlier permit never charged it. */
  constructor(readonly firstAdmission: number) {}
  /** What the held permits not marked sent hold. */
  unsent = 0
  /** When a permit last charged this bucket (the limiter's clock; -Infinity: never). */
  chargedAt = Number.NEGATIVE_INFINITY
  /**
   * What is held back of the bucket's refill since a call drew it from full after a cold spell
   * (`RateLimiter.Options.coldStartLag` of it, charged with that call: the server's full bucket does not refill until
   * a call reaches it, the limiter's would from the admission), the limiter's admission count and its clock then: the
   * first answer of a call admitted since that says the latest the server made it gives back all but the refill up
   * to then (`RateLimiter.sync`). Without such an answer it is kept: the refill a server lost before the first call
   * reached it is not known. Forgotten (kept in the level) where a report lowers the level, the bucket can have been
   * full since, or its limit changed.
   */
  coldHold = 0
  coldFrom = 0
  coldAt = 0
  /** The capacity of the bucket when the hold was charged: a limit that changed since drops it. */
  coldCapacity = 0
  /**
   * What this limiter's permits charged the bucket in all, net of their corrections (`charged`, counted only with a
   * `coldStartLag`), that figure when the hold was charged, and the most the refill since the hold has run ahead of
   * the net charge since, at any change of it (`coldSlack`): the bucket can have refilled to full since (which loses
   * the hold, at the server too) only if that, or the same now, reaches the hold.
   */
  charged = 0
  coldCharged = 0
  coldSlack = 0
  /**
   * The send sequence through which a report was adopted both ways (see `Observation.remaining`): a
   * permit marked sent at or before it and settled since is as the server counts it already. A report
   * whose calls end before it is older than one adopted, and is passed over.
   */
  absorbed = 0
  /**
   * The send sequence through which the latest report that was not adopted both ways (folded in by send
   * order instead: see `sync`) counted the calls. Their refunds raise the level only by what that report
   * still leaves room for, `credit`: the server has them as it charged them already.
   */
  counted = 0
  credit = 0
  /**
   * Whether the server is known to true a call up to its usage by the time it answers (see `kept`): until a
   * report shows it, a call answered with less than it was charged counts at its charge in a replay.
   */
  truesUp = false
  /**
   * Whether the server has reported its level of this bucket in the answer to a call of this limiter's, in a
   * report adopted both ways (`learnCharging`; a refusal's figures do not count, nor a report that only lowers,
   * which never brings back what a settle held back; see `lowered`): then, until it is known to true up, an answered call's
   * settle gives back nothing of its charge here (the reports bring back what the server gave back). Without
   * reports the settle is all there is to go by.
   */
  reported = false
  /**
   * Whether no call answered here was settled to less than its charge (and more than nothing): a dimension counted
   * exactly, as requests are (or one whose calls are never settled, or not yet). Then a report above the level cannot
   * be room that a server truing calls up gave back, only calls it has not counted yet (see `RateLimiter.sync`); read
   * so on a dimension that is not exact after all, a report raises the level less than it could (never more).
   */
  exact = true
  /**
   * The latest report of an answered call that only lowered this bucket (not adopted both ways: the report's limit
   * is not the budget's, the budget has a burst, a burst of calls): the answered call's send sequence, when it was
   * sent, the server's remaining and a bucket of the server's limit to replay it in. Until the server is known to
   * true up, a settle's refund raises the level only as far as it leaves room, replayed to now (`replay`, the calls
   * since at their charge: what a server that keeps its charges has).
   */
  lowered:
    | {
      readonly sequence: number
      readonly from: number
      readonly level: number
      readonly bucket: { readonly capacity: number; readonly refillPerMs: number }
    }
    | undefined = undefined
  private sequences: Array<number> = []
  private times: Array<number> = []
  private amounts: Array<number> = []
  /** What each entry was charged when recorded (its estimate). */
  private charges: Array<number> = []
  /** What each entry marked sent charged when it left (0 for an entry recorded as it settled), and when answered. */
  private opened: Array<number> = []
  private answeredAt: Array<number> = []
  /** Whether a report of each entry's call came (see `arrived`). */
  private arrivals: Array<boolean> = []
  /** 1-based Fenwick trees over `amounts` and over what the entries count as at a server that keeps charges. */
  private tree: Array<number> = [0]
  private keptTree: Array<number> = [0]
  /** The longest reports' lags of the last {@link LAG_MEMORY_MILLIS}, each longer than every later one (`noteLag`). */
  private lags: Array<{ readonly at: number; readonly lag: number }> = []
  /**
   * The entries marked sent that may be stranded (see `stranded`), in send order: each one's sequence, send time and
   * what it charged when it left (0 once its call came back), that in a Fenwick tree over the positions too. An
   * answer takes off the entries sent more than {@link REPORT_SKEW_MILLIS} after its call (a stack: each entry is
   * pushed and taken off once) and zeroes its own.
   */
  private strandedSequences: Array<number> = []
  private strandedTimes: Array<number> = []
  private strandedAmounts: Array<number> = []
  private strandedTree: Array<number> = [0]
  private strandedHead = 0
  private head = 0
  /** The last send sequence dropped: a question about an earlier point cannot be answered. */
  private dropped = 0

  private prefix(count: number, tree: ReadonlyArray<number> = this.tree): number {
    let sum = 0
    for (let i = count; i > 0; i -= i & -i) sum += tree[i]
    return sum
  }

  /**
   * What entry `index` counts as at a server that keeps the charge it made at admission: its charge while it
   * is held or when it was answered with less (a refund such a server never makes), what it was settled to
   * when more, nothing once refunded whole (a refused or failed call, which every server refunds).
   */
  private kept(index: number): number {
    const amount = this.amounts[index]
    return amount > 0 ? Math.max(amount, this.charges[index]) : amount
  }

  /** What entry `index` counts as in a replay: as settled where the server trues up (`truesUp`), else `kept`. */
  private replayed(index: number): number {
    return this.truesUp ? this.amounts[index] : this.kept(index)
  }

  private static push(tree: Array<number>, amount: number, prefix: (count: number) => number): void {
    const n = tree.length
    // a new last node covers (n - lowbit(n), n]
    tree.push(amount + prefix(n - 1) - prefix(n - (n & -n)))
  }

  private static build(values: ReadonlyArray<number>): Array<number> {
    const tree = [0, ...values]
    for (let i = 1; i < tree.length; i++) {
      const parent = i + (i & -i)
      if (parent < tree.length) tree[parent] += tree[i]
    }
    return tree
  }

  private static add(tree: Array<number>, index: number, delta: number): void {
    for (let i = index + 1; i < tree.length; i += i & -i) tree[i] += delta
  }

  /** The index of the last entry with a sequence ≤ the one given (at least `head - 1`). */
  private indexOf(sequence: number): number {
    return lastAtMost(this.sequences, sequence, this.head, this.sequences.length - 1)
  }

  /**
   * `charge`: what the call was charged at admission, when this entry records it settled already (see `kept`).
   * `open`: the entry is a call marked sent whose answer has not come (see `answered`, `openAt`).
   */
  record(sequence: number, at: number, amount: number, charge: number = amount, open = false): void {
    this.sequences.push(sequence)
    this.times.push(at)
    this.amounts.push(amount)
    this.charges.push(charge)
    this.opened.push(open && amount > 0 ? amount : 0)
    this.answeredAt.push(Number.POSITIVE_INFINITY)
    this.arrivals.push(false)
    Ledger.push(this.tree, amount, (count) => this.prefix(count))
    Ledger.push(this.keptTree, this.kept(this.amounts.length - 1), (count) => this.prefix(count, this.keptTree))
    const opened = this.opened[this.opened.length - 1]
    if (opened > 0) {
      this.strandedSequences.push(sequence)
      this.strandedTimes.push(at)
      this.strandedAmounts.push(opened)
      Ledger.push(this.strandedTree, opened, (count) => this.prefix(count, this.strandedTree))
    }
    const horizon = at - LEDGER_RETENTION_MILLIS
    while (this.head < this.times.length && this.times[this.head] < horizon) {
      this.dropped = this.sequences[this.head]
      this.head++
    }
    if (this.head > 1024 && this.head * 2 > this.times.length) {
      this.sequences = this.sequences.slice(this.head)
      this.times = this.times.slice(this.head)
      this.amounts = this.amounts.slice(this.head)
      this.charges = this.charges.slice(this.head)
      this.opened = this.opened.slice(this.head)
      this.answeredAt = this.answeredAt.slice(this.head)
      this.arrivals = this.arrivals.slice(this.head)
      this.head = 0
      this.pruneStranded()
      this.strandedSequences = this.strandedSequences.slice(this.strandedHead)
      this.strandedTimes = this.strandedTimes.slice(this.strandedHead)
      this.strandedAmounts = this.strandedAmounts.slice(this.strandedHead)
      this.strandedTree = Ledger.build(this.strandedAmounts)
      this.strandedHead = 0
      this.tree = Ledger.build(this.amounts)
      this.keptTree = Ledger.build(this.amounts.map((_, i) => this.kept(i)))
    }
  }

  /** The entry with this sequence changed by `delta` (settled, released); `false` if there is none (dropped). */
  adjust(sequence: number, delta: number): boolean {
    const index = this.indexOf(sequence)
    if (index < this.head || this.sequences[index] !== sequence) return false
    const kept = this.kept(index)
    this.amounts[index] += delta
    if (this.amounts[index] > 0 && this.amounts[index] < this.charges[index]) this.exact = false
    Ledger.add(this.tree, index, delta)
    Ledger.add(this.keptTree, index, this.kept(index) - kept)
    return true
  }

  /**
   * The call of the entry with this sequence was answered at `at` (settled or released): it is no longer on its way.
   */
  answered(sequence: number, at: number): void {
    const index = this.indexOf(sequence)
    if (index < this.head || this.sequences[index] !== sequence) return
    // no longer on its way; of the calls sent after it, an answer (a connection refused, an interruption) says nothing
    this.unstrand(sequence)
    this.answeredAt[index] = Math.min(this.answeredAt[index], at)
  }

  /**
   * The server's report of the call of the entry with this sequence came (its answer's headers, or a stream's before
   * its end): the call reached the server, and the first time, neither it nor any call sent more than
   * {@link REPORT_SKEW_MILLIS} after it and before now is stranded any longer (see `stranded`). A later report of
   * the same call says nothing of the calls sent since its first.
   */
  arrived(sequence: number): void {
    const index = this.indexOf(sequence)
    if (index < this.head || this.sequences[index] !== sequence || this.arrivals[index]) return
    this.arrivals[index] = true
    const after = this.times[index] + REPORT_SKEW_MILLIS
    const sequences = this.strandedSequences
    while (
      sequences.length > this.strandedHead && sequences[sequences.length - 1] > sequence &&
      this.strandedTimes[sequences.length - 1] > after
    ) {
      sequences.pop()
      this.strandedTimes.pop()
      this.strandedAmounts.pop()
      this.strandedTree.pop()
    }
    this.unstrand(sequence)
  }

  /** The entry with this sequence is no longer stranded. */
  private unstrand(sequence: number): void {
    const sequences = this.strandedSequences
    const own = lastAtMost(sequences, sequence, this.strandedHead, sequences.length - 1)
    if (own >= this.strandedHead && sequences[own] === sequence && this.strandedAmounts[own] > 0) {
      Ledger.add(this.strandedTree, own, -this.strandedAmounts[own])
      this.strandedAmounts[own] = 0
    }
  }

  /** Drops the stranded entries the ledger no longer keeps, and those at the front whose calls came back. */
  private pruneStranded(): void {
    while (
      this.strandedHead < this.strandedSequences.length &&
      (this.strandedSequences[this.strandedHead] <= this.dropped || this.strandedAmounts[this.strandedHead] === 0)
    ) {
      this.strandedHead++
    }
  }

  /**
   * What the kept entries at or before `sequence` sent at or before `before` charged when they left whose calls are
   * stranded: no answer or report of theirs has come, nor the first report of a call sent more than
   * {@link REPORT_SKEW_MILLIS} before them that was still out when they left. A herd whose calls are all still out
   * while calls sent after it come back may not have reached the server at all (requests queued for connections, a
   * first contact over cold ones): their age is no evidence that they did, where the report of a call sent before
   * them is (the one of a call sent with them is not: it may have been the first of the herd through). O(log n).
   */
  stranded(sequence: number, before: number): number {
    this.pruneStranded()
    const lo = this.strandedHead
    const hi = this.strandedSequences.length - 1
    const last = Math.min(
      lastAtMost(this.strandedSequences, sequence, lo, hi),
      lastAtMost(this.strandedTimes, before, lo, hi)
    )
    if (last < lo) return 0
    return this.prefix(last + 1, this.strandedTree) - this.prefix(lo, this.strandedTree)
  }

  /** The send sequence of the oldest stranded entry kept (see `stranded`; Infinity: none). */
  firstStranded(): number {
    this.pruneStranded()
    return this.strandedHead < this.strandedSequences.length
      ? this.strandedSequences[this.strandedHead]
      : Number.POSITIVE_INFINITY
  }

  /**
   * What the kept entries at or before `sequence` sent after `since` charged whose calls had no answer by `at`:
   * calls that may not have reached the server by then (a request queued for a connection, or behind the client's
   * CPU), whatever their send order says. A call answered later may have reached it after `at` too. A report can
   * count them only where it is read as a lower bound (see `RateLimiter.sync`). A scan of the entries sent after
   * `since` (a report's lag: few).
   */
  openAt(sequence: number, at: number, since: number): number {
    let open = 0
    const first = this.lastSentBy(since, sequence)
    for (let i = this.indexOf(sequence); i > first; i--) {
      if (this.answeredAt[i] > at) open += this.opened[i]
    }
    return open
  }

  /**
   * A report's lag came (`lag`: from its call's departure to the latest the server can have made it, at `at`): the
   * longest of the last {@link LAG_MEMORY_MILLIS} is kept (a sliding maximum, see `lagAt`).
   */
  noteLag(at: number, lag: number): void {
    const lags = this.lags
    while (lags.length > 0 && lags[lags.length - 1].lag <= lag) lags.pop()
    lags.push({ at, lag })
  }

  /** The longest lag reported over the last {@link LAG_MEMORY_MILLIS} before `now` (0: none). */
  lagAt(now: number): number {
    const lags = this.lags
    while (lags.length > 0 && lags[0].at < now - LAG_MEMORY_MILLIS) lags.shift()
    return lags.length > 0 ? lags[0].lag : 0
  }

  /** The index of the last kept entry at or before `sequence` sent at or before `at` (`head - 1`: none). */
  private lastSentBy(at: number, sequence: number): number {
    return lastAtMost(this.times, at, this.head, this.indexOf(sequence))
  }

  /**
   * The last send sequence of an entry sent at or before `at` and at or before `sequence` (what was
   * dropped counts as sent before).
   */
  sentBy(at: number, sequence: number): number {
    const found = this.lastSentBy(at, sequence)
    return found >= this.head ? this.sequences[found] : this.dropped
  }

  /** How many kept entries after `sequence` were sent at or before `at`. */
  sentSince(sequence: number, at: number): number {
    return Math.max(0, lastAtMost(this.times, at, this.head, this.sequences.length - 1) - this.indexOf(sequence))
  }

  /** How many kept entries at or before `sequence` were sent after `at`. */
  sentAfter(at: number, sequence: number): number {
    return this.indexOf(sequence) - this.lastSentBy(at, sequence)
  }

  /**
   * Learns from the server's report of an answered call (its entry) whether the server trues calls up to their
   * usage (`truesUp`), and says whether it does. A server that keeps the charge it made at admission has at most
   * `limit − charge` left right after the call (its bucket never holds more than the limit it announces), whatever
   * else it counted; one that trues up has `level − usage`. So a report above `limit − (charge + usage) / 2`, for a
   * call answered with less than it was charged, shows the server counts the call at about its usage (halfway:
   * the server's own estimate of the charge can differ from this client's by its prompt count). Never unlearned:
   * no report is evidence of keeping (a server that trues up reports as little as one that keeps whenever its
   * bucket is not full). `adopted`: whether the report is adopted both ways (see `reported`).
   */
  learnCharging(entry: number, limit: number, remaining: number, adopted: boolean): boolean {
    if (this.truesUp) return true
    const index = this.indexOf(entry)
    if (index < this.head || this.sequences[index] !== entry) return false
    const usage = this.amounts[index]
    const charge = this.charges[index]
    if (usage > 0 && adopted) this.reported = true
    if (usage > 0 && usage < charge && remaining > limit - (charge + usage) / 2) this.truesUp = true
    return this.truesUp
  }

  /** The amount of the entry with this sequence (0 if none, or dropped). */
  amountOf(sequence: number): number {
    const index = this.indexOf(sequence)
    return index >= this.head && this.sequences[index] === sequence ? this.amounts[index] : 0
  }

  /**
   * The server's level now, replayed from what it reported (`level`, as of `from`): the calls sent after
   * the point `sequence` arrive when they were sent, the bucket refilling up to its capacity in between,
   * then what is not sent yet is taken off. `skip` (an entry) and `ownUnsent` leave out the call the report
   * answered, which the report counts already. Past `REPLAY_LIMIT` calls, the conservative bound: capped
   * refill first, then everything since. `undefined` when the point is older than the ledger keeps.
   */
  replay(
    sequence: number,
    from: number,
    level: number,
    now: number,
    bucket: { readonly capacity: number; readonly refillPerMs: number },
    skip: number | undefined,
    ownUnsent: number
  ): number | undefined {
    if (sequence < this.dropped) return undefined
    const { capacity, refillPerMs } = bucket
    const start = this.indexOf(sequence) + 1
    const end = this.sequences.length
    const unsent = this.unsent - ownUnsent
    if (end - start > REPLAY_LIMIT) {
      const tree = this.truesUp ? this.tree : this.keptTree
      const skipIndex = skip === undefined ? -1 : this.indexOf(skip)
      const skipped = skipIndex >= this.head && this.sequences[skipIndex] === skip ? this.replayed(skipIndex) : 0
      const sent = this.prefix(end, tree) - this.prefix(start, tree) - skipped
      return Math.min(capacity, level + refillPerMs * Math.max(0, now - from)) - sent - unsent
    }
    let t = from
    for (let i = start; i < end; i++) {
      if (this.sequences[i] === skip) continue
      // an entry can be older than the report's `from`: never step back in time
      const at = Math.max(t, this.times[i])
      level = Math.min(capacity, level + refillPerMs * (at - t)) - this.replayed(i)
      t = at
    }
    return Math.min(capacity, level + refillPerMs * Math.max(0, now - t)) - unsent
  }
}
