// Every error in the catalogue, through the official SDK's typed errors where it applies.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { MODELS, startTestServer, type TestServer } from "./helpers/server.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "128", "--max-body-bytes", "4096"]);
});
after(async () => {
  await t?.close();
});

async function apiError(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof OpenAI.APIError, `expected an APIError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected the request to fail");
}

function assertShape(body: unknown, code: string, param: string | null): void {
  const e = (body as { error: Record<string, unknown> }).error;
  assert.equal(e.code, code);
  assert.equal(e.param, param);
  assert.equal(typeof e.message, "string");
  assert.equal(typeof e.type, "string");
}

const post = (path: string, body: string, headers: Record<string, string> = { "content-type": "application/json" }) =>
  fetch(`${t.url}${path}`, { method: "POST", headers, body });

describe("errors", () => {
  test("malformed JSON is a 400 invalid_json", async () => {
    const res = await post("/v1/chat/completions", '{"model": "x", "messages": [');
    assert.equal(res.status, 400);
    assertShape(await res.json(), "invalid_json", null);
  });

  test("a non-object body is a 400", async () => {
    const res = await post("/v1/chat/completions", "[1,2]");
    assert.equal(res.status, 400);
    assertShape(await res.json(), "invalid_body", null);
  });

  test("a missing field is a 400 naming it", async () => {
    const err = await apiError(t.client.chat.completions.create({ model: t.modelId } as never));
    assert.ok(err instanceof OpenAI.BadRequestError);
    assert.equal(err.param, "messages");
    assert.equal(err.code, "missing_required_parameter");
  });

  test("a mistyped field is a 400 naming it", async () => {
    const err = await apiError(t.client.chat.completions.create({ model: t.modelId, messages: [{ role: "user", content: "x" }], temperature: "hot" } as never));
    assert.ok(err instanceof OpenAI.BadRequestError);
    assert.equal(err.param, "temperature");
    const nested = await apiError(
      t.client.chat.completions.create({
        model: t.modelId,
        messages: [
          { role: "user", content: "x" },
          { role: "wizard", content: "y" },
        ],
      } as never),
    );
    assert.equal(nested.param, "messages[1].role");
  });

  test("an out-of-range value is a 400 naming it", async () => {
    const err = await apiError(t.client.chat.completions.create({ model: t.modelId, messages: [{ role: "user", content: "x" }], top_p: 1.5 }));
    assert.equal(err.status, 400);
    assert.equal(err.param, "top_p");
    assert.equal(err.code, "invalid_value");
  });

  test("an unknown model is a 404 model_not_found", async () => {
    const err = await apiError(t.client.chat.completions.create({ model: "gpt-17", messages: [{ role: "user", content: "x" }] }));
    assert.ok(err instanceof OpenAI.NotFoundError);
    assert.equal(err.code, "model_not_found");
    assert.equal(err.param, "model");
    const retrieve = await apiError(t.client.models.retrieve("gpt-17"));
    assert.ok(retrieve instanceof OpenAI.NotFoundError);
  });

  test("prompt + max_tokens beyond the slot context is context_length_exceeded with both counts", async () => {
    const err = await apiError(
      t.client.chat.completions.create({ model: t.modelId, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 500 }),
    );
    assert.ok(err instanceof OpenAI.BadRequestError);
    assert.equal(err.code, "context_length_exceeded");
    assert.match(err.message, /maximum context length is 128 tokens/);
    assert.match(err.message, /\d+ in the prompt \+ 500 max_tokens/);
    // The prompt alone fits: the parameter to reduce is the one the client sent (issue 19 item 16).
    assert.equal(err.param, "max_tokens");
    const huge = await apiError(
      t.client.chat.completions.create({ model: t.modelId, messages: [{ role: "user", content: "Once upon a time" }], max_completion_tokens: 1e12 }),
    );
    assert.equal(huge.code, "context_length_exceeded");
    assert.equal(huge.param, "max_completion_tokens");
    const output = await apiError(t.client.responses.create({ model: t.modelId, input: "Once upon a time", max_output_tokens: 1e9 }));
    assert.equal(output.code, "context_length_exceeded");
    assert.equal(output.param, "max_output_tokens");
    const long = "word ".repeat(200);
    const err2 = await apiError(t.client.completions.create({ model: t.modelId, prompt: long }));
    assert.equal(err2.code, "context_length_exceeded");
    assert.equal(err2.param, "prompt");
  });

  test("a streaming request that cannot fit fails before any SSE is sent", async () => {
    const res = await post(
      "/v1/chat/completions",
      JSON.stringify({ model: t.modelId, messages: [{ role: "user", content: "x" }], max_tokens: 500, stream: true }),
    );
    assert.equal(res.status, 400);
    assert.match(res.headers.get("content-type") ?? "", /application\/json/);
    assertShape(await res.json(), "context_length_exceeded", "max_tokens");
  });

  test("a body over the limit is a 413", async () => {
    const err = await apiError(t.client.chat.completions.create({ model: t.modelId, messages: [{ role: "user", content: "x".repeat(10_000) }] }));
    assert.equal(err.status, 413);
    assert.equal(err.code, "request_too_large");
  });

  test("unsupported parameters are refused by name, neutral values pass", async () => {
    const base = { model: t.modelId, messages: [{ role: "user" as const, content: "x" }], max_tokens: 1 };
    for (const [param, extra] of [
      ["modalities", { modalities: ["text", "audio"] }],
      ["functions", { functions: [{ name: "f", parameters: {} }] }],
    ] as const) {
      const err = await apiError(t.client.chat.completions.create({ ...base, ...extra } as never));
      assert.equal(err.code, "unsupported_parameter", param);
      assert.equal(err.param, param);
    }
    const ok = await t.client.chat.completions.create({ ...base, n: 1, logprobs: false, response_format: { type: "text" }, user: "u1", metadata: { a: "b" } });
    assert.equal(ok.choices.length, 1);
    const image = await apiError(
      t.client.chat.completions.create({ ...base, messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "http://x/y.png" } }] }] }),
    );
    assert.equal(image.param, "messages[0].content[0].type");
    const suffix = await apiError(t.client.completions.create({ model: t.modelId, prompt: "x", suffix: "y" }));
    assert.equal(suffix.param, "suffix");
  });

  test("an unknown parameter is refused by name", async () => {
    const err = await apiError(t.client.chat.completions.create({ model: t.modelId, messages: [{ role: "user", content: "x" }], temprature: 1 } as never));
    assert.equal(err.code, "unknown_parameter");
    assert.equal(err.param, "temprature");
  });

  test("an unknown route is a 404 in OpenAI's shape", async () => {
    const res = await fetch(`${t.url}/v1/nothing-here`);
    assert.equal(res.status, 404);
    assertShape(await res.json(), "not_found", null);
  });

  test("after all that the server still answers", async () => {
    const r = await t.client.chat.completions.create({ model: t.modelId, messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });
    assert.equal(r.choices.length, 1);
  });
});
