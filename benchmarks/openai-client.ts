/**
 * One implementation's run of a bulk benchmark, in its own process: benchmarks/openai.ts and
 * benchmarks/cli.ts start it with the implementation's name and the simulator's URL, and get a
 * `ClientReport` back over IPC.
 *
 *   node --conditions=sluice-source --import tsx benchmarks/openai-client.ts <implementation> <baseURL>
 *   ... benchmarks/openai-client.ts <implementation> <baseURL> --input in.jsonl --output out.jsonl --limits limits.json
 *
 * Implementations: `sluice` (limits configured), `sluice-adaptive` (no limits: learned from headers),
 * `bare-<concurrency>-<maxRetries>` (the SDK with p-limit), `cookbook`, `effect-ai` (`@effect/ai-openai` on
 * Sluice's `GovernedHttpClient`) and `effect-ai-ungoverned` (`@effect/ai-openai` as it comes).
 *
 * Without `--input`, the OpenAI benchmark's 2,000 chat requests, after a warm-up (below). With `--input`
 * (the CLI benchmark, peers only), the requests of a Batch API file, and every outcome written to
 * `--output` as a Batch API output line the moment it is known (one `writeSync` each, as the cookbook's
 * script appends each result); the cookbook keeps to the `--limits` file's figures (the same file `sluice
 * run --limits` reads). No warm-up then: the process starts cold, as `sluice run` does.
 */
import { closeSync, openSync, readFileSync, writeSync } from "node:fs"
import OpenAI from "openai"
import type { OnResult } from "./openai-peers.js"
import { bareSdk, cookbook, cookbookEstimate } from "./openai-peers.js"
import type { BenchRequest, ClientReport, Meter } from "./openai-workload.js"
import {
  activeShape,
  arrival,
  isChat,
  LIMITS as DEFAULT_LIMITS,
  makeMeter,
  MODEL,
  readBatchFile,
  shapeWorkload,
  workload
} from "./openai-workload.js"

/** `SLUICE_BENCH_SHAPE`: one of the named shapes (`pnpm bench:openai --shapes`) instead of the default workload. */
const shape = activeShape()
const LIMITS = shape?.limits ?? DEFAULT_LIMITS
/** The configured row is given the server's burst too, when it enforces one (the limits as the server has them). */
const burstOf = (amount: number) =>
  shape?.burstShare === undefined ? undefined : Math.max(1, Math.floor(amount * shape.burstShare))

/** Counts the calls that succeeded (`Either`s); a failed call's error tag is counted in `failures`. */
const tally = (
  outcomes: ReadonlyArray<
    { readonly _tag: "Right" } | { readonly _tag: "Left"; readonly left: { readonly _tag: string } }
  >,
  failures: Record<string, number>
): number => {
  let succeeded = 0
  for (const outcome of outcomes) {
    if (outcome._tag === "Right") succeeded++
    else failures[outcome.left._tag] = (failures[outcome.left._tag] ?? 0) + 1
  }
  return succeeded
}

/**
 * A row's figures once its calls are done: `run` runs them (each call's outcome an `Either`) and gives the wall
 * time the meter took; the calls that succeeded, those that failed (their error tags counted in `failures`) and the
 * note on failed attempts and calls.
 */
const settle = async (
  requests: number,
  run: () => Promise<{ readonly wallMillis: number; readonly outcomes: Parameters<typeof tally>[0] }>,
  failures: Record<string, number>,
  failedAttempts: Record<string, number>
) => {
  const { outcomes, wallMillis } = await run()
  const succeeded = tally(outcomes, failures)
  const failed = requests - succeeded
  return { wallMillis, succeeded, failed, failureNote: failureNoteOf(failed, failedAttempts, failures) }
}

/** A row's note on its failed attempts and failed calls (empty when there were none). */
const failureNoteOf = (
  failed: number,
  failedAttempts: Record<string, number>,
  failures: Record<string, number>
): string => {
  const list = (counts: Record<string, number>) => Object.entries(counts).map(([tag, n]) => `${tag} ×${n}`).join(", ")
  return (Object.keys(failedAttempts).length === 0 ? "" : `; failed attempts: ${list(failedAttempts)}`) +
    (failed === 0 ? "" : `; calls that failed: ${list(failures)}`)
}

const sluice = async (
  requests: ReadonlyArray<BenchRequest>,
  options: { readonly baseURL: string; readonly adaptive: boolean; readonly meter: Meter }
): Promise<ClientReport> => {
  // loaded here, not at the top: a peer's process (cold in the CLI benchmark) does not pay for them
  const [{ Budget, LimiterStore }, { OpenAi }, { Effect, Layer }] = await Promise.all([
    import("@sluice/core"),
    import("@sluice/openai"),
    import("effect")
  ])
  const client = new OpenAI({ baseURL: options.baseURL, apiKey: "sk-bench", maxRetries: 0, fetch: options.meter.fetch })
  const scopes = OpenAi.scopesFor({ organization: "bench" }, MODEL) // ["org:bench", "org:bench/pool:gpt-4o-mini"]
  const budgets = options.adaptive ? [] : [
    // OpenAI's limits are per model (pool), so they go on the pool's scope
    Budget.make(scopes[1], [
      Budget.Limit.perMinute("requests", LIMITS.rpm, burstOf(LIMITS.rpm)),
      Budget.Limit.perMinute("tokens", LIMITS.tpm, burstOf(LIMITS.tpm))
    ])
  ]
  let retries = 0
  const failures: Record<string, number> = {}
  const failedAttempts: Record<string, number> = {}
  const debug = process.env.SLUICE_BENCH_DEBUG !== undefined
  const live = OpenAi.layerClient(client, {
    organization: "bench",
    budgets,
    onEvent: (event) =>
      Effect.sync(() => {
        if (event._tag === "Admitted" && event.attempt > 1) retries++
        if (debug && event._tag === "Admitted") {
          process.stderr.write(
            `${Math.round(options.meter.elapsed())} ms admit ${event.attempt} waited ${
              Math.round(event.waitedMillis)
            }\n`
          )
        }
        if (debug && event._tag === "Succeeded") {
          process.stderr.write(
            `${Math.round(options.meter.elapsed())} ms ok (sent ${
              Math.round(options.meter.elapsed() - event.latencyMillis)
            }) lat ${Math.round(event.latencyMillis)}\n`
          )
        }
        if (event._tag === "Failed") {
          failedAttempts[event.error._tag] = (failedAttempts[event.error._tag] ?? 0) + 1
          if (debug) {
            process.stderr.write(
              `${Math.round(options.meter.elapsed())} ms (sent ${
                Math.round(options.meter.elapsed() - event.latencyMillis)
              }) attempt ${event.attempt} ${event.error._tag}: ${event.error.message}\n`
            )
          }
        }
      })
  }).pipe(Layer.provide(LimiterStore.layerMemory))

  const program = Effect.gen(function*() {
    const openai = yield* OpenAi.OpenAi
    options.meter.start()
    const origin = performance.now()
    const outcomes = yield* Effect.forEach(
      requests.filter(isChat),
      (request) =>
        Effect.zipRight(
          Effect.promise(() => arrival(origin, request.at) ?? Promise.resolve()),
          Effect.either(
            openai.chat.completions.create({
              model: request.body.model,
              messages: request.body.messages.map((message) => ({ role: message.role, content: message.content })),
              max_tokens: request.body.max_tokens
            })
          )
        ),
      { concurrency: "unbounded" }
    )
    return { wallMillis: options.meter.elapsed(), outcomes }
  })
  const { failed, failureNote, succeeded, wallMillis } = await settle(
    requests.length,
    () => Effect.runPromise(Effect.provide(program, live)),
    failures,
    failedAttempts
  )
  return {
    name: options.adaptive ? "sluice, adaptive (no limits configured)" : "sluice, limits configured",
    wallMillis,
    succeeded,
    failed,
    retries,
    attempts: options.meter.attempts,
    config: (options.adaptive
      ? "OpenAi.layerClient, no budgets: adaptive mode (starts at 60 RPM / 20,000 TPM, learns from headers)"
      : `OpenAi.layerClient, budgets ${LIMITS.rpm} RPM / ${LIMITS.tpm} TPM on ${scopes[1]}`) +
      ", default retry policy, Effect.forEach concurrency unbounded" + failureNote
  }
}

/**
 * `@effect/ai`'s `LanguageModel.generateText` through `@effect/ai-openai` (the Responses API), its `HttpClient`
 * the platform's fetch client on the meter's `fetch`: `governed`, with `GovernedHttpClient.layer` between them
 * (the same budgets as the `sluice` row, on the same scope); else what a user of `@effect/ai` has today, at
 * the bare SDK row's best concurrency (64), a failed call retried twice with exponential back-off (0.5 s, as
 * the SDK's default retries do; `@effect/ai` retries nothing of itself).
 */
const effectAi = async (
  requests: ReadonlyArray<BenchRequest>,
  options: { readonly baseURL: string; readonly governed: boolean; readonly meter: Meter }
): Promise<ClientReport> => {
  const [
    { Budget, LimiterStore },
    { OpenAi },
    { GovernedHttpClient },
    { Effect, Layer, Redacted, Schedule },
    LanguageModel,
    OpenAiClient,
    OpenAiLanguageModel,
    FetchHttpClient
  ] = await Promise.all([
    import("@sluice/core"),
    import("@sluice/openai"),
    import("@sluice/effect-ai"),
    import("effect"),
    import("@effect/ai/LanguageModel"),
    import("@effect/ai-openai/OpenAiClient"),
    import("@effect/ai-openai/OpenAiLanguageModel"),
    import("@effect/platform/FetchHttpClient")
  ])
  const scopes = OpenAi.scopesFor({ organization: "bench" }, MODEL)
  let retries = 0
  const failures: Record<string, number> = {}
  const failedAttempts: Record<string, number> = {}
  const http = FetchHttpClient.layer.pipe(Layer.provide(Layer.succeed(FetchHttpClient.Fetch, options.meter.fetch)))
  const governed = GovernedHttpClient.layer({
    organization: "bench",
    apiUrl: options.baseURL,
    budgets: [
      Budget.make(scopes[1], [
        Budget.Limit.perMinute("requests", LIMITS.rpm, burstOf(LIMITS.rpm)),
        Budget.Limit.perMinute("tokens", LIMITS.tpm, burstOf(LIMITS.tpm))
      ])
    ],
    onEvent: (event) =>
      Effect.sync(() => {
        if (event._tag === "Admitted" && event.attempt > 1) retries++
        if (event._tag === "Failed") failedAttempts[event.error._tag] = (failedAttempts[event.error._tag] ?? 0) + 1
      })
  }).pipe(Layer.provide([http, LimiterStore.layerMemory]))
  const client = OpenAiClient.layer({ apiKey: Redacted.make("sk-bench"), apiUrl: options.baseURL }).pipe(
    Layer.provide(options.governed ? governed : http)
  )
  const model = OpenAiLanguageModel.layer({ model: MODEL }).pipe(Layer.provide(client))

  const program = Effect.gen(function*() {
    options.meter.start()
    const origin = performance.now()
    const outcomes = yield* Effect.forEach(
      requests.filter(isChat),
      (request) => {
        const generate = LanguageModel.generateText({
          prompt: request.body.messages.map((message) => ({ role: message.role, content: message.content }))
        }).pipe(OpenAiLanguageModel.withConfigOverride({ max_output_tokens: request.body.max_tokens }))
        const call = options.governed ? generate : generate.pipe(
          Effect.tapError(() => Effect.sync(() => retries++)),
          Effect.retry({ times: 2, schedule: Schedule.jittered(Schedule.exponential("500 millis")) })
        )
        return Effect.zipRight(
          Effect.promise(() => arrival(origin, request.at) ?? Promise.resolve()),
          Effect.either(call)
        )
      },
      { concurrency: options.governed ? "unbounded" : 64 }
    )
    return { wallMillis: options.meter.elapsed(), outcomes }
  })
  const { failed, failureNote, succeeded, wallMillis } = await settle(
    requests.length,
    () => Effect.runPromise(Effect.provide(program, model)),
    failures,
    failedAttempts
  )
  return {
    name: options.governed
      ? "@effect/ai-openai, governed (GovernedHttpClient)"
      : "@effect/ai-openai ungoverned, concurrency 64, 2 retries",
    wallMillis,
    succeeded,
    failed,
    // ungoverned: the failed attempts, counted as the retries they cause (the last one's too)
    retries,
    attempts: options.meter.attempts,
    config: (options.governed
      ? `LanguageModel.generateText (Responses API) on GovernedHttpClient.layer, budgets ${LIMITS.rpm} RPM / ${LIMITS.tpm} TPM on ${
        scopes[1]
      }, default retry policy, Effect.forEach concurrency unbounded`
      : "LanguageModel.generateText (Responses API) on FetchHttpClient, Effect.forEach concurrency 64, " +
        "Effect.retry 2 times, jittered exponential from 0.5 s") + failureNote
  }
}

const meter = makeMeter()

const args = process.argv.slice(2)
const [implementation = "", baseURL = ""] = args
const flag = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : undefined
}
const input = flag("input")
const output = flag("output")
const limitsFile = flag("limits")

/** With `--output`: every outcome as a Batch API output line, written at once. */
const sink = (path: string): { readonly onResult: OnResult; readonly close: () => void } => {
  const fd = openSync(path, "w")
  let n = 0
  return {
    onResult: (request, outcome) => {
      const id = `batch_req_${String(++n).padStart(6, "0")}`
      const line = outcome.ok
        ? {
          id,
          custom_id: request.id,
          response: { status_code: outcome.status, request_id: outcome.requestId, body: outcome.body },
          error: null
        }
        : {
          id,
          custom_id: request.id,
          response: null,
          error: { code: outcome.code, message: outcome.message, status_code: outcome.status ?? null }
        }
      writeSync(fd, JSON.stringify(line) + "\n")
    },
    close: () => closeSync(fd)
  }
}

/** The cookbook's limits: the `--limits` file's (`{models: {m: {rpm, tpm}}}`), else the OpenAI benchmark's. */
const cookbookLimits = (): Record<string, { rpm: number; tpm: number }> => {
  if (limitsFile === undefined) return { [MODEL]: { rpm: LIMITS.rpm, tpm: LIMITS.tpm } }
  const file = JSON.parse(readFileSync(limitsFile, "utf8")) as {
    models: Record<string, { rpm?: number; tpm?: number }>
  }
  return Object.fromEntries(
    Object.entries(file.models).map(([model, l]) => [model, { rpm: l.rpm ?? Infinity, tpm: l.tpm ?? Infinity }])
  )
}

const run = async (requests: ReadonlyArray<BenchRequest>, onResult: OnResult | undefined): Promise<ClientReport> => {
  if (implementation === "sluice") return sluice(requests, { baseURL, adaptive: false, meter })
  if (implementation === "sluice-adaptive") return sluice(requests, { baseURL, adaptive: true, meter })
  if (implementation === "effect-ai") return effectAi(requests, { baseURL, governed: true, meter })
  if (implementation === "effect-ai-ungoverned") return effectAi(requests, { baseURL, governed: false, meter })
  if (implementation === "cookbook") return cookbook(requests, { baseURL, limits: cookbookLimits(), meter, onResult })
  const bare = /^bare-(\d+)-(\d+)$/.exec(implementation)
  if (bare !== null) {
    return bareSdk(requests, {
      baseURL,
      concurrency: Number(bare[1]),
      maxRetries: Number(bare[2]),
      meter,
      onResult
    })
  }
  throw new Error(`unknown implementation ${implementation}`)
}

/**
 * Warms what every implementation pays once per process and is not rate limiting: undici (Node's
 * `fetch`, loaded on first use), the SDK's request path (its modules load on first use) — one
 * `GET /v1/models` each, which the simulator does not meter — and the o200k tokenizer that both Sluice and
 * the cookbook processor count prompts with.
 */
const warmUp = async () => {
  const response = await fetch(`${baseURL}/models`, { headers: { authorization: "Bearer sk-bench" } })
  await response.arrayBuffer()
  await new OpenAI({ baseURL, apiKey: "sk-bench", maxRetries: 0 }).models.list()
  const { TokenEstimator } = await import("@sluice/openai")
  const sample = workload(1)[0]
  if (isChat(sample)) TokenEstimator.chat({ ...sample.body, messages: [...sample.body.messages] })
  cookbookEstimate(sample)
}

const main = async (): Promise<ClientReport> => {
  if (input === undefined) {
    await warmUp()
    return run(shape === undefined ? workload() : shapeWorkload(shape), undefined)
  }
  const out = output === undefined ? undefined : sink(output)
  try {
    return await run(readBatchFile(input), out?.onResult)
  } finally {
    out?.close()
  }
}

main().then(
  (result) => {
    const cpu = process.cpuUsage()
    const report: ClientReport = { ...result, fetchErrors: meter.errors, cpuMillis: (cpu.user + cpu.system) / 1000 }
    if (process.send !== undefined) process.send(report, () => process.exit(0))
    else {
      process.stdout.write(JSON.stringify({ ...report, attempts: report.attempts.length }) + "\n")
      process.exit(0)
    }
  },
  (error) => {
    process.stderr.write(String(error?.stack ?? error) + "\n")
    process.exit(1)
  }
)
