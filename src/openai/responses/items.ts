// Input items of the Responses and Conversations APIs: validated once at the
// edge into the items the store keeps, and rendered as chat messages for the
// engine. Three item types exist here: messages with text content, function
// calls and function call outputs; an item_reference names one of them that
// the tenant has stored. Reasoning items, built-in tool calls, images and
// files are refused with a 400 naming the parameter.
//
// As on OpenAI, keys an item or content part does not define are ignored
// (dropped), not refused: clients send back the output items they were given
// with fields of their own (the AI SDK's `phase`, a part's
// `prompt_cache_breakpoint`, an SDK's `parsed`), and must not get a 400 for it.
import { randomBytes } from "node:crypto";
import { z } from "zod";
import type { ChatMessage } from "../../../engine/index.js";
import { ApiError } from "../../errors.js";
import type { ContentPart, Item, MessageItem, MessageRole } from "../../store/conversationStore.js";
import { paramName, zodToApiError } from "../common.js";

export const MAX_INPUT_ITEMS = 2048;
export const MAX_CONTENT_PARTS = 1024;
export const MAX_ITEM_ID_LENGTH = 128;

/** Longest call_id and function name OpenAI accepts on an input item. */
export const MAX_CALL_ID_LENGTH = 64;
export const MAX_FUNCTION_NAME_LENGTH = 128;
/** Longest function_call_output text OpenAI accepts (10 MiB). */
export const MAX_FUNCTION_OUTPUT_LENGTH = 10_485_760;

/**
 * OpenAI-shaped ids: `resp_`, `msg_`, `conv_`, `fc_` (function call item),
 * `fco_` (its output), `call_` (a call's call_id), and 48 hex digits (192 random bits).
 */
export function newObjectId(prefix: "resp" | "msg" | "conv" | "fc" | "fco" | "call"): string {
  return `${prefix}_${randomBytes(24).toString("hex")}`;
}

const anyPart = z.object({ type: z.string({ error: "must be a string" }) }).passthrough();

const messageSchema = z.object({
  type: z.literal("message").optional(),
  id: z.string().min(1).max(MAX_ITEM_ID_LENGTH).nullish(),
  role: z.enum(["user", "assistant", "system", "developer"], { error: "must be one of user, assistant, system, developer" }),
  content: z.union([z.string(), z.array(anyPart).max(MAX_CONTENT_PARTS, `must have at most ${MAX_CONTENT_PARTS} parts`)], {
    error: "must be a string or an array of content parts",
  }),
  status: z.enum(["in_progress", "completed", "incomplete"]).nullish(),
});

const itemStatus = z.enum(["in_progress", "completed", "incomplete"]).optional();

const functionCallSchema = z.object({
  type: z.literal("function_call"),
  id: z.string().min(1).max(MAX_ITEM_ID_LENGTH).nullish(),
  call_id: z.string({ error: "must be a string" }).min(1).max(MAX_CALL_ID_LENGTH),
  name: z.string({ error: "must be a string" }).min(1).max(MAX_FUNCTION_NAME_LENGTH),
  arguments: z.string({ error: "must be a string" }),
  status: itemStatus.nullable(),
});

const functionCallOutputSchema = z.object({
  type: z.literal("function_call_output"),
  id: z.string().min(1).max(MAX_ITEM_ID_LENGTH).nullish(),
  call_id: z.string({ error: "must be a string" }).min(1).max(MAX_CALL_ID_LENGTH),
  output: z.union([z.string().max(MAX_FUNCTION_OUTPUT_LENGTH), z.array(anyPart).max(MAX_CONTENT_PARTS)], {
    error: "must be a string or an array of input_text parts",
  }),
  status: itemStatus.nullable(),
});

const itemReferenceSchema = z.object({
  type: z.literal("item_reference"),
  id: z.string({ error: "must be a string" }).min(1).max(MAX_ITEM_ID_LENGTH),
});

const inputTextPart = z.object({ type: z.literal("input_text"), text: z.string({ error: "must be a string" }) });
const outputTextPart = z.object({
  type: z.literal("output_text"),
  text: z.string({ error: "must be a string" }),
  // What a client sends back from a response's output; no effect on generation.
  annotations: z.array(z.unknown()).nullish(),
  logprobs: z.array(z.unknown()).nullish(),
});
const refusalPart = z.object({ type: z.literal("refusal"), refusal: z.string({ error: "must be a string" }) });

/** Part types of the spec that carry something other than text. */
const NON_TEXT_PARTS = new Set(["input_image", "input_file", "input_audio", "computer_screenshot"]);

/**
 * A validated item before ids are assigned: `id` is the client's own (an
 * output item sent back as input), or null.
 */
export type ParsedItem = WithClientId<Item>;
/** Each item type (distributed over the union) with the client's id or null. */
type WithClientId<T> = T extends Item ? Omit<T, "id"> & { id: string | null } : never;

/** A plain-string input is one user message. */
export function userText(text: string): ParsedItem {
  return { type: "message", id: null, role: "user", status: "completed", content: [{ type: "input_text", text }] };
}

/** An item_reference input item: the id of an item the tenant has stored, resolved by resolveItemReferences. */
export interface ItemReference {
  type: "item_reference";
  id: string;
}

/** An input item as sent: a full item, or a reference to a stored one. */
export type InputEntry = ParsedItem | ItemReference;

/** Validates input items; `at` is where the list sits in the body (["input"], ["items"]). */
export function parseInputItems(raw: readonly unknown[], at: readonly PropertyKey[]): InputEntry[] {
  return raw.map((item, i) => parseItem(item, [...at, i]));
}

/**
 * Replaces each item_reference with the item it names, found among the
 * tenant's own stored items (`find`: ids → the items found). A reference to
 * an id the tenant has no item for (unknown, expired, or another tenant's,
 * which reads the same) is a 400 naming where it sits.
 */
export async function resolveItemReferences(
  entries: readonly InputEntry[],
  find: (ids: string[]) => Promise<Map<string, Item>>,
  at: readonly PropertyKey[],
): Promise<ParsedItem[]> {
  const ids = entries.filter((e): e is ItemReference => e.type === "item_reference").map((e) => e.id);
  const found = ids.length === 0 ? new Map<string, Item>() : await find(ids);
  return entries.map((entry, i) => {
    if (entry.type !== "item_reference") return entry;
    const item = found.get(entry.id);
    if (!item) {
      const param = paramName([...at, i, "id"]);
      throw new ApiError("invalid_value", `Invalid '${param}': no item with id '${entry.id}' was found.`, param);
    }
    return item;
  });
}

function parseItem(raw: unknown, at: readonly PropertyKey[]): InputEntry {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ApiError("invalid_type", `Invalid '${paramName(at)}': must be an object.`, paramName(at));
  }
  const type = (raw as { type?: unknown }).type;
  if (type === "item_reference") {
    const parsed = itemReferenceSchema.safeParse(raw);
    if (!parsed.success) throw zodToApiError(parsed.error, raw, at);
    return { type: "item_reference", id: parsed.data.id };
  }
  if (type === "function_call") return parseFunctionCall(raw, at);
  if (type === "function_call_output") return parseFunctionCallOutput(raw, at);
  if (type !== undefined && type !== "message") {
    const param = paramName([...at, "type"]);
    throw new ApiError(
      "unsupported_parameter",
      `Unsupported input item type ${JSON.stringify(type)} in '${param}': llamux accepts message, function_call, function_call_output and item_reference items (no reasoning items or built-in tool calls).`,
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
  return { type: "message", id: m.id ?? null, role: m.role, status: m.status ?? "completed", content };
}

function parseFunctionCall(raw: object, at: readonly PropertyKey[]): ParsedItem {
  const parsed = functionCallSchema.safeParse(raw);
  if (!parsed.success) throw zodToApiError(parsed.error, raw, at);
  const c = parsed.data;
  return { type: "function_call", id: c.id ?? null, call_id: c.call_id, name: c.name, arguments: c.arguments, status: c.status ?? "completed" };
}

/** A function's output: a string, or input_text parts (joined); images and files are refused. */
function parseFunctionCallOutput(raw: object, at: readonly PropertyKey[]): ParsedItem {
  const parsed = functionCallOutputSchema.safeParse(raw);
  if (!parsed.success) throw zodToApiError(parsed.error, raw, at);
  const o = parsed.data;
  let output: string;
  if (typeof o.output === "string") output = o.output;
  else {
    output = o.output
      .map((part, j) => {
        const where = [...at, "output", j];
        if (part.type !== "input_text") {
          const param = paramName([...where, "type"]);
          throw new ApiError(
            "unsupported_parameter",
            `Unsupported content part type '${part.type}' in '${param}': a function's output may be text only.`,
            param,
          );
        }
        const text = inputTextPart.safeParse(part);
        if (!text.success) throw zodToApiError(text.error, part, where);
        return text.data.text;
      })
      .join("");
  }
  return { type: "function_call_output", id: o.id ?? null, call_id: o.call_id, output, status: o.status ?? "completed" };
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
  if (p.type === "output_text") return outputText(p.text, p.annotations ?? [], p.logprobs ?? []);
  return p;
}

const ID_PREFIX = { message: "msg", function_call: "fc", function_call_output: "fco" } as const;

/**
 * Gives each item its id: the client's own when it has one, else a new one
 * (msg_, fc_, fco_). Ids are unique within what a response reads and within a
 * conversation (lists page by them), so an id already in `taken` or repeated is a 400.
 */
export function withIds(items: readonly ParsedItem[], taken: ReadonlySet<string>, at: readonly PropertyKey[]): Item[] {
  const seen = new Set(taken);
  return items.map((item, i) => {
    let id = item.id;
    if (id === null) {
      id = newObjectId(ID_PREFIX[item.type]);
    } else if (seen.has(id)) {
      const param = paramName([...at, i, "id"]);
      throw new ApiError("invalid_value", `Invalid '${param}': an item with id '${id}' is already part of this context.`, param);
    }
    seen.add(id);
    return { ...item, id } as Item;
  });
}

/** The text a message item contributes to the prompt: its parts, joined. */
export function itemText(item: Pick<MessageItem, "content">): string {
  return item.content.map((p) => (p.type === "refusal" ? p.refusal : p.text)).join("");
}

/**
 * A context's items → the chat the template renders. Function calls join the
 * assistant turn just before them (the text the model wrote with them, or the
 * other calls of the same turn), as chat's assistant message with tool_calls;
 * a function's output is a `tool` turn.
 */
export function toChatMessages(items: readonly Item[]): ChatMessage[] {
  const messages: ChatMessage[] = [];
  for (const item of items) {
    if (item.type === "message") {
      messages.push({ role: item.role, content: itemText(item) });
    } else if (item.type === "function_call_output") {
      messages.push({ role: "tool", content: item.output });
    } else {
      const last = messages.at(-1);
      const call = { name: item.name, arguments: item.arguments };
      if (last?.role === "assistant") last.toolCalls = [...(last.toolCalls ?? []), call];
      else messages.push({ role: "assistant", content: "", toolCalls: [call] });
    }
  }
  return messages;
}
