// The OpenTelemetry GenAI semantic conventions' attributes for a generation
// request's span: what was asked (operation, model, the main parameters) and,
// once the engine reports it, what it used. Never the prompt or the output.
import type { Attributes } from "@opentelemetry/api";
import type { EngineRequest, Usage } from "../../engine/index.js";

/** gen_ai.operation.name by endpoint (the Responses API is a chat). */
export function genAiOperation(path: string): string {
  if (path === "/v1/completions") return "text_completion";
  if (path === "/v1/embeddings") return "embeddings";
  return "chat";
}

export function genAiRequestAttributes(path: string, model: string, req: EngineRequest | undefined): Attributes {
  const a: Attributes = { "gen_ai.operation.name": genAiOperation(path), "gen_ai.provider.name": "llamux", "gen_ai.request.model": model };
  if (!req) return a;
  if (req.maxTokens !== null) a["gen_ai.request.max_tokens"] = req.maxTokens;
  a["gen_ai.request.temperature"] = req.sampling.temperature;
  a["gen_ai.request.top_p"] = req.sampling.topP;
  if (req.sampling.topK !== null) a["gen_ai.request.top_k"] = req.sampling.topK;
  if (req.sampling.seed !== null) a["gen_ai.request.seed"] = req.sampling.seed;
  if (req.sampling.presencePenalty !== 0) a["gen_ai.request.presence_penalty"] = req.sampling.presencePenalty;
  if (req.sampling.frequencyPenalty !== 0) a["gen_ai.request.frequency_penalty"] = req.sampling.frequencyPenalty;
  if (req.stop.length > 0) a["gen_ai.request.stop_sequences"] = req.stop;
  return a;
}

export function genAiUsageAttributes(u: Usage): Attributes {
  return {
    "gen_ai.usage.input_tokens": u.promptTokens,
    "gen_ai.usage.output_tokens": u.completionTokens,
    "gen_ai.usage.cache_read.input_tokens": u.cachedTokens,
  };
}
