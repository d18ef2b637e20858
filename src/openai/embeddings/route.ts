// POST /v1/embeddings: validate, reserve the tenant's quota, embed on the
// model's worker (its embedding context, see engine/embedder.ts), settle with
// the exact prompt tokens, answer.
import { Router } from "express";
import type { EmbedInput, EmbedOutcome, Usage } from "../../../engine/index.js";
import { ApiError, fromEngineError } from "../../errors.js";
import { engineTenant, type Tenant } from "../../tenants/types.js";
import { clientAbort, recordUsage, requireModel, type RouteDeps } from "../context.js";
import { QuotaGate } from "../runGeneration.js";
import { embeddingResponse, embedInputs, parseEmbeddingRequest, refuseEmbeddingParameters } from "./protocol.js";

export function embeddingsRoute(deps: RouteDeps): Router {
  const router = Router();
  router.post("/v1/embeddings", async (req, res) => {
    const tenant: Tenant = res.locals.tenant;
    const body = parseEmbeddingRequest(req.body);
    const inputs = embedInputs(body.input);
    const served = requireModel(deps, body.model);
    // Set at its first "ready" and kept across restarts; requireModel refuses a model never loaded.
    const info = served.engine.model;
    if (!info) throw new ApiError("engine_unavailable", "The inference engine is still loading the model; retry shortly.", null, 1);
    refuseEmbeddingParameters(body, info.embeddingSize);
    res.locals.model = body.model;

    // The reservation is a bound on the served model's count (embeddingTokenBound),
    // so the settled usage never exceeds what admission allowed.
    // Embeddings take no KV slot, so no place in the slots' queue (null). The
    // reservation stays "queued" in the tenant's books until settled: there
    // is no first output to mark the start, and a request the worker refuses
    // (bad token id, too long) or loses (restart) is then refunded whole.
    const gate = QuotaGate.open(deps.quota, null, deps.metrics, tenant, res, () => embeddingTokenBound(inputs));
    const abort = clientAbort(req, res);
    try {
      let outcome: EmbedOutcome;
      try {
        outcome = await served.engine.embed({ tenant: engineTenant(tenant), inputs }, abort.signal);
      } catch (err) {
        if (abort.signal.aborted) return; // the client left: nobody to answer
        throw err;
      }
      if ("error" in outcome) throw fromEngineError(outcome.error);
      const promptTokens = outcome.promptTokens.reduce((a, b) => a + b, 0);
      const usage: Usage = { promptTokens, completionTokens: 0, cachedTokens: 0 };
      gate.settle(usage);
      res.locals.usage = usage; // for the access log line
      recordUsage(deps, body.model, tenant.id, usage);
      res.json(embeddingResponse(body.model, outcome.vectors, promptTokens, body.encoding_format ?? "float"));
    } finally {
      gate.close();
    }
  });
  return router;
}

/**
 * Tokens reserved before the worker counts them: a bound no tokenizer can
 * beat, since a token of the served model (SentencePiece with byte fallback,
 * or BPE over bytes) covers at least one byte of the text, except for the
 * leading-space marker SentencePiece adds and the BOS and EOS the model may
 * add: UTF-8 bytes + 3 per text input (checked on the served models'
 * vocabularies: digits cost a token each, plus one), token inputs' length + 2.
 * The exact count is charged when the request ends, refunding the rest.
 */
export function embeddingTokenBound(inputs: readonly EmbedInput[]): number {
  let tokens = 0;
  for (const input of inputs) tokens += input.kind === "text" ? Buffer.byteLength(input.text, "utf8") + 3 : input.tokens.length + 2;
  return tokens;
}
