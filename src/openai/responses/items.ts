// Input items of the Responses and Conversations APIs: validated once at the
// edge into the message items the store keeps, and rendered as chat messages
// for the engine. Only message items with text content exist here: tool calls,
// reasoning items, item references, images and files are refused with a 400
// naming the parameter.
import { randomBytes } from "node:crypto";
import { z } from "zod";
import type { ChatMessage } from "../../../engine/index.js";
import { ApiError } from "../../errors.js";
import type { ContentPart, ItemStatus, MessageItem, MessageRole } from "../../store/conversationStore.js";
import { paramName, zodToApiError } from "../common.js";

export const MAX_INPUT_ITEMS = 2048;
export const MAX_CONTENT_PARTS = 1024;
export const MAX_ITEM_ID_LENGTH = 128;

/** OpenAI-shaped ids: `resp_`, `msg_`, `conv_` and 48 hex digits (192 random bits). */
export function newObjectId(prefix: "resp" | "msg" | "conv"): string {
  return `${prefix}_${randomBytes(24).toString("hex")}`;
}

const anyPart = z.object({ type: z.string({ error: "must be a string" }) }).passthrough();

const messageSchema = z
  .object({
    type: z.literal("message").optional(),
    id: z.string().min(1).max(MAX_ITEM_ID_LENGTH).optional(),
    role: z.enum(["user", "assistant", "system", "developer"], { error: "must be one of user, assistant, system, developer" }),
    content: z.union([z.string(), z.array(anyPart).max(MAX_CONTENT_PARTS, `must have at most ${MAX_CONTENT_PARTS} parts`)], {
      error: "must be a string or an array of content parts",
    }),
    status: z.enum(["in_progress", "completed", "incomplete"]).optional(),
  })
  .strict();

const inputTextPart = z.object({ type: z.literal("input_text"), text: z.string({ error: "must be a string" }) }).strict();
const outputTextPart = z
  .object({
    type: z.literal("output_text"),
    text: z.string({ error: "must be a string" }),
    // What a client sends back from a response's output; no effect on generation.
    annotations: z.array(z.unknown()).optional(),
    logprobs: z.array(z.unknown()).optional(),
  })
  .strict();
const refusalPart = z.object({ type: z.literal("refusal"), refusal: z.string({ error: "must be a string" }) }).strict();

/** Part types of the spec that carry something other than text. */
const NON_TEXT_PARTS = new Set(["input_image", "input_file", "input_audio", "computer_screenshot"]);

/** A validated message item, before ids are assigned. */
export interface ParsedItem {
  /** The client's own id (an output message sent back as input), or null. */
  id: string | null;
  role: MessageRole;
  status: ItemStatus;
  content: ContentPart[];
}

/** A plain-string input is one user message. */
export function userText(text: string): ParsedItem {
  return { id: null, role: "user", status: "completed", content: [{ type: "input_text", text }] };
}

/** Validates input items; `at` is where the list sits in the body (["input"], ["items"]). */
export function parseInputItems(raw: readonly unknown[], at: readonly PropertyKey[]): ParsedItem[] {
  return raw.map((item, i) => parseItem(item, [...at, i]));
}

function parseItem(raw: unknown, at: readonly PropertyKey[]): ParsedItem {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ApiError("invalid_type", `Invalid '${paramName(at)}': must be an object.`, paramName(at));
  }
  const type = (raw as { type?: unknown }).type;
  if (type !== undefined && type !== "message") {
    const param = paramName([...at, "type"]);
    throw new ApiError(
      "unsupported_parameter",
      `Unsupported input item type ${JSON.stringify(type)} in '${param}': llamux accepts message items only (no tool calls, tool outputs, reasoning items or item references).`,
      param,
    );
  }
  const parsed = messageSchema.safeParse(raw);
  if (!parsed.success) throw zodToApiError(parsed.error, raw, at);
  const m = parsed.data;
  const content =
    typeof m.content === "string"
      ? [m.role === "assistant" ? outputText(m.content) : ({ type: "input_text", text: m.content } as const)]
      : m.content.map((part, j) => parsePart(part, m.role, [...at, "content", j]));
  return { id: m.id ?? null, role: m.role, status: m.status ?? "completed", content };
}

function outputText(text: string, annotations: unknown[] = [], logprobs: unknown[] = []): ContentPart {
  return { type: "output_text", text, annotations, logprobs };
}

function parsePart(part: { type: string }, role: MessageRole, at: readonly PropertyKey[]): ContentPart {
  const allowed = role === "assistant" ? ["output_text", "refusal"] : ["input_text"];
  if (!allowed.includes(part.type)) {
    const param = paramName([...at, "type"]);
    if (NON_TEXT_PARTS.has(part.type)) {
      throw new ApiError("unsupported_parameter", `Unsupported content part type '${part.type}' in '${param}': this model accepts text only.`, param);
    }
    throw new ApiError(
      "invalid_value",
      `Invalid value: '${part.type}' in '${param}'. Supported values for role '${role}' are: ${allowed.map((t) => `'${t}'`).join(" and ")}.`,
      param,
    );
  }
  const schema = part.type === "input_text" ? inputTextPart : part.type === "output_text" ? outputTextPart : refusalPart;
  const parsed = schema.safeParse(part);
  if (!parsed.success) throw zodToApiError(parsed.error, part, at);
  const p = parsed.data;
  if (p.type === "output_text") return outputText(p.text, p.annotations, p.logprobs);
  return p;
}

/**
 * Gives each item its id: the client's own when it has one, else a new msg_
 * id. Ids are unique within what a response reads and within a conversation
 * (lists page by them), so an id already in `taken` or repeated is a 400.
 */
export function withIds(items: readonly ParsedItem[], taken: ReadonlySet<string>, at: readonly PropertyKey[]): MessageItem[] {
  const seen = new Set(taken);
  return items.map((item, i) => {
    let id = item.id;
    if (id === null) {
      id = newObjectId("msg");
    } else if (seen.has(id)) {
      const param = paramName([...at, i, "id"]);
      throw new ApiError("invalid_value", `Invalid '${param}': an item with id '${id}' is already part of this context.`, param);
    }
    seen.add(id);
    return { type: "message", id, role: item.role, status: item.status, content: item.content };
  });
}

/** The text a message item contributes to the prompt: its parts, joined. */
export function itemText(item: Pick<MessageItem, "content">): string {
  return item.content.map((p) => (p.type === "refusal" ? p.refusal : p.text)).join("");
}

export function toChatMessage(item: MessageItem): ChatMessage {
  return { role: item.role, content: itemText(item) };
}
