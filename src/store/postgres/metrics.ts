// /metrics for the shared database: whether this replica reaches it, its
// connection pool, and usage waiting in memory for it (see PgUsageStore).
// Read at scrape time from the objects themselves: nothing on the request path.
import { Counter, Gauge, type Registry } from "prom-client";
import type { PgDatabase } from "./db.js";
import type { PgUsageStore } from "./usageStore.js";

export function bindDatabaseMetrics(registry: Registry, db: PgDatabase, usage: PgUsageStore): void {
  const registers = [registry];
  new Gauge({
    name: "llamux_database_up",
    help: "1 when this replica's last statement reached PostgreSQL, 0 while it cannot (store-needing requests get 503 database_unavailable)",
    registers,
    collect() {
      this.set(db.available ? 1 : 0);
    },
  });
  new Gauge({
    name: "llamux_database_connections",
    help: "PostgreSQL pool: connections open (total), idle, and requests waiting for one (waiting)",
    labelNames: ["state"],
    registers,
    collect() {
      this.set({ state: "total" }, db.pool.totalCount);
      this.set({ state: "idle" }, db.pool.idleCount);
      this.set({ state: "waiting" }, db.pool.waitingCount);
    },
  });
  new Gauge({
    name: "llamux_usage_buffered_rows",
    help: "Token usage rows (tenant, day) kept in memory while PostgreSQL is unreachable, written when it returns",
    registers,
    collect() {
      this.set(usage.pendingRows);
    },
  });
  new Counter({
    name: "llamux_usage_lost_tokens_total",
    help: "Tokens not recorded because the usage buffer was full during a database outage",
    registers,
    collect() {
      this.reset();
      this.inc(usage.lostTokens);
    },
  });
}
