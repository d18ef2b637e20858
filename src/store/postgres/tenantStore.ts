// TenantStore in PostgreSQL, shared by every replica. Each write commits
// together with a bump of tenant_changes.version, so another replica that sees
// the number move reloads its registry (see TenantRegistry.refresh and
// watchTenantChanges) and applies a revoked key or a new limit within one
// poll interval. Rows are the SQLite store's, read through the same
// validation (toTenantRecord), so both stores give identical records.
import { randomUUID } from "node:crypto";
import type { TenantDefinition } from "../../tenants/config.js";
import { displayPrefixOfHash, generateKeyId } from "../../tenants/keys.js";
import {
  toKeyRecord,
  toTenantRecord,
  type ApiKeyRecord,
  type KeyMove,
  type KeyRow,
  type NewApiKey,
  type TenantChangeFeed,
  type TenantRecord,
  type TenantRow,
  type TenantStore,
} from "../../tenants/store.js";
import type { Tenant } from "../../tenants/types.js";
import { num, type PgDatabase, type Queryable, type Row } from "./db.js";

/** Serialises imports of the tenants file by replicas starting together (an int8 key, distinct from the migrations'). */
const IMPORT_LOCK_KEY = "30518463188793345";

export interface PgTenantStoreOptions {
  /** Clock, in whole seconds since the epoch (tests pin it). */
  nowSeconds?: () => number;
}

const BUMP = "UPDATE tenant_changes SET version = version + 1 WHERE id = 1";

export class PgTenantStore implements TenantStore, TenantChangeFeed {
  private readonly now: () => number;

  /** `db` is migrated already and owned by the caller, who closes it after this store. */
  constructor(
    private readonly db: PgDatabase,
    options: PgTenantStoreOptions = {},
  ) {
    this.now = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
  }

  async changeVersion(): Promise<string> {
    const [row] = await this.db.query<{ version: string }>("SELECT version::text AS version FROM tenant_changes WHERE id = 1");
    return row?.version ?? "0";
  }

  async listTenants(): Promise<TenantRecord[]> {
    return (await this.db.query("SELECT * FROM tenants ORDER BY created_at, id")).map(tenantRecord);
  }

  async getTenant(id: string): Promise<TenantRecord | null> {
    return tenantRow(this.db, id);
  }

  async createTenant(tenant: Tenant): Promise<TenantRecord | null> {
    const now = this.now();
    return this.db.transaction(async (tx) => {
      const [row] = await tx.query(
        `INSERT INTO tenants (id, limits, scheduling, created_at, updated_at, incarnation) VALUES ($1, $2, $3, $4, $4, $5)
         ON CONFLICT (id) DO NOTHING RETURNING *`,
        [tenant.id, JSON.stringify(tenant.limits), JSON.stringify(tenant.scheduling), now, randomUUID()],
      );
      if (!row) return null;
      await tx.execute(BUMP);
      return tenantRecord(row);
    });
  }

  async updateTenant(tenant: Tenant): Promise<TenantRecord | null> {
    return this.db.transaction(async (tx) => {
      const [row] = await tx.query("UPDATE tenants SET limits = $1, scheduling = $2, updated_at = $3 WHERE id = $4 RETURNING *", [
        JSON.stringify(tenant.limits),
        JSON.stringify(tenant.scheduling),
        this.now(),
        tenant.id,
      ]);
      if (!row) return null;
      await tx.execute(BUMP);
      return tenantRecord(row);
    });
  }

  async deleteTenant(id: string): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const deleted = (await tx.execute("DELETE FROM tenants WHERE id = $1", [id])) === 1;
      if (deleted) await tx.execute(BUMP);
      return deleted;
    });
  }

  async listKeys(tenantId?: string): Promise<ApiKeyRecord[]> {
    const rows =
      tenantId === undefined
        ? await this.db.query("SELECT * FROM api_keys ORDER BY created_at, seq")
        : await this.db.query("SELECT * FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, seq", [tenantId]);
    return rows.map(keyRecord);
  }

  async addKey(key: NewApiKey): Promise<ApiKeyRecord | null> {
    return this.db.transaction(async (tx) => {
      // FOR SHARE: a concurrent delete of the tenant waits, so the key never outlives it.
      if ((await tx.query("SELECT 1 FROM tenants WHERE id = $1 FOR SHARE", [key.tenantId])).length === 0) return null;
      const record = await this.insertKey(tx, key);
      await tx.execute(BUMP);
      return record;
    });
  }

  async revokeKey(tenantId: string, keyId: string): Promise<ApiKeyRecord | null> {
    return this.db.transaction(async (tx) => {
      const changed = await tx.execute("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND tenant_id = $3 AND revoked_at IS NULL", [
        this.now(),
        keyId,
        tenantId,
      ]);
      if (changed > 0) await tx.execute(BUMP);
      return keyRow(tx, tenantId, keyId);
    });
  }

  async rotateKey(
    tenantId: string,
    keyId: string,
    replacement: Pick<NewApiKey, "hash" | "prefix">,
  ): Promise<{ revoked: ApiKeyRecord; added: ApiKeyRecord } | null> {
    return this.db.transaction(async (tx) => {
      const [oldRow] = await tx.query("SELECT * FROM api_keys WHERE id = $1 AND tenant_id = $2 FOR UPDATE", [keyId, tenantId]);
      const old = oldRow ? keyRecord(oldRow) : null;
      if (!old || old.revokedAtSeconds !== null) return null;
      await tx.execute("UPDATE api_keys SET revoked_at = $1 WHERE id = $2", [this.now(), keyId]);
      const added = await this.insertKey(tx, { tenantId, hash: replacement.hash, prefix: replacement.prefix, name: old.name });
      await tx.execute(BUMP);
      return { revoked: (await keyRow(tx, tenantId, keyId))!, added };
    });
  }

  async importDefinitions(definitions: readonly TenantDefinition[]): Promise<KeyMove[]> {
    const now = this.now();
    return this.db.transaction(async (tx) => {
      // Replicas starting together each import the same file: one at a time.
      await tx.query("SELECT pg_advisory_xact_lock($1::bigint)", [IMPORT_LOCK_KEY]);
      const moves: KeyMove[] = [];
      let changed = 0;
      for (const { tenant, keyHashes } of definitions) {
        changed += await tx.execute(
          `INSERT INTO tenants AS t (id, limits, scheduling, created_at, updated_at, incarnation) VALUES ($1, $2, $3, $4, $4, $5)
           ON CONFLICT (id) DO UPDATE SET limits = excluded.limits, scheduling = excluded.scheduling, updated_at = excluded.updated_at
           WHERE t.limits IS DISTINCT FROM excluded.limits OR t.scheduling IS DISTINCT FROM excluded.scheduling`,
          [tenant.id, JSON.stringify(tenant.limits), JSON.stringify(tenant.scheduling), now, randomUUID()],
        );
        for (const hash of keyHashes) {
          const [owner] = await tx.query<{ tenant_id: string }>("SELECT tenant_id FROM api_keys WHERE hash = $1", [hash]);
          if (!owner) {
            await this.insertKey(tx, { tenantId: tenant.id, hash, prefix: displayPrefixOfHash(hash), name: "tenants file" });
            changed++;
          } else if (owner.tenant_id !== tenant.id) {
            await tx.execute("UPDATE api_keys SET tenant_id = $1 WHERE hash = $2", [tenant.id, hash]);
            moves.push({ hash, fromTenantId: owner.tenant_id, toTenantId: tenant.id });
            changed++;
          }
        }
      }
      if (changed > 0) await tx.execute(BUMP);
      return moves;
    });
  }

  /** The database is the caller's (it is shared with the other stores): nothing to release here. */
  async close(): Promise<void> {}

  private async insertKey(tx: Queryable, key: NewApiKey): Promise<ApiKeyRecord> {
    const record: ApiKeyRecord = { ...key, id: generateKeyId(), createdAtSeconds: this.now(), revokedAtSeconds: null };
    await tx.execute("INSERT INTO api_keys (id, tenant_id, hash, prefix, name, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, NULL)", [
      record.id,
      record.tenantId,
      record.hash,
      record.prefix,
      record.name,
      record.createdAtSeconds,
    ]);
    return record;
  }
}

async function tenantRow(q: Queryable, id: string): Promise<TenantRecord | null> {
  const [row] = await q.query("SELECT * FROM tenants WHERE id = $1", [id]);
  return row ? tenantRecord(row) : null;
}

async function keyRow(q: Queryable, tenantId: string, keyId: string): Promise<ApiKeyRecord | null> {
  const [row] = await q.query("SELECT * FROM api_keys WHERE id = $1 AND tenant_id = $2", [keyId, tenantId]);
  return row ? keyRecord(row) : null;
}

// BIGINT columns arrive as strings: numbers first, then the SQLite store's converters.
function tenantRecord(row: Row): TenantRecord {
  return toTenantRecord({ ...(row as unknown as TenantRow), created_at: num(row.created_at), updated_at: num(row.updated_at) });
}

function keyRecord(row: Row): ApiKeyRecord {
  return toKeyRecord({ ...(row as unknown as KeyRow), created_at: num(row.created_at), revoked_at: row.revoked_at === null ? null : num(row.revoked_at) });
}
