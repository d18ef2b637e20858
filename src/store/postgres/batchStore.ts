// BatchStore in PostgreSQL, shared by every replica on the database: the same
// semantics as SqliteBatchStore (a batch is one row, its Batch object as JSON;
// a finished line one row of batch_lines keyed by (batch, line), so a second
// record of a line is ignored and the output, written from the records, has
// every line exactly once whoever recorded it), plus who runs each batch.
//
// Leases: a batch is run by the replica whose id is in its row's `owner`,
// until `lease_expires_at` (the database's clock, so replicas' clocks need not
// agree). The runner renews what it holds every renewMs and releases a batch
// when it ends or stops; a replica killed with -9 stops renewing, and once its
// lease has expired another replica's periodic look for claimable batches
// takes it over and resumes it from the records. Each lease is the batch's
// own (not one per replica, as background responses have): a batch is handed
// over whole, and a claim is a single conditional UPDATE, so two replicas
// claiming at once cannot both win.
//
// A replica cut off from the database for longer than its lease may still be
// serving lines when another takes the batch over: both may compute a line,
// but only the first record of it stands and only that one is counted, and
// the cut-off replica learns at its next renewal that it lost the batch and
// stops. The status column beside the body is what a renewal reads: a cancel
// made through any replica reaches the holder within renewMs.
import { randomUUID } from "node:crypto";
import {
  FINAL_BATCH_STATUSES,
  type BatchObject,
  type BatchStatus,
  type BatchStore,
  type BatchTotals,
  type LineResult,
  type SharedBatches,
} from "../../batch/batchStore.js";
import { num, type PgDatabase } from "./db.js";

export const DEFAULT_BATCH_LEASE_MS = 10_000;
export const DEFAULT_BATCH_RENEW_MS = 2_000;

export interface PgBatchStoreOptions {
  /** This replica's id; a fresh random one by default (a restarted replica is a new holder). */
  replicaId?: string;
  /** A batch lease not renewed for this long has expired: its holder is dead. */
  leaseMs?: number;
  /** How often the runner renews its leases and looks for batches to take over. */
  renewMs?: number;
}

const FINAL_SQL = `(${[...FINAL_BATCH_STATUSES].map((s) => `'${s}'`).join(", ")})`;
/** Result rows read per query when writing an output file. */
const PAGE = 1000;

export class PgBatchStore implements BatchStore, SharedBatches {
  readonly shared: SharedBatches = this;
  readonly replicaId: string;
  readonly leaseMs: number;
  readonly renewMs: number;

  constructor(
    private readonly db: PgDatabase,
    options: PgBatchStoreOptions = {},
  ) {
    this.replicaId = options.replicaId ?? `replica_${randomUUID()}`;
    this.leaseMs = options.leaseMs ?? DEFAULT_BATCH_LEASE_MS;
    this.renewMs = options.renewMs ?? DEFAULT_BATCH_RENEW_MS;
    if (!(this.renewMs > 0 && this.renewMs < this.leaseMs)) throw new Error(`renewMs (${this.renewMs}) must be above 0 and below leaseMs (${this.leaseMs})`);
  }

  async create(tenantId: string, batch: BatchObject): Promise<void> {
    // Held from the start by the replica that created it (its runner starts it next), so no other replica's look for work races it.
    await this.db.execute(
      "INSERT INTO batches (tenant_id, id, body, status, owner, lease_expires_at) VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 millisecond')",
      [tenantId, batch.id, JSON.stringify(batch), batch.status, this.replicaId, this.leaseMs],
    );
  }

  async get(tenantId: string, id: string): Promise<BatchObject | null> {
    const [row] = await this.db.query<{ body: string }>("SELECT body FROM batches WHERE tenant_id = $1 AND id = $2", [tenantId, id]);
    return row ? (JSON.parse(row.body) as BatchObject) : null;
  }

  async list(tenantId: string, opts: { after: string | null; limit: number }): Promise<{ data: BatchObject[]; hasMore: boolean }> {
    let rows: Array<{ body: string }>;
    if (opts.after !== null) {
      const [r] = await this.db.query<{ seq: unknown }>("SELECT seq FROM batches WHERE tenant_id = $1 AND id = $2", [tenantId, opts.after]);
      if (!r) return { data: [], hasMore: false };
      rows = await this.db.query("SELECT body FROM batches WHERE tenant_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3", [
        tenantId,
        num(r.seq),
        opts.limit + 1,
      ]);
    } else {
      rows = await this.db.query("SELECT body FROM batches WHERE tenant_id = $1 ORDER BY seq DESC LIMIT $2", [tenantId, opts.limit + 1]);
    }
    return { data: rows.slice(0, opts.limit).map((r) => JSON.parse(r.body) as BatchObject), hasMore: rows.length > opts.limit };
  }

  async update(tenantId: string, id: string, change: (b: BatchObject) => BatchObject | null): Promise<BatchObject | null> {
    // The row lock serialises every change, from any replica: the runner's counts and a cancel never overwrite each other.
    return this.db.transaction(async (tx) => {
      const [row] = await tx.query<{ body: string }>("SELECT body FROM batches WHERE tenant_id = $1 AND id = $2 FOR UPDATE", [tenantId, id]);
      if (!row) return null;
      const current = JSON.parse(row.body) as BatchObject;
      const next = change(current);
      if (!next) return current;
      await tx.execute("UPDATE batches SET body = $1, status = $2 WHERE tenant_id = $3 AND id = $4", [JSON.stringify(next), next.status, tenantId, id]);
      return next;
    });
  }

  async unfinished(): Promise<Array<{ tenantId: string; batch: BatchObject }>> {
    const rows = await this.db.query<{ tenant_id: string; body: string }>(`SELECT tenant_id, body FROM batches WHERE status NOT IN ${FINAL_SQL} ORDER BY seq`);
    return rows.map((r) => ({ tenantId: r.tenant_id, batch: JSON.parse(r.body) as BatchObject }));
  }

  async recordLine(batchId: string, r: LineResult): Promise<boolean> {
    const changed = await this.db.execute(
      `INSERT INTO batch_lines (batch_id, line, ok, record, input_tokens, cached_tokens, output_tokens) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (batch_id, line) DO NOTHING`,
      [batchId, r.line, r.ok, r.record, r.inputTokens, r.cachedTokens, r.outputTokens],
    );
    return changed === 1;
  }

  async doneLines(batchId: string): Promise<Set<number>> {
    const rows = await this.db.query<{ line: number }>("SELECT line FROM batch_lines WHERE batch_id = $1", [batchId]);
    return new Set(rows.map((r) => num(r.line)));
  }

  async totals(batchId: string): Promise<BatchTotals> {
    const [r] = await this.db.query<{ completed: unknown; failed: unknown; i: unknown; c: unknown; o: unknown }>(
      `SELECT COUNT(*) FILTER (WHERE ok) AS completed, COUNT(*) FILTER (WHERE NOT ok) AS failed,
              COALESCE(SUM(input_tokens), 0) AS i, COALESCE(SUM(cached_tokens), 0) AS c, COALESCE(SUM(output_tokens), 0) AS o
       FROM batch_lines WHERE batch_id = $1`,
      [batchId],
    );
    return { completed: num(r!.completed), failed: num(r!.failed), inputTokens: num(r!.i), cachedTokens: num(r!.c), outputTokens: num(r!.o) };
  }

  async *results(batchId: string, ok: boolean): AsyncIterable<string> {
    let after = -1;
    for (;;) {
      const rows = await this.db.query<{ line: number; record: string }>(
        "SELECT line, record FROM batch_lines WHERE batch_id = $1 AND ok = $2 AND line > $3 ORDER BY line LIMIT $4",
        [batchId, ok, after, PAGE],
      );
      for (const r of rows) yield r.record;
      if (rows.length < PAGE) return;
      after = num(rows.at(-1)!.line);
    }
  }

  async claim(tenantId: string, id: string): Promise<boolean> {
    const changed = await this.db.execute(
      `UPDATE batches SET owner = $1, lease_expires_at = now() + $2 * interval '1 millisecond'
       WHERE tenant_id = $3 AND id = $4 AND status NOT IN ${FINAL_SQL}
         AND (owner IS NULL OR owner = $1 OR lease_expires_at <= now())`,
      [this.replicaId, this.leaseMs, tenantId, id],
    );
    return changed === 1;
  }

  async renew(ids: readonly string[]): Promise<Map<string, BatchStatus>> {
    if (ids.length === 0) return new Map();
    // Still ours even if the lease ran out meanwhile, as long as nobody took it over.
    const rows = await this.db.query<{ id: string; status: BatchStatus }>(
      `UPDATE batches SET lease_expires_at = now() + $2 * interval '1 millisecond'
       WHERE id = ANY($3::text[]) AND owner = $1 RETURNING id, status`,
      [this.replicaId, this.leaseMs, ids],
    );
    return new Map(rows.map((r) => [r.id, r.status]));
  }

  async release(id: string): Promise<void> {
    await this.db.execute("UPDATE batches SET owner = NULL, lease_expires_at = NULL WHERE id = $1 AND owner = $2", [id, this.replicaId]);
  }

  async claimable(): Promise<Array<{ tenantId: string; batch: BatchObject }>> {
    const rows = await this.db.query<{ tenant_id: string; body: string }>(
      `SELECT tenant_id, body FROM batches
       WHERE status NOT IN ${FINAL_SQL} AND (owner IS NULL OR lease_expires_at <= now())
       ORDER BY seq`,
    );
    return rows.map((r) => ({ tenantId: r.tenant_id, batch: JSON.parse(r.body) as BatchObject }));
  }

  /** The pool is the caller's (closed after this store); the runner has released every lease by now. */
  async close(): Promise<void> {}
}
