// The admin API: tenants and their API keys, under /admin. Mounted only when
// LLAMUX_ADMIN_KEY is set (otherwise every /admin route is a 404) and guarded by
// it. Bodies are validated once here (zod) and errors come from the catalogue,
// naming the parameter. Limits and scheduling use the same camelCase fields as
// the tenants file.
import express, { Router } from "express";
import { z } from "zod";
import { requireJsonBody } from "../middleware/security.js";
import { ApiError } from "../errors.js";
import { requireAdminKey } from "../middleware/auth.js";
import { parseBody } from "../openai/common.js";
import { limitsPatchSchema, newTenant, schedulingPatchSchema, tenantIdSchema, tenantProblem, type TenantPatch } from "../tenants/config.js";
import type { IssuedKey, TenantRegistry } from "../tenants/registry.js";
import type { ApiKeyRecord, TenantRecord } from "../tenants/store.js";
import { overReserved } from "../../engine/index.js";
import { tenantPolicy, type Tenant } from "../tenants/types.js";
import type { AuditLog } from "../audit/auditLog.js";
import { keyAuditDetails, tenantAuditDetails, tenantChange } from "../audit/adminEvents.js";
import { auditRoute } from "../audit/route.js";
import type { UsageLog } from "../usage/usageLog.js";
import { usageReportRoute } from "./usage.js";

export interface AdminDeps {
  tenants: TenantRegistry;
  adminKey: string;
  /** The engine's slot count once the model is loaded; reservations must fit in it. */
  slots: () => number | null;
  /** Records every change made here and every refused admin key; absent: not audited. */
  audit?: AuditLog | null;
  /** The usage log: GET /admin/usage/completions, /admin/usage/embeddings, /admin/costs (usage.ts); absent: not served. */
  usage?: UsageLog | null;
}

const ADMIN_BODY_LIMIT_BYTES = 64 * 1024;

const createTenantSchema = z.object({ id: tenantIdSchema, limits: limitsPatchSchema.optional(), scheduling: schedulingPatchSchema.optional() }).strict();
const patchTenantSchema = z.object({ limits: limitsPatchSchema.optional(), scheduling: schedulingPatchSchema.optional() }).strict();
const createKeySchema = z.object({ name: z.string().min(1).max(256).nullish() }).strict();

export function tenantJson(r: TenantRecord) {
  return {
    id: r.tenant.id,
    object: "tenant" as const,
    limits: r.tenant.limits,
    scheduling: r.tenant.scheduling,
    created_at: r.createdAtSeconds,
    updated_at: r.updatedAtSeconds,
  };
}

export function keyJson(k: ApiKeyRecord) {
  return {
    id: k.id,
    object: "api_key" as const,
    tenant_id: k.tenantId,
    prefix: k.prefix,
    name: k.name,
    created_at: k.createdAtSeconds,
    revoked_at: k.revokedAtSeconds,
  };
}

/** The only response that ever carries a key in plaintext. */
function issuedKeyJson({ record, key }: IssuedKey) {
  const { revoked_at: _, ...rest } = keyJson(record);
  return { ...rest, key };
}

const noTenant = (id: string) => new ApiError("not_found", `No tenant with id '${id}'.`);
const noKey = (tenantId: string, keyId: string) => new ApiError("not_found", `Tenant '${tenantId}' has no API key with id '${keyId}'.`);

/** Cross-field rules (reservedSlots <= maxSlots) as a 400 naming the field. */
function assertConsistent(t: Tenant): void {
  const problem = tenantProblem(t);
  if (problem) throw new ApiError("invalid_value", `Invalid '${problem.path}': ${problem.message}.`, problem.path);
}

export function adminRoute(deps: AdminDeps): Router {
  const { tenants } = deps;
  const audit = deps.audit ?? null;
  // Checked before the write, so the admin never gets a 200 for reservations
  // the engine would refuse (it would keep the old policies and only log it).
  const assertValid = (t: Tenant): void => {
    assertConsistent(t);
    const slots = deps.slots();
    if (slots === null) return;
    const after = [
      ...tenants
        .list()
        .map((r) => r.tenant)
        .filter((o) => o.id !== t.id),
      t,
    ].map(tenantPolicy);
    const reserved = overReserved(after, slots);
    if (reserved !== null) {
      throw new ApiError(
        "invalid_value",
        `Invalid 'scheduling.reservedSlots': tenants would reserve ${reserved} slots in all, but the engine has ${slots}.`,
        "scheduling.reservedSlots",
      );
    }
  };
  const router = Router();
  // Authenticate before reading a body: an unauthenticated caller costs no parsing.
  router.use(requireAdminKey(deps.adminKey, audit ? (req, res, refusal) => audit.refused(req, res, refusal) : undefined));
  router.use(requireJsonBody());
  router.use(express.json({ limit: ADMIN_BODY_LIMIT_BYTES, type: () => true }));

  // Usage and cost reports over every tenant.
  if (deps.usage) router.use(usageReportRoute(deps.usage, () => null));

  router.post("/tenants", async (req, res) => {
    const body = parseBody(createTenantSchema, req.body);
    const tenant = newTenant(body.id, body);
    assertValid(tenant);
    const record = await tenants.createTenant(tenant);
    if (!record) throw new ApiError("tenant_exists", `A tenant with id '${body.id}' already exists.`, "id");
    await audit?.record(req, res, "tenant.created", record.tenant.id, { data: tenantAuditDetails(record) });
    res.status(201).json(tenantJson(record));
  });

  router.get("/tenants", (_req, res) => {
    res.json({ object: "list", data: tenants.list().map(tenantJson) });
  });

  router.get("/tenants/:id", (req, res) => {
    const record = tenants.get(req.params.id);
    if (!record) throw noTenant(req.params.id);
    res.json(tenantJson(record));
  });

  router.patch("/tenants/:id", async (req, res) => {
    const patch: TenantPatch = parseBody(patchTenantSchema, req.body);
    const before = tenants.get(req.params.id);
    const record = await tenants.updateTenant(req.params.id, patch, assertValid);
    if (!record) throw noTenant(req.params.id);
    await audit?.record(req, res, "tenant.updated", record.tenant.id, tenantChange(before, record, patch));
    res.json(tenantJson(record));
  });

  router.delete("/tenants/:id", async (req, res) => {
    const before = tenants.get(req.params.id);
    if (!(await tenants.deleteTenant(req.params.id))) throw noTenant(req.params.id);
    await audit?.record(req, res, "tenant.deleted", req.params.id, { before: before ? tenantAuditDetails(before) : null });
    res.json({ id: req.params.id, object: "tenant.deleted", deleted: true });
  });

  router.post("/tenants/:id/keys", async (req, res) => {
    const body = parseBody(createKeySchema, req.body ?? {});
    const issued = await tenants.createKey(req.params.id, body.name ?? null);
    if (!issued) throw noTenant(req.params.id);
    await audit?.record(req, res, "api_key.created", issued.record.id, { data: keyAuditDetails(issued.record) });
    res.status(201).json(issuedKeyJson(issued));
  });

  router.get("/tenants/:id/keys", async (req, res) => {
    const keys = await tenants.listKeys(req.params.id);
    if (!keys) throw noTenant(req.params.id);
    res.json({ object: "list", data: keys.map(keyJson) });
  });

  router.post("/tenants/:id/keys/:keyId/rotate", async (req, res) => {
    const { id, keyId } = req.params;
    if (!tenants.get(id)) throw noTenant(id);
    const issued = await tenants.rotateKey(id, keyId);
    if (!issued) throw new ApiError("not_found", `Tenant '${id}' has no active API key with id '${keyId}' (a revoked key cannot be rotated).`);
    await audit?.record(req, res, "api_key.rotated", keyId, { tenant_id: id, replaced_by: keyAuditDetails(issued.record) });
    res.status(201).json(issuedKeyJson(issued));
  });

  router.delete("/tenants/:id/keys/:keyId", async (req, res) => {
    const { id, keyId } = req.params;
    if (!tenants.get(id)) throw noTenant(id);
    const revoked = await tenants.revokeKey(id, keyId);
    if (!revoked) throw noKey(id, keyId);
    await audit?.record(req, res, "api_key.revoked", keyId, { data: keyAuditDetails(revoked) });
    res.json({ id: revoked.id, object: "api_key.revoked", revoked: true });
  });

  if (audit) router.use(auditRoute(audit.store));

  return router;
}
