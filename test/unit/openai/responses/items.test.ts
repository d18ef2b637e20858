// Input items (src/openai/responses/items.ts): function_call and
// function_call_output items validated, given ids, and rendered into the chat
// the template sees.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ApiError } from "../../../../src/errors.js";
import { parseInputItems, resolveItemReferences, toChatMessages, withIds, type ParsedItem } from "../../../../src/openai/responses/items.js";

/** Items without references, given ids. */
const parse = (items: unknown[]) => withIds(parseInputItems(items, ["input"]) as ParsedItem[], new Set(), ["input"]);

function assertParam(fn: () => unknown, param: string, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.param, param, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe("function call items", () => {
  test("are parsed and given fc_ / fco_ ids unless they carry their own", () => {
    const [call, output, own] = parse([
      { type: "function_call", call_id: "call_1", name: "f", arguments: '{"a":1}' },
      { type: "function_call_output", call_id: "call_1", output: "42" },
      { type: "function_call", id: "fc_mine", call_id: "call_2", name: "g", arguments: "{}", status: "completed" },
    ]);
    assert.match(call!.id, /^fc_[0-9a-f]{48}$/);
    assert.deepEqual({ ...call, id: "" }, { type: "function_call", id: "", call_id: "call_1", name: "f", arguments: '{"a":1}', status: "completed" });
    assert.match(output!.id, /^fco_[0-9a-f]{48}$/);
    assert.deepEqual({ ...output, id: "" }, { type: "function_call_output", id: "", call_id: "call_1", output: "42", status: "completed" });
    assert.equal(own!.id, "fc_mine");
  });

  test("an output given as input_text parts is their text joined; other parts are refused", () => {
    const [o] = parse([
      {
        type: "function_call_output",
        call_id: "c",
        output: [
          { type: "input_text", text: "a" },
          { type: "input_text", text: "b" },
        ],
      },
    ]);
    assert.equal((o as { output: string }).output, "ab");
    assertParam(
      () => parse([{ type: "function_call_output", call_id: "c", output: [{ type: "input_file", file_id: "f" }] }]),
      "input[0].output[0].type",
      /text only/,
    );
  });

  test("missing or mistyped fields name themselves", () => {
    assertParam(() => parse([{ type: "function_call", name: "f", arguments: "{}" }]), "input[0].call_id");
    assertParam(() => parse([{ type: "function_call", call_id: "c", name: "f", arguments: {} }]), "input[0].arguments");
    assertParam(() => parse([{ type: "function_call_output", call_id: "c" }]), "input[0].output");
    assertParam(() => parse([{ type: "function_call_output", call_id: "c".repeat(65), output: "" }]), "input[0].call_id");
    assertParam(() => parse([{ type: "item_reference" }]), "input[0].id");
    assertParam(() => parse([{ type: "reasoning", summary: [] }]), "input[0].type", /message, function_call, function_call_output and item_reference/);
  });
});

describe("toChatMessages", () => {
  test("calls join the assistant turn before them; outputs are tool turns", () => {
    const items = parse([
      { role: "user", content: "Weather in Paris and Rome?" },
      { role: "assistant", content: "Checking." },
      { type: "function_call", call_id: "c1", name: "weather", arguments: '{"city":"Paris"}' },
      { type: "function_call", call_id: "c2", name: "weather", arguments: '{"city":"Rome"}' },
      { type: "function_call_output", call_id: "c1", output: "sunny" },
      { type: "function_call_output", call_id: "c2", output: "rain" },
      { type: "function_call", call_id: "c3", name: "time", arguments: "{}" },
    ]);
    assert.deepEqual(toChatMessages(items), [
      { role: "user", content: "Weather in Paris and Rome?" },
      {
        role: "assistant",
        content: "Checking.",
        toolCalls: [
          { name: "weather", arguments: '{"city":"Paris"}' },
          { name: "weather", arguments: '{"city":"Rome"}' },
        ],
      },
      { role: "tool", content: "sunny" },
      { role: "tool", content: "rain" },
      { role: "assistant", content: "", toolCalls: [{ name: "time", arguments: "{}" }] },
    ]);
  });
});

describe("keys inside items and parts", () => {
  test("keys an item or part does not define are dropped, not refused (as on OpenAI)", () => {
    const [message, call, output] = parse([
      { type: "message", role: "assistant", phase: "final_answer", content: [{ type: "output_text", text: "hi", annotations: [], parsed: { a: 1 } }] },
      { type: "function_call", call_id: "c", name: "f", arguments: "{}", namespace: "x", parsed_arguments: {} },
      { type: "function_call_output", call_id: "c", output: [{ type: "input_text", text: "ok", prompt_cache_breakpoint: true }], extra: 1 },
    ]);
    assert.deepEqual(
      { ...message, id: "" },
      { type: "message", id: "", role: "assistant", status: "completed", content: [{ type: "output_text", text: "hi", annotations: [], logprobs: [] }] },
    );
    assert.deepEqual({ ...call, id: "" }, { type: "function_call", id: "", call_id: "c", name: "f", arguments: "{}", status: "completed" });
    assert.equal((output as { output: string }).output, "ok");
  });

  test("a defined key with a bad value is still a 400 naming it", () => {
    assertParam(() => parse([{ type: "message", role: "user", content: "x", status: "done" }]), "input[0].status");
    assertParam(
      () => parse([{ type: "message", role: "assistant", content: [{ type: "output_text", text: "x", annotations: "none" }] }]),
      "input[0].content[0].annotations",
    );
  });
});

describe("resolveItemReferences", () => {
  const stored = parse([{ role: "user", content: "hello", id: "msg_stored" }])[0]!;
  const find = async (ids: string[]) => new Map(ids.includes("msg_stored") ? [["msg_stored", stored]] : []);

  test("replaces each reference with the stored item, in place", async () => {
    const entries = parseInputItems(
      [
        { role: "user", content: "a" },
        { type: "item_reference", id: "msg_stored" },
      ],
      ["input"],
    );
    const items = await resolveItemReferences(entries, find, ["input"]);
    assert.equal(items.length, 2);
    assert.deepEqual(items[1], stored);
  });

  test("an id not found is a 400 naming the reference's id; nothing is looked up without references", async () => {
    const entries = parseInputItems(
      [
        { role: "user", content: "a" },
        { type: "item_reference", id: "msg_other" },
      ],
      ["input"],
    );
    await assert.rejects(
      resolveItemReferences(entries, find, ["input"]),
      (err: unknown) => err instanceof ApiError && err.param === "input[1].id" && /msg_other/.test(err.message),
    );
    let looked = false;
    await resolveItemReferences(parseInputItems([{ role: "user", content: "a" }], ["input"]), async () => ((looked = true), new Map()), ["input"]);
    assert.equal(looked, false);
  });
});
