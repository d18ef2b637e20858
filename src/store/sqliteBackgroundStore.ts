// BackgroundStore in SQLite, on the conversation store's connection (the same
// <data-dir>/llamux.db, WAL + synchronous=FULL): a background response is a row
// of `responses` from the moment it is created, so retrieve, delete, input
// items, expiry and a tenant's deletion work on it unchanged; its status and
// its events hang off that row (ON DELETE CASCADE).
//
// Events are written in batches (the runner flushes every few engine steps
// and at each transition), each batch one transaction: one fsync per batch,
// not per token.
import type Database from "better-sqlite3";
import type { JsonObject, NewStoredResponse } from "./conversationStore.js";
import type { BackgroundFinish, BackgroundStatus, BackgroundStore, InterruptedOutcome, StoredEvent } from "./backgroundStore.js";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS background_responses (
  tenant_id TEXT NOT NULL,
  id TEXT NOT NULL,
  status TEXT NOT NULL,
  next_seq INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, id) REFERENCES responses(tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX IF NOT EXISTS background_responses_unfinished ON background_responses(status) WHERE status IN ('queued', 'in_progress');
CREATE TABLE IF NOT EXISTS response_events (
  tenant_id TEXT NOT NULL,
  response_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  type TEXT NOT NULL,
  data TEXT NOT NULL,
  PRIMARY KEY (tenant_id, response_id, seq),
  FOREIGN KEY (tenant_id, response_id) REFERENCES responses(tenant_id, id) ON DELETE CASCADE
) STRICT;
`;

export class SqliteBackgroundStore implements BackgroundStore {
  /** One process per data directory: nothing to share. */
  readonly shared = null;

  /** `db`: the conversation store's connection (its `responses` table must exist). */
  constructor(private readonly db: Database.Database) {
    db.exec(SCHEMA);
  }

  async create(tenantId: string, response: NewStoredResponse, events: readonly StoredEvent[]): Promise<void> {
    this.db
      .transaction(() => {
        this.db
          .prepare("INSERT INTO responses (tenant_id, id, created_at, body) VALUES (?, ?, ?, ?)")
          .run(tenantId, response.id, response.createdAtSeconds, JSON.stringify(response.body));
        const insert = this.db.prepare("INSERT INTO response_input_items (tenant_id, response_id, position, item_id, item) VALUES (?, ?, ?, ?, ?)");
        for (const [position, item] of response.inputItems.entries()) insert.run(tenantId, response.id, position, item.id, JSON.stringify(item));
        this.db.prepare("INSERT INTO background_responses (tenant_id, id, status, next_seq) VALUES (?, ?, 'queued', 0)").run(tenantId, response.id);
        this.appendEvents(tenantId, response.id, events);
      })
      .immediate();
  }

  async update(tenantId: string, id: string, change: { events: readonly StoredEvent[]; body?: JsonObject; status?: "in_progress" }): Promise<boolean> {
    return this.db
      .transaction(() => {
        if (!this.unfinished(tenantId, id)) return false;
        if (change.body) this.db.prepare("UPDATE responses SET body = ? WHERE tenant_id = ? AND id = ?").run(JSON.stringify(change.body), tenantId, id);
        if (change.status) this.db.prepare("UPDATE background_responses SET status = ? WHERE tenant_id = ? AND id = ?").run(change.status, tenantId, id);
        this.appendEvents(tenantId, id, change.events);
        return true;
      })
      .immediate();
  }

  async finish(f: BackgroundFinish): Promise<boolean> {
    return this.db
      .transaction(() => {
        if (!this.unfinished(f.tenantId, f.id)) return false;
        this.db.prepare("UPDATE responses SET body = ? WHERE tenant_id = ? AND id = ?").run(JSON.stringify(f.body), f.tenantId, f.id);
        this.db.prepare("UPDATE background_responses SET status = ? WHERE tenant_id = ? AND id = ?").run(f.status, f.tenantId, f.id);
        this.appendEvents(f.tenantId, f.id, f.events);
        const insertOutput = this.db.prepare("INSERT INTO response_output_items (tenant_id, response_id, position, item_id, item) VALUES (?, ?, ?, ?, ?)");
        for (const [position, item] of f.outputItems.entries()) insertOutput.run(f.tenantId, f.id, position, item.id, JSON.stringify(item));
        // As commitResponse: a conversation deleted while the response ran gets nothing.
        if (f.conversation && this.db.prepare("SELECT 1 FROM conversations WHERE tenant_id = ? AND id = ?").get(f.tenantId, f.conversation.id) !== undefined) {
          const insert = this.db.prepare("INSERT INTO conversation_items (tenant_id, conversation_id, item_id, item) VALUES (?, ?, ?, ?)");
          for (const item of f.conversation.items) insert.run(f.tenantId, f.conversation.id, item.id, JSON.stringify(item));
        }
        return true;
      })
      .immediate();
  }

  async status(tenantId: string, id: string): Promise<BackgroundStatus | null> {
    return (
      (this.db.prepare("SELECT status FROM background_responses WHERE tenant_id = ? AND id = ?").pluck().get(tenantId, id) as BackgroundStatus | undefined) ??
      null
    );
  }

  async events(tenantId: string, id: string, after: number): Promise<StoredEvent[]> {
    const rows = this.db
      .prepare("SELECT seq, type, data FROM response_events WHERE tenant_id = ? AND response_id = ? AND seq > ? ORDER BY seq")
      .all(tenantId, id, after) as { seq: number; type: string; data: string }[];
    return rows.map((r) => ({ sequenceNumber: r.seq, type: r.type, data: JSON.parse(r.data) as JsonObject }));
  }

  async failUnfinished(outcome: InterruptedOutcome): Promise<number> {
    return this.db
      .transaction(() => {
        const rows = this.db
          .prepare(
            "SELECT b.tenant_id, b.id, b.status, b.next_seq, r.body FROM background_responses b JOIN responses r ON r.tenant_id = b.tenant_id AND r.id = b.id WHERE b.status IN ('queued', 'in_progress')",
          )
          .all() as { tenant_id: string; id: string; status: BackgroundStatus; next_seq: number; body: string }[];
        for (const row of rows) {
          const { body, event } = outcome({ body: JSON.parse(row.body) as JsonObject, status: row.status, nextSequenceNumber: row.next_seq });
          this.db.prepare("UPDATE responses SET body = ? WHERE tenant_id = ? AND id = ?").run(JSON.stringify(body), row.tenant_id, row.id);
          this.db.prepare("UPDATE background_responses SET status = 'failed' WHERE tenant_id = ? AND id = ?").run(row.tenant_id, row.id);
          this.appendEvents(row.tenant_id, row.id, [event]);
        }
        return rows.length;
      })
      .immediate();
  }

  /** The connection is the conversation store's, closed with it. */
  async close(): Promise<void> {}

  private unfinished(tenantId: string, id: string): boolean {
    const status = this.db.prepare("SELECT status FROM background_responses WHERE tenant_id = ? AND id = ?").pluck().get(tenantId, id) as string | undefined;
    return status === "queued" || status === "in_progress";
  }

  /** Sequence numbers are the runner's; next_seq remembers where a restart continues. */
  private appendEvents(tenantId: string, id: string, events: readonly StoredEvent[]): void {
    if (events.length === 0) return;
    const insert = this.db.prepare("INSERT INTO response_events (tenant_id, response_id, seq, type, data) VALUES (?, ?, ?, ?, ?)");
    for (const e of events) insert.run(tenantId, id, e.sequenceNumber, e.type, JSON.stringify(e.data));
    this.db.prepare("UPDATE background_responses SET next_seq = ? WHERE tenant_id = ? AND id = ?").run(events.at(-1)!.sequenceNumber + 1, tenantId, id);
  }
}
