/**
 * `pnpm bench:cli`'s minimum: the least time in which any client, in any order, could have had a file's lines
 * answered by the simulator of a row (no side effects: the tests import it).
 */

/** A line of the file: its model, the tokens the server keeps of it, and the part of its latency that is its own. */
export interface Line {
  readonly model: string
  /** The tokens the server keeps of it (its usage where the server trues up, else its admission estimate). */
  readonly tokens: number
  /** The part of its latency that is its own whenever it is sent (the simulator's time per generated token). */
  readonly own: number
}

/**
 * A lower bound on the time in which any client, in any order, could have had every line answered by a row's
 * server: each bucket starts full at share × L and refills at L a minute (per model), and a line ends its latency
 * after its admission. The simulator's latency has two parts: the line's own (10 ms per generated token: a long
 * answer takes long whenever it is sent) and a time to first byte that it draws from one seeded sequence as it
 * admits the requests it answers (the j-th such admission gets the j-th draw, whichever request it is; a 429 draws
 * none). `draws` is that sequence as the row met it (each answered attempt's latency less its line's own part, in the
 * order the server admitted them, every model, a line sent twice twice).
 *
 * Per model, the k-th admission of a line (any order) is no sooner than when the buckets hold the k smallest
 * charges (A_k), and it is the j-th answered admission for some j >= k: with one model j = k and its draw is d_k,
 * with several its draw is no less than the least of d_j over j >= k. It ends no sooner than A_k + that draw + the
 * own part of whichever line goes k-th; the least over every assignment of the largest such end pairs the largest
 * own parts with the smallest A_k + draw (a relaxation: the bound, not an order that reaches it). So a client is not
 * measured as if it could choose which line meets a slow draw, and is measured against sending its long answers
 * first; unlike "the admission minimum plus the latency of the request the server received last", the bound does
 * not depend on the order the row chose. Every line is at hand at the start (a file: no arrivals). A line no draw
 * reached (lost by the row) counts with no draw.
 */
export const orderFreeMinimumMillis = (
  lines: ReadonlyArray<Line>,
  draws: ReadonlyArray<number>,
  limitsOf: (model: string) => { readonly rpm: number; readonly tpm: number },
  options: { readonly share?: number | undefined } = {}
): number => {
  const share = options.share ?? 1
  const fill = (total: number, limit: number) => Math.max(0, (total - limit * share) / limit) * 60_000
  const byModel = new Map<string, Array<Line>>()
  for (const line of lines) {
    const list = byModel.get(line.model) ?? []
    list.push(line)
    byModel.set(line.model, list)
  }
  // the least draw from each position on (several models: a model's k-th admission is the j-th for some j >= k)
  const least = draws.map((d) => Math.max(0, d))
  if (byModel.size > 1) { for (let j = least.length - 2; j >= 0; j--) least[j] = Math.min(least[j], least[j + 1]) }
  let minimum = 0
  for (const [model, list] of byModel) {
    const limits = limitsOf(model)
    const charges = list.map((line) => line.tokens).sort((a, b) => a - b)
    let tokens = 0
    const earliest = charges.map((charge, k) => {
      tokens += charge
      return Math.max(fill(tokens, limits.tpm), fill(k + 1, limits.rpm)) + (least[k] ?? 0)
    }).sort((a, b) => a - b)
    const own = list.map((line) => line.own).sort((a, b) => b - a)
    for (let k = 0; k < own.length; k++) minimum = Math.max(minimum, earliest[k] + own[k])
  }
  return minimum
}
