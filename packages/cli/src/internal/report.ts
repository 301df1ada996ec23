/**
 * `sluice report FILE --html out.html`: one self-contained page (no network, no script library) from a run
 * record: inline SVG charts drawn here, the record itself embedded as JSON (`<script type="application/json"
 * id="sluice-record">`) so that what the charts show can be checked against it.
 *
 * @internal
 */
import type * as Record from "./record.js"
import { bucketFloor, quantile } from "./record.js"

const escape = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" })[c]!)

const palette = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"]

interface Series {
  readonly name: string
  readonly points: ReadonlyArray<readonly [number, number]>
}

const niceMax = (max: number): number => {
  if (!(max > 0)) return 1
  const p = 10 ** Math.floor(Math.log10(max))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p
  return 10 * p
}

const clock = (s: number): string => {
  const m = Math.floor(s / 60)
  return m === 0 ? `${Math.round(s)}s` : `${m}m${String(Math.round(s % 60)).padStart(2, "0")}`
}

/** A line chart: x in seconds, one polyline per series, a dashed reference line (e.g. the limit) if given. */
const lineChart = (options: {
  readonly title: string
  readonly unit: string
  readonly series: ReadonlyArray<Series>
  readonly xMax: number
  readonly reference?: { readonly y: number; readonly label: string } | undefined
  readonly yMax?: number | undefined
}): string => {
  const W = 760, H = 220, L = 56, R = 12, T = 28, B = 30
  let max = options.reference?.y ?? 0
  for (const s of options.series) for (const [, y] of s.points) max = Math.max(max, y)
  const yMax = options.yMax ?? niceMax(max * 1.05)
  const xMax = Math.max(1, options.xMax)
  const x = (v: number) => L + (v / xMax) * (W - L - R)
  const y = (v: number) => T + (1 - Math.min(v, yMax) / yMax) * (H - T - B)
  const parts: Array<string> = []
  parts.push(
    `<text x="${L}" y="16" class="title">${escape(options.title)}${
      options.unit.trim() === "" ? "" : ` (${escape(options.unit.trim())})`
    }</text>`
  )
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" class="grid"/>`)
    parts.push(
      `<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end" class="tick">${
        Number(v.toPrecision(3)).toLocaleString("en-US")
      }</text>`
    )
  }
  for (let i = 0; i <= 5; i++) {
    const v = (xMax * i) / 5
    parts.push(`<text x="${x(v)}" y="${H - 10}" text-anchor="middle" class="tick">${clock(v)}</text>`)
  }
  if (options.reference !== undefined) {
    const ry = y(options.reference.y)
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${ry}" y2="${ry}" class="limit"/>`)
    parts.push(
      `<text x="${W - R}" y="${ry - 4}" text-anchor="end" class="tick">${escape(options.reference.label)}</text>`
    )
  }
  options.series.forEach((s, i) => {
    const color = palette[i % palette.length]!
    if (s.points.length > 0) {
      const d = s.points.map(([px, py]) => `${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(" ")
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${d}"/>`)
    }
    parts.push(`<rect x="${L + 8 + i * 150}" y="${T + 2}" width="10" height="10" fill="${color}"/>`)
    parts.push(`<text x="${L + 22 + i * 150}" y="${T + 11}" class="legend">${escape(s.name)}</text>`)
  })
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escape(options.title)}">${
    parts.join("")
  }</svg>`
}

/** A bar chart of counts by label. */
const barChart = (title: string, bars: ReadonlyArray<readonly [string, number]>): string => {
  const W = 760, H = 200, L = 56, T = 28, B = 30
  const max = niceMax(Math.max(1, ...bars.map(([, n]) => n)))
  const width = (W - L - 12) / Math.max(1, bars.length)
  const parts = [`<text x="${L}" y="16" class="title">${escape(title)}</text>`]
  bars.forEach(([label, n], i) => {
    const h = (n / max) * (H - T - B)
    const bx = L + i * width + width * 0.15
    parts.push(`<rect x="${bx}" y="${H - B - h}" width="${width * 0.7}" height="${h}" fill="${palette[0]}"/>`)
    parts.push(`<text x="${bx + width * 0.35}" y="${H - B - h - 4}" text-anchor="middle" class="tick">${n}</text>`)
    parts.push(`<text x="${bx + width * 0.35}" y="${H - 10}" text-anchor="middle" class="tick">${escape(label)}</text>`)
  })
  return `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escape(title)}">${
    parts.join("")
  }</svg>`
}

const sum = (counts: Readonly<globalThis.Record<string, number>>): number =>
  Object.values(counts).reduce((a, b) => a + b, 0)

const windowName = (ms: number): string =>
  ms === 60_000 ? "min" : ms === 86_400_000 ? "day" : ms === 1_000 ? "s" : `${ms}ms`

const shortScope = (scope: string): string => scope.replace(/^org:[^/]+\/pool:/, "").replace(/^org:/, "org ")

/** What the charts show, computed from the record's entries (also what the tests compare). */
export const chartData = (entries: ReadonlyArray<Record.Entry>) => {
  const start = entries.find((e) => e.type === "run")?.t ?? 0
  const seconds = entries.filter((e): e is Record.SecondEntry => e.type === "second")
  const lines = entries.filter((e): e is Record.LineEntry => e.type === "line")
  const ends = entries.filter((e): e is Record.EndEntry => e.type === "end")
  const at = (t: number) => (t - start) / 1000
  const utilisation = new Map<string, Map<string, Array<readonly [number, number]>>>()
  for (const s of seconds) {
    for (const [scope, dimension, windowMs, level, limit] of s.levels) {
      let byDimension = utilisation.get(scope)
      if (byDimension === undefined) utilisation.set(scope, byDimension = new Map())
      const key = `${dimension}/${windowName(windowMs)}`
      let points = byDimension.get(key)
      if (points === undefined) byDimension.set(key, points = [])
      points.push([at(s.t), limit > 0 ? Math.max(0, (limit - level) / limit) * 100 : 0])
    }
  }
  const latency = new Map<number, number>()
  for (const s of seconds) for (const [b, n] of s.latency) latency.set(b, (latency.get(b) ?? 0) + n)
  const attempts = new Map<number, number>()
  for (const l of lines) attempts.set(l.attempts, (attempts.get(l.attempts) ?? 0) + 1)
  return {
    start,
    xMax: seconds.length === 0 ? 0 : at(seconds[seconds.length - 1]!.t),
    seconds,
    lines,
    ends,
    at,
    utilisation,
    latency,
    attempts,
    totals: {
      admitted: seconds.reduce((a, s) => a + s.admitted, 0),
      rateLimited: seconds.reduce((a, s) => a + Object.values(s.rateLimited).reduce((b, c) => b + sum(c), 0), 0),
      errors: seconds.reduce((a, s) => a + sum(s.errors), 0),
      retries: seconds.reduce((a, s) => a + sum(s.retries), 0)
    }
  }
}

const table = (head: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string | number>>): string =>
  `<table><thead><tr>${head.map((h) => `<th>${escape(h)}</th>`).join("")}</tr></thead><tbody>${
    rows.map((r) => `<tr>${r.map((c) => `<td>${escape(String(c))}</td>`).join("")}</tr>`).join("")
  }</tbody></table>`

const ms = (v: number | undefined) => (v === undefined ? "–" : `${Math.round(v).toLocaleString("en-US")} ms`)

/** The page. `source` names the record(s) in the title. */
export const html = (entries: ReadonlyArray<Record.Entry>, source: string): string => {
  const d = chartData(entries)
  const pts = (f: (s: Record.SecondEntry) => number | undefined) =>
    d.seconds.flatMap((s) => {
      const v = f(s)
      return v === undefined ? [] : [[d.at(s.t), v] as const]
    })
  const charts: Array<string> = []
  for (const [scope, byDimension] of d.utilisation) {
    charts.push(lineChart({
      title: `Budget used — ${shortScope(scope)}: share of each limit's bucket`,
      unit: "%",
      xMax: d.xMax,
      yMax: 120,
      reference: { y: 100, label: "limit" },
      series: Array.from(byDimension, ([name, points]) => ({ name, points }))
    }))
  }
  charts.push(lineChart({
    title: "Queue: calls waiting at the limiter, requests in flight",
    unit: "",
    xMax: d.xMax,
    series: [{ name: "queued", points: pts((s) => s.queued) }, { name: "in flight", points: pts((s) => s.inFlight) }]
  }))
  charts.push(lineChart({
    title: "Admissions per sample: sent, and those that waited",
    unit: "",
    xMax: d.xMax,
    series: [{ name: "sent", points: pts((s) => s.admitted) }, { name: "waited", points: pts((s) => s.waits) }]
  }))
  charts.push(lineChart({
    title: "Mean admission wait",
    unit: " ms",
    xMax: d.xMax,
    series: [{ name: "wait", points: pts((s) => (s.waits === 0 ? 0 : s.waitMs / s.waits)) }]
  }))
  charts.push(lineChart({
    title: "429s apart from other failed attempts",
    unit: "",
    xMax: d.xMax,
    series: [
      { name: "429s", points: pts((s) => Object.values(s.rateLimited).reduce((a, c) => a + sum(c), 0)) },
      { name: "other errors", points: pts((s) => sum(s.errors)) }
    ]
  }))
  const q = (p: number) => (s: Record.SecondEntry) => quantile(new Map(s.latency), p)
  charts.push(lineChart({
    title: "Latency percentiles (answered attempts)",
    unit: " ms",
    xMax: d.xMax,
    series: [
      { name: "p50", points: pts(q(0.5)) },
      { name: "p90", points: pts(q(0.9)) },
      { name: "p99", points: pts(q(0.99)) }
    ]
  }))
  charts.push(barChart(
    "Lines by attempts (1 = no retry)",
    Array.from(d.attempts).sort((a, b) => a[0] - b[0]).map(([n, count]) => [String(n), count] as const)
  ))

  const rateLimitedRows = new Map<string, number>()
  for (const s of d.seconds) {
    for (const [model, kinds] of Object.entries(s.rateLimited)) {
      for (const [kind, n] of Object.entries(kinds)) {
        rateLimitedRows.set(`${model}\u0000${kind}`, (rateLimitedRows.get(`${model}\u0000${kind}`) ?? 0) + n)
      }
    }
  }
  const errorRows = new Map<string, number>()
  const retryRows = new Map<string, number>()
  for (const s of d.seconds) {
    for (const [k, n] of Object.entries(s.errors)) errorRows.set(k, (errorRows.get(k) ?? 0) + n)
    for (const [k, n] of Object.entries(s.retries)) retryRows.set(k, (retryRows.get(k) ?? 0) + n)
  }
  const summary = table(
    [
      "run",
      "outcome",
      "lines",
      "succeeded",
      "failed",
      "invalid",
      "already done",
      "not done",
      "429s",
      "retries",
      "waits",
      "wall time"
    ],
    d.ends.map((e, i) => [
      i + 1,
      e.outcome,
      e.total,
      e.succeeded,
      e.failed,
      e.invalid,
      e.alreadyDone,
      e.notDone,
      e.rateLimited,
      e.retries,
      `${e.waits} (${ms(e.waits === 0 ? 0 : e.waitMs / e.waits)} avg)`,
      clock(e.wallMs / 1000)
    ])
  )
  const percentiles = table(
    ["p50", "p90", "p99", "max", "attempts answered"],
    [[
      ms(quantile(d.latency, 0.5)),
      ms(quantile(d.latency, 0.9)),
      ms(quantile(d.latency, 0.99)),
      ms(d.latency.size === 0 ? undefined : bucketFloor(Math.max(...d.latency.keys()))),
      Array.from(d.latency.values()).reduce((a, b) => a + b, 0)
    ]]
  )
  const data = JSON.stringify(entries).replace(/</g, "\\u003c")
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>sluice run report — ${escape(source)}</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#111;max-width:800px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
svg{display:block;margin:8px 0;background:#fafafa;border:1px solid #e5e7eb}
.title{font-weight:600;font-size:13px}.tick{font-size:11px;fill:#555}.legend{font-size:11px}
.grid{stroke:#e5e7eb}.limit{stroke:#111;stroke-dasharray:4 3}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
</style></head><body>
<h1>sluice run report</h1>
<p>${
    escape(source)
  }: <span id="segments">${d.ends.length}</span> run(s), <span id="entries">${entries.length}</span> entries; ${d.totals.admitted} attempts sent, ${d.totals.rateLimited} 429s, ${d.totals.errors} other failed attempts, ${d.totals.retries} retries.</p>
<h2>Summary</h2>${summary}
<h2>429s by model and kind</h2>${
    table(["model", "kind", "429s"], Array.from(rateLimitedRows, ([k, n]) => [...k.split("\u0000"), n]))
  }
<h2>Other failed attempts and retries by kind</h2>${
    table(
      ["kind", "failed attempts", "retries of it"],
      [...new Set([...errorRows.keys(), ...retryRows.keys()])].map((
        k
      ) => [k, errorRows.get(k) ?? 0, retryRows.get(k) ?? 0])
    )
  }
<h2>Latency</h2>${percentiles}
<h2>Over time</h2>
${charts.join("\n")}
<script type="application/json" id="sluice-record">${data}</script>
<script>
(function(){var entries=JSON.parse(document.getElementById("sluice-record").textContent);
if(entries.length!==${entries.length})throw new Error("record: "+entries.length+" entries");
document.documentElement.setAttribute("data-entries",String(entries.length));})();
</script>
</body></html>
`
}
