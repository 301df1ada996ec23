/**
 * OpenAiRouter's configuration: the checks that span fields (duplicate deployment ids, task entries naming no
 * deployment, unknown strategies), written once for options given in code and routing files alike; the
 * decoding of a routing file; and the resolution of its clients and strategy into options.
 *
 * @internal
 */
import { Budget } from "@sluice/core"
import type { Router } from "@sluice/core"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type OpenAIClient from "openai"
import type * as OpenAi from "../OpenAi.js"
import type { ConfigDefaults, Deployment, OpenAiRouter, StrategyName } from "../OpenAiRouter.js"
import { RoutingConfig, RoutingConfigError, strategies } from "../OpenAiRouter.js"
import type * as Tiers from "../Tiers.js"

/** @internal */
export interface Issue {
  readonly path: string
  readonly message: string
}

/** @internal */
export const hasOwn = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key)

/** @internal */
export const isClient = (client: OpenAIClient | OpenAi.ClientOptions): client is OpenAIClient =>
  typeof (client as { readonly chat?: unknown }).chat === "object"

/**
 * A deployment's id when it gives none: `<organization>/<model>` (`<organization>/<project>/<model>`).
 *
 * @internal
 */
export const defaultId = (
  d: { readonly model: string; readonly organization?: string | undefined; readonly project?: string | undefined }
): string => [d.organization ?? "default", ...(d.project === undefined ? [] : [d.project]), d.model].join("/")

const quoted = { quoteKeys: true } as const

const unknownStrategy = (name: string, known: ReadonlyArray<string>): Issue => ({
  path: "strategy",
  message: `unknown strategy ${JSON.stringify(name)} (one of ${known.join(", ")})`
})

/**
 * The problems that span fields, in deployments given in code or in a file: duplicate ids (at the
 * deployment, or at its `id` when it gives one), task entries naming no deployment's id, model or alias,
 * and a strategy name that is neither built in nor among `custom`.
 *
 * @internal
 */
export const crossFieldIssues = (
  config: {
    readonly deployments: ReadonlyArray<{
      readonly id?: string | undefined
      readonly model: string
      readonly organization?: string | undefined
      readonly project?: string | undefined
      readonly aliases?: ReadonlyArray<string> | undefined
    }>
    readonly tasks?: Router.TaskTable | undefined
    readonly strategy?: unknown
  },
  custom: ReadonlyArray<string> = []
): Array<Issue> => {
  const issues: Array<Issue> = []
  const ids = new Map<string, number>()
  const names = new Set<string>()
  config.deployments.forEach((d, i) => {
    const id = d.id ?? defaultId(d)
    const previous = ids.get(id)
    if (previous !== undefined) {
      issues.push({
        path: `deployments[${i}]${d.id === undefined ? "" : ".id"}`,
        message: `duplicate deployment id ${JSON.stringify(id)} (also deployments[${previous}]); give each an id`
      })
    } else ids.set(id, i)
    names.add(id)
    names.add(d.model)
    for (const alias of d.aliases ?? []) names.add(alias)
  })
  for (const [task, list] of Object.entries(config.tasks ?? {})) {
    list.forEach((name, j) => {
      if (!names.has(name)) {
        issues.push({
          path: Budget.formatPath(["tasks", task, j], quoted),
          message: `no deployment has the id, model or alias ${JSON.stringify(name)}`
        })
      }
    })
  }
  const known = [...Object.keys(strategies), ...custom]
  if (typeof config.strategy === "string" && !known.includes(config.strategy)) {
    issues.push(unknownStrategy(config.strategy, known))
  }
  return issues
}

/**
 * Decodes a routing file's content, then checks what spans fields.
 *
 * @internal
 */
export const decodeConfig = (
  input: unknown,
  source = "<routing>",
  options?: { readonly strategies?: Readonly<Record<string, Router.RoutingStrategy>> | undefined }
): Effect.Effect<RoutingConfig, RoutingConfigError> =>
  Schema.decodeUnknown(RoutingConfig, { errors: "all", onExcessProperty: "error" })(input).pipe(
    Effect.mapError((error) =>
      new RoutingConfigError({ source, issues: Budget.issuesOf(error, { quoteKeys: true, concise: true }) })
    ),
    Effect.flatMap((config) => {
      const issues = crossFieldIssues(config, Object.keys(options?.strategies ?? {}))
      return issues.length > 0 ? Effect.fail(new RoutingConfigError({ source, issues })) : Effect.succeed(config)
    })
  )

/**
 * The client of a file's deployment: one named in code, its own (from `baseURL`, `apiKeyEnv`,
 * `organizationId`, `projectId`, the rest from the default client; one per distinct set), or the
 * default client (`undefined`: the router's).
 */
const clientOf = (
  d: RoutingConfig["deployments"][number],
  i: number,
  defaults: ConfigDefaults,
  own: Map<string, OpenAi.ClientOptions>,
  issues: Array<Issue>
): Effect.Effect<
  { readonly client: OpenAIClient | OpenAi.ClientOptions | undefined } | undefined,
  ConfigError.ConfigError
> =>
  Effect.gen(function*() {
    const fallback = defaults.client
    if (d.client !== undefined) {
      const client = defaults.clients?.[d.client]
      if (client === undefined) {
        issues.push({ path: `deployments[${i}].client`, message: `no client named ${JSON.stringify(d.client)}` })
      }
      return { client }
    }
    if (
      d.baseURL === undefined && d.apiKeyEnv === undefined && d.organizationId === undefined &&
      d.projectId === undefined
    ) {
      if (fallback === undefined) {
        issues.push({ path: `deployments[${i}]`, message: "no client: give a default client in code, or apiKeyEnv" })
      }
      return { client: undefined }
    }
    const key = JSON.stringify([d.baseURL, d.apiKeyEnv, d.organizationId, d.projectId])
    const known = own.get(key)
    if (known !== undefined) return { client: known }
    const fallbackOptions = fallback === undefined
      ? undefined
      : isClient(fallback)
      ? { apiKey: Redacted.make(String(fallback.apiKey ?? "")), baseURL: fallback.baseURL }
      : fallback
    const apiKey = d.apiKeyEnv !== undefined ? yield* Config.redacted(d.apiKeyEnv) : fallbackOptions?.apiKey
    if (apiKey === undefined) {
      issues.push({
        path: `deployments[${i}].apiKeyEnv`,
        message: "no API key: name its environment variable, or give a default client"
      })
      return undefined
    }
    const built: OpenAi.ClientOptions = {
      ...fallbackOptions,
      apiKey,
      baseURL: d.baseURL ?? fallbackOptions?.baseURL,
      organizationId: d.organizationId,
      projectId: d.projectId
    }
    own.set(key, built)
    return { client: built }
  })

/**
 * Options from a decoded routing file: each deployment's client, the strategy by its name (a custom
 * one first), the file's other fields, then what code gives (it wins, but an absent option does not erase
 * the file's).
 *
 * @internal
 */
export const optionsFromConfig = (
  config: RoutingConfig,
  defaults: ConfigDefaults = {},
  source = "<routing>"
): Effect.Effect<OpenAiRouter.Options, RoutingConfigError | ConfigError.ConfigError> =>
  Effect.gen(function*() {
    const issues: Array<Issue> = []
    const own = new Map<string, OpenAi.ClientOptions>()
    const deployments: Array<Deployment> = []
    for (let i = 0; i < config.deployments.length; i++) {
      const d = config.deployments[i]
      const resolved = yield* clientOf(d, i, defaults, own, issues)
      if (resolved === undefined) continue
      deployments.push({
        ...(d.id === undefined ? {} : { id: d.id }),
        model: d.model,
        organization: d.organization,
        project: d.project,
        kind: d.kind,
        client: resolved.client,
        price: d.price,
        contextWindow: d.contextWindow,
        capabilities: d.capabilities,
        tags: d.tags,
        weight: d.weight,
        region: d.region,
        aliases: d.aliases
      })
    }
    const custom = defaults.strategies ?? {}
    const named = config.strategy === undefined
      ? undefined
      : hasOwn(custom, config.strategy)
      ? custom[config.strategy]
      : hasOwn(strategies, config.strategy)
      ? config.strategy as StrategyName
      : undefined
    if (config.strategy !== undefined && named === undefined) {
      issues.push(unknownStrategy(config.strategy, [...Object.keys(strategies), ...Object.keys(custom)]))
    }
    if (issues.length > 0) return yield* Effect.fail(new RoutingConfigError({ source, issues }))
    const organizations: Record<string, { readonly tier?: Tiers.Tier | undefined }> = {}
    for (const [name, org] of Object.entries(config.organizations ?? {})) organizations[name] = { tier: org.tier }
    const { clients: _clients, strategies: _strategies, ...given } = defaults
    // what code gives wins over the file, but an absent (undefined) option does not erase the file's
    const rest = Object.fromEntries(Object.entries(given).filter(([, value]) => value !== undefined))
    return {
      deployments,
      strategy: named,
      tasks: config.tasks,
      taskOthers: config.taskOthers,
      rules: config.rules,
      report: config.report,
      tier: config.tier,
      organizations: { ...organizations, ...defaults.organizations },
      ...rest
    } satisfies OpenAiRouter.Options
  })
