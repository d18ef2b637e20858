import { Router } from "express";
import { capMaxTokens } from "../../quota/capMaxTokens.js";
import { estimateChatTokens, toolPromptParts } from "../../quota/estimate.js";
import type { Tenant } from "../../tenants/types.js";
import { requireModel, type RouteDeps } from "../context.js";
import { forkChoices } from "../choices.js";
import { runGeneration } from "../runGeneration.js";
import { chatOutput, parseChatRequest, toEngineRequest } from "./protocol.js";
import { respondChat, streamChat } from "./serving.js";

export function chatRoute(deps: RouteDeps): Router {
  const router = Router();
  router.post("/v1/chat/completions", async (req, res) => {
    const tenant: Tenant = res.locals.tenant;
    const body = parseChatRequest(req.body);
    const served = requireModel(deps, body.model);
    const output = chatOutput(body);
    const { tools } = output;
    const engineReq = toEngineRequest(body, tenant.id, tenant.scheduling.maxPriority, output);
    engineReq.maxTokens = capMaxTokens(tenant.limits, engineReq.maxTokens);
    const n = body.n ?? 1;
    const generation = {
      tenant,
      model: body.model,
      served,
      includeUsage: body.stream_options?.include_usage === true,
      engineReqs: forkChoices(engineReq, n),
      // The tool list and earlier calls are prompt text too.
      estimate: () =>
        estimateChatTokens(
          [
            ...body.messages,
            ...toolPromptParts(
              tools.promptTools,
              body.messages.flatMap((m) => (m.tool_calls ?? []).map((c) => c.function)),
            ),
          ],
          engineReq.maxTokens,
          { choices: n },
        ),
    };
    await runGeneration(deps, req, res, generation, (choices, meta) =>
      body.stream ? streamChat(res, choices, meta, tools.parsing) : respondChat(res, choices, meta, tools.parsing),
    );
  });
  return router;
}
