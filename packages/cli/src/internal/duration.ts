/**
 * Parses `--deadline` values: `500ms`, `90s`, `5m`, `2h`, `1h30m`, or Effect duration strings (`30 seconds`).
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"

/** @internal */
export const parseMillis = (text: string): number | undefined => {
  const trimmed = text.trim()
  const go = /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$/.exec(
    trimmed
  )
  if (go !== null && trimmed.length > 0) {
    const [, h, m, s, ms] = go
    return Number(h ?? 0) * 3_600_000 + Number(m ?? 0) * 60_000 + Number(s ?? 0) * 1000 + Number(ms ?? 0)
  }
  const decoded = Duration.decodeUnknown(trimmed)
  return Option.isSome(decoded) ? Duration.toMillis(decoded.value) : undefined
}
