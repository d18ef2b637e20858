// Tool calling at the edge: src/openai/tools/tools.ts (what tool_choice means
// for the prompt, the grammar and the parser), the tool messages of
// src/openai/chat/protocol.ts, and their Hermes-style text (models/toolPrompt.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ApiError } from "../../../src/errors.js";
import { chatOutput, parseChatRequest, toChatMessages, toEngineRequest } from "../../../src/openai/chat/protocol.js";
import { toolSetup } from "../../../src/openai/tools/tools.js";
import { toolsSystemText, withToolTurns } from "../../../models/toolPrompt.js";

const WEATHER = {
  type: "function",
  function: { name: "get_weather", description: "Weather now", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
};
const PING = { type: "function", function: { name: "ping" } };
const chat = (extra: Record<string, unknown>) => parseChatRequest({ model: "m", messages: [{ role: "user", content: "hi" }], ...extra });

function apiError(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    return err;
  }
  assert.fail("no error");
}

describe("toolSetup", () => {
  test("auto (the default with tools): listed in the prompt, parsed untrusted, no grammar", () => {
    const setup = toolSetup(chat({ tools: [WEATHER, PING] }));
    assert.deepEqual(
      setup.promptTools?.map((t) => t.name),
      ["get_weather", "ping"],
    );
    assert.deepEqual(setup.promptTools?.[1]?.parameters, { type: "object", properties: {} }, "no parameters: an empty object");
    assert.equal(setup.grammar, undefined);
    assert.deepEqual(setup.parsing, { trusted: false, functions: new Set(["get_weather", "ping"]), parallel: true });
  });

  test("none, or no tools: nothing shown, nothing parsed", () => {
    assert.deepEqual(toolSetup(chat({ tools: [WEATHER], tool_choice: "none" })), { parsing: null });
    assert.deepEqual(toolSetup(chat({})), { parsing: null });
    assert.deepEqual(toolSetup(chat({ tools: [], tool_choice: "auto" })), { parsing: null });
  });

  test("required: a grammar of <tool_call> blocks over every tool, name first, arguments from its schema", () => {
    const setup = toolSetup(chat({ tools: [WEATHER, PING], tool_choice: "required" }));
    assert.deepEqual(setup.grammar, {
      kind: "json_schema",
      schema: {
        oneOf: [
          {
            type: "object",
            properties: {
              name: { const: "get_weather" },
              arguments: { type: "object", properties: { city: { type: "string" } }, additionalProperties: false },
            },
            additionalProperties: false,
          },
          { type: "object", properties: { name: { const: "ping" }, arguments: { type: "object", additionalProperties: false } }, additionalProperties: false },
        ],
      },
      wrap: { prefix: "<tool_call>\n", suffix: "\n</tool_call>", separator: "\n", repeat: true },
    });
    assert.equal(setup.parsing?.trusted, true);
  });

  test("a named function: only it; parallel_tool_calls false: one block", () => {
    const setup = toolSetup(chat({ tools: [WEATHER, PING], tool_choice: { type: "function", function: { name: "ping" } }, parallel_tool_calls: false }));
    const grammar = setup.grammar as unknown as { schema: { properties: { name: unknown } }; wrap: { repeat: boolean } };
    assert.deepEqual(grammar.schema.properties.name, { const: "ping" });
    assert.equal(grammar.wrap.repeat, false);
    assert.deepEqual(setup.parsing, { trusted: true, functions: new Set(["ping"]), parallel: false });
  });

  test("inconsistent tool fields are 400s naming the field", () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ tool_choice: "required" }, "tool_choice"],
      [{ tools: [WEATHER], tool_choice: { type: "function", function: { name: "nope" } } }, "tool_choice.function.name"],
      [{ tools: [WEATHER, WEATHER] }, "tools[1].function.name"],
      [{ tools: [{ type: "function", function: { name: "s", parameters: { type: "string" } } }], tool_choice: "required" }, "tools[0].function.parameters"],
      [
        {
          tools: [{ type: "function", function: { name: "p", parameters: { type: "object", properties: { a: { type: "string", pattern: "(?=x)" } } } } }],
          tool_choice: "required",
        },
        "tools[0].function.parameters",
      ],
    ];
    for (const [extra, param] of cases) assert.equal(apiError(() => toolSetup(chat(extra))).param, param, JSON.stringify(extra));
    // auto does not constrain the output, so a schema the grammar could not enforce is fine there.
    assert.doesNotThrow(() =>
      toolSetup(chat({ tools: [{ type: "function", function: { name: "p", parameters: { type: "object", properties: { a: { pattern: "(?=x)" } } } } }] })),
    );
  });

  test("zod names malformed tools and tool_choice", () => {
    assert.equal(apiError(() => chat({ tools: [{ type: "custom", custom: { name: "x" } }] })).param, "tools[0].type");
    assert.equal(apiError(() => chat({ tools: [{ type: "function", function: { name: "a b" } }] })).param, "tools[0].function.name");
    assert.equal(apiError(() => chat({ tool_choice: "sometimes" })).param, "tool_choice");
  });

  test("a JSON response_format beside tools: a forced call wins; otherwise the format writes a message that is not read for calls", () => {
    const auto = chatOutput(chat({ tools: [WEATHER], response_format: { type: "json_object" } }));
    assert.deepEqual(auto.grammar, { kind: "json" });
    assert.equal(auto.tools.parsing, null);
    const forced = chatOutput(chat({ tools: [WEATHER], tool_choice: "required", response_format: { type: "json_object" } }));
    assert.equal(forced.grammar?.kind, "json_schema");
    assert.ok(forced.grammar?.kind === "json_schema" && forced.grammar.wrap, "the tools' grammar, wrapped in call tags");
    assert.notEqual(forced.tools.parsing, null);
    assert.deepEqual(toEngineRequest(chat({ tools: [WEATHER], tool_choice: "none", response_format: { type: "json_object" } }), "t").grammar, { kind: "json" });
  });
});

describe("tool messages", () => {
  const CALL = { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } };

  test("assistant tool_calls and tool results become engine messages", () => {
    const req = chat({
      tools: [WEATHER],
      messages: [
        { role: "user", content: "Weather?" },
        { role: "assistant", content: null, tool_calls: [CALL] },
        { role: "tool", tool_call_id: "call_1", content: [{ type: "text", text: "21C" }] },
      ],
    });
    assert.deepEqual(toChatMessages(req), [
      { role: "user", content: "Weather?" },
      { role: "assistant", content: "", toolCalls: [{ name: "get_weather", arguments: '{"city":"Paris"}' }] },
      { role: "tool", content: "21C" },
    ]);
    assert.deepEqual(toEngineRequest(req, "t").prompt, {
      kind: "chat",
      messages: toChatMessages(req),
      tools: [{ name: "get_weather", description: "Weather now", parameters: WEATHER.function.parameters }],
    });
  });

  test("a tool message must answer an earlier call; tool fields belong to their roles", () => {
    const bad = (messages: unknown[]) => apiError(() => toChatMessages(chat({ messages })));
    assert.equal(bad([{ role: "tool", tool_call_id: "call_1", content: "x" }]).param, "messages[0].tool_call_id");
    assert.equal(
      bad([
        { role: "assistant", content: null, tool_calls: [CALL] },
        { role: "tool", content: "x" },
      ]).code,
      "missing_required_parameter",
    );
    assert.equal(bad([{ role: "user", content: "x", tool_calls: [CALL] }]).param, "messages[0].tool_calls");
    assert.equal(bad([{ role: "user", content: "x", tool_call_id: "call_1" }]).param, "messages[0].tool_call_id");
  });
});

describe("Hermes-style prompt text", () => {
  const tools = [{ name: "get_weather", description: "Weather now", parameters: { type: "object" } }];

  test("the tools join the system message, or open the conversation as one", () => {
    const withSystem = withToolTurns(
      [
        { role: "system", content: "Be brief." },
        { role: "user", content: "hi" },
      ],
      tools,
    );
    assert.equal(withSystem[0]!.content, `Be brief.\n\n${toolsSystemText(tools)}`);
    const without = withToolTurns([{ role: "user", content: "hi" }], tools);
    assert.deepEqual(without[0], { role: "system", content: toolsSystemText(tools) });
    assert.match(
      toolsSystemText(tools),
      /<tools>\n\{"type":"function","function":\{"name":"get_weather","description":"Weather now","parameters":\{"type":"object"\}\}\}\n<\/tools>/,
    );
    assert.match(toolsSystemText(tools), /<tool_call>\n\{"name": <function-name>, "arguments": <args-json-object>\}\n<\/tool_call>$/);
  });

  test("calls follow the assistant's text; consecutive results share one user turn", () => {
    const turns = withToolTurns(
      [
        { role: "user", content: "Weather in Paris and Rome?" },
        {
          role: "assistant",
          content: "Checking.",
          toolCalls: [
            { name: "get_weather", arguments: '{"city":"Paris"}' },
            { name: "get_weather", arguments: "not json" },
          ],
        },
        { role: "tool", content: "21C" },
        { role: "tool", content: "25C" },
        { role: "assistant", content: "Paris 21C, Rome 25C." },
      ],
      undefined,
    );
    assert.deepEqual(turns, [
      { role: "user", content: "Weather in Paris and Rome?" },
      {
        role: "assistant",
        content:
          'Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city":"Paris"}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": "not json"}\n</tool_call>',
      },
      { role: "user", content: "<tool_response>\n21C\n</tool_response>\n<tool_response>\n25C\n</tool_response>" },
      { role: "assistant", content: "Paris 21C, Rome 25C." },
    ]);
  });
});
