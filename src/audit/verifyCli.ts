// `llamux audit verify`: reads the audit log in seq order and checks its hash
// chain. Takes the same flags (and LLAMUX_* variables, and --config) as
// `llamux serve`, so it finds the same database: --database-url for
// PostgreSQL, else <--data-dir>/llamux.db. Exit 0: intact; 1: the first bad
// record is named; 2: usage.
import fs from "node:fs";
import path from "node:path";
import { ConfigError, parseServeConfig } from "../config.js";
import { DB_FILE_NAME } from "../store/sqlite.js";
import { PgDatabase, redactUrl } from "../store/postgres/db.js";
import { PgAuditStore } from "../store/postgres/auditStore.js";
import type { AuditStore } from "./auditStore.js";
import { ChainVerifier, auditId } from "./record.js";
import { SqliteAuditStore } from "./sqliteAuditStore.js";

const HELP = `Usage: llamux audit verify [--data-dir DIR | --database-url URL] [other llamux serve options]

Checks the audit log's hash chain, from the first record to the last, in the
database llamux serve uses with the same options (LLAMUX_DATABASE_URL, else
<data-dir>/llamux.db). Exits 0 when intact, 1 naming the first record that was
changed, removed or reordered. See docs/audit.md.`;

const SCAN_BATCH = 1000;

export interface VerifyOutcome {
  ok: boolean;
  message: string;
}

/** Reads the whole chain through `store`; stops at the first bad record. */
export async function verifyAuditStore(store: AuditStore): Promise<VerifyOutcome> {
  const verifier = new ChainVerifier();
  let after = 0;
  for (;;) {
    const batch = await store.scan(after, SCAN_BATCH);
    if (!verifier.check(batch)) break;
    if (batch.length < SCAN_BATCH) break;
    after = batch.at(-1)!.seq;
  }
  const p = verifier.problem;
  if (p) return { ok: false, message: `audit log TAMPERED at ${p.id} (record ${p.seq}): ${p.reason}; the ${verifier.count} records before it are intact` };
  const head = verifier.count === 0 ? "empty" : `head ${auditId(verifier.count)} hash ${verifier.headHash}`;
  return { ok: true, message: `audit log intact: ${verifier.count} records, ${head}` };
}

export async function auditMain(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== "verify") {
    if (sub === undefined || sub === "--help" || sub === "-h") {
      console.log(HELP);
      return sub === undefined ? 2 : 0;
    }
    console.error(`llamux audit: unknown command '${sub}'\n\n${HELP}`);
    return 2;
  }
  const config = parseServeConfig(rest);
  if (!config) {
    console.log(HELP);
    return 0;
  }
  let store: AuditStore;
  let db: PgDatabase | null = null;
  if (config.databaseUrl) {
    db = new PgDatabase({ url: config.databaseUrl, poolSize: 1, queryTimeoutMs: 0 });
    const [row] = await db.query<{ t: string | null }>("SELECT to_regclass('audit_log')::text AS t").catch(async (err: unknown) => {
      await db!.close();
      throw new ConfigError(`cannot read the database ${redactUrl(config.databaseUrl!)}: ${(err as Error).message}`);
    });
    if (!row?.t) {
      await db.close();
      throw new ConfigError(`the database ${redactUrl(config.databaseUrl)} has no audit log: start llamux serve on it once to bring its schema up to date`);
    }
    store = new PgAuditStore(db);
  } else {
    const file = path.join(config.dataDir, DB_FILE_NAME);
    if (!fs.existsSync(file)) throw new ConfigError(`there is no ${file}: give the --data-dir llamux serve uses`);
    store = SqliteAuditStore.open(config.dataDir);
  }
  try {
    const outcome = await verifyAuditStore(store);
    (outcome.ok ? console.log : console.error)(`llamux: ${outcome.message}`);
    return outcome.ok ? 0 : 1;
  } finally {
    await store.close();
    await db?.close();
  }
}
