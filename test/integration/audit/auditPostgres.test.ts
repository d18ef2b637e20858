// The audit log on a shared PostgreSQL, over HTTP against two real servers
// (replicas) on one database: admin actions and refused keys from both at
// once land in one chain that `llamux audit verify --database-url` passes,
// each replica lists the other's records, and a row changed by the database's
// owner behind the triggers' back (session_replication_role) is named.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { PgDatabase } from "../../../src/store/postgres/db.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../helpers/postgres.js";
import { MODELS, REPO_ROOT, startTestServer, type TestServer } from "../helpers/server.js";

const ADMIN_KEY = "admin-key-for-audit-pg-tests-0123456789";
const CLI = path.join(REPO_ROOT, "dist/src/cli.js");
const SERVE = [
  "--model",
  MODELS.stories260K,
  "--slots",
  "1",
  "--ctx-per-slot",
  "128",
  "--audit-refusals-per-address",
  "5",
  "--audit-refusal-window-ms",
  "3600000",
];

describe("audit log on PostgreSQL, two replicas", { skip: postgresMissing ?? false }, () => {
  let pg: PostgresServer;
  let databaseUrl: string;
  let replicas: TestServer[] = [];
  let refused = 0;

  before(async () => {
    pg = await startPostgres();
    databaseUrl = await pg.createDatabase();
    const env = { LLAMUX_ADMIN_KEY: ADMIN_KEY, LLAMUX_DATABASE_URL: databaseUrl };
    replicas = await Promise.all([startTestServer(SERVE, { env }), startTestServer(SERVE, { env })]);
  });
  after(async () => {
    for (const r of [...replicas].reverse()) await r.close();
    await pg?.destroy();
  });

  const call = async (r: TestServer, method: string, url: string, key: string, body?: unknown) => {
    const res = await fetch(`${r.url}${url}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (res.status === 401) refused++;
    return { status: res.status, body: (await res.json()) as any };
  };
  const verify = () =>
    spawnSync(process.execPath, [CLI, "audit", "verify", "--database-url", databaseUrl], {
      encoding: "utf8",
      env: { PATH: process.env.PATH ?? "" },
      timeout: 60_000,
    });

  test("admin actions and refusals from both replicas at once: one chain, each replica lists the other's records", async () => {
    const [one, two] = replicas as [TestServer, TestServer];
    const work = [one, two].flatMap((r, i) => [
      ...Array.from({ length: 10 }, (_, n) => call(r, "POST", "/admin/tenants", ADMIN_KEY, { id: `r${i}-t${n}` }).then((x) => assert.equal(x.status, 201))),
      ...Array.from({ length: 200 }, (_, n) => call(r, "GET", "/v1/models", `lmx-bad-${i}-${n}-${"y".repeat(30)}`).then((x) => assert.equal(x.status, 401))),
    ]);
    await Promise.all(work);
    const listed = await call(two, "GET", "/admin/audit?event_types[]=tenant.created&limit=100", ADMIN_KEY);
    assert.equal(listed.status, 200);
    assert.deepEqual(
      listed.body.data.map((r: any) => r["tenant.created"].id).sort(),
      [...Array.from({ length: 10 }, (_, n) => `r0-t${n}`), ...Array.from({ length: 10 }, (_, n) => `r1-t${n}`)].sort(),
    );
    const failed = await call(one, "GET", "/admin/audit?event_types[]=authentication.failed&limit=100", ADMIN_KEY);
    assert.equal(failed.body.data.length, 10, "each replica records 5 from the address (its own window)");
  });

  test("after shutdown: recorded + suppressed = attempts; verify passes, then names a row changed by the owner", async () => {
    for (const r of [...replicas].reverse()) await r.close();
    replicas = [];
    const db = new PgDatabase({ url: databaseUrl, poolSize: 1 });
    try {
      const [counts] = await db.query<{ failed: number; suppressed: number; summaries: number }>(
        `SELECT count(*) FILTER (WHERE type = 'authentication.failed')::int AS failed,
                COALESCE(sum((details::jsonb->>'suppressed')::int) FILTER (WHERE type = 'authentication.suppressed'), 0)::int AS suppressed,
                count(*) FILTER (WHERE type = 'authentication.suppressed')::int AS summaries FROM audit_log`,
      );
      assert.deepEqual(counts, { failed: 10, suppressed: refused - 10, summaries: 2 });

      const ok = verify();
      assert.equal(ok.status, 0, ok.stderr);
      assert.match(ok.stdout, /audit log intact: 32 records/);

      await assert.rejects(db.execute("UPDATE audit_log SET resource_id = 'forged' WHERE seq = 7"), /append-only/);
      await db.transaction(async (tx) => {
        await tx.execute("SET LOCAL session_replication_role = replica");
        await tx.execute("UPDATE audit_log SET resource_id = 'forged' WHERE seq = 7");
      });
      const bad = verify();
      assert.equal(bad.status, 1);
      assert.match(bad.stderr, /audit log TAMPERED at audit_log-7 /);
    } finally {
      await db.close();
    }
  });
});
