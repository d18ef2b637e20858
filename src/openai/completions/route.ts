import { Router } from "express";
import type { Usage } from "../../../engine/index.js";
import { capMaxTokens } from "../../quota/capMaxTokens.js";
import { estimateCompletionTokens } from "../../quota/estimate.js";
import type { Tenant } from "../../tenants/types.js";
import { admitAll } from "../generation.js";
import { clientAbort, recordUsage, requireModel, type RouteDeps } from "../context.js";
import { QuotaGate } from "../quotaGate.js";
import { DEFAULT_COMPLETION_MAX_TOKENS, parseCompletionRequest, toEngineRequests } from "./protocol.js";
import { respondCompletion, streamCompletion } from "./serving.js";

export function completionsRoute(deps: RouteDeps): Router {
  const router = Router();
  router.post("/v1/completions", async (req, res) => {
    const tenant: Tenant = res.locals.tenant;
    const body = parseCompletionRequest(req.body);
    requireModel(deps, body.model);
    const maxTokens = capMaxTokens(tenant.limits, body.max_tokens ?? DEFAULT_COMPLETION_MAX_TOKENS);
    const engineReqs = toEngineRequests(body, tenant.id, tenant.scheduling.maxPriority).map((r) => ({ ...r, maxTokens }));
    // An array of prompts is one API request: one RPM unit, every prompt's tokens.
    const gate = QuotaGate.open(deps.quota, deps.metrics, tenant, res, estimateCompletionTokens(body.prompt, maxTokens));
    try {
      const abort = clientAbort(req, res);
      const choices = await admitAll(deps.engine, engineReqs, abort);
      gate.started();
      const meta = {
        model: body.model,
        fingerprint: deps.fingerprint,
        includeUsage: body.stream_options?.include_usage === true,
        onUsage: (u: Usage) => {
          gate.settle(u);
          recordUsage(deps, body.model, tenant.id, u);
        },
      };
      if (body.stream) await streamCompletion(res, choices, meta);
      else await respondCompletion(res, choices, meta);
    } finally {
      gate.close();
    }
  });
  return router;
}
