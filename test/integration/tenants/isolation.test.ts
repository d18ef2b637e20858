// What one tenant (or anyone without a key) can do to another, on the real
// server with two models: a model allow-list holds on every endpoint and in
// /v1/models, /metrics is closed to tenants and strangers, a deleted tenant
// leaves /metrics, and unknown paths cannot grow /metrics.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { parseMetrics, sumOf, type Sample } from "../helpers/metrics.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

const LIMITED_KEY = "lmx-limitedLimitedLimitedLimitedLimited0001";
const OPEN_KEY = "lmx-openOpenOpenOpenOpenOpenOpenOpenOpen0002";
const GONE_KEY = "lmx-goneGoneGoneGoneGoneGoneGoneGoneGone0003";
const ADMIN_KEY = "admin-key-for-isolation-tests-0123";
const METRICS_TOKEN = "metrics-token-for-isolation-tests-9876";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-isolation-"));
let t: TestServer;
before(async () => {
  const tenantsFile = path.join(dir, "tenants.yaml");
  fs.writeFileSync(
    tenantsFile,
    `tenants:
  - id: limited
    limits: { allowedModels: [model-a] }
    keys: ["${hashApiKey(LIMITED_KEY)}"]
  - id: open
    keys: ["${hashApiKey(OPEN_KEY)}"]
  - id: gone
    keys: ["${hashApiKey(GONE_KEY)}"]
`,
  );
  const configFile = path.join(dir, "llamux.json");
  fs.writeFileSync(
    configFile,
    JSON.stringify({
      "ctx-per-slot": 128,
      slots: 1,
      models: [
        { model: MODELS.stories260K, id: "model-a", alias: "a-alias" },
        { model: MODELS.stories260K, id: "model-b" },
      ],
    }),
  );
  t = await startTestServer(["--config", configFile, "--tenants", tenantsFile], {
    apiKey: LIMITED_KEY,
    env: { LLAMUX_ADMIN_KEY: ADMIN_KEY, LLAMUX_METRICS_TOKEN: METRICS_TOKEN },
  });
});
after(async () => {
  await t?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const clientFor = (key: string) => new OpenAI({ baseURL: `${t.url}/v1`, apiKey: key, maxRetries: 0, timeout: 60_000 });

async function post(
  key: string,
  route: string,
  body: Record<string, unknown>,
): Promise<{ status: number; body: { error?: { code: string; param: string | null } } }> {
  const res = await fetch(`${t.url}${route}`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as { error?: { code: string; param: string | null } } };
}

const BODIES: Record<string, (model: string) => Record<string, unknown>> = {
  "/v1/chat/completions": (model) => ({ model, messages: [{ role: "user", content: "Hi" }], max_tokens: 2 }),
  "/v1/completions": (model) => ({ model, prompt: "Once", max_tokens: 2 }),
  "/v1/embeddings": (model) => ({ model, input: "Once upon a time" }),
  "/v1/responses": (model) => ({ model, input: "Hi", max_output_tokens: 16, store: false }),
};

async function scrapeWith(token: string): Promise<{ samples: Sample[]; bytes: number }> {
  const res = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200);
  const text = await res.text();
  return { samples: parseMetrics(text), bytes: Buffer.byteLength(text) };
}

describe("a tenant limited to one of several models", () => {
  test("is refused the other model on every endpoint, and served its own", async () => {
    for (const [route, body] of Object.entries(BODIES)) {
      const refused = await post(LIMITED_KEY, route, body("model-b"));
      assert.equal(refused.status, 403, `${route} model-b: ${JSON.stringify(refused.body)}`);
      assert.equal(refused.body.error?.code, "model_not_allowed");
      assert.equal(refused.body.error?.param, "model");
      for (const allowed of ["model-a", "a-alias"]) {
        const served = await post(LIMITED_KEY, route, body(allowed));
        assert.equal(served.status, 200, `${route} ${allowed}: ${JSON.stringify(served.body)}`);
      }
      // A tenant without a list still has both.
      assert.equal((await post(OPEN_KEY, route, body("model-b"))).status, 200, `${route} open tenant on model-b`);
    }
  });

  test("sees only its model in /v1/models, and the other is a 404 there", async () => {
    const limited = await clientFor(LIMITED_KEY).models.list();
    assert.deepEqual(
      limited.data.map((m) => m.id),
      ["model-a", "a-alias"],
    );
    await assert.rejects(
      clientFor(LIMITED_KEY).models.retrieve("model-b"),
      (err: unknown) => err instanceof OpenAI.NotFoundError && err.code === "model_not_found",
    );
    assert.equal((await clientFor(LIMITED_KEY).models.retrieve("a-alias")).id, "a-alias");
    const open = await clientFor(OPEN_KEY).models.list();
    assert.deepEqual(
      open.data.map((m) => m.id),
      ["model-a", "model-b", "a-alias"],
    );
  });
});

describe("/metrics in multi-tenant mode", () => {
  test("is refused without a token and with a tenant's key, and served with the metrics token or the admin key", async () => {
    const plain = await fetch(`${t.url}/metrics`);
    assert.equal(plain.status, 401);
    const text = await plain.text();
    assert.doesNotMatch(text, /tenant=/, "nothing about tenants leaks in the refusal");
    assert.equal((JSON.parse(text) as { error: { code: string } }).error.code, "invalid_api_key");
    for (const key of [LIMITED_KEY, OPEN_KEY, "wrong-token-wrong-token-0123"]) {
      assert.equal((await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${key}` } })).status, 401, key);
    }
    assert.ok((await scrapeWith(METRICS_TOKEN)).samples.length > 10);
    assert.ok((await scrapeWith(ADMIN_KEY)).samples.length > 10);
  });

  test("drops a deleted tenant's series", async () => {
    assert.equal((await post(GONE_KEY, "/v1/completions", BODIES["/v1/completions"]!("model-b"))).status, 200);
    const before = await scrapeWith(METRICS_TOKEN);
    assert.ok(sumOf(before.samples, "llamux_completion_tokens_total", { tenant: "gone" }) > 0);
    const del = await fetch(`${t.url}/admin/tenants/gone`, { method: "DELETE", headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    assert.equal(del.status, 200);
    const afterDelete = await scrapeWith(METRICS_TOKEN);
    assert.deepEqual(
      afterDelete.samples.filter((s) => s.labels.tenant === "gone"),
      [],
    );
    assert.ok(
      afterDelete.samples.some((s) => s.labels.tenant === "open"),
      "other tenants' series stay",
    );
  });

  test("distinct unknown paths and keyless requests do not grow it, and a tenant is still served", async () => {
    // Once, so every series these requests can create exists already.
    await fetch(`${t.url}/warm-up`);
    await fetch(`${t.url}/v1/warm-up`);
    await fetch(`${t.url}/v1/chat/completions`, { method: "POST" });
    const before = await scrapeWith(METRICS_TOKEN);
    const N = 2000;
    for (let i = 0; i < N; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, j) => {
          const n = i + j;
          const url = n % 4 === 0 ? `/x${n}` : n % 4 === 1 ? `/v1/x${n}/y` : n % 4 === 2 ? `/admin${n}` : `/v1/chat/completions?u=${n}`;
          return fetch(`${t.url}${url}`, { method: n % 2 === 0 ? "GET" : "POST" }).then((r) => r.arrayBuffer());
        }),
      );
    }
    const afterAttack = await scrapeWith(METRICS_TOKEN);
    const series = (s: Sample[]) => new Set(s.filter((x) => !x.name.startsWith("llamux_process_")).map((x) => `${x.name}${JSON.stringify(x.labels)}`));
    const grown = [...series(afterAttack.samples)].filter((k) => !series(before.samples).has(k));
    assert.deepEqual(grown, [], "no new series");
    assert.ok(afterAttack.bytes < before.bytes + 2048, `/metrics grew from ${before.bytes} to ${afterAttack.bytes} bytes`);
    assert.ok(sumOf(afterAttack.samples, "llamux_requests_total", { endpoint: "other" }) >= N / 2);
    assert.equal(new Set(afterAttack.samples.map((s) => s.labels.tenant).filter(Boolean)).has("default"), false, "keyless requests have no tenant series");
    const served = await post(LIMITED_KEY, "/v1/chat/completions", BODIES["/v1/chat/completions"]!("model-a"));
    assert.equal(served.status, 200);
  });
});
