/**
 * `--redis` (and the variable `--redis-env` names) is checked once, before anything connects: ioredis (the budgets'
 * store) and BullMQ (a distributed pipeline's queues) would read `user:token@host` differently (a host, or the
 * scheme `user:`), and a message must never show the password.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cli } from "@sluice/cli"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Option from "effect/Option"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { checkRedisUrl } from "../src/internal/handler.js"
import { connectArgs, workerEnv } from "../src/internal/pipelineHandler.js"
import { capture, chatBody, writeChatLines } from "./helpers.js"

const check = (text: string) => Effect.runSync(Effect.either(checkRedisUrl(text, "--redis")))

describe("--redis URLs", () => {
  it("takes redis:// and rediss:// (any case) with a host, an optional port, credentials and database", () => {
    for (
      const ok of [
        "redis://localhost",
        "redis://127.0.0.1:6380",
        "rediss://user:p%40ss@cache.example.com:6380/2",
        "REDIS://h:1/0",
        " redis://h "
      ]
    ) {
      expect(check(ok), ok).toMatchObject({ _tag: "Right", right: ok.trim() })
    }
  })

  it("refuses a value without a Redis scheme or a host, and a path that is not a database number", () => {
    for (
      const [bad, says] of [
        ["user:token@host:6379", "not a Redis URL"],
        ["localhost:6379", "not a Redis URL"],
        ["http://h:6379", "not a Redis URL (http://h:6379)"],
        ["redis://", "not a Redis URL"],
        ["redis:///0", "not a Redis URL"],
        ["redis://h/cache", "the path must be a database number"],
        ["", "not a Redis URL"]
      ] as const
    ) {
      const result = check(bad)
      expect(result._tag, bad).toBe("Left")
      if (result._tag === "Left") {
        expect(result.left).toBeInstanceOf(Cli.UsageError)
        expect(result.left.message, bad).toContain(says)
        expect(result.left.message).toContain("redis://[user:password@]host")
      }
    }
  })

  it("never shows a password, accepted or refused", () => {
    const secret = FastCheck.stringMatching(/^[A-Za-z0-9]{12,20}$/)
    const scheme = FastCheck.constantFrom("redis", "rediss", "http", "user", "REDIS", "tcp")
    FastCheck.assert(
      FastCheck.property(scheme, secret, FastCheck.constantFrom("", "/0", "/x", "?a=1"), (s, pw, tail) => {
        for (const text of [`${s}://u:${pw}@h:6379${tail}`, `u:${pw}@h${tail}`, `${s}:${pw}@h`]) {
          const result = check(text)
          if (result._tag === "Left") expect(result.left.message).not.toContain(pw)
        }
      }),
      { numRuns: 200 }
    )
  })

  it.effect("sluice run --redis user:token@host: a usage error (exit 2) before any line is read or written", () =>
    Effect.gen(function*() {
      const dir = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "sluice-redis-url-"))
      const input = NodePath.join(dir, "in.jsonl")
      writeChatLines(input, 1, "a", () => chatBody("gpt-4o-mini", "hi", 8))
      const output = NodePath.join(dir, "out.jsonl")
      const result = yield* capture([
        "run",
        "--input",
        input,
        "--output",
        output,
        "--simulate",
        "tier1",
        "--progress",
        "off",
        "--redis",
        "admin:hunter2secret@cache.internal:6379"
      ])
      const error = Exit.isFailure(result.exit) ? Cause.squash(result.exit.cause) : undefined
      expect(error).toBeInstanceOf(Cli.UsageError)
      expect((error as Cli.UsageError).message).toContain("--redis: not a Redis URL")
      expect(`${result.out}\n${result.err}\n${(error as Error).message}`).not.toContain("hunter2secret")
      expect(NodeFs.existsSync(output)).toBe(false)
    }))
})

describe("pipeline run --workers N: what a worker is started with", () => {
  it("the Redis URL and --base-url go by the environment, not the command line (ps shows arguments)", () => {
    const options = {
      baseUrl: Option.some("https://gateway.example.com/v1?token=gw-secret-123"),
      apiKeyEnv: "OPENAI_API_KEY",
      tier: Option.some("1" as const),
      limits: Option.none(),
      redis: Option.some("redis://u:redis-secret-456@h:6379"),
      simulate: Option.none(),
      speed: 1
    }
    const args = connectArgs(options)
    const env = workerEnv(options, "redis://u:redis-secret-456@h:6379")
    expect(args.join(" ")).not.toContain("secret")
    expect(args).toEqual(["--redis-env", "SLUICE_PIPELINE_REDIS_URL", "--api-key-env", "OPENAI_API_KEY", "--tier", "1"])
    expect(env.SLUICE_PIPELINE_REDIS_URL).toBe("redis://u:redis-secret-456@h:6379")
    expect(env.OPENAI_BASE_URL).toBe("https://gateway.example.com/v1?token=gw-secret-123")
    // without --base-url, the worker reads this process's OPENAI_BASE_URL (inherited) as `run` would
    expect(workerEnv({ ...options, baseUrl: Option.none() }, "redis://h").OPENAI_BASE_URL).toBe(
      process.env.OPENAI_BASE_URL
    )
  })
})
