// ConversationStore in PostgreSQL: the same tables and semantics as
// SqliteConversationStore (see conversationStore.ts for the invariants), in a
// database every replica shares. Every statement binds tenant_id and is
// parameterised. A write's promise resolves after COMMIT, and PostgreSQL's
// synchronous_commit (on by default) has flushed the WAL by then, so an
// acknowledged response survives a crash of llamux or of the database.
//
// Several replicas purge at once without stepping on each other: each batch
// locks the rows it deletes and skips those another replica holds.
import {
  DEFAULT_PURGE_INTERVAL_MS,
  PURGE_BATCH_ROWS,
  type ConversationStoreOptions,
  type ConversationRecord,
  type ConversationStore,
  type Item,
  type ItemPage,
  type JsonObject,
  type ListOptions,
  type ResponseCommit,
  type StoredResponse,
} from "../conversationStore.js";
import { num, type PgDatabase, type Queryable } from "./db.js";

export type PgConversationStoreOptions = ConversationStoreOptions;

export class PgConversationStore implements ConversationStore {
  private readonly ttlSeconds: number;
  private readonly now: () => number;
  private readonly onPurge: NonNullable<PgConversationStoreOptions["onPurge"]>;
  private readonly timer: NodeJS.Timeout | null;
  private purging: Promise<number> | null = null;
  private closed = false;

  /** `db` is migrated already (see migrate) and owned by the caller, who closes it after this store. */
  constructor(
    private readonly db: PgDatabase,
    options: PgConversationStoreOptions,
  ) {
    if (!Number.isInteger(options.responseTtlSeconds) || options.responseTtlSeconds < 0) {
      throw new Error(`responseTtlSeconds must be a whole number >= 0, not ${options.responseTtlSeconds}`);
    }
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

  private expiredAtOrBefore(): number {
    return this.ttlSeconds === 0 ? Number.MIN_SAFE_INTEGER : this.now() - this.ttlSeconds;
  }

  async commitResponse(commit: ResponseCommit): Promise<void> {
    const { tenantId, response, conversation } = commit;
    // store:false outside a conversation keeps nothing: no round trip, so it works while the database is away.
    if (!response && !conversation) return;
    await this.db.transaction(async (tx) => {
      if (response) {
        await tx.execute("INSERT INTO responses (tenant_id, id, created_at, body) VALUES ($1, $2, $3, $4)", [
          tenantId,
          response.id,
          response.createdAtSeconds,
          JSON.stringify(response.body),
        ]);
        await insertPositioned(tx, "response_input_items", tenantId, response.id, response.inputItems);
        await insertPositioned(tx, "response_output_items", tenantId, response.id, outputItemsOf(response.body));
      }
      // FOR SHARE: a concurrent delete of the conversation waits for this commit (or wins before it and we append nothing).
      if (conversation && (await lockConversation(tx, tenantId, conversation.id))) await appendItems(tx, tenantId, conversation.id, conversation.items);
    });
  }

  async getResponse(tenantId: string, id: string): Promise<StoredResponse | null> {
    const [row] = await this.db.query<{ id: string; created_at: string; body: string }>(
      "SELECT id, created_at, body FROM responses WHERE tenant_id = $1 AND id = $2 AND created_at > $3",
      [tenantId, id, this.expiredAtOrBefore()],
    );
    return row ? { id: row.id, createdAtSeconds: num(row.created_at), body: JSON.parse(row.body) as JsonObject } : null;
  }

  async getResponseInputItems(tenantId: string, id: string): Promise<Item[] | null> {
    if (!(await this.responseVisible(tenantId, id))) return null;
    const rows = await this.db.query<{ item: string }>("SELECT item FROM response_input_items WHERE tenant_id = $1 AND response_id = $2 ORDER BY position", [
      tenantId,
      id,
    ]);
    return rows.map((r) => parseItem(r.item));
  }

  async listResponseInputItems(tenantId: string, id: string, options: ListOptions): Promise<ItemPage | null> {
    if (!(await this.responseVisible(tenantId, id))) return null;
    return this.page("response_input_items", "response_id", "position", tenantId, id, options);
  }

  async deleteResponse(tenantId: string, id: string): Promise<boolean> {
    return (
      (await this.db.execute("DELETE FROM responses WHERE tenant_id = $1 AND id = $2 AND created_at > $3", [tenantId, id, this.expiredAtOrBefore()])) === 1
    );
  }

  async createConversation(tenantId: string, conversation: ConversationRecord, items: readonly Item[]): Promise<ConversationRecord> {
    await this.db.transaction(async (tx) => {
      await tx.execute("INSERT INTO conversations (tenant_id, id, created_at, metadata) VALUES ($1, $2, $3, $4)", [
        tenantId,
        conversation.id,
        conversation.createdAtSeconds,
        JSON.stringify(conversation.metadata),
      ]);
      await appendItems(tx, tenantId, conversation.id, items);
    });
    return { ...conversation, metadata: { ...conversation.metadata } };
  }

  async getConversation(tenantId: string, id: string): Promise<ConversationRecord | null> {
    const [row] = await this.db.query<ConversationRow>("SELECT id, created_at, metadata FROM conversations WHERE tenant_id = $1 AND id = $2", [tenantId, id]);
    return row ? toConversation(row) : null;
  }

  async updateConversation(tenantId: string, id: string, metadata: Record<string, string>): Promise<ConversationRecord | null> {
    const [row] = await this.db.query<ConversationRow>(
      "UPDATE conversations SET metadata = $1 WHERE tenant_id = $2 AND id = $3 RETURNING id, created_at, metadata",
      [JSON.stringify(metadata), tenantId, id],
    );
    return row ? toConversation(row) : null;
  }

  async deleteConversation(tenantId: string, id: string): Promise<boolean> {
    return (await this.db.execute("DELETE FROM conversations WHERE tenant_id = $1 AND id = $2", [tenantId, id])) === 1;
  }

  async addConversationItems(tenantId: string, id: string, items: readonly Item[]): Promise<Item[] | null> {
    return this.db.transaction(async (tx) => {
      if (!(await lockConversation(tx, tenantId, id))) return null;
      await appendItems(tx, tenantId, id, items);
      return items.map((item) => structuredClone(item));
    });
  }

  async getConversationItems(tenantId: string, id: string): Promise<Item[] | null> {
    if (!(await this.getConversation(tenantId, id))) return null;
    const rows = await this.db.query<{ item: string }>("SELECT item FROM conversation_items WHERE tenant_id = $1 AND conversation_id = $2 ORDER BY seq", [
      tenantId,
      id,
    ]);
    return rows.map((r) => parseItem(r.item));
  }

  async listConversationItems(tenantId: string, id: string, options: ListOptions): Promise<ItemPage | null> {
    if (!(await this.getConversation(tenantId, id))) return null;
    return this.page("conversation_items", "conversation_id", "seq", tenantId, id, options);
  }

  async getConversationItem(tenantId: string, id: string, itemId: string): Promise<Item | null> {
    const [row] = await this.db.query<{ item: string }>("SELECT item FROM conversation_items WHERE tenant_id = $1 AND conversation_id = $2 AND item_id = $3", [
      tenantId,
      id,
      itemId,
    ]);
    return row ? parseItem(row.item) : null;
  }

  async findItems(tenantId: string, ids: readonly string[]): Promise<Map<string, Item>> {
    const found = new Map<string, Item>();
    const wanted = [...new Set(ids)];
    if (wanted.length === 0) return found;
    const expired = this.expiredAtOrBefore();
    // The same item may sit in many places (each later response of a chain
    // reads it again); they hold the same item, so the first place found wins,
    // in the order SqliteConversationStore looks: output, input, conversation.
    const lookups: Array<[string, unknown[]]> = [
      [
        `SELECT DISTINCT ON (o.item_id) o.item_id, o.item FROM response_output_items o JOIN responses r ON r.tenant_id = o.tenant_id AND r.id = o.response_id
         WHERE o.tenant_id = $1 AND o.item_id = ANY($2::text[]) AND r.created_at > $3`,
        [tenantId, wanted, expired],
      ],
      [
        `SELECT DISTINCT ON (i.item_id) i.item_id, i.item FROM response_input_items i JOIN responses r ON r.tenant_id = i.tenant_id AND r.id = i.response_id
         WHERE i.tenant_id = $1 AND i.item_id = ANY($2::text[]) AND r.created_at > $3`,
        [tenantId, wanted, expired],
      ],
      ["SELECT DISTINCT ON (item_id) item_id, item FROM conversation_items WHERE tenant_id = $1 AND item_id = ANY($2::text[])", [tenantId, wanted]],
    ];
    for (const [text, params] of lookups) {
      if (found.size === wanted.length) break;
      for (const row of await this.db.query<{ item_id: string; item: string }>(text, params)) {
        if (!found.has(row.item_id)) found.set(row.item_id, parseItem(row.item));
      }
    }
    return found;
  }

  async deleteConversationItem(tenantId: string, id: string, itemId: string): Promise<boolean> {
    return (
      (await this.db.execute("DELETE FROM conversation_items WHERE tenant_id = $1 AND conversation_id = $2 AND item_id = $3", [tenantId, id, itemId])) === 1
    );
  }

  async deleteTenantData(tenantId: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.execute("DELETE FROM responses WHERE tenant_id = $1", [tenantId]);
      await tx.execute("DELETE FROM conversations WHERE tenant_id = $1", [tenantId]);
    });
  }

  async purgeExpired(): Promise<number> {
    this.purging ??= this.purgeBatches().finally(() => (this.purging = null));
    return this.purging;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    // A purge in flight stops at its next batch; wait for it so the caller can close the pool.
    await this.purging?.catch(() => undefined);
  }

  private async purgeBatches(): Promise<number> {
    if (this.ttlSeconds === 0 || this.closed) return 0;
    const cutoff = this.expiredAtOrBefore();
    let deleted = 0;
    while (!this.closed) {
      const n = await this.db.execute(
        `DELETE FROM responses WHERE (tenant_id, id) IN (
           SELECT tenant_id, id FROM responses WHERE created_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
        [cutoff, PURGE_BATCH_ROWS],
      );
      deleted += n;
      if (n < PURGE_BATCH_ROWS) break;
    }
    return deleted;
  }

  private async purgeInBackground(): Promise<void> {
    try {
      const deleted = await this.purgeExpired();
      if (deleted > 0) this.onPurge({ deleted });
    } catch (err) {
      if (!this.closed) this.onPurge({ error: err });
    }
  }

  private async responseVisible(tenantId: string, id: string): Promise<boolean> {
    const rows = await this.db.query("SELECT 1 FROM responses WHERE tenant_id = $1 AND id = $2 AND created_at > $3", [tenantId, id, this.expiredAtOrBefore()]);
    return rows.length > 0;
  }

  /**
   * One page of an ordered item list: the rows of `table` whose `owner`
   * column is `ownerId`, ordered by `key`. Table and column names are
   * constants of this file, never input.
   */
  private async page(
    table: "response_input_items" | "conversation_items",
    owner: "response_id" | "conversation_id",
    key: "position" | "seq",
    tenantId: string,
    ownerId: string,
    options: ListOptions,
  ): Promise<ItemPage> {
    const asc = options.order === "asc";
    const params: unknown[] = [tenantId, ownerId];
    let where = "";
    if (options.after !== null) {
      const [row] = await this.db.query<{ k: string | number }>(`SELECT ${key} AS k FROM ${table} WHERE tenant_id = $1 AND ${owner} = $2 AND item_id = $3`, [
        tenantId,
        ownerId,
        options.after,
      ]);
      if (!row) return { kind: "after_not_found" };
      params.push(row.k);
      where = ` AND ${key} ${asc ? ">" : "<"} $${params.length}`;
    }
    params.push(options.limit + 1);
    const rows = await this.db.query<{ item: string }>(
      `SELECT item FROM ${table} WHERE tenant_id = $1 AND ${owner} = $2${where} ORDER BY ${key} ${asc ? "ASC" : "DESC"} LIMIT $${params.length}`,
      params,
    );
    return { kind: "page", items: rows.slice(0, options.limit).map((r) => parseItem(r.item)), hasMore: rows.length > options.limit };
  }
}

type ConversationRow = {
  id: string;
  created_at: string | number;
  metadata: string;
};

export async function lockConversation(tx: Queryable, tenantId: string, id: string): Promise<boolean> {
  return (await tx.query("SELECT 1 FROM conversations WHERE tenant_id = $1 AND id = $2 FOR SHARE", [tenantId, id])).length > 0;
}

/** Rows (tenant, owner, position, item_id, item) in one statement. */
export async function insertPositioned(
  tx: Queryable,
  table: "response_input_items" | "response_output_items",
  tenantId: string,
  responseId: string,
  items: readonly Item[],
): Promise<void> {
  if (items.length === 0) return;
  await tx.execute(
    `INSERT INTO ${table} (tenant_id, response_id, position, item_id, item)
     SELECT $1, $2, t.ord - 1, t.item_id, t.item FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS t(item_id, item, ord)`,
    [tenantId, responseId, items.map((i) => i.id), items.map((i) => JSON.stringify(i))],
  );
}

/** Appends in order: the rows are inserted (and so numbered by seq) in the order of `items`. */
export async function appendItems(tx: Queryable, tenantId: string, conversationId: string, items: readonly Item[]): Promise<void> {
  if (items.length === 0) return;
  await tx.execute(
    `INSERT INTO conversation_items (tenant_id, conversation_id, item_id, item)
     SELECT $1, $2, t.item_id, t.item FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS t(item_id, item, ord) ORDER BY t.ord`,
    [tenantId, conversationId, items.map((i) => i.id), items.map((i) => JSON.stringify(i))],
  );
}

function outputItemsOf(body: JsonObject): Item[] {
  const output = body.output;
  return Array.isArray(output) ? (output as Item[]) : [];
}

function parseItem(json: string): Item {
  return JSON.parse(json) as Item;
}

function toConversation(row: ConversationRow): ConversationRecord {
  return { id: row.id, createdAtSeconds: num(row.created_at), metadata: JSON.parse(row.metadata) as Record<string, string> };
}
