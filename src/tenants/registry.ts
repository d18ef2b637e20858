// TenantRegistry: the in-memory view of the tenant store that every request
// reads (key hash → tenant, id → tenant) and the only writer to the store.
// Invariant: each write reaches the store first and the maps second, both
// before the write's promise resolves, so an acknowledged revocation or limit
// change applies to the very next request, with no restart.
import { generateApiKey, displayPrefix, hashApiKey, keyHashesEqual } from "./keys.js";
import { mergeTenant, type TenantDefinition, type TenantPatch } from "./config.js";
import type { ApiKeyRecord, KeyMove, TenantRecord, TenantStore } from "./store.js";
import type { Tenant } from "./types.js";

export type TenantChange =
  | { type: "upserted"; tenant: Tenant; fromStore?: true }
  /**
   * fromStore: learned by refresh(), so another process sharing the store made
   * the change (and did what follows a deletion in the store itself).
   */
  | { type: "deleted"; tenantId: string; fromStore?: true };
export type TenantChangeListener = (change: TenantChange) => void;

/** A key as created or rotated: the plaintext is in `key`, here and nowhere else, ever. */
export interface IssuedKey {
  record: ApiKeyRecord;
  key: string;
}

export class TenantRegistry {
  private readonly tenants = new Map<string, TenantRecord>();
  /** Active (unrevoked) key hash → its record. */
  private readonly keys = new Map<string, ApiKeyRecord>();
  private readonly listeners = new Set<TenantChangeListener>();
  // Admin writes run one at a time: a PATCH merges onto the in-memory tenant,
  // which must already reflect every earlier write (no lost updates).
  private writes: Promise<unknown> = Promise.resolve();

  private constructor(private readonly store: TenantStore) {}

  /** Loads every tenant and active key from the store. */
  static async load(store: TenantStore): Promise<TenantRegistry> {
    const registry = new TenantRegistry(store);
    await registry.reload();
    return registry;
  }

  /**
   * Applies a tenants file to the store (see TenantStore.importDefinitions) and
   * reloads the maps. Call before serving; returns the keys that changed tenant.
   */
  async importDefinitions(definitions: readonly TenantDefinition[]): Promise<KeyMove[]> {
    return this.serial(async () => {
      const moves = await this.store.importDefinitions(definitions);
      await this.reload();
      for (const { tenant } of definitions) this.emit({ type: "upserted", tenant: this.tenants.get(tenant.id)!.tenant });
      return moves;
    });
  }

  /** The tenant owning `presentedKey`, or null when the key is unknown or revoked. */
  authenticate(presentedKey: string): Tenant | null {
    return this.authenticateKey(presentedKey)?.tenant ?? null;
  }

  /** As authenticate, with the id of the key that matched (usage records name it). */
  authenticateKey(presentedKey: string): { tenant: Tenant; keyId: string } | null {
    const hash = hashApiKey(presentedKey);
    // The map is keyed by the SHA-256 of a key, which a caller cannot steer
    // towards a stored one, so the lookup's timing reveals nothing useful; the
    // constant-time compare is the check that decides.
    const key = this.keys.get(hash);
    if (!key || !keyHashesEqual(hash, key.hash)) return null;
    const tenant = this.tenants.get(key.tenantId)?.tenant;
    return tenant ? { tenant, keyId: key.id } : null;
  }

  get(id: string): TenantRecord | null {
    return this.tenants.get(id) ?? null;
  }

  list(): TenantRecord[] {
    return [...this.tenants.values()];
  }

  get size(): number {
    return this.tenants.size;
  }

  /** Called after every tenant create, update, delete or file import (not on key changes). Returns an unsubscribe function. */
  onChange(listener: TenantChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Null when the id is taken. */
  async createTenant(tenant: Tenant): Promise<TenantRecord | null> {
    return this.serial(async () => {
      const record = await this.store.createTenant(tenant);
      if (record) this.putTenant(record);
      return record;
    });
  }

  /** Merges a partial update onto the tenant (see mergeTenant); null when there is no such tenant. */
  async updateTenant(id: string, patch: TenantPatch, check: (merged: Tenant) => void = () => {}): Promise<TenantRecord | null> {
    return this.serial(async () => {
      const current = this.tenants.get(id);
      if (!current) return null;
      const merged = mergeTenant(current.tenant, patch);
      check(merged);
      const record = await this.store.updateTenant(merged);
      if (record) this.putTenant(record);
      return record;
    });
  }

  /** Removes the tenant; its keys stop working at once. False when there was none. */
  async deleteTenant(id: string): Promise<boolean> {
    return this.serial(async () => {
      const deleted = await this.store.deleteTenant(id);
      if (deleted || this.tenants.has(id)) {
        this.tenants.delete(id);
        for (const [hash, key] of this.keys) if (key.tenantId === id) this.keys.delete(hash);
        this.emit({ type: "deleted", tenantId: id });
      }
      return deleted;
    });
  }

  /** Keys of a tenant, revoked ones included; null when there is no such tenant. */
  async listKeys(tenantId: string): Promise<ApiKeyRecord[] | null> {
    if (!this.tenants.has(tenantId)) return null;
    return this.store.listKeys(tenantId);
  }

  /** A new key for the tenant; null when there is no such tenant. */
  async createKey(tenantId: string, name: string | null): Promise<IssuedKey | null> {
    return this.serial(async () => {
      const key = generateApiKey();
      const record = await this.store.addKey({ tenantId, hash: hashApiKey(key), prefix: displayPrefix(key), name });
      if (!record) return null;
      this.keys.set(record.hash, record);
      return { record, key };
    });
  }

  /** Revokes the key and issues its replacement in one step; null when there is no such active key. */
  async rotateKey(tenantId: string, keyId: string): Promise<IssuedKey | null> {
    return this.serial(async () => {
      const key = generateApiKey();
      const result = await this.store.rotateKey(tenantId, keyId, { hash: hashApiKey(key), prefix: displayPrefix(key) });
      if (!result) return null;
      this.keys.delete(result.revoked.hash);
      this.keys.set(result.added.hash, result.added);
      return { record: result.added, key };
    });
  }

  /** Revokes the key (idempotent); null when the tenant has no such key. */
  async revokeKey(tenantId: string, keyId: string): Promise<ApiKeyRecord | null> {
    return this.serial(async () => {
      const record = await this.store.revokeKey(tenantId, keyId);
      if (record) this.keys.delete(record.hash);
      return record;
    });
  }

  /**
   * Reloads tenants and keys from the store and emits a change for each
   * tenant that appeared, changed or went away since the maps were last
   * filled: how a replica applies writes another replica made to a shared
   * store (its own writes are in the maps already, so they emit nothing
   * twice). A tenant deleted and created again under its id in between is
   * told as deleted, then upserted. Runs in line with this registry's writes.
   */
  async refresh(): Promise<TenantChange[]> {
    return this.serial(async () => {
      const before = new Map(this.tenants);
      await this.reload();
      const changes: TenantChange[] = [];
      for (const [id, old] of before) {
        const now = this.tenants.get(id);
        if (!now || now.tenant.incarnation !== old.tenant.incarnation) changes.push({ type: "deleted", tenantId: id, fromStore: true });
      }
      for (const [id, now] of this.tenants) {
        const old = before.get(id);
        if (!old || old.tenant.incarnation !== now.tenant.incarnation || JSON.stringify(old.tenant) !== JSON.stringify(now.tenant)) {
          changes.push({ type: "upserted", tenant: now.tenant, fromStore: true });
        }
      }
      for (const change of changes) this.emit(change);
      return changes;
    });
  }

  private async reload(): Promise<void> {
    // Both lists are read before either map changes: a store that fails midway leaves the maps as they were.
    const [tenants, keys] = [await this.store.listTenants(), await this.store.listKeys()];
    this.tenants.clear();
    this.keys.clear();
    for (const record of tenants) this.tenants.set(record.tenant.id, freezeRecord(record));
    for (const key of keys) if (key.revokedAtSeconds === null) this.keys.set(key.hash, key);
  }

  private putTenant(record: TenantRecord): void {
    const frozen = freezeRecord(record);
    this.tenants.set(frozen.tenant.id, frozen);
    this.emit({ type: "upserted", tenant: frozen.tenant });
  }

  private emit(change: TenantChange): void {
    for (const listener of this.listeners) listener(change);
  }

  private serial<T>(write: () => Promise<T>): Promise<T> {
    const result = this.writes.then(write);
    this.writes = result.catch(() => undefined);
    return result;
  }
}

// Tenants are shared by reference with the routes, the quota ledger and the
// scheduler; freezing them makes "an update replaces the object" the only way
// a tenant changes.
function freezeRecord(record: TenantRecord): TenantRecord {
  const { tenant } = record;
  const limits = Object.freeze({ ...tenant.limits, allowedModels: tenant.limits.allowedModels ? Object.freeze([...tenant.limits.allowedModels]) : null });
  const frozenTenant = Object.freeze({
    id: tenant.id,
    ...(tenant.incarnation ? { incarnation: tenant.incarnation } : {}),
    limits: limits as Tenant["limits"],
    scheduling: Object.freeze({ ...tenant.scheduling }),
  });
  return Object.freeze({ ...record, tenant: frozenTenant });
}
