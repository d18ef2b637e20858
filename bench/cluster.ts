// `llamux bench cluster`: the multi-turn workload (bench/multiturn.ts) through
// the real HAProxy in front of N replicas, twice in one run: with llamux's
// configuration (conversation affinity, agent weights) and with a plain
// round robin, each on freshly started replicas so neither inherits the
// other's caches. Reports per turn the prompt tokens recomputed and TTFT
// p50/p99, and each replica's own prefill rate, from which the saving on N
// machines can be worked out (on one small machine the replicas share cores).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { findHaproxy, freePort, startHaproxy, waitForServers } from "./haproxyProcess.js";
import { startLlamux, type LlamuxProcess } from "./llamuxProcess.js";
import { runMultiturn, summarizeMultiturn, type MultiturnOptions, type MultiturnResult } from "./multiturn.js";
import type { HaproxyServer } from "../src/cluster/haproxyConfig.js";

export type BalanceMode = "affinity" | "round-robin";

export interface ClusterBenchOptions {
  modelFile: string;
  replicas: number;
  /** Extra `llamux serve` arguments for every replica (slots, threads, shared stores...). */
  replicaArgs: string[];
  workload: Omit<MultiturnOptions, "url" | "model" | "tenantKeys">;
  checkIntervalMs: number;
}

export interface ModeResult {
  mode: BalanceMode;
  result: MultiturnResult;
  /** Over every successful turn. */
  promptTokens: number;
  prefilledTokens: number;
  /** Per replica, from its own /metrics: prompt tokens evaluated and the engine's step time. */
  replicas: Array<{ name: string; prefilledTokens: number; stepSeconds: number }>;
}

/** HAProxy's plain round robin over the same replicas, health-checked like llamux's own configuration. */
export function roundRobinConfig(bind: string, statsSocket: string, servers: readonly HaproxyServer[], checkIntervalMs: number): string {
  return [
    "global",
    "    maxconn 2000",
    `    stats socket ${statsSocket} mode 600 level admin`,
    "defaults",
    "    mode http",
    "    timeout connect 2s",
    "    timeout client 10m",
    "    timeout server 10m",
    "    option http-no-delay",
    "frontend llamux",
    `    bind ${bind}`,
    "    default_backend llamux_round_robin",
    "backend llamux_round_robin",
    "    balance roundrobin",
    "    option httpchk",
    "    http-check send meth GET uri /ready ver HTTP/1.1 hdr host localhost",
    ...servers.map((s) => `    server ${s.name} ${s.host}:${s.port} check inter ${checkIntervalMs}ms`),
    "",
  ].join("\n");
}

/** `name` → value of a Prometheus text line `name{...} value` summed over its series. */
function metricSum(text: string, name: string, labelFilter = ""): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (labelFilter && !line.includes(labelFilter)) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

async function runMode(mode: BalanceMode, o: ClusterBenchOptions, binary: string, log: (line: string) => void): Promise<ModeResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `llamux-bench-cluster-${mode}-`));
  const replicas: Array<{ server: HaproxyServer; process: LlamuxProcess }> = [];
  let haproxy: Awaited<ReturnType<typeof startHaproxy>> | undefined;
  try {
    for (let i = 1; i <= o.replicas; i++) {
      const agentPort = await freePort();
      const p = await startLlamux(o.modelFile, [...o.replicaArgs, "--agent-port", String(agentPort), "--data-dir", path.join(dir, `r${i}`)]);
      replicas.push({ server: { name: `r${i}`, host: "127.0.0.1", port: Number(new URL(p.url).port), agentPort }, process: p });
    }
    const servers = replicas.map((r) => r.server);
    haproxy = await startHaproxy({
      binary,
      dir,
      servers,
      options: { checkIntervalMs: o.checkIntervalMs },
      ...(mode === "round-robin" ? { config: (bind: string, socket: string) => roundRobinConfig(bind, socket, servers, o.checkIntervalMs) } : {}),
    });
    await waitForServers(haproxy, (s) => s.length > 0 && s.every((x) => x.status === "UP"), "every replica UP");
    log(`${mode}: ${o.replicas} replicas up behind HAProxy, running the workload ...`);
    const model = replicas[0]!.process.model;
    const { samples, wallSeconds } = await runMultiturn({ ...o.workload, url: haproxy.url, model, tenantKeys: [] }, (s) => {
      if (!s.ok) log(`${mode}: conversation ${s.tenant}/${s.conversation} turn ${s.turn}: ${s.error}`);
    });
    const ok = samples.filter((s) => s.ok);
    const perReplica = [];
    for (const r of replicas) {
      const text = await (await fetch(`${r.process.url}/metrics`)).text();
      perReplica.push({
        name: r.server.name,
        prefilledTokens: metricSum(text, "llamux_prefilled_tokens_total"),
        stepSeconds: metricSum(text, "llamux_engine_loop_seconds_total", 'phase="step"'),
      });
    }
    return {
      mode,
      result: summarizeMultiturn(samples, wallSeconds),
      promptTokens: ok.reduce((n, s) => n + s.promptTokens, 0),
      prefilledTokens: ok.reduce((n, s) => n + s.prefillTokens, 0),
      replicas: perReplica,
    };
  } finally {
    await haproxy?.stop();
    for (const r of replicas.reverse()) await r.process.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function runClusterBench(o: ClusterBenchOptions, log: (line: string) => void = () => undefined): Promise<ModeResult[]> {
  const binary = findHaproxy();
  if (!binary) throw new Error("haproxy is not installed (Debian: apt-get install haproxy)");
  const out: ModeResult[] = [];
  for (const mode of ["affinity", "round-robin"] as const) out.push(await runMode(mode, o, binary, log));
  return out;
}

export function clusterTable(results: readonly ModeResult[]): string {
  const f = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : "-");
  const turns = [...new Set(results.flatMap((r) => r.result.perTurn.map((t) => t.turn)))].sort((a, b) => a - b);
  const lines = [
    `| turn | ${results.map((r) => `${r.mode}: recomputed tokens | TTFT p50 ms | TTFT p99 ms`).join(" | ")} |`,
    `|---:|${results.map(() => "---:|---:|---:").join("|")}|`,
    ...turns.map((turn) => {
      const cells = results.map((r) => {
        const t = r.result.perTurn.find((x) => x.turn === turn);
        return t ? `${t.prefillTokensTotal} | ${f(t.ttftMs.p50)} | ${f(t.ttftMs.p99)}` : "- | - | -";
      });
      return `| ${turn} | ${cells.join(" | ")} |`;
    }),
    "",
    "| balancing | prompt tokens | recomputed | share recomputed | errors | wall s | per replica: prefilled tokens / engine step s |",
    "|---|---:|---:|---:|---:|---:|---|",
    ...results.map((r) => {
      const errors = r.result.perTurn.reduce((n, t) => n + t.errors, 0);
      const share = r.promptTokens > 0 ? `${((100 * r.prefilledTokens) / r.promptTokens).toFixed(1)} %` : "-";
      return `| ${r.mode} | ${r.promptTokens} | ${r.prefilledTokens} | ${share} | ${errors} | ${r.result.wallSeconds.toFixed(1)} | ${r.replicas.map((x) => `${x.name} ${x.prefilledTokens} / ${x.stepSeconds.toFixed(1)}`).join(", ")} |`;
    }),
  ];
  return lines.join("\n");
}
