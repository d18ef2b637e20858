// Legacy text completions: n choices per prompt (index = promptIndex × n + j),
// streamed or not.
import type { Response } from "express";
import type { TokenLogprob, Usage } from "../../../engine/index.js";
import { ApiError } from "../../errors.js";
import { SseWriter } from "../../sse.js";
import { readChoices, requestUsage } from "../choices.js";
import { collect, usageJson, type Admitted } from "../generation.js";
import { nowSeconds, randomId } from "../common.js";
import { CompletionLogprobs } from "../logprobs.js";

export interface CompletionMeta {
  model: string;
  fingerprint: string;
  includeUsage: boolean;
  onUsage: (u: Usage) => void | Promise<void>;
}

/** `n`: choices per prompt; `choices` are in index order. */
export async function respondCompletion(res: Response, choices: Admitted[], meta: CompletionMeta, n = 1): Promise<void> {
  const outs = await Promise.all(choices.map(collect));
  const usage = requestUsage(
    outs.map((o) => o.usage),
    n,
  );
  await meta.onUsage(usage);
  res.json({
    id: randomId("cmpl"),
    object: "text_completion",
    created: nowSeconds(),
    model: meta.model,
    system_fingerprint: meta.fingerprint,
    choices: outs.map((o, i) => ({
      index: i,
      text: (choices[i]!.promptText ?? "") + o.text,
      logprobs: choices[i]!.logprobs ? new CompletionLogprobs().take(o.logprobs) : null,
      finish_reason: o.finishReason,
    })),
    usage: usageJson(usage),
  });
}

export async function streamCompletion(res: Response, choices: Admitted[], meta: CompletionMeta, n = 1): Promise<void> {
  const sse = new SseWriter(res);
  const base = { id: randomId("cmpl"), object: "text_completion" as const, created: nowSeconds(), model: meta.model, system_fingerprint: meta.fingerprint };
  const usageField = meta.includeUsage ? { usage: null } : {};
  const usages: Usage[] = [];
  // Once one choice fails, the error frame is the last before [DONE]: the
  // other choices' readers may still be mid-delta, and must write no more.
  let failed = false;
  const send = (payload: object) => (failed ? Promise.resolve() : sse.send(payload));
  // Per choice: its text_offset count, and entries waiting for a chunk (a
  // delta whose text is all held back sends none).
  const builders = choices.map((c) => (c.logprobs ? new CompletionLogprobs() : null));
  const pending: TokenLogprob[][] = choices.map(() => []);
  sse.open();
  try {
    await readChoices(choices, async (c, ev) => {
      if (ev.logprobs) pending[c.index]!.push(...ev.logprobs);
      if (ev.text || ev.finish) {
        const finish = ev.finish ?? null;
        const builder = builders[c.index];
        const logprobs = builder ? builder.take(pending[c.index]!.splice(0)) : null;
        await send({ ...base, choices: [{ index: c.index, text: ev.text, logprobs, finish_reason: finish }], ...usageField });
      }
      if (ev.finish && ev.usage) usages[c.index] = ev.usage;
    });
    const usage = requestUsage(usages, n);
    await meta.onUsage(usage);
    if (meta.includeUsage) await send({ ...base, choices: [], usage: usageJson(usage) });
  } catch (err) {
    failed = true;
    if (!(err instanceof ApiError)) throw err;
    await sse.send(err.toJSON());
  }
  await sse.done();
}
