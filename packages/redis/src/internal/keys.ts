/**
 * Key layout. Every key is `<prefix>:{<tag>}:<kind>:<name>`; the `{<tag>}` is a Redis Cluster hash
 * tag, so every key of one script call lands in one slot.
 *
 * - bucket: `<prefix>:{<tag>}:b:<scope>|<dimension>|<windowMillis>` (a hash `{ l, t }`)
 * - gate:   `<prefix>:{<tag>}:g:<scope>|<dimension>` (a string: the "not before" time in ms)
 *
 * @internal
 */

/** Strips the characters that would end or nest a hash tag. @internal */
export const sanitizeTag = (tag: string): string => tag.replace(/[{}]/g, "_")

/**
 * The default tag of a scope: its `org:` segment (`org:acme/project:x` → `org:acme`), else
 * `undefined` (the caller then uses the configured default tag).
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
