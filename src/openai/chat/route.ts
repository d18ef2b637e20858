import { Router } from "express";
import { admitAll } from "../generation.js";
import { clientAbort, recordUsage, requireModel, type RouteDeps } from "../context.js";
import { parseChatRequest, toEngineRequest } from "./protocol.js";
import { respondChat, streamChat } from "./serving.js";

export function chatRoute(deps: RouteDeps): Router {
  const router = Router();
  router.post("/v1/chat/completions", async (req, res) => {
    const body = parseChatRequest(req.body);
    requireModel(deps, body.model);
    const engineReq = toEngineRequest(body, res.locals.tenant.id);
    const abort = clientAbort(req, res);
    const [choice] = await admitAll(deps.engine, [engineReq], abort);
    const meta = {
      model: body.model,
      fingerprint: deps.fingerprint,
      includeUsage: body.stream_options?.include_usage === true,
      onUsage: (u: Parameters<typeof recordUsage>[2]) => recordUsage(deps, body.model, u),
    };
    if (body.stream) await streamChat(res, choice!, meta);
    else await respondChat(res, choice!, meta);
  });
  return router;
}
