// The Vercel AI SDK (`ai` + `@ai-sdk/openai`) against the real server, on
// both of its OpenAI models: the provider's default (the Responses API) and
// openai.chat(...) (chat completions). generateText, streamText,
// generateObject / streamObject / Output.object with zod schemas (one with an
// integer field), multi-turn by pushing result.response.messages (what
// useChat does: on the Responses model the previous assistant turn goes back
// as an item_reference), and a tool loop.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText, Output, stepCountIs, streamObject, streamText, tool, type LanguageModel, type ModelMessage } from "ai";
import { z } from "zod";
import { KEYS, startConformanceServer, type ConformanceServer } from "./helpers.js";

let s: ConformanceServer;
let models: Array<[string, () => LanguageModel]>;
before(async () => {
  s = await startConformanceServer();
  const openai = createOpenAI({ baseURL: s.baseURL, apiKey: KEYS.app });
  models = [
    ["responses (default provider)", () => openai(s.modelId)],
    ["chat (openai.chat)", () => openai.chat(s.modelId)],
  ];
});
after(async () => {
  await s?.close();
});

const MAX_TOKENS = 200;
const Pet = z.object({ name: z.string().min(1).max(10), kind: z.enum(["cat", "dog"]), friendly: z.boolean() });
/** z.number().int() becomes {"type": "integer"} with the safe-integer bounds as minimum/maximum. */
const Counted = z.object({ name: z.string().min(1).max(10), legs: z.number().int() });
const weather = tool({ description: "Weather in a city", inputSchema: z.object({ city: z.string().max(10) }), execute: async () => "sunny" });

/** Each flow, once per model. */
function eachModel(name: string, fn: (model: () => LanguageModel) => Promise<void>): void {
  for (const which of ["responses (default provider)", "chat (openai.chat)"]) {
    test(`${which}: ${name}`, async () => fn(models.find(([n]) => n === which)![1]));
  }
}

describe("AI SDK", () => {
  eachModel("generateText", async (model) => {
    const r = await generateText({ model: model(), prompt: "Once upon a time", maxOutputTokens: 16, maxRetries: 0 });
    assert.ok(r.text.length > 0);
    assert.equal(r.usage.outputTokens, 16);
  });

  eachModel("streamText", async (model) => {
    const r = streamText({ model: model(), prompt: "Once upon a time", maxOutputTokens: 16, maxRetries: 0 });
    let text = "";
    for await (const delta of r.textStream) text += delta;
    assert.ok(text.length > 0);
    assert.equal(text, await r.text);
    assert.equal((await r.usage).outputTokens, 16);
  });

  eachModel("multi-turn: messages.push(...result.response.messages)", async (model) => {
    const messages: ModelMessage[] = [{ role: "user", content: "Once upon a time" }];
    for (const next of ["And then?", "The end?"]) {
      const r = await generateText({ model: model(), messages, maxOutputTokens: 16, maxRetries: 0 });
      assert.ok(r.text.length > 0);
      messages.push(...r.response.messages, { role: "user", content: next });
    }
    const last = await generateText({ model: model(), messages, maxOutputTokens: 16, maxRetries: 0 });
    assert.ok(last.text.length > 0);
  });

  eachModel("generateObject with a zod schema", async (model) => {
    const r = await generateObject({ model: model(), schema: Pet, prompt: "A pet?", maxOutputTokens: MAX_TOKENS, maxRetries: 0 });
    Pet.parse(r.object);
  });

  eachModel("streamObject with a zod schema", async (model) => {
    const r = streamObject({ model: model(), schema: Pet, prompt: "A pet?", maxOutputTokens: MAX_TOKENS, maxRetries: 0 });
    let partials = 0;
    for await (const _partial of r.partialObjectStream) partials++;
    assert.ok(partials > 0);
    Pet.parse(await r.object);
  });

  eachModel("generateText with Output.object", async (model) => {
    const r = await generateText({ model: model(), output: Output.object({ schema: Pet }), prompt: "A pet?", maxOutputTokens: MAX_TOKENS, maxRetries: 0 });
    Pet.parse(r.output);
  });

  eachModel("generateObject with an integer field (z.number().int())", async (model) => {
    const r = await generateObject({ model: model(), schema: Counted, prompt: "A pet and its legs?", maxOutputTokens: MAX_TOKENS, maxRetries: 0 });
    const value = Counted.parse(r.object);
    assert.ok(Number.isSafeInteger(value.legs));
  });

  eachModel("a tool loop: a forced call, executed, its result sent back in the next step", async (model) => {
    const r = await generateText({
      model: model(),
      prompt: "Weather in Paris?",
      tools: { weather },
      toolChoice: "required",
      // One call per step: with parallel calls allowed, a model that knows nothing of tools writes calls until the token limit.
      providerOptions: { openai: { parallelToolCalls: false } },
      stopWhen: stepCountIs(2),
      maxOutputTokens: MAX_TOKENS,
      maxRetries: 0,
    });
    const [first] = r.steps;
    assert.equal(first!.finishReason, "tool-calls", first!.text);
    assert.equal(r.steps.length, 2, "the second step sent the first step's call and result back");
    assert.equal(first!.toolCalls[0]!.toolName, "weather");
    assert.equal(first!.toolResults[0]!.output, "sunny");
    assert.equal(r.steps[1]!.toolCalls[0]?.toolName, "weather");
    // The history goes on from where the loop left it.
    const messages: ModelMessage[] = [{ role: "user", content: "Weather in Paris?" }, ...r.response.messages, { role: "user", content: "Thanks" }];
    const after = await generateText({ model: model(), messages, tools: { weather }, maxOutputTokens: 16, maxRetries: 0 });
    assert.ok(after.finishReason === "stop" || after.finishReason === "length" || after.finishReason === "tool-calls", after.finishReason);
  });
});
