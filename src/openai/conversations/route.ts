// /v1/conversations: create, retrieve, update metadata, delete; list, add,
// retrieve and delete items. A conversation belongs to the tenant that
// created it: any other tenant gets the same 404 as for a missing id.
import { Router } from "express";
import type { ConversationRecord, ConversationStore } from "../../store/conversationStore.js";
import { newObjectId, resolveItemReferences, withIds, type ParsedItem } from "../responses/items.js";
import { listJson, parseListQuery, refuseInclude } from "../responses/list.js";
import { conversationItemNotFound, conversationNotFound } from "../responses/notFound.js";
import { parseAddItems, parseCreateConversation, parseUpdateConversation } from "./protocol.js";

function conversationJson(c: ConversationRecord) {
  return { id: c.id, object: "conversation" as const, created_at: c.createdAtSeconds, metadata: c.metadata };
}

/** Ids the client gave that the conversation already holds (a repeat is a 400: lists page by id). */
async function takenIds(store: ConversationStore, tenantId: string, conversationId: string, items: readonly ParsedItem[]): Promise<Set<string>> {
  const taken = new Set<string>();
  for (const item of items) {
    if (item.id !== null && (await store.getConversationItem(tenantId, conversationId, item.id))) taken.add(item.id);
  }
  return taken;
}

export function conversationsRoute(store: ConversationStore): Router {
  const router = Router();
  const notFound = (id: string) => conversationNotFound(id, "conversation_id");

  router.post("/v1/conversations", async (req, res) => {
    const { metadata, items: entries } = parseCreateConversation(req.body);
    const items = await resolveItemReferences(entries, (ids) => store.findItems(res.locals.tenant.id, ids), ["items"]);
    const record: ConversationRecord = { id: newObjectId("conv"), createdAtSeconds: Math.floor(Date.now() / 1000), metadata };
    const created = await store.createConversation(res.locals.tenant.id, record, withIds(items, new Set(), ["items"]));
    // A load balancer learns which replica holds the conversation from this
    // header, so its turns go there (docs/cluster.md).
    res.setHeader("x-llamux-conversation-id", created.id);
    res.json(conversationJson(created));
  });

  router.get("/v1/conversations/:id", async (req, res) => {
    const found = await store.getConversation(res.locals.tenant.id, req.params.id);
    if (!found) throw notFound(req.params.id);
    res.json(conversationJson(found));
  });

  router.post("/v1/conversations/:id", async (req, res) => {
    const { metadata } = parseUpdateConversation(req.body);
    const updated = await store.updateConversation(res.locals.tenant.id, req.params.id, metadata);
    if (!updated) throw notFound(req.params.id);
    res.json(conversationJson(updated));
  });

  router.delete("/v1/conversations/:id", async (req, res) => {
    if (!(await store.deleteConversation(res.locals.tenant.id, req.params.id))) throw notFound(req.params.id);
    res.json({ id: req.params.id, object: "conversation.deleted", deleted: true });
  });

  router.get("/v1/conversations/:id/items", async (req, res) => {
    const options = parseListQuery(req.query);
    const page = await store.listConversationItems(res.locals.tenant.id, req.params.id, options);
    if (!page) throw notFound(req.params.id);
    res.json(listJson(page));
  });

  router.post("/v1/conversations/:id/items", async (req, res) => {
    refuseInclude(req.query);
    const tenantId = res.locals.tenant.id;
    const entries = parseAddItems(req.body);
    if (!(await store.getConversation(tenantId, req.params.id))) throw notFound(req.params.id);
    const parsed = await resolveItemReferences(entries, (ids) => store.findItems(tenantId, ids), ["items"]);
    const items = withIds(parsed, await takenIds(store, tenantId, req.params.id, parsed), ["items"]);
    const added = await store.addConversationItems(tenantId, req.params.id, items);
    if (!added) throw notFound(req.params.id);
    res.json(listJson({ kind: "page", items: added, hasMore: false }));
  });

  router.get("/v1/conversations/:id/items/:itemId", async (req, res) => {
    refuseInclude(req.query);
    const tenantId = res.locals.tenant.id;
    if (!(await store.getConversation(tenantId, req.params.id))) throw notFound(req.params.id);
    const item = await store.getConversationItem(tenantId, req.params.id, req.params.itemId);
    if (!item) throw conversationItemNotFound(req.params.id, req.params.itemId);
    res.json(item);
  });

  router.delete("/v1/conversations/:id/items/:itemId", async (req, res) => {
    const tenantId = res.locals.tenant.id;
    const conversation = await store.getConversation(tenantId, req.params.id);
    if (!conversation) throw notFound(req.params.id);
    if (!(await store.deleteConversationItem(tenantId, req.params.id, req.params.itemId))) {
      throw conversationItemNotFound(req.params.id, req.params.itemId);
    }
    res.json(conversationJson(conversation));
  });

  return router;
}
