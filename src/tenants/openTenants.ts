// Multi-tenant mode's start: the tenant store (SQLite under --data-dir, or the
// shared PostgreSQL), the tenants file applied to it, the registry loaded, and
// on a shared database the watcher that follows other replicas' changes.
import type { ServeConfig, ServeSecrets } from "../config.js";
import type { Logger } from "../logger.js";
import { redactUrl, watchTenantChanges, type ChangeWatcher, type PostgresState } from "../store/postgres/index.js";
import { loadTenantsFile } from "./config.js";
import { displayPrefixOfHash } from "./keys.js";
import { TenantRegistry } from "./registry.js";
import { SqliteTenantStore, type TenantStore } from "./store.js";

/** How often a replica on a shared database checks whether another one changed tenants or keys. */
export const TENANT_POLL_INTERVAL_MS = 250;

export interface MultiTenant {
  store: TenantStore;
  /** The SQLite store (whose db handle the usage store shares); null with PostgreSQL. */
  sqlite: SqliteTenantStore | null;
  tenants: TenantRegistry;
  /** Follows other replicas' writes (PostgreSQL only). */
  watcher: ChangeWatcher | null;
}

/** Opens the store, applies the tenants file to it and loads the registry; null in single-tenant mode. */
export async function openTenants(config: ServeConfig, secrets: ServeSecrets, log: Logger, pg: PostgresState | null): Promise<MultiTenant | null> {
  if (!isMultiTenant(config, secrets)) {
    log.warn("no --tenants file and no LLAMUX_ADMIN_KEY: llamux runs WITHOUT AUTHENTICATION; anyone who can reach it may use it");
    return null;
  }
  // Validate the file before anything is opened: a bad file costs nothing.
  const definitions = config.tenants ? loadTenantsFile(config.tenants) : [];
  const sqlite = pg ? null : SqliteTenantStore.open(config.dataDir);
  const store: TenantStore = pg?.tenants ?? sqlite!;
  try {
    // Read before the registry loads: a change another replica makes in between moves it again.
    const startVersion = pg ? await pg.tenants.changeVersion() : null;
    const tenants = await TenantRegistry.load(store);
    for (const m of await tenants.importDefinitions(definitions)) {
      log.warn({ from: m.fromTenantId, to: m.toTenantId, key: displayPrefixOfHash(m.hash) }, "tenants file moves a key to another tenant");
    }
    const watcher =
      pg && startVersion !== null
        ? watchTenantChanges({
            feed: pg.tenants,
            refresh: () => tenants.refresh(),
            intervalMs: TENANT_POLL_INTERVAL_MS,
            startVersion,
            onError: (err) =>
              log.error({ err: (err as Error).message }, "cannot read tenant changes from PostgreSQL: keys and limits stay as last loaded until it returns"),
            onRecovered: () => log.info("PostgreSQL reachable again: following tenant changes"),
          })
        : null;
    const db = pg ? redactUrl(config.databaseUrl!) : sqlite!.file;
    log.info({ tenants: tenants.size, fromFile: definitions.length, db, admin: secrets.adminKey !== null }, "multi-tenant mode: API keys required");
    return { store, sqlite, tenants, watcher };
  } catch (err) {
    await sqlite?.close();
    throw err;
  }
}

/** Multi-tenant mode (API keys required) is on when a tenants file or an admin key is given. */
export function isMultiTenant(config: ServeConfig, secrets: ServeSecrets): boolean {
  return config.tenants !== null || secrets.adminKey !== null;
}
