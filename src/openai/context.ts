// What the OpenAI routes need from the server, passed in explicitly.
import type { Request, Response } from "express";
import type { Usage } from "../../engine/index.js";
import type { Quota } from "../quota/quota.js";
import { ApiError } from "../errors.js";
import type { Metrics } from "../metrics.js";
import { modelState, type ServedModel, type ServedModels } from "../servedModels.js";
import { newUsageRecordId, type UsageKind, type UsageLog } from "../usage/usageLog.js";

export interface RouteDeps {
  /** The served models, each with its engine and queue, found by id or alias. */
  models: ServedModels;
  metrics: Metrics;
  fingerprint: string;
  /** Per-tenant rate limits and budgets (a tenant without limits passes untouched). */
  quota: Quota;
  /** A request with no output this long after arrival is shed (503 queue_timeout); 0: never. */
  queueTimeoutMs: number;
  /** Per-request usage records for the usage and cost reports; null or absent: none kept. */
  usageLog?: UsageLog | null;
}

/**
 * The served model called `name`: 404 model_not_found when no model has that
 * name, 503 model_not_loaded when it is configured but its worker is still
 * loading it or could not load it. A model whose worker is restarting after a
 * crash is returned: its engine answers engine_unavailable, as before.
 */
export function requireModel(deps: RouteDeps, name: string): ServedModel {
  const served = deps.models.find(name);
  if (!served) {
    throw new ApiError("model_not_found", `The model '${name}' does not exist or you do not have access to it.`, "model");
  }
  const state = modelState(served);
  if (state === "loading") {
    throw new ApiError("model_not_loaded", `The model '${name}' is configured but not loaded yet: it is still loading. Retry shortly.`, "model", 1);
  }
  if (state === "failed") {
    throw new ApiError(
      "model_not_loaded",
      `The model '${name}' is configured but could not be loaded (${served.loadError}). Ask the operator to check the server's model configuration.`,
      "model",
    );
  }
  return served;
}

/** The abort reason clientAbort gives, telling a client that left from the server cancelling its own work. */
export const CLIENT_LEFT = "client_left";

/** An AbortController that fires (reason CLIENT_LEFT) when the client goes away before the response is complete. */
export function clientAbort(req: Request, res: Response): AbortController {
  const ac = new AbortController();
  // A client that hung up while its body was being read is gone before we
  // get here, and "close" does not fire twice.
  if (res.closed && !res.writableFinished) ac.abort(CLIENT_LEFT);
  res.once("close", () => {
    if (!res.writableFinished) ac.abort(CLIENT_LEFT);
  });
  req.once("aborted", () => ac.abort(CLIENT_LEFT));
  return ac;
}

export function recordUsage(deps: RouteDeps, model: string, tenant: string, u: Usage): void {
  deps.metrics.promptTokens.inc({ model, tenant }, u.promptTokens);
  deps.metrics.completionTokens.inc({ model, tenant }, u.completionTokens);
  deps.metrics.cachedTokens.inc({ model, tenant }, u.cachedTokens);
  if (u.queueMs !== undefined) deps.metrics.queueSeconds.observe({ tenant }, u.queueMs / 1000);
}

/** Whose usage a request is: its tenant, the key it came with, the batch it is a line of. */
export interface UsageSubject {
  tenantId: string;
  apiKeyId: string | null;
  batchId: string | null;
}

/** The subject of the request `res` answers (read when the request starts: a background response outlives it). */
export function usageSubject(res: Response): UsageSubject {
  return { tenantId: res.locals.tenant.id, apiKeyId: res.locals.apiKeyId ?? null, batchId: res.locals.batchId ?? null };
}

/**
 * Writes the usage record of a request whose usage object is known, under the
 * served model's id and its price now. Awaited before the response's last
 * bytes, so what a client was told it used is in the log (or, for a
 * networked log whose database is away, buffered) before it can ask for a report.
 */
export function logUsage(deps: RouteDeps, who: UsageSubject, served: ServedModel, kind: UsageKind, u: Usage): Promise<void> {
  if (!deps.usageLog) return Promise.resolve();
  return deps.usageLog.record({
    id: newUsageRecordId(),
    atSeconds: Math.floor(Date.now() / 1000),
    kind,
    tenantId: who.tenantId,
    apiKeyId: who.apiKeyId,
    model: served.id,
    batchId: who.batchId,
    requests: 1,
    inputTokens: u.promptTokens,
    cachedTokens: u.cachedTokens,
    outputTokens: u.completionTokens,
    price: served.price ?? null,
  });
}
