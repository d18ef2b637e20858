// /v1/conversations and its items, and responses created in a conversation,
// against the real server on stories260K through the official openai client.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import type { Response as OpenAIResponse } from "openai/resources/responses/responses";
import { assertMatchesSpec } from "../../helpers/openapi.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";
import { apiError } from "./helpers.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "1024"]);
});
after(async () => {
  await t?.close();
});

const create = (body: Record<string, unknown>) => t.client.responses.create({ model: t.modelId, ...body } as never) as Promise<OpenAIResponse>;
const idOf = (item: unknown) => (item as { id: string }).id;
const textOf = (item: unknown) => (item as { content: Array<{ text?: string; refusal?: string }> }).content.map((p) => p.text ?? p.refusal).join("");
const roles = (items: unknown[]) => items.map((i) => (i as { role: string }).role);

describe("/v1/conversations", () => {
  test("create, retrieve, update metadata, delete", async () => {
    const conv = await t.client.conversations.create({ metadata: { topic: "pets" } });
    assert.match(conv.id, /^conv_[0-9a-f]{48}$/);
    assert.equal(conv.object, "conversation");
    assert.deepEqual(conv.metadata, { topic: "pets" });
    assert.ok(Math.abs(conv.created_at - Date.now() / 1000) < 60);
    assertMatchesSpec("ConversationResource", conv);
    assert.deepEqual(await t.client.conversations.retrieve(conv.id), conv);
    const updated = await t.client.conversations.update(conv.id, { metadata: { topic: "cats", lang: "en" } });
    assert.deepEqual(updated, { ...conv, metadata: { topic: "cats", lang: "en" } });
    assert.deepEqual(await t.client.conversations.retrieve(conv.id), updated);
    const deleted = await t.client.conversations.delete(conv.id);
    assert.deepEqual(deleted, { id: conv.id, object: "conversation.deleted", deleted: true });
    assertMatchesSpec("DeletedConversationResource", deleted);
    const calls = [
      () => t.client.conversations.retrieve(conv.id),
      () => t.client.conversations.update(conv.id, { metadata: {} }),
      () => t.client.conversations.delete(conv.id),
      () => t.client.conversations.items.list(conv.id),
      () => t.client.conversations.items.create(conv.id, { items: [{ role: "user", content: "x" }] }),
    ];
    for (const call of calls) await apiError(call(), OpenAI.NotFoundError);
  });

  test("create with no body at all is an empty conversation", async () => {
    const conv = await t.client.conversations.create();
    assert.deepEqual(conv.metadata, {});
    assert.deepEqual((await t.client.conversations.items.list(conv.id)).data, []);
  });

  test("items: initial ones, add, list both ways and in pages, retrieve, delete", async () => {
    const conv = await t.client.conversations.create({
      items: [
        { role: "system", content: "Stories for kids." },
        { type: "message", role: "user", content: [{ type: "input_text", text: "A dog" }] },
      ],
    });
    const added = await t.client.conversations.items.create(conv.id, {
      items: [
        { role: "assistant", content: "ran fast." },
        { role: "user", content: "Then?" },
      ],
    });
    assert.equal(added.object, "list");
    assert.deepEqual(roles(added.data), ["assistant", "user"]);
    assert.equal(added.has_more, false);
    assert.equal(added.first_id, added.data[0]!.id);
    assert.equal(added.last_id, added.data[1]!.id);
    assert.deepEqual((added.data[0] as { content: unknown }).content, [{ type: "output_text", text: "ran fast.", annotations: [], logprobs: [] }]);
    assertMatchesSpec("ConversationItemList", added);

    const desc = await t.client.conversations.items.list(conv.id);
    assert.deepEqual(desc.data.map(textOf), ["Then?", "ran fast.", "A dog", "Stories for kids."]);
    for (const item of desc.data) assertMatchesSpec("ConversationItem", item);
    const asc = await t.client.conversations.items.list(conv.id, { order: "asc", limit: 3 });
    assert.deepEqual(asc.data.map(textOf), ["Stories for kids.", "A dog", "ran fast."]);
    assert.equal(asc.has_more, true);
    const all: unknown[] = [];
    for await (const item of t.client.conversations.items.list(conv.id, { order: "asc", limit: 1 })) all.push(item);
    assert.deepEqual(all.map(textOf), ["Stories for kids.", "A dog", "ran fast.", "Then?"]);

    const one = desc.data[1]!;
    const oneId = idOf(one);
    assert.deepEqual(await t.client.conversations.items.retrieve(oneId, { conversation_id: conv.id }), one);
    const afterDelete = await t.client.conversations.items.delete(oneId, { conversation_id: conv.id });
    assert.deepEqual(afterDelete, await t.client.conversations.retrieve(conv.id), "deleting an item returns the conversation");
    assert.deepEqual((await t.client.conversations.items.list(conv.id, { order: "asc" })).data.map(textOf), ["Stories for kids.", "A dog", "Then?"]);
    const gone = await apiError(t.client.conversations.items.retrieve(oneId, { conversation_id: conv.id }), OpenAI.NotFoundError);
    assert.equal(gone.param, "item_id");
    await apiError(t.client.conversations.items.delete(oneId, { conversation_id: conv.id }), OpenAI.NotFoundError);
    // An item id of one conversation is not an item of another.
    const other = await t.client.conversations.create();
    await apiError(t.client.conversations.items.retrieve(idOf(desc.data[0]), { conversation_id: other.id }), OpenAI.NotFoundError);
  });

  test("bad items and bodies are 400s naming the parameter", async () => {
    const conv = await t.client.conversations.create();
    const cases: Array<[() => Promise<unknown>, string, string]> = [
      [() => t.client.conversations.items.create(conv.id, { items: [{ type: "reasoning", summary: [] }] } as never), "items[0].type", "unsupported_parameter"],
      [
        () =>
          t.client.conversations.items.create(conv.id, {
            items: [{ role: "user", content: [{ type: "input_image", image_url: "https://x/y.png", detail: "auto" }] }],
          }),
        "items[0].content[0].type",
        "unsupported_parameter",
      ],
      [
        () => t.client.conversations.items.create(conv.id, { items: Array.from({ length: 21 }, () => ({ role: "user" as const, content: "x" })) }),
        "items",
        "invalid_value",
      ],
      [() => t.client.conversations.items.create(conv.id, {} as never), "items", "missing_required_parameter"],
      [() => t.client.conversations.create({ items: [{ role: "critic", content: "x" }] } as never), "items[0].role", "invalid_value"],
      [() => t.client.conversations.create({ metadata: { k: "v".repeat(513) } }), "metadata.k", "invalid_value"],
      [() => t.client.conversations.create({ colour: "blue" } as never), "colour", "unknown_parameter"],
      [() => t.client.conversations.update(conv.id, {} as never), "metadata", "missing_required_parameter"],
      [() => t.client.conversations.items.list(conv.id, { order: "sideways" } as never), "order", "invalid_value"],
      [() => t.client.conversations.items.list(conv.id, { include: ["message.output_text.logprobs"] }), "include", "unsupported_parameter"],
    ];
    for (const [call, param, code] of cases) {
      const err = await apiError(call(), OpenAI.BadRequestError);
      assert.deepEqual([err.param, err.code], [param, code]);
    }
    assert.deepEqual((await t.client.conversations.items.list(conv.id)).data, [], "nothing was added by the refused requests");
  });

  test("an item id already in the conversation is refused", async () => {
    const conv = await t.client.conversations.create({ items: [{ role: "user", content: "Hi" }] });
    const r = await create({ conversation: conv.id, max_output_tokens: 16 });
    const err = await apiError(t.client.conversations.items.create(conv.id, { items: [r.output[0] as never] }), OpenAI.BadRequestError);
    assert.equal(err.param, "items[0].id");
  });
});

describe("responses in a conversation", () => {
  test("each response appends its input and output; the next one reads them all from the warm cache", async () => {
    const conv = await t.client.conversations.create({ items: [{ role: "user", content: "Sam found a shell." }] });
    const first = await create({ conversation: conv.id, input: "What did Sam do?", max_output_tokens: 24, temperature: 0, ignore_eos: true });
    assert.deepEqual(first.conversation, { id: conv.id });
    let items = (await t.client.conversations.items.list(conv.id, { order: "asc" })).data;
    assert.deepEqual(roles(items), ["user", "user", "assistant"]);
    assert.deepEqual(items[2], first.output[0], "the output item, id and all");
    // The response's input items are the conversation's items, then its own input.
    const firstInput = (await t.client.responses.inputItems.list(first.id, { order: "asc" })).data;
    assert.deepEqual(firstInput, items.slice(0, 2));

    const second = await create({ conversation: { id: conv.id }, input: [{ role: "user", content: "And then?" }], max_output_tokens: 16, temperature: 0 });
    assert.ok(second.usage!.input_tokens_details.cached_tokens >= first.usage!.input_tokens, "the first response's prompt was reused");
    const secondInput = (await t.client.responses.inputItems.list(second.id, { order: "asc" })).data;
    assert.deepEqual(secondInput.slice(0, 3), items);
    assert.equal(textOf(secondInput[3]), "And then?");
    items = (await t.client.conversations.items.list(conv.id, { order: "asc" })).data;
    assert.deepEqual(roles(items), ["user", "user", "assistant", "user", "assistant"]);
    const chat = await t.client.chat.completions.create({
      model: t.modelId,
      messages: items.slice(0, 4).map((i) => ({ role: (i as { role: "user" | "assistant" }).role, content: textOf(i) })),
      max_tokens: 1,
    });
    assert.equal(second.usage!.input_tokens, chat.usage!.prompt_tokens, "rendered as the same chat history");
  });

  test("a response with no input answers the conversation as it stands; deleted items leave the context", async () => {
    const conv = await t.client.conversations.create({
      items: [
        { role: "user", content: "Red" },
        { role: "user", content: "Blue" },
      ],
    });
    const [blue, red] = (await t.client.conversations.items.list(conv.id)).data;
    await t.client.conversations.items.delete(idOf(red), { conversation_id: conv.id });
    const r = await create({ conversation: conv.id, max_output_tokens: 16 });
    const input = (await t.client.responses.inputItems.list(r.id)).data;
    assert.deepEqual(
      input.map((i) => i.id),
      [idOf(blue)],
    );
    const chat = await t.client.chat.completions.create({ model: t.modelId, messages: [{ role: "user", content: "Blue" }], max_tokens: 1 });
    assert.equal(r.usage!.input_tokens, chat.usage!.prompt_tokens);
  });

  test("store:false still continues the conversation, but the response is not kept", async () => {
    const conv = await t.client.conversations.create();
    const r = await create({ conversation: conv.id, input: "Hello", store: false, max_output_tokens: 16 });
    await apiError(t.client.responses.retrieve(r.id), OpenAI.NotFoundError);
    const items = (await t.client.conversations.items.list(conv.id, { order: "asc" })).data;
    assert.deepEqual(roles(items), ["user", "assistant"]);
    assert.deepEqual(items[1], r.output[0]);
  });

  test("a streamed response is in the conversation by the time response.completed arrives", async () => {
    const conv = await t.client.conversations.create();
    const stream = await t.client.responses.create({ model: t.modelId, conversation: conv.id, input: "Once", max_output_tokens: 16, stream: true });
    let appendedAtEnd: unknown[] | null = null;
    for await (const ev of stream) {
      if (ev.type === "response.completed" || ev.type === "response.incomplete") {
        appendedAtEnd = (await t.client.conversations.items.list(conv.id, { order: "asc" })).data;
        assert.deepEqual(appendedAtEnd.at(-1), ev.response.output[0]);
      }
    }
    assert.deepEqual(roles(appendedAtEnd!), ["user", "assistant"]);
  });

  test("conversation and previous_response_id together are refused", async () => {
    const conv = await t.client.conversations.create();
    const r = await create({ input: "x", max_output_tokens: 16 });
    const err = await apiError(create({ conversation: conv.id, previous_response_id: r.id, input: "y" }), OpenAI.BadRequestError);
    assert.equal(err.param, "previous_response_id");
    assert.match(err.message, /conversation/);
    assert.deepEqual((await t.client.conversations.items.list(conv.id)).data, []);
  });
});
