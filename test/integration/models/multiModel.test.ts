// Several models at once (the config file's `models` list), on the real server
// through the official openai client: each model has its own worker, slots,
// context length and chat template, answers to its id and aliases, and a model
// that is configured but could not be loaded gets a clear 503 while the others serve.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { assertMatchesSpec } from "../../helpers/openapi.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-multi-model-"));
const templateFile = path.join(dir, "plain.jinja");
// No role markers at all: the same messages cost fewer tokens than under ChatML.
fs.writeFileSync(templateFile, "{% for message in messages %}{{ message.content }}\n{% endfor %}");
const brokenFile = path.join(dir, "broken.gguf");
fs.writeFileSync(brokenFile, Buffer.from("GGUF this is not a model at all"));
const configFile = path.join(dir, "llamux.json");
fs.writeFileSync(
  configFile,
  JSON.stringify({
    "ctx-per-slot": 256,
    models: [
      { model: MODELS.stories260K, id: "story", alias: ["small", "default"], slots: 2 },
      { model: MODELS.stories260K, id: "story-plain", slots: 1, "ctx-per-slot": 64, "chat-template": templateFile },
      { model: MODELS.tinyRandom, id: "random", alias: "noise", slots: 1 },
      { model: brokenFile, id: "broken" },
    ],
  }),
);

let t: TestServer;
before(async () => {
  t = await startTestServer(["--config", configFile]);
});
after(async () => {
  await t?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const messages = [{ role: "user" as const, content: "Once upon a time there was a little cat" }];
type Card = { id: string; meta: { state: string; context_length?: number; slots?: number; chat_template?: string } };

describe("several models", () => {
  test("/v1/models lists every id and alias, the broken model as failed, without details", async () => {
    const list = await t.client.models.list();
    const cards = list.data as unknown as Card[];
    assert.deepEqual(
      cards.map((c) => c.id),
      ["story", "story-plain", "random", "broken", "small", "default", "noise"],
    );
    const byId = new Map(cards.map((c) => [c.id, c.meta]));
    assert.deepEqual(byId.get("broken"), { state: "failed" });
    assert.equal(byId.get("story")!.slots, 2);
    assert.equal(byId.get("story-plain")!.slots, 1);
    assert.equal(byId.get("story-plain")!.context_length, 64);
    assert.equal(byId.get("story")!.context_length, 256);
    assert.equal(byId.get("story")!.chat_template, "chatml");
    assert.equal(byId.get("story-plain")!.chat_template, `jinja:${templateFile}`);
    for (const id of ["story", "small", "random", "noise", "broken"]) {
      const card = await t.client.models.retrieve(id);
      assert.equal(card.id, id);
      assertMatchesSpec("Model", { id: card.id, object: card.object, created: card.created, owned_by: card.owned_by });
    }
  });

  test("an alias reaches its model, and each model answers under the name it was asked by", async () => {
    for (const name of ["story", "small", "default", "random", "noise"]) {
      const r = await t.client.chat.completions.create({ model: name, messages, max_tokens: 4, temperature: 0 });
      assertMatchesSpec("CreateChatCompletionResponse", r);
      assert.equal(r.model, name);
    }
    // Greedy text is a property of the model: an alias gives the id's output, another model does not.
    const text = async (model: string) =>
      (await t.client.completions.create({ model, prompt: "Once upon a time", max_tokens: 12, temperature: 0, ignore_eos: true } as never)).choices[0]!.text;
    assert.equal(await text("small"), await text("story"));
    assert.notEqual(await text("random"), await text("story"));
  });

  test("each model has its own chat template and context length", async () => {
    const chatml = await t.client.chat.completions.create({ model: "story", messages, max_tokens: 1 });
    const plain = await t.client.chat.completions.create({ model: "story-plain", messages, max_tokens: 1 });
    assert.ok(
      plain.usage!.prompt_tokens < chatml.usage!.prompt_tokens,
      `the plain template spends fewer prompt tokens (${plain.usage!.prompt_tokens}) than ChatML (${chatml.usage!.prompt_tokens}) on the same tokenizer`,
    );
    const long = "the cat sat on the mat and ".repeat(12);
    const fits = await t.client.completions.create({ model: "story", prompt: long, max_tokens: 8 });
    assert.ok(fits.usage!.prompt_tokens > 64, "the prompt is longer than story-plain's context");
    const err = await t.client.completions.create({ model: "story-plain", prompt: long, max_tokens: 8 }).catch((e: unknown) => e);
    assert.ok(err instanceof OpenAI.BadRequestError, String(err));
    assert.equal(err.code, "context_length_exceeded");
    assert.match(err.message, /maximum context length is 64 tokens/);
  });

  test("a configured model that could not be loaded is a 503 model_not_loaded naming it and why", async () => {
    const err = await t.client.chat.completions.create({ model: "broken", messages }).catch((e: unknown) => e);
    assert.ok(err instanceof OpenAI.APIError, String(err));
    assert.equal(err.status, 503);
    assert.equal(err.code, "model_not_loaded");
    assert.equal(err.param, "model");
    assert.match(err.message, /'broken' is configured but could not be loaded \(.+\)/);
    const unknown = await t.client.chat.completions.create({ model: "nope", messages }).catch((e: unknown) => e);
    assert.ok(unknown instanceof OpenAI.NotFoundError);
    assert.equal(unknown.code, "model_not_found");
  });

  test("/ready is 503 while a configured model is not serving, and says which", async () => {
    const res = await fetch(`${t.url}/ready`);
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), { status: "failed", models: { story: "ready", "story-plain": "ready", random: "ready", broken: "failed" } });
  });

  test("models run in their own workers: streams on two models at once both complete", async () => {
    const stream = (model: string) =>
      t.client.chat.completions.create({ model, messages, max_tokens: 24, ignore_eos: true, stream: true } as never).then(async (s) => {
        let chunks = 0;
        for await (const c of s as unknown as AsyncIterable<{ choices: unknown[] }>) if (c.choices.length > 0) chunks++;
        return chunks;
      });
    const [a, b, c] = await Promise.all([stream("story"), stream("random"), stream("small")]);
    for (const n of [a, b, c]) assert.ok(n >= 24, `every stream delivered its tokens (${n} chunks)`);
    const pids = new Set(t.srv.models.all.filter((m) => m.loadError === null).map((m) => m.engine.pid));
    assert.equal(pids.size, 3, "one worker process per loaded model");
  });

  test("engine metrics carry the model label", async () => {
    const text = await (await fetch(`${t.url}/metrics`)).text();
    for (const id of ["story", "story-plain", "random"]) {
      assert.match(text, new RegExp(`^llamux_slots_idle\\{model="${id}"\\} \\d+$`, "m"));
      assert.match(text, new RegExp(`^llamux_engine_restarts_total\\{model="${id}"\\} 0$`, "m"));
    }
    assert.match(text, /^llamux_slots_idle\{model="story"\} 2$/m);
  });
});

describe("several models: start-up", () => {
  test("two models claiming one name, or a missing file, fail the start with a clear error", async () => {
    const clash = path.join(dir, "clash.json");
    fs.writeFileSync(clash, JSON.stringify({ models: [{ model: MODELS.stories260K }, { model: MODELS.tinyRandom, alias: "stories260K" }] }));
    await assert.rejects(startTestServer(["--config", clash]), /model name 'stories260K' is used by both 'stories260K' and 'llama-2-tiny-random'/);
    const missing = path.join(dir, "missing.json");
    fs.writeFileSync(missing, JSON.stringify({ models: [{ model: MODELS.stories260K }, { model: path.join(dir, "nowhere.gguf") }] }));
    await assert.rejects(startTestServer(["--config", missing]), /model not found: .*nowhere\.gguf/);
  });

  test("when no configured model loads, the start fails", async () => {
    const none = path.join(dir, "none.json");
    fs.writeFileSync(none, JSON.stringify({ models: [{ model: brokenFile }] }));
    await assert.rejects(startTestServer(["--config", none]));
  });
});
