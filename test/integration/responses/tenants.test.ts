// Stored responses and conversations belong to the tenant that made them: with
// a --tenants file of two tenants, tenant B gets for A's ids exactly what it
// gets for ids that never existed, and can change nothing of A's.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import type { Response as OpenAIResponse } from "openai/resources/responses/responses";
import type { SqliteConversationStore } from "../../../src/store/sqliteConversationStore.js";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";
import { apiError } from "./helpers.js";

const ADMIN_KEY = "admin-key-for-responses-tests-0123";
const A_KEY = "lmx-tenantAtenantAtenantAtenantAtenantA01";
const B_KEY = "lmx-tenantBtenantBtenantBtenantBtenantB02";

let dir: string;
let t: TestServer;
let a: OpenAI;
let b: OpenAI;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-responses-tenants-"));
  const tenantsFile = path.join(dir, "tenants.yaml");
  fs.writeFileSync(tenantsFile, `tenants:\n  - id: alpha\n    keys: ["${hashApiKey(A_KEY)}"]\n  - id: beta\n    keys: ["${hashApiKey(B_KEY)}"]\n`);
  t = await startTestServer(
    ["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "512", "--tenants", tenantsFile, "--data-dir", path.join(dir, "data")],
    { apiKey: A_KEY, env: { LLAMUX_ADMIN_KEY: ADMIN_KEY } },
  );
  a = t.client;
  b = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: B_KEY, maxRetries: 0, timeout: 60_000 });
});
after(async () => {
  await t?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const create = (client: OpenAI, body: Record<string, unknown>) =>
  client.responses.create({ model: t.modelId, max_output_tokens: 16, ...body } as never) as Promise<OpenAIResponse>;

async function admin(method: string, url: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${t.url}${url}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.ok(res.ok, `${method} ${url}: ${res.status}`);
  return (await res.json()) as Record<string, unknown>;
}

/** The error JSON of a call, to compare B's answer for A's id with its answer for a made-up one. */
async function errorBody(p: Promise<unknown>): Promise<unknown> {
  const err = await apiError(p, OpenAI.NotFoundError);
  return { status: err.status, error: JSON.parse(JSON.stringify(err.error).replaceAll(/(resp|conv|msg)_[0-9a-z]+/g, "$1_ID")) };
}

describe("tenant isolation of responses and conversations", () => {
  test("B cannot see, list, continue or delete A's response", async () => {
    const r = await create(a, { input: "Alpha's secret story" });
    const never = `resp_${"0".repeat(48)}`;
    assert.deepEqual(await errorBody(b.responses.retrieve(r.id)), await errorBody(b.responses.retrieve(never)));
    assert.deepEqual(await errorBody(b.responses.inputItems.list(r.id)), await errorBody(b.responses.inputItems.list(never)));
    assert.deepEqual(await errorBody(b.responses.delete(r.id)), await errorBody(b.responses.delete(never)));
    const cont = await apiError(create(b, { input: "tell me", previous_response_id: r.id }), OpenAI.BadRequestError);
    assert.equal(cont.code, "previous_response_not_found");
    // A still has it, whole.
    assert.deepEqual(await a.responses.retrieve(r.id), r);
    assert.equal((await a.responses.inputItems.list(r.id)).data.length, 1);
    const next = await create(a, { input: "more", previous_response_id: r.id });
    assert.equal(next.previous_response_id, r.id);
  });

  test("B cannot read, change, extend or delete A's conversation or its items", async () => {
    const conv = await a.conversations.create({ metadata: { owner: "alpha" }, items: [{ role: "user", content: "Alpha's note" }] });
    const item = (await a.conversations.items.list(conv.id)).data[0]! as { id: string };
    const never = `conv_${"0".repeat(48)}`;
    const same = async (call: (id: string) => Promise<unknown>) => assert.deepEqual(await errorBody(call(conv.id)), await errorBody(call(never)));
    await same((id) => b.conversations.retrieve(id));
    await same((id) => b.conversations.update(id, { metadata: { owner: "beta" } }));
    await same((id) => b.conversations.items.list(id));
    await same((id) => b.conversations.items.create(id, { items: [{ role: "user", content: "injected" }] }));
    await same((id) => b.conversations.items.retrieve(item.id, { conversation_id: id }));
    await same((id) => b.conversations.items.delete(item.id, { conversation_id: id }));
    await same((id) => create(b, { input: "hi", conversation: id }));
    await same((id) => b.conversations.delete(id));
    // Untouched for A.
    assert.deepEqual(await a.conversations.retrieve(conv.id), conv);
    assert.deepEqual((await a.conversations.items.list(conv.id)).data, [await a.conversations.items.retrieve(item.id, { conversation_id: conv.id })]);
  });

  test("each tenant sees only its own, even through its own conversation's responses", async () => {
    const convB = await b.conversations.create();
    const rB = await create(b, { input: "Beta's words", conversation: convB.id });
    await apiError(a.responses.retrieve(rB.id), OpenAI.NotFoundError);
    await apiError(a.conversations.items.list(convB.id), OpenAI.NotFoundError);
    assert.equal((await b.conversations.items.list(convB.id)).data.length, 2);
  });

  test("a deleted tenant's responses and conversations go with it: a new tenant of the same id starts empty", async () => {
    await admin("POST", "/admin/tenants", { id: "gamma" });
    const gamma = new OpenAI({
      baseURL: `${t.url}/v1`,
      apiKey: (await admin("POST", "/admin/tenants/gamma/keys", {})).key as string,
      maxRetries: 0,
      timeout: 60_000,
    });
    const conv = await gamma.conversations.create({ items: [{ role: "user", content: "Gamma's diary" }] });
    const r = await create(gamma, { input: "Gamma's question", conversation: conv.id });
    assert.ok(await gamma.responses.retrieve(r.id));
    await admin("DELETE", "/admin/tenants/gamma");
    await admin("POST", "/admin/tenants", { id: "gamma" });
    const reborn = new OpenAI({
      baseURL: `${t.url}/v1`,
      apiKey: (await admin("POST", "/admin/tenants/gamma/keys", {})).key as string,
      maxRetries: 0,
      timeout: 60_000,
    });
    await apiError(reborn.responses.retrieve(r.id), OpenAI.NotFoundError);
    await apiError(reborn.conversations.retrieve(conv.id), OpenAI.NotFoundError);
    const rows = (tenant: string) => (table: string) =>
      (t.srv.conversations as SqliteConversationStore).db.prepare(`SELECT COUNT(*) FROM ${table} WHERE tenant_id = ?`).pluck().get(tenant) as number;
    const tables = ["responses", "response_input_items", "conversations", "conversation_items"];
    assert.deepEqual(tables.map(rows("gamma")), [0, 0, 0, 0]);
    // The other tenants keep theirs.
    assert.ok(tables.map(rows("alpha")).every((n) => n > 0));
  });
});
