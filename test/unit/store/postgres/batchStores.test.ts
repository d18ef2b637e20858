// PgFileStore and PgBatchStore (src/store/postgres/{fileStore,batchStore}.ts)
// against a real PostgreSQL: the FileStore and BatchStore contracts
// (batchStoreContract.ts; a second handle is another replica's stores on the
// same database), and what is PostgreSQL's own: contents kept as rows of at
// most 1 MiB that go with their file, and each batch's lease (held by the
// replica that created it, claimable by another only once it has expired,
// never by two at once; renewal says what a cancel through another replica
// changed, and tells a replica it lost a batch it was cut off from).
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { text } from "node:stream/consumers";
import { after, before, describe, test } from "node:test";
import { PgBatchStore } from "../../../../src/store/postgres/batchStore.js";
import { PgDatabase } from "../../../../src/store/postgres/db.js";
import { CHUNK_BYTES, PgFileStore } from "../../../../src/store/postgres/fileStore.js";
import { migrate } from "../../../../src/store/postgres/migrations.js";
import { postgresMissing, startPostgres, type PostgresServer } from "../../../helpers/postgres.js";
import { describeBatchStoresContract, newBatch, type BatchStores } from "../batchStoreContract.js";

const TABLES = "files, file_chunks, batches, batch_lines";
/** Long enough that a lease never expires by itself during a test: expiry is made explicit. */
const LONG_LEASE = { leaseMs: 600_000, renewMs: 300_000 };

describe("PostgreSQL file and batch stores", { skip: postgresMissing ?? false }, () => {
  let server: PostgresServer;
  let db: PgDatabase;
  let tmp: string;
  let handles = 0;
  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-pg-batch-store-"));
    server = await startPostgres();
    db = new PgDatabase({ url: await server.createDatabase(), poolSize: 8 });
    await migrate(db);
  });
  after(async () => {
    await db?.close();
    await server?.destroy();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** One replica's stores: its own upload dir and replica id, the shared database. */
  const replica = (): BatchStores & { batches: PgBatchStore } => ({
    files: PgFileStore.open(db, path.join(tmp, `r${++handles}`)),
    batches: new PgBatchStore(db, LONG_LEASE),
  });
  /** The lease on `id` ran out (its holder stopped renewing: kill -9, a partition). */
  const expire = (id: string) => db.execute("UPDATE batches SET lease_expires_at = now() - interval '1 second' WHERE id = $1", [id]);
  const close = async (s: BatchStores) => {
    await s.batches.close();
    await s.files.close();
  };

  describeBatchStoresContract("PostgreSQL", {
    open: async () => {
      await db.execute(`TRUNCATE ${TABLES}`);
      return replica();
    },
    reopen: async () => replica(),
    close,
  });

  describe("PostgreSQL: contents in chunks", () => {
    test("a file is rows of at most 1 MiB, read back whole, and they go with it", async () => {
      const s = replica();
      try {
        const body = Buffer.alloc(3 * CHUNK_BYTES + 12_345, "abcdefghij\n");
        const upload = path.join(s.files.tmpDir(), "u");
        fs.writeFileSync(upload, body);
        const f = await s.files.adopt("t1", upload, { filename: "big.jsonl", purpose: "batch", bytes: body.length });
        const sizes = await db.query<{ n: number; size: number }>("SELECT n, octet_length(data) AS size FROM file_chunks WHERE file_id = $1 ORDER BY n", [
          f.id,
        ]);
        assert.deepEqual(
          sizes.map((r) => [r.n, r.size]),
          [
            [0, CHUNK_BYTES],
            [1, CHUNK_BYTES],
            [2, CHUNK_BYTES],
            [3, 12_345],
          ],
        );
        assert.ok((await text((await s.files.open("t1", f.id))!)) === body.toString(), "the same bytes back");
        assert.equal(await s.files.delete("t1", f.id), true);
        assert.equal((await db.query("SELECT 1 FROM file_chunks WHERE file_id = $1", [f.id])).length, 0);
      } finally {
        await close(s);
      }
    });

    test("a file deleted while it is read fails the reader rather than ending it short", async () => {
      const s = replica();
      try {
        const f = await s.files.write(
          "t1",
          { filename: "o.jsonl", purpose: "batch_output" },
          Array.from({ length: 4 }, () => "y".repeat(CHUNK_BYTES - 1)),
        );
        const stream = (await s.files.open("t1", f.id))!;
        const first = await new Promise<Buffer>((resolve) => stream.once("data", resolve));
        stream.pause();
        assert.equal(first.length, CHUNK_BYTES);
        await s.files.delete("t1", f.id);
        await assert.rejects(text(stream), /deleted while it was being read/);
      } finally {
        await close(s);
      }
    });
  });

  describe("PostgreSQL: batch leases", () => {
    test("the creating replica holds a new batch; another may take it only once the lease has expired, and the first learns it lost it", async () => {
      await db.execute(`TRUNCATE ${TABLES}`);
      const a = replica();
      const b = replica();
      try {
        await a.batches.create("t1", newBatch("batch_1"));
        assert.equal(await b.batches.claim("t1", "batch_1"), false, "a live holder keeps it");
        assert.deepEqual(await b.batches.claimable(), []);
        assert.equal(await a.batches.claim("t1", "batch_1"), true, "its holder may claim it again");
        assert.deepEqual([...(await a.batches.renew(["batch_1"]))], [["batch_1", "validating"]]);
        await expire("batch_1");
        assert.deepEqual(
          (await b.batches.claimable()).map((c) => [c.tenantId, c.batch.id]),
          [["t1", "batch_1"]],
        );
        assert.equal(await b.batches.claim("t2", "batch_1"), false, "only under its own tenant");
        assert.equal(await b.batches.claim("t1", "batch_1"), true);
        assert.deepEqual([...(await a.batches.renew(["batch_1"]))], [], "A's renewal says it lost it");
        assert.equal(await a.batches.claim("t1", "batch_1"), false);
        await a.batches.release("batch_1"); // A's late release takes nothing from B
        assert.deepEqual([...(await b.batches.renew(["batch_1"]))], [["batch_1", "validating"]]);
        await b.batches.release("batch_1");
        assert.deepEqual(
          (await a.batches.claimable()).map((c) => c.batch.id),
          ["batch_1"],
          "released: anyone's at once",
        );
      } finally {
        await close(a);
        await close(b);
      }
    });

    test("an expired lease claimed by several replicas at once goes to exactly one", async () => {
      await db.execute(`TRUNCATE ${TABLES}`);
      const rs = Array.from({ length: 6 }, replica);
      try {
        await rs[0]!.batches.create("t1", newBatch("batch_1"));
        await expire("batch_1");
        const won = await Promise.all(rs.slice(1).map((r) => r.batches.claim("t1", "batch_1")));
        assert.equal(won.filter(Boolean).length, 1);
      } finally {
        for (const r of rs) await close(r);
      }
    });

    test("a cancel through another replica shows in the holder's renewal; a final batch is nobody's to claim", async () => {
      await db.execute(`TRUNCATE ${TABLES}`);
      const a = replica();
      const b = replica();
      try {
        await a.batches.create("t1", newBatch("batch_1", "in_progress"));
        await b.batches.update("t1", "batch_1", (x) => ({ ...x, status: "cancelling" }));
        assert.deepEqual([...(await a.batches.renew(["batch_1"]))], [["batch_1", "cancelling"]]);
        await a.batches.update("t1", "batch_1", (x) => ({ ...x, status: "cancelled" }));
        await expire("batch_1");
        assert.deepEqual(await b.batches.claimable(), []);
        assert.equal(await b.batches.claim("t1", "batch_1"), false);
      } finally {
        await close(a);
        await close(b);
      }
    });
  });
});
