// POST /v1/responses: request schema, how each parameter is handled, and the
// validated request the route works from.
import { z } from "zod";
import { ApiError } from "../../errors.js";
import { isNullish, MAX_INT32, parseBody, refuseUnsupported, samplingShape } from "../common.js";
import type { ParamTable } from "../parameters.js";
import { MAX_INPUT_ITEMS, MAX_ITEM_ID_LENGTH, parseInputItems, userText, type InputEntry } from "./items.js";
import { textSchema } from "./textFormat.js";
import { responseToolsShape } from "./tools.js";
import { MAX_TOP_LOGPROBS } from "../../../engine/index.js";

/** OpenAI's floor for max_output_tokens. */
export const MIN_OUTPUT_TOKENS = 16;

// Chat's sampling fields, less the two whose Responses counterparts differ
// (max_output_tokens; stream_options without include_usage).
const { max_tokens: _maxTokens, stream_options: _chatStreamOptions, ...sampling } = samplingShape;

const objectId = () => z.string({ error: "must be a string" }).min(1).max(MAX_ITEM_ID_LENGTH);

export const responsesRequestSchema = z
  .object({
    model: z.string({ error: "must be a string" }),
    input: z
      .union([z.string(), z.array(z.unknown()).max(MAX_INPUT_ITEMS, `must contain at most ${MAX_INPUT_ITEMS} items`)], {
        error: "must be a string or an array of input items",
      })
      .nullish(),
    instructions: z.string({ error: "must be a string" }).nullish(),
    previous_response_id: objectId().nullish(),
    conversation: z.union([objectId(), z.object({ id: objectId() }).strict()], { error: 'must be a conversation id or {"id": ...}' }).nullish(),
    max_output_tokens: z
      .number({ error: "must be an integer" })
      .int("must be an integer")
      .min(MIN_OUTPUT_TOKENS, `must be at least ${MIN_OUTPUT_TOKENS}`)
      .max(MAX_INT32)
      .nullish(),
    stream_options: z.object({ include_obfuscation: z.boolean().optional() }).strict().nullish(),
    ...responseToolsShape,
    // llamux extension: order among the tenant's own waiting requests (higher first).
    priority: z.number().int("must be an integer").min(-1000).max(1000).nullish(),
    // Refused unless neutral (see RESPONSES_PARAMETERS).
    top_logprobs: z.number({ error: "must be an integer" }).int("must be an integer").min(0).max(MAX_TOP_LOGPROBS).nullish(),
    include: z.array(z.string({ error: "must be a string" }), { error: "must be an array of strings" }).nullish(),
    background: z.boolean({ error: "must be a boolean" }).nullish(),
    max_tool_calls: z.unknown().optional(),
    text: textSchema.nullish(),
    prompt: z.unknown().optional(),
    truncation: z.enum(["auto", "disabled"], { error: 'must be "auto" or "disabled"' }).nullish(),
    reasoning: z.unknown().optional(),
    moderation: z.unknown().optional(),
    context_management: z.unknown().optional(),
    ...sampling,
  })
  .strict();

export type ResponsesRequest = z.infer<typeof responsesRequestSchema>;

const implemented = { handling: "implemented" } as const;
const implementedExtension = { handling: "implemented", extension: true } as const;
const ignored = { handling: "ignored" } as const;
const refused = (why: string, neutral: (v: unknown) => boolean = isNullish) => ({ handling: "refused", neutral, why }) as const;
const allNullish = (v: unknown) => isNullish(v) || (typeof v === "object" && !Array.isArray(v) && Object.values(v as object).every(isNullish));

/** POST /v1/responses (CreateResponse): how each parameter is handled. */
export const RESPONSES_PARAMETERS: ParamTable = {
  model: implemented,
  input: implemented,
  instructions: implemented,
  previous_response_id: implemented,
  conversation: implemented,
  store: implemented,
  stream: implemented,
  max_output_tokens: implemented,
  temperature: implemented,
  top_p: implemented,
  // Stored with the response and returned with it; no effect on generation.
  metadata: implemented,
  // Echoed in the response; no effect on generation.
  user: ignored,
  safety_identifier: ignored,
  prompt_cache_key: ignored,
  prompt_cache_retention: ignored,
  prompt_cache_options: ignored,
  service_tier: ignored,
  // Stream obfuscation pads delta events against a side channel of OpenAI's; llamux sends none.
  stream_options: ignored,
  // Function tools only (src/openai/responses/tools.ts).
  tools: implemented,
  tool_choice: implemented,
  parallel_tool_calls: implemented,
  presence_penalty: implementedExtension,
  frequency_penalty: implementedExtension,
  logit_bias: implementedExtension,
  seed: implementedExtension,
  stop: implementedExtension,
  top_k: implementedExtension,
  min_p: implementedExtension,
  repeat_penalty: implementedExtension,
  ignore_eos: implementedExtension,
  priority: implementedExtension,
  // Returned when `include` asks for message.output_text.logprobs, as on OpenAI.
  top_logprobs: implemented,
  include: implemented,
  // Runs detached from the request (src/openai/responses/background.ts); needs store.
  background: implemented,
  max_tool_calls: refused("is not supported: use parallel_tool_calls false for at most one call per response"),
  // format: text, json_object or json_schema (grammar-enforced); verbosity: echoed only.
  text: implemented,
  prompt: refused("(prompt templates) is not supported"),
  // auto: items are dropped from the start of the conversation until it fits (src/openai/truncation.ts).
  truncation: implemented,
  reasoning: refused("is not supported with this model", allNullish),
  moderation: refused("is not supported"),
  context_management: refused("(compaction) is not supported"),
};

export interface ParsedResponsesRequest {
  body: ResponsesRequest;
  /** This request's own input items (not yet given ids; item references not yet resolved). */
  input: InputEntry[];
  /** The `conversation` id, whichever form it was given in. */
  conversationId: string | null;
  /** output_text carries log-probabilities (include message.output_text.logprobs). */
  logprobs: boolean;
}

export function parseResponsesRequest(raw: unknown): ParsedResponsesRequest {
  const body = parseBody(responsesRequestSchema, raw);
  refuseUnsupported(body as Record<string, unknown>, RESPONSES_PARAMETERS);
  const conversationId = isNullish(body.conversation) ? null : typeof body.conversation === "string" ? body.conversation : body.conversation!.id;
  if (conversationId !== null && !isNullish(body.previous_response_id)) {
    throw new ApiError(
      "invalid_value",
      "Mutually exclusive parameters: 'previous_response_id' and 'conversation' cannot be used together; give one of them.",
      "previous_response_id",
    );
  }
  if (body.background && body.store === false) {
    // OpenAI's rule too: a background response is only reachable stored.
    throw new ApiError(
      "invalid_value",
      "Invalid 'background': a background response must be stored; 'store' cannot be false with 'background' true.",
      "background",
    );
  }
  if (body.ignore_eos && body.text?.format && body.text.format.type !== "text") {
    // A finished grammar allows nothing but end-of-generation.
    throw new ApiError("unsupported_parameter", "Unsupported parameter: 'ignore_eos' cannot be combined with a JSON 'text.format'.", "ignore_eos");
  }
  const input = isNullish(body.input) ? [] : typeof body.input === "string" ? [userText(body.input)] : parseInputItems(body.input!, ["input"]);
  return { body, input, conversationId, logprobs: wantsLogprobs(body) };
}

/** The one `include` value llamux has data for. */
export const INCLUDE_LOGPROBS = "message.output_text.logprobs";

/**
 * Whether output_text gets log-probabilities: `include` must name them (as on
 * OpenAI, `top_logprobs` alone only sets how many alternatives). Other include
 * values name data llamux does not have (tool results, images, encrypted
 * reasoning): a 400 naming them.
 */
function wantsLogprobs(body: ResponsesRequest): boolean {
  const include = body.include ?? [];
  for (const [i, value] of include.entries()) {
    if (value !== INCLUDE_LOGPROBS) {
      throw new ApiError(
        "unsupported_parameter",
        `Unsupported value '${value}' in 'include[${i}]': llamux can only include '${INCLUDE_LOGPROBS}'.`,
        `include[${i}]`,
      );
    }
  }
  const wanted = include.length > 0;
  if (wanted && body.tools && body.tools.length > 0 && body.tool_choice !== "none") {
    throw new ApiError("unsupported_parameter", `Unsupported parameter: 'include' '${INCLUDE_LOGPROBS}' cannot be combined with tools yet.`, "include");
  }
  return wanted;
}
