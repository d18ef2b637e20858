// POST /v1/embeddings: validate, reserve the tenant's quota, embed on the
// model's worker (its embedding context, see engine/embedder.ts), settle with
// the exact prompt tokens, answer.
import { Router } from "express";
import type { EmbedInput, EmbedOutcome, Usage } from "../../../engine/index.js";
import { ApiError, fromEngineError } from "../../errors.js";
import { engineTenant, type Tenant } from "../../tenants/types.js";
import { clientAbort, logUsage, recordUsage, requireModel, usageSubject, type RouteDeps } from "../context.js";
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
    const gate = await QuotaGate.open(deps.quota, null, deps.metrics, tenant, res, () => embeddingTokenBound(inputs, info.inputSpecials));
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
      await Promise.all([gate.settle(usage), logUsage(deps, usageSubject(res), served, "embeddings", usage)]);
      res.locals.usage = usage; // for the access log line
      recordUsage(deps, body.model, tenant.id, usage);
      res.json(embeddingResponse(body.model, outcome.vectors, promptTokens, body.encoding_format ?? "float"));
    } finally {
      void gate.close();
    }
  });
  return router;
}

/**
 * Tokens reserved before the worker counts them: a bound no tokenizer can
 * beat, so the settled usage never exceeds what admission allowed. A token
 * of the served model (SentencePiece with byte fallback, or BPE over bytes)
 * covers at least one byte of text, except the leading-space marker
 * SentencePiece adds; the model may add BOS and EOS. So a text input costs at
 * most its UTF-8 bytes + 1 + the specials (checked on the served models'
 * vocabularies: a digit is a token, plus one), and token ids exactly their
 * count plus the specials they lack. The exact count is charged at the end.
 */
export function embeddingTokenBound(inputs: readonly EmbedInput[], specials: { bos: number | null; eos: number | null } = { bos: -1, eos: -1 }): number {
  const both = (specials.bos !== null ? 1 : 0) + (specials.eos !== null ? 1 : 0);
  let tokens = 0;
  for (const input of inputs) {
    if (input.kind === "text") {
      tokens += Buffer.byteLength(input.text, "utf8") + 1 + both;
      continue;
    }
    const t = input.tokens;
    tokens += t.length;
    if (specials.bos !== null && t[0] !== specials.bos) tokens += 1;
    if (specials.eos !== null && t[t.length - 1] !== specials.eos) tokens += 1;
  }
  return tokens;
}
