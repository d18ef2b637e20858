// Schema migrations of the shared database (src/store/postgres/migrations.ts)
// against a real PostgreSQL: replicas opening an empty database at once, an
// older schema brought forward without losing rows, a newer one refused.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { PgDatabase } from "../../../../src/store/postgres/db.js";
import { MIGRATIONS, migrate, pendingMigrations, type Migration } from "../../../../src/store/postgres/migrations.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../../helpers/postgres.js";

describe("PostgreSQL migrations", { skip: postgresMissing ?? false }, () => {
  let server: PostgresServer;
  const open: PgDatabase[] = [];
  const connect = (url: string) => {
    const db = new PgDatabase({ url, poolSize: 2 });
    open.push(db);
    return db;
  };
  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    for (const db of open.reverse()) await db.close();
    await server?.destroy();
  });

  test("three replicas opening an empty database at once: one migrates, the others find it done", async () => {
    const url = await server.createDatabase();
    const outcomes = await Promise.all([connect(url), connect(url), connect(url)].map((db) => migrate(db)));
    const latest = MIGRATIONS.at(-1)!.version;
    assert.deepEqual(
      outcomes.map((o) => o.version),
      [latest, latest, latest],
    );
    assert.deepEqual(outcomes.map((o) => o.applied.length).sort(), [0, 0, MIGRATIONS.length], "exactly one of them applied the migrations");
    const rows = await connect(url).query<{ version: number }>("SELECT version FROM llamux_schema_migrations ORDER BY version");
    assert.deepEqual(
      rows.map((r) => r.version),
      MIGRATIONS.map((m) => m.version),
    );
    assert.deepEqual((await migrate(connect(url))).applied, [], "a later start applies nothing");
  });

  test("an older schema is upgraded in place: its rows stay, the next migration runs once", async () => {
    const url = await server.createDatabase();
    const db = connect(url);
    const v1: Migration = {
      version: 1,
      name: "notes",
      up: async (tx) => void (await tx.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")),
    };
    const v2: Migration = {
      version: 2,
      name: "notes.author",
      up: async (tx) => void (await tx.execute("ALTER TABLE notes ADD COLUMN author TEXT NOT NULL DEFAULT 'unknown'")),
    };
    assert.deepEqual((await migrate(db, [v1])).applied, [1]);
    await db.execute("INSERT INTO notes (id, text) VALUES (1, 'kept')");
    const outcomes = await Promise.all([migrate(connect(url), [v1, v2]), migrate(connect(url), [v1, v2])]);
    assert.deepEqual(outcomes.map((o) => o.applied).sort(), [[], [2]]);
    assert.deepEqual(await db.query("SELECT id, text, author FROM notes"), [{ id: 1, text: "kept", author: "unknown" }]);
  });

  test("a failing migration leaves the database as it was (one transaction)", async () => {
    const url = await server.createDatabase();
    const db = connect(url);
    const good: Migration = { version: 1, name: "t", up: async (tx) => void (await tx.execute("CREATE TABLE t (x INTEGER)")) };
    const bad: Migration = { version: 2, name: "bad", up: async (tx) => void (await tx.execute("ALTER TABLE nope ADD COLUMN y INTEGER")) };
    await assert.rejects(migrate(db, [good, bad]), /nope/);
    assert.deepEqual(await db.query("SELECT to_regclass('t') AS t, to_regclass('llamux_schema_migrations') AS m"), [{ t: null, m: null }]);
    assert.deepEqual((await migrate(db, [good])).applied, [1]);
  });

  test("a database migrated by a newer llamux is refused, never reset", async () => {
    const url = await server.createDatabase();
    const db = connect(url);
    await migrate(db);
    await db.execute("INSERT INTO llamux_schema_migrations (version, name) VALUES (999, 'from the future')");
    await assert.rejects(migrate(db), /version 999, newer than this llamux knows/);
    assert.equal((await db.query("SELECT count(*)::int AS n FROM llamux_schema_migrations"))[0]!.n, MIGRATIONS.length + 1);
  });

  test("pendingMigrations orders by version and skips what is applied", () => {
    const m = (version: number): Migration => ({ version, name: String(version), up: async () => undefined });
    assert.deepEqual(
      pendingMigrations(1, [m(3), m(1), m(2)]).map((x) => x.version),
      [2, 3],
    );
    assert.deepEqual(pendingMigrations(3, [m(1), m(2), m(3)]), []);
    assert.throws(() => pendingMigrations(4, [m(1)]), /newer/);
  });
});
