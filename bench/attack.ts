// `llamux bench attack`: each denial-of-service attempt of issue 19, run by an
// "attacker" tenant against a server it starts, while a "victim" tenant keeps
// sending small streamed requests. Prints the victim's TTFT p50 alone and under
// each attack, in the same run, as a markdown table (target: at most 2×), with
// the victim's failures and what the attacker's requests got. Everything is
// bounded: loopback only, a fixed number of victim requests per phase, every
// attack stopped when its phase ends, the server stopped at the end.
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { generateApiKey, hashApiKey } from "../src/tenants/keys.js";
import { attackTable, rowStats, tally, type AttackRow, type VictimSample } from "./attackReport.js";
import { startLlamux, type LlamuxProcess } from "./llamuxProcess.js";
import { readRssBytes } from "./rss.js";
import { UsageError } from "./usage.js";

export const ATTACK_HELP = `  llamux bench attack --serve FILE [options] [-- SERVE_OPTIONS]
      Starts 'llamux serve --model FILE' with two generated tenants (attacker, victim) and, for
      each denial-of-service attempt, measures the victim's streamed TTFT alone and while the
      attacker runs it. Prints a markdown table (target: p50 under attack <= 2x alone, no victim
      failure). Loopback only; stops the server it started. Exit 1 when a row misses the target.
        --rows LIST           attempts to run, e.g. 1,4,9 (default: all of ${"1,2,3,4,8,9,10,11"})
        --probes N            victim requests per phase (default 10)
        --json FILE           also write the rows as JSON`;

/** What an attack gets: where, as whom, and where to count its outcomes. */
interface AttackContext {
  url: string;
  model: string;
  attackerKey: string;
  outcomes: Record<string, number>;
}

interface Attack {
  id: string;
  name: string;
  /** It ends by itself (its Stop has `done`). */
  bounded?: boolean;
  /** Why it cannot run against this model (null: it can). */
  skip?: (model: string) => string | null;
  /**
   * Starts the attack; the returned function stops it and resolves once every
   * request it sent has ended. `done`, when present, resolves when the attack
   * has sent all it means to (20,000 paths): the victim keeps measuring until then.
   */
  start(ctx: AttackContext): Stop;
}

type Stop = (() => Promise<void>) & { done?: Promise<void> };

const ATTACK_TIMEOUT_MS = 30_000;

/** One attacker request; its outcome (status, "timeout" or "error") is tallied. The body is read and dropped. */
async function attackerRequest(ctx: AttackContext, route: string, init: { method?: string; body?: string; key?: boolean }): Promise<void> {
  const headers: Record<string, string> = {};
  if (init.key !== false) headers.authorization = `Bearer ${ctx.attackerKey}`;
  if (init.body !== undefined) headers["content-type"] = "application/json";
  try {
    const res = await fetch(`${ctx.url}${route}`, {
      method: init.method ?? (init.body === undefined ? "GET" : "POST"),
      headers,
      body: init.body,
      signal: AbortSignal.timeout(ATTACK_TIMEOUT_MS),
    });
    await res.arrayBuffer();
    tally(ctx.outcomes, String(res.status));
  } catch (err) {
    tally(ctx.outcomes, (err as Error).name === "TimeoutError" ? "timeout" : "error");
  }
}

/** Runs `send(i)` on `concurrency` loops until stopped or `limit` requests were sent. */
function loop(concurrency: number, send: (i: number) => Promise<void>, limit = Infinity): Stop {
  let stopped = false;
  let next = 0;
  const workers = Array.from({ length: concurrency }, async () => {
    while (!stopped && next < limit) await send(next++);
  });
  const done = Promise.all(workers).then(() => undefined);
  const stop = async () => {
    stopped = true;
    await done;
  };
  return Number.isFinite(limit) ? Object.assign(stop, { done }) : stop;
}

const chat = (model: string, extra: Record<string, unknown>, content = "Once upon a time") =>
  JSON.stringify({ model, messages: [{ role: "user", content }], max_tokens: 16, ...extra });

export const ATTACKS: readonly Attack[] = [
  {
    id: "1",
    name: "grammar-constrained request with repeat_penalty 0",
    start: (ctx) => {
      const body = chat(ctx.model, {
        repeat_penalty: 0,
        response_format: {
          type: "json_schema",
          json_schema: { name: "x", schema: { type: "object", properties: { a: { type: "string" } }, required: ["a"] } },
        },
      });
      return loop(1, () => attackerRequest(ctx, "/v1/chat/completions", { body }));
    },
  },
  {
    id: "2",
    name: "logit_bias with 100,000 out-of-vocabulary ids",
    start: (ctx) => {
      const bias = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [String(1_000_000 + i), 1]));
      const body = chat(ctx.model, { logit_bias: bias });
      return loop(2, () => attackerRequest(ctx, "/v1/chat/completions", { body }));
    },
  },
  {
    id: "3",
    name: "JSON schema with a 100,000-value enum",
    start: (ctx) => {
      const values = Array.from({ length: 100_000 }, (_, i) => `v${i}`);
      const body = chat(ctx.model, {
        response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object", properties: { a: { enum: values } }, required: ["a"] } } },
      });
      return loop(2, () => attackerRequest(ctx, "/v1/chat/completions", { body }));
    },
  },
  {
    id: "4",
    name: "20,000 distinct unknown paths + scraping /metrics in a loop",
    bounded: true,
    start: (ctx) => {
      const paths = loop(32, (i) => attackerRequest(ctx, i % 2 === 0 ? `/attack-${i}` : `/v1/attack-${i}/x`, { key: false }), 20_000);
      // The attacker scrapes with its own key (the only credential it has).
      const scrapes = loop(2, () => attackerRequest(ctx, "/metrics", {}));
      return Object.assign(async () => void (await Promise.all([paths(), scrapes()])), { done: paths.done! });
    },
  },
  {
    id: "8",
    name: "eight 3.9 MB prompts that are refused",
    start: (ctx) => {
      const body = chat(ctx.model, {}, "once upon a time ".repeat(Math.floor(3.9e6 / 17)));
      return loop(8, () => attackerRequest(ctx, "/v1/chat/completions", { body }));
    },
  },
  {
    id: "9",
    name: "unread n=16 streams",
    start: (ctx) => {
      // Raw requests whose responses are paused: the server's writes fill the socket and then its buffers.
      // No max_tokens: each choice runs to the end of its slot's context, whatever --ctx-per-slot is.
      const body = JSON.stringify({ model: ctx.model, messages: [{ role: "user", content: "Once upon a time" }], n: 16, stream: true, ignore_eos: true });
      const requests: http.ClientRequest[] = [];
      for (let i = 0; i < 8; i++) {
        const u = new URL(`${ctx.url}/v1/chat/completions`);
        const req = http.request(
          {
            hostname: u.hostname,
            port: u.port,
            path: u.pathname,
            method: "POST",
            headers: { authorization: `Bearer ${ctx.attackerKey}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
          },
          (res) => {
            tally(ctx.outcomes, String(res.statusCode));
            res.pause();
          },
        );
        req.on("error", () => undefined);
        req.end(body);
        requests.push(req);
      }
      return async () => {
        for (const r of requests) r.destroy();
      };
    },
  },
  {
    id: "10",
    name: "embeddings with 128 large inputs",
    start: (ctx) => {
      const body = JSON.stringify({
        model: ctx.model,
        input: Array.from({ length: 128 }, (_, i) => `${i} ${"once upon a time there was a little cat ".repeat(20)}`),
      });
      return loop(2, () => attackerRequest(ctx, "/v1/embeddings", { body }));
    },
  },
  {
    id: "11",
    name: "repeated crash requests ('#' on TinyStories-656K)",
    skip: (model) => (/656k/i.test(model) ? null : `needs --serve TinyStories-656K-Q8_0.gguf (serving '${model}', whose vocabulary has '#')`),
    start: (ctx) =>
      loop(1, () => attackerRequest(ctx, "/v1/completions", { body: JSON.stringify({ model: ctx.model, prompt: "# Chapter one", max_tokens: 4 }) })),
  },
];

/** One victim request: a small streamed chat; TTFT is the first body byte (llamux sends nothing before the first output). */
async function victimRequest(url: string, key: string, model: string, timeoutMs: number): Promise<VictimSample> {
  const started = performance.now();
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: chat(model, { stream: true, max_tokens: 4 }),
      signal: AbortSignal.timeout(Math.max(1, Math.floor(timeoutMs))),
    });
    if (res.status !== 200) {
      const text = await res.text();
      const code = /"code":"([^"]+)"/.exec(text)?.[1];
      return { ok: false, error: `HTTP ${res.status}${code ? ` ${code}` : ""}` };
    }
    const reader = res.body!.getReader();
    const first = await reader.read();
    const ttftMs = performance.now() - started;
    if (first.done) return { ok: false, error: "empty stream" };
    let text = new TextDecoder().decode(first.value);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    if (!text.includes("[DONE]") || text.includes('"error"')) return { ok: false, error: "stream ended with an error" };
    return { ok: true, ttftMs };
  } catch (err) {
    return { ok: false, error: (err as Error).name === "TimeoutError" ? "timeout" : (err as Error).message };
  }
}

/** A phase's victim requests, one after another; past PHASE_DEADLINE_MS the rest count as failed without being sent. */
const PHASE_DEADLINE_MS = 90_000;

/**
 * `probes` victim requests one after another, and more while `until` (an
 * attack with an end) has not ended; past PHASE_DEADLINE_MS the rest count as
 * failed without being sent.
 */
async function victimPhase(url: string, key: string, model: string, probes: number, until: Promise<void> | null = null): Promise<VictimSample[]> {
  const out: VictimSample[] = [];
  let ended = until === null;
  void until?.then(() => (ended = true));
  const deadline = performance.now() + PHASE_DEADLINE_MS;
  for (let i = 0; i < probes || (!ended && performance.now() < deadline); i++) {
    const left = deadline - performance.now();
    out.push(
      left <= 0 ? { ok: false, error: "not sent: the phase's deadline passed" } : await victimRequest(url, key, model, Math.min(ATTACK_TIMEOUT_MS, left)),
    );
  }
  return out;
}

/**
 * Waits (up to 60 s) until a victim request succeeds again: work an attack
 * left in the server (a prompt still being read, a worker restarting) must be
 * charged to that attack's row, not to the next row's "alone".
 */
async function settle(url: string, key: string, model: string): Promise<boolean> {
  const deadline = performance.now() + 60_000;
  while (performance.now() < deadline) {
    if ((await victimRequest(url, key, model, 10_000)).ok) return true;
    await new Promise((r) => setTimeout(r, 500));
  }
  return false;
}

/**
 * Starts attack `id` in a worker thread (see attackWorker.ts); the returned
 * function stops it and fills `outcomes` with what its requests got.
 */
/** What attackWorker.ts posts: started, finished (an attack with an end has sent everything), and its outcomes once stopped. */
export type AttackWorkerMessage = { type: "started" } | { type: "finished" } | { type: "outcomes"; outcomes: Record<string, number> };

async function startInWorker(id: string, ctx: Omit<AttackContext, "outcomes">, outcomes: Record<string, number>): Promise<Stop> {
  const worker = new Worker(new URL("./attackWorker.js", import.meta.url), { workerData: { id, ctx } });
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  let finished: (() => void) | null = null;
  const done = new Promise<void>((resolve) => (finished = resolve));
  let gotOutcomes: ((o: Record<string, number>) => void) | null = null;
  const outcomesPosted = new Promise<Record<string, number>>((resolve) => (gotOutcomes = resolve));
  await new Promise<void>((resolve, reject) => {
    worker.on("message", (m: AttackWorkerMessage) => {
      if (m.type === "started") resolve();
      else if (m.type === "finished") finished!();
      else gotOutcomes!(m.outcomes);
    });
    worker.once("error", reject);
  });
  const stop = async () => {
    worker.postMessage("stop");
    Object.assign(outcomes, await Promise.race([outcomesPosted, exited.then(() => ({ worker_exited: 1 }))]));
    await worker.terminate();
  };
  return ATTACKS.find((a) => a.id === id)!.bounded ? Object.assign(stop, { done: Promise.race([done, exited]) }) : stop;
}

async function waitReady(url: string, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (
      await fetch(`${url}/ready`).then(
        (r) => r.status === 200,
        () => false,
      )
    )
      return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

export interface AttackOptions {
  file: string;
  serveArgs: string[];
  rows: string[];
  probes: number;
  json: string | undefined;
}

export function parseAttackArgs(argv: string[]): AttackOptions | null {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: { serve: { type: "string" }, rows: { type: "string" }, probes: { type: "string" }, json: { type: "string" }, help: { type: "boolean" } },
  });
  if (values.help) return null;
  if (!values.serve) throw new UsageError("bench attack needs --serve FILE (it starts its own server, with generated tenants; see --help)");
  if (!fs.existsSync(values.serve)) throw new UsageError(`--serve: no such file '${values.serve}'`);
  for (const a of positionals)
    if (a === "--tenants" || a.startsWith("--tenants=") || a === "--host" || a.startsWith("--host="))
      throw new UsageError(`bench attack sets ${a.split("=")[0]} itself`);
  const known = ATTACKS.map((a) => a.id);
  const rows = values.rows === undefined ? known : values.rows.split(",").map((r) => r.trim());
  for (const r of rows) if (!known.includes(r)) throw new UsageError(`--rows: no attempt '${r}' (there are ${known.join(", ")})`);
  const probes = values.probes === undefined ? 10 : Number(values.probes);
  if (!Number.isSafeInteger(probes) || probes < 1 || probes > 1000) throw new UsageError(`--probes must be an integer from 1 to 1000, got '${values.probes}'`);
  return { file: values.serve, serveArgs: positionals, rows, probes, json: values.json };
}

export async function attackMain(argv: string[], help: string): Promise<number> {
  const o = parseAttackArgs(argv);
  if (!o) return (console.log(help), 0);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-bench-attack-"));
  const attackerKey = generateApiKey();
  const victimKey = generateApiKey();
  const tenantsFile = path.join(dir, "tenants.json");
  fs.writeFileSync(
    tenantsFile,
    JSON.stringify({
      tenants: [
        { id: "attacker", keys: [hashApiKey(attackerKey)] },
        { id: "victim", keys: [hashApiKey(victimKey)] },
      ],
    }),
  );
  const dataArgs = o.serveArgs.some((a) => a === "--data-dir" || a.startsWith("--data-dir=")) ? [] : ["--data-dir", path.join(dir, "data")];
  const args = [...o.serveArgs, "--tenants", tenantsFile, ...dataArgs];
  console.error(`starting llamux serve --model ${o.file} ${args.join(" ")} ...`);
  let server: LlamuxProcess | null = null;
  const onSignal = () => void (server?.stop(5000) ?? Promise.resolve()).finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const rows: AttackRow[] = [];
  try {
    server = await startLlamux(o.file, args);
    const { url, model, pid } = server;
    // One request first, so the first row's "alone" does not pay for a cold start.
    await victimPhase(url, victimKey, model, 2);
    for (const attack of ATTACKS.filter((a) => o.rows.includes(a.id))) {
      const skipped = attack.skip?.(model) ?? null;
      const row: AttackRow = { id: attack.id, name: attack.name, skipped, alone: [], underAttack: [], attackerOutcomes: {}, frontRssGrowthBytes: null };
      rows.push(row);
      if (skipped !== null) {
        console.error(`#${attack.id} ${attack.name}: skipped: ${skipped}`);
        continue;
      }
      if (!(await waitReady(url, 60_000))) console.error(`#${attack.id}: the server is not ready; measuring anyway`);
      row.alone = await victimPhase(url, victimKey, model, o.probes);
      const rssBefore = await readRssBytes(pid);
      let rssMax = rssBefore;
      const rssTimer = setInterval(() => void readRssBytes(pid).then((b) => (rssMax = b !== null && (rssMax === null || b > rssMax) ? b : rssMax)), 200);
      console.error(`#${attack.id} ${attack.name}: attacking ...`);
      const stop = await startInWorker(attack.id, { url, model, attackerKey }, row.attackerOutcomes);
      try {
        await new Promise((r) => setTimeout(r, 1000)); // let the attack ramp up
        row.underAttack = await victimPhase(url, victimKey, model, o.probes, stop.done ?? null);
      } finally {
        await stop();
        clearInterval(rssTimer);
      }
      if (!(await settle(url, victimKey, model))) console.error(`#${attack.id}: the victim is still not served 60 s after the attack stopped`);
      row.frontRssGrowthBytes = rssBefore !== null && rssMax !== null ? Math.max(0, rssMax - rssBefore) : null;
      const s = rowStats(row);
      console.error(`#${attack.id}: alone p50 ${s.aloneP50Ms.toFixed(1)} ms, under attack ${s.attackP50Ms.toFixed(1)} ms, victim failures ${s.attackFailures}`);
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log(attackTable(rows));
  if (o.json) {
    const report = {
      kind: "attack",
      model: o.file,
      serveArgs: o.serveArgs,
      probes: o.probes,
      rows: rows.map((r) => ({ ...r, stats: r.skipped ? null : rowStats(r) })),
    };
    // As reportJson: a NaN (no successful sample) is written as null.
    fs.writeFileSync(o.json, `${JSON.stringify(report, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2)}\n`);
    console.error(`wrote ${o.json}`);
  }
  return rows.every((r) => r.skipped !== null || rowStats(r).ok) ? 0 : 1;
}
