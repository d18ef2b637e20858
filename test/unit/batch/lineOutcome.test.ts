// What the runner does with a line's answer (src/batch/lineOutcome.ts), and
// how a line is checked (src/batch/validate.ts): pure functions.
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { describe, test } from "node:test";
import { lineOutcome, usageOf } from "../../../src/batch/lineOutcome.js";
import { parseLine, validateInput } from "../../../src/batch/validate.js";

const answer = (status: number, body: unknown, retryAfterMs: number | null = null) => ({ status, requestId: "req_1", body, retryAfterMs });
const err = (code: string) => ({ error: { message: "m", type: "t", param: null, code } });

describe("lineOutcome", () => {
  test("a 200 is a success with the body's usage, in OpenAI's record format", () => {
    const body = { object: "chat.completion", usage: { prompt_tokens: 5, completion_tokens: 7, prompt_tokens_details: { cached_tokens: 2 } } };
    const o = lineOutcome("c1", answer(200, body), 0);
    assert.equal(o.kind, "done");
    if (o.kind !== "done") return;
    assert.equal(o.ok, true);
    assert.deepEqual([o.inputTokens, o.cachedTokens, o.outputTokens], [5, 2, 7]);
    const rec = JSON.parse(o.record);
    assert.match(rec.id, /^batch_req_/);
    assert.deepEqual({ ...rec, id: undefined }, { id: undefined, custom_id: "c1", response: { status_code: 200, request_id: "req_1", body }, error: null });
  });

  test("answers that mean later are retried, honouring retry-after", () => {
    for (const [status, code] of [
      [503, "batch_preempted"],
      [503, "queue_timeout"],
      [429, "queue_full"],
      [429, "rate_limit_exceeded"],
      [503, "engine_restarted"],
    ] as const) {
      const o = lineOutcome("c", answer(status, err(code), 1500), 0);
      assert.deepEqual(o, { kind: "retry", afterMs: 1500 }, code);
    }
    const backoff = lineOutcome("c", answer(503, err("queue_timeout")), 3);
    assert.deepEqual(backoff, { kind: "retry", afterMs: 800 });
  });

  test("a spent budget and invalid requests are the line's failure, with no usage", () => {
    for (const [status, code] of [
      [429, "insufficient_quota"],
      [400, "context_length_exceeded"],
      [404, "model_not_found"],
      [500, "engine_error"],
    ] as const) {
      const o = lineOutcome("c", answer(status, err(code)), 0);
      assert.equal(o.kind, "done", code);
      if (o.kind !== "done") continue;
      assert.equal(o.ok, false);
      assert.equal(JSON.parse(o.record).response.body.error.code, code);
      assert.equal(o.inputTokens + o.outputTokens, 0);
    }
  });

  test("usage of responses and embeddings bodies", () => {
    assert.deepEqual(usageOf({ usage: { input_tokens: 3, output_tokens: 4, input_tokens_details: { cached_tokens: 1 } } }), {
      inputTokens: 3,
      cachedTokens: 1,
      outputTokens: 4,
    });
    assert.deepEqual(usageOf({ usage: { prompt_tokens: 9, total_tokens: 9 } }), { inputTokens: 9, cachedTokens: 0, outputTokens: 0 });
  });
});

describe("batch line validation", () => {
  const line = (o: Record<string, unknown>) =>
    JSON.stringify({ custom_id: "a", method: "POST", url: "/v1/chat/completions", body: { model: "m", messages: [{ role: "user", content: "hi" }] }, ...o });

  test("a good line gives its custom_id and body", () => {
    const p = parseLine(line({}), "/v1/chat/completions");
    assert.ok("customId" in p && p.customId === "a");
  });

  test("each kind of bad line names what is wrong", () => {
    const code = (text: string) => {
      const p = parseLine(text, "/v1/chat/completions");
      return "customId" in p ? null : [p.code, p.param];
    };
    assert.deepEqual(code("nope"), ["invalid_json_line", null]);
    assert.deepEqual(code("[]"), ["invalid_request", null]);
    assert.deepEqual(code(line({ custom_id: "" })), ["missing_required_parameter", "custom_id"]);
    assert.deepEqual(code(line({ method: "GET" })), ["invalid_value", "method"]);
    assert.deepEqual(code(line({ url: "/v1/embeddings" })), ["invalid_value", "url"]);
    assert.deepEqual(code(line({ body: null })), ["missing_required_parameter", "body"]);
    assert.deepEqual(code(line({ body: { model: "m", messages: [], stream: true } })), ["unsupported_parameter", "body.stream"]);
    assert.deepEqual(code(line({ body: { model: "m", messages: [{ role: "user", content: "x" }], temperature: 9 } })), ["invalid_value", "body.temperature"]);
  });

  test("validateInput numbers lines from 1 and checks custom_id uniqueness and one model", async () => {
    const text = [
      line({ custom_id: "a" }),
      line({ custom_id: "a" }),
      line({ custom_id: "b", body: { model: "other", messages: [{ role: "user", content: "x" }] } }),
    ].join("\n");
    const v = await validateInput(Readable.from([text]), "/v1/chat/completions");
    assert.equal(v.total, 3);
    assert.deepEqual(
      v.errors.map((e) => [e.line, e.code]),
      [
        [2, "duplicate_custom_id"],
        [3, "mismatched_model"],
      ],
    );
    const empty = await validateInput(Readable.from([""]), "/v1/chat/completions");
    assert.deepEqual(
      empty.errors.map((e) => e.code),
      ["empty_file"],
    );
  });
});
