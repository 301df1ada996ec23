// `sluice run --redis URL`: the budgets on Redis (the optional @sluice/redis, loaded only for this option).
// live: a real redis-server process and real files; the embedded simulator has no latency here, so the run takes
// well under a second of wall time.
import * as NodeContext from "@effect/platform-node/NodeContext"
import { describe, expect, it } from "@effect/vitest"
import { Cli } from "@sluice/cli"
import * as RedisServer from "@sluice/redis/RedisServer"
import * as Effect from "effect/Effect"
import { Redis } from "ioredis"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"

const sluice = (argv: ReadonlyArray<string>) =>
  Cli.run(["node", "sluice", ...argv], {
    stop: Effect.never,
    setExitCode: () => {},
    isTTY: false,
    writeProgress: () => Effect.void
  }).pipe(Effect.provide(NodeContext.layer), Effect.exit)

describe("sluice run --redis", () => {
  // live: a real child process and a real Redis (TestClock cannot drive either)
  it.live("keeps the run's budgets on Redis and completes every line", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make()
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-redis-"))
      const input = NodePath.join(dir, "in.jsonl")
      const output = NodePath.join(dir, "out.jsonl")
      NodeFs.writeFileSync(
        input,
        Array.from({ length: 12 }, (_, i) =>
          JSON.stringify({
            custom_id: `r-${i}`,
            method: "POST",
            url: "/v1/chat/completions",
            body: { model: "gpt-4o-mini", messages: [{ role: "user", content: `hi ${i}` }], max_tokens: 8 }
          })).join("\n") + "\n"
      )
      const exit = yield* sluice([
        "run",
        "--input",
        input,
        "--output",
        output,
        "--simulate",
        "tier1",
        "--tier",
        "1",
        "--progress",
        "off",
        "--redis",
        server.url
      ])
      expect(exit._tag).toBe("Success")
      const ids = NodeFs.readFileSync(output, "utf8").split("\n").filter((l) => l !== "").map((l) =>
        JSON.parse(l).custom_id
      )
      expect(ids.sort()).toEqual(Array.from({ length: 12 }, (_, i) => `r-${i}`).sort())
      // the buckets the run charged are Redis keys, not process memory
      const keys = yield* Effect.acquireUseRelease(
        Effect.sync(() => new Redis(server.url)),
        (client) => Effect.promise(() => client.keys("*")),
        (client) => Effect.promise(() => client.quit())
      )
      expect(keys.some((key) => key.includes("gpt-4o-mini"))).toBe(true)
    }).pipe(Effect.scoped))
})
