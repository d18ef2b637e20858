// /v1/responses: create (stream or not), retrieve, delete, list input items.
// A response's context is rendered as chat messages, the whole history every
// turn and always the same way (instructions first, then the previous
// responses' or the conversation's items, then this input), so the engine's
// per-tenant prefix cache serves a continued conversation's earlier turns.
import { Router } from "express";
import type { ChatMessage, EngineRequest, GrammarSpec } from "../../../engine/index.js";
import { ApiError } from "../../errors.js";
import { capMaxTokens } from "../../quota/capMaxTokens.js";
import { estimateChatTokens, toolPromptParts } from "../../quota/estimate.js";
import type { ConversationStore, Item } from "../../store/conversationStore.js";
import { engineTenant, type Tenant } from "../../tenants/types.js";
import { isNullish, stopList, toSamplingParams } from "../common.js";
import { requireModel, type RouteDeps } from "../context.js";
import { fitByDroppingItems } from "../truncation.js";
import { runGeneration } from "../runGeneration.js";
import { toolSetup, withOutputFormat, type ToolSetup } from "../tools/tools.js";
import { newObjectId, resolveItemReferences, toChatMessages, withIds } from "./items.js";
import { listJson, parseListQuery, refuseInclude } from "./list.js";
import { conversationNotFound, responseNotFound } from "./notFound.js";
import { parseResponsesRequest, type ResponsesRequest } from "./protocol.js";
import type { ResponseEcho, ResponseObject } from "./responseObject.js";
import { respondResponse, streamResponse, type ResponseRun } from "./serving.js";
import type { BackgroundResponses } from "./background.js";
import { echoText, textFormatGrammar } from "./textFormat.js";
import { asChatToolFields, echoToolChoice, echoTools, RESPONSES_TOOL_PATHS } from "./tools.js";

/**
 * The items a new response continues from: a stored response's own input and
 * output (its input already holds the chain before it), or a conversation's
 * items. Instructions are never carried over.
 */
async function loadHistory(store: ConversationStore, tenantId: string, previousResponseId: string | null, conversationId: string | null): Promise<Item[]> {
  if (previousResponseId !== null) {
    const previous = await store.getResponse(tenantId, previousResponseId);
    const input = previous ? await store.getResponseInputItems(tenantId, previousResponseId) : null;
    if (!previous || !input) {
      throw new ApiError("previous_response_not_found", `Previous response with id '${previousResponseId}' not found.`, "previous_response_id");
    }
    const status = (previous.body as ResponseObject).status;
    if (status === "queued" || status === "in_progress") {
      // A background response still running has no output to continue from yet.
      throw new ApiError(
        "invalid_value",
        `Invalid 'previous_response_id': the response '${previousResponseId}' is still ${status}; continue from it once it has finished.`,
        "previous_response_id",
      );
    }
    return [...input, ...(previous.body as ResponseObject).output];
  }
  if (conversationId !== null) {
    const items = await store.getConversationItems(tenantId, conversationId);
    if (!items) throw conversationNotFound(conversationId, "conversation");
    return items;
  }
  return [];
}

/**
 * A function_call_output in this request's input must answer a call made
 * earlier in the context (OpenAI refuses an orphan output too): the model
 * would otherwise read a result for a question nobody asked.
 */
function requireAnsweredCalls(context: readonly Item[], firstInput: number): void {
  const calls = new Set<string>();
  for (const [i, item] of context.entries()) {
    if (item.type === "function_call") calls.add(item.call_id);
    else if (item.type === "function_call_output" && i >= firstInput && !calls.has(item.call_id)) {
      const param = `input[${i - firstInput}].call_id`;
      throw new ApiError("invalid_value", `Invalid '${param}': no function call with call_id '${item.call_id}' precedes this output.`, param);
    }
  }
}

/** Tools and `text.format` together: see withOutputFormat. */
function outputSetup(body: ResponsesRequest): { tools: ToolSetup; grammar: GrammarSpec | undefined } {
  // Translated even when unused, so that a schema the grammar cannot enforce is a 400 on every turn.
  return withOutputFormat(toolSetup(asChatToolFields(body), RESPONSES_TOOL_PATHS), textFormatGrammar(body.text?.format));
}

const booleanQuery = (v: unknown): boolean | "invalid" => (v === undefined || v === "false" ? false : v === "true" ? true : "invalid");

/**
 * GET /v1/responses/{id}'s stream options: `stream=true` replays a background
 * response's events after `starting_after` (default: all of them).
 * `include_obfuscation` is accepted and ignored (llamux pads no deltas).
 */
function parseRetrieveQuery(query: Record<string, unknown>): { stream: boolean; startingAfter: number } {
  const stream = booleanQuery(query.stream);
  if (stream === "invalid") throw new ApiError("invalid_value", "Invalid 'stream': must be true or false.", "stream");
  if (booleanQuery(query.include_obfuscation) === "invalid")
    throw new ApiError("invalid_value", "Invalid 'include_obfuscation': must be true or false.", "include_obfuscation");
  const after = query.starting_after;
  if (after === undefined) return { stream, startingAfter: -1 };
  if (typeof after !== "string" || !/^\d{1,15}$/.test(after)) {
    throw new ApiError("invalid_value", "Invalid 'starting_after': must be a sequence number (an integer >= 0).", "starting_after");
  }
  if (!stream) throw new ApiError("invalid_value", "Invalid 'starting_after': it applies to a stream; set 'stream' to true.", "starting_after");
  return { stream, startingAfter: Number(after) };
}

export function responsesRoute(deps: RouteDeps, store: ConversationStore, background: BackgroundResponses): Router {
  const router = Router();

  router.post("/v1/responses", async (req, res) => {
    const tenant: Tenant = res.locals.tenant;
    const { body, input, conversationId, logprobs } = parseResponsesRequest(req.body);
    const served = requireModel(deps, body.model);
    const previousResponseId = body.previous_response_id ?? null;
    const history = await loadHistory(store, tenant.id, previousResponseId, conversationId);
    const resolved = await resolveItemReferences(input, (ids) => store.findItems(tenant.id, ids), ["input"]);
    const inputItems = withIds(resolved, new Set(history.map((item) => item.id)), ["input"]);
    const context = [...history, ...inputItems];
    requireAnsweredCalls(context, history.length);
    const instructions = body.instructions ?? null;
    const messagesFrom = (start: number): ChatMessage[] => [
      ...(instructions ? [{ role: "developer" as const, content: instructions }] : []),
      ...toChatMessages(context.slice(start)),
    ];
    if (messagesFrom(0).length === 0) throw new ApiError("missing_required_parameter", "Missing required parameter: 'input'.", "input");
    const { tools, grammar } = outputSetup(body);

    const maxTokens = capMaxTokens(tenant.limits, body.max_output_tokens ?? null);
    const engineRequestFrom = (start: number): EngineRequest => ({
      // The engine's name for the tenant (its incarnation), truncation's probes included.
      tenant: engineTenant(tenant),
      prompt: { kind: "chat", messages: messagesFrom(start), ...(tools.promptTools ? { tools: tools.promptTools } : {}) },
      ...(grammar ? { grammar } : {}),
      ...(logprobs ? { logprobs: body.top_logprobs ?? 0 } : {}),
      maxTokens,
      maxTokensParam: "max_output_tokens",
      stop: stopList(body.stop),
      sampling: toSamplingParams(body),
      echo: false,
      priority: Math.min(body.priority ?? 0, tenant.scheduling.maxPriority),
    });
    // truncation "auto": the model reads the conversation from the first item that lets it fit.
    const start = body.truncation === "auto" ? await fitByDroppingItems(served.engine, context, engineRequestFrom) : 0;
    const engineReq = engineRequestFrom(start);
    const messages = engineReq.prompt.kind === "chat" ? engineReq.prompt.messages : [];
    const stored = body.store ?? true;
    const echo: ResponseEcho = {
      id: newObjectId("resp"),
      createdAtSeconds: Math.floor(Date.now() / 1000),
      model: body.model,
      instructions,
      maxOutputTokens: body.max_output_tokens ?? null,
      previousResponseId,
      conversationId,
      store: stored,
      temperature: body.temperature ?? 1,
      topP: body.top_p ?? 1,
      parallelToolCalls: body.parallel_tool_calls ?? true,
      tools: echoTools(body.tools),
      toolChoice: echoToolChoice(body.tool_choice),
      topLogprobs: body.top_logprobs ?? 0,
      text: echoText(body.text),
      metadata: body.metadata ?? {},
      user: isNullish(body.user) ? null : body.user!,
      safetyIdentifier: body.safety_identifier ?? null,
      promptCacheKey: body.prompt_cache_key ?? null,
      truncation: body.truncation ?? "disabled",
      ...(body.background ? { background: true } : {}),
    };
    // Before any byte of the body: a load balancer learns which replica holds
    // this response (and its KV state) from the header, so the next turn's
    // previous_response_id goes back there (docs/cluster.md).
    res.setHeader("x-llamux-response-id", echo.id);
    const run: ResponseRun = {
      echo,
      tools: tools.parsing,
      // With store:false the response is not kept, but a conversation still
      // gets its items: continuing the conversation is what was asked for.
      commit: (response, output) =>
        store.commitResponse({
          tenantId: tenant.id,
          response: stored ? { id: echo.id, createdAtSeconds: echo.createdAtSeconds, body: response, inputItems: context } : null,
          conversation: conversationId === null ? null : { id: conversationId, items: [...inputItems, ...output] },
        }),
    };
    // The tool list and earlier calls are prompt text too.
    const estimate = () =>
      estimateChatTokens(
        [
          ...messages,
          ...toolPromptParts(
            tools.promptTools,
            messages.flatMap((m) => m.toolCalls ?? []),
          ),
        ],
        maxTokens,
      );
    if (body.background) {
      const conversation = conversationId === null ? null : { id: conversationId, input: inputItems };
      const started = await background.start(deps, res, { tenant, served, engineReq, estimate, run, context, conversation });
      // Streamed, it runs on when the client leaves; either way it is polled, streamed again or cancelled by id.
      if (body.stream) await background.stream(res, tenant.id, echo.id, -1, started.run);
      else res.json(started.body);
      return;
    }
    const generation = {
      tenant,
      model: body.model,
      served,
      includeUsage: false,
      engineReqs: [engineReq],
      estimate,
    };
    await runGeneration(deps, req, res, generation, ([choice], meta) =>
      body.stream ? streamResponse(res, choice!, meta, run) : respondResponse(res, choice!, meta, run),
    );
  });

  router.get("/v1/responses/:id", async (req, res) => {
    refuseInclude(req.query);
    const { stream, startingAfter } = parseRetrieveQuery(req.query);
    const tenantId: string = res.locals.tenant.id;
    const found = await store.getResponse(tenantId, req.params.id);
    if (!found) throw responseNotFound(req.params.id);
    if (!stream) {
      res.json(found.body);
      return;
    }
    if ((await background.status(tenantId, req.params.id)) === null) {
      throw new ApiError("invalid_value", "Invalid 'stream': only a response created with background=true can be streamed again.", "stream");
    }
    await background.stream(res, tenantId, req.params.id, startingAfter);
  });

  router.delete("/v1/responses/:id", async (req, res) => {
    if (!(await store.deleteResponse(res.locals.tenant.id, req.params.id))) throw responseNotFound(req.params.id);
    background.abandon(res.locals.tenant.id, req.params.id);
    res.json({ id: req.params.id, object: "response", deleted: true });
  });

  router.get("/v1/responses/:id/input_items", async (req, res) => {
    const options = parseListQuery(req.query);
    const page = await store.listResponseInputItems(res.locals.tenant.id, req.params.id, options);
    if (!page) throw responseNotFound(req.params.id);
    res.json(listJson(page));
  });

  router.post("/v1/responses/:id/cancel", async (req, res) => {
    const tenantId: string = res.locals.tenant.id;
    const id = req.params.id;
    if (!(await store.getResponse(tenantId, id))) throw responseNotFound(id);
    if ((await background.status(tenantId, id)) === null) {
      throw new ApiError("invalid_value", "Only responses created with background=true can be cancelled.", "response_id");
    }
    const body = await background.cancel(tenantId, id, async () => (await store.getResponse(tenantId, id))?.body ?? null);
    // Deleted meanwhile: gone, as for any other id.
    if (!body) throw responseNotFound(id);
    res.json(body);
  });

  return router;
}
