/**
 * Writes the README demo's workload, `examples/demo/requests.jsonl` (seeded: the same file every time).
 *
 *   node scripts/run-ts.mjs examples/demo/generate.ts [lines] [path]
 *
 * A day's bulk job of a support team, in the Batch API request format, several endpoints and models in
 * one file (which the Batch API itself does not allow, and `sluice run` does): ticket classification and
 * short summaries on gpt-4o-mini (chat completions and the Responses API), customer-facing replies on
 * gpt-4o, and embeddings of every ticket on text-embedding-3-small. Output lengths are capped with
 * `max_tokens`, as a careful caller does; the simulated model writes less than the cap, so settling each
 * reservation to its real usage matters.
 */
import * as NodeFs from "node:fs"

const lines = Number(process.argv[2] ?? 3000)
const path = process.argv[3] ?? new URL("./requests.jsonl", import.meta.url).pathname

let seed = 20261201
const random = () => {
  // mulberry32
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(random() * xs.length)]

const products = ["router", "billing portal", "mobile app", "API", "dashboard", "invoice export", "SSO login"]
const problems = [
  "times out after the last update",
  "shows the wrong currency",
  "rejects a valid card",
  "logs me out every few minutes",
  "returns a 500 error on large files",
  "is slow in the afternoon",
  "lost my saved settings"
]
const moods = ["politely", "urgently", "angrily", "briefly", "in great detail"]

const ticket = (i: number) => {
  const sentences = 1 + Math.floor(random() * 6)
  const parts = [`Ticket ${i}: the ${pick(products)} ${pick(problems)}.`]
  for (let s = 0; s < sentences; s++) {
    parts.push(`The customer writes ${pick(moods)} that the ${pick(products)} ${pick(problems)}.`)
  }
  return parts.join(" ")
}

const fd = NodeFs.openSync(path, "w")
for (let i = 0; i < lines; i++) {
  const text = ticket(i)
  const roll = random()
  const id = `ticket-${String(i).padStart(5, "0")}`
  let line: unknown
  if (roll < 0.45) {
    line = {
      custom_id: `${id}-classify`,
      method: "POST",
      url: "/v1/chat/completions",
      body: {
        model: "gpt-4o-mini",
        messages: [
          { role: "system", content: "Classify the ticket as billing, outage, login, performance or other." },
          { role: "user", content: text }
        ],
        max_tokens: 16
      }
    }
  } else if (roll < 0.6) {
    line = {
      custom_id: `${id}-summary`,
      method: "POST",
      url: "/v1/responses",
      body: { model: "gpt-4o-mini", instructions: "Summarise in two sentences.", input: text, max_output_tokens: 120 }
    }
  } else if (roll < 0.75) {
    line = {
      custom_id: `${id}-reply`,
      method: "POST",
      url: "/v1/chat/completions",
      body: {
        model: "gpt-4o",
        messages: [
          { role: "system", content: "You are a courteous support agent. Draft a reply." },
          { role: "user", content: text }
        ],
        max_tokens: 400
      }
    }
  } else {
    line = {
      custom_id: `${id}-embed`,
      method: "POST",
      url: "/v1/embeddings",
      body: { model: "text-embedding-3-small", input: text }
    }
  }
  NodeFs.writeSync(fd, JSON.stringify(line) + "\n")
}
NodeFs.closeSync(fd)
console.log(`wrote ${lines} requests to ${path}`)
