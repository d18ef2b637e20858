// What the OpenAI routes need from the server, passed in explicitly.
import type { Request, Response } from "express";
import type { EngineClient, ModelInfo, Usage } from "../../engine/index.js";
import type { QuotaLedger } from "../quota/ledger.js";
import type { ServerQueue } from "../quota/serverQueue.js";
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
  /** The server-wide bound on requests waiting for a slot. */
  queue: ServerQueue;
  /** A request with no output this long after arrival is shed (503 queue_timeout); 0: never. */
  queueTimeoutMs: number;
}

/** The served model for `name`, or 404 model_not_found (OpenAI's shape). */
export function requireModel(deps: RouteDeps, name: string): ModelInfo {
  const model = deps.engine.model;
  if (!model || !deps.modelNames().includes(name)) {
    throw new ApiError("model_not_found", `The model '${name}' does not exist or you do not have access to it.`, "model");
  }
  return model;
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
