// GET /admin/audit: the audit log, newest first, in the shape of OpenAI's
// GET /organization/audit_logs. Mounted inside the admin router, so the admin
// key guards it. Each record carries its event's details under a key named
// after its type, as OpenAI's do, and its place in the hash chain.
import { Router } from "express";
import type { AuditStore } from "./auditStore.js";
import { parseAuditQuery } from "./query.js";
import { auditId, type AuditRecord } from "./record.js";

export function auditRecordJson(r: AuditRecord) {
  return {
    id: auditId(r.seq),
    object: "audit_log" as const,
    type: r.type,
    effective_at: Math.floor(r.effectiveAtMs / 1000),
    actor: { type: r.actor.type, id: r.actor.id, ip_address: r.actor.ipAddress },
    request_id: r.requestId,
    [r.type]: r.resourceId === null ? r.details : { id: r.resourceId, ...r.details },
    hash: r.hash,
    prev_hash: r.prevHash,
  };
}

export function auditRoute(store: AuditStore): Router {
  const router = Router();
  router.get("/audit", async (req, res) => {
    const at = req.originalUrl.indexOf("?");
    const query = parseAuditQuery(at < 0 ? "" : req.originalUrl.slice(at + 1));
    const page = await store.list(query);
    const data = page.records.map(auditRecordJson);
    res.json({ object: "list", data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: page.hasMore });
  });
  return router;
}
