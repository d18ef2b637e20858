// logprobs and top_logprobs against the real server on stories260K, checked
// against an independent computation: the same GGUF loaded here through
// node-llama-cpp, whose greedy controlledEvaluate gives the softmax of the raw
// logits over the whole vocabulary at each position.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { getLlama, LlamaLogLevel, type Llama, type LlamaContext, type LlamaModel, type Token } from "node-llama-cpp";
import { tokenizeText } from "../../models/chatTemplate.js";
import type { Response as OpenAIResponse } from "openai/resources/responses/responses";
import { assertMatchesSpec, COMPLETION_STREAM_CHUNK, wireResponse } from "../helpers/openapi.js";
import { rawStream } from "./responses/helpers.js";
import { MODELS, postSse, startTestServer, type TestServer } from "./helpers/server.js";

const TOLERANCE = 1e-3;

/**
 * Deep equality with numbers equal to a relative 1e-3: the second request
 * reuses the cached prompt, and logits computed in batches of other shapes
 * differ slightly (~1e-6 in logprob after a short prompt, up to ~1e-2 after
 * a long one), so exact equality would be luck.
 */
function assertClose(actual: unknown, expected: unknown, path = "$"): void {
  if (typeof expected === "number") {
    assert.equal(typeof actual, "number", path);
    assert.ok(Math.abs((actual as number) - expected) <= 1e-3 * Math.max(1, Math.abs(expected)), `${path}: ${String(actual)} vs ${expected}`);
  } else if (expected !== null && typeof expected === "object") {
    assert.ok(actual !== null && typeof actual === "object", path);
    assert.deepEqual(Object.keys(actual as object), Object.keys(expected), path);
    for (const [k, v] of Object.entries(expected)) assertClose((actual as Record<string, unknown>)[k], v, `${path}.${k}`);
  } else assert.equal(actual, expected, path);
}

let t: TestServer;
let llama: Llama;
let model: LlamaModel;
let context: LlamaContext;
before(async () => {
  // 2048: room for a tool list in the prompt.
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "4", "--ctx-per-slot", "2048"]);
  llama = await getLlama({ build: "never", gpu: false, maxThreads: 2, logLevel: LlamaLogLevel.error });
  model = await llama.loadModel({ modelPath: MODELS.stories260K });
  context = await model.createContext({ sequences: 1, contextSize: 256, threads: { ideal: 2, min: 2 } });
});
after(async () => {
  await context?.dispose();
  await model?.dispose();
  await llama?.dispose();
  await t?.close();
});

interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Array<Record<string, number>>;
  text_offset: number[];
}

/** The full next-token distribution as natural logs, token id → log p, after evaluating `tokens`. */
async function nextLogprobs(seq: ReturnType<LlamaContext["getSequence"]>, tokens: Token[]): Promise<Map<number, number>> {
  const input = tokens.map((tok, i) => (i === tokens.length - 1 ? ([tok, { generateNext: { probabilities: true } }] as [Token, object]) : tok));
  const out = await seq.controlledEvaluate(input as never);
  const probs = (out.at(-1) as { next: { probabilities: Map<number, number> } }).next.probabilities;
  return new Map([...probs].map(([id, p]) => [id, Math.log(p)]));
}

/**
 * Replays the server's completion in the reference model: at each position the
 * server's logprob must be some token's exact raw log-probability, and the one
 * whose vocabulary text is the server's token is taken as the sampled token.
 * Checks the top alternatives too. Returns, per position, the reference
 * distribution and the server's logprob (for further checks).
 */
async function replay(prompt: string, lp: CompletionLogprobs, k: number): Promise<Array<{ ref: Map<number, number>; logprob: number }>> {
  const vocab = model.fileInfo.metadata.tokenizer!.ggml!.tokens as string[];
  const text = (id: number) => {
    const byte = /^<0x([0-9A-F]{2})>$/.exec(vocab[id]!);
    if (!byte) return vocab[id]!.replaceAll("\u2581", " ");
    const b = parseInt(byte[1]!, 16);
    return b < 0x80 ? String.fromCharCode(b) : `bytes:\\x${byte[1]!.toLowerCase()}`;
  };
  const seq = context.getSequence();
  const positions: Array<{ ref: Map<number, number>; logprob: number }> = [];
  try {
    let next: Token[] = tokenizeText(model, prompt);
    for (let i = 0; i < lp.tokens.length; i++) {
      const ref = await nextLogprobs(seq, next);
      const logprob = lp.token_logprobs[i]!;
      const matches = [...ref].filter(([id, l]) => Math.abs(l - logprob) < TOLERANCE && text(id) === lp.tokens[i]);
      assert.equal(matches.length, 1, `position ${i}: no token "${lp.tokens[i]}" with raw logprob ${logprob} (reference has ${JSON.stringify(matches)})`);
      const expectedTop = [...ref.values()].sort((a, b) => b - a).slice(0, k);
      const top = Object.entries(lp.top_logprobs[i]!);
      // The k alternatives, plus the sampled token when it is not among them.
      assert.ok(top.length === k || top.length === k + 1, `position ${i}: ${top.length} top entries`);
      const topValues = top
        .map(([, l]) => l)
        .sort((a, b) => b - a)
        .slice(0, k);
      for (const [j, l] of topValues.entries())
        assert.ok(Math.abs(l - expectedTop[j]!) < TOLERANCE, `position ${i}: top ${j} is ${l}, reference ${expectedTop[j]}`);
      for (const [tok, l] of top) {
        assert.ok(
          [...ref].some(([id, r]) => text(id) === tok && Math.abs(r - l) < TOLERANCE),
          `position ${i}: alternative "${tok}" ${l} is no raw logprob`,
        );
      }
      positions.push({ ref, logprob });
      next = [matches[0]![0] as Token];
    }
  } finally {
    seq.dispose();
  }
  return positions;
}

async function completionLogprobs(body: Record<string, unknown>): Promise<{ text: string; lp: CompletionLogprobs; finish: string; completionTokens: number }> {
  const r = await t.client.completions.create({ model: t.modelId, ...body } as never);
  assertMatchesSpec("CreateCompletionResponse", r);
  const c = (r as OpenAI.Completion).choices[0]!;
  return { text: c.text, lp: c.logprobs as CompletionLogprobs, finish: c.finish_reason, completionTokens: r.usage!.completion_tokens };
}

const PROMPT = "Once upon a time, there was a little";

describe("logprobs: exact raw log-probabilities", () => {
  test("greedy: every token's logprob and its top 5 equal the reference's, and the chosen token is the top one", async () => {
    const { lp, text, completionTokens } = await completionLogprobs({ prompt: PROMPT, max_tokens: 24, temperature: 0, ignore_eos: true, logprobs: 5 });
    assert.equal(lp.tokens.length, completionTokens);
    assert.equal(lp.tokens.join(""), text, "ASCII output: the token texts spell the text");
    const positions = await replay(PROMPT, lp, 5);
    for (const [i, { ref, logprob }] of positions.entries())
      assert.ok(Math.abs(logprob - Math.max(...ref.values())) < TOLERANCE, `position ${i} is not the argmax`);
  });

  test("temperature 1.5, top_p 0.9, a seed: the sampled tokens' logprobs are still the raw, untransformed ones", async () => {
    const { lp } = await completionLogprobs({ prompt: PROMPT, max_tokens: 24, temperature: 1.5, top_p: 0.9, seed: 11, ignore_eos: true, logprobs: 3 });
    const positions = await replay(PROMPT, lp, 3);
    // The check discriminates: the tempered distribution, softmax(logit / 1.5), gives other numbers.
    const tempered = positions.map(({ ref, logprob }) => {
      const scaled = [...ref.values()].map((l) => l / 1.5);
      const max = Math.max(...scaled);
      const norm = max + Math.log(scaled.reduce((s, l) => s + Math.exp(l - max), 0));
      return logprob / 1.5 - norm;
    });
    assert.ok(
      tempered.some((l, i) => Math.abs(l - positions[i]!.logprob) > 0.05),
      "temperature changed no logprob: the test cannot tell them apart",
    );
    // Sampling at 1.5 takes tokens greedy decoding would not.
    assert.ok(
      positions.some(({ ref, logprob }) => logprob < Math.max(...ref.values()) - TOLERANCE),
      "every sampled token was the argmax",
    );
  });
});

/**
 * Invariants of one chat choice's logprobs, and its bytes spelling its
 * content: exactly when max_tokens ended it, else as a prefix (a template
 * stop string cuts the text, not the entries).
 */
function checkChatLogprobs(content: OpenAI.ChatCompletionTokenLogprob[], k: number, text: string | null, finish: string): void {
  for (const [i, e] of content.entries()) {
    assert.ok(e.logprob <= 0, `entry ${i}: logprob ${e.logprob}`);
    assert.equal(e.top_logprobs.length, k);
    for (let j = 1; j < k; j++) assert.ok(e.top_logprobs[j - 1]!.logprob >= e.top_logprobs[j]!.logprob, `entry ${i}: top not sorted`);
    assert.ok(e.top_logprobs.reduce((s, x) => s + Math.exp(x.logprob), 0) <= 1 + 1e-6, `entry ${i}: top mass above 1`);
    const same = e.top_logprobs.find((x) => x.token === e.token && JSON.stringify(x.bytes) === JSON.stringify(e.bytes));
    if (same) assert.equal(same.logprob, e.logprob, `entry ${i}: its own logprob differs from its top entry`);
    else if (k > 0) assert.ok(e.logprob <= e.top_logprobs[k - 1]!.logprob + TOLERANCE, `entry ${i}: more likely than the top ${k} but not among them`);
  }
  const spelled = Buffer.from(content.flatMap((e) => e.bytes ?? [])).toString("utf8");
  if (finish === "length") assert.equal(spelled, text);
  else assert.ok(spelled.startsWith(text ?? ""), `${JSON.stringify(spelled)} does not start with ${JSON.stringify(text)}`);
}

describe("logprobs on chat", () => {
  const messages = [{ role: "user" as const, content: "Tom had a red ball" }];

  test("top_logprobs 20: invariants hold, the bytes spell the content, the body matches the spec", async () => {
    const r = await t.client.chat.completions.create({ model: t.modelId, messages, max_tokens: 30, temperature: 1, seed: 4, logprobs: true, top_logprobs: 20 });
    assertMatchesSpec("CreateChatCompletionResponse", r);
    const choice = r.choices[0]!;
    const content = choice.logprobs!.content!;
    assert.equal(choice.logprobs!.refusal, null);
    // One entry per token sampled, except an end-of-generation token that ended the turn.
    if (choice.finish_reason === "length") assert.equal(content.length, r.usage!.completion_tokens);
    else assert.ok(content.length >= r.usage!.completion_tokens - 1);
    checkChatLogprobs(content, 20, choice.message.content, choice.finish_reason);
  });

  test("logprobs without top_logprobs: no alternatives; logprobs false or absent: null", async () => {
    const r = await t.client.chat.completions.create({ model: t.modelId, messages, max_tokens: 6, temperature: 0, logprobs: true });
    checkChatLogprobs(r.choices[0]!.logprobs!.content!, 0, r.choices[0]!.message.content, r.choices[0]!.finish_reason);
    for (const logprobs of [false, undefined]) {
      const plain = await t.client.chat.completions.create({ model: t.modelId, messages, max_tokens: 2, logprobs });
      assert.equal(plain.choices[0]!.logprobs, null);
    }
  });

  test("streamed: each content chunk carries its tokens' entries; together they equal the non-streamed ones", async () => {
    const body = { model: t.modelId, messages, max_tokens: 30, temperature: 1, seed: 21, logprobs: true, top_logprobs: 3 };
    const plain = await t.client.chat.completions.create(body);
    const stream = await t.client.chat.completions.create({ ...body, stream: true });
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
    let n = 0;
    for await (const chunk of stream) {
      assertMatchesSpec("CreateChatCompletionStreamResponse", chunk, `chunk ${n++}`);
      const choice = chunk.choices[0];
      if (!choice) continue;
      if (choice.delta.content) assert.ok(choice.logprobs?.content, `chunk ${n - 1}: content without logprobs`);
      streamed.push(...(choice.logprobs?.content ?? []));
    }
    assert.ok(n > 3);
    assertClose(streamed, plain.choices[0]!.logprobs!.content);
  });
});

describe("logprobs with tools", () => {
  test("a forced tool call: entries cover every generated token, markup included, streamed as non-streamed", async () => {
    const tools: OpenAI.ChatCompletionTool[] = [
      {
        type: "function",
        function: {
          name: "add",
          parameters: { type: "object", properties: { a: { type: "integer" }, b: { type: "integer" } }, required: ["a", "b"], additionalProperties: false },
        },
      },
    ];
    const body = {
      model: t.modelId,
      messages: [{ role: "user" as const, content: "Add 2 and 3" }],
      tools,
      tool_choice: "required" as const,
      parallel_tool_calls: false,
      seed: 3,
      max_tokens: 200,
      logprobs: true,
      top_logprobs: 2,
    };
    // A first request leaves the long prompt cached, so that the two compared
    // below compute it alike: read in one pass or as a cached prefix, its
    // logits differ by up to ~1e-2 in logprob (measured here: llama.cpp's
    // arithmetic depends on how the tokens were batched).
    await t.client.chat.completions.create({ ...body, max_tokens: 1 });
    const plain = await t.client.chat.completions.create(body);
    assertMatchesSpec("CreateChatCompletionResponse", plain);
    const choice = plain.choices[0]!;
    assert.equal(choice.finish_reason, "tool_calls");
    const content = choice.logprobs!.content!;
    // The grammar ends the turn with end-of-generation, which has no entry.
    assert.equal(content.length, plain.usage!.completion_tokens - 1);
    const spelled = Buffer.from(content.flatMap((e) => e.bytes ?? [])).toString("utf8");
    assert.match(spelled, /<tool_call>/);
    const call = choice.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    assert.ok(spelled.includes(call.function.arguments), `${JSON.stringify(spelled)} lacks the call's arguments`);
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
    let n = 0;
    for await (const chunk of await t.client.chat.completions.create({ ...body, stream: true })) {
      assertMatchesSpec("CreateChatCompletionStreamResponse", chunk, `chunk ${n++}`);
      streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    }
    assertClose(streamed, content);
  });
});

describe("logprobs on completions", () => {
  test("streamed chunks concatenate to the non-streamed arrays, offsets included; every chunk matches the spec", async () => {
    const body = { model: t.modelId, prompt: PROMPT, max_tokens: 20, temperature: 1, seed: 5, logprobs: 2 };
    const plain = await completionLogprobs(body);
    const sse = await postSse(`${t.url}/v1/completions`, { ...body, stream: true });
    const chunks = sse.frames.slice(0, -1).map((f) => JSON.parse(f));
    const joined: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    for (const [i, chunk] of chunks.entries()) {
      assertMatchesSpec(COMPLETION_STREAM_CHUNK, chunk, `chunk ${i}`);
      const lp = chunk.choices[0].logprobs as CompletionLogprobs;
      for (const key of Object.keys(joined) as Array<keyof CompletionLogprobs>) (joined[key] as unknown[]).push(...lp[key]);
    }
    assertClose(joined, plain.lp);
    // Each token starts where its offset says (tokens here are whole characters).
    plain.lp.tokens.forEach((tok, i) => {
      if (!tok.startsWith("bytes:")) assert.equal(plain.text.slice(plain.lp.text_offset[i], plain.lp.text_offset[i]! + tok.length), tok, `token ${i}`);
    });
  });

  test("a stop string cuts the text, not the entries: tokens sampled after it began keep theirs", async () => {
    const base = { prompt: PROMPT, max_tokens: 20, temperature: 0, ignore_eos: true, logprobs: 0 };
    const full = await completionLogprobs(base);
    // A stop string that begins inside one token and ends in a later one.
    const stop = full.text.slice(full.lp.text_offset[3]! + 1, full.lp.text_offset[5]! + 1);
    const at = full.text.indexOf(stop);
    const cut = await completionLogprobs({ ...base, stop: [stop] });
    assert.equal(cut.finish, "stop");
    assert.equal(cut.text, full.text.slice(0, at));
    assert.equal(cut.lp.tokens.length, cut.completionTokens, "one entry per token generated and billed");
    assert.deepEqual(cut.lp.tokens, full.lp.tokens.slice(0, cut.completionTokens));
    assert.ok(cut.lp.tokens.join("").length > cut.text.length, "the entries go past the cut text");
    // logprobs 0: no alternatives, only the sampled token in each top_logprobs.
    for (const [i, top] of cut.lp.top_logprobs.entries()) assert.deepEqual(top, { [cut.lp.tokens[i]!]: cut.lp.token_logprobs[i] });
  });
});

describe("logprobs with n > 1", () => {
  test("each choice has its own entries, those of a lone request with seed s + j", async () => {
    const messages = [{ role: "user" as const, content: "Lily saw a dog" }];
    const body = { model: t.modelId, messages, max_tokens: 12, temperature: 1, logprobs: true, top_logprobs: 2 };
    const both = await t.client.chat.completions.create({ ...body, n: 2, seed: 40 });
    assertMatchesSpec("CreateChatCompletionResponse", both);
    assert.equal(both.choices.length, 2);
    for (const [j, choice] of both.choices.entries()) {
      const lone = await t.client.chat.completions.create({ ...body, seed: 40 + j });
      assert.equal(choice.message.content, lone.choices[0]!.message.content, `choice ${j}`);
      assertClose(choice.logprobs!.content, lone.choices[0]!.logprobs!.content, `choice ${j}`);
      checkChatLogprobs(choice.logprobs!.content!, 2, choice.message.content, choice.finish_reason);
    }
  });
});

type LogProb = { token: string; logprob: number; bytes: number[]; top_logprobs: Array<{ token: string; logprob: number; bytes: number[] }> };
const outputLogprobs = (r: OpenAIResponse): LogProb[] => {
  const item = r.output[0] as { type: string; content: Array<{ type: string; logprobs: LogProb[] }> };
  assert.equal(item.type, "message");
  return item.content[0]!.logprobs;
};

describe("logprobs on /v1/responses (include message.output_text.logprobs)", () => {
  const input = "Sam found a shell";
  const chatBody = { messages: [{ role: "user" as const, content: input }], max_tokens: 16, temperature: 0, ignore_eos: true };
  const responseBody = { input, max_output_tokens: 16, temperature: 0, ignore_eos: true, include: ["message.output_text.logprobs"], top_logprobs: 3 };
  const create = async (body: Record<string, unknown>) => {
    const r = (await t.client.responses.create({ model: t.modelId, ...body } as never)) as OpenAIResponse;
    assertMatchesSpec("Response", wireResponse(r));
    return r;
  };

  test("output_text carries LogProb entries equal to chat's for the same conversation", async () => {
    const chat = await t.client.chat.completions.create({ ...chatBody, model: t.modelId, logprobs: true, top_logprobs: 3 } as never);
    const r = await create(responseBody);
    assert.equal((r as unknown as { top_logprobs: number }).top_logprobs, 3);
    const entries = outputLogprobs(r);
    assert.equal(entries.length, 16);
    assertClose(
      entries,
      (chat as OpenAI.ChatCompletion).choices[0]!.logprobs!.content!.map((e) => ({
        ...e,
        bytes: e.bytes ?? [],
        top_logprobs: e.top_logprobs.map((x) => ({ ...x, bytes: x.bytes ?? [] })),
      })),
    );
    const plain = await create({ input, max_output_tokens: 16, top_logprobs: 3 });
    assert.deepEqual(outputLogprobs(plain), [], "without include there are none");
  });

  test("streamed: the delta events' logprobs, joined, are the final ones less their bytes; every event matches the spec", async () => {
    const s = await rawStream(`${t.url}/v1/responses`, { model: t.modelId, ...responseBody, stream: true });
    const events = s.events.map((e) => JSON.parse(e.data) as { type: string; logprobs?: unknown[]; response?: OpenAIResponse });
    for (const [i, e] of events.entries()) assertMatchesSpec("ResponseStreamEvent", e, `event ${i}`);
    const fromDeltas = events.filter((e) => e.type === "response.output_text.delta").flatMap((e) => e.logprobs!);
    const final = outputLogprobs(events.at(-1)!.response!);
    const withoutBytes = final.map((e) => ({
      token: e.token,
      logprob: e.logprob,
      top_logprobs: e.top_logprobs.map((x) => ({ token: x.token, logprob: x.logprob })),
    }));
    assert.deepEqual(fromDeltas, withoutBytes);
    assert.deepEqual(events.find((e) => e.type === "response.output_text.done")!.logprobs, withoutBytes);
    assert.equal(final.length, 16);
  });

  test("other include values, logprobs with tools and top_logprobs 21 are 400s naming the parameter", async () => {
    const bad = async (body: Record<string, unknown>, param: string) => {
      const err = await t.client.responses.create({ model: t.modelId, input, ...body } as never).catch((e: unknown) => e);
      assert.ok(err instanceof OpenAI.BadRequestError, String(err));
      assert.equal(err.param, param, err.message);
    };
    await bad({ include: ["message.output_text.logprobs", "reasoning.encrypted_content"] }, "include[1]");
    await bad({ include: ["message.output_text.logprobs"], tools: [{ type: "function", name: "f", parameters: null, strict: null }] }, "include");
    await bad({ top_logprobs: 21 }, "top_logprobs");
  });
});

describe("logprobs errors", () => {
  async function badRequest(send: () => Promise<unknown>): Promise<InstanceType<typeof OpenAI.BadRequestError>> {
    try {
      await send();
    } catch (err) {
      assert.ok(err instanceof OpenAI.BadRequestError, String(err));
      return err;
    }
    assert.fail("expected a 400");
  }
  const messages = [{ role: "user" as const, content: "Hi" }];

  test("each bad combination is a 400 naming its parameter", async () => {
    const cases: Array<[() => Promise<unknown>, string, string]> = [
      [() => t.client.chat.completions.create({ model: t.modelId, messages, logprobs: true, top_logprobs: 21 }), "top_logprobs", "invalid_value"],
      [() => t.client.chat.completions.create({ model: t.modelId, messages, top_logprobs: 2 }), "top_logprobs", "invalid_value"],
      [() => t.client.chat.completions.create({ model: t.modelId, messages, logprobs: false, top_logprobs: 2, stream: true }), "top_logprobs", "invalid_value"],
      [() => t.client.completions.create({ model: t.modelId, prompt: "x", logprobs: 6 }), "logprobs", "invalid_value"],
      [() => t.client.completions.create({ model: t.modelId, prompt: "x", logprobs: 1, echo: true }), "logprobs", "unsupported_parameter"],
    ];
    for (const [send, param, code] of cases) {
      const err = await badRequest(send);
      assert.deepEqual({ param: err.param, code: err.code, type: err.type }, { param, code, type: "invalid_request_error" }, err.message);
    }
    const res = await fetch(`${t.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: t.modelId, prompt: "x", logprobs: 2, echo: true }),
    });
    assert.equal(res.status, 400);
    const body = await res.json();
    assertMatchesSpec("ErrorResponse", body);
    assert.match((body as { error: { message: string } }).error.message, /prompt/);
  });
});
