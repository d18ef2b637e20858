import { Router } from "express";
import { capMaxTokens } from "../../quota/capMaxTokens.js";
import { estimateCompletionTokens } from "../../quota/estimate.js";
import type { Tenant } from "../../tenants/types.js";
import { requireModel, type RouteDeps } from "../context.js";
import { forkChoices } from "../choices.js";
import { runGeneration } from "../runGeneration.js";
import { DEFAULT_COMPLETION_MAX_TOKENS, parseCompletionRequest, toEngineRequests } from "./protocol.js";
import { respondCompletion, streamCompletion } from "./serving.js";

export function completionsRoute(deps: RouteDeps): Router {
  const router = Router();
  router.post("/v1/completions", async (req, res) => {
    const tenant: Tenant = res.locals.tenant;
    const body = parseCompletionRequest(req.body);
    const served = requireModel(deps, body.model);
    const maxTokens = capMaxTokens(tenant.limits, body.max_tokens ?? DEFAULT_COMPLETION_MAX_TOKENS);
    const n = body.n ?? 1;
    const generation = {
      tenant,
      model: body.model,
      served,
      includeUsage: body.stream_options?.include_usage === true,
      // n choices per prompt, in OpenAI's order: index = promptIndex × n + j.
      engineReqs: toEngineRequests(body, tenant.id, tenant.scheduling.maxPriority).flatMap((r) => forkChoices({ ...r, maxTokens }, n)),
      // An array of prompts is one API request: one RPM unit, every prompt's tokens.
      estimate: () => estimateCompletionTokens(body.prompt, maxTokens, n),
    };
    await runGeneration(deps, req, res, generation, (choices, meta) =>
      body.stream ? streamCompletion(res, choices, meta, n) : respondCompletion(res, choices, meta, n),
    );
  });
  return router;
}
