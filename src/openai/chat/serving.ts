// Chat completion responses: one JSON body, or OpenAI's chunk sequence over SSE
// (role chunk, content chunks, finish chunk, optional usage chunk, [DONE]).
// With n > 1 choices, each choice has its own chunks and tool-call parser; the
// chunks interleave as the engine produces them, and the usage chunk comes
// once every choice has finished.
// With tools, the model's text goes through the tool-call parser: its calls
// become message.tool_calls (streamed as OpenAI's tool-call deltas) and the
// finish reason `tool_calls`.
import type { Response } from "express";
import type { FinishReason, TokenLogprob, Usage } from "../../../engine/index.js";
import { ApiError } from "../../errors.js";
import { SseWriter } from "../../sse.js";
import { readChoices, requestUsage } from "../choices.js";
import { collect, usageJson, type Admitted, type ChoiceOutcome } from "../generation.js";
import { nowSeconds, randomId } from "../common.js";
import { chatLogprobs } from "../logprobs.js";
import { parseToolCalls, ToolCallParser, type ToolCallEvent } from "../tools/toolCallParser.js";
import type { ToolParsing } from "../tools/tools.js";

export interface ChatResponseMeta {
  model: string;
  fingerprint: string;
  includeUsage: boolean;
  onUsage: (u: Usage) => void | Promise<void>;
}

const newCallId = () => randomId("call", "_");

/** A generation that ended normally after calling tools ends with `tool_calls`, as OpenAI's. */
const chatFinish = (finish: FinishReason, calls: number): FinishReason | "tool_calls" => (finish === "stop" && calls > 0 ? "tool_calls" : finish);

/** One choice of a chat.completion body. */
function chatChoice(index: number, out: ChoiceOutcome, tools: ToolParsing | null, logprobs: boolean) {
  const parsed = tools ? parseToolCalls(out.text, { ...tools, newId: newCallId }) : { content: out.text, calls: [] };
  const toolCalls = parsed.calls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } }));
  return {
    index,
    message: { role: "assistant", content: parsed.content, refusal: null, annotations: [], ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}) },
    // Every generated token, tool-call markup included: the parser reads text, not tokens.
    logprobs: logprobs ? chatLogprobs(out.logprobs) : null,
    finish_reason: chatFinish(out.finishReason, toolCalls.length),
  };
}

export async function respondChat(res: Response, choices: Admitted[], meta: ChatResponseMeta, tools: ToolParsing | null = null): Promise<void> {
  const outs = await Promise.all(choices.map(collect));
  const usage = requestUsage(
    outs.map((o) => o.usage),
    choices.length,
  );
  await meta.onUsage(usage);
  res.json({
    id: randomId("chatcmpl"),
    object: "chat.completion",
    created: nowSeconds(),
    model: meta.model,
    system_fingerprint: meta.fingerprint,
    service_tier: "default",
    choices: outs.map((out, i) => chatChoice(choices[i]!.index, out, tools, choices[i]!.logprobs === true)),
    usage: usageJson(usage),
  });
}

/** One parser event → the delta OpenAI streams for it. */
function eventDelta(e: ToolCallEvent): object {
  if (e.type === "content") return { content: e.text };
  if (e.type === "call") return { tool_calls: [{ index: e.index, id: e.id, type: "function", function: { name: e.name, arguments: "" } }] };
  return { tool_calls: [{ index: e.index, function: { arguments: e.text } }] };
}

export async function streamChat(res: Response, choices: Admitted[], meta: ChatResponseMeta, tools: ToolParsing | null = null): Promise<void> {
  const sse = new SseWriter(res);
  const base = {
    id: randomId("chatcmpl"),
    object: "chat.completion.chunk" as const,
    created: nowSeconds(),
    model: meta.model,
    system_fingerprint: meta.fingerprint,
    service_tier: "default",
  };
  const usageField = meta.includeUsage ? { usage: null } : {};
  const chunk = (index: number, delta: object, finish: string | null, logprobs: object | null = null) => ({
    ...base,
    choices: [{ index, delta, logprobs, finish_reason: finish }],
    ...usageField,
  });
  // A choice's logprobs entries ride on its next chunk: a delta whose text is
  // held back (partial UTF-8, a possible stop string, tool-call markup) sends
  // none, so its entries wait. Content chunks always carry the object; other
  // chunks only when entries are waiting.
  const pending: TokenLogprob[][] = choices.map(() => []);
  const logprobsFor = (c: Admitted, content: boolean): object | null => {
    const entries = pending[c.index]!;
    if (!c.logprobs || (!content && entries.length === 0)) return null;
    pending[c.index] = [];
    return chatLogprobs(entries);
  };
  // Once one choice fails, the error frame is the last before [DONE]: the
  // other choices' readers may still be mid-delta, and must write no more.
  let failed = false;
  const send = (payload: object) => (failed ? Promise.resolve() : sse.send(payload));
  const parsers = choices.map(() => (tools ? new ToolCallParser({ ...tools, newId: newCallId }) : null));
  const usages: Usage[] = [];
  sse.open();
  for (const c of choices) await send(chunk(c.index, { role: "assistant", content: "", refusal: null }, null));
  try {
    await readChoices(choices, async (c, ev) => {
      const parser = parsers[c.index]!;
      const sendEvents = async (events: ToolCallEvent[]) => {
        for (const e of events) await send(chunk(c.index, eventDelta(e), null, logprobsFor(c, true)));
      };
      if (ev.logprobs) pending[c.index]!.push(...ev.logprobs);
      if (ev.text) {
        if (parser) await sendEvents(parser.push(ev.text));
        else await send(chunk(c.index, { content: ev.text }, null, logprobsFor(c, true)));
      }
      if (ev.finish && ev.usage) {
        usages[c.index] = ev.usage;
        if (parser) await sendEvents(parser.flush());
        await send(chunk(c.index, {}, chatFinish(ev.finish, parser?.callCount ?? 0), logprobsFor(c, false)));
      }
    });
    const usage = requestUsage(usages, choices.length);
    await meta.onUsage(usage);
    if (meta.includeUsage) await send({ ...base, choices: [], usage: usageJson(usage) });
  } catch (err) {
    failed = true;
    if (!(err instanceof ApiError)) throw err;
    await sse.send(err.toJSON());
  }
  await sse.done();
}
