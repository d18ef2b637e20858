import { Router } from "express";
import { admitAll } from "../generation.js";
import { clientAbort, recordUsage, requireModel, type RouteDeps } from "../context.js";
import { parseCompletionRequest, toEngineRequests } from "./protocol.js";
import { respondCompletion, streamCompletion } from "./serving.js";

export function completionsRoute(deps: RouteDeps): Router {
  const router = Router();
  router.post("/v1/completions", async (req, res) => {
    const body = parseCompletionRequest(req.body);
    requireModel(deps, body.model);
    const abort = clientAbort(req, res);
    const choices = await admitAll(deps.engine, toEngineRequests(body, res.locals.tenant.id), abort);
    const meta = {
      model: body.model,
      fingerprint: deps.fingerprint,
      includeUsage: body.stream_options?.include_usage === true,
      onUsage: (u: Parameters<typeof recordUsage>[2]) => recordUsage(deps, body.model, u),
    };
    if (body.stream) await streamCompletion(res, choices, meta);
    else await respondCompletion(res, choices, meta);
  });
  return router;
}
