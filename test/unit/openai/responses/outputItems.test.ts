// OutputItems (src/openai/responses/outputItems.ts): text and tool-call events
// → a response's output items in order, with the stream events each step sends.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { OutputItems, type OutputListener } from "../../../../src/openai/responses/outputItems.js";
import type { Item } from "../../../../src/store/conversationStore.js";

/** A listener that writes each callback as a line, ids shortened to their prefix. */
function recorder(): { log: string[]; listener: OutputListener } {
  const log: string[] = [];
  const kind = (id: string) => id.slice(0, id.indexOf("_"));
  const describeItem = (item: Item) =>
    item.type === "message"
      ? `message ${item.status} ${JSON.stringify(item.content.map((p) => (p.type === "refusal" ? p.refusal : p.text)).join(""))}`
      : item.type === "function_call"
        ? `call ${item.call_id} ${item.name} ${item.status} ${item.arguments}`
        : `output ${item.call_id}`;
  return {
    log,
    listener: {
      added: async (i, item) => void log.push(`added ${i} ${kind(item.id)} ${describeItem(item)}`),
      textDelta: async (i, item, delta) => void log.push(`text ${i} ${kind(item.id)} ${JSON.stringify(delta)}`),
      argumentsDelta: async (i, id, delta) => void log.push(`args ${i} ${kind(id)} ${delta}`),
      done: async (i, item) => void log.push(`done ${i} ${describeItem(item)}`),
    },
  };
}

describe("OutputItems", () => {
  test("text only: one message, its deltas, done with the final status", async () => {
    const { log, listener } = recorder();
    const out = new OutputItems(listener);
    await out.push([
      { type: "content", text: "Hel" },
      { type: "content", text: "lo" },
    ]);
    const items = await out.finish("incomplete");
    assert.equal(items.length, 1);
    assert.deepEqual(log, ['added 0 msg message in_progress ""', 'text 0 msg "Hel"', 'text 0 msg "lo"', 'done 0 message incomplete "Hello"']);
  });

  test("calls only: whitespace around them is no message; each call is its own item, in order", async () => {
    const { log, listener } = recorder();
    const out = new OutputItems(listener);
    await out.push([
      { type: "content", text: "\n" },
      { type: "call", index: 0, id: "call_a", name: "f" },
      { type: "arguments", index: 0, text: '{"x":' },
      { type: "arguments", index: 0, text: "1}" },
      { type: "content", text: " \n" },
      { type: "call", index: 1, id: "call_b", name: "g" },
      { type: "arguments", index: 1, text: "{}" },
      { type: "content", text: "\n" },
    ]);
    const items = await out.finish("completed");
    assert.deepEqual(
      items.map((i) => i.type),
      ["function_call", "function_call"],
    );
    assert.deepEqual(log, [
      "added 0 fc call call_a f in_progress ",
      'args 0 fc {"x":',
      "args 0 fc 1}",
      'done 0 call call_a f completed {"x":1}',
      "added 1 fc call call_b g in_progress ",
      "args 1 fc {}",
      "done 1 call call_b g completed {}",
    ]);
  });

  test("text then a call: the message is done before the call is added", async () => {
    const { log, listener } = recorder();
    const out = new OutputItems(listener);
    await out.push([
      { type: "content", text: "Let me check." },
      { type: "call", index: 0, id: "call_a", name: "f" },
      { type: "arguments", index: 0, text: "{}" },
    ]);
    const items = await out.finish("completed");
    assert.deepEqual(
      items.map((i) => i.type),
      ["message", "function_call"],
    );
    assert.deepEqual(log.slice(0, 3), ['added 0 msg message in_progress ""', 'text 0 msg "Let me check."', 'done 0 message completed "Let me check."']);
    assert.equal(log[3], "added 1 fc call call_a f in_progress ");
  });

  test("a call cut by the token limit is incomplete; the calls before it are complete", async () => {
    const out = new OutputItems();
    await out.push([
      { type: "call", index: 0, id: "call_a", name: "f" },
      { type: "arguments", index: 0, text: "{}" },
      { type: "call", index: 1, id: "call_b", name: "f" },
      { type: "arguments", index: 1, text: '{"x": 1' },
    ]);
    const items = (await out.finish("incomplete")) as Array<{ status: string }>;
    assert.deepEqual(
      items.map((i) => i.status),
      ["completed", "incomplete"],
    );
  });

  test("nothing but whitespace: it is the message, sent as a delta", async () => {
    const { log, listener } = recorder();
    const out = new OutputItems(listener);
    await out.push([{ type: "content", text: " \n" }]);
    const items = await out.finish("completed");
    assert.equal(items.length, 1);
    assert.deepEqual(log, ['added 0 msg message in_progress ""', 'text 0 msg " \\n"', 'done 0 message completed " \\n"']);
  });

  test("whitespace held before the message keeps its logprobs, in order", async () => {
    const entry = (token: string) => ({ token, logprob: -1, bytes: [...Buffer.from(token)], top: [] });
    const out = new OutputItems();
    await out.text(" ", [entry(" ")]);
    await out.text("\n", [entry("\n")]);
    const [only] = await out.finish("completed");
    assert.deepEqual(
      (only as { content: Array<{ logprobs: Array<{ token: string }> }> }).content[0]!.logprobs.map((e) => e.token),
      [" ", "\n"],
    );
    const more = new OutputItems();
    await more.text(" ", [entry(" ")]);
    await more.text("Hi", [entry("Hi")]);
    const [message] = await more.finish("completed");
    assert.deepEqual(
      (message as { content: Array<{ text: string; logprobs: Array<{ token: string }> }> }).content[0]!.logprobs.map((e) => e.token),
      [" ", "Hi"],
    );
  });

  test("no output at all: one empty message; startMessage opens it before any text", async () => {
    const { log, listener } = recorder();
    const out = new OutputItems(listener);
    await out.startMessage();
    assert.deepEqual(log, ['added 0 msg message in_progress ""']);
    assert.deepEqual(
      out.snapshot.map((i) => i.status),
      ["in_progress"],
    );
    const items = await out.finish("completed");
    assert.equal(items.length, 1);
    assert.equal(log.at(-1), 'done 0 message completed ""');
    assert.equal((await new OutputItems().finish("completed")).length, 1);
  });
});
