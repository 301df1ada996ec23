/**
 * One Batch API output line, as the bulk runner and the Batch API offload both write it.
 *
 * @internal
 */
import { randomUUID } from "node:crypto"
import type * as BulkRunner from "../BulkRunner.js"

/** @internal */
export type LineResponse = BulkRunner.Response

/** @internal */
export type LineFailure = Omit<BulkRunner.Failure, "stop">

/** A fresh output line id, shaped like the Batch API's (`batch_req_<32 hex>`). @internal */
export const lineId = (): string => `batch_req_${randomUUID().replace(/-/g, "")}`

/**
 * `{"id","custom_id","response","error"}`: `response` is `{status_code, request_id, body}` or null, `error` is
 * `{code, message, kind, status_code?}` or null.
 *
 * @internal
 */
export const format = (
  customId: string,
  response: LineResponse | null,
  failure: LineFailure | null,
  id: string = lineId()
): string =>
  JSON.stringify({
    id,
    custom_id: customId,
    response: response === null
      ? null
      : { status_code: response.statusCode, request_id: response.requestId, body: response.body },
    error: failure === null ? null : {
      code: failure.code,
      message: failure.message,
      kind: failure.kind,
      ...(failure.statusCode === undefined ? {} : { status_code: failure.statusCode })
    }
  })
