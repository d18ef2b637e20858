import { Router } from "express";
import type { Usage } from "../../../engine/index.js";
import { capMaxTokens } from "../../quota/capMaxTokens.js";
import { estimateChatTokens } from "../../quota/estimate.js";
import type { Tenant } from "../../tenants/types.js";
import { admitAll } from "../generation.js";
import { clientAbort, recordUsage, requireModel, type RouteDeps } from "../context.js";
import { QuotaGate } from "../quotaGate.js";
import { parseChatRequest, toEngineRequest } from "./protocol.js";
import { respondChat, streamChat } from "./serving.js";

export function chatRoute(deps: RouteDeps): Router {
  const router = Router();
  router.post("/v1/chat/completions", async (req, res) => {
    const tenant: Tenant = res.locals.tenant;
    const body = parseChatRequest(req.body);
    requireModel(deps, body.model);
    const engineReq = toEngineRequest(body, tenant.id, tenant.scheduling.maxPriority);
    engineReq.maxTokens = capMaxTokens(tenant.limits, engineReq.maxTokens);
    const gate = QuotaGate.open(deps.quota, deps.metrics, tenant, res, estimateChatTokens(body.messages, engineReq.maxTokens));
    try {
      const abort = clientAbort(req, res);
      const [choice] = await admitAll(deps.engine, [engineReq], abort);
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
      if (body.stream) await streamChat(res, choice!, meta);
      else await respondChat(res, choice!, meta);
    } finally {
      gate.close();
    }
  });
  return router;
}
