// What one store operation costs, SQLite (the embedded default) against
// PostgreSQL on loopback, in the same run: the per-request latency the shared
// database adds to the requests that use it. Sequential operations (one
// client), after a warm-up; p50 and p99 in milliseconds.
//
//   node dist/bench/storeLatency.js [--database-url postgres://…] [--iterations 500]
//
// Without --database-url it starts a throwaway PostgreSQL (initdb, fsync on)
// with the test helper, as the tests do.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import type { ConversationStore, MessageItem } from "../src/store/conversationStore.js";
import { PgConversationStore } from "../src/store/postgres/conversationStore.js";
import { PgDatabase } from "../src/store/postgres/db.js";
import { migrate } from "../src/store/postgres/migrations.js";
import { PgTenantStore } from "../src/store/postgres/tenantStore.js";
import { PgUsageStore } from "../src/store/postgres/usageStore.js";
import { SqliteConversationStore } from "../src/store/sqliteConversationStore.js";
import { SqliteUsageStore } from "../src/quota/usageStore.js";
import { startPostgres } from "../test/helpers/postgres.js";
import { summarize } from "./stats.js";

const { values } = parseArgs({ options: { "database-url": { type: "string" }, iterations: { type: "string", default: "500" } } });
const iterations = Number(values.iterations);

const item = (id: string, role: "user" | "assistant" = "user"): MessageItem =>
  role === "user"
    ? { type: "message", id, role, status: "completed", content: [{ type: "input_text", text: "Once upon a time there was a little girl." }] }
    : { type: "message", id, role, status: "completed", content: [{ type: "output_text", text: "She had a red ball.", annotations: [], logprobs: [] }] };

type Op = (i: number) => Promise<unknown>;

async function time(op: Op): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < 20; i++) await op(-1 - i); // warm-up
  const samples: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = process.hrtime.bigint();
    await op(i);
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const s = summarize(samples);
  return { p50: s.p50, p99: s.p99 };
}

function ops(store: ConversationStore, addUsage: (i: number) => Promise<unknown>, prefix: string): Record<string, Op> {
  return {
    "commitResponse (stored, 1 in + 1 out item)": (i) =>
      store.commitResponse({
        tenantId: "acme",
        response: {
          id: `${prefix}resp_${i}`,
          createdAtSeconds: Math.floor(Date.now() / 1000),
          body: { id: `${prefix}resp_${i}`, output: [item(`${prefix}out_${i}`, "assistant")] },
          inputItems: [item(`${prefix}in_${i}`)],
        },
        conversation: null,
      }),
    getResponse: (i) => store.getResponse("acme", `${prefix}resp_${Math.abs(i) % iterations}`),
    "listResponseInputItems (20)": (i) =>
      store.listResponseInputItems("acme", `${prefix}resp_${Math.abs(i) % iterations}`, { limit: 20, order: "desc", after: null }),
    "addConversationItems (1)": (i) => store.addConversationItems("acme", `${prefix}conv`, [item(`${prefix}c_${i}`)]),
    "usage add (settle)": addUsage,
  };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-store-bench-"));
const pgServer = values["database-url"] ? null : await startPostgres();
const url = values["database-url"] ?? (await pgServer!.createDatabase("bench"));
const db = new PgDatabase({ url, poolSize: 4 });
try {
  await migrate(db);
  const sqlite = SqliteConversationStore.open(dir, { responseTtlSeconds: 0 });
  const sqliteUsage = new SqliteUsageStore(sqlite.db);
  const pg = new PgConversationStore(db, { responseTtlSeconds: 0 });
  const pgUsage = new PgUsageStore(db);
  const tenants = new PgTenantStore(db);
  const prefix = `b${Date.now()}_`;
  await sqlite.createConversation("acme", { id: `${prefix}conv`, createdAtSeconds: 0, metadata: {} }, []);
  await pg.createConversation("acme", { id: `${prefix}conv`, createdAtSeconds: 0, metadata: {} }, []);
  const a = ops(sqlite, async () => sqliteUsage.add("acme", "2026-01-01", 10), prefix);
  const b = ops(pg, () => pgUsage.add("acme", "2026-01-01", 10), prefix);
  const rows: string[] = [];
  for (const name of Object.keys(a)) {
    const s = await time(a[name]!);
    const p = await time(b[name]!);
    rows.push(`| ${name} | ${s.p50.toFixed(3)} | ${s.p99.toFixed(3)} | ${p.p50.toFixed(3)} | ${p.p99.toFixed(3)} | ${(p.p50 - s.p50).toFixed(3)} |`);
  }
  const poll = await time(() => tenants.changeVersion());
  rows.push(`| tenant change poll (every 250 ms) | – | – | ${poll.p50.toFixed(3)} | ${poll.p99.toFixed(3)} | – |`);
  console.log(`${iterations} sequential operations each, after 20 warm-up; milliseconds\n`);
  console.log("| operation | SQLite p50 | SQLite p99 | PostgreSQL p50 | PostgreSQL p99 | added p50 |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const r of rows) console.log(r);
  await pg.close();
  await sqlite.close();
} finally {
  await db.close();
  await pgServer?.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
}
