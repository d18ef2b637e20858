// Benchmark results as markdown tables and as JSON documents. Pure functions:
// the CLI decides where they go.
import type { CeilingLevel, CeilingOptions } from "./ceiling.js";
import type { LevelResult } from "./loadgen.js";
import type { MultiturnOptions, MultiturnResult } from "./multiturn.js";
import type { PhaseResult, TenantSpec } from "./tenants.js";

/** A fixed-point number, or "-" for NaN/Infinity (e.g. a latency with no samples). */
export const fixed = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : "-");

/**
 * The load table. With ceiling levels, a "vs ceiling" column gives the
 * server's output tokens/s over the ceiling's at the same concurrency ("-"
 * where the ceiling has no such level).
 */
export function loadTable(levels: readonly LevelResult[], ceiling: readonly CeilingLevel[] = []): string {
  const withCeiling = ceiling.length > 0;
  const head = [
    "concurrency",
    "req",
    "ok",
    "err",
    "prompt tok",
    "out tok/s",
    ...(withCeiling ? ["vs ceiling"] : []),
    "TTFT p50 ms",
    "TTFT p99 ms",
    "ITL p50 ms",
    "ITL p99 ms",
    "TPOT p50 ms",
    "E2E p50 ms",
    "E2E p99 ms",
  ];
  const rows = levels.map((l) => {
    const c = ceiling.find((x) => x.concurrency === l.concurrency);
    return [
      String(l.concurrency),
      String(l.requests),
      String(l.completed),
      String(l.errors),
      l.promptTokensMedian === null ? "-" : fixed(l.promptTokensMedian),
      fixed(l.outputTokensPerSecond, 1),
      ...(withCeiling ? [c ? fixed(l.outputTokensPerSecond / c.outputTokensPerSecond, 3) : "-"] : []),
      fixed(l.ttftMs.p50),
      fixed(l.ttftMs.p99),
      fixed(l.itlMs.p50, 1),
      fixed(l.itlMs.p99, 1),
      fixed(l.tpotMs.p50, 1),
      fixed(l.e2eMs.p50),
      fixed(l.e2eMs.p99),
    ];
  });
  return markdown(head, rows);
}

/**
 * The multi-tenant table: one row per tenant and phase. "share" is the
 * tenant's part of its phase's output tokens/s.
 */
export function tenantsTable(phases: readonly PhaseResult[]): string {
  const head = [
    "phase",
    "tenant",
    "in flight",
    "max tok",
    "req",
    "ok",
    "err",
    "cut",
    "prompt tok",
    "out tok/s",
    "share",
    "TTFT p50 ms",
    "TTFT p99 ms",
    "E2E p50 ms",
  ];
  const rows = phases.flatMap((p) => {
    const total = p.tenants.reduce((n, t) => n + t.outputTokensPerSecond, 0);
    return p.tenants.map((t) => [
      p.phase,
      t.tenant,
      String(t.inFlight),
      String(t.maxTokens),
      String(t.requests),
      String(t.completed),
      String(t.errors),
      String(t.cut),
      t.promptTokensMedian === null ? "-" : fixed(t.promptTokensMedian),
      fixed(t.outputTokensPerSecond, 1),
      total > 0 ? fixed(t.outputTokensPerSecond / total, 3) : "-",
      fixed(t.ttftMs.p50),
      fixed(t.ttftMs.p99),
      fixed(t.e2eMs.p50),
    ]);
  });
  return markdown(head, rows);
}

export function ceilingTable(levels: readonly CeilingLevel[]): string {
  return markdown(
    ["concurrency", "rounds", "out tokens", "seconds", "out tok/s"],
    levels.map((l) => [String(l.concurrency), String(l.rounds), String(l.outputTokens), fixed(l.seconds, 2), fixed(l.outputTokensPerSecond, 1)]),
  );
}

export interface LoadReport {
  kind: "load";
  url: string;
  model: string;
  endpoint: "chat" | "completions";
  promptTokens: number;
  maxTokens: number;
  ignoreEos: boolean;
  levels: LevelResult[];
}

export interface TenantsReport {
  kind: "tenants";
  url: string;
  model: string;
  endpoint: "chat" | "completions";
  ignoreEos: boolean;
  durationS: number | null;
  requestsPerTenant: number | null;
  /** API keys left out. */
  tenants: Array<Omit<TenantSpec, "apiKey"> & { apiKey: boolean }>;
  phases: PhaseResult[];
}

export type CeilingShape = Omit<CeilingOptions, "onLevel">;

export type MultiturnReport = { kind: "multiturn"; tenantKeys: boolean } & Omit<MultiturnOptions, "tenantKeys"> & MultiturnResult;

/** `bench soak`, `bench overload` (bench/opsCli.ts) and `bench cluster` (bench/cluster.ts): their options and results as they are. */
export interface OpsReport {
  kind: "soak" | "overload" | "cluster";
  [field: string]: unknown;
}

export interface CeilingReport {
  kind: "ceiling";
  shape: CeilingShape;
  /** How the measuring process ran: what it shares with llamux's engine worker (engine/processSettings.ts). */
  process: { execArgv: string[]; env: Record<string, string | null> };
  levels: CeilingLevel[];
}

/**
 * JSON for a report. NaN (a latency with no samples) becomes null, since
 * JSON.stringify would write null anyway, but silently.
 */
export function reportJson(report: LoadReport | CeilingReport | TenantsReport | MultiturnReport | OpsReport): string {
  return `${JSON.stringify(report, (_key, value: unknown) => (typeof value === "number" && !Number.isFinite(value) ? null : value), 2)}\n`;
}

/**
 * The levels of a `bench ceiling --json` document, checked enough that a wrong
 * file gives a clear message instead of a table full of NaN.
 */
export function parseCeilingJson(text: string): CeilingLevel[] {
  const doc = JSON.parse(text) as { kind?: unknown; levels?: unknown };
  if (doc?.kind !== "ceiling" || !Array.isArray(doc.levels)) throw new Error("not a 'bench ceiling --json' file");
  for (const l of doc.levels as Array<Partial<CeilingLevel>>) {
    if (typeof l?.concurrency !== "number" || typeof l.outputTokensPerSecond !== "number") {
      throw new Error("ceiling level without concurrency/outputTokensPerSecond");
    }
  }
  return doc.levels as CeilingLevel[];
}

export function markdown(head: string[], rows: string[][]): string {
  return [`| ${head.join(" | ")} |`, `| ${head.map(() => "---").join(" | ")} |`, ...rows.map((r) => `| ${r.join(" | ")} |`)].join("\n");
}
