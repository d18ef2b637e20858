// Batches (/v1/batches) and each batch's finished lines. The interface is what
// a PostgreSQL implementation must provide (with leases on the work, so any
// replica may claim it); SqliteBatchStore is the embedded default.
//
// Durability rests on recordLine: a line's outcome is stored, keyed by (batch,
// line number), before it counts anywhere, and a second record of the same
// line is ignored. After a crash the runner skips the recorded lines and runs
// the rest, so the output, written at finalize from these records, has every
// line exactly once.

export type BatchStatus = "validating" | "failed" | "in_progress" | "finalizing" | "completed" | "expired" | "cancelling" | "cancelled";

export const BATCH_ENDPOINTS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"] as const;
export type BatchEndpoint = (typeof BATCH_ENDPOINTS)[number];

export interface BatchError {
  code: string;
  message: string;
  param: string | null;
  line: number | null;
}

export interface BatchUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

/** OpenAI's Batch object. */
export interface BatchObject {
  id: string;
  object: "batch";
  endpoint: BatchEndpoint;
  model: string | null;
  errors: { object: "list"; data: BatchError[] } | null;
  input_file_id: string;
  completion_window: "24h";
  status: BatchStatus;
  output_file_id: string | null;
  error_file_id: string | null;
  created_at: number;
  in_progress_at: number | null;
  expires_at: number;
  finalizing_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  expired_at: number | null;
  cancelling_at: number | null;
  cancelled_at: number | null;
  request_counts: { total: number; completed: number; failed: number };
  usage: BatchUsage;
  metadata: Record<string, string> | null;
}

/** One finished line: its output-file or error-file record (JSON text), and what it used. */
export interface LineResult {
  line: number;
  ok: boolean;
  record: string;
  inputTokens: number;
  cachedTokens: number;
  outputTokens: number;
}

export interface BatchTotals {
  completed: number;
  failed: number;
  inputTokens: number;
  cachedTokens: number;
  outputTokens: number;
}

/**
 * Who runs each batch, where several replicas share the store (PostgreSQL).
 * A replica runs a batch only while it holds the batch's lease: taken with
 * claim, renewed with renew, given back with release; one not renewed for
 * leaseMs has expired, and any replica may claim it (its holder is dead).
 */
export interface SharedBatches {
  readonly replicaId: string;
  readonly leaseMs: number;
  /** How often the runner renews what it holds and looks for batches to take over. */
  readonly renewMs: number;
  /** Takes the batch's lease if it is unfinished and no live replica holds it (or this one does): whether this replica holds it now. */
  claim(tenantId: string, id: string): Promise<boolean>;
  /** Extends the leases of `ids` that this replica still holds; returns those, with each one's status (a cancel asked through another replica shows here). */
  renew(ids: readonly string[]): Promise<Map<string, BatchStatus>>;
  /** Gives the lease up (the batch is final, or this replica stops). */
  release(id: string): Promise<void>;
  /** Unfinished batches no live replica holds, oldest first: what this replica may take over. */
  claimable(): Promise<Array<{ tenantId: string; batch: BatchObject }>>;
}

export const FINAL_BATCH_STATUSES: ReadonlySet<BatchStatus> = new Set(["failed", "completed", "expired", "cancelled"]);

export interface BatchStore {
  /** Present where replicas share the store: the runner then runs a batch only under its lease. */
  readonly shared?: SharedBatches;
  create(tenantId: string, batch: BatchObject): Promise<void>;
  get(tenantId: string, id: string): Promise<BatchObject | null>;
  list(tenantId: string, opts: { after: string | null; limit: number }): Promise<{ data: BatchObject[]; hasMore: boolean }>;
  /**
   * Applies `change` to the stored batch atomically and returns the result;
   * `change` returns null to leave it as it is (a transition no longer allowed).
   */
  update(tenantId: string, id: string, change: (b: BatchObject) => BatchObject | null): Promise<BatchObject | null>;
  /** Batches not in a final state, oldest first: what a restarted runner resumes. */
  unfinished(): Promise<Array<{ tenantId: string; batch: BatchObject }>>;
  /** Stores a line's outcome; false when the line was already recorded (the record is left as it was). */
  recordLine(batchId: string, result: LineResult): Promise<boolean>;
  /** Line numbers already recorded. */
  doneLines(batchId: string): Promise<Set<number>>;
  totals(batchId: string): Promise<BatchTotals>;
  /** Recorded lines in line order, successes or failures. */
  results(batchId: string, ok: boolean): AsyncIterable<string>;
  close(): Promise<void>;
}
