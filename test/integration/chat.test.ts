// Chat completions against the real server on stories260K (a trained TinyStories model).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { MODELS, postSse, startTestServer, type TestServer } from "./helpers/server.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "8", "--ctx-per-slot", "512"]);
});
after(async () => {
  await t?.close();
});

const user = (content: string) => [{ role: "user" as const, content }];

describe("chat completions", () => {
  test("non-streaming returns an assistant message, finish_reason and exact usage", async () => {
    const r = await t.client.chat.completions.create({ model: t.modelId, messages: user("Once upon a time"), max_tokens: 8, temperature: 0 });
    assert.equal(r.object, "chat.completion");
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0]!.message.role, "assistant");
    assert.ok((r.choices[0]!.message.content ?? "").length > 0);
    assert.equal(r.choices[0]!.finish_reason, "length");
    assert.equal(r.usage!.completion_tokens, 8);
    assert.equal(r.usage!.total_tokens, r.usage!.prompt_tokens + 8);
    assert.ok(r.usage!.prompt_tokens > 5);
  });

  test("streaming sends role first, same id/created, one finish chunk, usage chunk, then [DONE]", async () => {
    const body = { model: t.modelId, messages: user("Tom had a red ball"), max_tokens: 12, temperature: 0 };
    const plain = await t.client.chat.completions.create(body);
    const sse = await postSse(`${t.url}/v1/chat/completions`, { ...body, stream: true, stream_options: { include_usage: true } });
    assert.equal(sse.status, 200);
    assert.match(sse.headers.get("content-type") ?? "", /^text\/event-stream/);
    assert.equal(sse.frames.at(-1), "[DONE]");
    const chunks = sse.frames.slice(0, -1).map((f) => JSON.parse(f));
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    const ids = new Set(chunks.map((c) => c.id));
    const created = new Set(chunks.map((c) => c.created));
    assert.equal(ids.size, 1);
    assert.equal(created.size, 1);
    for (const c of chunks) assert.equal(c.object, "chat.completion.chunk");
    const usageChunk = chunks.at(-1);
    assert.deepEqual(usageChunk.choices, []);
    assert.equal(usageChunk.usage.completion_tokens, 12);
    const withChoices = chunks.slice(0, -1);
    for (const c of withChoices) assert.equal(c.usage, null);
    const finishes = withChoices.filter((c) => c.choices[0].finish_reason !== null);
    assert.equal(finishes.length, 1);
    assert.equal(finishes[0].choices[0].finish_reason, "length");
    assert.equal(withChoices.at(-1), finishes[0]);
    const text = withChoices.map((c) => c.choices[0].delta.content ?? "").join("");
    assert.equal(text, plain.choices[0]!.message.content);
  });

  test("streaming without include_usage sends no usage chunk", async () => {
    const sse = await postSse(`${t.url}/v1/chat/completions`, { model: t.modelId, messages: user("Hi"), max_tokens: 4, stream: true });
    const chunks = sse.frames.slice(0, -1).map((f) => JSON.parse(f));
    assert.ok(chunks.every((c) => c.choices.length === 1 && !("usage" in c)));
  });

  test("the openai SDK consumes the stream", async () => {
    const stream = await t.client.chat.completions.create({ model: t.modelId, messages: user("The sun"), max_tokens: 10, stream: true, temperature: 0 });
    let text = "";
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.ok(text.length > 0);
    assert.equal(finish, "length");
  });

  test("a repeated prompt reuses the slot's cached prefix", async () => {
    const body = { model: t.modelId, messages: user("Lily went to the park with her mom"), max_tokens: 4, temperature: 0 };
    await t.client.chat.completions.create(body);
    const again = await t.client.chat.completions.create(body);
    const details = again.usage!.prompt_tokens_details!;
    assert.equal(details.cached_tokens, again.usage!.prompt_tokens - 1);
  });

  test("stop strings end generation and never leak, streamed or not", async () => {
    const body = { model: t.modelId, messages: user("Once upon a time"), max_tokens: 40, temperature: 0 };
    const full = (await t.client.chat.completions.create(body)).choices[0]!.message.content!;
    const words = full.split(" ").filter((w) => w.length > 2);
    assert.ok(words.length > 3, `need a few words to pick a stop from: ${full}`);
    const stop = ` ${words[2]}`;
    const expected = full.slice(0, full.indexOf(stop));
    const r = await t.client.chat.completions.create({ ...body, stop: [stop, "zzzz-never"] });
    assert.equal(r.choices[0]!.message.content, expected);
    assert.equal(r.choices[0]!.finish_reason, "stop");
    const sse = await postSse(`${t.url}/v1/chat/completions`, { ...body, stop, stream: true });
    const pieces = sse.frames.slice(0, -1).map((f) => JSON.parse(f).choices[0]?.delta.content ?? "");
    assert.equal(pieces.join(""), expected);
  });

  test("same seed gives the same sample; another seed another one", async () => {
    const body = { model: t.modelId, messages: user("One day a little bird"), max_tokens: 32, temperature: 1.2 };
    const a = await t.client.chat.completions.create({ ...body, seed: 42 });
    const b = await t.client.chat.completions.create({ ...body, seed: 42 });
    const c = await t.client.chat.completions.create({ ...body, seed: 7 });
    assert.equal(a.choices[0]!.message.content, b.choices[0]!.message.content);
    assert.notEqual(a.choices[0]!.message.content, c.choices[0]!.message.content);
  });

  test("a seeded sample is the same alone and under concurrent load", async () => {
    const body = { model: t.modelId, messages: user("The dog ran"), max_tokens: 24, temperature: 1, seed: 1234 };
    const alone = (await t.client.chat.completions.create(body)).choices[0]!.message.content;
    const noise = Array.from({ length: 6 }, (_, i) =>
      t.client.chat.completions.create({ model: t.modelId, messages: user(`Noise ${i} went`), max_tokens: 30, temperature: 1 }),
    );
    const loaded = t.client.chat.completions.create(body);
    const [under] = await Promise.all([loaded, ...noise]);
    assert.equal(under.choices[0]!.message.content, alone);
  });

  test("greedy outputs of 8 concurrent requests equal the same requests run alone", async () => {
    const prompts = ["Once upon a time", "The cat sat", "Ben liked cars", "A big tree", "Mia and Max", "The sun was hot", "Sam had a toy", "In the garden"];
    const run = (p: string) =>
      t.client.chat.completions.create({ model: t.modelId, messages: user(p), max_tokens: 24, temperature: 0 }).then((r) => r.choices[0]!.message.content);
    const solo: Array<string | null> = [];
    for (const p of prompts) solo.push(await run(p));
    const batched = await Promise.all(prompts.map(run));
    assert.deepEqual(batched, solo);
  });

  test("ignore_eos generates exactly max_tokens", async () => {
    const r = await t.client.chat.completions.create({
      model: t.modelId,
      messages: user("The end"),
      max_tokens: 64,
      temperature: 0,
      ignore_eos: true,
    } as never);
    assert.equal((r as { usage: { completion_tokens: number } }).usage.completion_tokens, 64);
  });

  test("special-token strings in user text are tokenized as text", async () => {
    const plain = await t.client.chat.completions.create({ model: t.modelId, messages: user("hello"), max_tokens: 1 });
    const special = await t.client.chat.completions.create({ model: t.modelId, messages: user("hello</s>"), max_tokens: 1 });
    // "</s>" as the EOS control token would add 1 token; as text it is several.
    assert.ok(special.usage!.prompt_tokens - plain.usage!.prompt_tokens >= 3);
  });

  test("a system message and a multi-turn history are rendered", async () => {
    const r = await t.client.chat.completions.create({
      model: t.modelId,
      messages: [
        { role: "system", content: "Tell stories." },
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Once upon a time" },
        { role: "user", content: [{ type: "text", text: "More" }] },
      ],
      max_tokens: 4,
    });
    assert.ok(r.usage!.prompt_tokens > 20);
  });
});
