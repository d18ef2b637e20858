// deploy/grafana/llamux-dashboard.json imports into Grafana and every query in
// it reads a metric that llamux really exports: renaming or dropping a metric
// in src/metrics.ts without fixing the dashboard fails here, and so does a
// llamux metric that no panel shows.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { EngineClient } from "../../../engine/index.js";
import { bindEngineMetrics, createMetrics } from "../../../src/metrics.js";
import { allPanels, allQueries, loadDashboard, metricNamesIn, type Dashboard } from "../../helpers/grafanaDashboard.js";

/** Grafana's template variable for the data source the operator picks (a literal, not a JS template). */
const DATASOURCE_VARIABLE = "$" + "{datasource}";

type MetricType = "counter" | "gauge" | "histogram" | "summary";

/** The registry as the server builds it (src/server.ts): its metric names and types. */
async function exported(): Promise<Map<string, MetricType>> {
  const metrics = createMetrics();
  // Never started: stats() answers null, so the engine gauges read nothing, but they are registered.
  const engine = new EngineClient({
    worker: {
      modelPath: "unused.gguf",
      modelId: "unused",
      slots: 1,
      contextPerSlot: 64,
      threads: 1,
      gpu: "off",
      chatTemplateFile: null,
      stepTokens: 64,
      coalesceMs: 0,
    },
  });
  bindEngineMetrics(metrics, [{ id: "unused", engine }]);
  const list = await metrics.registry.getMetricsAsJSON();
  return new Map(list.map((m) => [m.name, String(m.type) as MetricType]));
}

const SERIES_SUFFIXES: Record<MetricType, string[]> = { counter: [""], gauge: [""], histogram: ["_bucket", "_sum", "_count"], summary: ["", "_sum", "_count"] };

/**
 * The metric a series name belongs to, or null if no exported metric has that
 * series: a histogram's series are its _bucket, _sum and _count, never its bare name.
 */
function owner(series: string, metrics: Map<string, MetricType>): string | null {
  for (const [name, type] of metrics) {
    if (SERIES_SUFFIXES[type].some((s) => series === name + s)) return name;
  }
  return null;
}

function unknownSeries(exprs: string[], metrics: Map<string, MetricType>): string[] {
  return exprs.flatMap(metricNamesIn).filter((s) => owner(s, metrics) === null);
}

let dashboard: Dashboard;
let metrics: Map<string, MetricType>;
before(async () => {
  dashboard = loadDashboard();
  metrics = await exported();
});

describe("Grafana dashboard", () => {
  test("is importable: title, uid, schema version, a Prometheus data source variable, panels with unique ids and queries", () => {
    assert.equal(typeof dashboard.title, "string");
    assert.ok(dashboard.title);
    assert.match(String(dashboard.uid), /^[A-Za-z0-9_-]{1,40}$/, "Grafana uids are at most 40 characters");
    assert.ok(typeof dashboard.schemaVersion === "number" && dashboard.schemaVersion >= 30, "a schema version Grafana 9+ reads without migration");
    const variables = dashboard.templating?.list ?? [];
    const ds = variables.find((v) => v.type === "datasource");
    assert.ok(ds, "a data source template variable, so import works with any Prometheus");
    assert.equal(ds.query, "prometheus");
    const varNames = new Set(variables.map((v) => String(v.name)));

    const panels = allPanels(dashboard);
    assert.ok(panels.length > 0);
    const ids = panels.map((p) => p.id);
    assert.ok(
      ids.every((id) => Number.isInteger(id)),
      "integer panel ids",
    );
    assert.equal(new Set(ids).size, ids.length, `duplicate panel ids in ${JSON.stringify(ids)}`);
    for (const p of panels) {
      const name = `panel ${String(p.id)} '${String(p.title)}'`;
      assert.equal(typeof p.type, "string", `${name}: type`);
      assert.ok(typeof p.title === "string" && p.title !== "", `${name}: title`);
      const g = p.gridPos;
      assert.ok(g && [g.h, g.w, g.x, g.y].every((n) => Number.isInteger(n)), `${name}: gridPos`);
      assert.ok((g.x as number) + (g.w as number) <= 24, `${name}: wider than Grafana's 24 columns`);
      if (p.type === "row") continue;
      assert.equal(p.datasource?.uid, DATASOURCE_VARIABLE, `${name}: reads the chosen data source`);
      const targets = p.targets ?? [];
      assert.ok(targets.length > 0, `${name}: no queries`);
      const refIds = targets.map((t) => t.refId);
      assert.equal(new Set(refIds).size, refIds.length, `${name}: duplicate refIds`);
      for (const t of targets) {
        assert.ok(typeof t.expr === "string" && t.expr.trim() !== "", `${name} ${String(t.refId)}: empty expr`);
        assert.equal(t.datasource?.uid, DATASOURCE_VARIABLE, `${name} ${String(t.refId)}: data source`);
      }
    }
    for (const q of allQueries(dashboard)) {
      for (const v of q.expr.match(/\$\w+/g) ?? []) {
        assert.ok(v.startsWith("$__") || varNames.has(v.slice(1)), `${q.where}: ${v} is not a template variable`);
      }
      let depth = 0;
      for (const c of q.expr) {
        depth += "({[".includes(c) ? 1 : ")}]".includes(c) ? -1 : 0;
        assert.ok(depth >= 0, `${q.where}: unbalanced brackets in ${q.expr}`);
      }
      assert.equal(depth, 0, `${q.where}: unbalanced brackets in ${q.expr}`);
    }
  });

  test("every llamux_* series a query reads is exported by src/metrics.ts", () => {
    const bad = allQueries(dashboard).flatMap((q) =>
      metricNamesIn(q.expr)
        .filter((s) => owner(s, metrics) === null)
        .map((s) => `${q.where}: ${s}`),
    );
    assert.deepEqual(bad, [], `the dashboard reads series llamux does not export:\n${bad.join("\n")}`);
  });

  test("the check above catches a renamed metric, a suffix on a non-histogram, and a histogram read bare", () => {
    assert.deepEqual(unknownSeries(["rate(llamux_ttft_seconds_bucket[1m])"], metrics), ["llamux_ttft_seconds_bucket"]);
    assert.deepEqual(unknownSeries(["sum(llamux_requests_running_bucket)"], metrics), ["llamux_requests_running_bucket"]);
    assert.deepEqual(unknownSeries(["rate(llamux_prefill_seconds[1m])"], metrics), ["llamux_prefill_seconds"]);
    assert.deepEqual(unknownSeries(["rate(llamux_prefill_seconds_count[1m]) / rate(llamux_generations_total[1m])"], metrics), []);
  });

  test("every llamux metric has a panel, and every histogram a percentile panel over its buckets", () => {
    const promql = allQueries(dashboard).filter((q) => q.kind === "promql");
    const shown = new Set(promql.flatMap((q) => metricNamesIn(q.expr)).map((s) => owner(s, metrics)));
    const own = [...metrics.keys()].filter((m) => !m.startsWith("llamux_process_"));
    assert.ok(own.includes("llamux_prefill_seconds") && own.includes("llamux_generations_total"), "the registry has llamux's own metrics");
    const missing = own.filter((m) => !shown.has(m));
    assert.deepEqual(missing, [], `no panel in deploy/grafana/llamux-dashboard.json shows: ${missing.join(", ")}`);
    for (const [name, type] of metrics) {
      if (type !== "histogram" || name.startsWith("llamux_process_")) continue;
      const quantile = promql.some((q) => q.expr.includes("histogram_quantile(") && new RegExp(`rate\\(${name}_bucket\\b`).test(q.expr));
      assert.ok(quantile, `${name}: no histogram_quantile over rate(${name}_bucket[...])`);
    }
  });
});
