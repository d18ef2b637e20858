// Reads deploy/grafana/llamux-dashboard.json for the tests that check it: its
// panels (row children included), its PromQL, and the metric names that PromQL uses.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

// Compiled to dist/test/helpers/: the repository root is three levels up.
export const DASHBOARD_PATH = path.join(fileURLToPath(new URL("../../../", import.meta.url)), "deploy/grafana/llamux-dashboard.json");

export interface Target {
  refId?: unknown;
  expr?: unknown;
  datasource?: { type?: unknown; uid?: unknown };
}

export interface Panel {
  id?: unknown;
  type?: unknown;
  title?: unknown;
  gridPos?: { h?: unknown; w?: unknown; x?: unknown; y?: unknown };
  datasource?: { type?: unknown; uid?: unknown };
  targets?: Target[];
  panels?: Panel[];
}

export interface TemplateVariable {
  type?: unknown;
  name?: unknown;
  query?: unknown;
  definition?: unknown;
}

export interface Dashboard {
  title?: unknown;
  uid?: unknown;
  schemaVersion?: unknown;
  panels?: Panel[];
  templating?: { list?: TemplateVariable[] };
}

export function loadDashboard(): Dashboard {
  return JSON.parse(fs.readFileSync(DASHBOARD_PATH, "utf8")) as Dashboard;
}

/** Every panel, rows' collapsed children included, in document order. */
export function allPanels(d: Dashboard): Panel[] {
  return (d.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);
}

export interface Query {
  /** Where it sits, for messages: the panel title and refId, or the variable's name. */
  where: string;
  expr: string;
  /** PromQL (a panel target), or Grafana's label_values() (a template variable). */
  kind: "promql" | "variable";
}

export function allQueries(d: Dashboard): Query[] {
  const queries: Query[] = [];
  for (const p of allPanels(d)) {
    for (const t of p.targets ?? []) queries.push({ where: `panel '${String(p.title)}' ${String(t.refId)}`, expr: String(t.expr ?? ""), kind: "promql" });
  }
  for (const v of d.templating?.list ?? []) {
    if (v.type !== "query") continue;
    const q = typeof v.query === "object" && v.query !== null ? (v.query as { query?: unknown }).query : v.query;
    queries.push({ where: `variable '${String(v.name)}'`, expr: String(q ?? v.definition ?? ""), kind: "variable" });
  }
  return queries;
}

/** The llamux_* (and GenAI convention gen_ai_*) series names an expression reads. */
export function metricNamesIn(expr: string): string[] {
  // Label matchers are not series: {gen_ai_request_model=~"$model"} names a label.
  const outsideMatchers = expr.replace(/\{[^}]*\}/g, "{}");
  return [...new Set(outsideMatchers.match(/\b(?:llamux|gen_ai)_[A-Za-z0-9_]+/g) ?? [])];
}

/** The expression as Grafana would send it to Prometheus, with every variable at "All" and a 1m rate window. */
export function asSentToPrometheus(expr: string): string {
  return expr
    .replaceAll("$__rate_interval", "1m")
    .replaceAll("$__range", "5m")
    .replaceAll("$__interval", "15s")
    .replace(/\$(\w+)/g, ".*");
}
