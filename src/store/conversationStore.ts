// What the Responses and Conversations APIs keep: stored responses (with the
// items their generation read) and conversations (an ordered list of items).
// ConversationStore is the seam: SqliteConversationStore keeps them in
// <data-dir>/llamux.db; a networked store can implement the same promises.
//
// Invariants every implementation keeps:
// - every row belongs to one tenant, and every read, write and delete is
//   scoped by that tenant id: another tenant's id is indistinguishable from a
//   missing one (null / false, never an error of its own);
// - a write whose promise has resolved is durable (the API acknowledges only
//   after it);
// - a delete removes the data, not a flag;
// - responses older than the retention period are invisible at once and
//   removed by purgeExpired(); conversations and their items are kept until
//   deleted (as on OpenAI, they are not subject to the response TTL).

export type ItemStatus = "in_progress" | "completed" | "incomplete";
export type MessageRole = "user" | "system" | "developer" | "assistant";

export interface InputTextPart {
  type: "input_text";
  text: string;
}

export interface OutputTextPart {
  type: "output_text";
  text: string;
  annotations: unknown[];
  logprobs: unknown[];
}

export interface RefusalPart {
  type: "refusal";
  refusal: string;
}

export type ContentPart = InputTextPart | OutputTextPart | RefusalPart;

/**
 * A message item as the API returns it. Input roles (user, system,
 * developer) carry input_text parts; assistant messages carry output_text or
 * refusal parts.
 */
export interface MessageItem {
  type: "message";
  id: string;
  role: MessageRole;
  status: ItemStatus;
  content: ContentPart[];
}

/** A function call the model made (a response's output), or that a client sends back as input. */
export interface FunctionCallItem {
  type: "function_call";
  id: string;
  /** Pairs the call with its function_call_output. */
  call_id: string;
  name: string;
  /** JSON text of the arguments object. */
  arguments: string;
  status: ItemStatus;
}

/** What the client's function returned for a call (text only). */
export interface FunctionCallOutputItem {
  type: "function_call_output";
  id: string;
  call_id: string;
  output: string;
  status: ItemStatus;
}

/**
 * The items llamux stores. Reasoning items, item references, images, files
 * and built-in tool calls are refused at the edge.
 */
export type Item = MessageItem | FunctionCallItem | FunctionCallOutputItem;

/** A JSON object as the API returned it (a Response), stored verbatim. */
export type JsonObject = { readonly [key: string]: unknown };

export interface NewStoredResponse {
  id: string;
  createdAtSeconds: number;
  /** The Response object exactly as it was sent to the client (output included). */
  body: JsonObject;
  /**
   * Every item the generation read, in order: the previous responses' or the
   * conversation's items, then this request's input (instructions are not items).
   */
  inputItems: readonly Item[];
}

export interface StoredResponse {
  id: string;
  createdAtSeconds: number;
  body: JsonObject;
}

export interface ConversationRecord {
  id: string;
  createdAtSeconds: number;
  metadata: Record<string, string>;
}

export interface ListOptions {
  /** 1..100. */
  limit: number;
  order: "asc" | "desc";
  /** An item id of the list: the page starts after it (in `order`). */
  after: string | null;
}

export type ItemPage =
  | { kind: "page"; items: Item[]; hasMore: boolean }
  /** The list exists but has no item `after`. */
  | { kind: "after_not_found" };

/** What one finished generation writes, all or nothing. */
export interface ResponseCommit {
  tenantId: string;
  /** Null with store:false: the response itself is not kept. */
  response: NewStoredResponse | null;
  /**
   * Items appended to a conversation (the request's input, then the output).
   * A conversation deleted while the response was generated gets nothing.
   */
  conversation: { id: string; items: readonly Item[] } | null;
}

/** Rows deleted per purge statement: each batch holds the write lock briefly. */
export const PURGE_BATCH_ROWS = 500;
export const DEFAULT_PURGE_INTERVAL_MS = 60 * 60 * 1000;

/** What every ConversationStore implementation is opened with. */
export interface ConversationStoreOptions {
  /** Responses older than this are invisible and purged; 0 keeps them forever. */
  responseTtlSeconds: number;
  /** How often expired responses are purged (default hourly; the first purge runs at open). */
  purgeIntervalMs?: number;
  /** Clock, in whole seconds since the epoch (tests pin it). */
  nowSeconds?: () => number;
  /** Told about each purge that removed rows, and about a purge that failed. */
  onPurge?: (outcome: { deleted: number } | { error: unknown }) => void;
}

export interface ConversationStore {
  /** Writes a finished response and its conversation items in one transaction. */
  commitResponse(commit: ResponseCommit): Promise<void>;
  getResponse(tenantId: string, id: string): Promise<StoredResponse | null>;
  /** All input items of a response, in order; null when there is no such response. */
  getResponseInputItems(tenantId: string, id: string): Promise<Item[] | null>;
  /** Null when there is no such response. */
  listResponseInputItems(tenantId: string, id: string, options: ListOptions): Promise<ItemPage | null>;
  /** False when there was none. */
  deleteResponse(tenantId: string, id: string): Promise<boolean>;

  /** Creates a conversation holding `items` (in order). */
  createConversation(tenantId: string, conversation: ConversationRecord, items: readonly Item[]): Promise<ConversationRecord>;
  getConversation(tenantId: string, id: string): Promise<ConversationRecord | null>;
  /** Replaces the metadata; null when there is no such conversation. */
  updateConversation(tenantId: string, id: string, metadata: Record<string, string>): Promise<ConversationRecord | null>;
  /** Deletes the conversation and all its items; false when there was none. */
  deleteConversation(tenantId: string, id: string): Promise<boolean>;
  /** Appends items; null when there is no such conversation. */
  addConversationItems(tenantId: string, id: string, items: readonly Item[]): Promise<Item[] | null>;
  /** Every item, oldest first; null when there is no such conversation. */
  getConversationItems(tenantId: string, id: string): Promise<Item[] | null>;
  /** Null when there is no such conversation. */
  listConversationItems(tenantId: string, id: string, options: ListOptions): Promise<ItemPage | null>;
  /** Null when there is no such conversation or item. */
  getConversationItem(tenantId: string, id: string, itemId: string): Promise<Item | null>;
  /**
   * The tenant's stored items with these ids, wherever they are: a visible
   * response's input or output, or a conversation. Ids not found are absent.
   */
  findItems(tenantId: string, ids: readonly string[]): Promise<Map<string, Item>>;
  /** False when there is no such conversation or item. */
  deleteConversationItem(tenantId: string, id: string, itemId: string): Promise<boolean>;

  /** Removes everything a tenant stored (the tenant was deleted: a new one of the same id must not inherit it). */
  deleteTenantData(tenantId: string): Promise<void>;

  /** Removes every expired response now; returns how many. */
  purgeExpired(): Promise<number>;
  /** Stops the purge timer and releases the store; idempotent. */
  close(): Promise<void>;
}
