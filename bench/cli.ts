// `llamux bench`: the streaming load generator, and `llamux bench ceiling`.
// Every argument is checked before anything runs, so a typo costs a one-line
// message (exit 2), not a half-finished benchmark.
import { spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import { once } from "node:events";
import fs from "node:fs";
import { parseArgs } from "node:util";
import { ENGINE_ENV, engineEnv, engineExecArgv } from "../engine/processSettings.js";
import type { GpuMode } from "../models/load.js";
import { defaultThreads } from "../models/threads.js";
import { ceilingContextSize, runCeiling, type CeilingLevel } from "./ceiling.js";
import { compareMain } from "./compare.js";
import { runLoad, type LevelResult } from "./loadgen.js";
import { multiturnTable, runMultiturn, summarizeMultiturn } from "./multiturn.js";
import { clusterTable, runClusterBench } from "./cluster.js";
import { OPS_HELP, overloadMain, soakMain } from "./opsCli.js";
import { ATTACK_HELP, attackMain } from "./attack.js";
import { ceilingTable, fixed, loadTable, parseCeilingJson, reportJson, tenantsTable, type CeilingShape } from "./report.js";
import { runTenantWorkload, tenantSpecs, type TenantWorkload } from "./tenants.js";
import { QUOTA_HELP, quotaMain } from "./quota.js";
import { UsageError } from "./usage.js";

export const HELP = `Usage:
  llamux bench --url URL --model ID [options]
      Streams requests at each concurrency level against any OpenAI-compatible server and
      reports output tokens/s, TTFT, inter-token latency (ITL), time per output token (TPOT)
      and end-to-end latency (p50/p99, ms), and errors. Exit 1 if any request failed.
        --concurrency LIST    levels, run in order (default 1,4,8,16)
        --requests N          requests per level (default 4 x the level's concurrency)
        --warmup N            untimed requests sent first, one at a time (default 1)
        --prompt-tokens N     prompt length, about N tokens (default 32)
        --max-tokens N        tokens to generate per request (default 64)
        --endpoint E          chat | completions (default chat)
        --no-ignore-eos       do not send ignore_eos (requests may stop before max-tokens)
        --api-key K           sent as 'Authorization: Bearer K'
        --timeout-ms N        per request (default 600000)
        --json FILE           also write the results as JSON
        --ceiling-json FILE   a 'bench ceiling --json' file: adds a "vs ceiling" column
        --prompt-seed N       prompt index of the first request; every request of the run (warm-up
                              and levels) gets a prompt of its own (default: random, so that runs
                              repeated against one server do not resend prompts it has cached)

  llamux bench --url URL --model ID --tenants a:16,b:1 [options]
      Multi-tenant workload: every tenant at once, each a closed loop keeping its own number of
      streaming requests in flight, with its own key. Reports per tenant: requests, output tokens/s
      and share, TTFT p50/p99, E2E p50, errors. Works against any OpenAI-compatible server (one that
      ignores keys, like llama-server, serves every tenant as one). Exit 1 if any request failed.
        --tenants LIST        NAME:IN_FLIGHT,... (replaces --concurrency)
        --duration-s S        send for S seconds; requests still streaming then are cut: their tokens
                              so far count, they are not errors (default 30)
        --requests N          instead of --duration-s: N requests per tenant
        --tenant-keys LIST    NAME=KEY,... sent as 'Authorization: Bearer KEY' (default: --api-key)
        --tenant-max-tokens LIST      NAME=N,... (default: --max-tokens)
        --tenant-prompt-tokens LIST   NAME=N,... (default: --prompt-tokens)
        --solo LIST           after the mixed phase, run each named tenant alone with the same
                              settings (e.g. --solo b: b's TTFT alone, in the same run)
        --prompt-tokens, --max-tokens, --endpoint, --no-ignore-eos, --api-key, --timeout-ms, --json
                              as above

  llamux bench ceiling --model FILE [options]
      Drives the same model directly through node-llama-cpp (no HTTP, no llamux engine),
      all sequences decoded in lockstep: the raw throughput ceiling to compare a server with.
      Measures in a child process run like llamux's engine worker (its V8 flags, one libuv pool
      thread, its malloc settings; your environment overrides these), so only llamux's own work differs.
        --concurrency LIST    (default 1,4,8,16)
        --requests N          per level; rounds = ceil(N / concurrency) (default 4 x concurrency)
        --prompt-tokens N     exact prompt length in tokens, BOS included (default 32)
        --max-tokens N        (default 64)
        --ctx-per-slot N      context per sequence: give the server's own, for llama.cpp attends over
                              at least min(N, 256) cells of every sequence at every step
                              (default: prompt + max tokens + 64)
        --slots N             sequences in the context: give the server's own --slots, so that
                              a level run alone has the same KV layout (default: the largest level)
        --threads T           (default ${defaultThreads()})
        --gpu MODE            auto | off | cuda | vulkan (default auto)
        --json FILE           also write the results as JSON

  llamux bench multiturn --url URL --model ID [options]
      Multi-turn chats: TENANTS x CONVERSATIONS conversations at once (give more than the server
      has slots), each sending TURNS turns that resend the whole history after one shared system
      prompt. Reports per turn: TTFT mean/p99 and the prompt tokens the server recomputed (from
      usage.cached_tokens, or llama-server's timings.prompt_n). Exit 1 if any turn failed.
        --tenants N           (default 4)
        --conversations N     per tenant (default 2)
        --turns N             (default 6)
        --system-tokens N     shared system prompt, about N tokens (default 512)
        --user-tokens N       each user message (default 32)
        --max-tokens N        generated per turn, ignore_eos (default 16)
        --think-ms N          pause between a reply and the next turn; conversations start spread
                              over it (default 3000)
        --tenant-keys LIST    KEY1,KEY2,... one per tenant, in order (default: no key)
        --timeout-ms N, --json FILE   as above

  llamux bench cluster --model FILE [options]
      The multiturn workload (no API keys) through the real HAProxy in front of N replicas, in one
      run: with llamux's configuration (llamux haproxy-config: conversation affinity, agent weights)
      and with a plain round robin, each on freshly started replicas. Reports per turn the prompt
      tokens recomputed and TTFT p50/p99, and each replica's prefilled tokens and engine step time.
      Needs haproxy (Debian: apt-get install haproxy). Exit 1 if any turn failed.
        --replicas N          (default 3)
        --replica-args=ARGS   extra llamux serve arguments for each replica, one string after =
                              (default "--slots 4 --ctx-per-slot 2048 --threads 1")
        --check-interval-ms N HAProxy health and agent checks (default 1000)
        --conversations N     at once (default 12)
        --turns, --system-tokens, --user-tokens, --max-tokens, --think-ms, --timeout-ms, --json
                              as for multiturn (defaults 6, 256, 32, 16, 500)

${OPS_HELP}

${ATTACK_HELP}

${QUOTA_HELP}

  llamux bench compare --ceiling A.json,B.json --server NAME=X.json,Y.json [--server NAME2=...]
      Medians over repeated runs of the above, with each server's ratio to the ceiling: with as
      many server files as ceiling files, given in the order measured, the median of the k-th
      server run over the k-th ceiling run; otherwise median over median.`;

const GPU_MODES: readonly GpuMode[] = ["auto", "off", "cuda", "vulkan"];
/** --prompt-seed values: promptFor is exact below ~3e6, and a run uses a few hundred indices past its seed. */
const PROMPT_SEEDS = 1_000_000;

export function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isSafeInteger(n) || n <= 0) throw new UsageError(`--${name} must be a positive integer, got '${raw}'`);
  return n;
}

export function positiveNumber(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || n <= 0) throw new UsageError(`--${name} must be a positive number, got '${raw}'`);
  return n;
}

export function nonNegativeInt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isSafeInteger(n) || n < 0) throw new UsageError(`--${name} must be a whole number, got '${raw}'`);
  return n;
}

export function concurrencyLevels(raw: string | undefined): number[] {
  const parts = (raw ?? "1,4,8,16").split(",").map((s) => s.trim());
  const list = parts.map(Number);
  if (parts.some((s) => s === "") || list.some((n) => !Number.isSafeInteger(n) || n <= 0)) {
    throw new UsageError(`--concurrency must be a comma-separated list of positive integers, got '${raw}'`);
  }
  return list;
}

function writeFile(file: string | undefined, text: string): void {
  if (!file) return;
  fs.writeFileSync(file, text);
  console.error(`wrote ${file}`);
}

/** Set in the environment of the process that runs the ceiling's measurement. */
const CEILING_CHILD = "LLAMUX_CEILING_CHILD";

/**
 * Runs this command again in a child process with the engine worker's V8 flags
 * and environment (engine/processSettings.ts): libuv's pool size, for one, is
 * fixed once a process has started. Returns the child's exit code.
 */
async function rerunAsEngineProcess(): Promise<number> {
  const child = spawn(process.execPath, [...engineExecArgv(), ...process.argv.slice(1)], {
    stdio: "inherit",
    env: engineEnv(process.env, { [CEILING_CHILD]: "1" }),
  });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  try {
    const [code, signal] = (await once(child, "exit")) as [number | null, NodeJS.Signals | null];
    if (signal) console.error(`bench ceiling: the measuring process ended on ${signal}`);
    return code ?? 1;
  } finally {
    process.off("SIGINT", forward);
    process.off("SIGTERM", forward);
  }
}

async function ceilingMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      model: { type: "string" },
      concurrency: { type: "string" },
      requests: { type: "string" },
      "prompt-tokens": { type: "string" },
      "max-tokens": { type: "string" },
      "ctx-per-slot": { type: "string" },
      slots: { type: "string" },
      threads: { type: "string" },
      gpu: { type: "string" },
      json: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return (console.log(HELP), 0);
  if (!values.model) throw new UsageError("bench ceiling needs --model FILE");
  if (!fs.existsSync(values.model)) throw new UsageError(`--model: no such file '${values.model}'`);
  const gpu = (values.gpu ?? "auto") as GpuMode;
  if (!GPU_MODES.includes(gpu)) throw new UsageError(`--gpu must be one of ${GPU_MODES.join(", ")}, got '${values.gpu}'`);
  const shape: CeilingShape = {
    modelPath: values.model,
    concurrency: concurrencyLevels(values.concurrency),
    requests: values.requests === undefined ? null : positiveInt("requests", values.requests, 1),
    promptTokens: positiveInt("prompt-tokens", values["prompt-tokens"], 32),
    maxTokens: positiveInt("max-tokens", values["max-tokens"], 64),
    contextPerSequence: values["ctx-per-slot"] === undefined ? null : positiveInt("ctx-per-slot", values["ctx-per-slot"], 1),
    sequences: values.slots === undefined ? null : positiveInt("slots", values.slots, 1),
    threads: positiveInt("threads", values.threads, defaultThreads()),
    gpu,
  };
  let contextSize: number;
  try {
    contextSize = ceilingContextSize(shape);
  } catch (err) {
    throw new UsageError(`--ctx-per-slot: ${(err as Error).message}`);
  }
  if (process.env[CEILING_CHILD] !== "1") return rerunAsEngineProcess();
  console.error(
    `ceiling: ${shape.modelPath}, ${shape.promptTokens}-token prompts, ${shape.maxTokens} output tokens, ${contextSize}-token context per sequence, ${shape.threads} threads, gpu ${gpu}`,
  );
  const levels = await runCeiling({
    ...shape,
    onLevel: (l) =>
      console.error(
        `ceiling c=${l.concurrency}: ${l.rounds} rounds, ${l.outputTokens} tokens in ${l.seconds.toFixed(2)} s = ${l.outputTokensPerSecond.toFixed(1)} tok/s`,
      ),
  });
  console.log(ceilingTable(levels));
  const env = Object.fromEntries(Object.keys(ENGINE_ENV).map((k) => [k, process.env[k] ?? null]));
  const how = { execArgv: process.execArgv, env };
  writeFile(values.json, reportJson({ kind: "ceiling", shape, process: how, levels }));
  return 0;
}

async function loadMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      url: { type: "string" },
      model: { type: "string" },
      concurrency: { type: "string" },
      requests: { type: "string" },
      "prompt-tokens": { type: "string" },
      "max-tokens": { type: "string" },
      "api-key": { type: "string" },
      endpoint: { type: "string" },
      "no-ignore-eos": { type: "boolean" },
      "timeout-ms": { type: "string" },
      json: { type: "string" },
      "ceiling-json": { type: "string" },
      tenants: { type: "string" },
      "tenant-keys": { type: "string" },
      "tenant-max-tokens": { type: "string" },
      "tenant-prompt-tokens": { type: "string" },
      "duration-s": { type: "string" },
      solo: { type: "string" },
      warmup: { type: "string" },
      "prompt-seed": { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return (console.log(HELP), 0);
  if (!values.url || !values.model) throw new UsageError("bench needs --url URL and --model ID (see --help)");
  if (!/^https?:$/.test(safeUrl(values.url)?.protocol ?? "")) throw new UsageError(`--url must be an http(s) URL, got '${values.url}'`);
  const endpoint = values.endpoint ?? "chat";
  if (endpoint !== "chat" && endpoint !== "completions") throw new UsageError(`--endpoint must be chat or completions, got '${endpoint}'`);
  const tenantOnly = (["tenant-keys", "tenant-max-tokens", "tenant-prompt-tokens", "duration-s", "solo"] as const).find((k) => values[k] !== undefined);
  if (values.tenants === undefined && tenantOnly) throw new UsageError(`--${tenantOnly} needs --tenants`);
  if (values.tenants !== undefined) {
    for (const k of ["concurrency", "ceiling-json"] as const) if (values[k] !== undefined) throw new UsageError(`--${k} cannot be combined with --tenants`);
    if (values["duration-s"] !== undefined && values.requests !== undefined) throw new UsageError("--duration-s and --requests are alternatives: give one");
  }
  const ceiling = values["ceiling-json"] ? readCeiling(values["ceiling-json"]) : [];
  const fixedRequests = values.requests === undefined ? null : positiveInt("requests", values.requests, 1);
  const shape = {
    url: values.url,
    model: values.model,
    promptTokens: positiveInt("prompt-tokens", values["prompt-tokens"], 32),
    maxTokens: positiveInt("max-tokens", values["max-tokens"], 64),
    apiKey: values["api-key"],
    endpoint,
    ignoreEos: !values["no-ignore-eos"],
    timeoutMs: positiveInt("timeout-ms", values["timeout-ms"], 600_000),
  } as const;
  if (values.tenants !== undefined) {
    const { specs, solo } = tenantSpecs(
      {
        tenants: values.tenants,
        ...(values["tenant-keys"] === undefined ? {} : { tenantKeys: values["tenant-keys"] }),
        ...(values["tenant-max-tokens"] === undefined ? {} : { tenantMaxTokens: values["tenant-max-tokens"] }),
        ...(values["tenant-prompt-tokens"] === undefined ? {} : { tenantPromptTokens: values["tenant-prompt-tokens"] }),
        ...(values.solo === undefined ? {} : { solo: values.solo }),
      },
      shape,
    );
    return tenantsMain(
      {
        url: shape.url,
        model: shape.model,
        endpoint,
        ignoreEos: shape.ignoreEos,
        timeoutMs: shape.timeoutMs,
        tenants: specs,
        durationS: fixedRequests === null ? positiveNumber("duration-s", values["duration-s"], 30) : null,
        requestsPerTenant: fixedRequests,
      },
      solo,
      values.json,
    );
  }
  const concurrency = concurrencyLevels(values.concurrency);

  // Untimed warm-up, as `bench ceiling` does: the server's first request pays
  // one-off costs (graph allocation, first touch of mmapped weights) that are
  // no part of its steady-state throughput.
  const warmup = values.warmup === undefined ? 1 : Number(values.warmup);
  if (!Number.isInteger(warmup) || warmup < 0) throw new UsageError(`--warmup must be a whole number, got '${values.warmup}'`);
  // Prompts differ from their first word on (promptFor), but only between
  // indices: a level or a run that reused indices would resend prompts the
  // server has cached, and measure its prefix cache instead of its prefill.
  let nextIndex = values["prompt-seed"] === undefined ? randomInt(PROMPT_SEEDS) : nonNegativeInt("prompt-seed", values["prompt-seed"], 0);
  if (nextIndex >= PROMPT_SEEDS) throw new UsageError(`--prompt-seed must be below ${PROMPT_SEEDS}, got '${values["prompt-seed"]}'`);
  if (warmup > 0) await runLoad({ ...shape, concurrency: 1, requests: warmup, firstIndex: nextIndex });
  nextIndex += warmup;

  const results: LevelResult[] = [];
  for (const c of concurrency) {
    const requests = fixedRequests ?? 4 * c;
    console.error(`c=${c}: ${requests} requests to ${shape.url} ...`);
    const r = await runLoad({ ...shape, concurrency: c, requests, firstIndex: nextIndex });
    nextIndex += requests;
    console.error(
      `c=${c}: ${r.completed}/${r.requests} ok in ${r.wallSeconds.toFixed(2)} s, ${r.outputTokensPerSecond.toFixed(1)} out tok/s, ` +
        `TTFT p50 ${fixed(r.ttftMs.p50)} ms${r.errors ? `; errors: ${r.errorSamples.join(" | ")}` : ""}`,
    );
    results.push(r);
  }
  console.log(loadTable(results, ceiling));
  writeFile(
    values.json,
    reportJson({
      kind: "load",
      url: shape.url,
      model: shape.model,
      endpoint,
      promptTokens: shape.promptTokens,
      maxTokens: shape.maxTokens,
      ignoreEos: shape.ignoreEos,
      levels: results,
    }),
  );
  return results.some((r) => r.errors > 0) ? 1 : 0;
}

async function tenantsMain(w: TenantWorkload, solo: string[], json: string | undefined): Promise<number> {
  const what = w.durationS === null ? `${w.requestsPerTenant} requests each` : `${w.durationS} s`;
  console.error(
    `tenants ${w.tenants.map((t) => `${t.name}:${t.inFlight}`).join(",")} for ${what} against ${w.url}${solo.length ? `, then alone: ${solo.join(", ")}` : ""} ...`,
  );
  const phases = await runTenantWorkload(w, solo, (p) => {
    for (const t of p.tenants) {
      console.error(
        `${p.phase} ${t.tenant}: ${t.completed}/${t.requests} ok, ${t.cut} cut, ${t.outputTokensPerSecond.toFixed(1)} out tok/s, ` +
          `TTFT p50 ${fixed(t.ttftMs.p50)} ms${t.errors ? `; errors: ${t.errorSamples.join(" | ")}` : ""}`,
      );
    }
  });
  console.log(tenantsTable(phases));
  writeFile(
    json,
    reportJson({
      kind: "tenants",
      url: w.url,
      model: w.model,
      endpoint: w.endpoint,
      ignoreEos: w.ignoreEos,
      durationS: w.durationS,
      requestsPerTenant: w.requestsPerTenant,
      tenants: w.tenants.map(({ apiKey, ...t }) => ({ ...t, apiKey: apiKey !== undefined })),
      phases,
    }),
  );
  return phases.some((p) => p.tenants.some((t) => t.errors > 0)) ? 1 : 0;
}

function safeUrl(raw: string): URL | null {
  try {
    return new URL(raw);
  } catch {
    return null;
  }
}

function readCeiling(file: string): CeilingLevel[] {
  try {
    return parseCeilingJson(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new UsageError(`--ceiling-json ${file}: ${(err as Error).message}`);
  }
}

function compareCli(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { ceiling: { type: "string" }, server: { type: "string", multiple: true }, help: { type: "boolean" } },
  });
  if (values.help) return (console.log(HELP), 0);
  if (!values.ceiling || !values.server?.length) throw new UsageError("bench compare needs --ceiling FILES and at least one --server NAME=FILES");
  console.log(compareMain({ ceiling: values.ceiling.split(","), servers: values.server }));
  return 0;
}

async function multiturnMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      url: { type: "string" },
      model: { type: "string" },
      tenants: { type: "string" },
      conversations: { type: "string" },
      turns: { type: "string" },
      "system-tokens": { type: "string" },
      "user-tokens": { type: "string" },
      "max-tokens": { type: "string" },
      "tenant-keys": { type: "string" },
      "think-ms": { type: "string" },
      "timeout-ms": { type: "string" },
      json: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return (console.log(HELP), 0);
  if (!values.url || !values.model) throw new UsageError("bench multiturn needs --url URL and --model ID (see --help)");
  const tenants = positiveInt("tenants", values.tenants, 4);
  const tenantKeys = values["tenant-keys"] === undefined ? [] : values["tenant-keys"].split(",").map((k) => k.trim());
  if (tenantKeys.length > 0 && tenantKeys.length !== tenants)
    throw new UsageError(`--tenant-keys needs one key per tenant (${tenants}), got ${tenantKeys.length}`);
  const o = {
    url: values.url,
    model: values.model,
    tenants,
    conversationsPerTenant: positiveInt("conversations", values.conversations, 2),
    turns: positiveInt("turns", values.turns, 6),
    systemTokens: positiveInt("system-tokens", values["system-tokens"], 512),
    userTokens: positiveInt("user-tokens", values["user-tokens"], 32),
    maxTokens: positiveInt("max-tokens", values["max-tokens"], 16),
    thinkMs: nonNegativeInt("think-ms", values["think-ms"], 3000),
    tenantKeys,
    timeoutMs: positiveInt("timeout-ms", values["timeout-ms"], 600_000),
  };
  console.error(`multiturn: ${o.tenants} tenants x ${o.conversationsPerTenant} conversations x ${o.turns} turns against ${o.url} ...`);
  const { samples, wallSeconds } = await runMultiturn(o, (s) => {
    if (!s.ok) console.error(`tenant ${s.tenant} conversation ${s.conversation} turn ${s.turn}: ${s.error}`);
  });
  const result = summarizeMultiturn(samples, wallSeconds);
  console.log(multiturnTable(result));
  const { tenantKeys: keys, ...shape } = o;
  writeFile(values.json, reportJson({ kind: "multiturn", ...shape, tenantKeys: keys.length > 0, ...result }));
  return samples.some((s) => !s.ok) ? 1 : 0;
}

async function clusterMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      model: { type: "string" },
      replicas: { type: "string" },
      "replica-args": { type: "string" },
      "check-interval-ms": { type: "string" },
      conversations: { type: "string" },
      turns: { type: "string" },
      "system-tokens": { type: "string" },
      "user-tokens": { type: "string" },
      "max-tokens": { type: "string" },
      "think-ms": { type: "string" },
      "timeout-ms": { type: "string" },
      json: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return (console.log(HELP), 0);
  if (!values.model) throw new UsageError("bench cluster needs --model FILE (see --help)");
  const o = {
    modelFile: values.model,
    replicas: positiveInt("replicas", values.replicas, 3),
    replicaArgs: (values["replica-args"] ?? "--slots 4 --ctx-per-slot 2048 --threads 1").split(/\s+/).filter(Boolean),
    checkIntervalMs: positiveInt("check-interval-ms", values["check-interval-ms"], 1000),
    workload: {
      tenants: 1,
      conversationsPerTenant: positiveInt("conversations", values.conversations, 12),
      turns: positiveInt("turns", values.turns, 6),
      systemTokens: positiveInt("system-tokens", values["system-tokens"], 256),
      userTokens: positiveInt("user-tokens", values["user-tokens"], 32),
      maxTokens: positiveInt("max-tokens", values["max-tokens"], 16),
      thinkMs: nonNegativeInt("think-ms", values["think-ms"], 500),
      timeoutMs: positiveInt("timeout-ms", values["timeout-ms"], 600_000),
    },
  };
  console.error(
    `cluster: ${o.replicas} replicas, ${o.workload.conversationsPerTenant} conversations x ${o.workload.turns} turns, affinity then round robin ...`,
  );
  const results = await runClusterBench(o, (line) => console.error(line));
  console.log(clusterTable(results));
  writeFile(values.json, reportJson({ kind: "cluster", ...o, results }));
  return results.some((r) => r.result.perTurn.some((t) => t.errors > 0)) ? 1 : 0;
}

/** Entry point for `llamux bench ...`; `argv` is what follows "bench". Returns the exit code. */
export async function benchMain(argv: string[]): Promise<number> {
  try {
    if (argv[0] === "ceiling") return await ceilingMain(argv.slice(1));
    if (argv[0] === "compare") return compareCli(argv.slice(1));
    if (argv[0] === "multiturn") return await multiturnMain(argv.slice(1));
    if (argv[0] === "cluster") return await clusterMain(argv.slice(1));
    if (argv[0] === "soak") return await soakMain(argv.slice(1), HELP);
    if (argv[0] === "overload") return await overloadMain(argv.slice(1), HELP);
    if (argv[0] === "attack") return await attackMain(argv.slice(1), HELP);
    if (argv[0] === "quota") return await quotaMain(argv.slice(1));
    return await loadMain(argv);
  } catch (err) {
    if (err instanceof UsageError || String((err as { code?: unknown }).code).startsWith("ERR_PARSE_ARGS")) {
      // parseArgs' messages span lines; a usage error stays one line.
      console.error(`llamux bench: ${(err as Error).message.replace(/\s*\n\s*/g, " ")}`);
      return 2;
    }
    throw err;
  }
}
