// Keeps a replica's TenantRegistry in step with a store other replicas write
// to: every intervalMs it reads the store's change counter (one integer, one
// cheap query) and, when the number moved, reloads the registry, which emits
// its usual TenantChange events (quota ledger, engine policies and KV
// retention, stored data of deleted tenants all follow). A revoked key is so
// refused by every replica within one interval plus one reload.
//
// While the database is away the watcher keeps polling and logs the outage
// once; requests keep being authenticated from the registry as it was.
import type { TenantChangeFeed } from "../../tenants/store.js";

export interface ChangeWatcherOptions {
  feed: TenantChangeFeed;
  /** Reloads from the store (TenantRegistry.refresh). */
  refresh: () => Promise<unknown>;
  intervalMs: number;
  /** The version the registry was loaded at (read before loading it, so nothing in between is missed). */
  startVersion: string;
  onError: (err: unknown) => void;
  onRecovered: () => void;
}

export interface ChangeWatcher {
  /** Polls once now (tests, and after an outage). */
  poll(): Promise<void>;
  stop(): Promise<void>;
}

export function watchTenantChanges(options: ChangeWatcherOptions): ChangeWatcher {
  let seen = options.startVersion;
  let failing = false;
  let stopped = false;
  let running: Promise<void> | null = null;
  const pollOnce = async () => {
    try {
      const version = await options.feed.changeVersion();
      // Read before the reload: a write landing during it moves the counter again and is caught next time.
      if (version !== seen) {
        await options.refresh();
        seen = version;
      }
      if (failing) {
        failing = false;
        options.onRecovered();
      }
    } catch (err) {
      if (!failing) {
        failing = true;
        options.onError(err);
      }
    }
  };
  const poll = () => (running ??= pollOnce().finally(() => (running = null)));
  const timer = setInterval(() => {
    if (!stopped && !running) void poll();
  }, options.intervalMs);
  timer.unref();
  return {
    poll,
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
