/**
 * What the bulk runner's mutation tests (BulkRunner.mutants*.test.ts) share: an input of embeddings lines in a fresh
 * directory, an executor that answers each with a well-formed embeddings body, and the output read back.
 */
import type { BulkRunner } from "@sluice/openai"
import * as Effect from "effect/Effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"

const tmp = () => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-bulk-mutants-"))

const request = (id: string) =>
  JSON.stringify({ custom_id: id, method: "POST", url: "/v1/embeddings", body: { model: "m", input: id } })

/** A fresh directory with `in.jsonl` holding one line per id; the output is `out.jsonl` beside it. */
export const setup = (ids: ReadonlyArray<string>) => {
  const dir = tmp()
  const input = NodePath.join(dir, "in.jsonl")
  NodeFs.writeFileSync(input, ids.map(request).join("\n") + "\n")
  return { dir, input, output: NodePath.join(dir, "out.jsonl") }
}

/** The JSON lines of a file, none when it does not exist. */
export const readJsonl = (path: string): Array<any> =>
  NodeFs.existsSync(path)
    ? NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l))
    : []

const embeddings = { object: "list", data: [{ object: "embedding", index: 0, embedding: [0.5] }], model: "m" }

/** An executor answering every line with a 200 and a well-formed embeddings body. */
export const ok = (_: BulkRunner.Request): Effect.Effect<BulkRunner.Response, string> =>
  Effect.succeed({ statusCode: 200, requestId: null, body: embeddings })

/** Every executor failure a `bad_request`, coded and worded by its string. */
export const describe_ = (e: string): BulkRunner.Failure => ({ kind: "bad_request", code: e, message: e })

/** Input errors not reported. */
export const silent = { onInputError: () => Effect.void }
