/**
 * Go-style duration formatting, as OpenAI prints `x-ratelimit-reset-*` headers and "try again in" hints:
 * `0s`, `12ms`, `1.146s`, `20s`, `6m0s`, `2m52.8s`, `1h30m0s`. Values are rounded up to whole milliseconds.
 *
 * @internal
 */
export const ceilMs = (millis: number): number => Math.max(0, Math.ceil(millis - 1e-6))

/** @internal */
export const formatGoDuration = (millis: number): string => {
  const ms = ceilMs(millis)
  if (ms === 0) return "0s"
  if (ms < 1000) return `${ms}ms`
  const hours = Math.floor(ms / 3_600_000)
  const minutes = Math.floor((ms % 3_600_000) / 60_000)
  const secondsMs = ms % 60_000
  const whole = Math.floor(secondsMs / 1000)
  const frac = secondsMs % 1000
  const seconds = frac === 0 ? `${whole}` : `${whole}.${String(frac).padStart(3, "0").replace(/0+$/, "")}`
  if (hours > 0) return `${hours}h${minutes}m${seconds}s`
  if (minutes > 0) return `${minutes}m${seconds}s`
  return `${seconds}s`
}
