// ConversationStore in SQLite: tables in <data-dir>/llamux.db (the file the
// tenant store uses), through a connection of its own so it works in
// single-tenant mode too. journal_mode=WAL + synchronous=FULL: a transaction
// that has returned is on disk, so a response the client was sent survives
// kill -9. better-sqlite3 is synchronous; each call is one short statement or
// transaction, and the purge deletes in batches, yielding between them.
//
// Every primary key starts with tenant_id and every statement binds it, so a
// tenant can only ever reach its own rows.
import type Database from "better-sqlite3";
import { openDatabase } from "./sqlite.js";
import {
  DEFAULT_PURGE_INTERVAL_MS,
  PURGE_BATCH_ROWS,
  type ConversationStoreOptions,
  type ConversationRecord,
  type ConversationStore,
  type ItemPage,
  type JsonObject,
  type ListOptions,
  type Item,
  type ResponseCommit,
  type StoredResponse,
} from "./conversationStore.js";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS responses (
  tenant_id TEXT NOT NULL,
  id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE INDEX IF NOT EXISTS responses_created_at ON responses(created_at);
CREATE TABLE IF NOT EXISTS response_input_items (
  tenant_id TEXT NOT NULL,
  response_id TEXT NOT NULL,
  position INTEGER NOT NULL,
  item_id TEXT NOT NULL,
  item TEXT NOT NULL,
  PRIMARY KEY (tenant_id, response_id, position),
  FOREIGN KEY (tenant_id, response_id) REFERENCES responses(tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE TABLE IF NOT EXISTS conversations (
  tenant_id TEXT NOT NULL,
  id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  metadata TEXT NOT NULL,
  PRIMARY KEY (tenant_id, id)
) STRICT;
CREATE TABLE IF NOT EXISTS conversation_items (
  seq INTEGER PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  conversation_id TEXT NOT NULL,
  item_id TEXT NOT NULL,
  item TEXT NOT NULL,
  UNIQUE (tenant_id, conversation_id, item_id),
  FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations(tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX IF NOT EXISTS conversation_items_order ON conversation_items(tenant_id, conversation_id, seq);
-- A response's output items, by id: what an item_reference names (the body keeps them too, as sent).
CREATE TABLE IF NOT EXISTS response_output_items (
  tenant_id TEXT NOT NULL,
  response_id TEXT NOT NULL,
  position INTEGER NOT NULL,
  item_id TEXT NOT NULL,
  item TEXT NOT NULL,
  PRIMARY KEY (tenant_id, response_id, position),
  FOREIGN KEY (tenant_id, response_id) REFERENCES responses(tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX IF NOT EXISTS response_output_items_by_id ON response_output_items(tenant_id, item_id);
CREATE INDEX IF NOT EXISTS response_input_items_by_id ON response_input_items(tenant_id, item_id);
CREATE INDEX IF NOT EXISTS conversation_items_by_id ON conversation_items(tenant_id, item_id);
CREATE TABLE IF NOT EXISTS conversation_store_migrations (name TEXT PRIMARY KEY) STRICT;
`;

/**
 * Responses stored before response_output_items existed get their rows once,
 * from their bodies, so that their output items can be referenced too.
 */
const BACKFILL_OUTPUT_ITEMS = "backfill_response_output_items";

export type SqliteConversationStoreOptions = ConversationStoreOptions;

interface ConversationRow {
  id: string;
  created_at: number;
  metadata: string;
}

export class SqliteConversationStore implements ConversationStore {
  readonly db: Database.Database;
  readonly file: string;
  private readonly ttlSeconds: number;
  private readonly now: () => number;
  private readonly onPurge: NonNullable<SqliteConversationStoreOptions["onPurge"]>;
  private readonly timer: NodeJS.Timeout | null;
  private purging: Promise<number> | null = null;

  private constructor(db: Database.Database, file: string, options: SqliteConversationStoreOptions) {
    this.db = db;
    this.file = file;
    this.ttlSeconds = options.responseTtlSeconds;
    this.now = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
    this.onPurge = options.onPurge ?? (() => undefined);
    if (this.ttlSeconds > 0) {
      this.timer = setInterval(() => void this.purgeInBackground(), options.purgeIntervalMs ?? DEFAULT_PURGE_INTERVAL_MS);
      this.timer.unref();
      void this.purgeInBackground();
    } else {
      this.timer = null;
    }
  }

  /** Opens (creating the directory and tables when needed) `<dataDir>/llamux.db`. */
  static open(dataDir: string, options: SqliteConversationStoreOptions): SqliteConversationStore {
    if (!Number.isInteger(options.responseTtlSeconds) || options.responseTtlSeconds < 0) {
      throw new Error(`responseTtlSeconds must be a whole number >= 0, not ${options.responseTtlSeconds}`);
    }
    const { db, file } = openDatabase(dataDir, SCHEMA);
    db.transaction(() => {
      if (db.prepare("SELECT 1 FROM conversation_store_migrations WHERE name = ?").get(BACKFILL_OUTPUT_ITEMS) !== undefined) return;
      db.exec(`INSERT INTO response_output_items (tenant_id, response_id, position, item_id, item)
        SELECT r.tenant_id, r.id, o.key, json_extract(o.value, '$.id'), o.value FROM responses r, json_each(r.body, '$.output') o`);
      db.prepare("INSERT INTO conversation_store_migrations (name) VALUES (?)").run(BACKFILL_OUTPUT_ITEMS);
    }).immediate();
    return new SqliteConversationStore(db, file, options);
  }

  /** Responses created at or before this second are expired. */
  private expiredAtOrBefore(): number {
    return this.ttlSeconds === 0 ? Number.MIN_SAFE_INTEGER : this.now() - this.ttlSeconds;
  }

  async commitResponse(commit: ResponseCommit): Promise<void> {
    const { tenantId, response, conversation } = commit;
    this.db
      .transaction(() => {
        if (response) {
          this.db
            .prepare("INSERT INTO responses (tenant_id, id, created_at, body) VALUES (?, ?, ?, ?)")
            .run(tenantId, response.id, response.createdAtSeconds, JSON.stringify(response.body));
          const insert = this.db.prepare("INSERT INTO response_input_items (tenant_id, response_id, position, item_id, item) VALUES (?, ?, ?, ?, ?)");
          for (const [position, item] of response.inputItems.entries()) insert.run(tenantId, response.id, position, item.id, JSON.stringify(item));
          const insertOutput = this.db.prepare("INSERT INTO response_output_items (tenant_id, response_id, position, item_id, item) VALUES (?, ?, ?, ?, ?)");
          for (const [position, item] of outputItemsOf(response.body).entries())
            insertOutput.run(tenantId, response.id, position, item.id, JSON.stringify(item));
        }
        if (conversation && this.conversationRow(tenantId, conversation.id)) this.appendItems(tenantId, conversation.id, conversation.items);
      })
      .immediate();
  }

  async getResponse(tenantId: string, id: string): Promise<StoredResponse | null> {
    const row = this.db
      .prepare("SELECT id, created_at, body FROM responses WHERE tenant_id = ? AND id = ? AND created_at > ?")
      .get(tenantId, id, this.expiredAtOrBefore()) as { id: string; created_at: number; body: string } | undefined;
    return row ? { id: row.id, createdAtSeconds: row.created_at, body: JSON.parse(row.body) as JsonObject } : null;
  }

  async getResponseInputItems(tenantId: string, id: string): Promise<Item[] | null> {
    if (!this.responseVisible(tenantId, id)) return null;
    const rows = this.db
      .prepare("SELECT item FROM response_input_items WHERE tenant_id = ? AND response_id = ? ORDER BY position")
      .pluck()
      .all(tenantId, id) as string[];
    return rows.map(parseItem);
  }

  async listResponseInputItems(tenantId: string, id: string, options: ListOptions): Promise<ItemPage | null> {
    if (!this.responseVisible(tenantId, id)) return null;
    return this.page(
      "SELECT position AS k, item FROM response_input_items WHERE tenant_id = ? AND response_id = ?",
      "SELECT position FROM response_input_items WHERE tenant_id = ? AND response_id = ? AND item_id = ?",
      [tenantId, id],
      options,
    );
  }

  async deleteResponse(tenantId: string, id: string): Promise<boolean> {
    // An expired response is already gone as far as the API is concerned.
    return this.db.prepare("DELETE FROM responses WHERE tenant_id = ? AND id = ? AND created_at > ?").run(tenantId, id, this.expiredAtOrBefore()).changes === 1;
  }

  async createConversation(tenantId: string, conversation: ConversationRecord, items: readonly Item[]): Promise<ConversationRecord> {
    this.db
      .transaction(() => {
        this.db
          .prepare("INSERT INTO conversations (tenant_id, id, created_at, metadata) VALUES (?, ?, ?, ?)")
          .run(tenantId, conversation.id, conversation.createdAtSeconds, JSON.stringify(conversation.metadata));
        this.appendItems(tenantId, conversation.id, items);
      })
      .immediate();
    return { ...conversation, metadata: { ...conversation.metadata } };
  }

  async getConversation(tenantId: string, id: string): Promise<ConversationRecord | null> {
    const row = this.conversationRow(tenantId, id);
    return row ? toConversation(row) : null;
  }

  async updateConversation(tenantId: string, id: string, metadata: Record<string, string>): Promise<ConversationRecord | null> {
    const changed = this.db.prepare("UPDATE conversations SET metadata = ? WHERE tenant_id = ? AND id = ?").run(JSON.stringify(metadata), tenantId, id).changes;
    return changed === 1 ? this.getConversation(tenantId, id) : null;
  }

  async deleteConversation(tenantId: string, id: string): Promise<boolean> {
    return this.db.prepare("DELETE FROM conversations WHERE tenant_id = ? AND id = ?").run(tenantId, id).changes === 1;
  }

  async addConversationItems(tenantId: string, id: string, items: readonly Item[]): Promise<Item[] | null> {
    return this.db
      .transaction(() => {
        if (!this.conversationRow(tenantId, id)) return null;
        this.appendItems(tenantId, id, items);
        return items.map((item) => structuredClone(item));
      })
      .immediate();
  }

  async getConversationItems(tenantId: string, id: string): Promise<Item[] | null> {
    if (!this.conversationRow(tenantId, id)) return null;
    const rows = this.db
      .prepare("SELECT item FROM conversation_items WHERE tenant_id = ? AND conversation_id = ? ORDER BY seq")
      .pluck()
      .all(tenantId, id) as string[];
    return rows.map(parseItem);
  }

  async listConversationItems(tenantId: string, id: string, options: ListOptions): Promise<ItemPage | null> {
    if (!this.conversationRow(tenantId, id)) return null;
    return this.page(
      "SELECT seq AS k, item FROM conversation_items WHERE tenant_id = ? AND conversation_id = ?",
      "SELECT seq FROM conversation_items WHERE tenant_id = ? AND conversation_id = ? AND item_id = ?",
      [tenantId, id],
      options,
    );
  }

  async findItems(tenantId: string, ids: readonly string[]): Promise<Map<string, Item>> {
    const found = new Map<string, Item>();
    const expired = this.expiredAtOrBefore();
    // The same item may sit in many places (each later response of a chain
    // reads it again): they hold the same item, so the first found is kept.
    const lookups = [
      this.db.prepare(
        "SELECT o.item FROM response_output_items o JOIN responses r ON r.tenant_id = o.tenant_id AND r.id = o.response_id WHERE o.tenant_id = ? AND o.item_id = ? AND r.created_at > ? LIMIT 1",
      ),
      this.db.prepare(
        "SELECT i.item FROM response_input_items i JOIN responses r ON r.tenant_id = i.tenant_id AND r.id = i.response_id WHERE i.tenant_id = ? AND i.item_id = ? AND r.created_at > ? LIMIT 1",
      ),
    ];
    const inConversation = this.db.prepare("SELECT item FROM conversation_items WHERE tenant_id = ? AND item_id = ? LIMIT 1");
    for (const id of new Set(ids)) {
      let row: string | undefined;
      for (const lookup of lookups) {
        row ??= lookup.pluck().get(tenantId, id, expired) as string | undefined;
      }
      row ??= inConversation.pluck().get(tenantId, id) as string | undefined;
      if (row !== undefined) found.set(id, parseItem(row));
    }
    return found;
  }

  async getConversationItem(tenantId: string, id: string, itemId: string): Promise<Item | null> {
    const item = this.db
      .prepare("SELECT item FROM conversation_items WHERE tenant_id = ? AND conversation_id = ? AND item_id = ?")
      .pluck()
      .get(tenantId, id, itemId) as string | undefined;
    return item === undefined ? null : parseItem(item);
  }

  async deleteConversationItem(tenantId: string, id: string, itemId: string): Promise<boolean> {
    return (
      this.db.prepare("DELETE FROM conversation_items WHERE tenant_id = ? AND conversation_id = ? AND item_id = ?").run(tenantId, id, itemId).changes === 1
    );
  }

  async deleteTenantData(tenantId: string): Promise<void> {
    this.db
      .transaction(() => {
        this.db.prepare("DELETE FROM responses WHERE tenant_id = ?").run(tenantId);
        this.db.prepare("DELETE FROM conversations WHERE tenant_id = ?").run(tenantId);
      })
      .immediate();
  }

  async purgeExpired(): Promise<number> {
    // One purge at a time: the timer's and an explicit call share the run in progress.
    this.purging ??= this.purgeBatches().finally(() => (this.purging = null));
    return this.purging;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    // A purge in progress stops at its next batch (it checks db.open).
    if (this.db.open) this.db.close();
  }

  private async purgeBatches(): Promise<number> {
    if (this.ttlSeconds === 0 || !this.db.open) return 0;
    const cutoff = this.expiredAtOrBefore();
    const batch = this.db.prepare("DELETE FROM responses WHERE rowid IN (SELECT rowid FROM responses WHERE created_at <= ? LIMIT ?)");
    let deleted = 0;
    while (this.db.open) {
      const n = batch.run(cutoff, PURGE_BATCH_ROWS).changes;
      deleted += n;
      if (n < PURGE_BATCH_ROWS) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    return deleted;
  }

  private async purgeInBackground(): Promise<void> {
    try {
      const deleted = await this.purgeExpired();
      if (deleted > 0) this.onPurge({ deleted });
    } catch (err) {
      if (this.db.open) this.onPurge({ error: err });
    }
  }

  private responseVisible(tenantId: string, id: string): boolean {
    return (
      this.db.prepare("SELECT 1 FROM responses WHERE tenant_id = ? AND id = ? AND created_at > ?").get(tenantId, id, this.expiredAtOrBefore()) !== undefined
    );
  }

  private conversationRow(tenantId: string, id: string): ConversationRow | undefined {
    return this.db.prepare("SELECT id, created_at, metadata FROM conversations WHERE tenant_id = ? AND id = ?").get(tenantId, id) as
      | ConversationRow
      | undefined;
  }

  private appendItems(tenantId: string, conversationId: string, items: readonly Item[]): void {
    const insert = this.db.prepare("INSERT INTO conversation_items (tenant_id, conversation_id, item_id, item) VALUES (?, ?, ?, ?)");
    for (const item of items) insert.run(tenantId, conversationId, item.id, JSON.stringify(item));
  }

  /**
   * One page of an ordered item list. `rowsSql` selects (k, item) of the list
   * (k: its order key); `keyOfSql` finds the order key of the `after` item.
   */
  private page(rowsSql: string, keyOfSql: string, scope: [string, string], options: ListOptions): ItemPage {
    const asc = options.order === "asc";
    let where = "";
    const params: (string | number)[] = [...scope];
    if (options.after !== null) {
      const key = this.db
        .prepare(keyOfSql)
        .pluck()
        .get(...scope, options.after) as number | undefined;
      if (key === undefined) return { kind: "after_not_found" };
      where = asc ? " AND k > ?" : " AND k < ?";
      params.push(key);
    }
    const rows = this.db
      .prepare(`SELECT item FROM (${rowsSql}) WHERE 1${where} ORDER BY k ${asc ? "ASC" : "DESC"} LIMIT ?`)
      .pluck()
      .all(...params, options.limit + 1) as string[];
    return { kind: "page", items: rows.slice(0, options.limit).map(parseItem), hasMore: rows.length > options.limit };
  }
}

/** The output items of a Response body as stored (its `output` array). */
function outputItemsOf(body: JsonObject): Item[] {
  const output = body.output;
  return Array.isArray(output) ? (output as Item[]) : [];
}

function parseItem(json: string): Item {
  return JSON.parse(json) as Item;
}

function toConversation(row: ConversationRow): ConversationRecord {
  return { id: row.id, createdAtSeconds: row.created_at, metadata: JSON.parse(row.metadata) as Record<string, string> };
}
