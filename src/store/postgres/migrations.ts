// Versioned schema migrations for the shared PostgreSQL database. Each
// migration runs once, in order, and is recorded in llamux_schema_migrations.
// All of them run in one transaction that first takes a transaction-scoped
// advisory lock: replicas starting together on an empty database queue on the
// lock, the first creates the schema, the others find it done. A database from
// an older llamux is brought forward; one from a newer llamux is refused (its
// schema is not this version's to guess at), and nothing is ever dropped to
// start over.
import type { PgDatabase, Queryable } from "./db.js";
import { num } from "./db.js";

export interface Migration {
  /** 1, 2, 3…: applied in this order, each exactly once. */
  version: number;
  name: string;
  up: (tx: Queryable) => Promise<void>;
}

/** pg_advisory_xact_lock key for migrations ("llamux" in ASCII, as an int8). */
export const MIGRATION_LOCK_KEY = "119212746831224";

const sql = (text: string) => async (tx: Queryable) => {
  await tx.execute(text);
};

/** llamux's schema history. Append only: a released migration is never edited. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "tenants, keys, usage, responses, conversations, change counter",
    up: sql(`
      CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        incarnation TEXT NOT NULL,
        limits TEXT NOT NULL,
        scheduling TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      );
      CREATE TABLE api_keys (
        seq BIGSERIAL UNIQUE,
        id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        name TEXT,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
      );
      CREATE INDEX api_keys_tenant_id ON api_keys(tenant_id);
      CREATE TABLE usage (
        tenant_id TEXT NOT NULL,
        day TEXT NOT NULL,
        tokens BIGINT NOT NULL,
        PRIMARY KEY (tenant_id, day)
      );
      CREATE TABLE responses (
        tenant_id TEXT NOT NULL,
        id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (tenant_id, id)
      );
      CREATE INDEX responses_created_at ON responses(created_at);
      CREATE TABLE response_input_items (
        tenant_id TEXT NOT NULL,
        response_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        item TEXT NOT NULL,
        PRIMARY KEY (tenant_id, response_id, position),
        FOREIGN KEY (tenant_id, response_id) REFERENCES responses(tenant_id, id) ON DELETE CASCADE
      );
      CREATE INDEX response_input_items_by_id ON response_input_items(tenant_id, item_id);
      CREATE TABLE response_output_items (
        tenant_id TEXT NOT NULL,
        response_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        item TEXT NOT NULL,
        PRIMARY KEY (tenant_id, response_id, position),
        FOREIGN KEY (tenant_id, response_id) REFERENCES responses(tenant_id, id) ON DELETE CASCADE
      );
      CREATE INDEX response_output_items_by_id ON response_output_items(tenant_id, item_id);
      CREATE TABLE conversations (
        tenant_id TEXT NOT NULL,
        id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        metadata TEXT NOT NULL,
        PRIMARY KEY (tenant_id, id)
      );
      CREATE TABLE conversation_items (
        seq BIGSERIAL PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        item TEXT NOT NULL,
        UNIQUE (tenant_id, conversation_id, item_id),
        FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations(tenant_id, id) ON DELETE CASCADE
      );
      CREATE INDEX conversation_items_order ON conversation_items(tenant_id, conversation_id, seq);
      CREATE INDEX conversation_items_by_id ON conversation_items(tenant_id, item_id);
      -- One row: bumped in the same transaction as every tenant or key write,
      -- so a replica learns of a change by reading one integer.
      CREATE TABLE tenant_changes (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version BIGINT NOT NULL
      );
      INSERT INTO tenant_changes (id, version) VALUES (1, 0);
    `),
  },
  {
    version: 2,
    name: "background responses: status, owner replica, event log, replica leases",
    up: sql(`
      -- One row per background response, beside its row of responses: its
      -- status, the replica running it, and a cancel another replica asked for.
      CREATE TABLE background_responses (
        tenant_id TEXT NOT NULL,
        id TEXT NOT NULL,
        status TEXT NOT NULL,
        next_seq INTEGER NOT NULL,
        owner TEXT NOT NULL,
        cancel_requested BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (tenant_id, id),
        FOREIGN KEY (tenant_id, id) REFERENCES responses(tenant_id, id) ON DELETE CASCADE
      );
      CREATE INDEX background_responses_unfinished ON background_responses(owner) WHERE status IN ('queued', 'in_progress');
      CREATE TABLE response_events (
        tenant_id TEXT NOT NULL,
        response_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (tenant_id, response_id, seq),
        FOREIGN KEY (tenant_id, response_id) REFERENCES responses(tenant_id, id) ON DELETE CASCADE
      );
      -- A replica is alive while its lease has not expired (the database's clock, so
      -- replicas' clocks need not agree); it renews it every few seconds.
      CREATE TABLE replica_leases (
        replica_id TEXT PRIMARY KEY,
        expires_at TIMESTAMPTZ NOT NULL
      );
    `),
  },
  {
    version: 3,
    name: "Batch API: files in chunks, batches with a lease each, their recorded lines",
    up: sql(`
      CREATE TABLE files (
        seq BIGSERIAL UNIQUE,
        tenant_id TEXT NOT NULL,
        id TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        filename TEXT NOT NULL,
        purpose TEXT NOT NULL,
        bytes BIGINT NOT NULL,
        chunks INTEGER NOT NULL,
        PRIMARY KEY (tenant_id, id)
      );
      CREATE INDEX files_order ON files(tenant_id, seq);
      -- A file's contents, 1 MiB a row: written and read a chunk at a time, so
      -- neither side ever holds a whole 200 MB value.
      CREATE TABLE file_chunks (
        tenant_id TEXT NOT NULL,
        file_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (tenant_id, file_id, n),
        FOREIGN KEY (tenant_id, file_id) REFERENCES files(tenant_id, id) ON DELETE CASCADE
      );
      -- A batch: its Batch object as JSON, its status beside it (what the lease
      -- renewal reads), and the replica running it with its lease's expiry (the
      -- database's clock).
      CREATE TABLE batches (
        seq BIGSERIAL UNIQUE,
        tenant_id TEXT NOT NULL,
        id TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        owner TEXT,
        lease_expires_at TIMESTAMPTZ,
        PRIMARY KEY (tenant_id, id)
      );
      CREATE INDEX batches_order ON batches(tenant_id, seq);
      CREATE INDEX batches_unfinished ON batches(seq) WHERE status NOT IN ('failed', 'completed', 'expired', 'cancelled');
      CREATE TABLE batch_lines (
        batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
        line INTEGER NOT NULL,
        ok BOOLEAN NOT NULL,
        record TEXT NOT NULL,
        input_tokens BIGINT NOT NULL,
        cached_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        PRIMARY KEY (batch_id, line)
      );
    `),
  },
  {
    version: 4,
    name: "audit log: append-only, hash-chained",
    up: sql(`
      CREATE TABLE audit_log (
        seq BIGINT PRIMARY KEY,
        type TEXT NOT NULL,
        effective_at_ms BIGINT NOT NULL,
        actor_type TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        ip_address TEXT,
        resource_id TEXT,
        request_id TEXT,
        -- Canonical JSON as text, not jsonb: verify must hash exactly what was written.
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      );
      CREATE INDEX audit_log_effective_at ON audit_log(effective_at_ms);
      CREATE INDEX audit_log_type ON audit_log(type, seq);
      CREATE INDEX audit_log_actor ON audit_log(actor_id, seq);
      CREATE INDEX audit_log_resource ON audit_log(resource_id, seq);
      -- Append-only: only a database owner who disables triggers (or drops them) can change a record.
      CREATE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
      END;
      $$;
      CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_refuse();
      CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse();
    `),
  },
  {
    version: 5,
    name: "usage records: one per request, for the usage and cost reports",
    up: sql(`
      -- One row per request that returned a usage object (src/usage/usageLog.ts);
      -- the id makes a retried write count once. Prices are USD per million
      -- tokens at the time of the request (NULL: the model had none).
      CREATE TABLE usage_records (
        id TEXT PRIMARY KEY,
        at BIGINT NOT NULL,
        kind TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        api_key_id TEXT,
        model TEXT NOT NULL,
        batch_id TEXT,
        requests BIGINT NOT NULL,
        input_tokens BIGINT NOT NULL,
        cached_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        price_input DOUBLE PRECISION,
        price_cached DOUBLE PRECISION,
        price_output DOUBLE PRECISION
      );
      CREATE INDEX usage_records_at ON usage_records(at);
      CREATE INDEX usage_records_tenant_at ON usage_records(tenant_id, at);
    `),
  },
  {
    version: 6,
    name: "usage rollups: records summed per hour, for reports in whole hours",
    up: sql(`
      -- Per UTC hour, kind, tenant, key, model, batch and price, the sums of the
      -- records (src/usage/usageLog.ts), added in the same statement as each new
      -- record. NOT NULL so the key can be the primary key: '' is no key / not a
      -- batch line, -1 no price. Filled here from the records already stored.
      CREATE TABLE usage_rollups (
        hour BIGINT NOT NULL,
        kind TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        api_key_id TEXT NOT NULL,
        model TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        price_input DOUBLE PRECISION NOT NULL,
        price_cached DOUBLE PRECISION NOT NULL,
        price_output DOUBLE PRECISION NOT NULL,
        requests BIGINT NOT NULL,
        input_tokens BIGINT NOT NULL,
        cached_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        PRIMARY KEY (hour, kind, tenant_id, api_key_id, model, batch_id, price_input, price_cached, price_output)
      );
      CREATE INDEX usage_rollups_tenant_hour ON usage_rollups(tenant_id, hour);
      INSERT INTO usage_rollups (hour, kind, tenant_id, api_key_id, model, batch_id, price_input, price_cached, price_output, requests, input_tokens, cached_tokens, output_tokens)
      SELECT at - at % 3600, kind, tenant_id, COALESCE(api_key_id, ''), model, COALESCE(batch_id, ''), COALESCE(price_input, -1), COALESCE(price_cached, -1), COALESCE(price_output, -1),
        SUM(requests), SUM(input_tokens), SUM(cached_tokens), SUM(output_tokens)
      FROM usage_records GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9;
    `),
  },
];

/** Versions applied by one migrate() call. */
export interface MigrationOutcome {
  applied: number[];
  /** The schema version after the call. */
  version: number;
}

/** Which migrations to run over a database at `current`: pure. Throws on a database newer than this code. */
export function pendingMigrations(current: number, migrations: readonly Migration[]): Migration[] {
  const latest = migrations.reduce((max, m) => Math.max(max, m.version), 0);
  if (current > latest) {
    throw new Error(
      `the database schema is at version ${current}, newer than this llamux knows (${latest}): run a llamux at least as new as the one that migrated it`,
    );
  }
  return [...migrations].sort((a, b) => a.version - b.version).filter((m) => m.version > current);
}

/** Brings the database to the latest version, safely when several processes call it at once. */
export async function migrate(db: PgDatabase, migrations: readonly Migration[] = MIGRATIONS): Promise<MigrationOutcome> {
  return db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock($1::bigint)", [MIGRATION_LOCK_KEY]);
    await tx.execute(`CREATE TABLE IF NOT EXISTS llamux_schema_migrations (
      version INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )`);
    const [row] = await tx.query<{ v: unknown }>("SELECT COALESCE(MAX(version), 0) AS v FROM llamux_schema_migrations");
    const pending = pendingMigrations(num(row?.v ?? 0), migrations);
    for (const m of pending) {
      await m.up(tx);
      await tx.execute("INSERT INTO llamux_schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
    }
    const version = pending.at(-1)?.version ?? num(row?.v ?? 0);
    return { applied: pending.map((m) => m.version), version };
  });
}
