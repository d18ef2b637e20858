// Usage and cost reports (docs/usage.md) against the real server on SQLite:
// two tenants (one with two keys), two served models with prices, chat,
// completions, responses, a streamed chat and response, embeddings and batches; the
// reports' totals equal the sum of the usage objects the API returned, per
// tenant, key, model and batch, at every bucket width, and the costs are
// tokens × prices. A tenant's key reads its own usage and nothing else; bad
// parameters are 400s naming the parameter.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";
import { allResults, costOf, entries, getJson, runWorkload, sumResults, type Caller, type Price, type Tally } from "./workload.js";

const ADMIN_KEY = "admin-key-for-usage-tests-0123456789";
const PRICES: Record<string, Price> = {
  story: { input: 0.15, cached_input: 0.075, output: 0.6 },
  tiny: { input: 2.5, cached_input: 1.25, output: 10 },
};
const MODEL_IDS = Object.keys(PRICES);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-usage-"));
let t: TestServer;
let callers: Caller[];
let tally: Tally;
let t0: number;
let range: Record<string, string>;

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
  t = await startTestServer(["--config", configFile], { env: { LLAMUX_ADMIN_KEY: ADMIN_KEY } });
  callers = [];
  for (const [tenant, keys] of [
    ["alice", 2],
    ["bob", 1],
  ] as const) {
    await admin("POST", "/tenants", { id: tenant });
    for (let i = 0; i < keys; i++) {
      const k = await admin("POST", `/tenants/${tenant}/keys`, { name: `${tenant}-${i}` });
      callers.push({ tenant, keyId: k.id, key: k.key });
    }
  }
  t0 = Math.floor(Date.now() / 1000);
  // alice's two keys and bob's; batches for alice's first key and bob's.
  tally = await runWorkload(t.url, callers.slice(0, 1), MODEL_IDS, { batch: true });
  const more = await runWorkload(t.url, callers.slice(1, 2), MODEL_IDS, { batch: false });
  const bob = await runWorkload(t.url, callers.slice(2), MODEL_IDS, { batch: true });
  for (const other of [more, bob]) {
    for (const kind of ["completions", "embeddings"] as const) for (const [k, v] of other[kind]) tally[kind].set(k, v);
  }
  range = { start_time: String(t0), end_time: String(Math.floor(Date.now() / 1000) + 1) };
});
after(async () => {
  await t?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const dimsOf = (r: any) => JSON.stringify([r.project_id, r.api_key_id, r.model, r.batch_id ?? null]);

describe("usage and cost reports (SQLite)", () => {
  test("completions usage per tenant, key, model and batch equals the usage objects the API returned", async () => {
    const results = await allResults(t.url, "/admin/usage/completions", ADMIN_KEY, {
      ...range,
      bucket_width: "1d",
      group_by: "project_id,api_key_id,model,batch",
    });
    const expected = tally.by("completions", (d) => JSON.stringify([d.tenant, d.key, d.model, d.batch]));
    assert.deepEqual(entries(sumResults(results, dimsOf)), entries(expected));
    // The batch flag follows the batch id; cached tokens were seen at all (the workload repeats a prompt).
    for (const r of results) assert.equal(r.batch, r.batch_id !== null);
    assert.ok(
      [...expected.values()].some((v) => v.cached > 0),
      "some prompt was read from the cache",
    );
    // Each batch alone, as a user of the Batch API would check it.
    const batches = [...expected.keys()].map((k) => JSON.parse(k)[3]).filter((b) => b !== null);
    assert.equal(new Set(batches).size, 2);
  });

  test("the same totals at 1h and 1m buckets, across pages, and with filters", async () => {
    const expected = tally.by("completions", (d) => JSON.stringify([d.tenant, d.model]));
    const pick = (r: any) => JSON.stringify([r.project_id, r.model]);
    for (const width of ["1h", "1m"]) {
      // limit 1: one bucket per page, so the minute buckets take several pages.
      const results = await allResults(t.url, "/admin/usage/completions", ADMIN_KEY, {
        ...range,
        bucket_width: width,
        limit: "1",
        group_by: "project_id,model",
      });
      assert.deepEqual(entries(sumResults(results, pick)), entries(expected), width);
    }
    const onlyBob = await allResults(t.url, "/admin/usage/completions", ADMIN_KEY, {
      ...range,
      project_ids: "bob",
      models: "tiny",
      group_by: "project_id,model",
    });
    assert.deepEqual(entries(sumResults(onlyBob, pick)), entries(new Map([...expected].filter(([k]) => k === JSON.stringify(["bob", "tiny"])))));
    const batchOnly = await allResults(t.url, "/admin/usage/completions", ADMIN_KEY, { ...range, batch: "true" });
    const batchTotal = tally.by("completions", (d) => String(d.batch !== null)).get("true")!;
    assert.deepEqual(entries(sumResults(batchOnly, () => "all")), [["all", batchTotal]]);
  });

  test("embeddings usage per tenant, key and model equals the usage objects the API returned", async () => {
    const results = await allResults(t.url, "/admin/usage/embeddings", ADMIN_KEY, { ...range, group_by: "project_id,api_key_id,model" });
    for (const r of results) assert.equal(r.object, "organization.usage.embeddings.result");
    const expected = tally.by("embeddings", (d) => JSON.stringify([d.tenant, d.key, d.model, null]));
    assert.deepEqual(entries(sumResults(results, dimsOf)), entries(expected));
  });

  test("costs per tenant and line item are the tokens times the model's prices", async () => {
    const results = await allResults(t.url, "/admin/costs", ADMIN_KEY, { ...range, group_by: "project_id,line_item" });
    const got = new Map<string, number>();
    for (const r of results) {
      assert.equal(r.object, "organization.costs.result");
      assert.equal(r.amount.currency, "usd");
      const k = `${r.project_id}|${r.line_item}`;
      got.set(k, (got.get(k) ?? 0) + r.amount.value);
    }
    const all = new Map<string, number>();
    for (const kind of ["completions", "embeddings"] as const) {
      for (const [k, tok] of tally.by(kind, (d) => `${d.tenant}|${d.model}`)) {
        const [tenant, model] = k.split("|") as [string, string];
        const p = PRICES[model]!;
        const parts = {
          input: costOf({ ...tok, cached: 0, output: 0, input: tok.input - tok.cached }, p),
          "cached input": costOf({ ...tok, input: tok.cached, output: 0 }, p),
          output: costOf({ ...tok, input: 0, cached: 0 }, p),
        };
        for (const [item, usd] of Object.entries(parts)) all.set(`${tenant}|${model}, ${item}`, (all.get(`${tenant}|${model}, ${item}`) ?? 0) + usd);
      }
    }
    assert.deepEqual([...got.keys()].sort(), [...all.keys()].sort());
    for (const [k, usd] of all) assert.ok(Math.abs(got.get(k)! - usd) < 1e-12, `${k}: ${got.get(k)} vs ${usd}`);
    assert.ok([...all.values()].every((v) => v >= 0) && [...all.values()].some((v) => v > 0));
    // Ungrouped, a day's total is the sum of everything.
    const total = (await allResults(t.url, "/admin/costs", ADMIN_KEY, range)).reduce((s, r) => s + r.amount.value, 0);
    const expectedTotal = [...all.values()].reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(total - expectedTotal) < 1e-12, `${total} vs ${expectedTotal}`);
  });

  test("a tenant's key reads its own usage and costs at /v1, never another tenant's", async () => {
    const [alice, , bob] = callers;
    for (const c of [alice!, bob!]) {
      const results = await allResults(t.url, "/v1/usage/completions", c.key, { ...range, group_by: "project_id,model" });
      assert.ok(results.length > 0);
      assert.ok(
        results.every((r) => r.project_id === c.tenant),
        `only ${c.tenant}'s rows`,
      );
      const expected = tally.by("completions", (d) => (d.tenant === c.tenant ? JSON.stringify([d.tenant, d.model]) : "other"));
      expected.delete("other");
      assert.deepEqual(entries(sumResults(results, (r) => JSON.stringify([r.project_id, r.model]))), entries(expected));
      // Ungrouped, the total is its own, not everyone's.
      const own = await allResults(t.url, "/v1/usage/embeddings", c.key, range);
      const ownTotal = tally.by("embeddings", (d) => d.tenant).get(c.tenant)!;
      assert.deepEqual(entries(sumResults(own, () => "x")), [["x", ownTotal]]);
      const costs = await allResults(t.url, "/v1/costs", c.key, { ...range, group_by: "project_id" });
      assert.ok(costs.every((r) => r.project_id === c.tenant));
    }
    // Asking for another tenant is refused, naming the parameter; a tenant key cannot reach /admin.
    const other = await getJson(`${t.url}/v1/usage/completions?${new URLSearchParams({ ...range, project_ids: "bob" })}`, alice!.key);
    assert.equal(other.status, 400);
    assert.equal(other.body.error.param, "project_ids");
    const adminWithTenantKey = await getJson(`${t.url}/admin/usage/completions?${new URLSearchParams(range)}`, alice!.key);
    assert.equal(adminWithTenantKey.status, 401);
  });

  test("bad parameters are 400s naming the parameter", async () => {
    const cases: Array<[string, Record<string, string>, string]> = [
      ["/admin/usage/completions", {}, "start_time"],
      ["/admin/usage/completions", { start_time: "yesterday" }, "start_time"],
      ["/admin/usage/completions", { start_time: "100", end_time: "50" }, "end_time"],
      ["/admin/usage/completions", { start_time: "100", bucket_width: "1w" }, "bucket_width"],
      ["/admin/usage/completions", { start_time: "100", bucket_width: "1d", limit: "32" }, "limit"],
      ["/admin/usage/completions", { start_time: "100", limit: "0" }, "limit"],
      ["/admin/usage/completions", { start_time: "100", group_by: "user_id" }, "group_by"],
      ["/admin/usage/completions", { start_time: "100", batch: "maybe" }, "batch"],
      ["/admin/usage/completions", { start_time: "100", page: "page_nonsense" }, "page"],
      ["/admin/usage/completions", { start_time: "100", colour: "blue" }, "colour"],
      ["/admin/usage/embeddings", { start_time: "100", group_by: "batch" }, "group_by"],
      ["/admin/costs", { start_time: "100", group_by: "model" }, "group_by"],
      ["/v1/costs", { start_time: "100", limit: "181" }, "limit"],
    ];
    for (const [p, q, param] of cases) {
      const r = await getJson(`${t.url}${p}?${new URLSearchParams(q)}`, p.startsWith("/admin") ? ADMIN_KEY : callers[0]!.key);
      assert.equal(r.status, 400, `${p} ${JSON.stringify(q)}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.param, param, `${p} ${JSON.stringify(q)}`);
    }
  });

  test("buckets cover the range exactly, empty ones included, and the shape is OpenAI's", async () => {
    const start = t0 - 3 * 3600;
    const r = await getJson(`${t.url}/admin/usage/completions?start_time=${start}&end_time=${start + 5 * 3600 + 30}&bucket_width=1h&limit=4`, ADMIN_KEY);
    assert.equal(r.status, 200);
    assert.deepEqual(
      r.body.data.map((b: any) => [b.start_time, b.end_time]),
      [0, 1, 2, 3].map((i) => [start + i * 3600, start + (i + 1) * 3600]),
    );
    assert.deepEqual(r.body.data[0].results, []);
    assert.equal(r.body.has_more, true);
    const next = await getJson(
      `${t.url}/admin/usage/completions?start_time=${start}&end_time=${start + 5 * 3600 + 30}&bucket_width=1h&limit=4&page=${r.body.next_page}`,
      ADMIN_KEY,
    );
    assert.deepEqual(
      next.body.data.map((b: any) => [b.start_time, b.end_time]),
      [
        [start + 4 * 3600, start + 5 * 3600],
        [start + 5 * 3600, start + 5 * 3600 + 30],
      ],
    );
    assert.equal(next.body.has_more, false);
    assert.equal(next.body.next_page, null);
    const [res] = r.body.data[3].results;
    for (const f of ["input_tokens", "input_cached_tokens", "output_tokens", "num_model_requests"]) assert.equal(typeof res[f], "number", f);
    assert.equal(res.object, "organization.usage.completions.result");
    assert.equal(res.project_id, null, "not grouped by project: null, as OpenAI");
  });
});
