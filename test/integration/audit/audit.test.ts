// The audit log end to end on the embedded default (SQLite under --data-dir),
// over HTTP against the real server: every admin action leaves one record
// with its actor, address, request id and change (never a key or a hash);
// refused authentications are recorded, and a flood of thousands of bad keys
// leaves a bounded number of rows whose recorded + suppressed counts add up
// to the attempts; GET /admin/audit filters and pages like OpenAI's audit
// logs API; `llamux audit verify` passes the intact chain and names a row
// changed behind the triggers' back.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import { fingerprint } from "../../../src/audit/auditLog.js";
import { SQLITE_AUDIT_SCHEMA, SqliteAuditStore } from "../../../src/audit/sqliteAuditStore.js";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { MODELS, REPO_ROOT, startTestServer, type TestServer } from "../helpers/server.js";

const ADMIN_KEY = "admin-key-for-audit-tests-0123456789";
const ADMIN_ACTOR = `admin_key-${fingerprint(ADMIN_KEY).slice("sha256:".length)}`;
const CLI = path.join(REPO_ROOT, "dist/src/cli.js");
const PER_ADDRESS = 10;
const FLOOD = 3000;

let dataDir: string;
let t: TestServer | null = null;
/** Every request this file made that was refused for its credentials. */
let refusedAttempts = 0;
/** Every plaintext secret this file saw: none may reach the audit log. */
const secrets = new Set<string>([ADMIN_KEY]);

before(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-audit-it-"));
  // One window for the whole file (an hour), so the bound on rows is exact.
  t = await startTestServer(
    [
      "--model",
      MODELS.stories260K,
      "--slots",
      "1",
      "--ctx-per-slot",
      "128",
      "--data-dir",
      dataDir,
      "--audit-refusals-per-address",
      String(PER_ADDRESS),
      "--audit-refusal-window-ms",
      "3600000",
    ],
    { env: { LLAMUX_ADMIN_KEY: ADMIN_KEY } },
  );
});
after(async () => {
  await t?.close();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

interface Reply {
  status: number;
  requestId: string;
  // Shapes are asserted field by field.
  body: any;
}

async function call(method: string, url: string, body?: unknown, key: string | null = ADMIN_KEY, extra: Record<string, string> = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...extra };
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${t!.url}${url}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const reply = { status: res.status, requestId: res.headers.get("x-request-id")!, body: await res.json() };
  if (res.status === 401) refusedAttempts++;
  return reply;
}

const audit = async (search = "") => {
  const r = await call("GET", `/admin/audit${search}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
};
/** The newest record of `type`. */
const latest = async (type: string) => (await audit(`?event_types[]=${type}&limit=1`)).data[0];

describe("audit log: admin actions", () => {
  let keyId = "";
  let rotatedId = "";

  test("tenant created: actor (admin key fingerprint, address), target, request id, the tenant as created", async () => {
    const r = await call("POST", "/admin/tenants", { id: "acme", limits: { maxTokens: 64 } }, ADMIN_KEY, { "x-request-id": "req-audit-create-1" });
    assert.equal(r.status, 201);
    const rec = await latest("tenant.created");
    assert.equal(rec.object, "audit_log");
    assert.match(rec.id, /^audit_log-\d+$/);
    assert.ok(Math.abs(rec.effective_at - Date.now() / 1000) < 60, "effective_at is in seconds");
    assert.deepEqual(rec.actor, { type: "admin_key", id: ADMIN_ACTOR, ip_address: "127.0.0.1" });
    assert.equal(rec.request_id, "req-audit-create-1");
    assert.equal(rec["tenant.created"].id, "acme");
    assert.equal(rec["tenant.created"].data.limits.maxTokens, 64);
    assert.match(rec.hash, /^[0-9a-f]{64}$/);
  });

  test("tenant changed: before and after of the changed fields only, and the patch", async () => {
    const r = await call("PATCH", "/admin/tenants/acme", { limits: { maxTokens: 32 }, scheduling: { weight: 1 } });
    assert.equal(r.status, 200);
    const rec = await latest("tenant.updated");
    assert.equal(rec.request_id, r.requestId);
    assert.deepEqual(rec["tenant.updated"], {
      id: "acme",
      changes_requested: { limits: { maxTokens: 32 }, scheduling: { weight: 1 } },
      before: { limits: { maxTokens: 64 } },
      after: { limits: { maxTokens: 32 } },
    });
  });

  test("key issued, rotated, revoked: ids and prefixes, never the key", async () => {
    const created = await call("POST", "/admin/tenants/acme/keys", { name: "ci" });
    assert.equal(created.status, 201);
    keyId = created.body.id;
    secrets.add(created.body.key);
    let rec = await latest("api_key.created");
    assert.equal(rec.request_id, created.requestId);
    assert.deepEqual(rec["api_key.created"], {
      id: keyId,
      data: { tenant_id: "acme", prefix: created.body.prefix, name: "ci", created_at: created.body.created_at, revoked_at: null },
    });

    const rotated = await call("POST", `/admin/tenants/acme/keys/${keyId}/rotate`);
    assert.equal(rotated.status, 201);
    rotatedId = rotated.body.id;
    secrets.add(rotated.body.key);
    rec = await latest("api_key.rotated");
    assert.equal(rec["api_key.rotated"].id, keyId);
    assert.equal(rec["api_key.rotated"].tenant_id, "acme");
    assert.equal(rec["api_key.rotated"].replaced_by.prefix, rotated.body.prefix);

    const revoked = await call("DELETE", `/admin/tenants/acme/keys/${rotatedId}`);
    assert.equal(revoked.status, 200);
    rec = await latest("api_key.revoked");
    assert.equal(rec["api_key.revoked"].id, rotatedId);
    assert.equal(typeof rec["api_key.revoked"].data.revoked_at, "number");
  });

  test("tenant deleted: what it was", async () => {
    assert.equal((await call("DELETE", "/admin/tenants/acme")).status, 200);
    const rec = await latest("tenant.deleted");
    assert.equal(rec["tenant.deleted"].id, "acme");
    assert.equal(rec["tenant.deleted"].before.limits.maxTokens, 32);
  });

  test("a refused action (400, 404) changes nothing and records nothing", async () => {
    const before = (await audit(`?actor_ids[]=${ADMIN_ACTOR}&limit=100`)).data.length;
    assert.equal((await call("PATCH", "/admin/tenants/nobody", { limits: { maxTokens: 1 } })).status, 404);
    assert.equal((await call("POST", "/admin/tenants", { id: "bad id!" })).status, 400);
    assert.equal((await audit(`?actor_ids[]=${ADMIN_ACTOR}&limit=100`)).data.length, before);
  });

  test("GET /admin/audit filters by type, actor, resource and time, and pages both ways", async () => {
    const mine = (await audit(`?actor_ids[]=${ADMIN_ACTOR}&limit=100`)).data;
    assert.deepEqual(mine.map((r: any) => r.type).reverse(), [
      "tenant.created",
      "tenant.updated",
      "api_key.created",
      "api_key.rotated",
      "api_key.revoked",
      "tenant.deleted",
    ]);
    const acme = (await audit("?resource_ids[]=acme")).data.map((r: any) => r.type);
    assert.deepEqual(acme, ["tenant.deleted", "tenant.updated", "tenant.created"]);
    const keys = (await audit(`?resource_ids[]=${keyId}&resource_ids[]=${rotatedId}&event_types[]=api_key.revoked`)).data;
    assert.deepEqual(
      keys.map((r: any) => r.type),
      ["api_key.revoked"],
    );
    const future = Math.floor(Date.now() / 1000) + 3600;
    assert.deepEqual((await audit(`?effective_at[gt]=${future}`)).data, []);
    assert.equal((await audit(`?effective_at[lte]=${future}&actor_ids[]=${ADMIN_ACTOR}`)).data.length, 6);

    // Two at a time, oldest-ward with after, back with before: the same records, in order.
    const walked: string[] = [];
    let page = await audit(`?actor_ids[]=${ADMIN_ACTOR}&limit=2`);
    for (;;) {
      walked.push(...page.data.map((r: any) => r.id));
      assert.equal(page.first_id, page.data[0].id);
      assert.equal(page.last_id, page.data.at(-1).id);
      if (!page.has_more) break;
      page = await audit(`?actor_ids[]=${ADMIN_ACTOR}&limit=2&after=${page.last_id}`);
    }
    assert.deepEqual(
      walked,
      mine.map((r: any) => r.id),
    );
    const back = await audit(`?actor_ids[]=${ADMIN_ACTOR}&limit=2&before=${mine[4].id}`);
    assert.deepEqual(
      back.data.map((r: any) => r.id),
      [mine[2].id, mine[3].id],
    );
    assert.equal(back.has_more, true);
  });

  test("bad filters are 400s naming the parameter", async () => {
    for (const [search, param] of [
      ["limit=1000", "limit"],
      ["effective_at[gt]=yesterday", "effective_at[gt]"],
      ["event_types[]=model.exploded", "event_types[]"],
      ["after=nope", "after"],
      ["actor_emails[]=ops@example.com", "actor_emails[]"],
      ["sort=asc", "sort"],
    ]) {
      const r = await call("GET", `/admin/audit?${search}`);
      assert.equal(r.status, 400, search);
      assert.equal(r.body.error.param, param, search);
      assert.equal(r.body.error.type, "invalid_request_error");
    }
  });
});

describe("audit log: refused authentications", () => {
  test("a bad API key, a missing key, a bad admin key, dispatch secret or metrics token: each recorded with its address and request id, never the key", async () => {
    const bad = "lmx-not-a-real-key-000000000000000000000";
    secrets.add(bad);
    const r = await call("POST", "/v1/chat/completions", { model: "m", messages: [] }, bad);
    assert.equal(r.status, 401);
    const rec = await latest("authentication.failed");
    assert.equal(rec.request_id, r.requestId);
    assert.deepEqual(rec.actor, { type: "anonymous", id: "ip:127.0.0.1", ip_address: "127.0.0.1" });
    assert.deepEqual(rec["authentication.failed"], {
      credential: "api_key",
      reason: "incorrect",
      key_fingerprint: fingerprint(bad),
      method: "POST",
      path: "/v1/chat/completions",
    });

    assert.equal((await call("GET", "/v1/models", undefined, null)).status, 401);
    assert.deepEqual((await latest("authentication.failed"))["authentication.failed"].reason, "missing");
    const badAdmin = "wrong-admin-key-0123456789-0123456789";
    secrets.add(badAdmin);
    assert.equal((await call("GET", "/admin/audit", undefined, badAdmin)).status, 401);
    assert.equal((await latest("authentication.failed"))["authentication.failed"].credential, "admin_key");
    // A forged batch dispatch secret, a wrong /metrics token: refusals as well.
    secrets.add("forged-dispatch-secret-0123456789");
    assert.equal((await call("GET", "/v1/models", undefined, null, { "x-llamux-batch-dispatch": "forged-dispatch-secret-0123456789" })).status, 401);
    assert.equal((await latest("authentication.failed"))["authentication.failed"].credential, "batch_dispatch");
    assert.equal((await call("GET", "/metrics", undefined, badAdmin)).status, 401);
    assert.equal((await latest("authentication.failed"))["authentication.failed"].credential, "metrics_token");
  });

  test(`a flood of ${FLOOD} bad keys: at most ${PER_ADDRESS} rows from the address, and nothing lost from the count`, async () => {
    const keys = Array.from({ length: FLOOD }, (_, i) => `lmx-flood-${i}-${"x".repeat(30)}`);
    let next = 0;
    const worker = async () => {
      while (next < keys.length) {
        const res = await fetch(`${t!.url}/v1/models`, { headers: { authorization: `Bearer ${keys[next++]}` } });
        await res.arrayBuffer();
        assert.equal(res.status, 401);
        refusedAttempts++;
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const failed = (await audit("?event_types[]=authentication.failed&limit=100")).data;
    assert.equal(failed.length, PER_ADDRESS, "the address's recorded refusals stop at its limit");
  });
});

describe("audit log: after shutdown", () => {
  const cli = (args: string[]) =>
    spawnSync(process.execPath, [CLI, "audit", "verify", ...args], { encoding: "utf8", env: { PATH: process.env.PATH ?? "" }, timeout: 60_000 });

  test("the window's summary is written at shutdown: recorded + suppressed = every refused attempt", async () => {
    await t!.close();
    t = null;
    const store = SqliteAuditStore.open(dataDir);
    const all = [];
    for (let after = 0; ; ) {
      const batch = await store.scan(after, 1000);
      if (batch.length === 0) break;
      all.push(...batch);
      after = batch.at(-1)!.seq;
    }
    await store.close();
    const failed = all.filter((r) => r.type === "authentication.failed").length;
    const summaries = all.filter((r) => r.type === "authentication.suppressed");
    assert.equal(summaries.length, 1);
    const suppressed = summaries.reduce((n, s) => n + (s.details.suppressed as number), 0);
    assert.ok(refusedAttempts > FLOOD);
    assert.equal(failed + suppressed, refusedAttempts);
    assert.equal(summaries[0]!.details.recorded, failed);
    assert.deepEqual(summaries[0]!.details.top_addresses, [{ ip_address: "127.0.0.1", suppressed }]);
    assert.ok(all.length < 30, `${all.length} rows for ${refusedAttempts} refusals`);

    const text = JSON.stringify(all);
    for (const s of secrets) {
      assert.ok(!text.includes(s), "no secret in the audit log");
      assert.ok(!text.includes(hashApiKey(s).slice("sha256:".length, 40)), "no key hash in the audit log");
    }
  });

  test("llamux audit verify: the intact chain passes; a row changed behind the triggers' back is named", () => {
    const ok = cli(["--data-dir", dataDir]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /audit log intact: \d+ records/);

    const db = new Database(path.join(dataDir, "llamux.db"));
    try {
      assert.throws(() => db.prepare("UPDATE audit_log SET ip_address = '10.6.6.6' WHERE seq = 3").run(), /append-only/);
      // As the file's owner can: the triggers dropped, the row changed, the triggers put back.
      db.exec("DROP TRIGGER audit_log_no_update");
      db.prepare("UPDATE audit_log SET ip_address = '10.6.6.6' WHERE seq = 3").run();
      db.exec(SQLITE_AUDIT_SCHEMA);
    } finally {
      db.close();
    }
    const bad = cli(["--data-dir", dataDir]);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /audit log TAMPERED at audit_log-3 .*changed after it was written/);

    const missing = cli(["--data-dir", path.join(dataDir, "nope")]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /no .*llamux\.db/);
  });
});
