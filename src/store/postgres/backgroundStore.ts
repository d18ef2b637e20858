// BackgroundStore in PostgreSQL, shared by every replica on the database: the
// same semantics as SqliteBackgroundStore (see backgroundStore.ts), plus who
// runs each response. A background response is a row of `responses` from the
// moment it is created (retrieve, delete, input items, expiry and a tenant's
// deletion work on it unchanged); its status, owner and events hang off that
// row (ON DELETE CASCADE).
//
// Ownership: the replica that creates a response runs it and records itself
// as its owner. It holds a lease in replica_leases (expiry on the database's
// clock) renewed every renewMs; a replica whose lease has expired is dead, and
// failUnfinished (at start and in every replica's periodic sweep) fails only
// the unfinished responses of dead owners, never a live replica's.
//
// Locks, always in the same order (responses row, then background_responses
// row) so a write, a sweep, a delete of the response (which cascades) and a
// tenant's deletion never deadlock: each either waits for the other or finds
// the response gone or terminal.
import { randomUUID } from "node:crypto";
import type { Item, JsonObject, NewStoredResponse } from "../conversationStore.js";
import type {
  BackgroundFinish,
  BackgroundStatus,
  BackgroundStore,
  InterruptedOutcome,
  OwnedResponse,
  SharedBackground,
  StoredEvent,
} from "../backgroundStore.js";
import { appendItems, insertPositioned, lockConversation } from "./conversationStore.js";
import { num, type PgDatabase, type Queryable } from "./db.js";

export const DEFAULT_LEASE_MS = 10_000;
export const DEFAULT_RENEW_MS = 2_000;

export interface PgBackgroundStoreOptions {
  /** This replica's id; a fresh random one by default (a restarted replica is a new owner). */
  replicaId?: string;
  /** A lease not renewed for this long has expired: its owner is dead. */
  leaseMs?: number;
  /** How often the lease is renewed (a few renewals fit in one lease, so one slow statement does not kill it). */
  renewMs?: number;
  /** Told when renewing the lease fails (the database is away), and when it succeeds again. */
  onLease?: (event: { ok: true } | { ok: false; err: unknown }) => void;
}

const UNFINISHED_SQL = "('queued', 'in_progress')";

export class PgBackgroundStore implements BackgroundStore, SharedBackground {
  readonly replicaId: string;
  readonly leaseMs: number;
  readonly shared: SharedBackground = this;
  private readonly renewMs: number;
  private readonly onLease: NonNullable<PgBackgroundStoreOptions["onLease"]>;
  private timer: NodeJS.Timeout | null = null;
  private renewing: Promise<void> | null = null;
  private leaseOk = true;
  private closed = false;

  private constructor(
    private readonly db: PgDatabase,
    options: PgBackgroundStoreOptions,
  ) {
    this.replicaId = options.replicaId ?? `replica_${randomUUID()}`;
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.renewMs = options.renewMs ?? DEFAULT_RENEW_MS;
    if (!(this.renewMs > 0 && this.renewMs < this.leaseMs)) throw new Error(`renewMs (${this.renewMs}) must be above 0 and below leaseMs (${this.leaseMs})`);
    this.onLease = options.onLease ?? (() => undefined);
  }

  /**
   * Takes this replica's lease (before it creates anything) and keeps renewing it.
   * `db` is migrated already and owned by the caller, who closes it after this store.
   */
  static async open(db: PgDatabase, options: PgBackgroundStoreOptions = {}): Promise<PgBackgroundStore> {
    const store = new PgBackgroundStore(db, options);
    await store.renew();
    store.timer = setInterval(() => void store.renewInBackground(), store.renewMs);
    store.timer.unref();
    return store;
  }

  async create(tenantId: string, response: NewStoredResponse, events: readonly StoredEvent[]): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.execute("INSERT INTO responses (tenant_id, id, created_at, body) VALUES ($1, $2, $3, $4)", [
        tenantId,
        response.id,
        response.createdAtSeconds,
        JSON.stringify(response.body),
      ]);
      await insertPositioned(tx, "response_input_items", tenantId, response.id, response.inputItems);
      await tx.execute("INSERT INTO background_responses (tenant_id, id, status, next_seq, owner) VALUES ($1, $2, 'queued', 0, $3)", [
        tenantId,
        response.id,
        this.replicaId,
      ]);
      await appendEvents(tx, tenantId, response.id, events);
    });
  }

  async update(tenantId: string, id: string, change: { events: readonly StoredEvent[]; body?: JsonObject; status?: "in_progress" }): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      if ((await lockUnfinished(tx, tenantId, id)) === null) return false;
      if (change.body) await tx.execute("UPDATE responses SET body = $1 WHERE tenant_id = $2 AND id = $3", [JSON.stringify(change.body), tenantId, id]);
      if (change.status) await tx.execute("UPDATE background_responses SET status = $1 WHERE tenant_id = $2 AND id = $3", [change.status, tenantId, id]);
      await appendEvents(tx, tenantId, id, change.events);
      return true;
    });
  }

  async finish(f: BackgroundFinish): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      if ((await lockUnfinished(tx, f.tenantId, f.id)) === null) return false;
      await tx.execute("UPDATE responses SET body = $1 WHERE tenant_id = $2 AND id = $3", [JSON.stringify(f.body), f.tenantId, f.id]);
      await tx.execute("UPDATE background_responses SET status = $1 WHERE tenant_id = $2 AND id = $3", [f.status, f.tenantId, f.id]);
      await appendEvents(tx, f.tenantId, f.id, f.events);
      await insertPositioned(tx, "response_output_items", f.tenantId, f.id, f.outputItems as Item[]);
      // As commitResponse: a conversation deleted while the response ran gets nothing.
      if (f.conversation && (await lockConversation(tx, f.tenantId, f.conversation.id)))
        await appendItems(tx, f.tenantId, f.conversation.id, f.conversation.items);
      return true;
    });
  }

  async status(tenantId: string, id: string): Promise<BackgroundStatus | null> {
    const [row] = await this.db.query<{ status: BackgroundStatus }>("SELECT status FROM background_responses WHERE tenant_id = $1 AND id = $2", [tenantId, id]);
    return row?.status ?? null;
  }

  async events(tenantId: string, id: string, after: number): Promise<StoredEvent[]> {
    const rows = await this.db.query<{ seq: number; type: string; data: string }>(
      "SELECT seq, type, data FROM response_events WHERE tenant_id = $1 AND response_id = $2 AND seq > $3 ORDER BY seq",
      [tenantId, id, after],
    );
    return rows.map((r) => ({ sequenceNumber: num(r.seq), type: r.type, data: JSON.parse(r.data) as JsonObject }));
  }

  /**
   * The unfinished responses of dead owners (no lease, or an expired one)
   * become what `outcome` says, each in its own transaction that re-checks
   * under the row locks, so replicas sweeping at once fail each response once
   * and a live owner's write is never overtaken.
   */
  async failUnfinished(outcome: InterruptedOutcome): Promise<number> {
    const candidates = await this.db.query<{ tenant_id: string; id: string }>(
      `SELECT b.tenant_id, b.id FROM background_responses b
       WHERE b.status IN ${UNFINISHED_SQL}
         AND NOT EXISTS (SELECT 1 FROM replica_leases l WHERE l.replica_id = b.owner AND l.expires_at > now())`,
    );
    let failed = 0;
    for (const c of candidates) {
      const done = await this.failIf(
        c.tenant_id,
        c.id,
        outcome,
        async (tx, owner) => (await tx.query("SELECT 1 FROM replica_leases WHERE replica_id = $1 AND expires_at > now()", [owner])).length === 0,
      );
      if (done) failed++;
    }
    // Leases of dead replicas that own nothing unfinished any more are of no use.
    await this.db.execute(
      `DELETE FROM replica_leases l WHERE l.expires_at < now()
       AND NOT EXISTS (SELECT 1 FROM background_responses b WHERE b.owner = l.replica_id AND b.status IN ${UNFINISHED_SQL})`,
    );
    return failed;
  }

  async failOwned(tenantId: string, id: string, outcome: InterruptedOutcome): Promise<boolean> {
    return this.failIf(tenantId, id, outcome, async (_tx, owner) => owner === this.replicaId);
  }

  /** Fails one unfinished response, under its row locks, if `when` still holds there. */
  private async failIf(tenantId: string, id: string, outcome: InterruptedOutcome, when: (tx: Queryable, owner: string) => Promise<boolean>): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const row = await lockUnfinished(tx, tenantId, id);
      if (row === null || !(await when(tx, row.owner))) return false;
      const { body, event } = outcome({ body: JSON.parse(row.body) as JsonObject, status: row.status, nextSequenceNumber: row.nextSeq });
      await tx.execute("UPDATE responses SET body = $1 WHERE tenant_id = $2 AND id = $3", [JSON.stringify(body), tenantId, id]);
      await tx.execute("UPDATE background_responses SET status = 'failed' WHERE tenant_id = $1 AND id = $2", [tenantId, id]);
      await appendEvents(tx, tenantId, id, [event]);
      return true;
    });
  }

  async requestCancel(tenantId: string, id: string): Promise<boolean> {
    return (
      (await this.db.execute(`UPDATE background_responses SET cancel_requested = true WHERE tenant_id = $1 AND id = $2 AND status IN ${UNFINISHED_SQL}`, [
        tenantId,
        id,
      ])) === 1
    );
  }

  async owned(): Promise<OwnedResponse[]> {
    const rows = await this.db.query<{ tenant_id: string; id: string; cancel_requested: boolean }>(
      `SELECT tenant_id, id, cancel_requested FROM background_responses WHERE owner = $1 AND status IN ${UNFINISHED_SQL}`,
      [this.replicaId],
    );
    return rows.map((r) => ({ tenantId: r.tenant_id, id: r.id, cancelRequested: r.cancel_requested }));
  }

  async ownerAlive(tenantId: string, id: string): Promise<boolean> {
    const rows = await this.db.query(
      "SELECT 1 FROM background_responses b JOIN replica_leases l ON l.replica_id = b.owner WHERE b.tenant_id = $1 AND b.id = $2 AND l.expires_at > now()",
      [tenantId, id],
    );
    return rows.length > 0;
  }

  /**
   * Stops renewing and gives the lease up: call it once this replica runs
   * nothing (BackgroundResponses.close), so that whatever it could not finish
   * is failed by the other replicas' next sweep rather than at lease expiry.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.renewing?.catch(() => undefined);
    await this.db.execute("DELETE FROM replica_leases WHERE replica_id = $1", [this.replicaId]).catch(() => undefined);
  }

  private async renew(): Promise<void> {
    await this.db.execute(
      `INSERT INTO replica_leases (replica_id, expires_at) VALUES ($1, now() + $2 * interval '1 millisecond')
       ON CONFLICT (replica_id) DO UPDATE SET expires_at = EXCLUDED.expires_at`,
      [this.replicaId, this.leaseMs],
    );
  }

  private async renewInBackground(): Promise<void> {
    if (this.closed || this.renewing) return;
    this.renewing = this.renew()
      .then(
        () => {
          if (!this.leaseOk) this.onLease({ ok: true });
          this.leaseOk = true;
        },
        (err: unknown) => {
          if (this.leaseOk && !this.closed) this.onLease({ ok: false, err });
          this.leaseOk = false;
        },
      )
      .finally(() => (this.renewing = null));
    await this.renewing;
  }
}

/** Locks the response (responses row first, then its status row) and returns it while queued or in progress; null otherwise. */
async function lockUnfinished(
  tx: Queryable,
  tenantId: string,
  id: string,
): Promise<{ status: BackgroundStatus; nextSeq: number; owner: string; body: string } | null> {
  const [response] = await tx.query<{ body: string }>("SELECT body FROM responses WHERE tenant_id = $1 AND id = $2 FOR UPDATE", [tenantId, id]);
  if (!response) return null;
  const [row] = await tx.query<{ status: BackgroundStatus; next_seq: number; owner: string }>(
    "SELECT status, next_seq, owner FROM background_responses WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
    [tenantId, id],
  );
  if (!row || (row.status !== "queued" && row.status !== "in_progress")) return null;
  return { status: row.status, nextSeq: num(row.next_seq), owner: row.owner, body: response.body };
}

/** Sequence numbers are the runner's; next_seq remembers where the log goes on. One statement per batch. */
async function appendEvents(tx: Queryable, tenantId: string, id: string, events: readonly StoredEvent[]): Promise<void> {
  if (events.length === 0) return;
  await tx.execute(
    `INSERT INTO response_events (tenant_id, response_id, seq, type, data)
     SELECT $1, $2, t.seq, t.type, t.data FROM unnest($3::int[], $4::text[], $5::text[]) AS t(seq, type, data)`,
    [tenantId, id, events.map((e) => e.sequenceNumber), events.map((e) => e.type), events.map((e) => JSON.stringify(e.data))],
  );
  await tx.execute("UPDATE background_responses SET next_seq = $1 WHERE tenant_id = $2 AND id = $3", [events.at(-1)!.sequenceNumber + 1, tenantId, id]);
}
