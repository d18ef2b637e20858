// Two real llamux processes (`llamux serve`, stories260K) sharing one real
// PostgreSQL through --database-url / LLAMUX_DATABASE_URL: what one stores the
// other reads, lists and deletes; a key revoked or a limit changed through one
// replica's admin API applies on the other within a second; PostgreSQL going
// away costs store-needing requests a quick retryable 503 while chat with a
// known key goes on, and everything recovers when it returns, with no restart;
// kill -9 right after an acknowledged write loses nothing.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { groupAlive } from "../helpers/processGroup.js";
import { killReplica, spawnReplica, stopReplica, type Replica } from "../helpers/replicas.js";
import { MODELS, waitFor } from "../helpers/server.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../helpers/postgres.js";
import { PgDatabase } from "../../../src/store/postgres/db.js";

const ADMIN_KEY = "admin-key-for-replica-tests-0123456789";
const SERVE = ["--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", "256", "--threads", "1"];
/** The bound: a change on one replica applies on every other within this. */
const PROPAGATION_BOUND_MS = 1000;
/** A request that waits longer than this on a dead database is hanging. */
const NO_HANG_MS = 15_000;

/** One replica on the shared database (helpers/replicas.ts runs the process). */
function spawnOn(databaseUrl: string, dataDir: string): Promise<Replica> {
  return spawnReplica(path.basename(dataDir), [...SERVE, "--data-dir", dataDir], { LLAMUX_DATABASE_URL: databaseUrl, LLAMUX_ADMIN_KEY: ADMIN_KEY });
}

interface Reply {
  status: number;
  headers: Headers;
  // Shapes are asserted field by field.
  body: any;
}

async function call(base: string, method: string, url: string, key: string, body?: unknown): Promise<Reply> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${base}${url}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(NO_HANG_MS),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

/** Polls until `cond` holds and returns how long it took; fails past `boundMs`. */
async function within(boundMs: number, cond: () => Promise<boolean>, what: string): Promise<number> {
  const started = Date.now();
  while (!(await cond())) {
    assert.ok(Date.now() - started < boundMs, `${what}: not within ${boundMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return Date.now() - started;
}

describe("two replicas on one PostgreSQL", { skip: postgresMissing ?? false }, () => {
  let pg: PostgresServer;
  let tmp: string;
  let databaseUrl: string;
  let one: Replica | null = null;
  let two: Replica | null = null;
  let key = "";
  const admin = (r: Replica, method: string, url: string, body?: unknown) => call(r.url, method, `/admin${url}`, ADMIN_KEY, body);
  const api = (r: Replica, method: string, url: string, body?: unknown, apiKey = key) => call(r.url, method, `/v1${url}`, apiKey, body);
  const chat = (r: Replica, apiKey = key) =>
    api(r, "POST", "/chat/completions", { model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 4 }, apiKey);

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-replicas-"));
    pg = await startPostgres();
    databaseUrl = await pg.createDatabase();
    // Both at once on the empty database: the migrations' lock makes that safe.
    [one, two] = await Promise.all([spawnOn(databaseUrl, path.join(tmp, "one")), spawnOn(databaseUrl, path.join(tmp, "two"))]);
    const created = await admin(one, "POST", "/tenants", { id: "acme" });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    key = (await admin(one, "POST", "/tenants/acme/keys", { name: "ci" })).body.key;
    await within(PROPAGATION_BOUND_MS, async () => (await chat(two!)).status === 200, "the key made on replica one works on replica two");
    // Nothing of the shared state is kept locally.
    assert.deepEqual([fs.existsSync(path.join(tmp, "one", "llamux.db")), fs.existsSync(path.join(tmp, "two", "llamux.db"))], [false, false]);
  });
  after(async () => {
    await stopReplica(two);
    await stopReplica(one);
    await pg?.destroy();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("a response stored through one replica is read, listed and deleted through the other", async () => {
    const created = await api(one!, "POST", "/responses", { model: "stories260K", input: "Once upon a time", max_output_tokens: 16 });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const id = created.body.id as string;
    const read = await api(two!, "GET", `/responses/${id}`);
    assert.equal(read.status, 200);
    assert.deepEqual(read.body, created.body);
    const items = await api(two!, "GET", `/responses/${id}/input_items`);
    assert.equal(items.status, 200);
    assert.deepEqual(
      items.body.data.map((i: { role: string; content: Array<{ text: string }> }) => [i.role, i.content[0]!.text]),
      [["user", "Once upon a time"]],
    );
    // The chain goes on through the other replica.
    const next = await api(two!, "POST", "/responses", { model: "stories260K", input: "And then?", previous_response_id: id, max_output_tokens: 16 });
    assert.equal(next.status, 200, JSON.stringify(next.body));
    assert.equal((await api(one!, "GET", `/responses/${next.body.id}/input_items`)).body.data.length, 3);
    assert.equal((await api(two!, "DELETE", `/responses/${id}`)).body.deleted, true);
    assert.equal((await api(one!, "GET", `/responses/${id}`)).status, 404);
  });

  test("a conversation made on one replica is continued, listed and deleted on the other", async () => {
    const conv = await api(two!, "POST", "/conversations", { metadata: { topic: "kites" } });
    assert.equal(conv.status, 200, JSON.stringify(conv.body));
    const r = await api(one!, "POST", "/responses", { model: "stories260K", input: "Tom had a kite.", conversation: conv.body.id, max_output_tokens: 16 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const items = await api(two!, "GET", `/conversations/${conv.body.id}/items?order=asc`);
    assert.deepEqual(
      items.body.data.map((i: { role: string }) => i.role),
      ["user", "assistant"],
    );
    assert.deepEqual((await api(two!, "GET", `/conversations/${conv.body.id}`)).body.metadata, { topic: "kites" });
    assert.equal((await api(one!, "DELETE", `/conversations/${conv.body.id}`)).body.deleted, true);
    assert.equal((await api(two!, "GET", `/conversations/${conv.body.id}`)).status, 404);
  });

  test("a limit changed through one replica's admin API applies on the other within a second", async () => {
    const patched = await admin(two!, "PATCH", "/tenants/acme", { limits: { allowedModels: ["some-other-model"] } });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    await within(PROPAGATION_BOUND_MS, async () => (await chat(one!)).status === 403, "model_not_allowed on replica one");
    assert.equal((await chat(one!)).body.error.code, "model_not_allowed");
    await admin(one!, "PATCH", "/tenants/acme", { limits: { allowedModels: null } });
    await within(PROPAGATION_BOUND_MS, async () => (await chat(two!)).status === 200, "the model allowed again on replica two");
  });

  test("a key revoked through one replica is refused by the other within a second", async () => {
    const issued = (await admin(two!, "POST", "/tenants/acme/keys", { name: "doomed" })).body;
    await within(PROPAGATION_BOUND_MS, async () => (await chat(one!, issued.key)).status === 200, "the new key on replica one");
    const revoked = await admin(one!, "DELETE", `/tenants/acme/keys/${issued.id}`);
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    assert.equal((await chat(one!, issued.key)).status, 401, "refused at once where it was revoked");
    const tookMs = await within(PROPAGATION_BOUND_MS, async () => (await chat(two!, issued.key)).status === 401, "the revoked key refused by replica two");
    console.log(`# revocation reached the other replica in ${tookMs} ms`);
    assert.equal((await chat(two!, issued.key)).body.error.code, "invalid_api_key");
  });

  test("PostgreSQL down: stored data gets a quick retryable 503, chat with a known key goes on, no crash; it all comes back by itself", async () => {
    const stored = await api(one!, "POST", "/responses", { model: "stories260K", input: "Before the outage", max_output_tokens: 16 });
    assert.equal(stored.status, 200);
    const usageInDb = async () => {
      const db = new PgDatabase({ url: databaseUrl, poolSize: 1 });
      try {
        return Number((await db.query<{ n: string }>("SELECT COALESCE(SUM(tokens), 0) AS n FROM usage WHERE tenant_id = 'acme'"))[0]!.n);
      } finally {
        await db.close();
      }
    };
    const metric = async (r: Replica, name: string) => {
      const text = await (await fetch(`${r.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).text();
      return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
    };
    // Settles are written without waiting: let those of the requests above land first.
    await new Promise((r) => setTimeout(r, 300));
    const usageBefore = await usageInDb();
    let tokensDuringOutage = 0;
    await pg.stop();
    try {
      for (const r of [one!, two!]) {
        const started = Date.now();
        const read = await api(r, "GET", `/responses/${stored.body.id}`);
        const tookMs = Date.now() - started;
        console.log(`# 503 while the database is down: ${tookMs} ms`);
        assert.equal(read.status, 503, JSON.stringify(read.body));
        assert.deepEqual(read.body.error, { message: read.body.error.message, type: "server_error", param: null, code: "database_unavailable" });
        assert.ok(Number(read.headers.get("retry-after")) > 0, "retry-after");
        assert.equal((await api(r, "POST", "/conversations", {})).status, 503);
        assert.equal((await admin(r, "POST", "/tenants/acme/keys", {})).status, 503);
        // A response is generated, but cannot be stored: the client is told, not misled.
        assert.equal((await api(r, "POST", "/responses", { model: "stories260K", input: "During", max_output_tokens: 16 })).status, 503);
        // One that keeps nothing (store:false, no conversation) needs no database.
        assert.equal((await api(r, "POST", "/responses", { model: "stories260K", input: "During", max_output_tokens: 16, store: false })).status, 200);
        const c = await chat(r);
        assert.equal(c.status, 200, JSON.stringify(c.body));
        assert.equal(c.body.choices.length, 1);
        tokensDuringOutage += c.body.usage.total_tokens as number;
        assert.equal((await fetch(`${r.url}/health`)).status, 200);
        assert.equal(await metric(r, "llamux_database_up"), 0);
        await waitFor(async () => (await metric(r, "llamux_usage_buffered_rows")) >= 1, 5000, "the chat's usage buffered");
      }
    } finally {
      await pg.start();
    }
    for (const r of [one!, two!]) {
      await waitFor(async () => (await api(r, "GET", `/responses/${stored.body.id}`)).status === 200, 15_000, "reads to work again");
      assert.equal((await api(r, "POST", "/conversations", {})).status, 200);
      assert.equal(r.child.exitCode, null, "still running");
      assert.equal(await metric(r, "llamux_database_up"), 1);
      await waitFor(async () => (await metric(r, "llamux_usage_buffered_rows")) === 0, 10_000, "the buffered usage written");
    }
    // The chats served during the outage are in the shared usage: none lost.
    assert.ok((await usageInDb()) >= usageBefore + tokensDuringOutage, `usage ${await usageInDb()} < ${usageBefore} + ${tokensDuringOutage}`);
    // And tenant changes follow again.
    const issued = (await admin(one!, "POST", "/tenants/acme/keys", {})).body;
    await within(PROPAGATION_BOUND_MS * 5, async () => (await chat(two!, issued.key)).status === 200, "a key made after the outage on replica two");
  });

  test("kill -9 of a replica right after an acknowledged write loses nothing", async () => {
    const conv = await api(one!, "POST", "/conversations", {});
    const res = await api(one!, "POST", "/responses", { model: "stories260K", input: "Mia found a cat.", conversation: conv.body.id, max_output_tokens: 16 });
    const issued = await admin(one!, "POST", "/tenants/acme/keys", { name: "last words" });
    killReplica(one!.child);
    assert.equal(res.status, 200);
    assert.equal(issued.status, 201);
    assert.equal(await one!.exited, "SIGKILL");
    const read = await api(two!, "GET", `/responses/${res.body.id}`);
    assert.deepEqual(read.body, res.body);
    const items = await api(two!, "GET", `/conversations/${conv.body.id}/items?order=asc`);
    assert.deepEqual(items.body.data[1], res.body.output[0]);
    await within(PROPAGATION_BOUND_MS, async () => (await chat(two!, issued.body.key)).status === 200, "the key acknowledged just before the kill");
    await waitFor(() => !groupAlive(one!.child.pid!), 10_000, "the killed replica's worker to be gone");
  });
});
