// /v1/conversations request bodies: create {metadata?, items?} and update
// {metadata}; add items {items}. At most 20 items per request, as OpenAI.
import { z } from "zod";
import { ApiError } from "../../errors.js";
import { parseBody, samplingShape } from "../common.js";
import { parseInputItems, type InputEntry } from "../responses/items.js";

export const MAX_ITEMS_PER_REQUEST = 20;

const metadata = samplingShape.metadata;
const items = z
  .array(z.unknown(), { error: "must be an array of input items" })
  .max(MAX_ITEMS_PER_REQUEST, `must contain at most ${MAX_ITEMS_PER_REQUEST} items`);

const createSchema = z.object({ metadata, items: items.nullish() }).strict();
const updateSchema = z.object({ metadata }).strict();
const addItemsSchema = z.object({ items }).strict();

/** The SDK sends no body for `conversations.create()` without arguments: that is an empty request. */
const orEmpty = (body: unknown): unknown => (body === undefined || (typeof body === "object" && body !== null && Object.keys(body).length === 0) ? {} : body);

export function parseCreateConversation(raw: unknown): { metadata: Record<string, string>; items: InputEntry[] } {
  const body = parseBody(createSchema, orEmpty(raw));
  return { metadata: body.metadata ?? {}, items: body.items ? parseInputItems(body.items, ["items"]) : [] };
}

/** The new metadata replaces the old; null clears it. */
export function parseUpdateConversation(raw: unknown): { metadata: Record<string, string> } {
  const body = parseBody(updateSchema, raw);
  if (body.metadata === undefined) throw new ApiError("missing_required_parameter", "Missing required parameter: 'metadata'.", "metadata");
  return { metadata: body.metadata ?? {} };
}

export function parseAddItems(raw: unknown): InputEntry[] {
  const body = parseBody(addItemsSchema, raw);
  return parseInputItems(body.items, ["items"]);
}
