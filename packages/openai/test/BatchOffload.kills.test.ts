/**
 * kill -9 at random points across submit, poll and download, then resume (issue 18), in process under TestClock
 * against the in-process simulator: each case is a chain of "processes" over one server, each killed at a random
 * point but the last, each resuming from what the one before persisted (its last state handed to `onState`, the
 * lines handed to `onResult`, as `sluice run` keeps them in its state file and output). A kill lands at one of
 * - the n-th call to the Batch API (upload, create, retrieve, list, download), before the server saw it or after
 *   it answered (the answer lost: a batch created, a file uploaded, a download read, none of it recorded);
 * - the n-th state persisted, or the n-th result delivered (the process dies right after the write);
 * - a random virtual instant (while it sleeps between polls, waits on a download, or holds).
 * The run ends with every custom_id in exactly one line, no batch created twice for a file, no line run by two
 * batches, every batch the server has followed by the final state.
 */
import { describe, expect, it } from "@effect/vitest"
import { LimiterStore, RateLimiter } from "@sluice/core"
import { BatchOffload } from "@sluice/openai"
import { SimFetch } from "@sluice/testing"
import { Deferred, Effect, Exit, Stream } from "effect"
import * as FastCheck from "effect/FastCheck"
import OpenAIClient from "openai"
import { chatLine, parse, scenario, simBatches, Simulator } from "./batchHarness.js"
import { fastDrive as drive } from "./fastDrive.js"

type Kill =
  | { readonly at: "call"; readonly n: number; readonly answered: boolean }
  | { readonly at: "state" | "result"; readonly n: number }
  | { readonly at: "instant"; readonly ms: number }

const kill: FastCheck.Arbitrary<Kill> = FastCheck.oneof(
  FastCheck.record({
    at: FastCheck.constant("call" as const),
    n: FastCheck.integer({ min: 1, max: 62 }),
    answered: FastCheck.boolean()
  }),
  FastCheck.record({ at: FastCheck.constant("state" as const), n: FastCheck.integer({ min: 1, max: 36 }) }),
  FastCheck.record({ at: FastCheck.constant("result" as const), n: FastCheck.integer({ min: 1, max: 23 }) }),
  FastCheck.record({ at: FastCheck.constant("instant" as const), ms: FastCheck.integer({ min: 0, max: 190_000 }) })
)

const cases = FastCheck.sample(FastCheck.array(kill, { minLength: 1, maxLength: 3 }), {
  numRuns: Number(process.env.SLUICE_KILL_RUNS ?? 12),
  seed: Number(process.env.SLUICE_BATCH_SEED ?? 1818)
})

/** 14 gpt-4o-mini lines (the 5th refused by validation) and 10 gpt-4o lines, in files of at most 6. */
const lines = [
  ...Array.from({ length: 14 }, (_, i) => chatLine(`m-${i}`, i === 4 ? "[sim:batch-invalid] no" : `mini ${i}`)),
  ...Array.from({ length: 10 }, (_, i) => chatLine(`o-${i}`, `omni ${i}`, "gpt-4o"))
]
const allIds = lines.map((l) => parse(l).custom_id as string)

const describeKill = (k: Kill) =>
  k.at === "instant"
    ? `at ${k.ms} ms`
    : k.at === "call"
    ? `call ${k.n}${k.answered ? " answered" : ""}`
    : `${k.at} ${k.n}`

describe("BatchOffload: killed at random points, then resumed", () => {
  cases.forEach((kills, c) =>
    it.effect(`case ${c}: ${kills.map(describeKill).join(", ")}`, () =>
      Effect.gen(function*() {
        /** What outlives a process: its last state persisted, the lines written. */
        let persisted: BatchOffload.State | undefined
        const written: Array<BatchOffload.Result> = []
        const landed: Array<string> = []

        /** One process: a client, a limiter and an offload of its own, killed at `k` (none: runs to its end). */
        const process = (k: Kill | undefined) =>
          Effect.gen(function*() {
            // once dead, nothing more reaches the server or is persisted: every fiber of the process stops where it
            // is (the race below then interrupts them)
            const killed = yield* Deferred.make<void>()
            let dead = false
            const die = () => {
              dead = true
              Deferred.unsafeDone(killed, Exit.void)
            }
            const hang = new Promise<never>(() => {})
            const sim = yield* SimFetch.make
            let calls = 0
            const fetch: typeof globalThis.fetch = async (input, init) => {
              const n = ++calls
              if (dead) return hang
              if (k?.at === "call" && n === k.n && !k.answered) {
                landed.push(describeKill(k))
                die()
                return hang
              }
              const response = await sim(input, init)
              if (dead) return hang
              if (k?.at === "call" && n === k.n) {
                // the server has done its part (a batch created, a file stored, a download served), the answer is lost
                landed.push(describeKill(k))
                die()
                return hang
              }
              return response
            }
            const client = new OpenAIClient({
              apiKey: "sk-kills",
              baseURL: "http://sim.local/v1",
              fetch,
              maxRetries: 0
            })
            const limiter = yield* RateLimiter.make({ budgets: [] }).pipe(Effect.provide(LimiterStore.layerMemory))
            const service = yield* BatchOffload.make({
              client,
              limiter,
              maxRequests: 6,
              poll: { initial: "5 seconds", max: "1 minute" }
            })
            let states = 0
            let results = 0
            const options: BatchOffload.RunOptions = {
              job: "kills",
              done: new Set(written.map((r) => r.customId)),
              onResult: (r) =>
                Effect.suspend(() => {
                  if (dead) return Effect.never
                  written.push(r)
                  if (!(k?.at === "result" && ++results === k.n)) return Effect.void
                  landed.push(describeKill(k))
                  die()
                  return Effect.never
                }),
              onState: (s) =>
                Effect.suspend(() => {
                  if (dead) return Effect.never
                  persisted = s
                  if (!(k?.at === "state" && ++states === k.n)) return Effect.void
                  landed.push(describeKill(k))
                  die()
                  return Effect.never
                })
            }
            const input = Stream.fromIterable(lines)
            const running = persisted === undefined
              ? service.run(input, options)
              : service.resume(persisted, options, input)
            const until = k?.at === "instant"
              ? Effect.race(
                Deferred.await(killed),
                Effect.delay(Effect.sync(() => void (landed.push(describeKill(k)), die())), k.ms)
              )
              : Deferred.await(killed)
            return (yield* drive(Effect.raceFirst(Effect.asVoid(running), until), 60_000)).exit
          }).pipe(Effect.scoped)

        for (const k of kills) yield* process(k)
        const last = yield* process(undefined)
        expect(Exit.isSuccess(last), String(Exit.isFailure(last) && last.cause)).toBe(true)

        // every custom_id in exactly one line; only the refused line failed
        expect(written.map((r) => r.customId).sort()).toEqual([...allIds].sort())
        expect(written.filter((r) => !r.ok).map((r) => r.customId)).toEqual(["m-4"])
        // no batch created twice for a file, no line run by two batches
        const batches = yield* simBatches
        const files = batches.map((b) => b.input_file_id)
        expect(new Set(files).size, files.join(" ")).toBe(files.length)
        const ran = batches.filter((b) => b.status === "completed").reduce((a, b) => a + b.request_counts!.total, 0)
        expect(ran).toBe(allIds.length - 1)
        // every batch the server has is followed by the final state, and has ended
        const state = persisted!
        expect(new Set(state.batches.map((b) => b.batchId))).toEqual(new Set(batches.map((b) => b.id)))
        expect(state.batches.every((b) => b.finished)).toBe(true)
        // the kills landed (a case whose kill points all lay past its work proves nothing)
        expect(landed.length).toBeGreaterThan(0)
      }).pipe(Effect.provide(Simulator.layer(scenario({}, {
        validatingMs: 5_000,
        inProgressMs: 0,
        perRequestMs: 20_000,
        finalizingMs: 5_000,
        downloadMs: 30_000
      })))))
  )
})
