// Durable tenants and API keys. TenantStore is the seam (a networked store can
// implement it later, hence the promises); SqliteTenantStore keeps them in
// <data-dir>/llamux.db with better-sqlite3. Only hashes of keys are stored.
//
// Durability: journal_mode=WAL + synchronous=FULL, so a write whose promise has
// resolved (and so an acknowledged admin request) survives kill -9 and power loss.
import { randomUUID } from "node:crypto";
import type Database from "better-sqlite3";
import { openDatabase } from "../store/sqlite.js";
import { limitsPatchSchema, schedulingPatchSchema, type TenantDefinition } from "./config.js";
import { displayPrefixOfHash, generateKeyId } from "./keys.js";
import { DEFAULT_LIMITS, DEFAULT_SCHEDULING, type Tenant, type TenantLimits, type TenantScheduling } from "./types.js";

export { DB_FILE_NAME } from "../store/sqlite.js";

export interface TenantRecord {
  tenant: Tenant;
  createdAtSeconds: number;
  updatedAtSeconds: number;
}

export interface ApiKeyRecord {
  id: string;
  tenantId: string;
  /** "sha256:<64 hex>" of the key; the key itself is never stored. */
  hash: string;
  /** For display only: "lmx-ab12…" (or "sha256:ab12cd34…" for keys from the tenants file). */
  prefix: string;
  name: string | null;
  createdAtSeconds: number;
  revokedAtSeconds: number | null;
}

export type NewApiKey = Pick<ApiKeyRecord, "tenantId" | "hash" | "prefix" | "name">;

/** A key the tenants file gives to another tenant than the store had it under. */
export interface KeyMove {
  hash: string;
  fromTenantId: string;
  toTenantId: string;
}

export interface TenantStore {
  listTenants(): Promise<TenantRecord[]>;
  getTenant(id: string): Promise<TenantRecord | null>;
  /** Null when the id is already taken. */
  createTenant(tenant: Tenant): Promise<TenantRecord | null>;
  /** Replaces limits and scheduling; null when there is no such tenant. */
  updateTenant(tenant: Tenant): Promise<TenantRecord | null>;
  /** Removes the tenant and all its keys; false when there was none. */
  deleteTenant(id: string): Promise<boolean>;
  /** Keys of one tenant, or of every tenant when tenantId is undefined; revoked ones included. */
  listKeys(tenantId?: string): Promise<ApiKeyRecord[]>;
  /** Null when the tenant does not exist. */
  addKey(key: NewApiKey): Promise<ApiKeyRecord | null>;
  /** Idempotent (a revoked key keeps its first revoked_at); null when the tenant has no such key. */
  revokeKey(tenantId: string, keyId: string): Promise<ApiKeyRecord | null>;
  /**
   * Atomically revokes an active key and adds its replacement (same name).
   * Null when the tenant has no such key or it is already revoked.
   */
  rotateKey(tenantId: string, keyId: string, replacement: Pick<NewApiKey, "hash" | "prefix">): Promise<{ revoked: ApiKeyRecord; added: ApiKeyRecord } | null>;
  /**
   * Applies the tenants file in one transaction: each tenant it names is
   * created or has its limits and scheduling replaced (the file wins); each of
   * its key hashes is added when absent. A hash already present keeps its
   * state, so a key revoked through the admin API stays revoked; one held by
   * another tenant moves to the tenant the file names (the file wins) and is
   * returned.
   */
  importDefinitions(definitions: readonly TenantDefinition[]): Promise<KeyMove[]>;
  close(): Promise<void>;
}

/**
 * Implemented by a store several replicas share: a number that changes with
 * every committed tenant or key write, so a replica polls one integer to learn
 * that its in-memory registry is stale (see TenantRegistry.refresh). A store
 * only one process writes (SQLite) needs none.
 */
export interface TenantChangeFeed {
  changeVersion(): Promise<string>;
}

export interface TenantRow {
  id: string;
  /** Null only in a row from before the column existed, until addIncarnations fills it. */
  incarnation: string | null;
  limits: string;
  scheduling: string;
  created_at: number;
  updated_at: number;
}

export interface KeyRow {
  id: string;
  tenant_id: string;
  hash: string;
  prefix: string;
  name: string | null;
  created_at: number;
  revoked_at: number | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tenants (
  id TEXT PRIMARY KEY,
  limits TEXT NOT NULL,
  scheduling TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  name TEXT,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS api_keys_tenant_id ON api_keys(tenant_id);
`;

/**
 * The tenants table's `incarnation` column (a nonce per created tenant, see
 * Tenant.incarnation), added to a database made before it existed, and given
 * to every row without one.
 */
function addIncarnations(db: Database.Database): void {
  const columns = db.prepare("SELECT name FROM pragma_table_info('tenants')").pluck().all() as string[];
  if (!columns.includes("incarnation")) db.exec("ALTER TABLE tenants ADD COLUMN incarnation TEXT");
  const missing = db.prepare("SELECT id FROM tenants WHERE incarnation IS NULL").pluck().all() as string[];
  const set = db.prepare("UPDATE tenants SET incarnation = ? WHERE id = ?");
  db.transaction(() => {
    for (const id of missing) set.run(randomUUID(), id);
  })();
}

export interface SqliteTenantStoreOptions {
  /** Clock, in whole seconds since the epoch (tests pin it). */
  nowSeconds?: () => number;
}

export class SqliteTenantStore implements TenantStore {
  /**
   * The open database handle. Other front-process modules (the usage ledger)
   * keep their own tables in the same file through it; they must stop using it
   * before close() (the server stops them first: reverse order of start).
   */
  readonly db: Database.Database;
  readonly file: string;
  private readonly now: () => number;

  private constructor(db: Database.Database, file: string, options: SqliteTenantStoreOptions) {
    this.db = db;
    this.file = file;
    this.now = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
  }

  /** Opens (creating the directory and tables when needed) `<dataDir>/llamux.db`. */
  static open(dataDir: string, options: SqliteTenantStoreOptions = {}): SqliteTenantStore {
    const { db, file } = openDatabase(dataDir, SCHEMA);
    try {
      addIncarnations(db);
    } catch (err) {
      db.close();
      throw err;
    }
    return new SqliteTenantStore(db, file, options);
  }

  async listTenants(): Promise<TenantRecord[]> {
    return (this.db.prepare("SELECT * FROM tenants ORDER BY created_at, id").all() as TenantRow[]).map(toTenantRecord);
  }

  async getTenant(id: string): Promise<TenantRecord | null> {
    return this.tenantRow(id);
  }

  async createTenant(tenant: Tenant): Promise<TenantRecord | null> {
    const now = this.now();
    const result = this.db
      .prepare("INSERT INTO tenants (id, limits, scheduling, created_at, updated_at, incarnation) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING")
      .run(tenant.id, JSON.stringify(tenant.limits), JSON.stringify(tenant.scheduling), now, now, randomUUID());
    return result.changes === 1 ? this.tenantRow(tenant.id) : null;
  }

  async updateTenant(tenant: Tenant): Promise<TenantRecord | null> {
    const result = this.db
      .prepare("UPDATE tenants SET limits = ?, scheduling = ?, updated_at = ? WHERE id = ?")
      .run(JSON.stringify(tenant.limits), JSON.stringify(tenant.scheduling), this.now(), tenant.id);
    return result.changes === 1 ? this.tenantRow(tenant.id) : null;
  }

  async deleteTenant(id: string): Promise<boolean> {
    return this.db.prepare("DELETE FROM tenants WHERE id = ?").run(id).changes === 1;
  }

  async listKeys(tenantId?: string): Promise<ApiKeyRecord[]> {
    const rows =
      tenantId === undefined
        ? this.db.prepare("SELECT * FROM api_keys ORDER BY created_at, rowid").all()
        : this.db.prepare("SELECT * FROM api_keys WHERE tenant_id = ? ORDER BY created_at, rowid").all(tenantId);
    return (rows as KeyRow[]).map(toKeyRecord);
  }

  async addKey(key: NewApiKey): Promise<ApiKeyRecord | null> {
    if (!this.tenantRow(key.tenantId)) return null;
    return this.insertKey(key);
  }

  async revokeKey(tenantId: string, keyId: string): Promise<ApiKeyRecord | null> {
    this.db.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL").run(this.now(), keyId, tenantId);
    return this.keyRow(tenantId, keyId);
  }

  async rotateKey(
    tenantId: string,
    keyId: string,
    replacement: Pick<NewApiKey, "hash" | "prefix">,
  ): Promise<{ revoked: ApiKeyRecord; added: ApiKeyRecord } | null> {
    return this.db
      .transaction(() => {
        const old = this.keyRow(tenantId, keyId);
        if (!old || old.revokedAtSeconds !== null) return null;
        this.db.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?").run(this.now(), keyId);
        const added = this.insertKey({ tenantId, hash: replacement.hash, prefix: replacement.prefix, name: old.name });
        return { revoked: this.keyRow(tenantId, keyId)!, added };
      })
      .immediate();
  }

  async importDefinitions(definitions: readonly TenantDefinition[]): Promise<KeyMove[]> {
    const now = this.now();
    const upsert = this.db.prepare(
      `INSERT INTO tenants (id, limits, scheduling, created_at, updated_at, incarnation) VALUES (@id, @limits, @scheduling, @now, @now, @incarnation)
       ON CONFLICT(id) DO UPDATE SET limits = excluded.limits, scheduling = excluded.scheduling,
         updated_at = CASE WHEN limits = excluded.limits AND scheduling = excluded.scheduling THEN updated_at ELSE excluded.updated_at END`,
    );
    const ownerOf = this.db.prepare("SELECT tenant_id FROM api_keys WHERE hash = ?").pluck();
    const move = this.db.prepare("UPDATE api_keys SET tenant_id = ? WHERE hash = ?");
    return this.db
      .transaction(() => {
        const moves: KeyMove[] = [];
        for (const { tenant, keyHashes } of definitions) {
          upsert.run({ id: tenant.id, limits: JSON.stringify(tenant.limits), scheduling: JSON.stringify(tenant.scheduling), now, incarnation: randomUUID() });
          for (const hash of keyHashes) {
            const owner = ownerOf.get(hash) as string | undefined;
            if (owner === undefined) this.insertKey({ tenantId: tenant.id, hash, prefix: displayPrefixOfHash(hash), name: "tenants file" });
            else if (owner !== tenant.id) {
              move.run(tenant.id, hash);
              moves.push({ hash, fromTenantId: owner, toTenantId: tenant.id });
            }
          }
        }
        return moves;
      })
      .immediate();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  private tenantRow(id: string): TenantRecord | null {
    const row = this.db.prepare("SELECT * FROM tenants WHERE id = ?").get(id) as TenantRow | undefined;
    return row ? toTenantRecord(row) : null;
  }

  private keyRow(tenantId: string, keyId: string): ApiKeyRecord | null {
    const row = this.db.prepare("SELECT * FROM api_keys WHERE id = ? AND tenant_id = ?").get(keyId, tenantId) as KeyRow | undefined;
    return row ? toKeyRecord(row) : null;
  }

  private insertKey(key: NewApiKey): ApiKeyRecord {
    const record: ApiKeyRecord = { ...key, id: generateKeyId(), createdAtSeconds: this.now(), revokedAtSeconds: null };
    this.db
      .prepare("INSERT INTO api_keys (id, tenant_id, hash, prefix, name, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, NULL)")
      .run(record.id, record.tenantId, record.hash, record.prefix, record.name, record.createdAtSeconds);
    return record;
  }
}

// Rows are re-validated on read and laid over the defaults, so a database
// written by an older version (fewer limit fields) loads with the new ones null.
export function toTenantRecord(row: TenantRow): TenantRecord {
  const limits = limitsPatchSchema.safeParse(JSON.parse(row.limits));
  const scheduling = schedulingPatchSchema.safeParse(JSON.parse(row.scheduling));
  if (!limits.success || !scheduling.success) {
    throw new Error(
      `tenant '${row.id}' in the database has invalid ${limits.success ? "scheduling" : "limits"}: ${(limits.error ?? scheduling.error)?.issues[0]?.message}`,
    );
  }
  return {
    tenant: {
      id: row.id,
      ...(row.incarnation ? { incarnation: row.incarnation } : {}),
      limits: { ...DEFAULT_LIMITS, ...limits.data } as TenantLimits,
      scheduling: { ...DEFAULT_SCHEDULING, ...scheduling.data } as TenantScheduling,
    },
    createdAtSeconds: row.created_at,
    updatedAtSeconds: row.updated_at,
  };
}

export function toKeyRecord(row: KeyRow): ApiKeyRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    hash: row.hash,
    prefix: row.prefix,
    name: row.name,
    createdAtSeconds: row.created_at,
    revokedAtSeconds: row.revoked_at,
  };
}
