// GET /v1/models and /v1/models/{id}: every served model the caller's tenant
// may use, under its id and each alias. A model still loading (or that failed
// to) is listed without its details, so clients see what is configured. A model
// the tenant may not use is not listed, and GET /v1/models/{id} answers 404 for
// it as for a model that does not exist (as OpenAI does for models you cannot see).
import { Router } from "express";
import { ApiError } from "../../errors.js";
import { isModelAllowed } from "../../middleware/auth.js";
import type { Tenant } from "../../tenants/types.js";
import { modelState, type ServedModel } from "../../servedModels.js";
import type { RouteDeps } from "../context.js";

export function modelsRoute(deps: RouteDeps, startedAtSeconds: number): Router {
  const router = Router();
  const card = (name: string, served: ServedModel) => {
    const m = served.engine.model;
    return {
      id: name,
      object: "model" as const,
      created: startedAtSeconds,
      owned_by: "llamux",
      meta: {
        state: modelState(served),
        ...(m ? { context_length: m.contextPerSlot, slots: m.slots, vocab_size: m.vocabSize, chat_template: m.chatTemplate, synthetic: m.synthetic } : {}),
      },
    };
  };
  const visible = (tenant: Tenant, name: string) => isModelAllowed(tenant, name, deps.models.namesOf(name) ?? []);
  router.get("/v1/models", (_req, res) => {
    const tenant: Tenant = res.locals.tenant;
    const names = deps.models.names().filter((name) => visible(tenant, name));
    res.json({ object: "list", data: names.map((name) => card(name, deps.models.find(name)!)) });
  });
  router.get("/v1/models/:id", (req, res) => {
    const id = req.params.id;
    const served = deps.models.find(id);
    if (!served || !visible(res.locals.tenant, id)) {
      throw new ApiError("model_not_found", `The model '${id}' does not exist or you do not have access to it.`, "model");
    }
    res.json(card(id, served));
  });
  return router;
}
