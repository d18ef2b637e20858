// Input items (src/openai/responses/items.ts): function_call and
// function_call_output items validated, given ids, and rendered into the chat
// the template sees.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ApiError } from "../../../../src/errors.js";
import { parseInputItems, toChatMessages, withIds } from "../../../../src/openai/responses/items.js";

const parse = (items: unknown[]) => withIds(parseInputItems(items, ["input"]), new Set(), ["input"]);

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
    const [o] = parse([{ type: "function_call_output", call_id: "c", output: [{ type: "input_text", text: "a" }, { type: "input_text", text: "b" }] }]);
    assert.equal((o as { output: string }).output, "ab");
    assertParam(() => parse([{ type: "function_call_output", call_id: "c", output: [{ type: "input_file", file_id: "f" }] }]), "input[0].output[0].type", /text only/);
  });

  test("missing or mistyped fields name themselves", () => {
    assertParam(() => parse([{ type: "function_call", name: "f", arguments: "{}" }]), "input[0].call_id");
    assertParam(() => parse([{ type: "function_call", call_id: "c", name: "f", arguments: {} }]), "input[0].arguments");
    assertParam(() => parse([{ type: "function_call_output", call_id: "c" }]), "input[0].output");
    assertParam(() => parse([{ type: "function_call_output", call_id: "c".repeat(65), output: "" }]), "input[0].call_id");
    assertParam(() => parse([{ type: "function_call", call_id: "c", name: "f", arguments: "{}", namespace: "x" }]), "input[0].namespace");
    assertParam(() => parse([{ type: "item_reference", id: "msg_1" }]), "input[0].type", /message, function_call and function_call_output/);
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
