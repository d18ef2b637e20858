// Input items as clients send them back on /v1/responses: item_reference
// items resolved against the tenant's own stored items (a response's input or
// output, a conversation's items), unknown and foreign ids refused alike, and
// output items sent back unchanged (ids, statuses, annotations, logprobs,
// client-only keys) accepted.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import type { Response as OpenAIResponse } from "openai/resources/responses/responses";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";
import { apiError } from "./helpers.js";

const A_KEY = "lmx-refsArefsArefsArefsArefsArefsArefsA01";
const B_KEY = "lmx-refsBrefsBrefsBrefsBrefsBrefsBrefsB02";

let dir: string;
let t: TestServer;
let a: OpenAI;
let b: OpenAI;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-responses-refs-"));
  const tenantsFile = path.join(dir, "tenants.yaml");
  fs.writeFileSync(tenantsFile, `tenants:\n  - id: alpha\n    keys: ["${hashApiKey(A_KEY)}"]\n  - id: beta\n    keys: ["${hashApiKey(B_KEY)}"]\n`);
  t = await startTestServer(
    ["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "1024", "--tenants", tenantsFile, "--data-dir", path.join(dir, "data")],
    { apiKey: A_KEY },
  );
  a = t.client;
  b = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: B_KEY, maxRetries: 0, timeout: 60_000 });
});
after(async () => {
  await t?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const create = (client: OpenAI, body: Record<string, unknown>) =>
  client.responses.create({ model: t.modelId, max_output_tokens: 16, temperature: 0, ...body } as never) as Promise<OpenAIResponse>;

describe("item_reference input items", () => {
  test("a reference to the previous output reads exactly as the item itself, and is stored as that item", async () => {
    const first = await create(a, { input: "Once upon a time" });
    const output = first.output[0]!;
    const byReference = await create(a, {
      input: [
        { role: "user", content: "Once upon a time" },
        { type: "item_reference", id: output.id },
        { role: "user", content: "And then?" },
      ],
    });
    const byValue = await create(a, { store: false, input: [{ role: "user", content: "Once upon a time" }, output, { role: "user", content: "And then?" }] });
    assert.equal(byReference.usage!.input_tokens, byValue.usage!.input_tokens, "the same prompt either way");
    const items = await a.responses.inputItems.list(byReference.id, { order: "asc" });
    assert.deepEqual(items.data[1], output, "the referenced item, id and all");
  });

  test("references resolve to stored input items and to conversation items", async () => {
    const first = await create(a, { input: [{ role: "user", content: "Once upon a time" }] });
    const [userItem] = (await a.responses.inputItems.list(first.id)).data;
    const conversation = await a.conversations.create({ items: [{ type: "message", role: "user", content: "A cat sat." }] });
    const [convItem] = (await a.conversations.items.list(conversation.id)).data;
    const r = await create(a, {
      input: [
        { type: "item_reference", id: userItem!.id },
        { type: "item_reference", id: convItem!.id! },
      ],
    });
    const items = await a.responses.inputItems.list(r.id, { order: "asc" });
    assert.deepEqual(
      items.data.map((i) => i.id),
      [userItem!.id, convItem!.id],
    );
  });

  test("an unknown id and another tenant's id are the same 400, naming the reference", async () => {
    const mine = await create(a, { input: "Alpha's story" });
    const unknown = await apiError(
      create(b, {
        input: [
          { role: "user", content: "x" },
          { type: "item_reference", id: `msg_${"0".repeat(48)}` },
        ],
      }),
      OpenAI.BadRequestError,
    );
    const foreign = await apiError(
      create(b, {
        input: [
          { role: "user", content: "x" },
          { type: "item_reference", id: mine.output[0]!.id },
        ],
      }),
      OpenAI.BadRequestError,
    );
    for (const err of [unknown, foreign]) {
      assert.equal(err.param, "input[1].id");
      assert.equal(err.code, "invalid_value");
    }
    assert.equal(foreign.message.replace(mine.output[0]!.id!, "ID"), unknown.message.replace(`msg_${"0".repeat(48)}`, "ID"));
  });

  test("a deleted response's items can no longer be referenced", async () => {
    const r = await create(a, { input: "Once" });
    await a.responses.delete(r.id);
    const err = await apiError(create(a, { input: [{ type: "item_reference", id: r.output[0]!.id }] }), OpenAI.BadRequestError);
    assert.equal(err.param, "input[0].id");
  });

  test("a conversation can be given items by reference", async () => {
    const r = await create(a, { input: "Once" });
    const conversation = await a.conversations.create({ items: [{ type: "item_reference", id: r.output[0]!.id } as never] });
    const items = await a.conversations.items.list(conversation.id);
    assert.deepEqual(items.data, [r.output[0]]);
    const err = await apiError(
      a.conversations.items.create(conversation.id, { items: [{ type: "item_reference", id: "msg_nope" } as never] }),
      OpenAI.BadRequestError,
    );
    assert.equal(err.param, "items[0].id");
  });
});

describe("output items sent back as input", () => {
  test("messages, function calls and their outputs, with the keys clients add, are accepted", async () => {
    const r = await create(a, {
      store: false,
      input: [
        { role: "user", content: [{ type: "input_text", text: "Weather?", prompt_cache_breakpoint: true }] },
        {
          type: "message",
          id: "msg_client_1",
          role: "assistant",
          status: "completed",
          phase: "final_answer",
          content: [
            { type: "output_text", text: "Checking.", annotations: [], logprobs: [{ token: "C", logprob: -1, bytes: [67], top_logprobs: [] }], parsed: null },
          ],
        },
        {
          type: "function_call",
          id: "fc_client_1",
          call_id: "call_1",
          name: "get_weather",
          arguments: "{}",
          status: "completed",
          namespace: null,
          parsed_arguments: {},
        },
        { type: "function_call_output", id: "fco_client_1", call_id: "call_1", output: "sunny", status: "completed", extra: 1 },
      ],
    });
    assert.equal(r.output[0]!.type, "message");
  });

  test("the top level stays strict", async () => {
    const err = await apiError(create(a, { input: "x", phase: "final" }), OpenAI.BadRequestError);
    assert.equal(err.param, "phase");
  });
});
