/**
 * Key layout. Every key is `<prefix>:{<tag>}:<kind>:<name>`; the `{<tag>}` is a Redis Cluster hash
 * tag (it alone picks the slot). The tag is the store's one tag (the default, so every key of every
 * call shares a slot) or the scope's own tag from a per-scope function; it is never derived from the
 * call, so one bucket always has one key.
 *
 * - bucket: `<prefix>:{<tag>}:b:<scope>|<dimension>|<windowMillis>`, a string `"<level> <at>"` (the
 *   level, possibly negative, and the store time in milliseconds it was computed at, both `%.17g`);
 *   a missing key is a full bucket
 * - gate:   `<prefix>:{<tag>}:g:<scope>|<dimension>`, a string: the "not before" time in milliseconds;
 *   a missing key is an open gate
 *
 * @internal
 */

/**
 * Strips the characters that would end or nest a hash tag; an empty tag (which Redis Cluster would
 * not treat as a tag at all, hashing the whole key) becomes `_`. @internal
 */
export const sanitizeTag = (tag: string): string => tag === "" ? "_" : tag.replace(/[{}]/g, "_")

/**
 * A scope's `org:` segment (`org:acme/project:x` → `org:acme`), else `undefined`.
 *
 * @internal
 */
export const orgTag = (scope: string): string | undefined => {
  for (const part of scope.split("/")) {
    if (part.startsWith("org:")) return part
  }
  return undefined
}

/** @internal */
export const bucketKey = (base: string, scope: string, dimension: string, windowMillis: number): string =>
  `${base}:b:${scope}|${dimension}|${windowMillis}`

/** @internal */
export const gateKey = (base: string, scope: string, dimension: string): string => `${base}:g:${scope}|${dimension}`

/** @internal */
export const base = (prefix: string, tag: string): string => `${prefix}:{${sanitizeTag(tag)}}`
