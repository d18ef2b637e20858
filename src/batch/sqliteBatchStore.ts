// BatchStore in <data-dir>/llamux.db: a batch is one row (its Batch object as
// JSON), its finished lines one row each, keyed by (batch, line). WAL with
// synchronous=FULL: a recorded line survives kill -9.
import type Database from "better-sqlite3";
import { openDatabase } from "../store/sqlite.js";
import type { BatchObject, BatchStore, BatchTotals, LineResult } from "./batchStore.js";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS batches (
  tenant_id TEXT NOT NULL,
  id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  body TEXT NOT NULL,
  final INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE INDEX IF NOT EXISTS batches_order ON batches(tenant_id, seq);
CREATE INDEX IF NOT EXISTS batches_unfinished ON batches(final, seq);
CREATE TABLE IF NOT EXISTS batch_lines (
  batch_id TEXT NOT NULL,
  line INTEGER NOT NULL,
  ok INTEGER NOT NULL,
  record TEXT NOT NULL,
  input_tokens INTEGER NOT NULL,
  cached_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  PRIMARY KEY (batch_id, line)
) STRICT;
`;

const FINAL = new Set(["failed", "completed", "expired", "cancelled"]);

/** Result rows read per query when writing an output file. */
const PAGE = 1000;

export class SqliteBatchStore implements BatchStore {
  private constructor(private readonly db: Database.Database) {}

  static open(dataDir: string): SqliteBatchStore {
    return new SqliteBatchStore(openDatabase(dataDir, SCHEMA).db);
  }

  async create(tenantId: string, batch: BatchObject): Promise<void> {
    this.db
      .prepare("INSERT INTO batches (tenant_id, id, seq, body, final) VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM batches), ?, ?)")
      .run(tenantId, batch.id, JSON.stringify(batch), FINAL.has(batch.status) ? 1 : 0);
  }

  async get(tenantId: string, id: string): Promise<BatchObject | null> {
    const row = this.db.prepare("SELECT body FROM batches WHERE tenant_id = ? AND id = ?").get(tenantId, id) as { body: string } | undefined;
    return row ? (JSON.parse(row.body) as BatchObject) : null;
  }

  async list(tenantId: string, opts: { after: string | null; limit: number }): Promise<{ data: BatchObject[]; hasMore: boolean }> {
    let rows: Array<{ body: string }>;
    if (opts.after !== null) {
      const r = this.db.prepare("SELECT seq FROM batches WHERE tenant_id = ? AND id = ?").get(tenantId, opts.after) as { seq: number } | undefined;
      if (!r) return { data: [], hasMore: false };
      rows = this.db
        .prepare("SELECT body FROM batches WHERE tenant_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?")
        .all(tenantId, r.seq, opts.limit + 1) as Array<{ body: string }>;
    } else {
      rows = this.db.prepare("SELECT body FROM batches WHERE tenant_id = ? ORDER BY seq DESC LIMIT ?").all(tenantId, opts.limit + 1) as Array<{ body: string }>;
    }
    return { data: rows.slice(0, opts.limit).map((r) => JSON.parse(r.body) as BatchObject), hasMore: rows.length > opts.limit };
  }

  async update(tenantId: string, id: string, change: (b: BatchObject) => BatchObject | null): Promise<BatchObject | null> {
    return this.db
      .transaction(() => {
        const row = this.db.prepare("SELECT body FROM batches WHERE tenant_id = ? AND id = ?").get(tenantId, id) as { body: string } | undefined;
        if (!row) return null;
        const current = JSON.parse(row.body) as BatchObject;
        const next = change(current);
        if (!next) return current;
        this.db
          .prepare("UPDATE batches SET body = ?, final = ? WHERE tenant_id = ? AND id = ?")
          .run(JSON.stringify(next), FINAL.has(next.status) ? 1 : 0, tenantId, id);
        return next;
      })
      .immediate();
  }

  async unfinished(): Promise<Array<{ tenantId: string; batch: BatchObject }>> {
    const rows = this.db.prepare("SELECT tenant_id, body FROM batches WHERE final = 0 ORDER BY seq").all() as Array<{ tenant_id: string; body: string }>;
    return rows.map((r) => ({ tenantId: r.tenant_id, batch: JSON.parse(r.body) as BatchObject }));
  }

  async recordLine(batchId: string, r: LineResult): Promise<boolean> {
    const { changes } = this.db
      .prepare("INSERT OR IGNORE INTO batch_lines (batch_id, line, ok, record, input_tokens, cached_tokens, output_tokens) VALUES (?, ?, ?, ?, ?, ?, ?)")
      .run(batchId, r.line, r.ok ? 1 : 0, r.record, r.inputTokens, r.cachedTokens, r.outputTokens);
    return changes === 1;
  }

  async doneLines(batchId: string): Promise<Set<number>> {
    const rows = this.db.prepare("SELECT line FROM batch_lines WHERE batch_id = ?").all(batchId) as Array<{ line: number }>;
    return new Set(rows.map((r) => r.line));
  }

  async totals(batchId: string): Promise<BatchTotals> {
    const r = this.db
      .prepare(
        "SELECT COALESCE(SUM(ok), 0) AS completed, COUNT(*) - COALESCE(SUM(ok), 0) AS failed, COALESCE(SUM(input_tokens), 0) AS i, COALESCE(SUM(cached_tokens), 0) AS c, COALESCE(SUM(output_tokens), 0) AS o FROM batch_lines WHERE batch_id = ?",
      )
      .get(batchId) as { completed: number; failed: number; i: number; c: number; o: number };
    return { completed: r.completed, failed: r.failed, inputTokens: r.i, cachedTokens: r.c, outputTokens: r.o };
  }

  async *results(batchId: string, ok: boolean): AsyncIterable<string> {
    let after = -1;
    for (;;) {
      const rows = this.db
        .prepare("SELECT line, record FROM batch_lines WHERE batch_id = ? AND ok = ? AND line > ? ORDER BY line LIMIT ?")
        .all(batchId, ok ? 1 : 0, after, PAGE) as Array<{ line: number; record: string }>;
      for (const r of rows) yield r.record;
      if (rows.length < PAGE) return;
      after = rows.at(-1)!.line;
    }
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
