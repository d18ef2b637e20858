// The shared PostgreSQL state of one replica: one bounded pool, the schema
// brought up to date (safely when replicas start together), and the three
// stores over it. Opened before anything else in the server and closed last.
import { ConfigError } from "../../config.js";
import type { Logger } from "../../logger.js";
import { PgConversationStore, type PgConversationStoreOptions } from "./conversationStore.js";
import { PgDatabase, redactUrl, type PgOptions } from "./db.js";
import { migrate } from "./migrations.js";
import { PgTenantStore } from "./tenantStore.js";
import { PgUsageStore } from "./usageStore.js";
import { PgUsageLog } from "./usageLog.js";

export { PgDatabase, redactUrl } from "./db.js";
export { PgConversationStore } from "./conversationStore.js";
export { PgTenantStore } from "./tenantStore.js";
export { PgUsageStore } from "./usageStore.js";
export { PgUsageLog } from "./usageLog.js";
export { watchTenantChanges, type ChangeWatcher } from "./changeWatcher.js";

export interface PostgresState {
  db: PgDatabase;
  tenants: PgTenantStore;
  conversations: PgConversationStore;
  usage: PgUsageStore;
  /** Per-request usage records for the usage and cost reports. */
  usageLog: PgUsageLog;
  /** Closes the stores, writes what usage is buffered if it can, then ends the pool; idempotent. */
  close(): Promise<void>;
}

export async function openPostgres(options: PgOptions & { conversations: PgConversationStoreOptions }, log: Logger): Promise<PostgresState> {
  const where = redactUrl(options.url);
  const db = new PgDatabase(options, (err) =>
    log.warn({ err: err.message, db: where }, "a pooled PostgreSQL connection failed; it is replaced on the next query"),
  );
  // Migrations get a connection without a statement deadline: one may rewrite a large table, and
  // replicas starting together wait on its lock for as long as it takes.
  const migrator = new PgDatabase({ ...options, poolSize: 1, queryTimeoutMs: 0 });
  try {
    const { applied, version } = await migrate(migrator);
    log.info(
      { db: where, schemaVersion: version, applied, poolSize: options.poolSize },
      applied.length ? "PostgreSQL schema migrated" : "PostgreSQL schema up to date",
    );
  } catch (err) {
    await db.close();
    throw new ConfigError(`cannot use the database ${where}: ${(err as Error).message}`);
  } finally {
    await migrator.close();
  }
  const tenants = new PgTenantStore(db);
  const conversations = new PgConversationStore(db, options.conversations);
  const usage = new PgUsageStore(db, {
    onEvent: (e) => {
      if (e.type === "buffering") log.error({ err: (e.err as Error).message }, "PostgreSQL unreachable: token usage is buffered in memory until it returns");
      else if (e.type === "flushed") log.info({ rows: e.rows }, "buffered token usage written to PostgreSQL");
      else log.error({ tenant: e.tenantId, day: e.day, tokens: e.tokens }, "usage buffer full: these tokens were not recorded");
    },
  });
  const usageLog = new PgUsageLog(db, {
    onEvent: (e) => {
      if (e.type === "buffering") log.error({ err: (e.err as Error).message }, "PostgreSQL unreachable: usage records are buffered in memory until it returns");
      else log.info({ records: e.records }, "buffered usage records written to PostgreSQL");
    },
  });
  let closing: Promise<void> | null = null;
  return {
    db,
    tenants,
    conversations,
    usage,
    usageLog,
    close: () =>
      (closing ??= (async () => {
        await conversations.close();
        await tenants.close();
        await usage.close();
        await usageLog.close();
        await db.close();
      })()),
  };
}
