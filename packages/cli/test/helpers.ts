// Shared by the CLI's process tests.
import * as NodeFs from "node:fs"

/**
 * Writes `n` Batch-API chat lines (`custom_id` `id-<i>`, models alternating gpt-4o-mini / gpt-4o), the body's
 * user message from `content(i)`, in 1 MiB writes.
 */
export const writeChatInput = (path: string, n: number, content: (i: number) => string) => {
  const fd = NodeFs.openSync(path, "w")
  let chunk = ""
  for (let i = 0; i < n; i++) {
    const body = {
      model: i % 2 === 0 ? "gpt-4o-mini" : "gpt-4o",
      messages: [{ role: "user", content: content(i) }],
      max_tokens: 16
    }
    chunk += JSON.stringify({ custom_id: `id-${i}`, method: "POST", url: "/v1/chat/completions", body }) + "\n"
    if (chunk.length > 1 << 20) {
      NodeFs.writeSync(fd, chunk)
      chunk = ""
    }
  }
  NodeFs.writeSync(fd, chunk)
  NodeFs.closeSync(fd)
}
