// POST /v1/completions: request schema; each prompt of an array becomes its own engine request.
import { z } from "zod";
import type { EngineRequest } from "../../../engine/index.js";
import { ApiError } from "../../errors.js";
import { isNullish, parseBody, refuseUnsupported, samplingShape, stopList, toSamplingParams } from "../common.js";
import { COMPLETION_PARAMETERS } from "../parameters.js";

export const MAX_PROMPTS = 64;
/** OpenAI's default for the legacy completions endpoint. */
export const DEFAULT_COMPLETION_MAX_TOKENS = 16;

const tokenId = z.number().int("must be an integer token id").min(0);

export const completionRequestSchema = z
  .object({
    model: z.string({ error: "must be a string" }),
    prompt: z.union(
      [z.string(), z.array(z.string()).min(1).max(MAX_PROMPTS), z.array(tokenId).min(1), z.array(z.array(tokenId).min(1)).min(1).max(MAX_PROMPTS)],
      { error: "must be a string, an array of strings, an array of token ids or an array of token-id arrays" },
    ),
    echo: z.boolean().nullish(),
    best_of: z.number().int().min(1).max(20).nullish(),
    n: z.number().int().min(1).max(128).nullish(),
    logprobs: z.number().int().min(0).max(5).nullish(),
    suffix: z.string().nullish(),
    // llamux extension: order among the tenant's own waiting requests (higher first).
    priority: z.number().int("must be an integer").min(-1000).max(1000).nullish(),
    ...samplingShape,
  })
  .strict();

export type CompletionRequest = z.infer<typeof completionRequestSchema>;

export function parseCompletionRequest(body: unknown): CompletionRequest {
  const req = parseBody(completionRequestSchema, body);
  refuseUnsupported(req as Record<string, unknown>, COMPLETION_PARAMETERS);
  if (req.best_of != null && req.best_of < (req.n ?? 1)) {
    // best_of candidates are drawn to return n of them, as OpenAI's and vLLM's check.
    throw new ApiError("invalid_value", `Invalid 'best_of': it must be at least 'n' (${req.n}).`, "best_of");
  }
  if (req.echo && req.stream) {
    // Kept simple and explicit rather than half-supported.
    throw new ApiError("unsupported_parameter", "Unsupported parameter: 'echo' cannot be combined with 'stream'.", "echo");
  }
  if (req.echo && !isNullish(req.logprobs)) {
    throw new ApiError(
      "unsupported_parameter",
      "Unsupported parameter: 'logprobs' cannot be combined with 'echo': it would need the prompt tokens' log-probabilities, which this server does not compute.",
      "logprobs",
    );
  }
  return req;
}

/** `maxPriority`: the tenant's cap on `priority` (requests asking more get the cap). */
export function toEngineRequests(req: CompletionRequest, tenant: string, maxPriority = 0): EngineRequest[] {
  const p = req.prompt;
  const prompts: EngineRequest["prompt"][] =
    typeof p === "string"
      ? [{ kind: "text", text: p }]
      : p.every((x) => typeof x === "string")
        ? (p as string[]).map((text) => ({ kind: "text" as const, text }))
        : p.every((x) => typeof x === "number")
          ? [{ kind: "tokens", tokens: p as number[] }]
          : (p as number[][]).map((tokens) => ({ kind: "tokens" as const, tokens }));
  return prompts.map((prompt) => ({
    tenant,
    prompt,
    maxTokens: req.max_tokens ?? DEFAULT_COMPLETION_MAX_TOKENS,
    stop: stopList(req.stop),
    sampling: toSamplingParams(req),
    echo: req.echo ?? false,
    priority: Math.min(req.priority ?? 0, maxPriority),
    ...(isNullish(req.logprobs) ? {} : { logprobs: req.logprobs! }),
  }));
}
