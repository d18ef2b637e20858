// Usage and cost reports with --database-url: the same exactness as on SQLite
// (the report equals the usage objects the API returned, per tenant, key and
// model; costs are tokens × prices), including requests served while
// PostgreSQL was down: their records wait in memory and reach the database
// when it is back, none lost and none counted twice.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { postgresMissing, startPostgres, type PostgresServer } from "../../helpers/postgres.js";
import { MODELS, startTestServer, waitFor, type TestServer } from "../helpers/server.js";
import { allResults, costOf, entries, runWorkload, sumResults, type Caller, type Price, type Tally } from "./workload.js";

const ADMIN_KEY = "admin-key-for-usage-pg-tests-0123456789";
const PRICES: Record<string, Price> = {
  story: { input: 0.15, cached_input: 0.075, output: 0.6 },
  tiny: { input: 2.5, cached_input: 1.25, output: 10 },
};
const MODEL_IDS = Object.keys(PRICES);

describe("usage and cost reports (PostgreSQL)", { skip: postgresMissing ?? false }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-usage-pg-"));
  let pg: PostgresServer;
  let t: TestServer;
  let callers: Caller[];
  let tally: Tally;
  let t0: number;

  async function admin(method: string, url: string, body?: unknown): Promise<any> {
    const res = await fetch(`${t.url}/admin${url}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_KEY}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    assert.ok(res.ok, `${method} ${url}: ${res.status}`);
    return res.json();
  }

  before(async () => {
    pg = await startPostgres();
    const url = await pg.createDatabase();
    const configFile = path.join(dir, "llamux.json");
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        "ctx-per-slot": 256,
        slots: 2,
        models: [
          { model: MODELS.stories260K, id: "story", price: PRICES.story },
          { model: MODELS.tinyStories656K, id: "tiny", price: PRICES.tiny },
        ],
      }),
    );
    t = await startTestServer(["--config", configFile], { env: { LLAMUX_ADMIN_KEY: ADMIN_KEY, LLAMUX_DATABASE_URL: url } });
    callers = [];
    for (const tenant of ["alice", "bob"]) {
      await admin("POST", "/tenants", { id: tenant });
      const k = await admin("POST", `/tenants/${tenant}/keys`, { name: tenant });
      callers.push({ tenant, keyId: k.id, key: k.key });
    }
    t0 = Math.floor(Date.now() / 1000);
    // The Batch API is not served with --database-url (docs/batch.md): no batch here.
    tally = await runWorkload(t.url, callers, MODEL_IDS, { batch: false });
  });
  after(async () => {
    await t?.close();
    await pg?.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("requests answered while PostgreSQL is down are reported once it is back, exactly", async () => {
    const alice = callers[0]!;
    const client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: alice.key, maxRetries: 0, timeout: 60_000 });
    await pg.stop();
    try {
      for (const model of MODEL_IDS) {
        const chat = await client.chat.completions.create({
          model,
          messages: [{ role: "user", content: "While the database was away" }],
          max_tokens: 5,
          temperature: 0,
        });
        tally.add(
          "completions",
          { tenant: "alice", key: alice.keyId, model, batch: null },
          { input: chat.usage!.prompt_tokens, cached: chat.usage!.prompt_tokens_details?.cached_tokens ?? 0, output: chat.usage!.completion_tokens },
        );
        const emb = await client.embeddings.create({ model, input: "away" });
        tally.add("embeddings", { tenant: "alice", key: alice.keyId, model, batch: null }, { input: emb.usage.prompt_tokens, cached: 0, output: 0 });
      }
      assert.ok(t.srv.postgres!.usageLog.pendingRecords >= 4, "the records wait in memory");
    } finally {
      await pg.start();
    }
    await waitFor(() => t.srv.postgres!.usageLog.pendingRecords === 0, 15_000, "the buffered usage records to be written");
  });

  test("completions and embeddings usage per tenant, key and model equal the usage objects the API returned", async () => {
    const range = { start_time: String(t0), end_time: String(Math.floor(Date.now() / 1000) + 1) };
    const pick = (r: any) => JSON.stringify([r.project_id, r.api_key_id, r.model, null]);
    for (const kind of ["completions", "embeddings"] as const) {
      const results = await allResults(t.url, `/admin/usage/${kind}`, ADMIN_KEY, {
        ...range,
        bucket_width: "1m",
        limit: "1440",
        group_by: "project_id,api_key_id,model",
      });
      assert.deepEqual(entries(sumResults(results, pick)), entries(tally.by(kind, (d) => JSON.stringify([d.tenant, d.key, d.model, d.batch]))), kind);
    }
    // A tenant's own view.
    const bob = callers[1]!;
    const own = await allResults(t.url, "/v1/usage/completions", bob.key, { ...range, group_by: "project_id" });
    assert.deepEqual(
      entries(sumResults(own, (r) => r.project_id)),
      entries(tally.by("completions", (d) => d.tenant)).filter(([k]) => k === "bob"),
    );
  });

  test("costs per tenant are the tokens times the model's prices", async () => {
    const range = { start_time: String(t0), end_time: String(Math.floor(Date.now() / 1000) + 1) };
    const results = await allResults(t.url, "/admin/costs", ADMIN_KEY, { ...range, group_by: "project_id" });
    const got = new Map<string, number>();
    for (const r of results) got.set(r.project_id, (got.get(r.project_id) ?? 0) + r.amount.value);
    const expected = new Map<string, number>();
    for (const kind of ["completions", "embeddings"] as const) {
      for (const [k, tok] of tally.by(kind, (d) => `${d.tenant}|${d.model}`)) {
        const [tenant, model] = k.split("|") as [string, string];
        expected.set(tenant, (expected.get(tenant) ?? 0) + costOf(tok, PRICES[model]!));
      }
    }
    assert.deepEqual([...got.keys()].sort(), [...expected.keys()].sort());
    for (const [tenant, usd] of expected) assert.ok(Math.abs(got.get(tenant)! - usd) < 1e-12, `${tenant}: ${got.get(tenant)} vs ${usd}`);
  });
});
