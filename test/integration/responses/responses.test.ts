// POST/GET/DELETE /v1/responses and input_items against the real server on
// stories260K, through the official openai client (and raw fetch where the
// wire format itself is the point).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import type { Response as OpenAIResponse, ResponseStreamEvent } from "openai/resources/responses/responses";
import { assertMatchesSpec, wireResponse } from "../../helpers/openapi.js";
import { MODELS, startTestServer, waitFor, type TestServer } from "../helpers/server.js";
import { apiError, collapseDeltas, rawStream, STREAM_ORDER } from "./helpers.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "1024"]);
});
after(async () => {
  await t?.close();
});

/** prompt_tokens of the same messages through /v1/chat/completions: what the Responses route must render. */
async function chatPromptTokens(messages: Array<{ role: "user" | "assistant" | "system" | "developer"; content: string }>): Promise<number> {
  const r = await t.client.chat.completions.create({ model: t.modelId, messages, max_tokens: 1 });
  return r.usage!.prompt_tokens;
}

const greedy = { temperature: 0, ignore_eos: true } as const;
/** llamux's sampling extensions are not in the SDK's types. */
const create = (body: Record<string, unknown>) => t.client.responses.create({ model: t.modelId, ...body } as never) as Promise<OpenAIResponse>;
const outputText = (r: OpenAIResponse) => {
  const item = r.output[0]!;
  assert.equal(item.type, "message");
  const part = (item as { content: Array<{ type: string; text: string }> }).content[0]!;
  assert.equal(part.type, "output_text");
  return part.text;
};

describe("POST /v1/responses", () => {
  test("a string input gives a Response with one assistant message and exact usage, rendered as chat renders it", async () => {
    const r = await create({ input: "Once upon a time", max_output_tokens: 16, ...greedy });
    assertMatchesSpec("Response", wireResponse(r));
    assert.match(r.id, /^resp_[0-9a-f]{48}$/);
    assert.equal(r.object, "response");
    assert.ok(Math.abs(r.created_at - Date.now() / 1000) < 60);
    assert.equal(r.model, t.modelId);
    assert.equal(r.status, "incomplete");
    assert.deepEqual(r.incomplete_details, { reason: "max_output_tokens" });
    assert.equal(r.completed_at, null);
    assert.equal(r.error, null);
    assert.equal(r.output.length, 1);
    const item = r.output[0]! as { type: string; id: string; role: string; status: string; content: unknown[] };
    assert.equal(item.type, "message");
    assert.match(item.id, /^msg_[0-9a-f]{48}$/);
    assert.equal(item.role, "assistant");
    assert.equal(item.status, "incomplete");
    assert.deepEqual(item.content, [{ type: "output_text", text: outputText(r), annotations: [], logprobs: [] }]);
    assert.ok(outputText(r).length > 0);
    assert.equal(r.output_text, outputText(r), "the SDK's convenience field");
    assert.equal(r.usage!.output_tokens, 16);
    assert.equal(r.usage!.input_tokens, await chatPromptTokens([{ role: "user", content: "Once upon a time" }]));
    assert.equal(r.usage!.total_tokens, r.usage!.input_tokens + 16);
    assert.equal(r.usage!.output_tokens_details.reasoning_tokens, 0);
    const cached = r.usage!.input_tokens_details.cached_tokens;
    assert.equal((r.usage!.input_tokens_details as { cache_write_tokens?: number }).cache_write_tokens, r.usage!.input_tokens - cached);
    for (const [field, value] of Object.entries({
      store: true,
      previous_response_id: null,
      conversation: null,
      instructions: null,
      max_output_tokens: 16,
      tools: [],
      tool_choice: "auto",
      parallel_tool_calls: true,
      temperature: 0,
      top_p: 1,
      truncation: "disabled",
      metadata: {},
      background: false,
    })) {
      assert.deepEqual((r as unknown as Record<string, unknown>)[field], value, field);
    }
  });

  test("the server sends no output_text (an SDK-only field) and the JSON has the spec's required fields", async () => {
    const res = await fetch(`${t.url}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: t.modelId, input: "Hi", max_output_tokens: 16 }),
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as Record<string, unknown>;
    assert.ok(!("output_text" in body));
    const required = [
      "id",
      "object",
      "created_at",
      "error",
      "incomplete_details",
      "instructions",
      "model",
      "tools",
      "output",
      "parallel_tool_calls",
      "metadata",
      "tool_choice",
      "temperature",
      "top_p",
    ];
    for (const field of required) assert.ok(field in body, `missing ${field}`);
  });

  test("a stop string finishes the response: status completed, completed_at set, text up to the stop", async () => {
    const full = outputText(await create({ input: "Once upon a time", max_output_tokens: 40, ...greedy }));
    assert.ok(full.length > 12, `need some text to pick a stop from: ${JSON.stringify(full)}`);
    const stop = full.slice(6, 9);
    const r = await create({ input: "Once upon a time", max_output_tokens: 40, ...greedy, stop: [stop] });
    assert.equal(r.status, "completed");
    assert.equal(r.incomplete_details, null);
    assert.equal(typeof r.completed_at, "number");
    assert.equal(outputText(r), full.slice(0, full.indexOf(stop)));
    assert.equal((r.output[0] as { status: string }).status, "completed");
  });

  test("retrieve returns what create returned; delete removes it for good", async () => {
    const r = await create({ input: "The cat sat", max_output_tokens: 16, metadata: { topic: "cats" }, user: "user-7" });
    assert.deepEqual(r.metadata, { topic: "cats" });
    assert.equal(r.user, "user-7");
    assert.deepEqual(await t.client.responses.retrieve(r.id), r);
    const res = await fetch(`${t.url}/v1/responses/${r.id}`, { method: "DELETE" });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { id: r.id, object: "response", deleted: true });
    await apiError(t.client.responses.retrieve(r.id), OpenAI.NotFoundError);
    await apiError(t.client.responses.inputItems.list(r.id), OpenAI.NotFoundError);
    const again = await apiError(t.client.responses.delete(r.id), OpenAI.NotFoundError);
    assert.equal(again.param, "response_id");
    await apiError(t.client.responses.retrieve("resp_never"), OpenAI.NotFoundError);
  });

  test("retrieve refuses to replay the stream of a foreground response, and cancel refuses to cancel one", async () => {
    const r = await create({ input: "The bird", max_output_tokens: 16 });
    const replay = await fetch(`${t.url}/v1/responses/${r.id}?stream=true`);
    assert.equal(replay.status, 400);
    assert.equal(((await replay.json()) as { error: { param: string } }).error.param, "stream");
    const include = await apiError(t.client.responses.retrieve(r.id, { include: ["message.output_text.logprobs"] }), OpenAI.BadRequestError);
    assert.equal(include.param, "include");
    const cancel = await apiError(t.client.responses.cancel(r.id), OpenAI.BadRequestError);
    assert.match(cancel.message, /background/);
    await apiError(t.client.responses.cancel("resp_never"), OpenAI.NotFoundError);
    assert.deepEqual(await t.client.responses.retrieve(r.id), r, "still there, unchanged");
  });

  test("previous_response_id: the next turn reads the first turn's input and output, from the warm cache", async () => {
    const first = await create({ input: "Lily had a red ball.", max_output_tokens: 24, ...greedy });
    const second = await create({ input: "What did Lily do next?", previous_response_id: first.id, max_output_tokens: 24, ...greedy });
    assert.equal(second.previous_response_id, first.id);
    // The first turn's whole prompt, then its output, were still in the tenant's slot.
    const cached = second.usage!.input_tokens_details.cached_tokens;
    assert.ok(cached >= first.usage!.input_tokens, `cached ${cached} of the first turn's ${first.usage!.input_tokens} prompt tokens`);
    assert.ok(cached < second.usage!.input_tokens);
    const items = await t.client.responses.inputItems.list(second.id, { order: "asc" });
    assert.deepEqual(
      items.data.map((i) => [i.type, (i as { role: string }).role]),
      [
        ["message", "user"],
        ["message", "assistant"],
        ["message", "user"],
      ],
    );
    assert.deepEqual(items.data[1], first.output[0], "the first turn's output item, id and all");
    assert.deepEqual((items.data[0] as { content: unknown }).content, [{ type: "input_text", text: "Lily had a red ball." }]);
    assert.deepEqual((items.data[2] as { content: unknown }).content, [{ type: "input_text", text: "What did Lily do next?" }]);
    assert.equal(
      second.usage!.input_tokens,
      await chatPromptTokens([
        { role: "user", content: "Lily had a red ball." },
        { role: "assistant", content: outputText(first) },
        { role: "user", content: "What did Lily do next?" },
      ]),
    );

    // A third turn chains through both.
    const third = await create({ input: "And then?", previous_response_id: second.id, max_output_tokens: 16, ...greedy });
    const all = await t.client.responses.inputItems.list(third.id, { order: "asc" });
    assert.deepEqual(
      all.data.map((i) => i.id),
      [items.data[0]!.id, items.data[1]!.id, items.data[2]!.id, second.output[0]!.id, all.data[4]!.id],
    );
    assert.ok(third.usage!.input_tokens_details.cached_tokens >= second.usage!.input_tokens);
  });

  test("instructions apply to their own response only: not carried over by previous_response_id", async () => {
    const first = await create({ input: "Tom had a kite.", instructions: "Tell a story.", max_output_tokens: 16, ...greedy });
    assert.equal(first.instructions, "Tell a story.");
    assert.equal(
      first.usage!.input_tokens,
      await chatPromptTokens([
        { role: "developer", content: "Tell a story." },
        { role: "user", content: "Tom had a kite." },
      ]),
    );
    const second = await create({ input: "Then?", previous_response_id: first.id, max_output_tokens: 16, ...greedy });
    assert.equal(second.instructions, null);
    const history = [
      { role: "user" as const, content: "Tom had a kite." },
      { role: "assistant" as const, content: outputText(first) },
      { role: "user" as const, content: "Then?" },
    ];
    assert.equal(second.usage!.input_tokens, await chatPromptTokens(history));
    const third = await create({ input: "Then?", previous_response_id: first.id, instructions: "Be brief.", max_output_tokens: 16, ...greedy });
    assert.equal(third.usage!.input_tokens, await chatPromptTokens([{ role: "developer", content: "Be brief." }, ...history]));
    // Instructions are not input items.
    const items = await t.client.responses.inputItems.list(third.id, { order: "asc" });
    assert.equal(items.data.length, 3);
  });

  test("input_items: newest first by default, oldest first with order=asc, paged by limit and after", async () => {
    const input = ["one", "two", "three", "four", "five"].map((text) => ({ role: "user" as const, content: text }));
    const r = await create({ input, max_output_tokens: 16 });
    const texts = (data: unknown[]) => data.map((i) => (i as { content: Array<{ text: string }> }).content[0]!.text);
    const desc = await t.client.responses.inputItems.list(r.id);
    assert.deepEqual(texts(desc.data), ["five", "four", "three", "two", "one"]);
    assert.equal(desc.has_more, false);
    const page = await t.client.responses.inputItems.list(r.id, { order: "asc", limit: 2 });
    assert.deepEqual(texts(page.data), ["one", "two"]);
    assert.equal(page.has_more, true);
    const raw = (await (await fetch(`${t.url}/v1/responses/${r.id}/input_items?order=asc&limit=2&after=${page.data[1]!.id}`)).json()) as Record<
      string,
      unknown
    >;
    assert.equal(raw.object, "list");
    assert.equal(raw.first_id, (raw.data as Array<{ id: string }>)[0]!.id);
    assert.equal(raw.last_id, (raw.data as Array<{ id: string }>)[1]!.id);
    assert.equal(raw.has_more, true);
    const all: unknown[] = [];
    for await (const item of t.client.responses.inputItems.list(r.id, { order: "asc", limit: 2 })) all.push(item);
    assert.deepEqual(texts(all), ["one", "two", "three", "four", "five"]);
    const badAfter = await apiError(t.client.responses.inputItems.list(r.id, { after: "msg_nope" }), OpenAI.BadRequestError);
    assert.equal(badAfter.param, "after");
    const badLimit = await apiError(t.client.responses.inputItems.list(r.id, { limit: 101 }), OpenAI.BadRequestError);
    assert.equal(badLimit.param, "limit");
    const include = await apiError(t.client.responses.inputItems.list(r.id, { include: ["message.input_image.image_url"] }), OpenAI.BadRequestError);
    assert.equal(include.param, "include");
  });

  test("message items: every role, input_text and output_text parts, an earlier output sent back as input", async () => {
    const first = await create({ input: "Tom saw a dog.", max_output_tokens: 16 });
    const input = [
      { role: "system", content: "Be kind." },
      { type: "message", role: "developer", content: [{ type: "input_text", text: "Short sentences." }] },
      {
        type: "message",
        role: "user",
        content: [
          { type: "input_text", text: "Tom saw " },
          { type: "input_text", text: "a dog." },
        ],
      },
      first.output[0],
      { role: "assistant", content: [{ type: "refusal", refusal: "No." }] },
      { role: "user", content: "Go on." },
    ];
    const r = await create({ input, max_output_tokens: 16 });
    assert.equal(
      r.usage!.input_tokens,
      await chatPromptTokens([
        { role: "system", content: "Be kind." },
        { role: "developer", content: "Short sentences." },
        { role: "user", content: "Tom saw a dog." },
        { role: "assistant", content: outputText(first) },
        { role: "assistant", content: "No." },
        { role: "user", content: "Go on." },
      ]),
    );
    const items = (await t.client.responses.inputItems.list(r.id, { order: "asc" })).data;
    assert.equal(items.length, 6);
    assert.deepEqual(items[3], first.output[0], "the output item keeps its id");
    assert.deepEqual((items[0] as { content: unknown }).content, [{ type: "input_text", text: "Be kind." }]);
    assert.deepEqual((items[4] as { content: unknown }).content, [{ type: "refusal", refusal: "No." }]);
    // Its id is now taken in that context: sending it twice is refused.
    const twice = await apiError(create({ input: [first.output[0], first.output[0]], max_output_tokens: 16 }), OpenAI.BadRequestError);
    assert.equal(twice.param, "input[1].id");
  });

  test("store:false is answered but neither retrievable nor usable as previous_response_id", async () => {
    const r = await create({ input: "Ben liked cars", max_output_tokens: 16, store: false });
    assert.equal((r as unknown as { store: boolean }).store, false);
    assert.ok(outputText(r).length > 0);
    await apiError(t.client.responses.retrieve(r.id), OpenAI.NotFoundError);
    const err = await apiError(create({ input: "More", previous_response_id: r.id, max_output_tokens: 16 }), OpenAI.BadRequestError);
    assert.equal(err.code, "previous_response_not_found");
    assert.equal(err.param, "previous_response_id");
    assert.match(err.message, new RegExp(`Previous response with id '${r.id}' not found`));
  });

  test("unknown previous_response_id is a 400 previous_response_not_found; unknown conversation a 404", async () => {
    const prev = await apiError(create({ input: "x", previous_response_id: "resp_0000" }), OpenAI.BadRequestError);
    assert.equal(prev.code, "previous_response_not_found");
    assert.equal(prev.param, "previous_response_id");
    const conv = await apiError(create({ input: "x", conversation: "conv_0000" }), OpenAI.NotFoundError);
    assert.equal(conv.param, "conversation");
    const convObject = await apiError(create({ input: "x", conversation: { id: "conv_0000" } }), OpenAI.NotFoundError);
    assert.equal(convObject.param, "conversation");
  });

  test("bad requests are 400s naming the parameter", async () => {
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ input: [{ type: "reasoning", summary: [] }] }, "input[0].type", "unsupported_parameter"],
      [
        {
          input: [
            { role: "user", content: "a" },
            { type: "item_reference", id: "msg_1" },
          ],
        },
        "input[1].id",
        "invalid_value",
      ],
      [{ input: [{ type: "reasoning", summary: [] }] }, "input[0].type", "unsupported_parameter"],
      [{ input: [{ role: "user", content: [{ type: "input_image", image_url: "https://x/y.png" }] }] }, "input[0].content[0].type", "unsupported_parameter"],
      [
        {
          input: [
            { role: "user", content: "a" },
            { role: "user", content: [{ type: "input_file", file_id: "f" }] },
          ],
        },
        "input[1].content[0].type",
        "unsupported_parameter",
      ],
      [{ input: [{ role: "assistant", content: [{ type: "input_text", text: "hi" }] }] }, "input[0].content[0].type", "invalid_value"],
      [{ input: [{ role: "user", content: [{ type: "output_text", text: "hi" }] }] }, "input[0].content[0].type", "invalid_value"],
      [{ input: [{ role: "user", content: [{ type: "input_text" }] }] }, "input[0].content[0].text", "missing_required_parameter"],
      [{ input: [{ role: "tool", content: "x" }] }, "input[0].role", "invalid_value"],
      [{ input: 42 }, "input", "invalid_value"],
      [{}, "input", "missing_required_parameter"],
      [{ input: "x", max_output_tokens: 5 }, "max_output_tokens", "invalid_value"],
      [{ input: "x", temperature: 3 }, "temperature", "invalid_value"],
      [{ input: "x", max_tokens: 16 }, "max_tokens", "unknown_parameter"],
      [{ input: "x", tools: [{ type: "file_search", vector_store_ids: [] }] }, "tools[0].type", "invalid_value"],
      [{ input: "x", tool_choice: "required" }, "tool_choice", "invalid_value"],
      [{ input: "x", reasoning: { effort: "high" } }, "reasoning", "unsupported_parameter"],
      [{ input: "x", include: ["file_search_call.results"] }, "include[0]", "unsupported_parameter"],
      [{ input: "x", background: true, store: false }, "background", "invalid_value"],
      [{ input: "x", text: { format: { type: "xml" } } }, "text.format.type", "invalid_value"],
      [
        { input: "x", text: { format: { type: "json_schema", name: "n", schema: { type: "string", pattern: "(?=a)b" } } } },
        "text.format.schema",
        "unsupported_parameter",
      ],
      [{ input: "x", text: { format: { type: "json_schema", name: "n" } } }, "text.format.schema", "missing_required_parameter"],
      [{ input: "x", text: { verbosity: "loud" } }, "text.verbosity", "invalid_value"],
      [{ input: "x", text: { format: { type: "json_object" }, extra: 1 } }, "text.extra", "unknown_parameter"],
      [{ input: "x", truncation: "sometimes" }, "truncation", "invalid_value"],
      [{ input: "x", top_logprobs: 21 }, "top_logprobs", "invalid_value"],
      [{ input: "x", prompt: { id: "pmpt_1" } }, "prompt", "unsupported_parameter"],
      [{ input: "x", previous_response_id: "resp_a", conversation: "conv_b" }, "previous_response_id", "invalid_value"],
    ];
    for (const [body, param, code] of cases) {
      const err = await apiError(create(body), OpenAI.BadRequestError);
      assert.equal(err.param, param, JSON.stringify(body));
      assert.equal(err.code, code, JSON.stringify(body));
    }
    // Neutral values of refused parameters pass.
    const ok = await create({
      input: "x",
      max_output_tokens: 16,
      tools: [],
      tool_choice: "auto",
      include: [],
      text: { format: { type: "text" } },
      truncation: "disabled",
      reasoning: null,
      background: false,
      parallel_tool_calls: false,
    });
    assert.equal(ok.object, "response");
    assert.equal(ok.parallel_tool_calls, false);
  });

  test("a prompt longer than the context is a 400 before any stream starts", async () => {
    const sse = await rawStream(`${t.url}/v1/responses`, { model: t.modelId, input: "word ".repeat(3000), stream: true });
    assert.equal(sse.status, 400);
    assert.equal((JSON.parse(sse.text) as { error: { code: string } }).error.code, "context_length_exceeded");
  });
});

describe("POST /v1/responses with stream: true", () => {
  test("the SDK gets the documented events in order, with consecutive sequence numbers and deltas that add up", async () => {
    const stream = await t.client.responses.create({ model: t.modelId, input: "Once upon a time", max_output_tokens: 24, stream: true, temperature: 0 });
    const events: ResponseStreamEvent[] = [];
    for await (const ev of stream) events.push(ev);
    const types = events.map((e) => e.type);
    assert.deepEqual(collapseDeltas(types), [...STREAM_ORDER, "response.incomplete"]);
    assert.ok(types.filter((x) => x === "response.output_text.delta").length > 1, "many deltas");
    assert.deepEqual(
      events.map((e) => e.sequence_number),
      events.map((_, i) => i),
    );
    const byType = <T extends ResponseStreamEvent["type"]>(type: T) => events.find((e) => e.type === type) as Extract<ResponseStreamEvent, { type: T }>;
    const created = byType("response.created").response;
    assert.equal(created.status, "in_progress");
    assert.deepEqual(created.output, []);
    assert.equal(byType("response.in_progress").response.id, created.id);
    const added = byType("response.output_item.added");
    assert.deepEqual(added.item, { type: "message", id: added.item.id, role: "assistant", status: "in_progress", content: [] });
    const text = events.flatMap((e) => (e.type === "response.output_text.delta" ? [e.delta] : [])).join("");
    for (const e of events) {
      if ("item_id" in e) assert.equal(e.item_id, added.item.id, e.type);
      if ("output_index" in e) assert.equal(e.output_index, 0, e.type);
    }
    assert.equal(byType("response.output_text.done").text, text);
    assert.deepEqual(byType("response.content_part.done").part, { type: "output_text", text, annotations: [], logprobs: [] });
    const done = byType("response.output_item.done").item;
    assert.deepEqual(done, {
      type: "message",
      id: added.item.id,
      role: "assistant",
      status: "incomplete",
      content: [{ type: "output_text", text, annotations: [], logprobs: [] }],
    });
    const final = byType("response.incomplete").response;
    assert.equal(final.id, created.id);
    assert.equal(final.status, "incomplete");
    assert.deepEqual(final.output, [done]);
    assert.equal(final.usage!.output_tokens, 24);
    // The same text as without streaming, and stored: retrieve returns the final object.
    const plain = await t.client.responses.create({ model: t.modelId, input: "Once upon a time", max_output_tokens: 24, temperature: 0 });
    assert.equal(plain.output_text, text);
    const stored = await t.client.responses.retrieve(final.id);
    assert.deepEqual({ ...stored, output_text: undefined }, { ...final, output_text: undefined });
  });

  test("raw SSE: each frame has an event: line naming its type, no [DONE]; a stop ends with response.completed", async () => {
    const body = { model: t.modelId, input: "The sun", max_output_tokens: 40, temperature: 0, ignore_eos: true };
    const full = outputText(await create(body));
    const stop = full.slice(5, 8);
    const sse = await rawStream(`${t.url}/v1/responses`, { ...body, stop, stream: true });
    assert.equal(sse.status, 200);
    assert.match(sse.headers.get("content-type") ?? "", /^text\/event-stream/);
    assert.ok(!sse.text.includes("[DONE]"));
    assert.ok(sse.events.length >= STREAM_ORDER.length + 1);
    for (const e of sse.events) assert.equal(e.event, (JSON.parse(e.data) as { type: string }).type);
    for (const [i, e] of sse.events.entries()) assertMatchesSpec("ResponseStreamEvent", JSON.parse(e.data), `event ${i}`);
    const types = sse.events.map((e) => e.event!);
    assert.deepEqual(collapseDeltas(types), [...STREAM_ORDER, "response.completed"]);
    const completed = JSON.parse(sse.events.at(-1)!.data) as { response: OpenAIResponse };
    assert.equal(completed.response.status, "completed");
    assert.equal(typeof completed.response.completed_at, "number");
    assert.equal(outputText(completed.response), full.slice(0, full.indexOf(stop)));
    // Every frame is `event: X\ndata: {...}\n\n`.
    assert.match(sse.text, /^event: response\.created\ndata: \{.*\}\n\n/);
  });

  test("a client that leaves mid-stream cancels the response: nothing is stored", async () => {
    const ac = new AbortController();
    const res = await fetch(`${t.url}/v1/responses`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: t.modelId, input: "A long story", max_output_tokens: 900, ignore_eos: true, stream: true }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    let text = "";
    while (!text.includes("response.output_text.delta")) text += new TextDecoder().decode((await reader.read()).value);
    const id = /"id":"(resp_[0-9a-f]+)"/.exec(text)![1]!;
    ac.abort();
    await waitFor(
      async () => (await fetch(`${t.url}/metrics`).then((r) => r.text())).match(/^llamux_requests_running\{model="[^"]+"\} 0$/m) !== null,
      10_000,
      "the cancelled generation to end",
    );
    await apiError(t.client.responses.retrieve(id), OpenAI.NotFoundError);
  });
});
