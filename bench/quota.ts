// `llamux bench quota`: what a quota decision costs per request, in process
// (QuotaLedger) and through Redis on loopback (RedisQuota), in the same run;
// and how many admissions per second one Redis sustains with N clients (each
// a replica's connection, each a closed loop of reserve + settle).
//
// Without --redis-url it starts a redis-server of its own on a free port
// (nothing saved to disk) and stops it at the end.
import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import { parseArgs } from "node:util";
import fs from "node:fs";
import type { Redis } from "ioredis";
import { QuotaLedger } from "../src/quota/ledger.js";
import { LocalQuota, type Quota } from "../src/quota/quota.js";
import { createRedisClient, whenReady } from "../src/quota/redis/client.js";
import { RedisQuota } from "../src/quota/redis/redisQuota.js";
import { MemoryUsageStore } from "../src/quota/usageStore.js";
import { DEFAULT_LIMITS, DEFAULT_SCHEDULING, type Tenant } from "../src/tenants/types.js";
import { fixed } from "./report.js";
import { percentile } from "./stats.js";
import { UsageError } from "./usage.js";

export const QUOTA_HELP = `  llamux bench quota [options]
      The admission cost per request: reserve + settle, and a request's whole passage
      (reserve, resize, started, settle), p50/p99 in ms, in process and through Redis, same run;
      then admissions/s one Redis sustains with N concurrent clients (one connection each).
        --redis-url URL       Redis to measure (default: starts redis-server on a free port)
        --redis-server PATH   the binary to start (default: redis-server on the PATH)
        --requests N          sequential requests per latency measurement (default 5000)
        --clients LIST        concurrent clients for the throughput levels (default 1,4,16,64)
        --duration-s S        seconds per throughput level (default 3)
        --tenants N           tenants the throughput requests spread over (default 16)
        --json FILE           also write the results as JSON`;

/** Limits every dimension, high enough never to refuse: the full decision runs every time. */
const LIMITS = {
  ...DEFAULT_LIMITS,
  requestsPerMinute: 1e9,
  tokensPerMinute: 1e9,
  maxConcurrent: 1e6,
  maxQueued: 1e6,
  tokensPerDay: 1e12,
  lifetimeTokens: 1e15,
};
const tenantOf = (i: number): Tenant => ({ id: `bench${i}`, limits: LIMITS, scheduling: DEFAULT_SCHEDULING });

interface Latency {
  p50Ms: number;
  p99Ms: number;
}

export interface QuotaBenchResult {
  requests: number;
  inProcess: { reserveSettle: Latency; lifecycle: Latency };
  redis: { reserveSettle: Latency; lifecycle: Latency };
  throughput: { clients: number; admissionsPerS: number; p50Ms: number; p99Ms: number }[];
  /** Redis's own CPU time per script call (INFO commandstats), over the whole run. */
  redisUsecPerScript: number | null;
}

export async function quotaMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      "redis-url": { type: "string" },
      "redis-server": { type: "string" },
      requests: { type: "string" },
      clients: { type: "string" },
      "duration-s": { type: "string" },
      tenants: { type: "string" },
      json: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(QUOTA_HELP);
    return 0;
  }
  const requests = positiveInt(values.requests ?? "5000", "--requests");
  const durationS = positiveInt(values["duration-s"] ?? "3", "--duration-s");
  const tenants = positiveInt(values.tenants ?? "16", "--tenants");
  const clients = (values.clients ?? "1,4,16,64").split(",").map((c) => positiveInt(c, "--clients"));

  const own = values["redis-url"] ? null : await startRedisServer(values["redis-server"] ?? "redis-server");
  const url = values["redis-url"] ?? own!.url;
  const redises: Redis[] = [];
  const connect = async () => {
    const r = createRedisClient({ url, timeoutMs: 2000 });
    redises.push(r);
    if (!(await whenReady(r, 5000))) throw new Error(`cannot reach Redis at ${url}`);
    return r;
  };
  try {
    const prefix = `llamux:bench:${process.pid}:`;
    const local = new LocalQuota(new QuotaLedger({ store: new MemoryUsageStore() }));
    const shared = new RedisQuota({ redis: await connect(), keyPrefix: prefix, store: new MemoryUsageStore(), tickMs: 0 });
    // Warm both (JIT, script cache, the tenants' seeds), then measure in turns so drift hits both alike.
    for (const q of [local, shared]) await sequential(q, 200, false);
    const rounds = 5;
    const samples = { local: [[], []] as number[][], redis: [[], []] as number[][] };
    for (let i = 0; i < rounds; i++) {
      for (const [name, q] of [
        ["local", local],
        ["redis", shared],
      ] as const) {
        samples[name][0]!.push(...(await sequential(q, Math.ceil(requests / rounds), false)));
        samples[name][1]!.push(...(await sequential(q, Math.ceil(requests / rounds), true)));
      }
    }
    const lat = (s: number[]): Latency => ({ p50Ms: percentile(s, 50), p99Ms: percentile(s, 99) });
    const result: QuotaBenchResult = {
      requests,
      inProcess: { reserveSettle: lat(samples.local[0]!), lifecycle: lat(samples.local[1]!) },
      redis: { reserveSettle: lat(samples.redis[0]!), lifecycle: lat(samples.redis[1]!) },
      throughput: [],
      redisUsecPerScript: null,
    };
    for (const n of clients) {
      const qs = await Promise.all(
        Array.from({ length: n }, async () => new RedisQuota({ redis: await connect(), keyPrefix: prefix, store: new MemoryUsageStore(), tickMs: 0 })),
      );
      result.throughput.push({ clients: n, ...(await closedLoop(qs, tenants, durationS * 1000)) });
      await Promise.all(qs.map((q) => q.close()));
    }
    const stats = await redises[0]!.info("commandstats");
    const evalsha = /cmdstat_evalsha:calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)/.exec(stats);
    if (evalsha) result.redisUsecPerScript = Number(evalsha[3]);
    await shared.close();
    await redises[0]!.eval(`for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 1`, 0, `${prefix}*`);
    console.log(quotaTable(result));
    if (values.json) fs.writeFileSync(values.json, `${JSON.stringify(result, null, 2)}\n`);
    return 0;
  } finally {
    for (const r of redises) r.disconnect();
    await own?.stop();
  }
}

/** Per-request ms of `n` requests one after the other: reserve + settle, or the whole passage. */
async function sequential(q: Quota, n: number, lifecycle: boolean): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = tenantOf(i % 4);
    const start = performance.now();
    const r = await q.reserve(t, { estimatedTokens: 200 });
    if (!r.ok) throw new Error(`bench quota: refused: ${r.error.message}`);
    if (lifecycle) {
      const err = await q.resize(t, r.reservation, 150);
      if (err) throw new Error(`bench quota: resize refused: ${err.message}`);
      await q.started(r.reservation);
    }
    await q.settle(r.reservation, 120);
    out.push(performance.now() - start);
  }
  return out;
}

/** Every client a closed loop of reserve + settle for `durationMs`. */
async function closedLoop(qs: RedisQuota[], tenants: number, durationMs: number): Promise<{ admissionsPerS: number; p50Ms: number; p99Ms: number }> {
  const until = performance.now() + durationMs;
  const lat: number[] = [];
  let admitted = 0;
  const started = performance.now();
  await Promise.all(
    qs.map(async (q, c) => {
      for (let i = c; performance.now() < until; i += qs.length) {
        const t0 = performance.now();
        const r = await q.reserve(tenantOf(i % tenants), { estimatedTokens: 200 });
        if (!r.ok) throw new Error(`bench quota: refused: ${r.error.message}`);
        await q.settle(r.reservation, 120);
        lat.push(performance.now() - t0);
        admitted++;
      }
    }),
  );
  const elapsedS = (performance.now() - started) / 1000;
  return { admissionsPerS: admitted / elapsedS, p50Ms: percentile(lat, 50), p99Ms: percentile(lat, 99) };
}

export function quotaTable(r: QuotaBenchResult): string {
  const ms = (l: Latency) => `${fixed(l.p50Ms, 3)} | ${fixed(l.p99Ms, 3)}`;
  return [
    `Admission cost per request (${r.requests} sequential requests each; ms)`,
    "",
    "| quota | reserve+settle p50 | p99 | reserve+resize+started+settle p50 | p99 |",
    "|---|---:|---:|---:|---:|",
    `| in process (QuotaLedger) | ${ms(r.inProcess.reserveSettle)} | ${ms(r.inProcess.lifecycle)} |`,
    `| Redis, loopback (RedisQuota) | ${ms(r.redis.reserveSettle)} | ${ms(r.redis.lifecycle)} |`,
    "",
    "Admissions one Redis sustains (closed loops of reserve + settle, one connection per client)",
    "",
    "| clients | admissions/s | reserve+settle p50 ms | p99 ms |",
    "|---:|---:|---:|---:|",
    ...r.throughput.map((t) => `| ${t.clients} | ${fixed(t.admissionsPerS, 0)} | ${fixed(t.p50Ms, 3)} | ${fixed(t.p99Ms, 3)} |`),
    ...(r.redisUsecPerScript === null
      ? []
      : [
          "",
          `Redis's own CPU per script: ${fixed(r.redisUsecPerScript, 1)} µs (INFO commandstats), so reserve + settle costs it ${fixed(2 * r.redisUsecPerScript, 1)} µs:` +
            ` one Redis core could admit about ${fixed(1e6 / (2 * r.redisUsecPerScript), 0)} requests/s (the levels above are bound by this one client process)`,
        ]),
  ].join("\n");
}

function positiveInt(s: string, name: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${name} must be an integer ≥ 1, got '${s}'`);
  return n;
}

async function startRedisServer(bin: string): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await new Promise<number>((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port: p } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(p));
    });
  });
  const child: ChildProcess = spawn(bin, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"], {
    stdio: "ignore",
  });
  const failed = new Promise<never>((_, reject) => {
    child.once("error", (err) => reject(new UsageError(`cannot start ${bin}: ${err.message} (give --redis-url or --redis-server)`)));
    child.once("exit", (code) => reject(new Error(`${bin} exited with ${code}`)));
  });
  failed.catch(() => undefined);
  const url = `redis://127.0.0.1:${port}`;
  const probe = createRedisClient({ url, timeoutMs: 500 });
  try {
    const ready = await Promise.race([whenReady(probe, 10_000), failed]);
    if (!ready) throw new Error(`${bin} did not answer on port ${port}`);
  } finally {
    probe.disconnect();
  }
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    },
  };
}
