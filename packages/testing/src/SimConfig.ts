/**
 * The scenario a simulated OpenAI runs: organizations (with their API keys, limit overrides and billing), models
 * with their limits, shared pools, context windows and tier access, faults, scripted incidents, latency, output
 * lengths and a seed. Decoded with `effect/Schema`
 * at the boundary (a scenario file or a literal), so a bad file fails with the path of the bad field.
 *
 * Every field has a default except `models`; times are milliseconds of simulated time since the simulator
 * started.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { Budget } from "@sluice/core"
import * as Effect from "effect/Effect"
import type * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

const NonNegative = Schema.Number.pipe(Schema.nonNegative())
const Probability = Schema.Number.pipe(Schema.between(0, 1))
const PositiveInt = Schema.Number.pipe(Schema.int(), Schema.positive())

/**
 * The five limits OpenAI enforces per scope. Absent means unlimited.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Limits = Schema.Struct({
  rpm: Schema.optional(PositiveInt),
  tpm: Schema.optional(PositiveInt),
  rpd: Schema.optional(PositiveInt),
  tpd: Schema.optional(PositiveInt),
  ipm: Schema.optional(PositiveInt)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Limits = typeof Limits.Type

/**
 * Which endpoints a model serves.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ModelKind = Schema.Literal("chat", "embedding", "image")

/**
 * @since 0.1.0
 * @category models
 */
export type ModelKind = typeof ModelKind.Type

/**
 * One model. With `pool`, the model charges the named pool's limits (a shared-limit family) instead of its own.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ModelSpec = Schema.Struct({
  kind: Schema.optionalWith(ModelKind, { default: () => "chat" as const }),
  limits: Schema.optionalWith(Limits, { default: () => ({}) }),
  pool: Schema.optional(Schema.String),
  contextWindow: Schema.optionalWith(PositiveInt, { default: () => 128_000 }),
  /** `false`: the organization's tier cannot use this model (403). */
  access: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /** USD per million input / output tokens, and per image; drives `insufficient_quota`. */
  pricing: Schema.optionalWith(
    Schema.Struct({
      inputPerMillion: Schema.optionalWith(NonNegative, { default: () => 0 }),
      outputPerMillion: Schema.optionalWith(NonNegative, { default: () => 0 }),
      perImage: Schema.optionalWith(NonNegative, { default: () => 0 })
    }),
    { default: () => ({ inputPerMillion: 0, outputPerMillion: 0, perImage: 0 }) }
  ),
  /** Tokens charged per generated image (GPT Image models charge image tokens against TPM). */
  imageTokens: Schema.optionalWith(NonNegative, { default: () => 0 }),
  /** Embedding vector length when the request does not name `dimensions`. */
  dimensions: Schema.optionalWith(PositiveInt, { default: () => 256 }),
  /**
   * The Batch API's enqueued-token limit for this model, per organization: a batch whose estimated tokens
   * (prompt + `n × max_tokens`, as admission estimates them) would take the organization's batches still
   * validating, in progress, finalizing or cancelling over it fails validation with `token_limit_exceeded`.
   * Absent: no limit.
   *
   * @since 0.2.0
   */
  batchQueueTokens: Schema.optional(PositiveInt)
})

/**
 * @since 0.1.0
 * @category models
 */
export type ModelSpec = typeof ModelSpec.Type

/**
 * A latency distribution in milliseconds.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Distribution = Schema.Union(
  Schema.TaggedStruct("fixed", { ms: NonNegative }),
  Schema.TaggedStruct("uniform", { min: NonNegative, max: NonNegative }),
  Schema.TaggedStruct("lognormal", { median: NonNegative, sigma: NonNegative, max: Schema.optional(NonNegative) })
)

/**
 * @since 0.1.0
 * @category models
 */
export type Distribution = typeof Distribution.Type

/**
 * The faults the simulator can inject.
 *
 * - `overloaded`: 503 "The server is overloaded or not ready yet."
 * - `server_error` / `bad_gateway` / `gateway_timeout`: 500 / 502 / 504
 * - `conflict`: 409 (a request conflicted with another on the same resource, a lock timeout: the SDK retries it)
 * - `connection_reset`: the connection drops (in-process `fetch` rejects with `TypeError: fetch failed`;
 *   over HTTP the socket is destroyed)
 * - `timeout`: the call hangs for `faults.timeoutMs` (on the `Clock`), then ends as `faults.timeoutThen` says: a
 *   504 (the default), a connection timeout or a reset. A client's own timeout, or an abort signal, cuts the hang.
 * - `slow`: the response is delayed by `faults.slowMs` more, then succeeds
 * - `stream_error` / `stream_rate_limited`: streams only (others succeed): the stream starts, then fails half-way
 *   (chat: an SSE `error` event; Responses: `response.failed` with `server_error` / `rate_limit_exceeded`)
 *
 * @since 0.1.0
 * @category schemas
 */
export const FaultKind = Schema.Literal(
  "overloaded",
  "server_error",
  "bad_gateway",
  "gateway_timeout",
  "connection_reset",
  "timeout",
  "slow",
  "stream_error",
  "stream_rate_limited",
  "conflict"
)

/**
 * @since 0.1.0
 * @category models
 */
export type FaultKind = typeof FaultKind.Type

/**
 * A scripted incident: from `fromMs` to `toMs` (simulated time since start) requests (to `models`, or all)
 * get `fault` with probability `rate`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Incident = Schema.Struct({
  fromMs: NonNegative,
  toMs: NonNegative,
  fault: FaultKind,
  rate: Schema.optionalWith(Probability, { default: () => 1 }),
  models: Schema.optional(Schema.Array(Schema.String))
})

/**
 * @since 0.1.0
 * @category models
 */
export type Incident = typeof Incident.Type

/**
 * How a `timeout` fault ends (see {@link Faults}).
 *
 * @since 0.1.0
 * @category schemas
 */
export const TimeoutThen = Schema.Literal("gateway_timeout", "connection_timeout", "connection_reset")

/**
 * @since 0.1.0
 * @category models
 */
export type TimeoutThen = typeof TimeoutThen.Type

const faultRateDefaults = {
  overloaded: 0,
  server_error: 0,
  bad_gateway: 0,
  gateway_timeout: 0,
  connection_reset: 0,
  timeout: 0,
  slow: 0,
  stream_error: 0,
  stream_rate_limited: 0,
  conflict: 0
}

/**
 * Seeded random faults: a probability per fault kind, plus the content markers that trigger
 * `content_policy_violation`, and the spend after which every call gets `insufficient_quota`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Faults = Schema.Struct({
  rates: Schema.optionalWith(
    Schema.Struct({
      overloaded: Schema.optionalWith(Probability, { default: () => 0 }),
      server_error: Schema.optionalWith(Probability, { default: () => 0 }),
      bad_gateway: Schema.optionalWith(Probability, { default: () => 0 }),
      gateway_timeout: Schema.optionalWith(Probability, { default: () => 0 }),
      connection_reset: Schema.optionalWith(Probability, { default: () => 0 }),
      timeout: Schema.optionalWith(Probability, { default: () => 0 }),
      slow: Schema.optionalWith(Probability, { default: () => 0 }),
      stream_error: Schema.optionalWith(Probability, { default: () => 0 }),
      stream_rate_limited: Schema.optionalWith(Probability, { default: () => 0 }),
      conflict: Schema.optionalWith(Probability, { default: () => 0 })
    }),
    { default: () => faultRateDefaults }
  ),
  /** How long a `timeout` fault hangs (simulated ms). */
  timeoutMs: Schema.optionalWith(NonNegative, { default: () => 600_000 }),
  /**
   * How a `timeout` fault ends once `timeoutMs` has passed:
   * - `gateway_timeout` (the default): a 504 `Gateway timeout.`, as OpenAI's gateway answers a request it gave up on
   * - `connection_timeout`: the connection times out with no answer; the in-process `fetch` rejects as undici does
   *   on a headers timeout (`TypeError: fetch failed`, cause `UND_ERR_HEADERS_TIMEOUT`), which the `openai` SDK
   *   raises as `APIConnectionTimeoutError`; over HTTP the socket is destroyed
   * - `connection_reset`: the connection drops, as for the `connection_reset` fault
   */
  timeoutThen: Schema.optionalWith(TimeoutThen, { default: () => "gateway_timeout" as const }),
  slowMs: Schema.optionalWith(NonNegative, { default: () => 30_000 }),
  contentPolicyMarker: Schema.optionalWith(Schema.String, { default: () => "[sim:content-policy]" }),
  /**
   * After this much simulated spend (USD) by an organization, its every call gets 429 `insufficient_quota`. Each
   * organization has its own spend; `organizations.<id>.quotaUsd` overrides this for one of them.
   */
  quotaUsd: Schema.optional(NonNegative)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Faults = typeof Faults.Type

/**
 * How the simulated limiter enforces limits.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Enforcement = Schema.Struct({
  /**
   * Sub-minute enforcement: each per-minute limit also gets a bucket of `limit × subWindowMs / 60s` (at least
   * 1), refilled at the same rate, so a whole minute's burst at once is throttled. Absent: off.
   */
  subWindowMs: Schema.optional(Schema.Number.pipe(Schema.positive(), Schema.lessThanOrEqualTo(60_000))),
  /**
   * The token estimate charged at admission for chat and Responses calls: `sum` (the default) charges prompt tokens
   * plus `n × max tokens`, the safer reading clients reserve; `max` charges the larger of the two, the literal rule
   * of OpenAI's rate-limit guide ("the maximum of max_tokens and the estimated number of tokens based on the
   * character count of your request").
   */
  estimate: Schema.optionalWith(Schema.Literal("sum", "max"), { default: () => "sum" as const }),
  /**
   * What becomes of the estimate charged at admission (chat and Responses calls, embeddings, images): `admission`
   * (the default) trues it up or down to the call's usage at once (the simulator knows the output in advance);
   * `never` keeps it, as a server that counts `max_tokens` whatever the answer used would (OpenAI's rate-limit
   * guide advises setting `max_tokens` close to the expected size because the limit counts it). A failed call is
   * refunded its tokens either way. Whether OpenAI trues up, and when, is not documented.
   *
   * @since 0.2.0
   */
  settle: Schema.optionalWith(Schema.Literal("admission", "never"), { default: () => "admission" as const }),
  /** Rejected requests (429 on tokens, 400s, faults) still consume a request from RPM/RPD. */
  rejectedCountAgainstRpm: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /** Send `retry-after` (whole seconds, rounded up) on 429s. */
  retryAfter: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /** `retry-after` as whole seconds (the default) or as an HTTP date. */
  retryAfterFormat: Schema.optionalWith(Schema.Literal("seconds", "date"), { default: () => "seconds" as const }),
  /** Send `retry-after-ms` on 429s. */
  retryAfterMs: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /** Send `x-ratelimit-*` headers. */
  rateLimitHeaders: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /**
   * A 429's message: `detailed` (the default, as OpenAI words it: "Limit 30000, Used 29500, Requested 900. Please
   * try again in 1.8s.") or `bare` (which limit refused the call and nothing else: no figures and no "try again
   * in", as some gateways and proxies answer).
   *
   * @since 0.2.0
   */
  rateLimitMessage: Schema.optionalWith(Schema.Literal("detailed", "bare"), {
    default: () => "detailed" as const
  })
})

/**
 * @since 0.1.0
 * @category models
 */
export type Enforcement = typeof Enforcement.Type

/**
 * Output length: `fixedTokens` if set, else `ceil(fraction × max tokens)` (at least 1). Max tokens is the
 * request's `max_tokens` / `max_completion_tokens` / `max_output_tokens`, else `defaultMaxTokens`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Output = Schema.Struct({
  fraction: Schema.optionalWith(Probability, { default: () => 0.5 }),
  fixedTokens: Schema.optional(Schema.Number.pipe(Schema.int(), Schema.nonNegative())),
  defaultMaxTokens: Schema.optionalWith(PositiveInt, { default: () => 1024 })
})

/**
 * @since 0.1.0
 * @category models
 */
export type Output = typeof Output.Type

/**
 * Latency: `request` once per call (time to first byte), plus `perOutputTokenMs` per generated token.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Latency = Schema.Struct({
  request: Schema.optionalWith(Distribution, { default: () => ({ _tag: "fixed" as const, ms: 0 }) }),
  perOutputTokenMs: Schema.optionalWith(NonNegative, { default: () => 0 })
})

/**
 * @since 0.1.0
 * @category models
 */
export type Latency = typeof Latency.Type

/**
 * Batch API timing: a batch is `validating` for `validatingMs`, `in_progress` for
 * `inProgressMs + perRequestMs × requests`, `finalizing` for `finalizingMs`, then `completed`. Its requests
 * finish evenly over the `in_progress` time (the `i`-th of `n` after `(i + 1) / n` of it; its `request_counts.completed`
 * counts those done so far, since 0.2.0, and `failed` is known once it completes). A batch still in
 * progress 24 hours after it was created is `expired`: the requests finished by then are in its output (and error)
 * file, the others in its error file with `batch_expired`. A cancelled batch keeps the results of the requests
 * finished before the cancel, in its output (and error) file; the others are in neither. A line holding
 * `[sim:batch-invalid]` fails the batch's validation, naming that line (`invalid_request`). A batch's output or
 * error file takes `downloadMs` (default 0, since 0.2.0) to download: a client can be stopped in the middle of one.
 *
 * @since 0.1.0
 * @category schemas
 */
export const BatchTiming = Schema.Struct({
  validatingMs: Schema.optionalWith(NonNegative, { default: () => 5_000 }),
  inProgressMs: Schema.optionalWith(NonNegative, { default: () => 60_000 }),
  perRequestMs: Schema.optionalWith(NonNegative, { default: () => 10 }),
  finalizingMs: Schema.optionalWith(NonNegative, { default: () => 5_000 }),
  downloadMs: Schema.optionalWith(NonNegative, { default: () => 0 })
})

/**
 * Background load: other clients of an organization consuming a model's (or pool's) limits continuously, per
 * minute.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Background = Schema.Record({
  key: Schema.String,
  value: Schema.Struct({
    rpm: Schema.optional(NonNegative),
    tpm: Schema.optional(NonNegative),
    ipm: Schema.optional(NonNegative)
  })
})

/**
 * One organization of a multi-organization scenario. Every organization has its own buckets for every model (the
 * model's or pool's limits, unless `limits` overrides them), its own spend against its own `quotaUsd`, and is named
 * in its responses' `openai-organization` header and in its 429 messages.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Organization = Schema.Struct({
  /** The API keys of this organization. A key may belong to several; `OpenAI-Organization` then picks one. */
  apiKeys: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] }),
  /**
   * Limits that replace the scenario's for this organization, by model name (or pool name for a pooled model): a
   * different tier, say. Models not named keep the scenario's limits.
   */
  limits: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Limits }), { default: () => ({}) }),
  /** This organization's `insufficient_quota` threshold (USD); default `faults.quotaUsd`. */
  quotaUsd: Schema.optional(NonNegative),
  /** When set, this organization's 429 messages read "in project proj_… organization org-…". */
  project: Schema.optional(Schema.String),
  /** Model access that differs from the scenario's (`false`: 403), by model name. */
  access: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Schema.Boolean }), { default: () => ({}) }),
  /** Background load on this organization's buckets (the default organization falls back to `background`). */
  background: Schema.optional(Background)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Organization = typeof Organization.Type

/**
 * The whole scenario.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Scenario = Schema.Struct({
  name: Schema.optionalWith(Schema.String, { default: () => "custom" }),
  /** Free text: what the scenario demonstrates. */
  description: Schema.optional(Schema.String),
  /** The default organization: the one of `apiKeys`, and of any key when no key is configured anywhere. */
  organization: Schema.optionalWith(Schema.String, { default: () => "org-sim" }),
  /** When set, the default organization's 429 messages read "in project proj_… organization org-…". */
  project: Schema.optional(Schema.String),
  /**
   * The default organization's API keys. Accepted keys are these and every organization's `apiKeys`; when there are
   * none at all, any `Bearer` key is accepted.
   */
  apiKeys: Schema.optionalWith(Schema.Array(Schema.String), { default: () => [] }),
  /**
   * More organizations, by id (as in `openai-organization`), each with its own buckets, spend and quota. A request
   * belongs to its API key's organization; a key of several organizations (or any key, when none are configured)
   * picks one with the `OpenAI-Organization` header, else its first. Once organizations are configured, a header
   * naming an organization the key does not belong to is a 401 `mismatched_organization`; without `organizations`
   * the header is ignored. An entry for `organization` configures the default organization.
   */
  organizations: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Organization }), {
    default: () => ({})
  }),
  models: Schema.Record({ key: Schema.String, value: ModelSpec }),
  /** Shared-limit pools, by name; a model with `pool` charges these limits. */
  pools: Schema.optionalWith(Schema.Record({ key: Schema.String, value: Limits }), { default: () => ({}) }),
  /**
   * Project-level limits, by project id (as sent in the `OpenAI-Project` header), then by model or pool name. A
   * request naming a project is charged against the organization's limits and its project's, all or nothing.
   */
  projects: Schema.optionalWith(
    Schema.Record({
      key: Schema.String,
      value: Schema.Struct({ limits: Schema.Record({ key: Schema.String, value: Limits }) })
    }),
    { default: () => ({}) }
  ),
  /**
   * Background load: other clients of the default organization consuming a model's (or pool's) limits
   * continuously, per minute (`{ rpm, tpm, ipm }`), so the remaining headers tell a client less than its own
   * accounting would. Other organizations declare theirs in `organizations.<id>.background`.
   */
  background: Schema.optionalWith(Background, { default: () => ({}) }),
  seed: Schema.optionalWith(Schema.Number.pipe(Schema.int()), { default: () => 1 }),
  enforcement: Schema.optionalWith(Enforcement, {
    default: () => ({
      estimate: "sum" as const,
      settle: "admission" as const,
      rejectedCountAgainstRpm: true,
      retryAfter: true,
      retryAfterFormat: "seconds" as const,
      retryAfterMs: true,
      rateLimitHeaders: true,
      rateLimitMessage: "detailed" as const
    })
  }),
  output: Schema.optionalWith(Output, { default: () => ({ fraction: 0.5, defaultMaxTokens: 1024 }) }),
  latency: Schema.optionalWith(Latency, {
    default: () => ({ request: { _tag: "fixed" as const, ms: 0 }, perOutputTokenMs: 0 })
  }),
  faults: Schema.optionalWith(Faults, {
    default: () => ({
      rates: faultRateDefaults,
      timeoutMs: 600_000,
      timeoutThen: "gateway_timeout" as const,
      slowMs: 30_000,
      contentPolicyMarker: "[sim:content-policy]"
    })
  }),
  incidents: Schema.optionalWith(Schema.Array(Incident), { default: () => [] }),
  batch: Schema.optionalWith(BatchTiming, {
    default: () => ({ validatingMs: 5_000, inProgressMs: 60_000, perRequestMs: 10, finalizingMs: 5_000, downloadMs: 0 })
  }),
  /**
   * What `stats` keeps: `"full"` (default) every attempt and admission, for tests that look at each;
   * `"counts"` only the counters (by status, code, key and model, and spend), for long runs (a bulk job of
   * a million lines, a soak test) in constant memory — `attempts` and `admissions` are then empty.
   */
  stats: Schema.optionalWith(Schema.Literal("full", "counts"), { default: () => "full" as const })
})

/**
 * A decoded scenario (every default filled in).
 *
 * @since 0.1.0
 * @category models
 */
export type Scenario = typeof Scenario.Type

/**
 * What a scenario file or literal may contain (defaults optional).
 *
 * @since 0.1.0
 * @category models
 */
export type ScenarioInput = typeof Scenario.Encoded

/**
 * A scenario failed to decode or could not be read. `message` names the path of the bad field.
 *
 * @since 0.1.0
 * @category errors
 */
export class ScenarioError extends Schema.TaggedError<ScenarioError>("@sluice/testing/ScenarioError")("ScenarioError", {
  source: Schema.String,
  message: Schema.String
}) {}

/**
 * Decodes an unknown value into a {@link Scenario}, failing with a {@link ScenarioError} whose message carries
 * the path (e.g. `["models"]["gpt-4o"]["limits"]["rpm"]`).
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = (input: unknown, source = "<scenario>"): Effect.Effect<Scenario, ScenarioError> =>
  Schema.decodeUnknown(Scenario, { errors: "all", onExcessProperty: "error" })(input).pipe(
    Effect.mapError((error) =>
      new ScenarioError({ source, message: `Invalid scenario ${source}:\n${formatIssues(error)}` })
    )
  )

const formatIssues = (error: ParseResult.ParseError): string =>
  Budget.formatIssues(Budget.issuesOf(error, { quoteKeys: true, concise: true }), { at: true })

/**
 * Builds a {@link Scenario} from a literal, synchronously (throws a {@link ScenarioError} when invalid).
 *
 * @since 0.1.0
 * @category constructors
 * @example
 * ```ts
 * import { SimConfig } from "@sluice/testing"
 *
 * const scenario = SimConfig.make({
 *   models: { "gpt-4o-mini": { limits: { rpm: 500, tpm: 200_000 } } },
 *   faults: { rates: { overloaded: 0.05 } },
 *   seed: 7
 * })
 * ```
 */
export const make = (input: ScenarioInput): Scenario => Effect.runSync(decode(input, "<literal>"))

/**
 * Reads and decodes a JSON scenario file.
 *
 * @since 0.1.0
 * @category decoding
 */
export const load = (path: string): Effect.Effect<Scenario, ScenarioError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(path).pipe(
      Effect.mapError((error) =>
        new ScenarioError({ source: path, message: `Cannot read scenario ${path}: ${error.message}` })
      )
    )
    const json = yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (error) =>
        new ScenarioError({ source: path, message: `Scenario ${path} is not valid JSON: ${String(error)}` })
    })
    return yield* decode(json, path)
  })
