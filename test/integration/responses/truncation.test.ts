// truncation "auto" on /v1/responses (issue 18, item 5): a conversation that
// overflows the context loses items from its start until it fits; the
// instructions stay. Without it, the overflow is still a 400.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type OpenAI from "openai";
import type { Response as OpenAIResponse } from "openai/resources/responses/responses";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

const CTX = 256;
let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", String(CTX)]);
});
after(async () => {
  await t?.close();
});

const create = (body: Record<string, unknown>) =>
  t.client.responses.create({ model: t.modelId, max_output_tokens: 16, temperature: 0, ...body } as never) as Promise<OpenAIResponse>;
const instructions = "Tell a story.";
// 16 items of a few dozen tokens each: several times the context.
const items = Array.from({ length: 16 }, (_, i) => ({
  role: i % 2 === 0 ? "user" : "assistant",
  content: `Part ${i}: Tom and Lily went to the park with their dog and a big red ball to play.`,
}));

describe("truncation", () => {
  test("without truncation (or disabled) an overflowing input is 400 context_length_exceeded", async () => {
    for (const truncation of [undefined, "disabled"]) {
      const err = await create({ input: items, instructions, ...(truncation ? { truncation } : {}) }).then(
        () => assert.fail("expected a 400"),
        (e: unknown) => e as InstanceType<typeof OpenAI.APIError>,
      );
      assert.equal(err.status, 400);
      assert.equal(err.code, "context_length_exceeded");
    }
  });

  test('"auto" drops the earliest items, as few as fit, and keeps the instructions', async () => {
    const r = await create({ input: items, instructions, truncation: "auto" });
    assert.ok(r.status === "completed" || r.status === "incomplete", r.status); // incomplete: max_output_tokens
    assert.equal(r.truncation, "auto");
    assert.ok(r.usage!.input_tokens + 16 <= CTX, `input ${r.usage!.input_tokens}`);
    // The longest tail that fits on its own, sent without truncation, is exactly what the model read.
    let fitting: OpenAIResponse | null = null;
    let kept = 0;
    for (let k = items.length - 1; k >= 0; k--) {
      const tail = await create({ input: items.slice(k), instructions }).catch((e: InstanceType<typeof OpenAI.APIError>) => {
        assert.equal(e.code, "context_length_exceeded");
        return null;
      });
      if (!tail) break;
      fitting = tail;
      kept = items.length - k;
    }
    assert.ok(fitting, "the newest item alone fits");
    assert.ok(kept > 1 && kept < items.length, `kept ${kept}`);
    assert.equal(r.usage!.input_tokens, fitting.usage!.input_tokens, "the same prompt: the earliest items were dropped, no more");
    assert.equal(r.output_text, fitting.output_text, "same prompt, temperature 0: same text");
    // Without the instructions the prompt is shorter: they were kept.
    const bare = await create({ input: items.slice(items.length - kept) });
    assert.ok(bare.usage!.input_tokens < r.usage!.input_tokens);
  });

  test('"auto" on an input that fits changes nothing', async () => {
    const input = items.slice(-2);
    const [auto, plain] = [await create({ input, instructions, truncation: "auto" }), await create({ input, instructions })];
    assert.equal(auto.usage!.input_tokens, plain.usage!.input_tokens);
    assert.equal(auto.output_text, plain.output_text);
  });

  test('"auto" cannot rescue a single item that overflows alone: still 400', async () => {
    const huge = "Tom ran to the park. ".repeat(200);
    const err = await create({
      input: [
        { role: "user", content: "hi" },
        { role: "user", content: huge },
      ],
      truncation: "auto",
    }).then(
      () => assert.fail("expected a 400"),
      (e: unknown) => e as InstanceType<typeof OpenAI.APIError>,
    );
    assert.equal(err.code, "context_length_exceeded");
  });
});
