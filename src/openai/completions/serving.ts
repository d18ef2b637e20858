// Legacy text completions: one choice per prompt, streamed or not.
import type { Response } from "express";
import type { Usage } from "../../../engine/index.js";
import { ApiError, fromEngineError } from "../../errors.js";
import { SseWriter } from "../../sse.js";
import { collect, sumUsage, usageJson, type Admitted } from "../generation.js";
import { nowSeconds, randomId } from "../common.js";

export interface CompletionMeta {
  model: string;
  fingerprint: string;
  includeUsage: boolean;
  onUsage: (u: Usage) => void;
}

export async function respondCompletion(res: Response, choices: Admitted[], meta: CompletionMeta): Promise<void> {
  const outs = await Promise.all(choices.map(collect));
  const usage = sumUsage(outs.map((o) => o.usage));
  meta.onUsage(usage);
  res.json({
    id: randomId("cmpl"),
    object: "text_completion",
    created: nowSeconds(),
    model: meta.model,
    system_fingerprint: meta.fingerprint,
    choices: outs.map((o, i) => ({
      index: i,
      text: (choices[i]!.promptText ?? "") + o.text,
      logprobs: null,
      finish_reason: o.finishReason,
    })),
    usage: usageJson(usage),
  });
}

export async function streamCompletion(res: Response, choices: Admitted[], meta: CompletionMeta): Promise<void> {
  const sse = new SseWriter(res);
  const base = { id: randomId("cmpl"), object: "text_completion" as const, created: nowSeconds(), model: meta.model, system_fingerprint: meta.fingerprint };
  const usageField = meta.includeUsage ? { usage: null } : {};
  const usages: Usage[] = [];
  sse.open();
  const pump = async (c: Admitted): Promise<void> => {
    for await (const ev of c.events) {
      if (ev.type === "error") throw fromEngineError(ev.error);
      if (ev.type !== "delta") continue;
      if (ev.text || ev.finish) {
        const finish = ev.finish ?? null;
        await sse.send({ ...base, choices: [{ index: c.index, text: ev.text, logprobs: null, finish_reason: finish }], ...usageField });
      }
      if (ev.finish && ev.usage) {
        usages.push(ev.usage);
        return;
      }
    }
  };
  try {
    await Promise.all(choices.map(pump));
    const usage = sumUsage(usages);
    meta.onUsage(usage);
    if (meta.includeUsage) await sse.send({ ...base, choices: [], usage: usageJson(usage) });
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    await sse.send(err.toJSON());
  }
  await sse.done();
}
