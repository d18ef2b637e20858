// API-key auth on /v1 with tenants from a --tenants file (no admin key): the
// SDK's AuthenticationError for missing and wrong keys, both header forms,
// the model allow-list, and /admin absent without LLAMUX_ADMIN_KEY.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

const ACME_KEY = "lmx-acmeAcmeAcmeAcmeAcmeAcmeAcmeAcmeAcme0001";
const LOCKED_KEY = "lmx-lockedLockedLockedLockedLockedLocke0002";
const ALIAS_ONLY_KEY = "lmx-aliasAliasAliasAliasAliasAliasAlias0003";
const ALIAS = "story-alias";

let dir: string;
let t: TestServer;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-auth-test-"));
  const tenantsFile = path.join(dir, "tenants.yaml");
  fs.writeFileSync(
    tenantsFile,
    `tenants:
  - id: acme
    keys: ["${hashApiKey(ACME_KEY)}"]
  - id: locked
    limits: { allowedModels: [some-other-model] }
    keys: ["${hashApiKey(LOCKED_KEY)}"]
  - id: alias-only
    limits: { allowedModels: [${ALIAS}] }
    scheduling: { weight: 2 }
    keys: ["${hashApiKey(ALIAS_ONLY_KEY)}"]
`,
  );
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "128", "--alias", ALIAS, "--tenants", tenantsFile], {
    apiKey: ACME_KEY,
  });
});
after(async () => {
  await t?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const clientWith = (headers: Record<string, string | null>, apiKey = "unused") =>
  new OpenAI({ baseURL: `${t.url}/v1`, apiKey, maxRetries: 0, timeout: 60_000, defaultHeaders: headers });
const hi = (client: OpenAI, model = t.modelId) => client.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });

async function authError(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.AuthenticationError>> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof OpenAI.AuthenticationError, `expected an AuthenticationError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected a 401");
}

describe("auth on /v1 with a tenants file", () => {
  test("a key from the file works through the SDK", async () => {
    const r = await hi(t.client);
    assert.equal(r.choices.length, 1);
    const completion = await t.client.completions.create({ model: t.modelId, prompt: "Once", max_tokens: 2 });
    assert.equal(completion.choices.length, 1);
    assert.ok((await t.client.models.list()).data.length >= 1);
  });

  test("a missing key is a 401 saying no key was given", async () => {
    const err = await authError(hi(clientWith({ Authorization: null })));
    assert.equal(err.code, "invalid_api_key");
    assert.equal(err.type, "invalid_request_error");
    assert.equal(err.param, null);
    assert.match(err.message, /You didn't provide an API key/);
    await authError(clientWith({ Authorization: null }).models.list());
  });

  test("a wrong key is a 401 that echoes only a masked key", async () => {
    const wrong = "lmx-ab12WrongWrongWrongWrongWrongWrongwxyz";
    const err = await authError(hi(clientWith({}, wrong)));
    assert.equal(err.code, "invalid_api_key");
    assert.match(err.message, /Incorrect API key provided: lmx-ab12\*\*\*\*wxyz\./);
    assert.ok(!err.message.includes(wrong));
    await authError(hi(clientWith({}, ACME_KEY.slice(0, -1))));
    await authError(hi(clientWith({}, hashApiKey(ACME_KEY))));
  });

  test("the raw 401 body has OpenAI's shape", async () => {
    const res = await fetch(`${t.url}/v1/models`, { headers: { authorization: "Bearer nope" } });
    assert.equal(res.status, 401);
    assert.deepEqual(await res.json(), {
      error: {
        message: "Incorrect API key provided: ****. Check the key, or ask your llamux administrator for a new one.",
        type: "invalid_request_error",
        param: null,
        code: "invalid_api_key",
      },
    });
  });

  test("auth runs before body parsing and routing: a bad body or unknown /v1 route without a key is still a 401", async () => {
    const bad = await fetch(`${t.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: "{ not json" });
    assert.equal(bad.status, 401);
    const unknown = await fetch(`${t.url}/v1/nothing-here`);
    assert.equal(unknown.status, 401);
    const health = await fetch(`${t.url}/health`);
    assert.equal(health.status, 200, "/health needs no key");
  });

  test("x-api-key works as well as Authorization: Bearer", async () => {
    const r = await hi(clientWith({ Authorization: null, "x-api-key": ACME_KEY }));
    assert.equal(r.choices.length, 1);
    await authError(hi(clientWith({ Authorization: null, "x-api-key": "lmx-nope-nope-nope-nope" })));
  });

  test("a tenant not allowed the model gets a 403 model_not_allowed naming it", async () => {
    const locked = clientWith({}, LOCKED_KEY);
    for (const model of [t.modelId, ALIAS]) {
      try {
        await hi(locked, model);
        assert.fail("expected a 403");
      } catch (err) {
        assert.ok(err instanceof OpenAI.PermissionDeniedError, `expected a PermissionDeniedError, got ${String(err)}`);
        assert.equal(err.code, "model_not_allowed");
        assert.equal(err.param, "model");
        assert.match(err.message, new RegExp(`'${model}'`));
      }
    }
    await assert.rejects(locked.completions.create({ model: t.modelId, prompt: "x", max_tokens: 1 }), OpenAI.PermissionDeniedError);
    // An unknown model is still a 404, as for anyone.
    await assert.rejects(hi(locked, "gpt-17"), OpenAI.NotFoundError);
  });

  test("a tenant allowed the alias may use the model id too, and vice versa", async () => {
    const aliasOnly = clientWith({}, ALIAS_ONLY_KEY);
    assert.equal((await hi(aliasOnly, ALIAS)).choices.length, 1);
    assert.equal((await hi(aliasOnly, t.modelId)).choices.length, 1);
  });

  test("without LLAMUX_ADMIN_KEY every /admin route is a 404", async () => {
    for (const [method, url] of [
      ["GET", "/admin/tenants"],
      ["POST", "/admin/tenants"],
      ["GET", "/admin/tenants/acme/keys"],
    ] as const) {
      const res = await fetch(`${t.url}${url}`, { method, headers: { authorization: "Bearer anything-at-all-here" } });
      assert.equal(res.status, 404, `${method} ${url}`);
    }
  });

  test("the registry holds the file's tenants with their limits and scheduling", () => {
    const tenants = t.srv.tenants;
    assert.ok(tenants);
    assert.deepEqual(
      tenants
        .list()
        .map((r) => r.tenant.id)
        .sort(),
      ["acme", "alias-only", "locked"],
    );
    assert.equal(tenants.get("alias-only")?.tenant.scheduling.weight, 2);
    assert.deepEqual(tenants.get("locked")?.tenant.limits.allowedModels, ["some-other-model"]);
  });
});

describe("startup errors", () => {
  test("a tenants file with a plaintext key fails startup naming the file and field", async () => {
    const file = path.join(dir, "bad.json");
    fs.writeFileSync(file, JSON.stringify({ tenants: [{ id: "x", keys: [ACME_KEY] }] }));
    await assert.rejects(startTestServer(["--model", MODELS.stories260K, "--tenants", file]), /bad\.json: tenants\[0\]\.keys\[0\]: must be the key's hash/);
  });

  test("a short LLAMUX_ADMIN_KEY is refused", async () => {
    await assert.rejects(startTestServer(["--model", MODELS.stories260K], { env: { LLAMUX_ADMIN_KEY: "short" } }), /LLAMUX_ADMIN_KEY must be at least 16/);
  });
});
