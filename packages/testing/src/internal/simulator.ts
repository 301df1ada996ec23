/**
 * The simulated OpenAI: a synchronous, deterministic state machine. `handle(request, now)` judges one request
 * at simulated time `now` (ms) and returns what to send and how long to wait before sending it. It has its own
 * model of OpenAI's limiter (written from the documented behaviour, not from `@sluice/core`).
 *
 * @internal
 */
import type * as SimConfig from "../SimConfig.js"
import type * as SimStats from "../SimStats.js"
import type * as Simulator from "../Simulator.js"
import * as Bucket from "./bucket.js"
import { ceilMs, formatGoDuration } from "./duration.js"
import * as Prng from "./prng.js"

/** @internal */
export type SimRequest = Simulator.SimRequest
/** @internal */
export type SseChunk = Simulator.SseChunk
/** @internal */
export type SimResponse = Simulator.SimResponse

const DAY = 86_400_000
const MINUTE = 60_000
const RATE_LIMITS_URL = "Visit https://platform.openai.com/account/rate-limits to learn more."

type LimitName = "rpm" | "tpm" | "rpd" | "tpd" | "ipm"
type Dim = "requests" | "tokens" | "images"

interface ScopeBuckets {
  readonly name: string
  /** The organization whose buckets these are. */
  readonly organization: string
  /** Set on a project-level scope. */
  readonly project: string | undefined
  readonly limits: SimConfig.Limits
  /** Per limit: the main bucket and, with sub-minute enforcement, a smaller one. */
  readonly buckets: Partial<Record<LimitName, ReadonlyArray<Bucket.Bucket>>>
}

const limitDims: Record<LimitName, Dim> = {
  rpm: "requests",
  rpd: "requests",
  tpm: "tokens",
  tpd: "tokens",
  ipm: "images"
}
const limitLabel: Record<LimitName, string> = {
  rpm: "requests per min (RPM)",
  tpm: "tokens per min (TPM)",
  rpd: "requests per day (RPD)",
  tpd: "tokens per day (TPD)",
  ipm: "images per min (IPM)"
}
const limitOrder: ReadonlyArray<LimitName> = ["rpd", "tpd", "rpm", "ipm", "tpm"]
/** The limits a single request's size can exceed for good (TPM first, as OpenAI reports it). */
const sizeLimits: ReadonlyArray<"tpm" | "tpd" | "ipm"> = ["tpm", "tpd", "ipm"]
/** The `x-ratelimit-*` headers, per limit reported, in the order they are written. */
const headerLimits: ReadonlyArray<readonly [LimitName, { limit: string; remaining: string; reset: string }]> = (
  [["rpm", "requests"], ["tpm", "tokens"], ["ipm", "images"]] as const
).map(([limit, suffix]) => [limit, {
  limit: `x-ratelimit-limit-${suffix}`,
  remaining: `x-ratelimit-remaining-${suffix}`,
  reset: `x-ratelimit-reset-${suffix}`
}])
/** Per header limit reported: its index in `headerLimits`, its bucket and that bucket's level then. */
type RateLevels = Array<number | Bucket.Bucket>

/** Writes the rate-limit headers of `levels` (see `rateLevels`) into `out`, after what it has. */
const writeRateHeaders = (levels: RateLevels | undefined, out: Record<string, string>): Record<string, string> => {
  if (levels === undefined) return out
  for (let i = 0; i < levels.length; i += 3) {
    const names = headerLimits[levels[i] as number][1]
    const b = levels[i + 1] as Bucket.Bucket
    const level = levels[i + 2] as number
    out[names.limit] = String(b.limit)
    out[names.remaining] = String(Math.max(0, Math.floor(level)))
    out[names.reset] = formatGoDuration(Bucket.untilFullAt(b, level))
  }
  return out
}
const hexCodes = Array.from("0123456789abcdef", (c) => c.charCodeAt(0))

interface ApiError {
  readonly status: number
  readonly message: string
  readonly type: string
  readonly param: string | null
  readonly code: string | number | null
}

interface Endpoint {
  readonly kind: "chat" | "responses" | "embeddings" | "images"
}

const endpoints: Record<string, Endpoint> = {
  "/v1/chat/completions": { kind: "chat" },
  "/v1/responses": { kind: "responses" },
  "/v1/embeddings": { kind: "embeddings" },
  "/v1/images/generations": { kind: "images" }
}

const modelKindFor: Record<Endpoint["kind"], SimConfig.ModelKind> = {
  chat: "chat",
  responses: "chat",
  embeddings: "embedding",
  images: "image"
}

/** Estimated tokens for a text: ceil(chars / 4), OpenAI's own rule of thumb. Deterministic. @internal */
export const estimateTokens = (text: string): number => Math.ceil(text.length / 4)

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const textOf = (u: unknown): string => {
  if (typeof u === "string") return u
  if (Array.isArray(u)) return u.map(textOf).join("")
  if (isRecord(u)) {
    if (typeof u.text === "string") return u.text
    if (u.content !== undefined) return textOf(u.content)
    if (typeof u.input_text === "string") return u.input_text
  }
  return ""
}

interface Parsed {
  readonly model: string
  readonly promptTokens: number
  /** Max output tokens per choice, and whether the request named it. */
  readonly maxTokens: number
  readonly explicitMax: boolean
  readonly n: number
  readonly stream: boolean
  readonly includeUsage: boolean
  readonly text: string
  readonly body: Record<string, unknown>
  readonly inputs: ReadonlyArray<string>
}

interface Served {
  readonly body: unknown
  readonly promptTokens: number
  readonly outputTokens: number
  readonly outputPerChoice: number
  readonly images: number
}

interface FileRecord {
  readonly id: string
  readonly filename: string
  readonly purpose: string
  readonly content: string
  readonly createdAt: number
}

interface BatchRecord {
  readonly id: string
  readonly inputFileId: string
  readonly endpoint: string
  readonly completionWindow: string
  readonly createdAt: number
  readonly metadata: unknown
  readonly lines: ReadonlyArray<{ custom_id: string; method: string; url: string; body: Record<string, unknown> }>
  readonly errors: ReadonlyArray<{ code: string; message: string; line: number | null; param: string | null }>
  /** The organization that created the batch (and is billed for it). */
  readonly organization: string
  /** The model of its lines (the first line's, when they disagree: the batch fails then). */
  readonly model: string
  /** Its estimated tokens, held against the model's enqueued-token limit while it is not finished. */
  readonly tokens: number
  cancelAt: number | undefined
  /** Its output and error files are written (it completed, expired or was cancelled). */
  finished: boolean
  outputFileId: string | null
  errorFileId: string | null
  counts: { total: number; completed: number; failed: number }
}

/** @internal */
/** A request's key, `[req:…]` in its JSON body (see `requestKeyOf`). */
/**
 * On a chat completion's answer (`Response`): the body as the value its JSON text is written from, fresh per answer
 * and shared with nothing, for the in-process `fetch` to hand to `json()` as `JSON.parse` of that text would give
 * it (a JSON round trip per call saved). Its text is still what `body` reads.
 *
 * @internal
 */
export const jsonValue: unique symbol = Symbol.for("@sluice/testing/Simulator/jsonValue")

/**
 * A 200 answer whose headers and body text are written when first read, as they were at the answer (`levels` read
 * then): a caller that never reads them (`Simulator.handle` in a simulated day) does not pay for them. Made here,
 * not in `handle`, so that it holds only what it writes from (not the request and its judgement).
 */
const answer = (
  base: Record<string, string>,
  levels: RateLevels | undefined,
  delay: number,
  value: unknown,
  chat: boolean
): SimResponse & { readonly [jsonValue]: unknown } => {
  let headers: Record<string, string> | undefined
  let text: string | undefined
  return {
    _tag: "Response",
    status: 200,
    get headers() {
      if (headers === undefined) {
        headers = writeRateHeaders(levels, { ...base })
        headers["openai-processing-ms"] = String(Math.round(delay))
      }
      return headers
    },
    get body() {
      return text ??= JSON.stringify(value)
    },
    delayMs: delay,
    [jsonValue]: chat ? value : undefined
  }
}

export const requestKeyPattern = /\[req:([^\]]+)\]/

/** `requestKeyOf` cannot tell without the body's JSON text. */
export const unknownKey: unique symbol = Symbol("unknownKey")

/** Whether `JSON.stringify` writes some character of `s` escaped: a quote, a backslash, a control, a surrogate. */
const escaped = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return true
  }
  return false
}

/**
 * The request key `[req:…]` as `requestKeyPattern` finds it in `JSON.stringify(body)`, read from the body's strings
 * in the order the JSON text has them, without writing that text (once per request). A key's `[req:` lies in one
 * string of the text (escapes start with a backslash, which it has none of), so the first string holding `[req:`
 * holds the match's start; when its `]` is in the same string and nothing between needs escaping, the JSON text has
 * the same characters there. Otherwise (or for a body that is not plain JSON data: a `toJSON`, a class, a cycle)
 * `unknownKey`, and the caller matches the JSON text.
 */
export const requestKeyOf = (body: unknown): string | undefined | typeof unknownKey => {
  let result: string | undefined | typeof unknownKey = undefined
  const inString = (s: string): boolean => {
    const at = s.indexOf("[req:")
    if (at < 0) return false
    const end = s.indexOf("]", at + 5)
    const key = end > at + 5 ? s.slice(at + 5, end) : undefined
    result = key === undefined || escaped(key) ? unknownKey : key
    return true
  }
  /** Walks `value` in JSON order; true once the first `[req:` is seen (or the walk gives up). */
  const walk = (value: unknown, depth: number): boolean => {
    if (typeof value === "string") return inString(value)
    if (value === null || typeof value === "number" || typeof value === "boolean" || value === undefined) {
      return false
    }
    if (typeof value !== "object" || depth > 32) {
      result = unknownKey
      return true
    }
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) if (walk(value[i], depth + 1)) return true
      return false
    }
    const proto = Object.getPrototypeOf(value)
    if ((proto !== Object.prototype && proto !== null) || "toJSON" in value) {
      result = unknownKey
      return true
    }
    for (const key of Object.keys(value)) {
      const field = (value as Record<string, unknown>)[key]
      if (field === undefined) continue
      if (typeof field === "function" || typeof field === "symbol") {
        result = unknownKey
        return true
      }
      if (inString(key) || walk(field, depth + 1)) return true
    }
    return false
  }
  walk(body, 0)
  return result
}

export class Model {
  readonly scopes = new Map<string, ScopeBuckets>()
  readonly attempts: Array<SimStats.Attempt> = []
  readonly admissions: Array<SimStats.Admission> = []
  // counters, kept whatever `scenario.stats` says (the arrays above only with "full")
  private readonly byStatus: Record<string, number> = {}
  private readonly byCode: Record<string, number> = {}
  private readonly attemptsByKey: Record<string, number> = {}
  private readonly tokensByModel: Record<string, number> = {}
  private readonly requestsByModel: Record<string, number> = {}
  readonly files = new Map<string, FileRecord>()
  readonly batches = new Map<string, BatchRecord>()
  /** Total spend (USD), all organizations. */
  spendUsd = 0
  /** Spend (USD) per organization. */
  readonly spendByOrganization = new Map<string, number>()
  private readonly faultRng: Prng.Prng
  private readonly latencyRng: Prng.Prng
  private readonly idRng: Prng.Prng
  private readonly contentRng: Prng.Prng

  constructor(readonly scenario: SimConfig.Scenario, readonly startedAt: number) {
    this.faultRng = Prng.derive(scenario.seed, "faults")
    this.latencyRng = Prng.derive(scenario.seed, "latency")
    this.idRng = Prng.derive(scenario.seed, "ids")
    this.contentRng = Prng.derive(scenario.seed, "content")
  }

  // ---------------------------------------------------------------------------
  // limiter
  // ---------------------------------------------------------------------------

  /**
   * The organization scope of a model (its pool or itself, with the organization's limits), then the project scope
   * when it has limits.
   */
  scopesFor(
    modelName: string,
    project: string | undefined,
    now: number,
    organization: string = this.scenario.organization
  ): Array<ScopeBuckets> {
    const spec = this.scenario.models[modelName]
    const name = spec.pool !== undefined ? spec.pool : modelName
    const base = spec.pool !== undefined ? (this.scenario.pools[spec.pool] ?? spec.limits) : spec.limits
    const org = this.scopeFor(organization, name, undefined, this.orgSpec(organization)?.limits[name] ?? base, now)
    const projectLimits = project === undefined ? undefined : this.scenario.projects[project]?.limits[name]
    return projectLimits === undefined || project === undefined
      ? [org]
      : [org, this.scopeFor(organization, name, project, projectLimits, now)]
  }

  private scopeFor(
    organization: string,
    name: string,
    project: string | undefined,
    limits: SimConfig.Limits,
    now: number
  ): ScopeBuckets {
    const key = `${organization}/${project === undefined ? name : `project:${project}/${name}`}`
    let scope = this.scopes.get(key)
    if (scope === undefined) {
      const buckets: Partial<Record<LimitName, ReadonlyArray<Bucket.Bucket>>> = {}
      const sub = this.scenario.enforcement.subWindowMs
      for (const limit of limitOrder) {
        const amount = limits[limit]
        if (amount === undefined) continue
        const window = limit === "rpd" || limit === "tpd" ? DAY : MINUTE
        const list = [Bucket.make(amount, amount, window, now)]
        if (window === MINUTE && sub !== undefined && sub < MINUTE) {
          list.push(Bucket.make(amount, Math.max(1, (amount * sub) / MINUTE), window, now))
        }
        buckets[limit] = list
      }
      const background = project === undefined ? this.backgroundOf(organization)[name] : undefined
      if (background !== undefined) {
        const perMs: Record<Dim, number> = {
          requests: (background.rpm ?? 0) / MINUTE,
          tokens: (background.tpm ?? 0) / MINUTE,
          images: (background.ipm ?? 0) / MINUTE
        }
        for (const limit of limitOrder) for (const b of buckets[limit] ?? []) b.drain = perMs[limitDims[limit]]
      }
      scope = { name, organization, project, limits, buckets }
      this.scopes.set(key, scope)
    }
    for (const list of Object.values(scope.buckets)) for (const b of list) Bucket.refill(b, now)
    return scope
  }

  // ---------------------------------------------------------------------------
  // organizations
  // ---------------------------------------------------------------------------

  private orgSpec(organization: string): SimConfig.Organization | undefined {
    return Object.prototype.hasOwnProperty.call(this.scenario.organizations, organization)
      ? this.scenario.organizations[organization]
      : undefined
  }

  /** Every organization, the default first. */
  private organizationIds(): ReadonlyArray<string> {
    const ids = [this.scenario.organization]
    for (const id of Object.keys(this.scenario.organizations)) if (!ids.includes(id)) ids.push(id)
    return ids
  }

  /** The organizations an API key belongs to, in order; undefined when the key is not accepted. */
  private organizationsOfKey(apiKey: string): ReadonlyArray<string> | undefined {
    const s = this.scenario
    const mine: Array<string> = []
    const anyConfigured = s.apiKeys.length > 0 || Object.values(s.organizations).some((o) => o.apiKeys.length > 0)
    if (s.apiKeys.includes(apiKey)) mine.push(s.organization)
    for (const [id, spec] of Object.entries(s.organizations)) {
      if (spec.apiKeys.includes(apiKey) && !mine.includes(id)) mine.push(id)
    }
    if (mine.length > 0) return mine
    return anyConfigured ? undefined : this.organizationIds()
  }

  private projectOf(organization: string): string | undefined {
    return this.orgSpec(organization)?.project ??
      (organization === this.scenario.organization ? this.scenario.project : undefined)
  }

  private backgroundOf(organization: string): SimConfig.Scenario["background"] {
    return this.orgSpec(organization)?.background ??
      (organization === this.scenario.organization ? this.scenario.background : {})
  }

  private quotaOf(organization: string): number | undefined {
    return this.orgSpec(organization)?.quotaUsd ?? this.scenario.faults.quotaUsd
  }

  private spendOf(organization: string): number {
    return this.spendByOrganization.get(organization) ?? 0
  }

  private addSpend(organization: string, usd: number): void {
    this.spendUsd += usd
    this.spendByOrganization.set(organization, this.spendOf(organization) + usd)
  }

  /** Headers report, per dimension, the scope with the least room: written into `out` (after what it has). */
  private rateHeaders(scopes: ReadonlyArray<ScopeBuckets>, out: Record<string, string>): Record<string, string> {
    return writeRateHeaders(this.rateLevels(scopes), out)
  }

  /**
   * What the rate-limit headers report, as of now: per header limit in table order, the bucket of the scope with
   * the least room and its level (`undefined` without rate-limit headers), for `writeRateHeaders` to write now or
   * later.
   */
  private rateLevels(scopes: ReadonlyArray<ScopeBuckets>): RateLevels | undefined {
    if (!this.scenario.enforcement.rateLimitHeaders) return undefined
    const levels: RateLevels = []
    for (let i = 0; i < headerLimits.length; i++) {
      const limit = headerLimits[i][0]
      let b: Bucket.Bucket | undefined = undefined
      for (const scope of scopes) {
        const candidate = scope.buckets[limit]?.[0]
        if (candidate !== undefined && (b === undefined || candidate.level < b.level)) b = candidate
      }
      if (b !== undefined) levels.push(i, b, b.level)
    }
    return levels
  }

  /** Rejected requests still count against RPM/RPD (when configured and there is room). */
  private chargeRejected(scopes: ReadonlyArray<ScopeBuckets>): void {
    if (!this.scenario.enforcement.rejectedCountAgainstRpm) return
    const lists = scopes.flatMap((scope) => [scope.buckets.rpm ?? [], scope.buckets.rpd ?? []].flat())
    if (lists.every((b) => Bucket.waitFor(b, 1) === 0)) { for (const b of lists) b.level -= 1 }
  }

  private charge(scopes: ReadonlyArray<ScopeBuckets>, dim: Dim, amount: number): void {
    for (const scope of scopes) {
      for (const limit of limitOrder) {
        if (limitDims[limit] !== dim) continue
        for (const b of scope.buckets[limit] ?? []) b.level -= amount
      }
    }
  }

  // ---------------------------------------------------------------------------
  // helpers
  // ---------------------------------------------------------------------------

  /** The characters of a request id (`req_` and 32 hex digits), reused: one string built per id. */
  private readonly idCodes: Array<number> = Array.from("req_", (c) => c.charCodeAt(0)).concat(Array(32).fill(0))

  private requestId(): string {
    const codes = this.idCodes
    for (let i = 4; i < 36; i++) codes[i] = hexCodes[this.idRng.int(16)]
    return String.fromCharCode.apply(null, codes)
  }

  private sample(d: SimConfig.Distribution): number {
    switch (d._tag) {
      case "fixed":
        return d.ms
      case "uniform":
        return d.min + this.latencyRng.next() * (d.max - d.min)
      case "lognormal": {
        const u1 = Math.max(this.latencyRng.next(), 1e-12)
        const u2 = this.latencyRng.next()
        const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2)
        const v = d.median * Math.exp(d.sigma * z)
        return d.max !== undefined ? Math.min(v, d.max) : v
      }
    }
  }

  private orgPhrase(project: string | undefined, organization: string = this.scenario.organization): string {
    const p = project ?? this.projectOf(organization)
    return p !== undefined
      ? `in project ${p} organization ${organization}`
      : `in organization ${organization}`
  }

  private errorResponse(
    error: ApiError,
    base: Record<string, string>,
    delayMs: number,
    extraHeaders: Record<string, string> = {}
  ): SimResponse {
    return {
      _tag: "Response",
      status: error.status,
      headers: { ...base, ...extraHeaders, "openai-processing-ms": String(Math.round(delayMs)) },
      body: JSON.stringify({
        error: { message: error.message, type: error.type, param: error.param, code: error.code }
      }),
      delayMs
    }
  }

  private record(
    now: number,
    request: SimRequest,
    requestId: string,
    key: string | undefined,
    model: string | undefined,
    status: number,
    extra: {
      code?: string | undefined
      limit?: string | undefined
      fault?: string | undefined
      organization?: string | undefined
      latencyMs?: number | undefined
    } = {}
  ): void {
    const status_ = String(status)
    this.byStatus[status_] = (this.byStatus[status_] ?? 0) + 1
    if (extra.code !== undefined) this.byCode[extra.code] = (this.byCode[extra.code] ?? 0) + 1
    if (key !== undefined) this.attemptsByKey[key] = (this.attemptsByKey[key] ?? 0) + 1
    if (this.scenario.stats === "counts") return
    this.attempts.push({
      at: now - this.startedAt,
      requestId,
      method: request.method,
      path: request.path,
      key,
      model,
      status,
      code: extra.code,
      limit: extra.limit,
      fault: extra.fault,
      organization: extra.organization,
      ...(extra.latencyMs === undefined ? {} : { latencyMs: extra.latencyMs })
    })
  }

  private admit(admission: SimStats.Admission): void {
    this.tokensByModel[admission.model] = (this.tokensByModel[admission.model] ?? 0) + admission.tokens
    this.requestsByModel[admission.model] = (this.requestsByModel[admission.model] ?? 0) + admission.requests
    if (this.scenario.stats !== "counts") this.admissions.push(admission)
  }

  private keyOf(request: SimRequest): string | undefined {
    const header = request.headers["x-sim-request-key"]
    if (header !== undefined && header !== "") return header
    if (request.body === undefined) return undefined
    const found = requestKeyOf(request.body)
    if (found !== unknownKey) return found
    const match = requestKeyPattern.exec(JSON.stringify(request.body))
    return match === null ? undefined : match[1]
  }

  // ---------------------------------------------------------------------------
  // request parsing and generation (shared with the Batch API)
  // ---------------------------------------------------------------------------

  private parse(kind: Endpoint["kind"], body: Record<string, unknown>): Parsed | ApiError {
    const model = body.model
    if (typeof model !== "string" || model === "") {
      return {
        status: 400,
        message: "you must provide a model parameter",
        type: "invalid_request_error",
        param: null,
        code: null
      }
    }
    const output = this.scenario.output
    const num = (u: unknown): number | undefined => (typeof u === "number" && Number.isFinite(u) ? u : undefined)
    const missing = (param: string): ApiError => ({
      status: 400,
      message: `Missing required parameter: '${param}'.`,
      type: "invalid_request_error",
      param,
      code: "missing_required_parameter"
    })
    /** A request that generates text (chat, responses): one input, `max` tokens at most (else the default). */
    const generating = (
      text: string,
      max: number | undefined,
      options: { readonly n: number; readonly includeUsage: boolean }
    ): Parsed => ({
      model,
      text,
      body,
      inputs: [text],
      promptTokens: estimateTokens(text),
      maxTokens: max ?? output.defaultMaxTokens,
      explicitMax: max !== undefined,
      n: options.n,
      stream: body.stream === true,
      includeUsage: options.includeUsage
    })
    switch (kind) {
      case "chat": {
        if (!Array.isArray(body.messages)) return missing("messages")
        const text = textOf(body.messages)
        const streamOptions = isRecord(body.stream_options) ? body.stream_options : {}
        return generating(text, num(body.max_completion_tokens) ?? num(body.max_tokens), {
          n: Math.max(1, num(body.n) ?? 1),
          includeUsage: streamOptions.include_usage === true
        })
      }
      case "responses": {
        if (body.input === undefined) return missing("input")
        const text = textOf(body.input) + (typeof body.instructions === "string" ? body.instructions : "")
        return generating(text, num(body.max_output_tokens), { n: 1, includeUsage: true })
      }
      case "embeddings": {
        const input = body.input
        if (input === undefined) return missing("input")
        const inputs: Array<string> = typeof input === "string"
          ? [input]
          : Array.isArray(input)
          ? input.every((x) => typeof x === "number")
            ? [input.map(() => "abcd").join("")]
            : input.map((x) => (typeof x === "string" ? x : Array.isArray(x) ? x.map(() => "abcd").join("") : ""))
          : []
        const text = inputs.join("")
        return {
          model,
          text,
          body,
          inputs,
          promptTokens: inputs.reduce((acc, s) => acc + estimateTokens(s), 0),
          maxTokens: 0,
          explicitMax: true,
          n: 1,
          stream: false,
          includeUsage: false
        }
      }
      case "images": {
        if (typeof body.prompt !== "string") return missing("prompt")
        return {
          model,
          text: body.prompt,
          body,
          inputs: [body.prompt],
          promptTokens: estimateTokens(body.prompt),
          maxTokens: this.scenario.models[model]?.imageTokens ?? 0,
          explicitMax: false,
          n: Math.max(1, num(body.n) ?? 1),
          stream: false,
          includeUsage: false
        }
      }
    }
  }

  private estimate(kind: Endpoint["kind"], p: Parsed): number {
    switch (kind) {
      case "embeddings":
        return p.promptTokens
      case "images": {
        const spec = this.scenario.models[p.model]
        return spec !== undefined && spec.imageTokens > 0 ? p.promptTokens + p.n * spec.imageTokens : 0
      }
      default:
        return this.scenario.enforcement.estimate === "max"
          ? Math.max(p.promptTokens, p.n * p.maxTokens)
          : p.promptTokens + p.n * p.maxTokens
    }
  }

  /** Checks that do not depend on limits: model, access, context window, content policy. */
  private validate(
    kind: Endpoint["kind"],
    p: Parsed,
    organization: string = this.scenario.organization,
    project?: string | undefined
  ): ApiError | undefined {
    const spec = this.scenario.models[p.model]
    if (spec === undefined) {
      return {
        status: 404,
        message: `The model \`${p.model}\` does not exist or you do not have access to it.`,
        type: "invalid_request_error",
        param: null,
        code: "model_not_found"
      }
    }
    if (spec.kind !== modelKindFor[kind]) {
      return {
        status: 404,
        message: `This model (\`${p.model}\`) is not supported in the ${
          kind === "chat" ? "v1/chat/completions" : `v1/${kind === "images" ? "images/generations" : kind}`
        } endpoint.`,
        type: "invalid_request_error",
        param: "model",
        code: null
      }
    }
    if (!(this.orgSpec(organization)?.access[p.model] ?? spec.access)) {
      const who = project ?? this.projectOf(organization) ?? organization
      return {
        status: 403,
        message: `Project \`${who}\` does not have access to model \`${p.model}\``,
        type: "invalid_request_error",
        param: null,
        code: "model_not_found"
      }
    }
    return undefined
  }

  private validateContent(kind: Endpoint["kind"], p: Parsed): ApiError | undefined {
    const spec = this.scenario.models[p.model]
    if (kind === "embeddings") {
      // each input is embedded on its own: the context window bounds every input, not their sum
      const longest = p.inputs.reduce((acc, input) => Math.max(acc, estimateTokens(input)), 0)
      if (longest > spec.contextWindow) {
        return {
          status: 400,
          message:
            `This model's maximum context length is ${spec.contextWindow} tokens, however you requested ${longest} tokens (${longest} in your prompt; 0 for the completion). Please reduce your prompt; or completion length.`,
          type: "invalid_request_error",
          param: null,
          code: "context_length_exceeded"
        }
      }
    }
    // every choice is its own sequence: the window bounds the prompt plus one choice's max tokens, whatever `n`
    const completion = kind === "embeddings" || kind === "images" ? 0 : p.explicitMax ? p.maxTokens : 0
    if (kind !== "images" && kind !== "embeddings" && p.promptTokens + completion > spec.contextWindow) {
      return {
        status: 400,
        message: `This model's maximum context length is ${spec.contextWindow} tokens. However, you requested ${
          p.promptTokens + completion
        } tokens (${p.promptTokens} in the messages, ${completion} in the completion). Please reduce the length of the messages or completion.`,
        type: "invalid_request_error",
        param: kind === "chat" ? "messages" : "input",
        code: "context_length_exceeded"
      }
    }
    const marker = this.scenario.faults.contentPolicyMarker
    if (marker !== "" && p.text.includes(marker)) {
      return {
        status: 400,
        message:
          "Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.",
        type: "invalid_request_error",
        param: null,
        code: "content_policy_violation"
      }
    }
    return undefined
  }

  private outputTokens(p: Parsed): number {
    const o = this.scenario.output
    const n = o.fixedTokens !== undefined ? o.fixedTokens : Math.ceil(o.fraction * p.maxTokens)
    return Math.max(1, Math.min(n, p.maxTokens))
  }

  private text(tokens: number): string {
    const words = ["sim", "ack", "yes", "ok.", "the", "and", "one", "two"]
    let out = ""
    for (let i = 0; i < tokens; i++) out += (i === 0 ? "" : " ") + words[this.contentRng.int(words.length)]
    return out
  }

  private embedding(input: string, dims: number): Array<number> {
    const rng = Prng.derive(this.scenario.seed, input)
    const v = Array.from({ length: dims }, () => rng.next() * 2 - 1)
    const norm = Math.sqrt(v.reduce((a, x) => a + x * x, 0)) || 1
    return v.map((x) => x / norm)
  }

  private serve(kind: Endpoint["kind"], p: Parsed, nowSec: number): Served {
    const spec = this.scenario.models[p.model]
    switch (kind) {
      case "chat": {
        const per = this.outputTokens(p)
        const finish = p.explicitMax && per >= p.maxTokens ? "length" : "stop"
        const choices = Array.from({ length: p.n }, (_, index) => ({
          index,
          message: { role: "assistant", content: this.text(per), refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: finish
        }))
        const usage = this.chatUsage(p.promptTokens, per * p.n)
        return {
          body: {
            id: `chatcmpl-${this.idRng.id(29)}`,
            object: "chat.completion",
            created: nowSec,
            model: p.model,
            choices,
            usage,
            service_tier: "default",
            system_fingerprint: "fp_sim"
          },
          promptTokens: p.promptTokens,
          outputTokens: per * p.n,
          outputPerChoice: per,
          images: 0
        }
      }
      case "responses": {
        const out = this.outputTokens(p)
        const id = `resp_${this.idRng.id(40)}`
        return {
          body: {
            id,
            object: "response",
            created_at: nowSec,
            status: "completed",
            error: null,
            incomplete_details: null,
            instructions: p.body.instructions ?? null,
            max_output_tokens: p.body.max_output_tokens ?? null,
            model: p.model,
            output: [{
              type: "message",
              id: `msg_${this.idRng.id(40)}`,
              status: "completed",
              role: "assistant",
              content: [{ type: "output_text", text: this.text(out), annotations: [], logprobs: [] }]
            }],
            parallel_tool_calls: true,
            previous_response_id: null,
            reasoning: { effort: null, summary: null },
            store: true,
            temperature: 1,
            text: { format: { type: "text" } },
            tool_choice: "auto",
            tools: [],
            top_p: 1,
            truncation: "disabled",
            usage: {
              input_tokens: p.promptTokens,
              input_tokens_details: { cached_tokens: 0 },
              output_tokens: out,
              output_tokens_details: { reasoning_tokens: 0 },
              total_tokens: p.promptTokens + out
            },
            user: null,
            metadata: {}
          },
          promptTokens: p.promptTokens,
          outputTokens: out,
          outputPerChoice: out,
          images: 0
        }
      }
      case "embeddings": {
        const dims = typeof p.body.dimensions === "number" ? p.body.dimensions : spec.dimensions
        const base64 = p.body.encoding_format === "base64"
        const data = p.inputs.map((input, index) => {
          const vector = this.embedding(input, dims)
          return {
            object: "embedding",
            index,
            embedding: base64 ? Buffer.from(new Float32Array(vector).buffer).toString("base64") : vector
          }
        })
        return {
          body: {
            object: "list",
            data,
            model: p.model,
            usage: { prompt_tokens: p.promptTokens, total_tokens: p.promptTokens }
          },
          promptTokens: p.promptTokens,
          outputTokens: 0,
          outputPerChoice: 0,
          images: 0
        }
      }
      case "images": {
        const b64 = p.body.response_format === "b64_json" || p.model.startsWith("gpt-image")
        const data = Array.from({ length: p.n }, () =>
          b64
            ? {
              b64_json:
                "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
            }
            : {
              url: `https://sim.local/images/${this.idRng.id(24)}.png`,
              revised_prompt: p.text
            })
        const imageTokens = spec.imageTokens * p.n
        return {
          body: {
            created: nowSec,
            data,
            ...(spec.imageTokens > 0
              ? {
                usage: {
                  input_tokens: p.promptTokens,
                  input_tokens_details: { text_tokens: p.promptTokens, image_tokens: 0 },
                  output_tokens: imageTokens,
                  total_tokens: p.promptTokens + imageTokens
                }
              }
              : {})
          },
          promptTokens: p.promptTokens,
          outputTokens: imageTokens,
          outputPerChoice: imageTokens,
          images: p.n
        }
      }
    }
  }

  private chatUsage(prompt: number, completion: number) {
    return {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: {
        reasoning_tokens: 0,
        audio_tokens: 0,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0
      }
    }
  }

  private cost(spec: SimConfig.ModelSpec, s: Served): number {
    return (s.promptTokens * spec.pricing.inputPerMillion + s.outputTokens * spec.pricing.outputPerMillion) / 1e6 +
      s.images * spec.pricing.perImage
  }

  // ---------------------------------------------------------------------------
  // faults
  // ---------------------------------------------------------------------------

  private drawFault(now: number, model: string): SimConfig.FaultKind | undefined {
    const t = now - this.startedAt
    for (const incident of this.scenario.incidents) {
      if (t < incident.fromMs || t >= incident.toMs) continue
      if (incident.models !== undefined && !incident.models.includes(model)) continue
      if (incident.rate >= 1 || this.faultRng.next() < incident.rate) return incident.fault
    }
    const rates = this.scenario.faults.rates
    const kinds = Object.keys(rates) as Array<SimConfig.FaultKind>
    if (kinds.every((k) => rates[k] === 0)) return undefined
    const u = this.faultRng.next()
    let acc = 0
    for (const k of kinds) {
      acc += rates[k]
      if (u < acc) return k
    }
    return undefined
  }

  // ---------------------------------------------------------------------------
  // the entry point
  // ---------------------------------------------------------------------------

  handle(request: SimRequest, now: number): SimResponse {
    const requestId = this.requestId()
    const key = this.keyOf(request)
    const base: Record<string, string> = {
      "content-type": "application/json",
      "x-request-id": requestId,
      "openai-organization": this.scenario.organization,
      "openai-version": "2020-10-01"
    }
    let organization: string | undefined = undefined
    const fail = (
      error: ApiError,
      model: string | undefined,
      headers: Record<string, string> = base,
      extra: Record<string, string> = {},
      limit?: string
    ): SimResponse => {
      this.record(now, request, requestId, key, model, error.status, {
        code: error.code === null ? error.type : String(error.code),
        limit,
        organization
      })
      return this.errorResponse(error, headers, 0, extra)
    }

    // authentication
    const auth = request.headers["authorization"]
    if (auth === undefined || !auth.startsWith("Bearer ") || auth.length <= 7) {
      return fail({
        status: 401,
        message:
          "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
        type: "invalid_request_error",
        param: null,
        code: null
      }, undefined)
    }
    const apiKey = auth.slice(7)
    const keyOrganizations = this.organizationsOfKey(apiKey)
    if (keyOrganizations === undefined) {
      const masked = apiKey.length > 8 ? `${apiKey.slice(0, 3)}*${"*".repeat(4)}${apiKey.slice(-4)}` : "sk-****"
      return fail({
        status: 401,
        message:
          `Incorrect API key provided: ${masked}. You can find your API key at https://platform.openai.com/account/api-keys.`,
        type: "invalid_request_error",
        param: null,
        code: "invalid_api_key"
      }, undefined)
    }
    // the organization: the key's, or the one `OpenAI-Organization` picks among the key's (multi-organization only)
    const asked = request.headers["openai-organization"]
    if (Object.keys(this.scenario.organizations).length > 0 && asked !== undefined && asked !== "") {
      if (!keyOrganizations.includes(asked)) {
        return fail({
          status: 401,
          message: "OpenAI-Organization header should match organization for API key",
          type: "invalid_request_error",
          param: null,
          code: "mismatched_organization"
        }, undefined)
      }
      organization = asked
    } else {
      organization = keyOrganizations[0]
    }
    const org: string = organization
    base["openai-organization"] = org

    const endpoint = request.method === "POST" ? endpoints[request.path] : undefined
    if (endpoint === undefined) {
      const other = this.handleOther(request, now, base, org)
      if (other !== undefined) {
        this.record(now, request, requestId, key, undefined, other._tag === "Reset" ? 0 : other.status, {
          organization: org
        })
        return other
      }
      return fail({
        status: 404,
        message: `Invalid URL (${request.method} ${request.path})`,
        type: "invalid_request_error",
        param: null,
        code: null
      }, undefined)
    }
    if (!isRecord(request.body)) {
      return fail({
        status: 400,
        message:
          "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        type: "invalid_request_error",
        param: null,
        code: null
      }, undefined)
    }
    const project = request.headers["openai-project"]
    const parsed = this.parse(endpoint.kind, request.body)
    if ("status" in parsed) return fail(parsed, undefined)
    const invalid = this.validate(endpoint.kind, parsed, org, project)
    if (invalid !== undefined) return fail(invalid, parsed.model)

    const model = parsed.model
    const spec = this.scenario.models[model]
    const scopes = this.scopesFor(model, project, now, org)
    const scope = scopes[0]
    const headersNow = () => this.rateHeaders(scopes, { ...base })

    // billing: each organization against its own quota
    const quota = this.quotaOf(org)
    if (quota !== undefined && this.spendOf(org) >= quota) {
      return fail(
        {
          status: 429,
          message:
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
          type: "insufficient_quota",
          param: null,
          code: "insufficient_quota"
        },
        model,
        headersNow()
      )
    }

    const estimate = this.estimate(endpoint.kind, parsed)
    const images = endpoint.kind === "images" ? parsed.n : 0
    const cost: Record<Dim, number> = { requests: 1, tokens: estimate, images }

    // request too large: the cost can never fit a limit (TPM first, as OpenAI reports it; then TPD and IPM, which
    // would otherwise answer "try again in …" forever)
    for (const limit of sizeLimits) {
      const amount = cost[limitDims[limit]]
      let tooLarge: ScopeBuckets | undefined = undefined
      for (const s of scopes) {
        if (s.limits[limit] !== undefined && amount > s.limits[limit]) {
          tooLarge = s
          break
        }
      }
      if (tooLarge === undefined) continue
      this.chargeRejected(scopes)
      return fail(
        {
          status: 429,
          message: `Request too large for ${model} ${this.orgPhrase(tooLarge.project ?? project, org)} on ${
            limitLabel[limit]
          }${
            this.scenario.enforcement.rateLimitMessage === "bare"
              ? ""
              : `: Limit ${tooLarge.limits[limit]}, Requested ${amount}`
          }. ${
            limit === "ipm" ? "The number of images" : "The input or output tokens"
          } must be reduced in order to run successfully. ${RATE_LIMITS_URL}`,
          type: limitDims[limit],
          param: null,
          code: "rate_limit_exceeded"
        },
        model,
        headersNow(),
        {},
        "request_too_large"
      )
    }

    const bad = this.validateContent(endpoint.kind, parsed)
    if (bad !== undefined) {
      this.chargeRejected(scopes)
      return fail(bad, model, headersNow())
    }

    // the limits, all at once
    for (const limit of limitOrder) {
      const amount = cost[limitDims[limit]]
      if (amount <= 0) continue
      let found: { list: ReadonlyArray<Bucket.Bucket>; wait: number; scope: ScopeBuckets } | undefined = undefined
      for (const s of scopes) {
        const list = s.buckets[limit]
        if (list === undefined) continue
        // a cost above a sub-minute bucket's capacity (but within the limit) needs that bucket full, then takes it
        // below zero: it waits for the refill instead of never fitting
        let wait = Number.NEGATIVE_INFINITY
        for (const b of list) wait = Math.max(wait, Bucket.waitFor(b, Math.min(amount, b.capacity)))
        if (wait > 0 && (found === undefined || wait > found.wait)) found = { list, wait, scope: s }
      }
      if (found === undefined) continue
      const { list, wait } = found
      if (limitDims[limit] !== "requests") this.chargeRejected(scopes)
      const main = list[0]
      const used = Math.min(main.limit, Math.max(0, Math.ceil(main.limit - main.level)))
      const enf = this.scenario.enforcement
      const extra: Record<string, string> = {}
      if (enf.retryAfter) {
        extra["retry-after"] = enf.retryAfterFormat === "date"
          ? new Date(Math.ceil((now + ceilMs(wait)) / 1000) * 1000).toUTCString()
          : String(Math.ceil(ceilMs(wait) / 1000))
      }
      if (enf.retryAfterMs) extra["retry-after-ms"] = String(ceilMs(wait))
      return fail(
        {
          status: 429,
          message: `Rate limit reached for ${model} ${this.orgPhrase(found.scope.project ?? project, org)} on ${
            limitLabel[limit]
          }${
            enf.rateLimitMessage === "bare"
              ? ""
              : `: Limit ${main.limit}, Used ${used}, Requested ${amount}. Please try again in ${
                formatGoDuration(wait)
              }`
          }. ${RATE_LIMITS_URL}`,
          type: limitDims[limit],
          param: null,
          code: "rate_limit_exceeded"
        },
        model,
        headersNow(),
        extra,
        limit
      )
    }

    // admitted: charge the estimate
    this.charge(scopes, "requests", 1)
    this.charge(scopes, "tokens", estimate)
    this.charge(scopes, "images", images)

    const fault = this.drawFault(now, model)
    const requestDelay = this.sample(this.scenario.latency.request)
    /** Records the admitted request with what it was finally charged (refunded on a fault, settled on success). */
    const admitted = (tokens: number, charged: number) =>
      this.admit({
        at: now - this.startedAt,
        model,
        scope: scope.name,
        project,
        organization: org,
        requests: 1,
        tokens,
        images: charged
      })
    if (
      fault === "overloaded" || fault === "server_error" || fault === "bad_gateway" || fault === "gateway_timeout" ||
      fault === "connection_reset" || fault === "timeout" || fault === "conflict"
    ) {
      // a failed call is refunded its tokens and images; the request still counts
      this.charge(scopes, "tokens", -estimate)
      this.charge(scopes, "images", -images)
      admitted(0, 0)
      const timeoutThen = this.scenario.faults.timeoutThen
      if (fault === "connection_reset" || (fault === "timeout" && timeoutThen !== "gateway_timeout")) {
        const timedOut = fault === "timeout" && timeoutThen === "connection_timeout"
        this.record(now, request, requestId, key, model, 0, {
          fault,
          code: timedOut ? "timeout" : "connection_reset",
          organization: org
        })
        return fault === "timeout"
          ? { _tag: "Reset", delayMs: this.scenario.faults.timeoutMs, reason: timedOut ? "timeout" : "reset" }
          : { _tag: "Reset", delayMs: requestDelay }
      }
      const error: ApiError = fault === "overloaded"
        ? {
          status: 503,
          message: "The server is overloaded or not ready yet.",
          type: "server_error",
          param: null,
          code: null
        }
        : fault === "server_error"
        ? {
          status: 500,
          message: "The server had an error while processing your request. Sorry about that!",
          type: "server_error",
          param: null,
          code: null
        }
        : fault === "bad_gateway"
        ? { status: 502, message: "Bad gateway.", type: "cf_bad_gateway", param: null, code: 502 }
        : fault === "conflict"
        ? {
          status: 409,
          message:
            "The request conflicted with another request in progress on the same resource. Please retry your request.",
          type: "invalid_request_error",
          param: null,
          code: "conflict"
        }
        : { status: 504, message: "Gateway timeout.", type: "cf_gateway_timeout", param: null, code: 504 }
      const delay = fault === "timeout" ? this.scenario.faults.timeoutMs : requestDelay
      this.record(now, request, requestId, key, model, error.status, {
        fault,
        code: error.code === null ? error.type : String(error.code),
        organization: org
      })
      return this.errorResponse(error, headersNow(), delay)
    }

    const served = this.serve(endpoint.kind, parsed, Math.floor(now / 1000))
    // settle: true the estimate up or down to actual usage (or keep it: `enforcement.settle`)
    const actual = estimate === 0 || this.scenario.enforcement.settle === "never"
      ? estimate
      : served.promptTokens + served.outputTokens
    this.charge(scopes, "tokens", actual - estimate)
    admitted(actual, images)
    this.addSpend(org, this.cost(spec, served))
    const delay = requestDelay + this.scenario.latency.perOutputTokenMs * served.outputTokens +
      (fault === "slow" ? this.scenario.faults.slowMs : 0)
    this.record(now, request, requestId, key, model, 200, { fault, organization: org, latencyMs: delay })
    if (parsed.stream && (endpoint.kind === "chat" || endpoint.kind === "responses")) {
      const headers = headersNow()
      headers["openai-processing-ms"] = String(Math.round(delay))
      return {
        _tag: "Stream",
        status: 200,
        headers: { ...headers, "content-type": "text/event-stream; charset=utf-8" },
        chunks: this.breakStream(
          endpoint.kind === "chat" ? this.chatChunks(served, parsed) : this.responseEvents(served),
          endpoint.kind,
          fault,
          model,
          served,
          this.orgPhrase(project, org)
        ),
        delayMs: requestDelay + (fault === "slow" ? this.scenario.faults.slowMs : 0)
      }
    }
    return answer(base, this.rateLevels(scopes), delay, served.body, endpoint.kind === "chat")
  }

  private chatChunks(served: Served, p: Parsed): Array<SseChunk> {
    const body = served.body as {
      id: string
      created: number
      model: string
      choices: Array<{ index: number; message: { content: string }; finish_reason: string }>
      usage: unknown
    }
    const perToken = this.scenario.latency.perOutputTokenMs
    const chunks: Array<SseChunk> = []
    const frame = (choices: Array<unknown>, usage?: unknown) =>
      `data: ${
        JSON.stringify({
          id: body.id,
          object: "chat.completion.chunk",
          created: body.created,
          model: body.model,
          service_tier: "default",
          system_fingerprint: "fp_sim",
          choices,
          ...(p.includeUsage ? { usage: usage ?? null } : {})
        })
      }\n\n`
    const STEP = 8
    for (const choice of body.choices) {
      chunks.push({
        delayMs: 0,
        data: frame([{
          index: choice.index,
          delta: { role: "assistant", content: "", refusal: null },
          logprobs: null,
          finish_reason: null
        }])
      })
      const words = choice.message.content.split(" ")
      for (let i = 0; i < words.length; i += STEP) {
        const part = words.slice(i, i + STEP)
        const text = (i === 0 ? "" : " ") + part.join(" ")
        chunks.push({
          delayMs: perToken * part.length,
          data: frame([{ index: choice.index, delta: { content: text }, logprobs: null, finish_reason: null }])
        })
      }
      chunks.push({
        delayMs: 0,
        data: frame([{ index: choice.index, delta: {}, logprobs: null, finish_reason: choice.finish_reason }])
      })
    }
    if (p.includeUsage) chunks.push({ delayMs: 0, data: frame([], body.usage) })
    chunks.push({ delayMs: 0, data: "data: [DONE]\n\n" })
    return chunks
  }

  /** A `stream_error` / `stream_rate_limited` fault cuts a stream half-way with an in-stream error. */
  private breakStream(
    chunks: Array<SseChunk>,
    kind: Endpoint["kind"],
    fault: SimConfig.FaultKind | undefined,
    model: string,
    served: Served,
    orgPhrase: string = this.orgPhrase(undefined)
  ): Array<SseChunk> {
    if (fault !== "stream_error" && fault !== "stream_rate_limited") return chunks
    const deltas = chunks.map((c, i) => (c.data.includes("delta") ? i : -1)).filter((i) => i >= 0)
    const cut = deltas.length > 0 ? deltas[Math.floor(deltas.length / 2)] : 1
    const error = fault === "stream_error"
      ? {
        message: "The server had an error while processing your request. Sorry about that!",
        type: "server_error",
        param: null,
        code: "server_error"
      }
      : {
        message:
          `Rate limit reached for ${model} ${orgPhrase} on tokens per min (TPM). Please try again in 1s. ${RATE_LIMITS_URL}`,
        type: "tokens",
        param: null,
        code: "rate_limit_exceeded"
      }
    const head = chunks.slice(0, cut)
    if (kind === "chat") {
      return [...head, { delayMs: 0, data: `data: ${JSON.stringify({ error })}\n\n` }]
    }
    const full = served.body as Record<string, unknown>
    const failed = {
      type: "response.failed",
      sequence_number: head.length,
      response: { ...full, status: "failed", error: { code: error.code, message: error.message } }
    }
    return [...head, { delayMs: 0, data: `event: response.failed\ndata: ${JSON.stringify(failed)}\n\n` }]
  }

  private responseEvents(served: Served): Array<SseChunk> {
    const full = served.body as Record<string, any>
    const message = full.output[0]
    const text: string = message.content[0].text
    const perToken = this.scenario.latency.perOutputTokenMs
    let sequence = 0
    const events: Array<SseChunk> = []
    const emit = (type: string, payload: Record<string, unknown>, delayMs = 0) =>
      events.push({
        delayMs,
        data: `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence++, ...payload })}\n\n`
      })
    const pending = { ...full, status: "in_progress", output: [], usage: null }
    emit("response.created", { response: pending })
    emit("response.in_progress", { response: pending })
    const item = { ...message, status: "in_progress", content: [] }
    emit("response.output_item.added", { output_index: 0, item })
    const part = { type: "output_text", text: "", annotations: [], logprobs: [] }
    emit("response.content_part.added", { item_id: message.id, output_index: 0, content_index: 0, part })
    const words = text.split(" ")
    const STEP = 8
    for (let i = 0; i < words.length; i += STEP) {
      const chunk = words.slice(i, i + STEP)
      emit("response.output_text.delta", {
        item_id: message.id,
        output_index: 0,
        content_index: 0,
        delta: (i === 0 ? "" : " ") + chunk.join(" "),
        logprobs: []
      }, perToken * chunk.length)
    }
    emit("response.output_text.done", { item_id: message.id, output_index: 0, content_index: 0, text, logprobs: [] })
    emit("response.content_part.done", {
      item_id: message.id,
      output_index: 0,
      content_index: 0,
      part: message.content[0]
    })
    emit("response.output_item.done", { output_index: 0, item: message })
    emit("response.completed", { response: full })
    return events
  }

  // ---------------------------------------------------------------------------
  // models, files, batches
  // ---------------------------------------------------------------------------

  private json(status: number, base: Record<string, string>, body: unknown): SimResponse {
    return {
      _tag: "Response",
      status,
      headers: { ...base, "openai-processing-ms": "0" },
      body: JSON.stringify(body),
      delayMs: 0
    }
  }

  private notFound(base: Record<string, string>, what: string, id: string): SimResponse {
    return this.json(404, base, {
      error: { message: `No such ${what}: '${id}'`, type: "invalid_request_error", param: "id", code: null }
    })
  }

  private handleOther(
    request: SimRequest,
    now: number,
    base: Record<string, string>,
    organization: string = this.scenario.organization
  ): SimResponse | undefined {
    const { method, path } = request
    const nowSec = Math.floor(now / 1000)
    if (method === "GET" && path === "/v1/models") {
      return this.json(200, base, {
        object: "list",
        data: Object.keys(this.scenario.models).map((id) => ({
          id,
          object: "model",
          created: 1_700_000_000,
          owned_by: "system"
        }))
      })
    }
    const modelMatch = /^\/v1\/models\/([^/]+)$/.exec(path)
    if (method === "GET" && modelMatch !== null) {
      const id = decodeURIComponent(modelMatch[1])
      if (this.scenario.models[id] === undefined) {
        return this.json(404, base, {
          error: {
            message: `The model '${id}' does not exist`,
            type: "invalid_request_error",
            param: "model",
            code: "model_not_found"
          }
        })
      }
      return this.json(200, base, { id, object: "model", created: 1_700_000_000, owned_by: "system" })
    }
    if (method === "POST" && path === "/v1/files") {
      const body = isRecord(request.body) ? request.body : {}
      const file = isRecord(body.file) ? body.file : {}
      const content = typeof file.content === "string" ? file.content : ""
      const record: FileRecord = {
        id: `file-${this.idRng.id(24)}`,
        filename: typeof file.filename === "string" ? file.filename : "upload.jsonl",
        purpose: typeof body.purpose === "string" ? body.purpose : "batch",
        content,
        createdAt: nowSec
      }
      this.files.set(record.id, record)
      return this.json(200, base, this.fileObject(record))
    }
    const fileMatch = /^\/v1\/files\/([^/]+)(\/content)?$/.exec(path)
    if (method === "GET" && fileMatch !== null) {
      for (const batch of this.batches.values()) this.advance(batch, now)
      const record = this.files.get(fileMatch[1])
      if (record === undefined) return this.notFound(base, "File", fileMatch[1])
      if (fileMatch[2] !== undefined) {
        return {
          _tag: "Response",
          status: 200,
          headers: { ...base, "content-type": "application/octet-stream", "openai-processing-ms": "0" },
          body: record.content,
          // a batch's output or error file takes `downloadMs` to arrive (a crash in the middle of one, in tests)
          delayMs: record.purpose === "batch_output" ? this.scenario.batch.downloadMs : 0
        }
      }
      return this.json(200, base, this.fileObject(record))
    }
    if (method === "POST" && path === "/v1/batches") return this.createBatch(request, now, base, organization)
    const batchMatch = /^\/v1\/batches\/([^/]+)(\/cancel)?$/.exec(path)
    if (batchMatch !== null && (method === "GET" || (method === "POST" && batchMatch[2] !== undefined))) {
      const batch = this.batches.get(batchMatch[1])
      if (batch === undefined) return this.notFound(base, "batch", batchMatch[1])
      if (batchMatch[2] !== undefined && batch.cancelAt === undefined) {
        const status = this.batchStatus(batch, now)
        if (status === "validating" || status === "in_progress") batch.cancelAt = now
      }
      this.advance(batch, now)
      return this.json(200, base, this.batchObject(batch, now))
    }
    if (method === "GET" && path === "/v1/batches") {
      return this.json(200, base, {
        object: "list",
        data: [...this.batches.values()].reverse().map((b) => {
          this.advance(b, now)
          return this.batchObject(b, now)
        }),
        has_more: false
      })
    }
    return undefined
  }

  private fileObject(record: FileRecord) {
    return {
      id: record.id,
      object: "file",
      bytes: Buffer.byteLength(record.content),
      created_at: record.createdAt,
      expires_at: null,
      filename: record.filename,
      purpose: record.purpose,
      status: "processed",
      status_details: null
    }
  }

  private createBatch(
    request: SimRequest,
    now: number,
    base: Record<string, string>,
    organization: string
  ): SimResponse {
    const body = isRecord(request.body) ? request.body : {}
    const badRequest = (message: string, param: string) =>
      this.json(400, base, { error: { message, type: "invalid_request_error", param, code: null } })
    const inputFileId = body.input_file_id
    if (typeof inputFileId !== "string") {
      return badRequest("Missing required parameter: 'input_file_id'.", "input_file_id")
    }
    const endpoint = body.endpoint
    if (
      typeof endpoint !== "string" || !["/v1/chat/completions", "/v1/responses", "/v1/embeddings"].includes(endpoint)
    ) {
      return badRequest(`Invalid value for 'endpoint': ${String(endpoint)}.`, "endpoint")
    }
    if (body.completion_window !== "24h") {
      return badRequest("Invalid value for 'completion_window': only '24h' is supported.", "completion_window")
    }
    const file = this.files.get(inputFileId)
    if (file === undefined) return this.notFound(base, "File", inputFileId)
    const lines: Array<BatchRecord["lines"][number]> = []
    const errors: Array<BatchRecord["errors"][number]> = []
    const models = new Set<string>()
    const raw = file.content.split("\n").filter((l) => l.trim() !== "")
    raw.forEach((text, i) => {
      try {
        const line = JSON.parse(text) as Record<string, unknown>
        if (typeof line.custom_id !== "string" || !isRecord(line.body)) {
          errors.push({ code: "invalid_request", message: "Missing custom_id or body.", line: i + 1, param: null })
          return
        }
        if (line.url !== endpoint) {
          errors.push({
            code: "mismatched_endpoint",
            message: `The provided url '${String(line.url)}' does not match the batch endpoint '${endpoint}'.`,
            line: i + 1,
            param: "url"
          })
          return
        }
        if (text.includes("[sim:batch-invalid]")) {
          // a line the Batch API's validation refuses (the marker stands for whatever it finds wrong)
          errors.push({
            code: "invalid_request",
            message: "This line is not a valid request (marked [sim:batch-invalid]).",
            line: i + 1,
            param: "body"
          })
          return
        }
        models.add(String(line.body.model))
        lines.push({ custom_id: line.custom_id, method: String(line.method ?? "POST"), url: endpoint, body: line.body })
      } catch {
        errors.push({
          code: "invalid_json_line",
          message: "This line is not parseable as valid JSON.",
          line: i + 1,
          param: null
        })
      }
    })
    if (raw.length > 50_000) {
      errors.push({
        code: "too_many_requests",
        message: "A batch may contain at most 50000 requests.",
        line: null,
        param: null
      })
    }
    if (models.size > 1) {
      errors.push({
        code: "mismatched_model",
        message: "The batch input file must contain requests for a single model.",
        line: null,
        param: "body.model"
      })
    }
    const model = lines.length > 0 ? String(lines[0].body.model) : ""
    const kind = endpoints[endpoint].kind
    let tokens = 0
    for (const l of lines) {
      const parsed = this.parse(kind, l.body)
      if (!("status" in parsed)) tokens += this.estimate(kind, parsed)
    }
    const queueLimit = this.scenario.models[model]?.batchQueueTokens
    if (errors.length === 0 && queueLimit !== undefined) {
      let enqueued = 0
      for (const other of this.batches.values()) {
        if (other.organization !== organization || other.model !== model || other.errors.length > 0) continue
        const status = this.batchStatus(other, now)
        if (["validating", "in_progress", "finalizing", "cancelling"].includes(status)) enqueued += other.tokens
      }
      if (enqueued + tokens > queueLimit) {
        errors.push({
          code: "token_limit_exceeded",
          message: `Enqueued token limit reached for ${model} in organization ${organization}. Limit: ${
            queueLimit.toLocaleString("en-US")
          } enqueued tokens. Please try again once some in_progress batches have been completed.`,
          line: null,
          param: null
        })
      }
    }
    const ids = new Set<string>()
    for (const [i, l] of lines.entries()) {
      if (ids.has(l.custom_id)) {
        errors.push({
          code: "duplicate_custom_id",
          message: `The custom_id '${l.custom_id}' is duplicated.`,
          line: i + 1,
          param: "custom_id"
        })
      }
      ids.add(l.custom_id)
    }
    const batch: BatchRecord = {
      id: `batch_${this.idRng.id(24)}`,
      inputFileId,
      endpoint,
      completionWindow: "24h",
      createdAt: now,
      metadata: body.metadata ?? null,
      lines,
      errors,
      organization,
      model,
      tokens,
      cancelAt: undefined,
      finished: false,
      outputFileId: null,
      errorFileId: null,
      counts: { total: 0, completed: 0, failed: 0 }
    }
    this.batches.set(batch.id, batch)
    return this.json(200, base, this.batchObject(batch, now))
  }

  private timeline(batch: BatchRecord) {
    const t = this.scenario.batch
    const inProgressAt = batch.createdAt + t.validatingMs
    const finalizingAt = inProgressAt + t.inProgressMs + t.perRequestMs * batch.lines.length
    const completedAt = finalizingAt + t.finalizingMs
    const expiresAt = batch.createdAt + DAY
    /** When the `i`-th request is done: the requests finish evenly over the in-progress time. */
    const doneAt = (i: number) => inProgressAt + ((finalizingAt - inProgressAt) * (i + 1)) / batch.lines.length
    return { inProgressAt, finalizingAt, completedAt, expiresAt, doneAt }
  }

  private batchStatus(batch: BatchRecord, now: number): string {
    const tl = this.timeline(batch)
    if (batch.cancelAt !== undefined) return now >= batch.cancelAt + 1000 ? "cancelled" : "cancelling"
    if (now < tl.inProgressAt) return "validating"
    if (batch.errors.length > 0) return "failed"
    if (tl.finalizingAt > tl.expiresAt && now >= tl.expiresAt) return "expired"
    if (now < tl.finalizingAt) return "in_progress"
    if (now < tl.completedAt) return "finalizing"
    return "completed"
  }

  /** Produces the output and error files once the batch completes. */
  private advance(batch: BatchRecord, now: number): void {
    const status = this.batchStatus(batch, now)
    if (batch.finished) return
    if (status === "in_progress" || status === "finalizing" || status === "validating") {
      if (status !== "validating" && batch.errors.length === 0) {
        // the requests done so far (they finish evenly over the in-progress time), as OpenAI's counts advance;
        // which of them failed is known when the output is written
        const tl = this.timeline(batch)
        let done = 0
        while (done < batch.lines.length && tl.doneAt(done) <= now) done++
        batch.counts = { total: batch.lines.length, completed: done, failed: 0 }
      }
      return
    }
    if (status !== "completed" && status !== "expired" && status !== "cancelled") return
    const tl = this.timeline(batch)
    // the requests finished: all of them, or those done before the batch expired or was cancelled
    const until = status === "completed"
      ? Number.POSITIVE_INFINITY
      : status === "expired"
      ? tl.expiresAt
      : batch.cancelAt!
    const kind = endpoints[batch.endpoint].kind
    const out: Array<string> = []
    const err: Array<string> = []
    for (const [i, line] of batch.lines.entries()) {
      if (tl.doneAt(i) > until) {
        if (status === "expired") {
          err.push(JSON.stringify({
            id: `batch_req_${this.idRng.id(24)}`,
            custom_id: line.custom_id,
            response: null,
            error: {
              code: "batch_expired",
              message: "This request could not be executed before the completion window expired."
            }
          }))
        }
        continue
      }
      const requestId = this.requestId()
      const id = `batch_req_${this.idRng.id(24)}`
      const parsed = this.parse(kind, line.body)
      const error = "status" in parsed
        ? parsed
        : (this.validate(kind, parsed, batch.organization) ?? this.validateContent(kind, parsed))
      if (error !== undefined) {
        err.push(JSON.stringify({
          id,
          custom_id: line.custom_id,
          response: {
            status_code: error.status,
            request_id: requestId,
            body: { error: { message: error.message, type: error.type, param: error.param, code: error.code } }
          },
          error: null
        }))
        continue
      }
      const p = parsed as Parsed
      const served = this.serve(kind, p, Math.floor(now / 1000))
      // Batch API: half price
      this.addSpend(batch.organization, this.cost(this.scenario.models[p.model], served) / 2)
      out.push(JSON.stringify({
        id,
        custom_id: line.custom_id,
        response: { status_code: 200, request_id: requestId, body: served.body },
        error: null
      }))
    }
    // results come back unordered
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.contentRng.int(i + 1)
      const tmp = out[i]
      out[i] = out[j]
      out[j] = tmp
    }
    const file = (lines: Array<string>, suffix: string): string => {
      const record: FileRecord = {
        id: `file-${this.idRng.id(24)}`,
        filename: `${batch.id}_${suffix}.jsonl`,
        purpose: "batch_output",
        content: lines.map((l) => `${l}\n`).join(""),
        createdAt: Math.floor(now / 1000)
      }
      this.files.set(record.id, record)
      return record.id
    }
    batch.outputFileId = out.length > 0 ? file(out, "output") : null
    batch.errorFileId = err.length > 0 ? file(err, "error") : null
    batch.counts = { total: batch.lines.length, completed: out.length, failed: err.length }
    batch.finished = true
  }

  private batchObject(batch: BatchRecord, now: number) {
    const status = this.batchStatus(batch, now)
    const tl = this.timeline(batch)
    const sec = (ms: number) => Math.floor(ms / 1000)
    const reached = (ms: number) => (now >= ms ? sec(ms) : null)
    const cancelled = batch.cancelAt !== undefined
    const failed = status === "failed"
    const expired = status === "expired"
    return {
      id: batch.id,
      object: "batch",
      endpoint: batch.endpoint,
      errors: batch.errors.length > 0 && now >= tl.inProgressAt ? { object: "list", data: batch.errors } : null,
      input_file_id: batch.inputFileId,
      completion_window: batch.completionWindow,
      status,
      output_file_id: batch.outputFileId,
      error_file_id: batch.errorFileId,
      created_at: sec(batch.createdAt),
      in_progress_at: failed || (cancelled && batch.cancelAt! < tl.inProgressAt) ? null : reached(tl.inProgressAt),
      expires_at: sec(tl.expiresAt),
      finalizing_at: failed || cancelled || expired ? null : reached(tl.finalizingAt),
      completed_at: failed || cancelled || expired ? null : reached(tl.completedAt),
      failed_at: failed ? sec(tl.inProgressAt) : null,
      expired_at: expired ? sec(tl.expiresAt) : null,
      cancelling_at: cancelled ? sec(batch.cancelAt!) : null,
      cancelled_at: status === "cancelled" ? sec(batch.cancelAt! + 1000) : null,
      request_counts: batch.counts,
      metadata: batch.metadata
    }
  }

  // ---------------------------------------------------------------------------
  // stats
  // ---------------------------------------------------------------------------

  snapshot(): SimStats.Snapshot {
    return {
      attempts: [...this.attempts],
      admissions: [...this.admissions],
      byStatus: { ...this.byStatus },
      byCode: { ...this.byCode },
      attemptsByKey: { ...this.attemptsByKey },
      tokensByModel: { ...this.tokensByModel },
      requestsByModel: { ...this.requestsByModel },
      spendUsd: this.spendUsd,
      spendByOrganization: Object.fromEntries(this.spendByOrganization)
    }
  }
}
