// How a batch line is served: as an HTTP request to this server's own
// listener, so it takes exactly the path an interactive request takes (auth
// context, model allow-list, validation, quotas, the route's serving code),
// with two differences set by the middleware below: the tenant is the batch's
// (vouched for by a per-process secret, never by a key), and the request runs
// in the engine's batch class (requestClass.ts).
import crypto from "node:crypto";
import type { RequestHandler } from "express";
import { ApiError } from "../errors.js";
import { runAsBatch } from "../openai/requestClass.js";
import { secretsEqual } from "../tenants/keys.js";
import type { TenantRegistry } from "../tenants/registry.js";
import type { OnRefused } from "../middleware/auth.js";
import { ANONYMOUS_TENANT } from "../tenants/types.js";

export const DISPATCH_SECRET_HEADER = "x-llamux-batch-dispatch";
export const DISPATCH_TENANT_HEADER = "x-llamux-batch-tenant";
/** The batch a dispatched line belongs to (for its usage record); believed only with the secret. */
export const DISPATCH_BATCH_HEADER = "x-llamux-batch-id";

declare global {
  namespace Express {
    interface Locals {
      /** Set on a Batch API line dispatched by this server to itself. */
      batchLine?: boolean;
      /** The batch of such a line. */
      batchId?: string;
    }
  }
}

export function newDispatchSecret(): string {
  return crypto.randomBytes(32).toString("base64url");
}

/**
 * In place of `authenticate` for requests carrying the dispatch header: the
 * secret must match (else 401, whoever sent it) and the tenant must still
 * exist (a deleted tenant's batch lines fail).
 */
export function authenticateDispatch(
  secret: string,
  registry: TenantRegistry | null,
  authenticate: RequestHandler,
  onRefused: OnRefused = () => {},
): RequestHandler {
  return (req, res, next) => {
    const presented = req.headers[DISPATCH_SECRET_HEADER];
    if (presented === undefined) return authenticate(req, res, next);
    if (typeof presented !== "string" || !secretsEqual(presented, secret)) {
      onRefused(req, res, { credential: "batch_dispatch", reason: "incorrect", presented: typeof presented === "string" ? presented : null });
      throw new ApiError("invalid_api_key", "Incorrect batch dispatch credentials.");
    }
    const tenantId = req.headers[DISPATCH_TENANT_HEADER];
    const tenant = registry === null ? ANONYMOUS_TENANT : typeof tenantId === "string" ? registry.get(tenantId)?.tenant : undefined;
    if (!tenant) throw new ApiError("invalid_api_key", "The batch's tenant no longer exists.");
    res.locals.tenant = tenant;
    res.locals.batchLine = true;
    const batchId = req.headers[DISPATCH_BATCH_HEADER];
    if (typeof batchId === "string" && batchId.length > 0) res.locals.batchId = batchId;
    next();
  };
}

/** After the body is parsed: the rest of a dispatched line's handling runs as batch work. */
export const batchClass: RequestHandler = (_req, res, next) => {
  if (res.locals.batchLine) runAsBatch(next);
  else next();
};

export interface DispatchResult {
  status: number;
  requestId: string;
  body: unknown;
  /** From retry-after / retry-after-ms; null when absent. */
  retryAfterMs: number | null;
}

/** Serves one line through `baseUrl` (this server's listener). Throws only when no answer came (connection refused, aborted). */
export async function dispatchLine(
  baseUrl: string,
  secret: string,
  tenantId: string,
  endpoint: string,
  body: unknown,
  signal: AbortSignal,
  batchId?: string,
): Promise<DispatchResult> {
  const res = await fetch(`${baseUrl}${endpoint}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      [DISPATCH_SECRET_HEADER]: secret,
      [DISPATCH_TENANT_HEADER]: tenantId,
      ...(batchId !== undefined ? { [DISPATCH_BATCH_HEADER]: batchId } : {}),
    },
    body: JSON.stringify(body),
    signal,
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { error: { message: text.slice(0, 1000), type: "server_error", param: null, code: "internal_error" } };
  }
  const ms = res.headers.get("retry-after-ms");
  const s = res.headers.get("retry-after");
  const retryAfterMs = ms !== null && Number.isFinite(Number(ms)) ? Number(ms) : s !== null && Number.isFinite(Number(s)) ? Number(s) * 1000 : null;
  return { status: res.status, requestId: res.headers.get("x-request-id") ?? "", body: parsed, retryAfterMs };
}
