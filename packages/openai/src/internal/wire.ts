/**
 * When an SDK request goes on the wire: the `openai` SDK prepares a request (an `apiKey` function awaited, a
 * token provider, `prepareRequest`) before it calls its `fetch`, and that can take a while. The limiter orders
 * the server's reports by the order calls were marked sent, so a call is marked sent from inside that `fetch`:
 * the client's `fetch` is wrapped once by a pass-through that calls the hook a governed request carries in its
 * `fetchOptions` (under {@link WIRE}, which it does not pass on). Requests made without the hook (the client
 * used directly) go through untouched.
 *
 * @internal
 */
import type OpenAI from "openai"

/** The key of the hook in a governed request's `fetchOptions` (the SDK spreads them into `fetch`'s `init`). */
export const WIRE: unique symbol = Symbol.for("@sluice/openai/wire")

/** Marks a `fetch` wrapped by {@link install}. */
const WRAPPED: unique symbol = Symbol.for("@sluice/openai/wire/wrapped")

type Fetch = (url: unknown, init?: Record<PropertyKey, unknown>) => Promise<unknown>

/**
 * Wraps `client`'s `fetch` (once per client, however many services share it) so that a request carrying a hook
 * calls it as it is sent. `false` when the client has no `fetch` of its own to wrap (a client this SDK major
 * does not build that way): its calls are then marked sent before the SDK is called.
 */
export const install = (client: OpenAI): boolean => {
  const holder = client as unknown as { fetch?: unknown }
  const current = holder.fetch
  if (typeof current !== "function") return false
  if ((current as { readonly [WRAPPED]?: true })[WRAPPED] === true) return true
  const original = current as Fetch
  const wrapped = function(this: unknown, url: unknown, init?: Record<PropertyKey, unknown>) {
    const hook = init?.[WIRE]
    if (typeof hook === "function") {
      // the SDK's own `init`, made for this one call: the hook is not passed on
      delete init![WIRE]
      hook()
    }
    return original.call(this, url, init)
  }
  Object.defineProperty(wrapped, WRAPPED, { value: true })
  holder.fetch = wrapped
  return true
}

/**
 * The `fetchOptions` of a governed request: its hook, nothing else (merged over the client's own). Typed as no
 * option at all: the hook is under a symbol, which the SDK's types do not describe.
 */
export const options = (onWire: () => void): Record<string, never> =>
  ({ [WIRE]: onWire }) as unknown as Record<string, never>
