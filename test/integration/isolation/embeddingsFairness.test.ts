// Issue 19, item 10: one embeddings request starved generation (128 large
// inputs made another tenant's 32-token completion take 7.5 s instead of
// 56 ms; 2,048 inputs ran over 10 minutes). Embeddings now take one input per
// generation step while generation has work, a request may hold at most
// 300,000 tokens (OpenAI's bound), and its tokens count against the tenant's
// token limits with a reservation the model's count cannot beat.
// One llama.cpp thread: on a machine whose cores are busy, two threads wait on
// each other's time slices (hundreds of ms a token), which these tests need not measure.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

const KEYS = {
  embedder: "lmx-embedEmbedEmbedEmbedEmbedEmbedEmbe4001",
  chatter: "lmx-chatChatChatChatChatChatChatChatCha4002",
  budget: "lmx-budgetBudgetBudgetBudgetBudgetBudg4003",
};
const BOS = 1;
const CTX = 256;

let dir: string;
let t: TestServer;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-embeddings-fairness-test-"));
  const tenantsFile = path.join(dir, "tenants.yaml");
  fs.writeFileSync(
    tenantsFile,
    `tenants:
  - id: embedder
    keys: ["${hashApiKey(KEYS.embedder)}"]
  - id: chatter
    keys: ["${hashApiKey(KEYS.chatter)}"]
  - id: budget
    limits: { tokensPerDay: 1000 }
    keys: ["${hashApiKey(KEYS.budget)}"]
`,
  );
  t = await startTestServer([
    "--model",
    MODELS.stories260K,
    "--threads",
    "1",
    "--slots",
    "2",
    "--ctx-per-slot",
    String(CTX),
    "--tenants",
    tenantsFile,
    "--data-dir",
    path.join(dir, "data"),
  ]);
});
after(async () => {
  await t?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function embed(key: string, input: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${t.url}/v1/embeddings`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: t.modelId, input }),
    signal,
  });
}

/** A token-id input of `n` tokens (BOS first), counted exactly by any tokenizer. */
const tokens = (n: number, seed: number) => [BOS, ...Array.from({ length: n - 1 }, (_, i) => 20 + ((i * 7 + seed) % 400))];

async function completionMs(): Promise<number> {
  const started = performance.now();
  const res = await fetch(`${t.url}/v1/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEYS.chatter}`, "content-type": "application/json" },
    body: JSON.stringify({ model: t.modelId, prompt: "Once upon a time", max_tokens: 32, ignore_eos: true }),
  });
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens, 32);
  return performance.now() - started;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe("embeddings next to generation", () => {
  test("another tenant's completion while 128 context-long inputs are embedded stays within 4× its baseline + 1 s", async () => {
    await completionMs(); // warm
    const baselineMs = median([await completionMs(), await completionMs(), await completionMs()]);
    let embeddedAtMs: number | null = null;
    const started = performance.now();
    const big = embed(
      KEYS.embedder,
      Array.from({ length: 128 }, (_, i) => tokens(CTX, i)),
    ).then(async (res) => {
      embeddedAtMs = performance.now() - started;
      return res;
    });
    await new Promise((r) => setTimeout(r, 300)); // the embedder is busy
    const during: number[] = [];
    for (let i = 0; i < 3; i++) during.push(await completionMs());
    const duringMs = median(during);
    const res = await big;
    assert.equal(res.status, 200);
    const body = (await res.json()) as { data: unknown[]; usage: { prompt_tokens: number } };
    assert.equal(body.data.length, 128);
    assert.equal(body.usage.prompt_tokens, 128 * CTX);
    // Meaningful only if the embeddings were still running while the completions ran.
    assert.ok(
      embeddedAtMs === null || embeddedAtMs > 300 + during.reduce((a, b) => a + b, 0) * 0.5,
      `embeddings finished at ${embeddedAtMs} ms, completions took ${during}`,
    );
    const bound = 4 * baselineMs + 1000;
    assert.ok(
      duringMs <= bound,
      `completion took ${duringMs.toFixed(0)} ms during the embeddings, ${baselineMs.toFixed(0)} ms alone (bound ${bound.toFixed(0)} ms)`,
    );
  });

  test("a request of more than 300,000 tokens in all is refused before any is embedded", async () => {
    // 2,048 inputs of 150 tokens: 307,200 tokens, each input within the context.
    const res = await embed(
      KEYS.embedder,
      Array.from({ length: 2048 }, (_, i) => tokens(150, i)),
    );
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: { param: string; message: string } };
    assert.equal(body.error.param, "input");
    assert.match(body.error.message, /300000/);
  });

  test("embedding tokens count against the tenant's token budget, which they cannot pass", async () => {
    let used = 0;
    let refused = 0;
    // Digits: one token each (plus one) on this vocabulary, a third of that by cl100k.
    for (let i = 0; i < 12 && refused < 2; i++) {
      const res = await embed(KEYS.budget, ["1234567890".repeat(10), "9876543210".repeat(10)]);
      if (res.status === 429) refused++;
      else {
        assert.equal(res.status, 200);
        used += ((await res.json()) as { usage: { prompt_tokens: number } }).usage.prompt_tokens;
      }
    }
    assert.ok(refused > 0, "the budget ran out");
    assert.ok(used <= 1000, `used ${used} against 1000`);
  });
});
