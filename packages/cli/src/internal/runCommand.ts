/**
 * `sluice run`: a Batch API JSONL file at the provider's limit, live, through the Batch API or both (`--via`),
 * resumable from its output, with an optional response cache and run record. Its options; the handler
 * (`runHandler.ts`) is loaded when the command runs.
 *
 * @internal
 */
import type * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Effect from "effect/Effect"
import type { Environment } from "../Cli.js"
import { connectOptions, count, errorsOption, hostOption, inputOption, optional, outputOption } from "./options.js"
import { progressOption } from "./options.js"
import type { Handled } from "./options.js"
import { loadHandler } from "./usageError.js"

/** @internal */
export const options = {
  input: inputOption("Batch API request file (JSONL: {custom_id, method: \"POST\", url, body} a line)"),
  output: outputOption("Output file (Batch API output format); rerun with the same file to resume"),
  errors: errorsOption,
  baseUrl: connectOptions.baseUrl,
  apiKeyEnv: connectOptions.apiKeyEnv,
  tier: connectOptions.tier,
  limits: connectOptions.limits,
  routing: optional(Options.file("routing", { exists: "yes" }), "Routing table file (JSON)"),
  concurrency: count("concurrency", "Requests in flight at most (the rate limiter paces them)", 256),
  order: Options.choice("order", ["largest-first", "input"]).pipe(
    Options.withDescription(
      "largest-first: each 1,024 lines go out largest first (by the output they may ask for, then their length), so " +
        "a long call does not start last; input: in the file's order"
    ),
    Options.withDefault("largest-first" as const)
  ),
  priority: optional(Options.choice("priority", ["interactive", "background"]), "Priority lane for admission"),
  deadline: optional(
    Options.text("deadline"),
    "Per-request admission deadline (e.g. 30s, 5m, 1h30m); with --via auto, the whole job's deadline (e.g. 48h)"
  ),
  via: Options.choice("via", ["live", "batch", "auto"]).pipe(
    Options.withDescription(
      "live: every line at the rate limit; batch: every line the Batch API takes through it (half price, " +
        "state in <output>.batch.json); auto: by batch what fits --deadline, the rest live"
    ),
    Options.withDefault("live" as const)
  ),
  cancel: Options.boolean("cancel").pipe(
    Options.withDescription("Cancel this output's Batch API batches (its lines not done stay resumable)")
  ),
  batchPoll: Options.text("batch-poll").pipe(
    Options.withDescription("Batch API: poll a batch first after this (then x1.5, up to 5 min)"),
    Options.withDefault("10s")
  ),
  batchLease: Options.text("batch-lease").pipe(
    Options.withDescription(
      "Batch API: a batch's enqueued-token hold lapses this long after its run's last renewal (renewed every third)"
    ),
    Options.withDefault("2m")
  ),
  redis: connectOptions.redis,
  cache: optional(
    Options.text("cache"),
    "Keep every answer in a response cache (a directory, or redis://host:port with @sluice/redis): a line whose " +
      "body is already there, or under way, is not sent again"
  ),
  simulate: connectOptions.simulate,
  speed: connectOptions.speed,
  restart: Options.boolean("restart").pipe(
    Options.withDescription("Start over: truncate the output instead of resuming from it")
  ),
  retryFailed: Options.boolean("retry-failed").pipe(
    Options.withDescription(
      "Resend the lines whose output line is a failure; their old lines move to <output>.retried.jsonl"
    )
  ),
  record: optional(
    Options.file("record"),
    "Append a record of the run to this file (JSONL: per second and per line; each rerun adds a segment) for " +
      "`sluice report`"
  ),
  progress: progressOption,
  otlp: optional(
    Options.text("otlp"),
    "Export the run's traces and metrics over OTLP/HTTP (JSON) to this URL (e.g. http://localhost:4318); needs " +
      "@effect/opentelemetry"
  ),
  metricsPort: optional(
    Options.integer("metrics-port"),
    "Serve the run's metrics for Prometheus at http://<metrics-host>:N/metrics while it lasts; needs " +
      "@effect/opentelemetry, @opentelemetry/exporter-prometheus and @opentelemetry/sdk-metrics"
  ),
  metricsHost: hostOption("metrics-host", "The interface --metrics-port listens on")
} as const

/** @internal */
export type RunOptions = Command.Command.ParseConfig<typeof options>

/** @internal */
export const handler = (env: Environment) => (options: RunOptions): Handled =>
  Effect.flatMap(loadHandler("run", () => import("./runHandler.js")), (run) => run.handler(env, options))
