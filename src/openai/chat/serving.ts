// Chat completion responses: one JSON body, or OpenAI's chunk sequence over SSE
// (role chunk, content chunks, finish chunk, optional usage chunk, [DONE]).
import type { Response } from "express";
import type { Usage } from "../../../engine/index.js";
import { ApiError, fromEngineError } from "../../errors.js";
import { SseWriter } from "../../sse.js";
import { collect, usageJson, type Admitted } from "../generation.js";
import { nowSeconds, randomId } from "../common.js";

export interface ChatResponseMeta {
  model: string;
  fingerprint: string;
  includeUsage: boolean;
  onUsage: (u: Usage) => void;
}

export async function respondChat(res: Response, choice: Admitted, meta: ChatResponseMeta): Promise<void> {
  const out = await collect(choice);
  meta.onUsage(out.usage);
  res.json({
    id: randomId("chatcmpl"),
    object: "chat.completion",
    created: nowSeconds(),
    model: meta.model,
    system_fingerprint: meta.fingerprint,
    service_tier: "default",
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: out.text, refusal: null, annotations: [] },
        logprobs: null,
        finish_reason: out.finishReason,
      },
    ],
    usage: usageJson(out.usage),
  });
}

export async function streamChat(res: Response, choice: Admitted, meta: ChatResponseMeta): Promise<void> {
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
  const chunk = (delta: object, finish: string | null) => ({
    ...base,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    ...usageField,
  });
  sse.open();
  await sse.send(chunk({ role: "assistant", content: "", refusal: null }, null));
  try {
    for await (const ev of choice.events) {
      if (ev.type === "error") throw fromEngineError(ev.error);
      if (ev.type !== "delta") continue;
      if (ev.text) await sse.send(chunk({ content: ev.text }, null));
      if (ev.finish && ev.usage) {
        meta.onUsage(ev.usage);
        await sse.send(chunk({}, ev.finish));
        if (meta.includeUsage) await sse.send({ ...base, choices: [], usage: usageJson(ev.usage) });
        break;
      }
    }
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    await sse.send(err.toJSON());
  }
  await sse.done();
}
