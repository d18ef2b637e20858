// Sampling without top_k keeps the whole vocabulary: node-llama-cpp would
// otherwise put its own default top-k of 40 in the chain (engine/sampling.ts,
// samplerTopK), silently changing OpenAI's default sampling. On
// llama-2-tiny-random (random weights, 32,000 tokens) the next-token
// distribution is close to uniform, so an untruncated draw almost never
// lands in the top 5, while a top-k draw always does.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MODELS, startTestServer, type TestServer } from "./helpers/server.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.tinyRandom, "--slots", "2"]);
});
after(async () => {
  await t?.close();
});

/** How many of the sampled tokens are among their position's 5 most likely tokens. */
async function inTopFive(extra: Record<string, unknown>): Promise<{ inTop: number; total: number }> {
  const res = await t.client.completions.create({
    model: t.modelId,
    prompt: "Once upon a time",
    max_tokens: 200,
    temperature: 1,
    seed: 11,
    logprobs: 5,
    ...extra,
  } as Parameters<typeof t.client.completions.create>[0] & { stream?: false });
  const lp = res.choices[0]!.logprobs!;
  const total = lp.tokens!.length;
  let inTop = 0;
  for (let i = 0; i < total; i++) {
    // The entry lists the 5 most likely tokens, plus the sampled one when it is not among them.
    const fifth = Object.values(lp.top_logprobs![i]!).sort((a, b) => b - a)[4]!;
    if (lp.token_logprobs![i]! >= fifth) inTop++;
  }
  return { inTop, total };
}

describe("sampling: top_k", () => {
  test("unset, the draw covers the whole vocabulary; top_k 5 keeps every draw in the top 5", async () => {
    const free = await inTopFive({});
    const topK = await inTopFive({ top_k: 5 });
    assert.ok(free.total >= 100 && topK.total >= 100, JSON.stringify({ free, topK }));
    // A top-40 truncation would put about 1 draw in 8 in the top 5.
    assert.ok(free.inTop <= free.total / 40, JSON.stringify(free));
    assert.equal(topK.inTop, topK.total, JSON.stringify(topK));
  });
});
