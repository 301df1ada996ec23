/**
 * The pipeline file's mechanism: the spec's cross-field checks, templates, the results each endpoint gives, the
 * stages built over a sender, and the file runner (paths, locks, resume and checkpoints through `bulkFiles`).
 *
 * @internal
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { BulkFileError, BulkInputError, BulkPathError } from "../BulkRunner.js"
import type * as BulkRunner from "../BulkRunner.js"
import * as Pipeline from "../Pipeline.js"
import type * as PipelineFile from "../PipelineFile.js"
import { MissingField, PipelineFileError, StageError } from "../PipelineFile.js"
import * as Files from "./bulkFiles.js"

// ---------------------------------------------------------------------------------------------------------------
// the file
// ---------------------------------------------------------------------------------------------------------------

/** @internal */
export const beside = (output: string, name: string): string => {
  const ext = NodePath.extname(output)
  return `${ext === ".jsonl" ? output.slice(0, -ext.length) : output}.${name}.jsonl`
}

/** @internal */
export const readJson = (path: string): Effect.Effect<unknown, PipelineFileError> =>
  Effect.try({
    try: () => JSON.parse(NodeFs.readFileSync(path, "utf8")) as unknown,
    catch: (cause) =>
      new PipelineFileError({
        source: path,
        issues: [{ path: "", message: cause instanceof Error ? cause.message : String(cause) }]
      })
  })

const TEMPLATE = /\{\{\s*([A-Za-z_][\w-]*(?:\.[\w-]+)*)\s*\}\}/g
const WHOLE = /^\{\{\s*([A-Za-z_][\w-]*(?:\.[\w-]+)*)\s*\}\}$/

/** Every string in a value with its path (`messages[0].content`). */
const strings = (value: unknown, path: string, out: Array<{ path: string; text: string }>) => {
  if (typeof value === "string") out.push({ path, text: value })
  else if (Array.isArray(value)) value.forEach((v, i) => strings(v, `${path}[${i}]`, out))
  else if (typeof value === "object" && value !== null) {
    for (const [key, v] of Object.entries(value)) {
      strings(v, /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`, out)
    }
  }
  return out
}

interface SpecShape {
  readonly stages: ReadonlyArray<{ readonly name: string; readonly body: Readonly<Record<string, unknown>> }>
}

/** What the schema cannot say field by field: unique names, a model, templates naming only earlier stages. @internal */
export const checkSpec = (spec: SpecShape): ReadonlyArray<Schema.FilterIssue> => {
  const issues: Array<Schema.FilterIssue> = []
  const names = spec.stages.map((s) => s.name)
  spec.stages.forEach((stage, i) => {
    const first = names.indexOf(stage.name)
    if (first !== i) {
      issues.push({ path: ["stages", i, "name"], message: `"${stage.name}" is also the name of stages[${first}]` })
    }
    if (typeof stage.body["model"] !== "string" || stage.body["model"].length === 0) {
      issues.push({ path: ["stages", i, "body", "model"], message: "expected the model's name (a string)" })
    } else if (TEMPLATE.test(stage.body["model"])) {
      TEMPLATE.lastIndex = 0
      issues.push({ path: ["stages", i, "body", "model"], message: "the model is a plain name, not a template" })
    }
    for (const { path, text } of strings(stage.body, "", [])) {
      for (const match of text.matchAll(TEMPLATE)) {
        const root = match[1]!.split(".")[0]!
        const at = names.indexOf(root)
        if (at >= i) {
          issues.push({
            path: ["stages", i, "body", ...pathKeys(path)],
            message: `${match[0]} names the stage "${root}", which ${
              at === i ? "is this stage" : "runs after this one"
            }: a template names an earlier stage or a field of the input line`
          })
        }
      }
    }
  })
  return issues
}

/** `.messages[0].content` → ["messages", 0, "content"] */
const pathKeys = (path: string): Array<PropertyKey> =>
  Array.from(
    path.matchAll(/\.([A-Za-z_$][\w$]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/g),
    (m) => m[1] !== undefined ? m[1] : m[2] !== undefined ? Number(m[2]) : JSON.parse(m[3]!) as string
  )

// ---------------------------------------------------------------------------------------------------------------
// templates and results
// ---------------------------------------------------------------------------------------------------------------

const lookup = (carry: PipelineFile.Carry, ref: string): { readonly found: boolean; readonly value: unknown } => {
  const [root, ...rest] = ref.split(".")
  const base = Object.hasOwn(carry.results, root!)
    ? carry.results[root!]
    : Object.hasOwn(carry.fields, root!)
    ? carry.fields[root!]
    : undefined
  if (base === undefined) return { found: false, value: undefined }
  let value: unknown = base
  for (const key of rest) {
    if (typeof value !== "object" || value === null || !Object.hasOwn(value, key)) return { found: false, value }
    value = (value as Record<string, unknown>)[key]
  }
  return { found: value !== undefined, value }
}

const textOf = (value: unknown): string => typeof value === "string" ? value : JSON.stringify(value)

/** The body with every template filled in from the carry. @internal */
export const render = (
  stage: string,
  body: unknown,
  carry: PipelineFile.Carry
): Effect.Effect<Record<string, unknown>, MissingField> =>
  Effect.suspend(() => {
    let missing: string | undefined
    const fill = (value: unknown): unknown => {
      if (typeof value === "string") {
        const whole = WHOLE.exec(value)
        if (whole !== null) {
          const { found, value: v } = lookup(carry, whole[1]!)
          if (!found) missing ??= whole[1]!
          return v
        }
        return value.replace(TEMPLATE, (_, ref: string) => {
          const { found, value: v } = lookup(carry, ref)
          if (!found) missing ??= ref
          return found ? textOf(v) : ""
        })
      }
      if (Array.isArray(value)) return value.map(fill)
      if (typeof value === "object" && value !== null) {
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v)]))
      }
      return value
    }
    const filled = fill(body) as Record<string, unknown>
    return missing === undefined ? Effect.succeed(filled) : Effect.fail(
      new MissingField({
        stage,
        field: missing,
        message: `{{${missing}}}: the item has no field "${missing}" (nor an earlier stage of that name)`
      })
    )
  })

const record = (value: unknown): Record<string, unknown> | undefined =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? value as Record<string, unknown> : undefined

/** A stage's result: the text, the image, the vector its answer carries (else the whole answer). @internal */
export const resultOf = (url: string, body: unknown): unknown => {
  const answer = record(body)
  if (answer === undefined) return body
  switch (url) {
    case "/v1/chat/completions": {
      const choice = record((answer["choices"] as Array<unknown> | undefined)?.[0])
      const content = record(choice?.["message"])?.["content"]
      return typeof content === "string" ? content : body
    }
    case "/v1/completions": {
      const text = record((answer["choices"] as Array<unknown> | undefined)?.[0])?.["text"]
      return typeof text === "string" ? text : body
    }
    case "/v1/responses": {
      if (typeof answer["output_text"] === "string") return answer["output_text"]
      const texts: Array<string> = []
      for (const item of (answer["output"] as Array<unknown> | undefined) ?? []) {
        for (const part of (record(item)?.["content"] as Array<unknown> | undefined) ?? []) {
          const text = record(part)?.["text"]
          if (typeof text === "string") texts.push(text)
        }
      }
      return texts.length > 0 ? texts.join("") : body
    }
    case "/v1/embeddings": {
      const embedding = record((answer["data"] as Array<unknown> | undefined)?.[0])?.["embedding"]
      return embedding ?? body
    }
    case "/v1/images/generations": {
      const image = record((answer["data"] as Array<unknown> | undefined)?.[0])
      return image?.["url"] ?? image?.["b64_json"] ?? body
    }
    default:
      return body
  }
}

const Carry = Schema.Struct({
  fields: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  results: Schema.Record({ key: Schema.String, value: Schema.Unknown })
})

/** @internal */
export const tenantOf = (spec: PipelineFile.Spec, stage: PipelineFile.StageSpec): string | undefined =>
  stage.budget === undefined ? undefined : `${spec.name}/${stage.name}`

/** @internal */
export const stageRun = <E>(
  spec: PipelineFile.Spec,
  index: number,
  sender: PipelineFile.Sender<E>
) => {
  const stage = spec.stages[index]!
  const tenant = tenantOf(spec, stage)
  return (carry: PipelineFile.Carry, id: string): Effect.Effect<PipelineFile.Carry, E | MissingField> =>
    Effect.gen(function*() {
      const body = yield* render(stage.name, stage.body, carry)
      const response = yield* sender.execute(
        { customId: `${id}/${stage.name}`, url: stage.url, body, line: 0 },
        { priority: stage.lane, tenant }
      )
      return { fields: carry.fields, results: { ...carry.results, [stage.name]: resultOf(stage.url, response.body) } }
    })
}

/** @internal */
export const decide = <E>(sender: PipelineFile.Sender<E>) => (error: E | MissingField): Pipeline.Decision =>
  error instanceof MissingField ? "skip" : sender.describe(error as E).stop === true ? "fail" : "skip"

/** @internal */
export const make = <E>(
  spec: PipelineFile.Spec,
  sender: PipelineFile.Sender<E>
): Pipeline.Pipeline<PipelineFile.Carry, PipelineFile.Carry, E | MissingField> =>
  spec.stages.reduce(
    (pipeline, stage, index) => {
      const run = stageRun(spec, index, sender)
      return Pipeline.stage(pipeline, {
        name: stage.name,
        concurrency: stage.concurrency,
        queue: stage.queue ?? stage.concurrency * 2,
        lane: stage.lane,
        tenant: tenantOf(spec, stage),
        budget: stage.budget,
        retries: stage.retries,
        output: Carry,
        onError: decide(sender),
        run: (carry: PipelineFile.Carry, item: Pipeline.ItemInfo) => run(carry, item.id)
      }) as Pipeline.Pipeline<PipelineFile.Carry, PipelineFile.Carry, E | MissingField>
    },
    Pipeline.make<PipelineFile.Carry>(spec.name) as Pipeline.Pipeline<
      PipelineFile.Carry,
      PipelineFile.Carry,
      E | MissingField
    >
  )

// ---------------------------------------------------------------------------------------------------------------
// the file runner
// ---------------------------------------------------------------------------------------------------------------

const fileError = (failure: Files.FileFailure) =>
  new BulkFileError({ path: failure.path, operation: failure.operation, message: failure.message })
const pathError = (problem: Files.PathProblem) =>
  new BulkPathError({ reason: problem.reason, path: problem.path, message: problem.message })

const decodeCheckpoint = Schema.decodeUnknownOption(Schema.parseJson(Pipeline.Checkpoint))

/** The checkpoints of the ids not yet in the output (the last one of each id wins; a torn line is ignored). */
const readCheckpoints = (path: string, done: ReadonlySet<string>) =>
  Effect.gen(function*() {
    const checkpoints = new Map<string, Pipeline.Checkpoint>()
    if (!NodeFs.existsSync(path)) return checkpoints
    yield* Stream.runForEachChunk(Files.lines(path), (chunk) =>
      Effect.sync(() => {
        for (const { text } of chunk) {
          const checkpoint = decodeCheckpoint(text)
          if (Option.isSome(checkpoint) && !done.has(checkpoint.value.id)) {
            checkpoints.set(checkpoint.value.id, checkpoint.value)
          }
        }
      }))
    return checkpoints
  })

/** @internal */
export const run = <E>(
  options: PipelineFile.PipelineFile.RunOptions<E>
): Effect.Effect<PipelineFile.Summary, BulkFileError | BulkPathError> =>
  Effect.scoped(Effect.gen(function*() {
    const startedAt = yield* Clock.currentTimeMillis
    const { spec } = options
    const checkpointsFile = options.checkpoints ?? beside(options.output, "stages")
    const collision = Files.checkPaths([
      { role: "input", path: options.input },
      { role: "output", path: options.output },
      ...(options.errors === undefined ? [] : [{ role: "errors file", path: options.errors }]),
      { role: "checkpoints file", path: checkpointsFile },
      { role: "lock file", path: Files.lockPath(options.output) },
      ...(options.errors === undefined ? [] : [{ role: "errors lock file", path: Files.lockPath(options.errors) }]),
      ...(options.engine?.paths ?? [])
    ])
    if (collision !== undefined) return yield* Effect.fail(pathError(collision))
    yield* Effect.mapError(Files.acquireLock(options.output), (e) =>
      e._tag === "PathProblem" ? pathError(e) : fileError(e))
    if (options.errors !== undefined) {
      yield* Effect.mapError(
        Files.acquireLock(options.errors),
        (e) =>
          e._tag === "PathProblem" ? pathError(e) : fileError(e)
      )
    }
    if (options.restart === true) {
      for (const path of [options.output, checkpointsFile]) {
        if (!NodeFs.existsSync(path)) continue
        yield* Effect.mapError(
          Effect.try({
            try: () => NodeFs.truncateSync(path, 0),
            catch: (cause) => new Files.FileFailure(path, "truncate", cause)
          }),
          fileError
        )
      }
    }
    const resumed = yield* Effect.mapError(
      Files.resume(options.output),
      (e) => e._tag === "PathProblem" ? pathError(e) : fileError(e)
    )
    const checkpoints = yield* Effect.mapError(readCheckpoints(checkpointsFile, resumed.done), fileError)
    const out = yield* Effect.mapError(Files.lineWriter(options.output, {}), fileError)
    const stagesOut = yield* Effect.mapError(Files.lineWriter(checkpointsFile, {}), fileError)
    const errs = options.errors === undefined
      ? undefined
      : yield* Effect.mapError(Files.lineWriter(options.errors, { truncate: true, fsyncEvery: 64 }), fileError)

    let invalid = 0
    let alreadyDone = 0
    let succeeded = 0
    let failed = 0
    let resumedAtStage = 0
    const failuresByKind: Record<string, number> = {}
    const seen = new Set<string>()
    const reject = (error: BulkInputError) => {
      invalid++
      return errs === undefined ? Effect.void : Effect.mapError(
        errs.write(JSON.stringify({
          line: error.line,
          reason: error.reason,
          custom_id: error.customId ?? null,
          message: error.message
        })),
        fileError
      )
    }
    const classify = (
      { invalidUtf8, line, text }: Files.NumberedLine
    ): Pipeline.Item<PipelineFile.Carry> | BulkInputError | undefined => {
      if (Files.isBlank(text)) return undefined
      const bad = (reason: BulkInputError["reason"], message: string, customId?: string) =>
        new BulkInputError({ line, reason, message, ...(customId === undefined ? {} : { customId }) })
      if (invalidUtf8 === true) return bad("invalid-line", "the line is not valid UTF-8")
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch (error) {
        return bad("malformed-json", error instanceof Error ? error.message : String(error))
      }
      const fields = record(json)
      if (fields === undefined) return bad("not-an-object", "expected a JSON object")
      const id = fields[spec.id]
      if (typeof id !== "string" || id.length === 0) {
        return bad("missing-custom-id", `expected a non-empty string "${spec.id}" (the pipeline file's "id")`)
      }
      if (seen.has(id)) return bad("duplicate-custom-id", `"${id}" appears on an earlier line`, id)
      seen.add(id)
      if (resumed.done.has(id)) {
        alreadyDone++
        return undefined
      }
      if (checkpoints.has(id)) resumedAtStage++
      return { id, input: { fields, results: {} } }
    }

    let stop: string | undefined
    let stoppedBy: StageError | undefined
    const items = Files.lines(options.input).pipe(
      Stream.mapError(fileError),
      Stream.mapChunksEffect((chunk) =>
        Effect.map(
          Effect.forEach(chunk, (line) => {
            const c = classify(line)
            return c instanceof BulkInputError ? Effect.as(reject(c), undefined) : Effect.succeed(c)
          }),
          (all) => Chunk.fromIterable(all.filter((c): c is Pipeline.Item<PipelineFile.Carry> => c !== undefined))
        )
      ),
      options.stop === undefined ? (s) => s : Stream.interruptWhen(
        Effect.tap(options.stop, () => Effect.sync(() => (stop ??= "stopped by a signal")))
      )
    )
    const store: Pipeline.Store = {
      get: (id) => Effect.sync(() => Option.fromNullable(checkpoints.get(id))),
      put: (checkpoint) =>
        Effect.mapError(
          stagesOut.write(JSON.stringify(Schema.encodeSync(Pipeline.Checkpoint)(checkpoint))),
          (e) => new Pipeline.PipelineStoreError({ operation: "put", id: checkpoint.id, message: e.message })
        ).pipe(Effect.tap(() => Effect.sync(() => checkpoints.delete(checkpoint.id))))
    }
    const pipeline = options.pipeline ?? make(spec, options.sender)
    const write = (outcome: Pipeline.Outcome<PipelineFile.Carry>) => {
      let line: string
      if (outcome._tag === "Done") {
        succeeded++
        line = JSON.stringify({
          id: `${spec.name}-${outcome.id}`,
          custom_id: outcome.id,
          response: { results: outcome.value.results },
          error: null
        })
      } else {
        failed++
        // a StageError: described where the stage ran (a worker elsewhere)
        const described = outcome.error === undefined || outcome.error instanceof MissingField
          ? undefined
          : outcome.error instanceof StageError
          ? outcome.error
          : options.sender.describe(outcome.error as E)
        const kind = described?.kind ?? outcome.kind
        failuresByKind[kind] = (failuresByKind[kind] ?? 0) + 1
        line = JSON.stringify({
          id: `${spec.name}-${outcome.id}`,
          custom_id: outcome.id,
          response: null,
          error: {
            stage: outcome.stage,
            kind,
            code: described?.code ?? (outcome.kind === "MissingField" ? "missing_field" : outcome.kind),
            message: described?.message ?? outcome.message,
            ...(described?.statusCode === undefined ? {} : { status_code: described.statusCode })
          }
        })
      }
      return Effect.mapError(out.write(line), fileError)
    }

    const running: {
      readonly outcomes: Stream.Stream<PipelineFile.Delivery, unknown>
      readonly stats?: Effect.Effect<Pipeline.Stats> | undefined
    } = options.engine === undefined
      ? yield* Effect.map(
        Effect.orDie(Pipeline.start(pipeline, items, {
          store,
          limiter: options.limiter,
          progress: options.progress
        })),
        (r) => ({ outcomes: Stream.map(r.outcomes, (outcome) => ({ outcome, ack: Effect.void })), stats: r.stats })
      )
      : yield* Effect.map(options.engine.start(items, { restart: options.restart === true }), (r) => ({
        ...r,
        // the stages run elsewhere: a signal ends the run now (an outcome not yet written stays with the engine,
        // for the rerun), not once the items under way come back
        outcomes: options.stop === undefined ? r.outcomes : Stream.interruptWhen(r.outcomes, options.stop)
      }))
    // an engine's stats (Pipeline.start reports its own): read and reported as the run goes on
    if (options.engine !== undefined && options.progress !== undefined && running.stats !== undefined) {
      const { every, report } = options.progress
      yield* Effect.forkScoped(
        Effect.forever(Effect.zipRight(Effect.sleep(every), Effect.flatMap(running.stats, report)))
      )
    }
    const written = new Set<string>()
    const deliver = ({ ack, outcome }: PipelineFile.Delivery) =>
      // a delivery again (a queue engine's redelivery after a crash) is acknowledged, never written twice
      resumed.done.has(outcome.id) || written.has(outcome.id)
        ? ack
        : Effect.zipRight(Effect.tap(write(outcome), () => Effect.sync(() => written.add(outcome.id))), ack)
    yield* Stream.runForEach(running.outcomes, deliver).pipe(
      Effect.catchAll((error): Effect.Effect<void, BulkFileError> => {
        if (error instanceof BulkFileError) return Effect.fail(error)
        if (error instanceof Pipeline.StageFailed || error instanceof StageError) {
          if (error instanceof StageError) stoppedBy = error
          else {
            const described = options.sender.describe(error.error as E)
            stoppedBy = new StageError({
              id: error.id,
              stage: error.stage,
              kind: described.kind,
              code: described.code,
              message: described.message,
              ...(described.statusCode === undefined ? {} : { statusCode: described.statusCode })
            })
          }
          stop = stoppedBy.toString()
          return Effect.void
        }
        if (error instanceof Pipeline.PipelineStoreError) {
          return Effect.fail(new BulkFileError({ path: checkpointsFile, operation: "write", message: error.message }))
        }
        stop = error instanceof Error ? error.message : String(error)
        return Effect.void
      })
    )
    const stats = running.stats === undefined ? undefined : yield* running.stats
    const total = seen.size
    const notDone = Math.max(0, total - alreadyDone - succeeded - failed)
    const alreadyFailed = resumed.failed.size
    const outcome: BulkRunner.Outcome = stop !== undefined || notDone > 0
      ? "stopped"
      : failed > 0 || invalid > 0 || alreadyFailed > 0
      ? "completed-with-failures"
      : "completed"
    return {
      outcome,
      stop: stop ?? (notDone > 0 ? "stopped before every item was done" : undefined),
      stoppedBy,
      alreadyDone,
      alreadyFailed,
      succeeded,
      failed,
      failuresByKind,
      invalid,
      resumedAtStage,
      notDone,
      repairedBytes: resumed.repairedBytes,
      wallMs: (yield* Clock.currentTimeMillis) - startedAt,
      stats
    }
  }))

/** @internal */
export const formatSummary = (summary: PipelineFile.Summary): string => {
  const kinds = Object.entries(summary.failuresByKind).map(([kind, n]) => `${kind} ${n}`).join(", ")
  const lines = [
    `${summary.outcome}: ${summary.succeeded} items through every stage, ${summary.failed} skipped${
      kinds === "" ? "" : ` (${kinds})`
    }, ${summary.alreadyDone} already done${
      summary.alreadyFailed > 0 ? ` (${summary.alreadyFailed} of them failures)` : ""
    }, ${summary.invalid} input lines rejected${
      summary.resumedAtStage > 0 ? `; ${summary.resumedAtStage} items resumed at the stage they had reached` : ""
    }${summary.notDone > 0 ? `; ${summary.notDone} not done (rerun to resume)` : ""}`,
    ...(summary.stop === undefined ? [] : [`stopped: ${summary.stop}`]),
    ...(summary.repairedBytes > 0 ? [`repaired a torn last output line (${summary.repairedBytes} bytes)`] : []),
    ...(summary.stats === undefined ? [] : [Pipeline.summary(summary.stats)])
  ]
  return lines.join("\n")
}
