// The admin API (/admin, LLAMUX_ADMIN_KEY) end to end: tenants and keys are
// created, used through the openai SDK, rotated, revoked and deleted with
// immediate effect, and survive a restart on the same --data-dir.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

const ADMIN_KEY = "admin-key-for-tests-0123456789";
const ENV = { LLAMUX_ADMIN_KEY: ADMIN_KEY };

let dataDir: string;
let t: TestServer | null = null;
const start = async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "128", "--data-dir", dataDir], { env: ENV });
  return t;
};
before(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-admin-test-"));
  await start();
});
after(async () => {
  await t?.close();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

const server = () => {
  assert.ok(t, "server is running");
  return t;
};

interface Reply {
  status: number;
  // Response shapes are asserted field by field.
  body: any;
}

async function admin(method: string, url: string, body?: unknown, key: string | null = ADMIN_KEY): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${server().url}/admin${url}`, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

const clientFor = (key: string) => new OpenAI({ baseURL: `${server().url}/v1`, apiKey: key, maxRetries: 0, timeout: 60_000 });
const hi = (key: string) => clientFor(key).chat.completions.create({ model: server().modelId, messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });
const works = async (key: string) => assert.equal((await hi(key)).choices.length, 1);
const refused = (key: string) => assert.rejects(hi(key), OpenAI.AuthenticationError);

describe("admin API: access", () => {
  test("a missing or wrong admin key is a 401 invalid_api_key", async () => {
    for (const key of [null, "wrong-admin-key-0123456789", `${ADMIN_KEY}x`]) {
      const r = await admin("GET", "/tenants", undefined, key);
      assert.equal(r.status, 401);
      assert.equal(r.body.error.code, "invalid_api_key");
    }
  });

  test("the admin key is not an API key for /v1, and no key works before any is created", async () => {
    await refused(ADMIN_KEY);
  });
});

describe("admin API: tenants", () => {
  test("create → 201 with defaults filled in; a taken id → 409 tenant_exists", async () => {
    const r = await admin("POST", "/tenants", { id: "t-create", limits: { maxTokens: 64 }, scheduling: { weight: 3 } });
    assert.equal(r.status, 201);
    const { created_at, updated_at, ...rest } = r.body;
    assert.deepEqual(rest, {
      id: "t-create",
      object: "tenant",
      limits: {
        requestsPerMinute: null,
        tokensPerMinute: null,
        maxConcurrent: null,
        maxQueued: null,
        tokensPerDay: null,
        lifetimeTokens: null,
        maxTokens: 64,
        allowedModels: null,
      },
      scheduling: { weight: 3, maxPriority: 0, reservedSlots: 0, maxSlots: null },
    });
    assert.ok(Math.abs(created_at - Date.now() / 1000) < 60, "created_at is in seconds");
    assert.equal(updated_at, created_at);
    const dup = await admin("POST", "/tenants", { id: "t-create" });
    assert.equal(dup.status, 409);
    assert.equal(dup.body.error.code, "tenant_exists");
    assert.equal(dup.body.error.param, "id");
  });

  test("bad bodies are 400s naming the parameter", async () => {
    const cases: Array<[unknown, string, string]> = [
      [{}, "missing_required_parameter", "id"],
      [{ id: "Bad Id" }, "invalid_value", "id"],
      [{ id: 7 }, "invalid_type", "id"],
      [{ id: "x1", limits: { maxTokens: 0 } }, "invalid_value", "limits.maxTokens"],
      [{ id: "x1", limits: { requestPerMinute: 1 } }, "unknown_parameter", "limits.requestPerMinute"],
      [{ id: "x1", scheduling: { weight: -1 } }, "invalid_value", "scheduling.weight"],
      [{ id: "x1", scheduling: { reservedSlots: 2, maxSlots: 1 } }, "invalid_value", "scheduling.reservedSlots"],
      [{ id: "x1", keys: [] }, "unknown_parameter", "keys"],
    ];
    for (const [body, code, param] of cases) {
      const r = await admin("POST", "/tenants", body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.error.code, code, JSON.stringify(body));
      assert.equal(r.body.error.param, param, JSON.stringify(body));
    }
    const json = await admin("POST", "/tenants", "{ nope");
    assert.equal(json.status, 400);
    assert.equal(json.body.error.code, "invalid_json");
    assert.equal((await admin("GET", "/tenants/x1")).status, 404, "nothing was created");
  });

  test("get, list, patch (partial merge), delete; unknown ids are 404", async () => {
    await admin("POST", "/tenants", { id: "t-crud", limits: { requestsPerMinute: 10, tokensPerMinute: 1000 } });
    const got = await admin("GET", "/tenants/t-crud");
    assert.equal(got.status, 200);
    assert.equal(got.body.limits.requestsPerMinute, 10);
    const list = await admin("GET", "/tenants");
    assert.equal(list.body.object, "list");
    assert.ok(list.body.data.some((x: { id: string }) => x.id === "t-crud"));

    const patched = await admin("PATCH", "/tenants/t-crud", { limits: { requestsPerMinute: null, maxConcurrent: 2 }, scheduling: { maxSlots: 1 } });
    assert.equal(patched.status, 200);
    assert.deepEqual(
      [
        patched.body.limits.requestsPerMinute,
        patched.body.limits.tokensPerMinute,
        patched.body.limits.maxConcurrent,
        patched.body.scheduling.maxSlots,
        patched.body.scheduling.weight,
      ],
      [null, 1000, 2, 1, 1],
    );
    const inconsistent = await admin("PATCH", "/tenants/t-crud", { scheduling: { reservedSlots: 2 } });
    assert.equal(inconsistent.status, 400);
    assert.equal(inconsistent.body.error.param, "scheduling.reservedSlots");
    assert.equal((await admin("PATCH", "/tenants/t-crud", { id: "other" })).body.error.code, "unknown_parameter");
    // The engine has 2 slots: reserving 3 over all tenants is refused before anything is stored.
    const tooMany = await admin("PATCH", "/tenants/t-crud", { scheduling: { reservedSlots: 3, maxSlots: 3 } });
    assert.equal(tooMany.status, 400);
    assert.match(tooMany.body.error.message, /reserve 3 slots in all, but the engine has 2/);
    assert.equal((await admin("GET", "/tenants/t-crud")).body.scheduling.reservedSlots, 0);

    assert.deepEqual((await admin("DELETE", "/tenants/t-crud")).body, { id: "t-crud", object: "tenant.deleted", deleted: true });
    for (const [method, url] of [
      ["GET", "/tenants/t-crud"],
      ["PATCH", "/tenants/t-crud"],
      ["DELETE", "/tenants/t-crud"],
      ["GET", "/tenants/t-crud/keys"],
      ["POST", "/tenants/t-crud/keys"],
    ] as const) {
      const r = await admin(method, url, method === "PATCH" ? {} : undefined);
      assert.equal(r.status, 404, `${method} ${url}`);
      assert.equal(r.body.error.code, "not_found");
    }
  });
});

describe("admin API: keys, with immediate effect on /v1", () => {
  test("create tenant and key → the key works; rotate → old 401 at once, new works; delete key → 401", async () => {
    assert.equal((await admin("POST", "/tenants", { id: "roundtrip" })).status, 201);
    const created = await admin("POST", "/tenants/roundtrip/keys", { name: "ci" });
    assert.equal(created.status, 201);
    const { key, id, prefix } = created.body;
    assert.match(key, /^lmx-[A-Za-z0-9]{40}$/);
    assert.match(id, /^key_/);
    assert.equal(prefix, `${key.slice(0, 8)}…`);
    assert.equal(created.body.object, "api_key");
    assert.equal(created.body.name, "ci");
    assert.equal(typeof created.body.created_at, "number");
    await works(key);

    const listed = await admin("GET", "/tenants/roundtrip/keys");
    assert.equal(listed.body.object, "list");
    assert.deepEqual(Object.keys(listed.body.data[0]).sort(), ["created_at", "id", "name", "object", "prefix", "revoked_at", "tenant_id"]);
    assert.ok(!JSON.stringify(listed.body).includes(key), "no secret in the list");

    const rotated = await admin("POST", `/tenants/roundtrip/keys/${id}/rotate`);
    assert.equal(rotated.status, 201);
    assert.notEqual(rotated.body.key, key);
    assert.equal(rotated.body.name, "ci");
    await refused(key);
    await works(rotated.body.key);
    assert.equal((await admin("POST", `/tenants/roundtrip/keys/${id}/rotate`)).status, 404, "a revoked key cannot be rotated");

    const revoked = await admin("DELETE", `/tenants/roundtrip/keys/${rotated.body.id}`);
    assert.deepEqual(revoked.body, { id: rotated.body.id, object: "api_key.revoked", revoked: true });
    await refused(rotated.body.key);
    const after = await admin("GET", "/tenants/roundtrip/keys");
    assert.ok(after.body.data.every((k: { revoked_at: number | null }) => typeof k.revoked_at === "number"));
    assert.equal((await admin("DELETE", "/tenants/roundtrip/keys/key_nope")).status, 404);
    assert.equal((await admin("POST", "/tenants/roundtrip/keys", { name: 5 })).body.error.param, "name");
  });

  test("deleting a tenant stops its keys at once", async () => {
    await admin("POST", "/tenants", { id: "doomed" });
    const { key } = (await admin("POST", "/tenants/doomed/keys")).body;
    await works(key);
    await admin("DELETE", "/tenants/doomed");
    await refused(key);
  });

  test("a PATCH of allowedModels applies to the next request", async () => {
    await admin("POST", "/tenants", { id: "models" });
    const { key } = (await admin("POST", "/tenants/models/keys")).body;
    await works(key);
    await admin("PATCH", "/tenants/models", { limits: { allowedModels: ["another-model"] } });
    await assert.rejects(hi(key), (err: unknown) => err instanceof OpenAI.PermissionDeniedError && err.code === "model_not_allowed");
    await admin("PATCH", "/tenants/models", { limits: { allowedModels: null } });
    await works(key);
  });
});

describe("persistence across restarts", () => {
  test("admin-created tenants and keys still work after a restart on the same --data-dir; revoked keys stay revoked", async () => {
    await admin("POST", "/tenants", { id: "durable", limits: { maxTokens: 32 }, scheduling: { weight: 5 } });
    const live = (await admin("POST", "/tenants/durable/keys", { name: "live" })).body;
    const dead = (await admin("POST", "/tenants/durable/keys", { name: "dead" })).body;
    await admin("DELETE", `/tenants/durable/keys/${dead.id}`);
    await works(live.key);
    await refused(dead.key);

    await server().close();
    t = null;
    await start();

    await works(live.key);
    await refused(dead.key);
    const tenant = await admin("GET", "/tenants/durable");
    assert.equal(tenant.status, 200);
    assert.equal(tenant.body.limits.maxTokens, 32);
    assert.equal(tenant.body.scheduling.weight, 5);
    const keys = (await admin("GET", "/tenants/durable/keys")).body.data;
    assert.deepEqual(
      keys.map((k: { name: string; revoked_at: number | null }) => [k.name, k.revoked_at === null]),
      [
        ["live", true],
        ["dead", false],
      ],
    );
  });
});
