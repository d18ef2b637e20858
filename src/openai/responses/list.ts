// Cursor-paged item lists (GET /v1/responses/{id}/input_items and GET
// /v1/conversations/{id}/items): `limit` 1..100 (default 20), `order` asc|desc
// (default desc, as OpenAI), `after` an item id. The openai SDK pages by
// sending the last id it got as `after` while has_more is true.
import { z } from "zod";
import { ApiError } from "../../errors.js";
import type { Item, ItemPage, ListOptions } from "../../store/conversationStore.js";
import { zodToApiError } from "../common.js";

export const MAX_LIST_LIMIT = 100;

const int = z.preprocess(
  (v) => (typeof v === "string" && /^-?\d+$/.test(v.trim()) ? Number(v) : v),
  z.number({ error: "must be an integer" }).int("must be an integer"),
);

const listQuerySchema = z.object({
  limit: int.pipe(z.number().min(1).max(MAX_LIST_LIMIT)).optional(),
  order: z.enum(["asc", "desc"], { error: "must be one of asc, desc" }).optional(),
  after: z.string({ error: "must be a string" }).min(1).optional(),
});

/** Reads the list options of a query string; `include` (extra output data) is refused. */
export function parseListQuery(query: Record<string, unknown>): ListOptions {
  refuseInclude(query);
  const parsed = listQuerySchema.safeParse({ limit: query.limit, order: query.order, after: query.after });
  if (!parsed.success) throw zodToApiError(parsed.error, query);
  return { limit: parsed.data.limit ?? 20, order: parsed.data.order ?? "desc", after: parsed.data.after ?? null };
}

/** `include` asks for data llamux never produces (logprobs, tool results, images): refused unless empty. */
export function refuseInclude(query: Record<string, unknown>): void {
  const include = query.include ?? query["include[]"];
  if (include === undefined || include === "" || (Array.isArray(include) && include.length === 0)) return;
  throw new ApiError("unsupported_parameter", "Unsupported parameter: 'include' is not supported: llamux has no additional output data to include.", "include");
}

/** OpenAI's list object, or 400 naming `after` when it is not an id of the list. */
export function listJson(page: ItemPage): { object: "list"; data: Item[]; first_id: string | null; last_id: string | null; has_more: boolean } {
  if (page.kind === "after_not_found") {
    throw new ApiError("invalid_value", "Invalid 'after': no item with this id in the list.", "after");
  }
  return {
    object: "list",
    data: page.items,
    first_id: page.items[0]?.id ?? null,
    last_id: page.items.at(-1)?.id ?? null,
    has_more: page.hasMore,
  };
}
