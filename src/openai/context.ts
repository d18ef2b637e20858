// What the OpenAI routes need from the server, passed in explicitly.
import type { Request, Response } from "express";
import type { EngineClient, ModelInfo, Usage } from "../../engine/index.js";
import type { QuotaLedger } from "../quota/ledger.js";
import { ApiError } from "../errors.js";
import type { Metrics } from "../metrics.js";

export interface RouteDeps {
  engine: EngineClient;
  /** Names a client may use for the served model: its id and any alias. */
  modelNames: () => string[];
  metrics: Metrics;
  fingerprint: string;
  /** Per-tenant rate limits and budgets (a tenant without limits passes untouched). */
  quota: QuotaLedger;
}

/** The served model for `name`, or 404 model_not_found (OpenAI's shape). */
export function requireModel(deps: RouteDeps, name: string): ModelInfo {
  const model = deps.engine.model;
  if (!model || !deps.modelNames().includes(name)) {
    throw new ApiError("model_not_found", `The model '${name}' does not exist or you do not have access to it.`, "model");
  }
  return model;
}

/** An AbortController that fires when the client goes away before the response is complete. */
export function clientAbort(req: Request, res: Response): AbortController {
  const ac = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) ac.abort();
  });
  req.once("aborted", () => ac.abort());
  return ac;
}

export function recordUsage(deps: RouteDeps, model: string, tenant: string, u: Usage): void {
  deps.metrics.promptTokens.inc({ model, tenant }, u.promptTokens);
  deps.metrics.completionTokens.inc({ model, tenant }, u.completionTokens);
  deps.metrics.cachedTokens.inc({ model, tenant }, u.cachedTokens);
  deps.metrics.tenantRequests.inc({ tenant, model });
  if (u.queueMs !== undefined) deps.metrics.queueSeconds.observe({ tenant }, u.queueMs / 1000);
}
