// PgDatabase (src/store/postgres/db.ts): which failures mean "the database is
// not there", URLs with their password hidden, and, against a real
// PostgreSQL, a server stopping under an open transaction and a pool that
// recovers by itself when it returns.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { isUnavailable, PgDatabase, redactUrl } from "../../../../src/store/postgres/db.js";
import { StoreUnavailableError } from "../../../../src/store/unavailable.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../../helpers/postgres.js";

test("isUnavailable: connection failures and server shutdowns yes, query errors no", () => {
  for (const err of [
    Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" }),
    Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" }),
    Object.assign(new Error("the database system is starting up"), { code: "57P03" }),
    Object.assign(new Error("sorry, too many clients already"), { code: "53300" }),
    Object.assign(new Error("connection failure"), { code: "08006" }),
    new Error("Connection terminated unexpectedly"),
    new Error("timeout exceeded when trying to connect"),
    new StoreUnavailableError("x"),
  ]) {
    assert.equal(isUnavailable(err), true, err.message);
  }
  for (const err of [
    Object.assign(new Error('duplicate key value violates unique constraint "responses_pkey"'), { code: "23505" }),
    Object.assign(new Error("syntax error"), { code: "42601" }),
    Object.assign(new Error("canceling statement due to statement timeout"), { code: "57014" }),
    new Error("something else"),
    null,
  ]) {
    assert.equal(isUnavailable(err), false, String(err?.message));
  }
});

test("redactUrl hides the password and keeps the rest", () => {
  assert.equal(redactUrl("postgres://llamux:s3cret@db:5432/llamux?sslmode=require"), "postgres://llamux:***@db:5432/llamux?sslmode=require");
  assert.equal(redactUrl("postgres://db/llamux"), "postgres://db/llamux");
  assert.doesNotMatch(redactUrl("not a url s3cret"), /s3cret/);
});

describe("PgDatabase on a real server", { skip: postgresMissing ?? false }, () => {
  let server: PostgresServer;
  let db: PgDatabase;
  before(async () => {
    server = await startPostgres();
    db = new PgDatabase({ url: await server.createDatabase(), poolSize: 3, connectTimeoutMs: 1000 });
    await db.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)");
  });
  after(async () => {
    await db?.close();
    await server?.destroy();
  });

  test("a transaction that throws is rolled back and its client returned", async () => {
    await assert.rejects(
      db.transaction(async (tx) => {
        await tx.execute("INSERT INTO t VALUES (1)");
        await tx.execute("INSERT INTO t VALUES (1)");
      }),
      /duplicate key/,
    );
    assert.deepEqual(await db.query("SELECT x FROM t"), []);
    assert.equal(db.pool.totalCount - db.pool.idleCount, 0, "no client left checked out");
  });

  test("the server stopping under an open transaction: StoreUnavailableError, no crash; the pool recovers when it returns", async () => {
    const inFlight = db
      .transaction(async (tx) => {
        await tx.execute("INSERT INTO t VALUES (2)");
        await tx.query("SELECT pg_sleep(3)");
      })
      .then(
        () => null,
        (err: unknown) => err,
      );
    const idle = db.query("SELECT 1"); // leaves an idle connection in the pool, to be cut too
    await idle;
    await new Promise((r) => setTimeout(r, 200));
    await server.stop();
    assert.ok((await inFlight) instanceof StoreUnavailableError);
    assert.equal(db.available, false);
    await assert.rejects(db.query("SELECT 1"), StoreUnavailableError);
    await server.start();
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        assert.deepEqual(await db.query("SELECT x FROM t"), [], "the cut transaction was not committed");
        break;
      } catch (err) {
        if (!(err instanceof StoreUnavailableError) || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.equal(db.available, true);
  });
});
