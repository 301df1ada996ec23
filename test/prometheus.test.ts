/**
 * The Prometheus scrape endpoint of `examples/prometheus.ts`: the example's job run in virtual time, then the
 * endpoint scraped over real HTTP and its exposition parsed. The figures must be the run's: requests by outcome,
 * 429s by kind, the GenAI duration histogram in seconds, the pool's utilisation and limit gauges.
 */
import { describe, expect, it } from "@effect/vitest"
import { Simulator, VirtualTime } from "@sluice/testing"
import { Effect } from "effect"
import * as Fs from "node:fs"
import { job, OpenAiOnSimulator, scenario } from "../examples/opentelemetry.js"
import { MetricsEndpoint, PrometheusLive } from "../examples/prometheus.js"

interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

interface Exposition {
  readonly types: ReadonlyMap<string, string>
  readonly samples: ReadonlyArray<Sample>
}

/** Prometheus' text format (0.0.4): `# TYPE` lines and samples; any other line fails the parse. */
const parse = (text: string): Exposition => {
  const types = new Map<string, string>()
  const samples: Array<Sample> = []
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue
    if (line.startsWith("#")) {
      const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line)
      if (type !== null) types.set(type[1], type[2])
      else if (!/^# (HELP|UNIT) [a-zA-Z_:][a-zA-Z0-9_:]* /.test(line)) throw new Error(`bad comment: ${line}`)
      continue
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: -?\d+)?$/.exec(line)
    if (sample === null) throw new Error(`bad sample: ${line}`)
    const labels: Record<string, string> = {}
    const body = sample[2] ?? ""
    const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g
    let consumed = 0
    for (let match = label.exec(body); match !== null; match = label.exec(body)) {
      if (match.index !== consumed) throw new Error(`bad labels: ${line}`)
      labels[match[1]] = match[2].replace(/\\n/g, "\n").replace(/\\"/g, "\"").replace(/\\\\/g, "\\")
      consumed = label.lastIndex
    }
    if (consumed !== body.length) throw new Error(`bad labels: ${line}`)
    const value = sample[3] === "+Inf" ? Infinity : sample[3] === "-Inf" ? -Infinity : Number(sample[3])
    if (Number.isNaN(value) && sample[3] !== "NaN") throw new Error(`bad value: ${line}`)
    samples.push({ name: sample[1], labels, value })
  }
  return { types, samples }
}

describe("Prometheus scrape endpoint", () => {
  it.effect("serves the run's metrics in the text format", () =>
    Effect.gen(function*() {
      const run = `prom-${Math.random().toString(36).slice(2)}`
      const answers = yield* VirtualTime.run(job(40)).pipe(
        Effect.provide(OpenAiOnSimulator),
        Effect.tagMetrics("sluice.test.run", run)
      )
      expect(answers).toHaveLength(40)
      const sim = yield* Simulator.stats
      const { url } = yield* MetricsEndpoint
      const response = yield* Effect.promise(() => fetch(url))
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toMatch(/^text\/plain/)
      const { samples, types } = parse(yield* Effect.promise(() => response.text()))

      const mine = (name: string, where: Record<string, string> = {}) =>
        samples.filter((sample) =>
          sample.name === name && sample.labels.sluice_test_run === run &&
          Object.entries(where).every(([key, value]) => sample.labels[key] === value)
        )
      const total = (name: string, where: Record<string, string> = {}) =>
        mine(name, where).reduce((sum, sample) => sum + sample.value, 0)

      expect(types.get("sluice_openai_requests_total")).toBe("counter")
      expect(total("sluice_openai_requests_total")).toBe(sim.attempts.length)
      expect(total("sluice_openai_requests_total", { outcome: "ok", gen_ai_request_model: "gpt-4o-mini" })).toBe(40)
      const rejected = sim.attempts.filter((a) => a.status === 429).length
      expect(rejected).toBeGreaterThan(0)
      expect(types.get("sluice_openai_rate_limited_total")).toBe("counter")
      expect(total("sluice_openai_rate_limited_total", { kind: "tokens_per_minute" })).toBe(rejected)

      expect(types.get("gen_ai_client_operation_duration")).toBe("histogram")
      expect(total("gen_ai_client_operation_duration_count", { unit: "s" })).toBe(40)
      const infinite = mine("gen_ai_client_operation_duration_bucket", { le: "+Inf" })
      expect(infinite.reduce((sum, sample) => sum + sample.value, 0)).toBe(40)

      expect(types.get("sluice_limiter_utilization")).toBe("gauge")
      const tokens = { scope: "org:default/pool:gpt-4o-mini", dimension: "tokens", window: "1m" }
      expect(mine("sluice_limiter_limit", tokens).map((sample) => sample.value)).toEqual([5_000])
      const utilization = mine("sluice_limiter_utilization", tokens)
      expect(utilization).toHaveLength(1)
      expect(utilization[0].value).toBeGreaterThanOrEqual(0)
      expect(utilization[0].value).toBeLessThanOrEqual(1)
      expect(types.get("sluice_limiter_queue_depth")).toBe("gauge")
      expect(mine("sluice_limiter_queue_depth").map((sample) => sample.labels.lane).sort()).toEqual([
        "background",
        "interactive"
      ])

      // the Grafana dashboard (examples/grafana-dashboard.json) queries only what the endpoint serves
      const dashboard = JSON.parse(
        Fs.readFileSync(new URL("../examples/grafana-dashboard.json", import.meta.url), "utf8")
      ) as { readonly panels: ReadonlyArray<{ readonly targets?: ReadonlyArray<{ readonly expr: string }> }> }
      const exprs = dashboard.panels.flatMap((panel) => panel.targets ?? []).map((target) => target.expr)
      expect(exprs.length).toBeGreaterThan(10)
      const labelNames = new Set(samples.flatMap((sample) => Object.keys(sample.labels)))
      const queried = new Set(
        exprs.flatMap((expr) => expr.match(/\b(?:sluice|gen_ai)_[a-z_]+/g) ?? []).filter((name) =>
          !labelNames.has(name)
        )
      )
      // a breaker's gauge (CircuitBreaker.stateGauge) appears once a breaker moves; none did in this run
      expect(queried.delete("sluice_breaker_state")).toBe(true)
      const served = (name: string) =>
        types.has(name) || (name.endsWith("_bucket") && types.get(name.slice(0, -"_bucket".length)) === "histogram")
      expect([...queried].filter((name) => !served(name))).toEqual([])
      expect(queried.size).toBeGreaterThan(10)
    }).pipe(
      Effect.provide(Simulator.layer(scenario)),
      Effect.provide(PrometheusLive({ port: 0, host: "127.0.0.1" }))
    ))
})
