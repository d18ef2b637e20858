// Chunked prefill: a prompt read over many steps (tiny --step-tokens) must give
// exactly what a prompt read in one step gives, including when it joins
// streams that are already decoding and when part of it comes from the cache.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MODELS, startTestServer, type TestServer } from "./helpers/server.js";

const PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun with her friends and her dog.";

async function greedy(t: TestServer, prompt: string): Promise<string> {
  const r = await t.client.completions.create({ model: t.modelId, prompt, max_tokens: 24, temperature: 0 });
  return r.choices[0]!.text;
}

describe("chunked prefill", () => {
  test("reading the prompt 8 tokens per step changes nothing", async () => {
    const whole = await startTestServer(["--model", MODELS.stories260K, "--slots", "4", "--ctx-per-slot", "256"]);
    let expected: string[];
    try {
      expected = [await greedy(whole, PROMPT), await greedy(whole, `${PROMPT} One day`)];
    } finally {
      await whole.close();
    }
    const chunked = await startTestServer(["--model", MODELS.stories260K, "--slots", "4", "--ctx-per-slot", "256", "--step-tokens", "8"]);
    try {
      // Alone, while another stream decodes, and with a cached prefix.
      const stepsBefore = (await chunked.srv.engine.stats())!.steps;
      const solo = await chunked.client.completions.create({ model: chunked.modelId, prompt: PROMPT, max_tokens: 24, temperature: 0 });
      assert.equal(solo.choices[0]!.text, expected[0]);
      // 24 decode steps, the last prompt chunk shared with the first token, and one step per earlier 8-token chunk.
      const steps = (await chunked.srv.engine.stats())!.steps - stepsBefore;
      assert.equal(steps, Math.ceil(solo.usage!.prompt_tokens / 8) + solo.usage!.completion_tokens - 1);
      const busy = chunked.client.completions.create({ model: chunked.modelId, prompt: "The dog", max_tokens: 60, temperature: 0, ignore_eos: true } as never);
      const [during] = await Promise.all([greedy(chunked, PROMPT), busy]);
      assert.equal(during, expected[0]);
      const continued = await chunked.client.completions.create({ model: chunked.modelId, prompt: `${PROMPT} One day`, max_tokens: 24, temperature: 0 });
      assert.equal(continued.choices[0]!.text, expected[1]);
      assert.ok(continued.usage!.prompt_tokens_details!.cached_tokens! > 20);
    } finally {
      await chunked.close();
    }
  });
});
