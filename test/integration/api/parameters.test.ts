// The parameter table (src/openai/parameters.ts) against the real server, through
// the official openai client: every refused parameter, sent with a value that
// is not neutral, is a 400 unsupported_parameter naming it; sent neutral, the
// request runs.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { CHAT_COMPLETION_PARAMETERS, COMPLETION_PARAMETERS, embeddingParameters, paramsHandled } from "../../../src/openai/parameters.js";
import { assertMatchesSpec } from "../../helpers/openapi.js";
import { CHAT_REFUSED_SAMPLES, COMPLETION_REFUSED_SAMPLES, EMBEDDING_REFUSED_SAMPLES } from "../../helpers/parameterSamples.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

let t: TestServer;
before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "256"]);
});
after(async () => {
  await t?.close();
});

async function expectRefused(send: () => Promise<unknown>, name: string): Promise<void> {
  let caught: unknown;
  try {
    await send();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof OpenAI.BadRequestError, `${name}: expected a 400, got ${String(caught)}`);
  assert.equal(caught.code, "unsupported_parameter", name);
  assert.equal(caught.param, name);
  assert.equal(caught.type, "invalid_request_error");
  assert.match(caught.message, new RegExp(`'${name}'`));
}

describe("refused parameters", () => {
  const messages = [{ role: "user" as const, content: "Hi" }];

  test("chat: each refused parameter, non-neutral, is a 400 naming it (stream or not)", async () => {
    const names = paramsHandled(CHAT_COMPLETION_PARAMETERS, "refused");
    assert.ok(names.length >= 9);
    for (const name of names) {
      const body = { model: t.modelId, messages, max_tokens: 2, [name]: CHAT_REFUSED_SAMPLES[name] };
      await expectRefused(() => t.client.chat.completions.create(body as never), name);
      await expectRefused(() => t.client.chat.completions.create({ ...body, stream: true } as never), name);
    }
  });

  test("completions: each refused parameter, non-neutral, is a 400 naming it", async () => {
    const names = paramsHandled(COMPLETION_PARAMETERS, "refused");
    assert.ok(names.length >= 2);
    for (const name of names) {
      const body = { model: t.modelId, prompt: "Once", max_tokens: 2, [name]: COMPLETION_REFUSED_SAMPLES[name] };
      await expectRefused(() => t.client.completions.create(body as never), name);
    }
  });

  test("the error body has the spec's ErrorResponse shape", async () => {
    const res = await fetch(`${t.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: t.modelId, messages, n: 129 }),
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: { param: string | null } };
    assertMatchesSpec("ErrorResponse", body);
    assert.equal(body.error.param, "n");
  });

  test("neutral values of refused parameters are accepted and the request runs", async () => {
    const r = await t.client.chat.completions.create({
      model: t.modelId,
      messages,
      max_tokens: 2,
      n: 1,
      logprobs: false,
      tools: [],
      tool_choice: "none",
      modalities: ["text"],
      response_format: { type: "text" },
    } as never);
    assert.equal((r as OpenAI.ChatCompletion).choices.length, 1);
    const c = await t.client.completions.create({ model: t.modelId, prompt: "Once", max_tokens: 2, n: 1, best_of: 1, suffix: "" });
    assert.equal(c.choices.length, 1);
  });
});

describe("CreateEmbeddingRequest", () => {
  test("embeddings: each refused parameter, non-neutral, is a 400 naming it; neutral, the request runs", async () => {
    // Which parameters are refused does not depend on the size; their neutral values do.
    const names = paramsHandled(embeddingParameters(0), "refused");
    assert.deepEqual(names, ["dimensions"]);
    for (const name of names) {
      const body = { model: t.modelId, input: "hello", [name]: EMBEDDING_REFUSED_SAMPLES[name] };
      await expectRefused(() => t.client.embeddings.create(body as never), name);
    }
    const size = t.srv.model.embeddingSize;
    const ok = await t.client.embeddings.create({ model: t.modelId, input: "hello", dimensions: size, user: "u" });
    assert.equal(ok.data[0]!.embedding.length, size);
  });
});
