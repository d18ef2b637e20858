// What background responses keep beyond a stored response: their status as it
// moves (queued → in_progress → completed / incomplete / failed / cancelled)
// and the event log a client streams again from any sequence number.
// BackgroundStore is the seam: SqliteBackgroundStore keeps both in
// <data-dir>/llamux.db next to the responses they belong to; a networked store
// implements the same promises.
//
// Invariants every implementation keeps:
// - a background response is a stored response (ConversationStore sees it:
//   retrieve, delete, input items, expiry), created at once with status
//   queued; deleting the response (or its tenant, or its expiry) deletes its
//   status row and its events with it;
// - every read and write is scoped by tenant id, as in ConversationStore;
// - only a response still queued or in progress changes: once it is
//   terminal, update() and finish() write nothing and say so, so a cancel and
//   the generation's own end cannot both win;
// - a write whose promise has resolved is durable.
import type { Item, JsonObject, NewStoredResponse } from "./conversationStore.js";

export type BackgroundStatus = "queued" | "in_progress" | "completed" | "incomplete" | "failed" | "cancelled";

export const UNFINISHED: readonly BackgroundStatus[] = ["queued", "in_progress"];

/** One event of a response's stream, as sent (`data` holds `type` and `sequence_number` too). */
export interface StoredEvent {
  sequenceNumber: number;
  type: string;
  data: JsonObject;
}

export interface BackgroundFinish {
  tenantId: string;
  id: string;
  status: Exclude<BackgroundStatus, "queued" | "in_progress">;
  /** The final Response object. */
  body: JsonObject;
  /** The events not yet stored, the terminal one last (none for a cancel). */
  events: readonly StoredEvent[];
  /** Completed or incomplete: the output items, referable by id as a foreground response's are. */
  outputItems: readonly Item[];
  /** The conversation the response continues, with the items to append (completed or incomplete only). */
  conversation: { id: string; items: readonly Item[] } | null;
}

/** What failUnfinished writes for one response: its failed body and the event that says so. */
export type InterruptedOutcome = (stored: { body: JsonObject; status: BackgroundStatus; nextSequenceNumber: number }) => {
  body: JsonObject;
  event: StoredEvent;
};

export interface BackgroundStore {
  /** Stores a new background response (status queued), its input items and its first events, in one transaction. */
  create(tenantId: string, response: NewStoredResponse, events: readonly StoredEvent[]): Promise<void>;
  /**
   * Appends events and, given `body` and `status`, replaces the stored
   * Response object: only while the response is queued or in progress.
   * False when it is not (terminal, or deleted): nothing was written.
   */
  update(tenantId: string, id: string, change: { events: readonly StoredEvent[]; body?: JsonObject; status?: "in_progress" }): Promise<boolean>;
  /** The terminal transition, all or nothing; false (nothing written) when the response was no longer queued or in progress. */
  finish(f: BackgroundFinish): Promise<boolean>;
  /** The status of a background response; null when there is none (not background, another tenant's, deleted). */
  status(tenantId: string, id: string): Promise<BackgroundStatus | null>;
  /** Its stored events after sequence number `after`, in order. */
  events(tenantId: string, id: string, after: number): Promise<StoredEvent[]>;
  /**
   * At start: every response still queued or in progress belongs to a
   * process that is gone (embedded store: one process). Each becomes what
   * `outcome` says; returns how many. A store shared by replicas must limit
   * this to the responses of replicas that are gone.
   */
  failUnfinished(outcome: InterruptedOutcome): Promise<number>;
  /** What a store shared by several replicas adds; null for the embedded store (one process). */
  readonly shared: SharedBackground | null;
  /** Stops what the store runs by itself (a shared store's lease: released, so its unfinished responses are failed by the others at once). */
  close(): Promise<void>;
}

/** An unfinished response of this replica, as the store has it now. */
export interface OwnedResponse {
  tenantId: string;
  id: string;
  /** Another replica asked for it to be cancelled (requestCancel). */
  cancelRequested: boolean;
}

/**
 * Several replicas on one store: a background response belongs to the
 * replica that created it (its owner, recorded with it), which alone runs and
 * writes it. Each replica holds a lease the store renews while it lives;
 * failUnfinished fails only the unfinished responses whose owner's lease has
 * expired. Another replica asks the owner to cancel through the store; the
 * owner polls owned() and stops what was cancelled or deleted.
 */
export interface SharedBackground {
  /** This replica's id, recorded as the owner of each response it creates. */
  readonly replicaId: string;
  /** A replica whose lease is not renewed for this long is dead (its responses are failed by the others). */
  readonly leaseMs: number;
  /** Marks an unfinished response as cancel requested; false when it is not queued or in progress (or not there). */
  requestCancel(tenantId: string, id: string): Promise<boolean>;
  /** This replica's responses still queued or in progress, as stored now. */
  owned(): Promise<OwnedResponse[]>;
  /** Whether the replica that owns this response holds a live lease (false: gone, or no such response). */
  ownerAlive(tenantId: string, id: string): Promise<boolean>;
  /**
   * One of this replica's responses that nothing here runs any more (its run
   * could not store its end) becomes what `outcome` says; false, writing
   * nothing, when it is not this replica's or no longer queued or in progress.
   */
  failOwned(tenantId: string, id: string, outcome: InterruptedOutcome): Promise<boolean>;
}
