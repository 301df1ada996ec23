// A distributed run's stats as the coordinator assembles them (`Distributed.statsOf`): the workers' hash of the run
// (a fake one here), the stage queues' job counts; and the summary they give. No Redis, no processes.
import { describe, expect, it } from "@effect/vitest"
import { Pipeline, PipelineFile } from "@sluice/openai"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Distributed from "../src/internal/distributed.js"

const spec = PipelineFile.decode({
  name: "campaign",
  id: "key",
  stages: [
    { name: "prompt", url: "/v1/completions", concurrency: 3, body: { model: "m", prompt: "{{text}}" } },
    { name: "render", url: "/v1/completions", concurrency: 2, body: { model: "m", prompt: "{{prompt}}" } }
  ]
}, "campaign.json")

const f = (...parts: ReadonlyArray<string>) => parts.join("\u0000")

describe("distributed stats (Distributed.statsOf)", () => {
  it.effect("per stage from the run's hash and the queues' counts; the binding budget from the limits the workers published", () =>
    Effect.gen(function*() {
      const pipeline = yield* spec
      const hash: Record<string, string> = {
        [f("done", "prompt")]: "40",
        [f("skipped", "prompt")]: "2",
        [f("calls", "prompt")]: "43",
        [f("callRetries", "prompt")]: "1",
        [f("rateLimited", "prompt")]: "1",
        [f("admissionWaitMillis", "prompt")]: "1500.5",
        [f("busyMillis", "prompt")]: "52000",
        [f("charged", "prompt", "tenant:campaign/prompt", "requests")]: "43",
        [f("done", "render")]: "30",
        [f("putBack", "render")]: "3",
        [f("calls", "render")]: "33",
        [f("busyMillis", "render")]: "90000",
        [f("charged", "render", "tenant:campaign/render", "images")]: "30",
        // 5 images a second, a bucket of 5: over 10 s, 55 allowed, 30 used; the prompt stage's scope has no limit
        [f("limits", "tenant:campaign/render")]: JSON.stringify([
          { dimension: "images", amount: 5, windowMillis: 1000 }
        ]),
        [f("limits", "tenant:campaign/prompt")]: "not json"
      }
      const stats = Distributed.statsOf({
        spec: pipeline,
        hash,
        counts: [{ queued: 0, active: 2, workers: 2 }, { queued: 7, active: 4, workers: undefined }],
        maxQueued: [5, 3],
        elapsedMillis: 10_000,
        entered: 50,
        delivered: 32,
        maxHeld: 20,
        window: 72
      })
      expect(stats.distributed).toBe(true)
      expect(stats).toMatchObject({
        pipeline: "campaign",
        entered: 50,
        delivered: 32,
        held: 18,
        maxHeld: 20,
        bound: 72
      })
      const [prompt, render] = stats.stages
      expect(prompt).toMatchObject({
        // 2 workers listening, 3 slots each
        concurrency: 6,
        capacity: 72,
        queued: 0,
        maxQueued: 5,
        inFlight: 2,
        entered: 44,
        done: 40,
        skipped: 2,
        retried: 0,
        calls: 43,
        callRetries: 1,
        rateLimited: 1,
        admissionWaitMillis: 1500.5,
        busyMillis: 52_000,
        idleMillis: 0,
        blockedMillis: 0,
        charged: [{ scope: "tenant:campaign/prompt", dimension: "requests", amount: 43 }]
      })
      // the workers not known (CLIENT LIST refused): one worker's slots; the most queued seen is this read's
      expect(render).toMatchObject({ concurrency: 2, queued: 7, maxQueued: 7, inFlight: 4, entered: 41, retried: 3 })
      expect(stats.binding).toEqual(Option.some({
        stage: "render",
        scope: "tenant:campaign/render",
        dimension: "images",
        windowMillis: 1000,
        utilization: 30 / 55
      }))
      expect(stats.callEvents).toBe(true)

      const summary = Pipeline.summary(stats)
      expect(summary).toContain("binding: images/s tenant:campaign/render in stage render (55% used)")
      // the workers' idle time is not known across processes: no "waiting on" clause, and it says so
      expect(summary).not.toContain("waiting on")
      expect(summary).toContain(
        "  prompt: 40 done, 2 skipped, 0 put back; 43 calls, 1 retried, 1 × 429; queue 0 (max 5 seen), 2/6 in flight (the workers' slots); jobs busy 52s in all (idle time not known across processes); admission waits 1s 501ms in all"
      )
      expect(Pipeline.progressLine(stats)).toBe(
        "campaign 10s | prompt 42/44 q0/72 ▶2 429×1 | render 30/41 q7/72 ▶4 | binding images/s tenant:campaign/render in stage render"
      )
    }))

  it.effect("an empty hash (no job done yet, or a run without call events): zeros, no binding, and the summary says why", () =>
    Effect.gen(function*() {
      const pipeline = yield* spec
      const stats = Distributed.statsOf({
        spec: pipeline,
        hash: {},
        counts: [],
        maxQueued: [0, 0],
        elapsedMillis: 0,
        entered: 0,
        delivered: 0,
        maxHeld: 0,
        window: 72
      })
      expect(stats.stages.map((s) => [s.done, s.calls, s.queued, s.inFlight, s.concurrency])).toEqual([
        [0, 0, 0, 0, 3],
        [0, 0, 0, 0, 2]
      ])
      expect(Option.isNone(stats.binding)).toBe(true)
      expect(Pipeline.summary(stats)).toContain("binding: unknown (give the OpenAi service `onEvent: Pipeline.onEvent`")
    }))
})

describe("distributed stats: a job's figures (Distributed.record)", () => {
  const tally: Pipeline.CallTally = {
    calls: 2,
    callRetries: 1,
    rateLimited: 1,
    admissionWaitMillis: 12.5,
    charged: [{ scope: "org:o/pool:m", dimension: "tokens", amount: 300 }]
  }
  const client = (exec: () => Promise<unknown>) => {
    const writes: Array<string> = []
    const stats: Distributed.StatsClient = {
      multi: () => ({
        hincrby: (_key, field, by) => writes.push(`hincrby ${field.replaceAll("\u0000", "/")} ${by}`),
        hincrbyfloat: (_key, field, by) => writes.push(`hincrbyfloat ${field.replaceAll("\u0000", "/")} ${by}`),
        hset: (_key, fields) => writes.push(`hset ${Object.keys(fields).join(",").replaceAll("\u0000", "/")}`),
        expire: (_key, seconds) => writes.push(`expire ${seconds}`),
        exec
      }),
      hgetall: () => Promise.resolve({}),
      del: () => Promise.resolve(0),
      scan: () => Promise.resolve(["0", []])
    }
    return { stats, writes }
  }

  it.effect("writes the job's counters in one transaction, the hash kept a week after its last write", () =>
    Effect.gen(function*() {
      const { stats, writes } = client(() => Promise.resolve([]))
      yield* Distributed.record(stats, "k", "render", "done", tally, 40, undefined)
      expect(writes).toContain("hincrby done/render 1")
      expect(writes).toContain("hincrby calls/render 2")
      expect(writes).toContain("hincrbyfloat charged/render/org:o/pool:m/tokens 300")
      expect(writes).toContain(`expire ${7 * 24 * 3600}`)
    }))

  it.effect("a write Redis refuses is logged and never fails the job (BullMQ would run it again: its calls twice)", () =>
    Effect.gen(function*() {
      const { stats } = client(() => Promise.reject(new Error("READONLY You can't write against a read only replica")))
      const logged: Array<string> = []
      const logger = Logger.make(({ message }) => logged.push(String(message)))
      const exit = yield* Effect.exit(
        Distributed.record(stats, "k", "render", "done", tally, 40, undefined).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, logger))
        )
      )
      expect(exit._tag).toBe("Success")
      expect(logged.join("\n")).toContain("figures were not recorded (stage render)")
      expect(logged.join("\n")).toContain("READONLY")
    }))
})
