// Legacy completions against the real server on stories260K.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MODELS, postSse, startTestServer, type TestServer } from "./helpers/server.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "4", "--ctx-per-slot", "256"]);
});
after(async () => {
  await t?.close();
});

describe("completions", () => {
  test("a string prompt completes with OpenAI's default of 16 tokens", async () => {
    const r = await t.client.completions.create({ model: t.modelId, prompt: "Once upon a time", temperature: 0, ignore_eos: true } as never);
    const c = r as unknown as { object: string; choices: Array<{ text: string; index: number; finish_reason: string }>; usage: { completion_tokens: number } };
    assert.equal(c.object, "text_completion");
    assert.equal(c.choices.length, 1);
    assert.ok(c.choices[0]!.text.length > 0);
    assert.equal(c.choices[0]!.finish_reason, "length");
    assert.equal(c.usage.completion_tokens, 16);
  });

  test("an array of prompts gives one choice per prompt and summed usage", async () => {
    const one = await t.client.completions.create({ model: t.modelId, prompt: "The cat", max_tokens: 6, temperature: 0 });
    const two = await t.client.completions.create({ model: t.modelId, prompt: ["The cat", "A dog"], max_tokens: 6, temperature: 0 });
    assert.deepEqual(
      two.choices.map((c) => c.index),
      [0, 1],
    );
    assert.equal(two.choices[0]!.text, one.choices[0]!.text);
    assert.ok(two.usage!.prompt_tokens > one.usage!.prompt_tokens);
  });

  test("token-id prompts are accepted", async () => {
    const r = await t.client.completions.create({ model: t.modelId, prompt: [1, 403, 407, 261, 378], max_tokens: 4, temperature: 0 });
    assert.equal(r.usage!.prompt_tokens, 5);
    const text = await t.client.completions.create({ model: t.modelId, prompt: "Once upon a time", max_tokens: 4, temperature: 0 });
    assert.equal(r.choices[0]!.text, text.choices[0]!.text);
  });

  test("echo prepends the prompt", async () => {
    const r = await t.client.completions.create({ model: t.modelId, prompt: "Once upon a time", max_tokens: 4, echo: true });
    assert.ok(r.choices[0]!.text.startsWith("Once upon a time"));
  });

  test("logit_bias +100 forces a token", async () => {
    const one = await t.client.completions.create({ model: t.modelId, prompt: "Hello", max_tokens: 1, logit_bias: { "300": 100 } });
    const many = await t.client.completions.create({ model: t.modelId, prompt: "Hello", max_tokens: 6, logit_bias: { "300": 100 } });
    assert.ok(one.choices[0]!.text.length > 0);
    assert.equal(many.choices[0]!.text, one.choices[0]!.text.repeat(6));
  });

  test("logit_bias reaches end-of-generation tokens: +100 on </s> ends at once; ignore_eos bans </s> even then", async () => {
    const EOS = "2"; // stories260K's </s>
    const ended = await t.client.completions.create({ model: t.modelId, prompt: "Once upon a time", max_tokens: 16, logit_bias: { [EOS]: 100 } });
    assert.equal(ended.choices[0]!.finish_reason, "stop");
    assert.equal(ended.usage?.completion_tokens, 1, "the first token sampled is </s>");
    assert.equal(ended.choices[0]!.text, "");
    // ignore_eos bans every end-of-generation token, so it wins over that +100.
    const ignored = await t.client.completions.create({
      model: t.modelId,
      prompt: "Once upon a time",
      max_tokens: 8,
      logit_bias: { [EOS]: 100 },
      ignore_eos: true,
    } as never);
    assert.equal(ignored.choices[0]!.finish_reason, "length");
    assert.equal(ignored.usage?.completion_tokens, 8);
    assert.ok(ignored.choices[0]!.text.length > 0, "real text, not eight </s>");
  });

  test("streaming several prompts interleaves choices and ends with usage and [DONE]", async () => {
    const sse = await postSse(`${t.url}/v1/completions`, {
      model: t.modelId,
      prompt: ["The cat", "A dog"],
      max_tokens: 5,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    assert.equal(sse.frames.at(-1), "[DONE]");
    const chunks = sse.frames.slice(0, -1).map((f) => JSON.parse(f));
    assert.equal(new Set(chunks.map((c) => c.id)).size, 1);
    const usage = chunks.at(-1);
    assert.deepEqual(usage.choices, []);
    assert.equal(usage.usage.completion_tokens, 10);
    for (const index of [0, 1]) {
      const mine = chunks.slice(0, -1).filter((c) => c.choices[0].index === index);
      assert.equal(mine.filter((c) => c.choices[0].finish_reason === "length").length, 1);
    }
  });
});
