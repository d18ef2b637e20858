// `llamux bench soak` and `llamux bench overload`: argument handling, the
// server they measure (one at --url, or one they start with --serve), and
// their reports. Every argument is checked before anything starts.
import fs from "node:fs";
import { parseArgs } from "node:util";
import { startLlamux, type LlamuxProcess } from "./llamuxProcess.js";
import { OVERLOAD_DEFAULTS, overloadTable, runOverload, type OverloadResult } from "./overload.js";
import { reportJson } from "./report.js";
import type { RssTarget } from "./rss.js";
import { runSoak, SOAK_DEFAULTS, soakPassed, soakTable } from "./soak.js";
import { UsageError } from "./usage.js";

export const OPS_HELP = `  llamux bench soak (--url URL --model ID [--pid PID] | --serve FILE [-- SERVE_OPTIONS]) [options]
      A long run at constant concurrency in which a share of the clients hang up at a random
      moment (waiting for a slot or mid-stream). Reports RSS of the front and the engine worker
      (growth after warm-up), KV slots still busy once the load stops, and whether every request
      is accounted for (client outcomes = server counters). Exit 1 if not, or if a slot leaked.
        --minutes M           run length, fractions allowed (default 10)
        --concurrency N       streams kept in flight (default ${SOAK_DEFAULTS.concurrency})
        --cancel-fraction F   share of requests hung up on (default ${SOAK_DEFAULTS.cancelFraction})
        --cancel-max-tokens N max_tokens of those, so they cannot finish first (default 8 x --max-tokens)
        --pid PID             with --url: the server's front process, to sample its and its worker's RSS
        --serve FILE          start 'llamux serve --model FILE' on a free port, options after '--'
                              passed to it (e.g. -- --slots 16 --threads 2), and stop it at the end
        --prompt-tokens, --max-tokens, --endpoint, --api-key, --seed, --json   as above

  llamux bench overload (--url URL --model ID [--pid PID] | --serve FILE [-- SERVE_OPTIONS]) [options]
      Measures the sustainable rate closed-loop (as many streams as the server has slots), then
      offers --factor times that rate as open-loop Poisson arrivals for --duration-s. Reports
      admitted vs refused (queue_full, queue_timeout), admitted TTFT p50/p99 and server RSS.
        --factor X            offered / sustainable rate (default ${OVERLOAD_DEFAULTS.factor})
        --rate R              offer R requests/s instead of measuring (skips the closed-loop phase)
        --duration-s S        open-loop phase length (default ${OVERLOAD_DEFAULTS.durationMs / 1000})
        --concurrency N       closed-loop streams (default: the server's slots, from /metrics)
        --unbounded-too       with --serve: then run the same offered load against a server started
                              with --max-queued 1000000 --queue-timeout-ms 0, for comparison
        --pid, --serve, --prompt-tokens, --max-tokens, --endpoint, --api-key, --seed, --json   as above`;

const COMMON = {
  url: { type: "string" },
  model: { type: "string" },
  pid: { type: "string" },
  serve: { type: "string" },
  "prompt-tokens": { type: "string" },
  "max-tokens": { type: "string" },
  endpoint: { type: "string" },
  "api-key": { type: "string" },
  seed: { type: "string" },
  json: { type: "string" },
  "timeout-ms": { type: "string" },
  help: { type: "boolean" },
} as const;

function number(name: string, raw: string | undefined, fallback: number, check: (n: number) => boolean, what: string): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || !check(n)) throw new UsageError(`--${name} must be ${what}, got '${raw}'`);
  return n;
}
const posInt = (name: string, raw: string | undefined, fallback: number) =>
  number(name, raw, fallback, (n) => Number.isSafeInteger(n) && n > 0, "a positive integer");
const posNum = (name: string, raw: string | undefined, fallback: number) => number(name, raw, fallback, (n) => n > 0, "a positive number");

interface Target {
  /** Set with --serve: the model file and the serve options. */
  serve: { file: string; args: string[] } | null;
  url: string | null;
  model: string | null;
  pid: number | null;
}

function target(values: Record<string, unknown>, positionals: string[]): Target {
  const serve = values.serve as string | undefined;
  if (serve !== undefined) {
    for (const k of ["url", "model", "pid"]) if (values[k] !== undefined) throw new UsageError(`--${k} cannot be combined with --serve`);
    if (!fs.existsSync(serve)) throw new UsageError(`--serve: no such file '${serve}'`);
    return { serve: { file: serve, args: positionals }, url: null, model: null, pid: null };
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}' (server options after '--' need --serve)`);
  const url = values.url as string | undefined;
  const model = values.model as string | undefined;
  if (!url || !model) throw new UsageError("needs --url URL and --model ID, or --serve FILE (see --help)");
  if (!/^https?:$/.test(URL.canParse(url) ? new URL(url).protocol : "")) throw new UsageError(`--url must be an http(s) URL, got '${url}'`);
  const pid = values.pid === undefined ? null : posInt("pid", values.pid as string, 0);
  return { serve: null, url, model, pid };
}

function shape(values: Record<string, unknown>) {
  const endpoint = (values.endpoint as string | undefined) ?? "chat";
  if (endpoint !== "chat" && endpoint !== "completions") throw new UsageError(`--endpoint must be chat or completions, got '${endpoint}'`);
  const apiKey = values["api-key"] as string | undefined;
  return {
    endpoint: endpoint as "chat" | "completions",
    ...(apiKey ? { apiKey } : {}),
    promptTokens: posInt("prompt-tokens", values["prompt-tokens"] as string | undefined, 32),
    maxTokens: posInt("max-tokens", values["max-tokens"] as string | undefined, 64),
    seed: number("seed", values.seed as string | undefined, 1, (n) => Number.isSafeInteger(n) && n >= 0, "a whole number"),
    timeoutMs: posInt("timeout-ms", values["timeout-ms"] as string | undefined, 600_000),
  };
}

/** Runs `fn` against the target: the given server, or one started for it and stopped after. */
async function withServer<T>(t: Target, extraArgs: string[], fn: (s: { url: string; model: string; rss: RssTarget }) => Promise<T>): Promise<T> {
  if (!t.serve) return fn({ url: t.url!, model: t.model!, rss: { frontPid: t.pid } });
  console.error(`starting llamux serve --model ${t.serve.file} ${[...t.serve.args, ...extraArgs].join(" ")} ...`);
  const server: LlamuxProcess = await startLlamux(t.serve.file, [...t.serve.args, ...extraArgs]);
  // Ctrl-C must not leave a model server running behind the bench.
  const onSignal = () => void server.stop(5000).finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    return await fn({ url: server.url, model: server.model, rss: { frontPid: server.pid } });
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await server.stop();
  }
}

function writeJson(file: string | undefined, text: string): void {
  if (!file) return;
  fs.writeFileSync(file, text);
  console.error(`wrote ${file}`);
}

export async function soakMain(argv: string[], help: string): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      ...COMMON,
      minutes: { type: "string" },
      concurrency: { type: "string" },
      "cancel-fraction": { type: "string" },
      "cancel-max-tokens": { type: "string" },
    },
  });
  if (values.help) return (console.log(help), 0);
  const t = target(values, positionals);
  const s = shape(values);
  const minutes = posNum("minutes", values.minutes, 10);
  const o = {
    ...SOAK_DEFAULTS,
    ...s,
    durationMs: minutes * 60_000,
    concurrency: posInt("concurrency", values.concurrency, SOAK_DEFAULTS.concurrency),
    cancelFraction: number("cancel-fraction", values["cancel-fraction"], SOAK_DEFAULTS.cancelFraction, (n) => n >= 0 && n <= 1, "between 0 and 1"),
    cancelMaxTokens: posInt("cancel-max-tokens", values["cancel-max-tokens"], 8 * s.maxTokens),
  };
  return withServer(t, [], async ({ url, model, rss }) => {
    console.error(`soak: ${o.concurrency} streams for ${minutes} min against ${url}, ${o.cancelFraction * 100}% hung up on ...`);
    const r = await runSoak({
      ...o,
      url,
      model,
      rss,
      onProgress: (p) => console.error(`${(p.elapsedMs / 1000).toFixed(0)} s: ${p.sent} sent, ${JSON.stringify(p.counts)}`),
    });
    console.log(soakTable(r));
    const { samples, ...rssSummaries } = r.rss;
    writeJson(values.json, reportJson({ kind: "soak", url, model, minutes, ...o, result: { ...r, rss: { ...rssSummaries, samples } } }));
    if (!soakPassed(r))
      console.error(
        `soak FAILED: ${[...r.accounting.mismatches, ...(r.afterSettle.slotsBusy ? [`${r.afterSettle.slotsBusy} slots still busy`] : [])].join("; ")}`,
      );
    return soakPassed(r) ? 0 : 1;
  });
}

export async function overloadMain(argv: string[], help: string): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      ...COMMON,
      factor: { type: "string" },
      rate: { type: "string" },
      "duration-s": { type: "string" },
      concurrency: { type: "string" },
      "unbounded-too": { type: "boolean" },
    },
  });
  if (values.help) return (console.log(help), 0);
  const t = target(values, positionals);
  if (values["unbounded-too"] && !t.serve) throw new UsageError("--unbounded-too needs --serve");
  const o = {
    ...OVERLOAD_DEFAULTS,
    ...shape(values),
    factor: posNum("factor", values.factor, OVERLOAD_DEFAULTS.factor),
    rate: values.rate === undefined ? null : posNum("rate", values.rate, 1),
    durationMs: posNum("duration-s", values["duration-s"], OVERLOAD_DEFAULTS.durationMs / 1000) * 1000,
    capacityConcurrency: values.concurrency === undefined ? null : posInt("concurrency", values.concurrency, 1),
  };
  const runs: Array<{ name: string; result: OverloadResult }> = [];
  const log = (m: string) => console.error(m);
  await withServer(t, [], async ({ url, model, rss }) => {
    runs.push({ name: t.serve ? "llamux (bounded)" : url, result: await runOverload({ ...o, url, model, rss, log }) });
  });
  if (values["unbounded-too"]) {
    // The same offered load, so the two rows compare like with like.
    const rate = runs[0]!.result.offeredPerSecond;
    await withServer(t, ["--max-queued", "1000000", "--queue-timeout-ms", "0"], async ({ url, model, rss }) => {
      runs.push({ name: "llamux (unbounded)", result: await runOverload({ ...o, rate, url, model, rss, log }) });
    });
  }
  console.log(overloadTable(runs));
  writeJson(values.json, reportJson({ kind: "overload", ...o, runs: runs.map((r) => ({ ...r, result: { ...r.result } })) }));
  return runs.some((r) => r.result.errors > 0) ? 1 : 0;
}
