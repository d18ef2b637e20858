// The 404s of the stored objects. A missing id and another tenant's id get the
// same answer, so ids cannot be probed across tenants.
import { ApiError } from "../../errors.js";

export function responseNotFound(id: string): ApiError {
  return new ApiError("not_found", `No response found with id '${id}'.`, "response_id");
}

export function conversationNotFound(id: string, param: string): ApiError {
  return new ApiError("not_found", `Conversation with id '${id}' not found.`, param);
}

export function conversationItemNotFound(conversationId: string, itemId: string): ApiError {
  return new ApiError("not_found", `Item with id '${itemId}' not found in conversation '${conversationId}'.`, "item_id");
}
