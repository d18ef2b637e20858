// Per-tenant quotas on the real server: OpenAI's rate-limit headers, RPM that
// trips exactly at the limit, daily budgets that refund unused reservations
// and end in insufficient_quota (which the openai SDK must not retry), and KV
// cache reuse that never crosses tenants.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { MODELS, startTestServer, type TestServer } from "../helpers/server.js";

const KEYS = {
  rpm: "lmx-rpmRpmRpmRpmRpmRpmRpmRpmRpmRpmRpmRpm0001",
  tpm: "lmx-tpmTpmTpmTpmTpmTpmTpmTpmTpmTpmTpmTpm0002",
  daily: "lmx-dailyDailyDailyDailyDailyDailyDaily0003",
  a: "lmx-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa0004",
  b: "lmx-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb0005",
  conc: "lmx-concConcConcConcConcConcConcConcConc0006",
  tpm60: "lmx-tpm60Tpm60Tpm60Tpm60Tpm60Tpm60Tpm600007",
  invalid: "lmx-invalidInvalidInvalidInvalidInvalid0008",
};
const BOS = 1;
/** /metrics lists every tenant, so in multi-tenant mode it takes this token. */
const METRICS_TOKEN = "metrics-token-for-quota-tests-0123";

let dir: string;
let t: TestServer;
before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-quota-test-"));
  const tenantsFile = path.join(dir, "tenants.yaml");
  fs.writeFileSync(
    tenantsFile,
    `tenants:
  - id: rpm
    limits: { requestsPerMinute: 3 }
    keys: ["${hashApiKey(KEYS.rpm)}"]
  - id: tpm
    limits: { tokensPerMinute: 600 }
    keys: ["${hashApiKey(KEYS.tpm)}"]
  - id: daily
    limits: { tokensPerDay: 50 }
    keys: ["${hashApiKey(KEYS.daily)}"]
  - id: a
    keys: ["${hashApiKey(KEYS.a)}"]
  - id: b
    keys: ["${hashApiKey(KEYS.b)}"]
  - id: conc
    limits: { maxConcurrent: 1 }
    keys: ["${hashApiKey(KEYS.conc)}"]
  - id: tpm60
    limits: { tokensPerMinute: 60 }
    keys: ["${hashApiKey(KEYS.tpm60)}"]
  - id: invalid
    limits: { requestsPerMinute: 3 }
    keys: ["${hashApiKey(KEYS.invalid)}"]
`,
  );
  // One llama.cpp thread: two wait on each other's time slices on busy cores (measured: 30 s for
  // 40 tokens), and the TPM test below needs its first request to end within the bucket's refill.
  t = await startTestServer(
    ["--model", MODELS.stories260K, "--threads", "1", "--slots", "3", "--ctx-per-slot", "256", "--tenants", tenantsFile, "--data-dir", path.join(dir, "data")],
    { env: { LLAMUX_METRICS_TOKEN: METRICS_TOKEN } },
  );
});
after(async () => {
  await t?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const client = (key: string, maxRetries = 0) => new OpenAI({ baseURL: `${t.url}/v1`, apiKey: key, maxRetries, timeout: 60_000 });

/** A completion whose estimate is exact: token-id prompt of `promptTokens`, up to `maxTokens` out. */
function tokenPrompt(promptTokens: number): number[] {
  return [BOS, ...Array.from({ length: promptTokens - 1 }, (_, i) => 100 + i)];
}

async function post(key: string, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${t.url}/v1/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: t.modelId, ...body }),
  });
}

async function metricValue(name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return 0;
}

describe("quotas", () => {
  test("RPM: remaining-requests counts down and the request after the limit is a 429 of type requests", async () => {
    const remaining: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await post(KEYS.rpm, { prompt: "Once", max_tokens: 1 });
      assert.equal(res.status, 200, await res.clone().text());
      assert.equal(res.headers.get("x-ratelimit-limit-requests"), "3");
      assert.match(res.headers.get("x-ratelimit-reset-requests") ?? "", /^(\d+m)?\d+(\.\d+)?m?s$/);
      remaining.push(res.headers.get("x-ratelimit-remaining-requests") ?? "");
      await res.text();
    }
    assert.deepEqual(remaining, ["2", "1", "0"]);
    const res = await post(KEYS.rpm, { prompt: "Once", max_tokens: 1 });
    assert.equal(res.status, 429);
    const body = (await res.json()) as { error: { type: string; code: string; message: string } };
    assert.equal(body.error.type, "requests");
    assert.equal(body.error.code, "rate_limit_exceeded");
    assert.match(body.error.message, /Limit 3, Used 3, Requested 1/);
    const retryMs = Number(res.headers.get("retry-after-ms"));
    assert.ok(retryMs > 0 && retryMs <= 20_000, `retry-after-ms ${retryMs}`);
    assert.equal(res.headers.get("retry-after"), String(Math.ceil(retryMs / 1000)));
    // The SDK sees the same refusal as a typed RateLimitError.
    await assert.rejects(client(KEYS.rpm).completions.create({ model: t.modelId, prompt: "Once", max_tokens: 1 }), (err) => {
      assert.ok(err instanceof OpenAI.RateLimitError);
      assert.equal((err.error as { type?: string }).type, "requests");
      return true;
    });
    // Models listing carries the headers too, without spending a request.
    const models = await fetch(`${t.url}/v1/models`, { headers: { authorization: `Bearer ${KEYS.rpm}` } });
    assert.equal(models.headers.get("x-ratelimit-remaining-requests"), "0");
  });

  test("RPM: requests refused as invalid count too, before and after the engine read them; over the limit the answer is the 429", async () => {
    // Refused by the front from its length alone (it cannot fit 256 tokens, whatever the tokenizer does).
    const huge = await post(KEYS.invalid, { model: t.modelId, prompt: "x".repeat(200_000), max_tokens: 4 });
    assert.equal(huge.status, 400);
    assert.equal(((await huge.json()) as { error: { code: string } }).error.code, "context_length_exceeded");
    assert.equal(huge.headers.get("x-ratelimit-remaining-requests"), "2");
    // Refused by the engine once it tokenized the prompt (300 token ids > 256).
    const long = await post(KEYS.invalid, { model: t.modelId, prompt: tokenPrompt(300), max_tokens: 4 });
    assert.equal(long.status, 400);
    const ok = await post(KEYS.invalid, { model: t.modelId, prompt: tokenPrompt(4), max_tokens: 2 });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("x-ratelimit-remaining-requests"), "0");
    await ok.json();
    const over = await post(KEYS.invalid, { model: t.modelId, prompt: "x".repeat(200_000), max_tokens: 4 });
    assert.equal(over.status, 429);
    assert.equal(((await over.json()) as { error: { type: string } }).error.type, "requests");
  });

  test("TPM: a reservation takes exactly its estimate, and the bucket refills by the reset it announced", async () => {
    const first = await post(KEYS.tpm, { prompt: tokenPrompt(8), max_tokens: 8, ignore_eos: true });
    assert.equal(first.status, 200);
    const usage = ((await first.json()) as { usage: { total_tokens: number } }).usage;
    assert.equal(usage.total_tokens, 16);
    assert.equal(first.headers.get("x-ratelimit-limit-tokens"), "600");
    // Charged 16 at reservation; the bucket refills 10 tokens/s, so at most a couple are back already.
    const left = Number(first.headers.get("x-ratelimit-remaining-tokens"));
    assert.ok(left >= 584 && left <= 586, `remaining ${left}`);
    // A request that needs more than the whole per-minute limit can never pass: no retry hint.
    const huge = await post(KEYS.tpm, { prompt: tokenPrompt(100), max_tokens: 600 });
    assert.equal(huge.status, 429);
    assert.equal(((await huge.json()) as { error: { type: string } }).error.type, "tokens");
    assert.equal(huge.headers.get("x-should-retry"), "false");
    // After the announced reset the bucket is full again.
    const probe = await fetch(`${t.url}/v1/models`, { headers: { authorization: `Bearer ${KEYS.tpm}` } });
    const resetMs = parseDuration(probe.headers.get("x-ratelimit-reset-tokens") ?? "");
    const missing = 600 - Number(probe.headers.get("x-ratelimit-remaining-tokens"));
    // 10 tokens/s come back: the reset announced is the time the missing ones
    // take (on a slow machine the bucket may already be full again: 0 s).
    assert.ok(missing >= 0 && missing <= 16, `missing ${missing}`);
    assert.ok(Math.abs(resetMs - missing * 100) <= 110, `reset ${resetMs} ms for ${missing} missing tokens`);
    await new Promise((r) => setTimeout(r, resetMs + 50));
    const later = await fetch(`${t.url}/v1/models`, { headers: { authorization: `Bearer ${KEYS.tpm}` } });
    assert.equal(later.headers.get("x-ratelimit-remaining-tokens"), "600");
  });

  test("TPM trips at the limit: with 60 tokens/min (1 back per second), 48 taken leaves room for 12, not 20", async () => {
    const first = await post(KEYS.tpm60, { prompt: tokenPrompt(8), max_tokens: 40, ignore_eos: true });
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-ratelimit-remaining-tokens"), "12");
    await first.text();
    // One token comes back per second: 20 cannot fit unless 8 s have passed.
    const over = await post(KEYS.tpm60, { prompt: tokenPrompt(8), max_tokens: 12 });
    assert.equal(over.status, 429);
    const body = (await over.json()) as { error: { type: string; message: string } };
    assert.equal(body.error.type, "tokens");
    const used = Number(/Limit 60, Used (\d+), Requested 20/.exec(body.error.message)?.[1]);
    assert.ok(used > 40 && used <= 48, `used ${used}: 48 less what refilled since`);
    const waitMs = Number(over.headers.get("retry-after-ms"));
    assert.ok(waitMs > 0 && waitMs <= 8000, `retry-after-ms ${waitMs}: the seconds until 20 are back`);
    // 12 fits.
    const fits = await post(KEYS.tpm60, { prompt: tokenPrompt(4), max_tokens: 8, ignore_eos: true });
    assert.equal(fits.status, 200, await fits.clone().text());
    await fits.text();
  });

  test("daily budget: unused reservation is refunded, the limit trips exactly, and the SDK does not retry insufficient_quota", async () => {
    // A stop string taken from the greedy output's first characters ends the
    // generation after a token or two: far less used than the 4 + 16 reserved.
    const probe = await client(KEYS.a).completions.create({ model: t.modelId, prompt: tokenPrompt(4), max_tokens: 16, temperature: 0 });
    const stop = probe.choices[0]!.text.slice(0, 2);
    assert.equal(probe.usage?.completion_tokens, 16, "the probe runs to max_tokens, so stopping early is a real saving");
    const early = { prompt: tokenPrompt(4), max_tokens: 16, temperature: 0, stop };
    const r1 = await post(KEYS.daily, early);
    assert.equal(r1.status, 200);
    const u1 = ((await r1.json()) as { usage: { total_tokens: number } }).usage.total_tokens;
    assert.ok(u1 < 20, `used ${u1}`);
    // Only possible if the 20 - u1 unused tokens came back: 50 - u1 remain, ask for all of it.
    const exact = await post(KEYS.daily, { ...early, max_tokens: 50 - u1 - 4 });
    assert.equal(exact.status, 200, await exact.clone().text());
    const u2 = ((await exact.json()) as { usage: { total_tokens: number } }).usage.total_tokens;
    const left = 50 - u1 - u2;
    // One token more than what is left: refused, as insufficient_quota, with no retry hint.
    const over = await post(KEYS.daily, { prompt: tokenPrompt(4), max_tokens: left - 4 + 1 });
    assert.equal(over.status, 429);
    const body = (await over.json()) as { error: { type: string; code: string } };
    assert.deepEqual([body.error.type, body.error.code], ["insufficient_quota", "insufficient_quota"]);
    assert.equal(over.headers.get("retry-after"), null);
    assert.equal(over.headers.get("x-should-retry"), "false");

    const before = await metricValue("llamux_rejections_total", { tenant: "daily", reason: "insufficient_quota" });
    await assert.rejects(client(KEYS.daily, 3).completions.create({ model: t.modelId, prompt: tokenPrompt(4), max_tokens: left }), OpenAI.RateLimitError);
    const afterCount = await metricValue("llamux_rejections_total", { tenant: "daily", reason: "insufficient_quota" });
    assert.equal(afterCount - before, 1, "the SDK sent the refused request once, without retries");
  });

  test("max concurrent: a second request while one streams is a 429 queue_full; after it ends there is room again", async () => {
    const stream = await client(KEYS.conc).completions.create({ model: t.modelId, prompt: "Once", max_tokens: 200, ignore_eos: true, stream: true } as never);
    const iterator = (stream as unknown as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    await iterator.next(); // generating now
    const second = await post(KEYS.conc, { prompt: "Once", max_tokens: 1 });
    assert.equal(second.status, 429);
    assert.equal(((await second.json()) as { error: { code: string } }).error.code, "queue_full");
    assert.ok(Number(second.headers.get("retry-after")) >= 1);
    while (!(await iterator.next()).done);
    const third = await post(KEYS.conc, { prompt: "Once", max_tokens: 1 });
    assert.equal(third.status, 200);
    await third.text();
  });

  test("tenant B never gets cached tokens from tenant A's identical prompt; each reuses its own", async () => {
    const ask = (key: string) =>
      client(key).chat.completions.create({
        model: t.modelId,
        messages: [{ role: "user", content: "Once upon a time there was a little girl who loved the sea and the sky." }],
        max_tokens: 4,
        temperature: 0,
      });
    const a1 = await ask(KEYS.a);
    const a2 = await ask(KEYS.a);
    assert.equal(a1.usage?.prompt_tokens_details?.cached_tokens, 0);
    assert.ok((a2.usage?.prompt_tokens_details?.cached_tokens ?? 0) > 0, "A reuses its own prefix");
    const b1 = await ask(KEYS.b);
    assert.equal(b1.usage?.prompt_tokens_details?.cached_tokens, 0, "B must not see A's cache");
    const b2 = await ask(KEYS.b);
    assert.ok((b2.usage?.prompt_tokens_details?.cached_tokens ?? 0) > 0, "B reuses its own prefix");
    assert.ok((await metricValue("llamux_cached_tokens_total", { tenant: "b" })) > 0);
  });
});

/** OpenAI's reset durations: 1s, 6m0s, 1.5s, 20ms. */
function parseDuration(s: string): number {
  const m = /^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$/.exec(s);
  assert.ok(m && s !== "", `duration '${s}'`);
  return Number(m[1] ?? 0) * 3_600_000 + Number(m[2] ?? 0) * 60_000 + Number(m[3] ?? 0) * 1000 + Number(m[4] ?? 0);
}
