// PgAuditStore against a real PostgreSQL: the AuditStore contract, the
// triggers (TRUNCATE too), and what replicas sharing it rely on: appends from
// two pools at once make one chain, never a fork.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { verifyAuditStore } from "../../../../src/audit/verifyCli.js";
import { PgAuditStore } from "../../../../src/store/postgres/auditStore.js";
import { PgDatabase } from "../../../../src/store/postgres/db.js";
import { migrate } from "../../../../src/store/postgres/migrations.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../../helpers/postgres.js";
import { describeAuditStoreContract, entry } from "../../audit/auditStoreContract.js";

describe("PostgreSQL audit store", { skip: postgresMissing ?? false }, () => {
  let server: PostgresServer;
  let url: string;
  let db: PgDatabase;
  before(async () => {
    server = await startPostgres();
    url = await server.createDatabase();
    db = new PgDatabase({ url, poolSize: 4 });
    await migrate(db);
  });
  after(async () => {
    await db?.close();
    await server?.destroy();
  });
  // Emptying the log is itself refused, so each test starts by doing it as its owner would.
  const asOwner = (sql: string) =>
    db.transaction(async (tx) => {
      await tx.execute("SET LOCAL session_replication_role = replica");
      await tx.execute(sql);
    });

  describeAuditStoreContract("PgAuditStore", {
    fresh: async () => {
      await asOwner("DELETE FROM audit_log");
      return new PgAuditStore(db);
    },
    exec: (sql) => db.execute(sql),
    // session_replication_role = replica: ordinary triggers do not fire (superuser only).
    tamper: (sql) => asOwner(sql),
  });

  test("TRUNCATE is refused too", async () => {
    await asOwner("DELETE FROM audit_log");
    await new PgAuditStore(db).append(entry(1));
    await assert.rejects(db.execute("TRUNCATE audit_log"), /append-only/);
    assert.equal((await db.query("SELECT count(*)::int AS n FROM audit_log"))[0]!.n, 1);
  });

  test("two replicas' pools appending at once make one gapless chain that verifies", async () => {
    await asOwner("DELETE FROM audit_log");
    const pools = [new PgDatabase({ url, poolSize: 4 }), new PgDatabase({ url, poolSize: 4 })];
    try {
      const stores = pools.map((p) => new PgAuditStore(p));
      const perReplica = 150;
      const written = await Promise.all(
        stores.map((s, r) => Promise.all(Array.from({ length: perReplica }, (_, i) => s.append(entry(i, { resourceId: `replica-${r}` }))))),
      );
      const seqs = written
        .flat()
        .map((w) => w.seq)
        .sort((a, b) => a - b);
      assert.deepEqual(
        seqs,
        Array.from({ length: 2 * perReplica }, (_, i) => i + 1),
        "every append got its own place",
      );
      const outcome = await verifyAuditStore(new PgAuditStore(db));
      assert.equal(outcome.ok, true, outcome.message);
      assert.match(outcome.message, new RegExp(`${2 * perReplica} records`));
      const byReplica = await db.query<{ resource_id: string; n: number }>(
        "SELECT resource_id, count(*)::int AS n FROM audit_log GROUP BY resource_id ORDER BY resource_id",
      );
      assert.deepEqual(byReplica, [
        { resource_id: "replica-0", n: perReplica },
        { resource_id: "replica-1", n: perReplica },
      ]);
    } finally {
      for (const p of pools) await p.close();
    }
  });
});
