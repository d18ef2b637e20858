// Issue 20's whole picture in one place: three real `llamux serve` replicas
// (stories260K) on one real PostgreSQL and one real redis-server, acting as
// one service. Quotas are exact across them, what one stores the others read,
// list and delete, a key revoked through one is refused by all within a
// second, a refund on one is usable on another, kill -9 right after an
// acknowledged write loses nothing; then Redis and PostgreSQL are stopped in
// turn mid-run (each giving its documented behaviour, no replica crashing)
// and started again, and everything recovers with no replica restarted.
// (postgresReplicas.test.ts and redisQuota.test.ts test each half in depth.)
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../helpers/postgres.js";
import { skipWithoutRedis, startRedis, type TestRedis } from "../../helpers/redis.js";
import { killReplica, spawnReplica, stopReplica, type Replica } from "../helpers/replicas.js";
import { MODELS, waitFor } from "../helpers/server.js";

const ADMIN_KEY = "admin-key-for-shared-state-tests-0123456789";
const METRICS_TOKEN = "metrics-token-for-shared-state-tests-01";
const KEYS = {
  rpm: "lmx-sharedRpmSharedRpmSharedRpmShared0001",
  tpm: "lmx-sharedTpmSharedTpmSharedTpmShared0002",
  store: "lmx-sharedStoreSharedStoreSharedSto0003",
};
const BOS = 1;
const EOS = 2;
const PROPAGATION_BOUND_MS = 1000;

const redisSkip = skipWithoutRedis();
const skip = postgresMissing ? { skip: postgresMissing } : redisSkip;
let dir: string;
let pg: PostgresServer | null = null;
let redis: TestRedis | null = null;
const replicas: Replica[] = [];

before(async () => {
  if (skip.skip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-shared-state-"));
  const tenants = path.join(dir, "tenants.yaml");
  fs.writeFileSync(
    tenants,
    `tenants:
  - { id: rpm, limits: { requestsPerMinute: 5 }, keys: ["${hashApiKey(KEYS.rpm)}"] }
  - { id: tpm, limits: { tokensPerMinute: 240 }, keys: ["${hashApiKey(KEYS.tpm)}"] }
  - { id: store, keys: ["${hashApiKey(KEYS.store)}"] }
`,
  );
  pg = await startPostgres();
  const databaseUrl = await pg.createDatabase();
  redis = await startRedis();
  const args = (name: string) => [
    "--model",
    MODELS.stories260K,
    "--slots",
    "2",
    "--ctx-per-slot",
    "256",
    "--threads",
    "1",
    "--tenants",
    tenants,
    "--data-dir",
    path.join(dir, name),
    "--redis-url",
    redis!.url,
    "--redis-replicas",
    "3",
  ];
  const env = { LLAMUX_DATABASE_URL: databaseUrl, LLAMUX_ADMIN_KEY: ADMIN_KEY, LLAMUX_METRICS_TOKEN: METRICS_TOKEN };
  // Started together: they race for the schema migration (an advisory lock serialises it).
  replicas.push(...(await Promise.all(["r1", "r2", "r3"].map((n) => spawnReplica(n, args(n), env)))));
});

after(async () => {
  for (const r of replicas.splice(0).reverse()) await stopReplica(r);
  await redis?.close();
  await pg?.destroy();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function call(r: Replica, method: string, url: string, key: string, body?: unknown): Promise<{ status: number; headers: Headers; body: any }> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${r.url}${url}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

const tokenPrompt = (n: number) => [BOS, ...Array.from({ length: n - 1 }, (_, i) => 100 + i)];
const complete = (r: Replica, key: string, body: Record<string, unknown> = {}) =>
  call(r, "POST", "/v1/completions", key, { model: "stories260K", prompt: tokenPrompt(4), max_tokens: 1, ...body });
const respond = (r: Replica, body: Record<string, unknown> = {}) =>
  call(r, "POST", "/v1/responses", KEYS.store, { model: "stories260K", input: "Once upon a time", max_output_tokens: 16, ...body });

async function gauge(r: Replica, name: string): Promise<string> {
  return (await fetch(`${r.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text().then((t) =>
    t
      .split("\n")
      .filter((l) => l.startsWith(name))
      .join("\n"),
  );
}

function alive(): void {
  for (const r of replicas) assert.equal(r.child.exitCode, null, `replica ${r.name} is still running: ${r.output().slice(-2000)}`);
}

describe("three replicas on one PostgreSQL and one Redis", { ...skip, timeout: 300_000 }, () => {
  test("30 parallel requests spread over the three replicas at a 5-request limit admit exactly 5", async () => {
    const res = await Promise.all(Array.from({ length: 30 }, (_, i) => complete(replicas[i % 3]!, KEYS.rpm)));
    assert.equal(res.filter((r) => r.status === 200).length, 5);
    const refused = res.filter((r) => r.status !== 200);
    assert.ok(refused.every((r) => r.status === 429 && r.body.error.code === "rate_limit_exceeded"));
    assert.deepEqual(
      res
        .filter((r) => r.status === 200)
        .map((r) => r.headers.get("x-ratelimit-remaining-requests"))
        .sort(),
      ["0", "1", "2", "3", "4"],
    );
    alive();
  });

  test("a response stored through one replica is read, listed and deleted through the others", async () => {
    const [r1, r2, r3] = replicas as [Replica, Replica, Replica];
    const created = await respond(r1);
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const id = created.body.id as string;
    const read = await call(r2, "GET", `/v1/responses/${id}`, KEYS.store);
    assert.equal(read.status, 200);
    assert.deepEqual(read.body.output, created.body.output);
    const items = await call(r3, "GET", `/v1/responses/${id}/input_items`, KEYS.store);
    assert.equal(items.status, 200);
    assert.equal(items.body.data[0].content[0].text, "Once upon a time");
    // Another tenant's key sees nothing of it, on any replica.
    assert.equal((await call(r3, "GET", `/v1/responses/${id}`, KEYS.tpm)).status, 404);
    assert.equal((await call(r2, "DELETE", `/v1/responses/${id}`, KEYS.store)).status, 200);
    for (const r of replicas) assert.equal((await call(r, "GET", `/v1/responses/${id}`, KEYS.store)).status, 404);
  });

  test("a key issued through one replica works on all; revoked through another, every replica refuses it within 1 s", async () => {
    const [r1, r2, r3] = replicas as [Replica, Replica, Replica];
    const issued = await call(r1, "POST", "/admin/tenants/store/keys", ADMIN_KEY, { name: "temp" });
    assert.equal(issued.status, 201, JSON.stringify(issued.body));
    const key = issued.body.key as string;
    await waitFor(async () => (await complete(r3, key)).status === 200, PROPAGATION_BOUND_MS * 2, "the new key on r3");
    assert.equal((await call(r2, "DELETE", `/admin/tenants/store/keys/${issued.body.id}`, ADMIN_KEY)).status, 200);
    const revokedAt = Date.now();
    await waitFor(
      async () => (await Promise.all(replicas.map((r) => complete(r, key)))).every((res) => res.status === 401),
      PROPAGATION_BOUND_MS,
      "every replica to refuse the revoked key",
    );
    assert.ok(Date.now() - revokedAt <= PROPAGATION_BOUND_MS);
  });

  test("tokens reserved on one replica and refunded at its settle are usable on another", async () => {
    const [r1, r2] = replicas as [Replica, Replica];
    // Reserves 10 + 150 = 160 of 240; EOS forced first, so it uses about 11 and the rest comes back.
    const first = await complete(r1, KEYS.tpm, { prompt: tokenPrompt(10), max_tokens: 150, logit_bias: { [EOS]: 100 } });
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-ratelimit-remaining-tokens"), "80");
    const used = first.body.usage.total_tokens as number;
    const second = await complete(r2, KEYS.tpm, { prompt: tokenPrompt(10), max_tokens: 240 - used - 10 - 1, logit_bias: { [EOS]: 100 } });
    assert.equal(second.status, 200, JSON.stringify(second.body));
  });

  test("kill -9 of a replica right after an acknowledged write loses nothing", async () => {
    const victim = replicas[2]!;
    const created = await respond(victim);
    assert.equal(created.status, 200);
    killReplica(victim.child);
    await victim.exited;
    const read = await call(replicas[0]!, "GET", `/v1/responses/${created.body.id}`, KEYS.store);
    assert.equal(read.status, 200);
    assert.deepEqual(read.body.output, created.body.output);
    replicas.splice(2, 1);
  });

  test("Redis, then PostgreSQL, stopped mid-run: the documented behaviour, no crash; started again: everything recovers", async () => {
    const [r1, r2] = replicas as [Replica, Replica];
    const stored = await respond(r1);
    assert.equal(stored.status, 200);

    await redis!.stop();
    // --redis-fallback local (the default): each replica admits its share of a limit, and says so.
    await waitFor(async () => (await gauge(r1, "llamux_quota_mode")).includes('mode="local"} 1'), 10_000, "r1 to fall back to local limits");
    const chat = await complete(r2, KEYS.store);
    assert.equal(chat.status, 200, "served on local limits while Redis is away");

    await pg!.stop();
    // What needs the database gets a quick, retryable 503; chat from a known key goes on.
    const unavailable = await call(r1, "GET", `/v1/responses/${stored.body.id}`, KEYS.store);
    assert.equal(unavailable.status, 503);
    assert.equal(unavailable.body.error.code, "database_unavailable");
    assert.ok(Number(unavailable.headers.get("retry-after")) > 0);
    assert.equal((await complete(r1, KEYS.store)).status, 200, "a known key's completion needs neither");
    alive();

    await redis!.start();
    await pg!.start();
    for (const r of replicas) {
      await waitFor(
        async () => (await call(r, "GET", `/v1/responses/${stored.body.id}`, KEYS.store)).status === 200,
        15_000,
        `${r.name} to read from PostgreSQL again`,
      );
      await waitFor(async () => (await gauge(r, "llamux_quota_mode")).includes('mode="redis"} 1'), 15_000, `${r.name} to use Redis again`);
    }
    // Shared again: the RPM tenant's bucket is Redis's (a fresh one, as Redis restarted empty) and exact across replicas.
    alive();
  });
});
