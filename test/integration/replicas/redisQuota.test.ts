// Three llamux replicas (separate `llamux serve` processes on stories260K)
// sharing one real redis-server: per-tenant limits hold across replicas as if
// there were one server, Redis going away gives each fallback's documented
// behaviour and its return is noticed, and a replica killed with places held
// in a tenant's concurrency cap gives them back when their leases expire.
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { skipWithoutRedis, startRedis, type TestRedis } from "../../helpers/redis.js";
import { groupAlive } from "../helpers/processGroup.js";
import { MODELS, REPO_ROOT, waitFor } from "../helpers/server.js";

const CLI = path.join(REPO_ROOT, "dist/src/cli.js");
const METRICS_TOKEN = "metrics-token-for-redis-quota-tests-01";
const LEASE_MS = 3000;
const KEYS = {
  rpm: "lmx-rpmRpmRpmRpmRpmRpmRpmRpmRpmRpmRpmRpm0001",
  tpm: "lmx-tpmTpmTpmTpmTpmTpmTpmTpmTpmTpmTpmTpm0002",
  conc: "lmx-concConcConcConcConcConcConcConcConc0003",
  outage: "lmx-outageOutageOutageOutageOutageOuta0004",
  lease: "lmx-leaseLeaseLeaseLeaseLeaseLeaseLease0005",
};
const BOS = 1;
const EOS = 2;

interface Replica {
  name: string;
  child: ChildProcessWithoutNullStreams;
  url: string;
  output(): string;
}

const skip = skipWithoutRedis();
let dir: string;
let redis: TestRedis | null = null;
const replicas: Replica[] = [];

async function startReplica(name: string, args: string[]): Promise<Replica> {
  const child = spawn(
    process.execPath,
    [
      CLI,
      "serve",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--threads",
      "1",
      "--slots",
      "2",
      "--ctx-per-slot",
      "256",
      "--model",
      MODELS.stories260K,
      "--tenants",
      path.join(dir, "tenants.yaml"),
      "--data-dir",
      path.join(dir, name),
      "--redis-url",
      redis!.url,
      "--redis-lease-ms",
      String(LEASE_MS),
      ...args,
    ],
    { detached: true, stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, LLAMUX_METRICS_TOKEN: METRICS_TOKEN } },
  );
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const r: Replica = { name, child, url: "", output: () => out };
  replicas.push(r);
  await waitFor(() => /"msg":"llamux ready"/.test(out) || child.exitCode !== null, 60_000, `replica ${name} to be ready`);
  if (child.exitCode !== null) throw new Error(`replica ${name} exited: ${out}`);
  r.url = (JSON.parse(out.split("\n").find((l) => l.includes('"msg":"listening"'))!) as { url: string }).url;
  return r;
}

before(async () => {
  if (skip.skip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-replicas-redis-"));
  fs.writeFileSync(
    path.join(dir, "tenants.yaml"),
    `tenants:
  - id: rpm
    limits: { requestsPerMinute: 5 }
    keys: ["${hashApiKey(KEYS.rpm)}"]
  - id: tpm
    limits: { tokensPerMinute: 240 }
    keys: ["${hashApiKey(KEYS.tpm)}"]
  - id: conc
    limits: { maxConcurrent: 2 }
    keys: ["${hashApiKey(KEYS.conc)}"]
  - id: outage
    limits: { requestsPerMinute: 6 }
    keys: ["${hashApiKey(KEYS.outage)}"]
  - id: lease
    limits: { maxConcurrent: 1 }
    keys: ["${hashApiKey(KEYS.lease)}"]
`,
  );
  redis = await startRedis();
  // Two replicas fall back to local limits (one told the replica count, one counting heartbeats), one refuses.
  await startReplica("a", ["--redis-fallback", "local", "--redis-replicas", "3"]);
  await startReplica("b", ["--redis-fallback", "local"]);
  await startReplica("c", ["--redis-fallback", "refuse"]);
});

after(async () => {
  for (const r of replicas.splice(0).reverse()) {
    // A worker stopped by a test must be able to run its exit.
    for (const pid of childrenOf(r.child.pid!)) signal(pid, "SIGCONT");
    if (r.child.exitCode === null && r.child.signalCode === null) {
      const exited = new Promise((resolve) => r.child.once("exit", resolve));
      r.child.kill("SIGTERM");
      const timer = setTimeout(() => signal(-r.child.pid!, "SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    }
    await waitFor(() => !groupAlive(r.child.pid!), 20_000, `replica ${r.name}'s processes to end`).catch(() => signal(-r.child.pid!, "SIGKILL"));
  }
  await redis?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

/** The front's child processes (its engine worker). */
function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function tokenPrompt(tokens: number): number[] {
  return [BOS, ...Array.from({ length: tokens - 1 }, (_, i) => 100 + i)];
}

function post(r: Replica, key: string, body: Record<string, unknown>, signal?: AbortSignal): Promise<Response> {
  return fetch(`${r.url}/v1/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "stories260K", prompt: tokenPrompt(4), max_tokens: 1, ...body }),
    signal,
  });
}

async function errorOf(res: Response): Promise<{ code: string; message: string; type: string }> {
  return ((await res.json()) as { error: { code: string; message: string; type: string } }).error;
}

async function quotaMode(r: Replica): Promise<string | null> {
  const text = await (await fetch(`${r.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
  return /llamux_quota_mode\{mode="(\w+)"\} 1/.exec(text)?.[1] ?? null;
}

/** Places (queued + running) a tenant holds in the shared books, read straight from Redis. */
async function placesHeld(tenantId: string): Promise<number> {
  const c = new Redis(redis!.url, { maxRetriesPerRequest: 0 });
  try {
    const key = `llamux:quota:{${tenantId}}`;
    return (await c.zcard(`${key}:queued`)) + (await c.zcard(`${key}:running`));
  } finally {
    c.disconnect();
  }
}

function alive(): void {
  for (const r of replicas) assert.equal(r.child.exitCode, null, `replica ${r.name} is still running: ${r.output().slice(-2000)}`);
}

describe("three replicas on one Redis", { ...skip, timeout: 300_000 }, () => {
  test("30 parallel requests spread over the replicas at a 5-request RPM limit: exactly 5 pass, 25 get an exact 429", async () => {
    const res = await Promise.all(Array.from({ length: 30 }, (_, i) => post(replicas[i % 3]!, KEYS.rpm, {})));
    const ok = res.filter((r) => r.status === 200);
    assert.equal(ok.length, 5);
    // Each admission was charged in turn on the shared bucket: each saw a different count left.
    assert.deepEqual(ok.map((r) => r.headers.get("x-ratelimit-remaining-requests")).sort(), ["0", "1", "2", "3", "4"]);
    const refused = res.filter((r) => r.status !== 200);
    assert.equal(refused.length, 25);
    for (const r of refused) {
      assert.equal(r.status, 429);
      const e = await errorOf(r);
      assert.equal(e.code, "rate_limit_exceeded");
      assert.equal(e.type, "requests");
      assert.match(e.message, /^Rate limit reached for requests per min \(RPM\) on tenant rpm: Limit 5, Used 5, Requested 1\. Please try again in /);
      assert.equal(r.headers.get("x-ratelimit-limit-requests"), "5");
      assert.equal(r.headers.get("x-ratelimit-remaining-requests"), "0");
      const waitMs = Number(r.headers.get("retry-after-ms"));
      assert.ok(waitMs > 0 && waitMs <= 12_000, `one request at 5/min is at most 12 s away: ${waitMs}`);
      assert.equal(r.headers.get("retry-after"), String(Math.ceil(waitMs / 1000)));
    }
    await Promise.all(ok.map((r) => r.arrayBuffer()));
    alive();
  });

  test("tokens reserved on one replica and refunded at its settle are usable on another", async () => {
    const [a, b] = replicas;
    // Reserves its bound, 10 + 150 = 160 of 240; EOS forced first, so it uses 11.
    const first = await post(a!, KEYS.tpm, { prompt: tokenPrompt(10), max_tokens: 150, logit_bias: { [EOS]: 100 } });
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-ratelimit-remaining-tokens"), "80", "240 − 160, charged before it ran");
    const used = ((await first.json()) as { usage: { total_tokens: number } }).usage.total_tokens;
    assert.ok(used < 50, `the refund must be worth testing: used ${used}`);
    // A request that fits only if the unused 160 − used came back (without it: 80 + 4 a second of refill).
    const second = await post(b!, KEYS.tpm, { prompt: tokenPrompt(10), max_tokens: 240 - used - 10 - 1, logit_bias: { [EOS]: 100 } });
    assert.equal(second.status, 200, await second.clone().text());
    await second.arrayBuffer();
    alive();
  });

  test("a concurrency limit holds across replicas: places taken on one refuse the others until they are freed", async () => {
    const [a, b, c] = replicas;
    // A's engine is stopped: requests admitted there hold their places and wait.
    const workers = childrenOf(a!.child.pid!);
    assert.ok(workers.length > 0);
    for (const pid of workers) signal(pid, "SIGSTOP");
    const held = new AbortController();
    try {
      const waiting = [post(a!, KEYS.conc, {}, held.signal), post(a!, KEYS.conc, {}, held.signal)].map((p) => p.catch((e: unknown) => e));
      // Probing B would race A for the places: the shared books say when A holds both.
      await waitFor(async () => (await placesHeld("conc")) === 2, 10_000, "A to hold both places");
      for (const r of [b!, c!]) {
        const res = await post(r, KEYS.conc, {});
        assert.equal(res.status, 429);
        const e = await errorOf(res);
        assert.equal(e.code, "queue_full");
        assert.equal(e.message, "Too many concurrent requests on tenant conc: Limit 2, Running or queued 2. Please try again in 1s.");
      }
      held.abort(); // the clients leave: A gives the places back
      await Promise.all(waiting);
      await waitFor(
        async () => {
          const res = await post(b!, KEYS.conc, {});
          await res.arrayBuffer();
          return res.status === 200;
        },
        10_000,
        "B to admit once A's places are freed",
      );
    } finally {
      for (const pid of workers) signal(pid, "SIGCONT");
    }
    alive();
  });

  test("Redis stopped: 'refuse' answers 503, 'local' admits each replica's share, nobody hangs or crashes; Redis back: shared again", async () => {
    const [a, b, c] = replicas;
    await redis!.stop();
    try {
      await waitFor(
        async () => (await quotaMode(c!)) === "refuse" && (await quotaMode(a!)) === "local" && (await quotaMode(b!)) === "local",
        10_000,
        "every replica to notice",
      );
      const started = performance.now();
      const onC = await post(c!, KEYS.outage, {});
      assert.equal(onC.status, 503);
      assert.equal((await errorOf(onC)).code, "quota_unavailable");
      assert.ok(Number(onC.headers.get("retry-after")) >= 1);
      // 6 RPM over 3 replicas: each admits ceil(6 / 3) = 2 alone.
      for (const r of [a!, b!]) {
        const res = await Promise.all(Array.from({ length: 6 }, () => post(r, KEYS.outage, {})));
        assert.deepEqual(res.map((x) => x.status).sort(), [200, 200, 429, 429, 429, 429], `replica ${r.name}`);
        await Promise.all(res.map((x) => x.arrayBuffer()));
      }
      assert.ok(performance.now() - started < 20_000, "answers come without waiting on Redis");
      assert.match(a!.output(), /quota falls back to local limits \(each limit ÷ 3 replicas\)/);
      assert.match(b!.output(), /quota falls back to local limits \(each limit ÷ 3 replicas\)/, "B counted 3 live replicas in Redis");
      alive();
    } finally {
      await redis!.start();
    }
    await waitFor(async () => (await Promise.all(replicas.map(quotaMode))).every((m) => m === "redis"), 10_000, "every replica back on Redis");
    for (const r of replicas) assert.match(r.output(), /Redis reachable again/);
    const back = await post(c!, KEYS.outage, {});
    assert.equal(back.status, 200);
    await back.arrayBuffer();
  });

  test("a replica killed with -9 while it holds a tenant's concurrency place gives it back when the lease expires", async () => {
    const [, b, c] = replicas;
    for (const pid of childrenOf(c!.child.pid!)) signal(pid, "SIGSTOP");
    const hung = post(c!, KEYS.lease, {}).catch((e: unknown) => e);
    await waitFor(async () => (await placesHeld("lease")) === 1, 10_000, "C to hold the place");
    signal(-c!.child.pid!, "SIGKILL");
    const killedAt = performance.now();
    await hung;
    await waitFor(() => !groupAlive(c!.child.pid!), 10_000, "C's processes to die");
    // Still held right after the kill (nobody gave it back)…
    const right = await post(b!, KEYS.lease, {});
    await right.arrayBuffer();
    if (performance.now() - killedAt < LEASE_MS - 500) assert.equal(right.status, 429, "the place is held until its lease expires");
    // …and free once the lease (renewed by C until it died) has run out.
    await waitFor(
      async () => {
        const res = await post(b!, KEYS.lease, {});
        await res.arrayBuffer();
        return res.status === 200;
      },
      LEASE_MS + 5000,
      "the dead replica's place to expire",
    );
    assert.ok(performance.now() - killedAt >= LEASE_MS - 1500, "not freed before the lease could have expired");
  });
});
