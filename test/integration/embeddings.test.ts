// POST /v1/embeddings on the real server and model, through the official
// openai client (which asks for base64 and decodes it) and raw HTTP (float).
// The model's own tokenizer and GGUF metadata, loaded in this process, are the
// independent reference for token counts, token inputs and vector length.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import type { LlamaEmbeddingContext, LlamaModel } from "node-llama-cpp";
import { loadModel, type LoadedModel } from "../../models/load.js";
import { countTextTokens } from "../../src/quota/estimate.js";
import { hashApiKey } from "../../src/tenants/keys.js";
import { assertMatchesSpec } from "../helpers/openapi.js";
import { MODELS, startTestServer, type TestServer } from "./helpers/server.js";

const CTX = 256;
let t: TestServer;
let loaded: LoadedModel;
let model: LlamaModel;
/** node-llama-cpp's own embedding context in this process: the reference vectors. */
let reference: LlamaEmbeddingContext;
let nEmbd: number;
let vocab: number;

before(async () => {
  t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", String(CTX)]);
  loaded = await loadModel({ modelPath: MODELS.stories260K, threads: 1, gpu: "off" });
  model = loaded.model;
  const meta = model.fileInfo.metadata as unknown as { llama: { embedding_length: number }; tokenizer: { ggml: { tokens: string[] } } };
  nEmbd = meta.llama.embedding_length;
  vocab = meta.tokenizer.ggml.tokens.length;
  reference = await model.createEmbeddingContext({ contextSize: CTX + 1, threads: 1 });
  assert.ok(model.tokens.shouldPrependBosToken && !model.tokens.shouldAppendEosToken, "the counts below assume BOS and no EOS");
});
after(async () => {
  await t?.close();
  await reference?.dispose();
  await loaded?.model.dispose();
  await loaded?.llama.dispose();
});

interface EmbeddingBody {
  object: string;
  data: Array<{ object: string; index: number; embedding: number[] | string }>;
  model: string;
  usage: { prompt_tokens: number; total_tokens: number };
}

async function post(body: Record<string, unknown>): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${t.url}/v1/embeddings`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: t.modelId, ...body }),
  });
  return { status: res.status, json: await res.json() };
}

/** Raw HTTP, float: the response checked against the spec, its vectors returned. */
async function floats(input: unknown): Promise<{ vectors: number[][]; usage: EmbeddingBody["usage"] }> {
  const { status, json } = await post({ input, encoding_format: "float" });
  assert.equal(status, 200, JSON.stringify(json));
  assertMatchesSpec("CreateEmbeddingResponse", json);
  const body = json as EmbeddingBody;
  assert.deepEqual(
    body.data.map((d) => d.index),
    body.data.map((_, i) => i),
  );
  return { vectors: body.data.map((d) => d.embedding as number[]), usage: body.usage };
}

const sdk = async (input: string | string[] | number[] | number[][]) => t.client.embeddings.create({ model: t.modelId, input });
const norm = (v: number[]) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
/** Tokens the model evaluates for `text`: its tokens plus BOS. */
const tokenCount = (text: string) => model.tokenize(text, false).length + 1;

/** node-llama-cpp's raw embedding of `input`, scaled to unit length. */
async function referenceVector(input: string): Promise<number[]> {
  const raw = (await reference.getEmbeddingFor(input)).vector;
  const n = norm([...raw]);
  return raw.map((x) => x / n);
}

/** Equal up to float32 rounding of a different thread count or batch split. */
function assertClose(actual: number[], expected: number[], what: string): void {
  assert.equal(actual.length, expected.length, what);
  const worst = Math.max(...actual.map((x, i) => Math.abs(x - expected[i]!)));
  assert.ok(worst < 1e-4, `${what}: differs by ${worst}`);
}

const TEXTS = ["Once upon a time", "The cat sat on the mat.", "Lily liked to play in the park with her dog.", "hello"];

describe("POST /v1/embeddings", () => {
  test("a string: one unit-length vector of the model's n_embd, the response as the spec says, usage counted", async () => {
    const { vectors, usage } = await floats(TEXTS[0]);
    assert.equal(vectors.length, 1);
    assert.equal(vectors[0]!.length, nEmbd);
    assert.ok(Math.abs(norm(vectors[0]!) - 1) < 1e-5, `norm ${norm(vectors[0]!)}`);
    assert.deepEqual(usage, { prompt_tokens: tokenCount(TEXTS[0]!), total_tokens: tokenCount(TEXTS[0]!) });
    const r = await sdk(TEXTS[0]!);
    assert.equal(r.object, "list");
    assert.equal(r.model, t.modelId);
  });

  test("each vector is node-llama-cpp's embedding of the input, scaled to unit length", async () => {
    const { vectors } = await floats(TEXTS);
    for (let i = 0; i < TEXTS.length; i++) assertClose(vectors[i]!, await referenceVector(TEXTS[i]!), TEXTS[i]!);
    const raw = (await reference.getEmbeddingFor(TEXTS[0]!)).vector;
    assert.ok(Math.abs(norm([...raw]) - 1) > 0.1, "node-llama-cpp's vectors are not unit-length already: the scaling is ours");
  });

  test("base64 (the SDK's default, decoded by it) and float carry exactly the same numbers", async () => {
    const { vectors } = await floats(TEXTS);
    const viaSdk = await sdk(TEXTS);
    assert.deepEqual(
      viaSdk.data.map((d) => d.embedding),
      vectors,
    );
    // And the raw base64 is little-endian float32.
    const { json } = await post({ input: TEXTS[1], encoding_format: "base64" });
    const b64 = (json as EmbeddingBody).data[0]!.embedding as string;
    const bytes = Buffer.from(b64, "base64");
    assert.equal(bytes.length, nEmbd * 4);
    assert.deepEqual(
      Array.from({ length: nEmbd }, (_, i) => bytes.readFloatLE(i * 4)),
      vectors[1],
    );
  });

  test("an array of strings: each vector equals that string's own, usage is the sum", async () => {
    const batch = await floats(TEXTS);
    for (let i = 0; i < TEXTS.length; i++) {
      const solo = await floats(TEXTS[i]);
      assert.deepEqual(batch.vectors[i], solo.vectors[0], TEXTS[i]);
      assert.ok(Math.abs(norm(batch.vectors[i]!) - 1) < 1e-5);
    }
    const sum = TEXTS.reduce((n, s) => n + tokenCount(s), 0);
    assert.deepEqual(batch.usage, { prompt_tokens: sum, total_tokens: sum });
  });

  test("token ids: the text's tokens give the text's vector (with or without BOS), as one array or a list of arrays", async () => {
    const text = TEXTS[2]!;
    const tokens = model.tokenize(text, false) as number[];
    const [fromText] = (await floats(text)).vectors;
    const flat = await floats(tokens);
    assert.deepEqual(flat.vectors[0], fromText);
    assert.equal(flat.usage.prompt_tokens, tokens.length + 1);
    const withBos = await floats([model.tokens.bos!, ...tokens]);
    assert.deepEqual(withBos.vectors[0], fromText);
    assert.equal(withBos.usage.prompt_tokens, tokens.length + 1, "BOS is not added twice");
    const list = await floats([tokens, model.tokenize(TEXTS[3]!, false) as number[]]);
    assert.deepEqual(list.vectors[0], fromText);
    assert.deepEqual(list.vectors[1], (await floats(TEXTS[3])).vectors[0]);
  });

  test("the same input gives the same vector; different inputs give different ones", async () => {
    const a = (await floats(TEXTS[0])).vectors[0]!;
    const b = (await floats(TEXTS[0])).vectors[0]!;
    assert.deepEqual(a, b);
    const { vectors } = await floats(TEXTS);
    for (let i = 0; i < vectors.length; i++) {
      for (let j = i + 1; j < vectors.length; j++) {
        const cos = vectors[i]!.reduce((s, x, k) => s + x * vectors[j]![k]!, 0);
        assert.ok(cos < 0.9999, `${TEXTS[i]} vs ${TEXTS[j]}: cosine ${cos}`);
      }
    }
  });

  test("8 concurrent requests all succeed, each equal to its result alone", async () => {
    const inputs: Array<string | string[]> = [...TEXTS, [TEXTS[0]!, TEXTS[1]!], [TEXTS[2]!, TEXTS[3]!, TEXTS[0]!], "a dog", ["x", "y"]];
    const solo = [];
    for (const input of inputs) solo.push(await floats(input));
    const together = await Promise.all(inputs.map((input) => floats(input)));
    assert.deepEqual(together, solo);
  });

  test("an input of exactly the context is accepted; one token more is context_length_exceeded naming input", async () => {
    const fits = Array.from({ length: CTX - 1 }, (_, i) => 10 + (i % 400));
    const ok = await floats(fits);
    assert.equal(ok.usage.prompt_tokens, CTX);
    const over = await post({ input: [...fits, 10] });
    assert.equal(over.status, 400);
    assertMatchesSpec("ErrorResponse", over.json);
    const e = (over.json as { error: { code: string; param: string; message: string } }).error;
    assert.deepEqual([e.code, e.param], ["context_length_exceeded", "input"]);
    assert.match(e.message, new RegExp(`maximum context length is ${CTX} tokens, however 'input' has ${CTX + 1} tokens`));
    const longText = await post({ input: ["short", "Once upon a time ".repeat(80)] });
    assert.equal(longText.status, 400);
    assert.match((longText.json as { error: { message: string } }).error.message, /'input\[1\]' has \d+ tokens/);
  });

  test("bad requests are 400s naming the parameter, in the spec's error shape", async () => {
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ input: "" }, "input", "invalid_value"],
      [{ input: [] }, "input", "invalid_value"],
      [{ input: ["a", ""] }, "input", "invalid_value"],
      [{ input: 42 }, "input", "invalid_value"],
      [{ input: [1, "a"] }, "input", "invalid_value"],
      [{ input: ["a", 1] }, "input", "invalid_type"],
      [{ input: [{ text: "a" }] }, "input", "invalid_type"],
      [{}, "input", "missing_required_parameter"],
      [{ input: Array.from({ length: 2049 }, () => "a") }, "input", "invalid_value"],
      [
        {
          input: [
            [1, 2],
            [1, vocab],
          ],
        },
        "input",
        "invalid_prompt",
      ],
      [{ input: [vocab + 5] }, "input", "invalid_prompt"],
      [{ input: "a", dimensions: 32 }, "dimensions", "unsupported_parameter"],
      [{ input: "a", dimensions: nEmbd * 2 }, "dimensions", "unsupported_parameter"],
      [{ input: "a", dimensions: 0 }, "dimensions", "invalid_value"],
      [{ input: "a", encoding_format: "int8" }, "encoding_format", "invalid_value"],
      [{ input: "a", extra: true }, "extra", "unknown_parameter"],
    ];
    for (const [body, param, code] of cases) {
      const { status, json } = await post(body);
      const what = JSON.stringify(body).slice(0, 80);
      assert.equal(status, 400, `${what}: ${JSON.stringify(json)}`);
      assertMatchesSpec("ErrorResponse", json);
      const e = (json as { error: { code: string; param: string } }).error;
      assert.deepEqual([e.code, e.param], [code, param], what);
    }
    const vocabErr = await post({
      input: [
        [1, 2],
        [1, vocab],
      ],
    });
    assert.match(
      (vocabErr.json as { error: { message: string } }).error.message,
      new RegExp(`'input\\[1\\]': token id ${vocab} is not below the vocabulary size ${vocab}`),
    );
    const missingModel = await post({ model: "nope", input: "a" });
    assert.equal(missingModel.status, 404);
    assert.equal((missingModel.json as { error: { code: string } }).error.code, "model_not_found");
    // dimensions equal to the model's size, and user, are accepted.
    const same = await post({ input: "a", dimensions: nEmbd, user: "someone", encoding_format: "float" });
    assert.equal(same.status, 200);
    assert.equal(((same.json as EmbeddingBody).data[0]!.embedding as number[]).length, nEmbd);
  });

  test("embeddings while chat streams run do not disturb them: the same greedy text, to the token", async () => {
    const prompts = ["Tell me a story about a cat.", "Tell me a story about a boat."];
    const chat = async (content: string) => {
      const stream = await t.client.chat.completions.create({
        model: t.modelId,
        messages: [{ role: "user", content }],
        max_tokens: 100,
        temperature: 0,
        ignore_eos: true,
        stream: true,
        stream_options: { include_usage: true },
      } as never);
      let text = "";
      let finish: string | null = null;
      let tokens = 0;
      let chunks = 0;
      for await (const chunk of stream as unknown as AsyncIterable<{
        choices: Array<{ delta: { content?: string }; finish_reason: string | null }>;
        usage?: { completion_tokens: number };
      }>) {
        chunks++;
        text += chunk.choices[0]?.delta.content ?? "";
        finish = chunk.choices[0]?.finish_reason ?? finish;
        if (chunk.usage) tokens = chunk.usage.completion_tokens;
      }
      return { text, finish, tokens, chunks };
    };
    const alone = [];
    for (const p of prompts) alone.push(await chat(p));
    let streaming = true;
    let embeddedDuring = 0;
    const streams = Promise.all(prompts.map(chat)).finally(() => {
      streaming = false;
    });
    const embedder = (async () => {
      while (streaming) {
        const { vectors } = await floats(TEXTS);
        assert.equal(vectors.length, TEXTS.length);
        if (streaming) embeddedDuring++;
      }
    })();
    const [together] = await Promise.all([streams, embedder]);
    assert.ok(embeddedDuring > 0, "no embeddings request finished while the streams ran");
    assert.deepEqual(together, alone);
    for (const r of together) assert.deepEqual([r.finish, r.tokens], ["length", 100]);
  });

  test("a client that leaves mid-request costs the server nothing: the next requests are served", async () => {
    const ac = new AbortController();
    const many = Array.from({ length: 2048 }, (_, i) => `story number ${i}`);
    const leaving = fetch(`${t.url}/v1/embeddings`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: t.modelId, input: many }),
      signal: ac.signal,
    });
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(leaving);
    const { vectors } = await floats(TEXTS[0]);
    assert.equal(vectors.length, 1);
  });
});

describe("embeddings and tenant quotas", () => {
  const KEY = "lmx-embedEmbedEmbedEmbedEmbedEmbedEmbed0001";
  const FREE = "lmx-freeFreeFreeFreeFreeFreeFreeFreeFree0003";
  const BUDGET = 40;
  /** /metrics lists every tenant, so in multi-tenant mode it takes this token. */
  const METRICS_TOKEN = "metrics-token-for-embedding-tests-01";
  let dir: string;
  let q: TestServer;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-embed-quota-"));
    const tenantsFile = path.join(dir, "tenants.yaml");
    fs.writeFileSync(
      tenantsFile,
      `tenants:\n  - id: emb\n    limits: { requestsPerMinute: 100, tokensPerDay: ${BUDGET} }\n    keys: ["${hashApiKey(KEY)}"]\n  - id: free\n    keys: ["${hashApiKey(FREE)}"]\n`,
    );
    // 16-token steps: a long input is evaluated in chunks (a causal model reads the last token's embedding).
    q = await startTestServer(["--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", String(CTX), "--step-tokens", "16", "--tenants", tenantsFile], {
      apiKey: KEY,
      env: { LLAMUX_METRICS_TOKEN: METRICS_TOKEN },
    });
  });
  after(async () => {
    await q?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  const send = (input: unknown, key = KEY) =>
    fetch(`${q.url}/v1/embeddings`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: q.modelId, input }),
    });

  test("a key is required; the rate-limit headers come back; the exact tokens are charged, refused inputs refunded, and the budget trips exactly", async () => {
    const anonymous = await send("hi", "lmx-wrongWrongWrongWrongWrongWrongWrong0002");
    assert.equal(anonymous.status, 401);
    await anonymous.text();

    // The estimate (cl100k) and the model's count differ, so only settling with the exact count adds up below.
    const text = TEXTS[0]!;
    assert.notEqual(countTextTokens(text), tokenCount(text));
    const first = await send(text);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-ratelimit-limit-requests"), "100");
    assert.equal(first.headers.get("x-ratelimit-remaining-requests"), "99");
    const used = ((await first.json()) as EmbeddingBody).usage.prompt_tokens;
    assert.equal(used, tokenCount(text));

    // Refused by the worker (token id outside the vocabulary): refunded whole.
    const refused = await send([1, vocab]);
    assert.equal(refused.status, 400);
    await refused.text();

    // Token ids with BOS: estimated exactly. All that is left fits...
    const left = BUDGET - used;
    const fill = await send([1, ...Array.from({ length: left - 1 }, (_, i) => 20 + i)]);
    assert.equal(fill.status, 200, await fill.clone().text());
    assert.equal(((await fill.json()) as EmbeddingBody).usage.prompt_tokens, left);
    // ...and then nothing does.
    const over = await send([1]);
    assert.equal(over.status, 429);
    assert.equal(((await over.json()) as { error: { code: string } }).error.code, "insufficient_quota");
    await assert.rejects(q.client.embeddings.create({ model: q.modelId, input: "x" }), OpenAI.RateLimitError);

    const metrics = await (await fetch(`${q.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
    const line = metrics.split("\n").find((l) => l.startsWith("llamux_prompt_tokens_total{") && l.includes('tenant="emb"'));
    assert.ok(line, "prompt tokens recorded for the tenant");
    assert.equal(Number(line.slice(line.lastIndexOf(" ") + 1)), BUDGET);
  });

  test("a long input read in 16-token chunks (--step-tokens 16) gives node-llama-cpp's vector", async () => {
    const text = "Once upon a time there was a little girl named Lily. She liked to play outside in the sun with her friends. ".repeat(3).trim();
    assert.ok(tokenCount(text) > 3 * 16, "several chunks");
    const res = await send(text, FREE);
    assert.equal(res.status, 200);
    const body = (await res.json()) as EmbeddingBody;
    assert.equal(body.usage.prompt_tokens, tokenCount(text));
    // Chunks run other matmul shapes and read the earlier tokens back from the
    // f16 KV cache: close, not equal. A vector of any other input is far off.
    const chunked = body.data[0]!.embedding as number[];
    const cos = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i]!, 0);
    const same = cos(chunked, await referenceVector(text));
    const tail = cos(chunked, await referenceVector(text.slice(-60)));
    assert.ok(same > 0.99999, `cosine to the one-batch vector ${same}`);
    assert.ok(tail < 0.99, `cosine to the last chunk's own vector ${tail}`);
  });
});
