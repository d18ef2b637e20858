// GET /v1/models and /v1/models/{id}: the served model under its id and aliases.
import { Router } from "express";
import { ApiError } from "../../errors.js";
import type { RouteDeps } from "../context.js";

export function modelsRoute(deps: RouteDeps, startedAtSeconds: number): Router {
  const router = Router();
  const card = (id: string) => {
    const m = deps.engine.model;
    return {
      id,
      object: "model" as const,
      created: startedAtSeconds,
      owned_by: "llamux",
      ...(m ? { meta: { context_length: m.contextPerSlot, slots: m.slots, vocab_size: m.vocabSize, chat_template: m.chatTemplate, synthetic: m.synthetic } } : {}),
    };
  };
  router.get("/v1/models", (_req, res) => {
    res.json({ object: "list", data: deps.modelNames().map(card) });
  });
  router.get("/v1/models/:id", (req, res) => {
    const id = req.params.id;
    if (!deps.modelNames().includes(id)) {
      throw new ApiError("model_not_found", `The model '${id}' does not exist or you do not have access to it.`, "model");
    }
    res.json(card(id));
  });
  return router;
}
