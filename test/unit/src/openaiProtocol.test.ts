// Request validation and translation for the OpenAI endpoints:
// src/openai/common.ts, src/openai/chat/protocol.ts, src/openai/completions/protocol.ts.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ApiError } from "../../../src/errors.js";
import { nowSeconds, paramName, parseBody, randomId, stopList, toSamplingParams, MAX_STOP_SEQUENCES } from "../../../src/openai/common.js";
import { chatRequestSchema, parseChatRequest, toChatMessages, toEngineRequest } from "../../../src/openai/chat/protocol.js";
import { DEFAULT_COMPLETION_MAX_TOKENS, parseCompletionRequest, toEngineRequests } from "../../../src/openai/completions/protocol.js";

const USER = [{ role: "user", content: "hi" }];
const chat = (extra: Record<string, unknown> = {}) => ({ model: "m", messages: USER, ...extra });
const completion = (extra: Record<string, unknown> = {}) => ({ model: "m", prompt: "hi", ...extra });

/** Runs `fn`, expects an ApiError and returns it. */
function apiError(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ApiError, `expected an ApiError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected an ApiError");
}

function assertApiError(fn: () => unknown, code: string, param: string | null): ApiError {
  const e = apiError(fn);
  assert.deepEqual({ code: e.code, param: e.param }, { code, param }, e.message);
  return e;
}

const OPENAI_DEFAULT_SAMPLING = {
  temperature: 1,
  topP: 1,
  topK: null,
  minP: null,
  seed: null,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repeatPenalty: null,
  logitBias: {},
  ignoreEos: false,
};

describe("common helpers", () => {
  test("paramName renders zod paths the way OpenAI names parameters", () => {
    assert.equal(paramName(["messages", 0, "content"]), "messages[0].content");
    assert.equal(paramName(["messages", 1, "content", 2, "type"]), "messages[1].content[2].type");
    assert.equal(paramName(["stream_options", "include_usage"]), "stream_options.include_usage");
    assert.equal(paramName(["prompt", 0, 3]), "prompt[0][3]");
    assert.equal(paramName(["temperature"]), "temperature");
    assert.equal(paramName([]), "");
  });

  test("stopList: string → one stop, arrays kept, empty strings and null dropped", () => {
    assert.deepEqual(stopList("###"), ["###"]);
    assert.deepEqual(stopList(["a", "", "b"]), ["a", "b"]);
    assert.deepEqual(stopList(""), []);
    assert.deepEqual(stopList(null), []);
    assert.deepEqual(stopList(undefined), []);
  });

  test("toSamplingParams gives OpenAI's defaults for an empty request", () => {
    assert.deepEqual(toSamplingParams({}), OPENAI_DEFAULT_SAMPLING);
    assert.deepEqual(
      toSamplingParams({ temperature: null, top_p: null, presence_penalty: null, frequency_penalty: null, top_k: null, seed: null }),
      OPENAI_DEFAULT_SAMPLING,
      "explicit nulls mean the defaults",
    );
  });

  test("toSamplingParams carries every field, including zeros (not replaced by defaults)", () => {
    assert.deepEqual(
      toSamplingParams({
        temperature: 0,
        top_p: 0.5,
        top_k: 40,
        min_p: 0.05,
        seed: 0,
        presence_penalty: -1.5,
        frequency_penalty: 2,
        repeat_penalty: 1.1,
        logit_bias: { "50256": -100 },
        ignore_eos: true,
      }),
      {
        temperature: 0,
        topP: 0.5,
        topK: 40,
        minP: 0.05,
        seed: 0,
        presencePenalty: -1.5,
        frequencyPenalty: 2,
        repeatPenalty: 1.1,
        logitBias: { "50256": -100 },
        ignoreEos: true,
      },
    );
  });

  test("parseBody refuses bodies that are not JSON objects", () => {
    for (const body of [undefined, null, "text", 42, true, [1, 2], []]) {
      assertApiError(() => parseBody(chatRequestSchema, body), "invalid_body", null);
    }
  });

  test("randomId has the prefix and 24 alphanumeric characters, and differs each time", () => {
    const a = randomId("chatcmpl");
    assert.match(a, /^chatcmpl-[A-Za-z0-9]{24}$/);
    assert.notEqual(randomId("cmpl"), randomId("cmpl"));
  });

  test("nowSeconds is the current Unix time in whole seconds", () => {
    const before = Math.floor(Date.now() / 1000);
    const n = nowSeconds();
    assert.ok(Number.isInteger(n));
    assert.ok(n >= before && n <= before + 1);
  });
});

describe("parseChatRequest: error mapping", () => {
  test("a valid minimal request parses", () => {
    const req = parseChatRequest(chat());
    assert.equal(req.model, "m");
    assert.deepEqual(req.messages, USER);
  });

  test("missing messages → missing_required_parameter naming it", () => {
    const e = assertApiError(() => parseChatRequest({ model: "m" }), "missing_required_parameter", "messages");
    assert.equal(e.status, 400);
    assert.match(e.message, /messages/);
  });

  test("missing model → missing_required_parameter naming it", () => {
    assertApiError(() => parseChatRequest({ messages: USER }), "missing_required_parameter", "model");
  });

  test("an empty messages array → invalid_value naming messages", () => {
    assertApiError(() => parseChatRequest(chat({ messages: [] })), "invalid_value", "messages");
  });

  test("temperature out of range → invalid_value naming it", () => {
    assertApiError(() => parseChatRequest(chat({ temperature: 3 })), "invalid_value", "temperature");
    assertApiError(() => parseChatRequest(chat({ temperature: -0.1 })), "invalid_value", "temperature");
    assertApiError(() => parseChatRequest(chat({ top_p: 1.5 })), "invalid_value", "top_p");
    assertApiError(() => parseChatRequest(chat({ presence_penalty: -3 })), "invalid_value", "presence_penalty");
    assertApiError(() => parseChatRequest(chat({ max_tokens: 0 })), "invalid_value", "max_tokens");
  });

  test("an out-of-range message does not claim the number is not a number", () => {
    const e = apiError(() => parseChatRequest(chat({ temperature: 3 })));
    assert.doesNotMatch(e.message, /must be a number/);
    assert.match(e.message, /\b2\b/, "names the maximum");
  });

  test('a wrongly typed value → invalid_type naming it (temperature: "hot", model: 5, max_tokens: 1.5)', () => {
    assertApiError(() => parseChatRequest(chat({ temperature: "hot" })), "invalid_type", "temperature");
    assertApiError(() => parseChatRequest({ model: 5, messages: USER }), "invalid_type", "model");
    assertApiError(() => parseChatRequest(chat({ messages: "hi" })), "invalid_type", "messages");
    const e = apiError(() => parseChatRequest(chat({ max_tokens: 1.5 })));
    assert.notEqual(e.code, "missing_required_parameter");
    assert.equal(e.param, "max_tokens");
  });

  test("a wrongly typed value is at least a 400 naming the parameter", () => {
    for (const [extra, param] of [
      [{ temperature: "hot" }, "temperature"],
      [{ stream: "yes" }, "stream"],
      [{ seed: 1.5 }, "seed"],
      [{ max_tokens: 1.5 }, "max_tokens"],
    ] as const) {
      const e = apiError(() => parseChatRequest(chat(extra)));
      assert.equal(e.status, 400);
      assert.equal(e.param, param);
    }
  });

  test("nested errors name the exact message field", () => {
    const two = (second: Record<string, unknown>) => chat({ messages: [{ role: "user", content: "a" }, second] });
    assertApiError(() => parseChatRequest(two({ role: "wizard", content: "b" })), "invalid_value", "messages[1].role");
    const e = apiError(() => parseChatRequest(two({ role: "user", content: 5 })));
    assert.equal(e.param, "messages[1].content");
    assert.ok(["invalid_type", "invalid_value"].includes(e.code), e.code);
    assertApiError(
      () => toChatMessages(parseChatRequest(two({ role: "user", content: [{ type: "text", text: 5, colour: "red" }] }))),
      "invalid_type",
      "messages[1].content[0].text",
    );
    assertApiError(
      () => parseChatRequest(two({ role: "assistant", content: null, tool_calls: [{ id: 5, type: "function", function: { name: "f", arguments: "{}" } }] })),
      "invalid_type",
      "messages[1].tool_calls[0].id",
    );
  });

  test("unknown keys inside messages, parts and tool calls are ignored, as OpenAI does (the top level stays strict)", () => {
    // What openai-node / openai-python send back when a returned message is appended unchanged.
    const returned = {
      role: "assistant",
      content: null,
      refusal: null,
      annotations: [],
      audio: null,
      function_call: null,
      parsed: null,
      tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "f", arguments: "{}", parsed_arguments: {} } }],
    };
    const req = parseChatRequest(
      chat({
        messages: [
          { role: "user", content: "b", colour: "red" },
          returned,
          { role: "tool", tool_call_id: "call_1", content: [{ type: "text", text: "42", annotations: [], cache_control: {} }] },
          { role: "assistant", content: [{ type: "text", text: "ok", role: "assistant", refusal: null, annotations: [] }], tool_calls: [] },
          { role: "user", content: "again", tool_calls: [] },
        ],
      }),
    );
    assert.equal("colour" in req.messages[0]!, false, "unknown keys are dropped, not carried");
    assert.equal("annotations" in req.messages[1]!, false);
    assert.deepEqual(toChatMessages(req), [
      { role: "user", content: "b" },
      { role: "assistant", content: "", toolCalls: [{ name: "f", arguments: "{}" }] },
      { role: "tool", content: "42" },
      { role: "assistant", content: "ok" },
      { role: "user", content: "again" },
    ]);
    assertApiError(() => parseChatRequest(chat({ messages: [{ role: "user", content: "b" }], colour: "red" })), "unknown_parameter", "colour");
  });

  test("an unknown top-level key → unknown_parameter naming it", () => {
    const e = assertApiError(() => parseChatRequest(chat({ frobnicate: true })), "unknown_parameter", "frobnicate");
    assert.match(e.message, /frobnicate/);
    assertApiError(() => parseChatRequest(chat({ stream_options: { include_usage: true, extra: 1 } })), "unknown_parameter", "stream_options.extra");
  });

  test("refused parameters → unsupported_parameter naming each", () => {
    const cases: Array<[string, Record<string, unknown>]> = [
      ["modalities", { modalities: ["text", "audio"] }],
      ["functions", { functions: [{ name: "f" }] }],
      ["function_call", { function_call: "auto" }],
      ["audio", { audio: { voice: "alloy", format: "mp3" } }],
      ["prediction", { prediction: { type: "content", content: "x" } }],
      ["web_search_options", { web_search_options: {} }],
      ["reasoning_effort", { reasoning_effort: "low" }],
      ["verbosity", { verbosity: "low" }],
    ];
    for (const [param, extra] of cases) {
      const e = assertApiError(() => parseChatRequest(chat(extra)), "unsupported_parameter", param);
      assert.equal(e.status, 400);
      assert.match(e.message, new RegExp(`'${param}'`));
    }
  });

  test("neutral values of refused parameters pass", () => {
    const req = parseChatRequest(
      chat({
        n: 1,
        tools: [],
        logprobs: false,
        top_logprobs: null,
        response_format: { type: "text" },
        modalities: ["text"],
        tool_choice: "none",
        parallel_tool_calls: null,
        functions: null,
        audio: null,
      }),
    );
    assert.equal(req.n, 1);
    assert.deepEqual(req.tools, []);
  });

  test("n: 1..128 choices; 0, 129 or a fraction is a 400 naming n", () => {
    assert.equal(parseChatRequest(chat({ n: 128 })).n, 128);
    for (const n of [0, 129]) assertApiError(() => parseChatRequest(chat({ n })), "invalid_value", "n");
    assertApiError(() => parseChatRequest(chat({ n: 1.5 })), "invalid_type", "n");
  });

  test("logprobs: true carries top_logprobs (default 0) to the engine; false or absent asks for none", () => {
    assert.equal(toEngineRequest(parseChatRequest(chat({ logprobs: true, top_logprobs: 20 })), "t").logprobs, 20);
    assert.equal(toEngineRequest(parseChatRequest(chat({ logprobs: true })), "t").logprobs, 0);
    assert.equal("logprobs" in toEngineRequest(parseChatRequest(chat({ logprobs: false })), "t"), false);
    assert.equal("logprobs" in toEngineRequest(parseChatRequest(chat()), "t"), false);
  });

  test("top_logprobs above 20, or without logprobs: true, is a 400 naming top_logprobs", () => {
    assertApiError(() => parseChatRequest(chat({ logprobs: true, top_logprobs: 21 })), "invalid_value", "top_logprobs");
    assertApiError(() => parseChatRequest(chat({ logprobs: true, top_logprobs: -1 })), "invalid_value", "top_logprobs");
    const e = assertApiError(() => parseChatRequest(chat({ top_logprobs: 2 })), "invalid_value", "top_logprobs");
    assert.match(e.message, /'logprobs'/);
    assertApiError(() => parseChatRequest(chat({ logprobs: false, top_logprobs: 0 })), "invalid_value", "top_logprobs");
  });

  test("accepted-and-ignored parameters pass", () => {
    assert.doesNotThrow(() =>
      parseChatRequest(chat({ user: "u1", metadata: { a: "b" }, store: false, service_tier: "auto", safety_identifier: "s", prompt_cache_key: "k" })),
    );
  });

  test("stop as a string and as an array of up to 4", () => {
    assert.deepEqual(toEngineRequest(parseChatRequest(chat({ stop: "\n" })), "t").stop, ["\n"]);
    const four = ["a", "b", "c", "d"];
    assert.equal(four.length, MAX_STOP_SEQUENCES);
    assert.deepEqual(toEngineRequest(parseChatRequest(chat({ stop: four })), "t").stop, four);
    assert.deepEqual(toEngineRequest(parseChatRequest(chat({ stop: null })), "t").stop, []);
  });

  test("a fifth stop sequence, a non-string stop or an over-long stop → invalid_value param stop", () => {
    assertApiError(() => parseChatRequest(chat({ stop: ["a", "b", "c", "d", "e"] })), "invalid_value", "stop");
    assertApiError(() => parseChatRequest(chat({ stop: 5 })), "invalid_value", "stop");
    assertApiError(() => parseChatRequest(chat({ stop: "x".repeat(257) })), "invalid_value", "stop");
  });

  test("logit_bias keys must be token ids and values within [-100, 100]", () => {
    assert.equal(apiError(() => parseChatRequest(chat({ logit_bias: { abc: 1 } }))).param, "logit_bias.abc");
    assertApiError(() => parseChatRequest(chat({ logit_bias: { "5": 101 } })), "invalid_value", "logit_bias.5");
    assert.deepEqual(toEngineRequest(parseChatRequest(chat({ logit_bias: { "5": -100 } })), "t").sampling.logitBias, { "5": -100 });
  });
});

describe("chat: messages and engine request", () => {
  test("an image content part → unsupported_parameter naming messages[0].content[0].type", () => {
    const req = parseChatRequest(chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "http://x/y.png" } }] }] }));
    const e = assertApiError(() => toEngineRequest(req, "t"), "unsupported_parameter", "messages[0].content[0].type");
    assert.match(e.message, /image_url/);
  });

  test("the failing part is named by its index", () => {
    const req = parseChatRequest(
      chat({
        messages: [
          { role: "system", content: "s" },
          {
            role: "user",
            content: [
              { type: "text", text: "a" },
              { type: "input_audio", input_audio: {} },
            ],
          },
        ],
      }),
    );
    assertApiError(() => toChatMessages(req), "unsupported_parameter", "messages[1].content[1].type");
  });

  test("the deprecated function role → unsupported_parameter naming the role", () => {
    const fn = parseChatRequest(chat({ messages: [{ role: "function", content: "42", name: "f" }] }));
    assertApiError(() => toChatMessages(fn), "unsupported_parameter", "messages[0].role");
  });

  test("function_call / audio on a message are refused", () => {
    for (const field of ["function_call", "audio"]) {
      const req = parseChatRequest(chat({ messages: [{ role: "assistant", content: null, [field]: { x: 1 } }] }));
      assertApiError(() => toChatMessages(req), "unsupported_parameter", `messages[0].${field}`);
    }
  });

  test("text parts are joined; assistant refusals stand in for content", () => {
    const req = parseChatRequest(
      chat({
        messages: [
          { role: "developer", content: "be brief" },
          {
            role: "user",
            content: [
              { type: "text", text: "Hello, " },
              { type: "text", text: "world" },
            ],
          },
          { role: "assistant", content: null, refusal: "I can't" },
          { role: "assistant", content: [{ type: "refusal", refusal: "no" }] },
          { role: "assistant", content: null },
          { role: "user", content: "" },
        ],
      }),
    );
    assert.deepEqual(toChatMessages(req), [
      { role: "developer", content: "be brief" },
      { role: "user", content: "Hello, world" },
      { role: "assistant", content: "I can't" },
      { role: "assistant", content: "no" },
      { role: "assistant", content: "" },
      { role: "user", content: "" },
    ]);
  });

  test("a user message without content → missing_required_parameter naming messages[i].content", () => {
    const req = parseChatRequest(chat({ messages: [{ role: "system", content: "s" }, { role: "user" }] }));
    assertApiError(() => toChatMessages(req), "missing_required_parameter", "messages[1].content");
  });

  test("toEngineRequest: defaults", () => {
    assert.deepEqual(toEngineRequest(parseChatRequest(chat()), "tenant-1"), {
      tenant: "tenant-1",
      prompt: { kind: "chat", messages: [{ role: "user", content: "hi" }] },
      maxTokens: null,
      stop: [],
      sampling: OPENAI_DEFAULT_SAMPLING,
      echo: false,
      priority: 0,
    });
  });

  test("toEngineRequest: max_completion_tokens wins over max_tokens; sampling is carried", () => {
    const r = toEngineRequest(parseChatRequest(chat({ max_tokens: 10, max_completion_tokens: 20, temperature: 0, seed: 7, top_k: 5 })), "t");
    assert.equal(r.maxTokens, 20);
    assert.equal(toEngineRequest(parseChatRequest(chat({ max_tokens: 10 })), "t").maxTokens, 10);
    assert.deepEqual(r.sampling, { ...OPENAI_DEFAULT_SAMPLING, temperature: 0, seed: 7, topK: 5 });
  });
});

describe("completions", () => {
  test("missing model → missing_required_parameter", () => {
    assertApiError(() => parseCompletionRequest({ prompt: "x" }), "missing_required_parameter", "model");
  });

  test("missing prompt → missing_required_parameter naming it", () => {
    assertApiError(() => parseCompletionRequest({ model: "m" }), "missing_required_parameter", "prompt");
  });

  test("a missing prompt is at least a 400 naming prompt", () => {
    const e = apiError(() => parseCompletionRequest({ model: "m" }));
    assert.equal(e.status, 400);
    assert.equal(e.param, "prompt");
  });

  test("a string prompt → one text request with the default max_tokens of 16", () => {
    assert.equal(DEFAULT_COMPLETION_MAX_TOKENS, 16);
    assert.deepEqual(toEngineRequests(parseCompletionRequest(completion()), "t"), [
      { tenant: "t", prompt: { kind: "text", text: "hi" }, maxTokens: 16, stop: [], sampling: OPENAI_DEFAULT_SAMPLING, echo: false, priority: 0 },
    ]);
  });

  test("a string[] prompt → one text request per string", () => {
    const reqs = toEngineRequests(parseCompletionRequest(completion({ prompt: ["a", "b", "c"] })), "t");
    assert.deepEqual(
      reqs.map((r) => r.prompt),
      [
        { kind: "text", text: "a" },
        { kind: "text", text: "b" },
        { kind: "text", text: "c" },
      ],
    );
    assert.ok(reqs.every((r) => r.maxTokens === 16 && r.tenant === "t"));
  });

  test("a number[] prompt → one token request", () => {
    assert.deepEqual(
      toEngineRequests(parseCompletionRequest(completion({ prompt: [1, 2, 3] })), "t").map((r) => r.prompt),
      [{ kind: "tokens", tokens: [1, 2, 3] }],
    );
  });

  test("a number[][] prompt → one token request per array", () => {
    assert.deepEqual(
      toEngineRequests(parseCompletionRequest(completion({ prompt: [[1], [2, 3]] })), "t").map((r) => r.prompt),
      [
        { kind: "tokens", tokens: [1] },
        { kind: "tokens", tokens: [2, 3] },
      ],
    );
  });

  test("every request of a batch carries the same settings", () => {
    const reqs = toEngineRequests(
      parseCompletionRequest(completion({ prompt: ["a", "b"], max_tokens: 5, stop: ["\n", ""], temperature: 0.2, echo: true })),
      "tenant-x",
    );
    for (const r of reqs) {
      assert.equal(r.tenant, "tenant-x");
      assert.equal(r.maxTokens, 5);
      assert.deepEqual(r.stop, ["\n"]);
      assert.equal(r.sampling.temperature, 0.2);
      assert.equal(r.echo, true);
    }
  });

  test("invalid prompt shapes → 400 invalid_value naming prompt or the offending element", () => {
    const cases: Array<[unknown, string]> = [
      [[], "prompt"],
      [[1, "a"], "prompt"],
      [[1.5], "prompt"],
      [[[1], "a"], "prompt"],
      [5, "prompt"],
      [Array.from({ length: 65 }, () => "x"), "prompt"],
      [[-1], "prompt[0]"],
      [[[]], "prompt[0]"],
      [[[1, -2]], "prompt[0][1]"],
    ];
    for (const [prompt, param] of cases) {
      const e = assertApiError(() => parseCompletionRequest(completion({ prompt })), "invalid_value", param);
      assert.equal(e.status, 400);
    }
  });

  test("n: 1..128 choices; 0 or 129 is a 400 naming n; best_of, when given, must be at least n", () => {
    assert.equal(parseCompletionRequest(completion({ n: 128 })).n, 128);
    for (const n of [0, 129]) assertApiError(() => parseCompletionRequest(completion({ n })), "invalid_value", "n");
    assertApiError(() => parseCompletionRequest(completion({ n: 2, best_of: 1 })), "invalid_value", "best_of");
  });

  test("refused parameters: best_of, suffix; neutral values pass", () => {
    assertApiError(() => parseCompletionRequest(completion({ best_of: 2 })), "unsupported_parameter", "best_of");
    assertApiError(() => parseCompletionRequest(completion({ suffix: "end" })), "unsupported_parameter", "suffix");
    assert.doesNotThrow(() => parseCompletionRequest(completion({ n: 1, best_of: 1, logprobs: null, suffix: "" })));
  });

  test("logprobs 0..5 reaches every prompt's engine request; 6 is a 400 naming logprobs", () => {
    for (const k of [0, 5]) {
      const reqs = toEngineRequests(parseCompletionRequest(completion({ prompt: ["a", "b"], logprobs: k })), "t");
      assert.deepEqual(
        reqs.map((r) => r.logprobs),
        [k, k],
      );
    }
    assert.equal("logprobs" in toEngineRequests(parseCompletionRequest(completion()), "t")[0]!, false);
    assertApiError(() => parseCompletionRequest(completion({ logprobs: 6 })), "invalid_value", "logprobs");
  });

  test("echo with logprobs is refused naming logprobs: prompt logprobs are not computed", () => {
    const e = assertApiError(() => parseCompletionRequest(completion({ echo: true, logprobs: 1 })), "unsupported_parameter", "logprobs");
    assert.match(e.message, /prompt/);
    assert.doesNotThrow(() => parseCompletionRequest(completion({ echo: true, logprobs: null })));
  });

  test("echo with stream is refused naming echo; either alone is fine", () => {
    assertApiError(() => parseCompletionRequest(completion({ echo: true, stream: true })), "unsupported_parameter", "echo");
    assert.doesNotThrow(() => parseCompletionRequest(completion({ echo: true })));
    assert.doesNotThrow(() => parseCompletionRequest(completion({ stream: true })));
  });

  test("unknown keys and chat-only keys are unknown_parameter", () => {
    assertApiError(() => parseCompletionRequest(completion({ messages: USER })), "unknown_parameter", "messages");
    assertApiError(() => parseCompletionRequest(completion({ max_completion_tokens: 5 })), "unknown_parameter", "max_completion_tokens");
  });

  test("stop limits apply to completions too", () => {
    assertApiError(() => parseCompletionRequest(completion({ stop: ["1", "2", "3", "4", "5"] })), "invalid_value", "stop");
    assert.deepEqual(toEngineRequests(parseCompletionRequest(completion({ stop: "END" })), "t")[0]!.stop, ["END"]);
  });
});
