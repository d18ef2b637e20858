// src/openai/tools/toolCallParser.ts: model text → content and tool calls,
// the same however the text is split into deltas.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  assembleToolCallEvents,
  parseToolCalls,
  ToolCallParser,
  type ToolCallEvent,
  type ToolCallParserOptions,
} from "../../../src/openai/tools/toolCallParser.js";

function options(trusted: boolean, parallel = true): ToolCallParserOptions {
  let n = 0;
  return { trusted, parallel, functions: new Set(["get_weather", "add"]), newId: () => `call_${n++}` };
}

/** Feeds `pieces` one push each, then flushes; returns every event. */
function run(opts: ToolCallParserOptions, pieces: string[]): ToolCallEvent[] {
  const p = new ToolCallParser(opts);
  return [...pieces.flatMap((piece) => p.push(piece)), ...p.flush()];
}

/** Every way to cut `text` in two, and one piece per character. */
function splits(text: string): string[][] {
  const out: string[][] = [[text], [...text]];
  for (let i = 1; i < text.length; i++) out.push([text.slice(0, i), text.slice(i)]);
  return out;
}

// What the forced-call grammar writes: blocks separated by newlines, whitespace where it allows it.
const GRAMMAR_OUTPUT =
  '<tool_call>\n{ "name": "get_weather", "arguments": {\n    "city": "Par\\"is}", "tags": ["a", {"b": "]"}]\n} }\n</tool_call>\n<tool_call>\n{"name":"add","arguments":{"a": 1, "b": -2}}\n</tool_call>';

describe("trusted (grammar-forced) output", () => {
  test("calls and their exact arguments, no content, whatever the split", () => {
    for (const pieces of splits(GRAMMAR_OUTPUT)) {
      const { content, calls } = assembleToolCallEvents(run(options(true), pieces));
      assert.equal(content, "");
      assert.deepEqual(
        calls,
        [
          { id: "call_0", name: "get_weather", arguments: '{\n    "city": "Par\\"is}", "tags": ["a", {"b": "]"}]\n}' },
          { id: "call_1", name: "add", arguments: '{"a": 1, "b": -2}' },
        ],
        JSON.stringify(pieces),
      );
    }
  });

  test("a call starts as soon as its name is read; arguments stream as they arrive", () => {
    const p = new ToolCallParser(options(true));
    assert.deepEqual(p.push('<tool_call>\n{"name": "get_wea'), []);
    assert.deepEqual(p.push('ther", "arguments": {"ci'), [
      { type: "call", index: 0, id: "call_0", name: "get_weather" },
      { type: "arguments", index: 0, text: '{"ci' },
    ]);
    assert.deepEqual(p.push('ty": "x"}'), [{ type: "arguments", index: 0, text: 'ty": "x"}' }]);
    assert.deepEqual(p.push("}\n</tool_call>"), []);
    assert.equal(p.callCount, 1);
  });

  test("cut by max_tokens: the last call keeps the arguments written so far", () => {
    const { calls } = assembleToolCallEvents(run(options(true), ['<tool_call>\n{"name": "add", "arguments": {"a": 1']));
    assert.deepEqual(calls, [{ id: "call_0", name: "add", arguments: '{"a": 1' }]);
  });
});

describe("untrusted (tool_choice auto) output", () => {
  const TEXT = 'Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\nDone.';

  test("valid blocks become calls, text around them is content, whatever the split", () => {
    for (const pieces of splits(TEXT)) {
      assert.deepEqual(
        assembleToolCallEvents(run(options(false), pieces)),
        {
          content: "Let me look.\n\nDone.",
          calls: [{ id: "call_0", name: "get_weather", arguments: '{"city":"Paris"}' }],
        },
        JSON.stringify(pieces),
      );
    }
  });

  test("blocks that are not valid calls stay content, verbatim", () => {
    for (const block of [
      "<tool_call>not json</tool_call>",
      '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',
      '<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>',
      '<tool_call>["add"]</tool_call>',
    ]) {
      for (const pieces of splits(`a ${block} b`))
        assert.deepEqual(assembleToolCallEvents(run(options(false), pieces)), { content: `a ${block} b`, calls: [] });
    }
  });

  test("arguments written as a JSON string, or left out, are read as the object they mean", () => {
    const { calls } = assembleToolCallEvents(
      run(options(false), ['<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</tool_call><tool_call>{"name": "add"}</tool_call>']),
    );
    assert.deepEqual(
      calls.map((c) => c.arguments),
      ['{"a":1}', "{}"],
    );
  });

  test("a partial tag at the end of a delta is held back, and released when it is not a tag", () => {
    const p = new ToolCallParser(options(false));
    assert.deepEqual(p.push("hello <tool_"), [{ type: "content", text: "hello " }]);
    assert.deepEqual(p.push("box>"), [{ type: "content", text: "<tool_box>" }]);
    assert.deepEqual(p.push("x <tool"), [{ type: "content", text: "x " }]);
    assert.deepEqual(p.flush(), [{ type: "content", text: "<tool" }]);
  });

  test("an unclosed block is content at the end", () => {
    assert.deepEqual(assembleToolCallEvents(run(options(false), ['hi <tool_call>{"name": "add"'])), { content: 'hi <tool_call>{"name": "add"', calls: [] });
  });

  test("parallel_tool_calls false: blocks after the first call are content", () => {
    const block = '<tool_call>{"name": "add", "arguments": {}}</tool_call>';
    const { content, calls } = assembleToolCallEvents(run(options(false, false), [block + block]));
    assert.equal(calls.length, 1);
    assert.equal(content, block);
  });
});

describe("parseToolCalls", () => {
  test("content is trimmed, and null when there are calls and nothing else", () => {
    const opts = options(false);
    assert.deepEqual(parseToolCalls('  <tool_call>{"name": "add", "arguments": {}}</tool_call>\n', opts), {
      content: null,
      calls: [{ id: "call_0", name: "add", arguments: "{}" }],
    });
    assert.deepEqual(parseToolCalls(" just text ", options(false)), { content: " just text ", calls: [] });
  });
});
