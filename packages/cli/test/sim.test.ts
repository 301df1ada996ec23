import * as NodeContext from "@effect/platform-node/NodeContext"
import { describe, expect, it } from "@effect/vitest"
import { Cli } from "@sluice/cli"
import type * as Console from "effect/Console"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import OpenAI from "openai"

describe("sluice sim", () => {
  // live: a real HTTP server on a loopback port, and the SDK calling it over real sockets
  it.live("serves GET /_sluice/stats while running and prints the run's summary when it stops", () =>
    Effect.gen(function*() {
      const out: Array<string> = []
      const base = yield* Effect.console
      const console: Console.Console = {
        ...base,
        log: (...args: ReadonlyArray<any>) => Effect.sync(() => out.push(args.join(" ")))
      } as Console.Console
      const stop = yield* Deferred.make<void>()
      const fiber = yield* Cli.run(["node", "sluice", "sim", "--port", "0", "--scenario", "tier1"], {
        stop: Deferred.await(stop),
        setExitCode: () => {},
        isTTY: false,
        writeProgress: () => Effect.void
      }).pipe(Effect.withConsole(console), Effect.provide(NodeContext.layer), Effect.fork)
      while (!out.some((line) => line.startsWith("stats: GET "))) yield* Effect.sleep("20 millis")
      const statsUrl = out.find((line) => line.startsWith("stats: GET "))!.slice("stats: GET ".length)
      const baseURL = /at (http:\/\/\S+\/v1)/.exec(out[0])![1]
      const client = new OpenAI({ apiKey: "sk-test", baseURL, maxRetries: 0 })
      yield* Effect.promise(() =>
        Promise.all(Array.from({ length: 3 }, (_, i) =>
          client.chat.completions.create({
            model: "gpt-4o-mini",
            messages: [{ role: "user", content: `[req:${i}] hi` }],
            max_tokens: 10
          })))
      )
      // a request too large for gpt-4o's 30,000 TPM: a 429 of its own kind
      yield* Effect.promise(() =>
        client.chat.completions.create({
          model: "gpt-4o",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 40_000
        })
          .catch((error) => error)
      )
      const stats = yield* Effect.promise(() => fetch(statsUrl).then((r) => r.json() as Promise<any>))
      expect(stats.requests).toBe(4)
      expect(stats.byStatus).toEqual({ "200": 3, "429": 1 })
      expect(stats.rateLimited).toEqual({ total: 1, byKind: { request_too_large: 1 } })
      const rpm = stats.peaks.find((p: any) => p.scope === "gpt-4o-mini" && p.limit === "rpm")
      expect(rpm).toMatchObject({ value: 500, peak: 3 })
      yield* Deferred.succeed(stop, undefined)
      yield* Fiber.join(fiber)
      const printed = out.join("\n")
      expect(printed).toContain("simulator stopped")
      expect(printed).toContain("requests: 4 (by status: 200 3, 429 1)")
      expect(printed).toContain("429s: 1 (by kind: request_too_large 1)")
      expect(printed).toMatch(/peak rolling rate per limit:\n(.*\n)*\s+org-sim gpt-4o-mini rpm: 3 of 500 \(0\.6%\)/)
    }))
})
