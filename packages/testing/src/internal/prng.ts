/**
 * A small deterministic PRNG (mulberry32): the same seed gives the same sequence on every platform.
 *
 * @internal
 */
export interface Prng {
  /** A float in [0, 1). */
  readonly next: () => number
  /** An integer in [0, max). */
  readonly int: (max: number) => number
  /** Lowercase alphanumerics of the given length (for ids). */
  readonly id: (length: number) => string
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

/** @internal */
export const make = (seed: number): Prng => {
  let state = (seed >>> 0) ^ 0x9e3779b9
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (max: number) => Math.floor(next() * max)
  const id = (length: number) => {
    let out = ""
    for (let i = 0; i < length; i++) out += ALPHABET[int(ALPHABET.length)]
    return out
  }
  return { next, int, id }
}

/** Derives an independent stream from a seed and a label. @internal */
export const derive = (seed: number, label: string): Prng => {
  let h = seed >>> 0
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0
  return make(h)
}
