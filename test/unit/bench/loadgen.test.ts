// The load generator against a fake OpenAI-style SSE server: the subject here
// is the client's timing and accounting, not a server. The fake's behaviour is
// picked per request by the model name.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { promptFor, runLoad, runOne, type LoadOptions } from "../../../bench/loadgen.js";

const CHUNK_DELAY_MS = 5;
let server: http.Server;
let url: string;
let inFlight = 0;
let maxInFlight = 0;
const seen: Array<{ path: string; body: Record<string, unknown>; auth: string | undefined }> = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sse = (res: http.ServerResponse, data: unknown) => res.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);

async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  let raw = "";
  for await (const d of req) raw += (d as Buffer).toString();
  const body = JSON.parse(raw) as { model: string; max_tokens: number };
  seen.push({ path: req.url ?? "", body, auth: req.headers.authorization });
  const mode = body.model;
  if (mode === "fail-500") {
    res.writeHead(500, { "content-type": "application/json" }).end('{"error":{"message":"boom"}}');
    return;
  }
  inFlight++;
  maxInFlight = Math.max(maxInFlight, inFlight);
  try {
    res.writeHead(200, { "content-type": "text/event-stream" });
    if (mode === "hang") {
      await new Promise((r) => res.on("close", r)); // until the client gives up
      return;
    }
    const chat = req.url === "/v1/chat/completions";
    if (chat) sse(res, { choices: [{ index: 0, delta: { role: "assistant", content: "" } }] }); // role-only: not a token
    for (let i = 0; i < body.max_tokens; i++) {
      await sleep(CHUNK_DELAY_MS);
      if (mode === "sse-error" && i === 2) {
        sse(res, { error: { message: "model crashed" } });
        res.end();
        return;
      }
      sse(res, { choices: [{ index: 0, ...(chat ? { delta: { content: `t${i} ` } } : { text: `t${i} ` }), finish_reason: null }] });
    }
    if (mode !== "no-usage") sse(res, { choices: [], usage: { prompt_tokens: 32, completion_tokens: body.max_tokens } });
    res.end("data: [DONE]\n\n");
  } finally {
    inFlight--;
  }
}

before(async () => {
  server = http.createServer((req, res) => void handle(req, res).catch((err) => res.destroy(err as Error)));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

const base = (over: Partial<LoadOptions> = {}): LoadOptions => ({
  url,
  model: "ok",
  concurrency: 1,
  requests: 1,
  promptTokens: 32,
  maxTokens: 6,
  endpoint: "completions",
  ignoreEos: true,
  timeoutMs: 10_000,
  ...over,
});

test("keeps exactly `concurrency` requests in flight and accounts every token", async () => {
  maxInFlight = 0;
  const r = await runLoad(base({ concurrency: 3, requests: 7 }));
  assert.equal(maxInFlight, 3);
  assert.equal(r.concurrency, 3);
  assert.equal(r.requests, 7);
  assert.equal(r.completed, 7);
  assert.equal(r.errors, 0);
  assert.equal(r.outputTokens, 42);
  assert.equal(r.promptTokensMedian, 32);
  assert.ok(r.ttftMs.p50 > 0 && r.ttftMs.p50 < r.e2eMs.p50 && r.ttftMs.p99 < r.e2eMs.p99, `TTFT ${JSON.stringify(r.ttftMs)} vs E2E ${JSON.stringify(r.e2eMs)}`);
  // Loose bounds on purpose: a busy client may read two chunks in one go, so
  // single gaps can be ~0; the server's sleeps bound the totals instead.
  assert.ok(Number.isFinite(r.itlMs.p99) && r.itlMs.mean > 0, `ITL ${JSON.stringify(r.itlMs)}`);
  assert.ok(r.tpotMs.p50 > 0, `TPOT ${r.tpotMs.p50}`);
  // 7 requests of 6 × 5 ms, 3 at a time: at least 3 waves.
  assert.ok(r.wallSeconds >= (3 * 6 * CHUNK_DELAY_MS) / 1000, `wall ${r.wallSeconds}`);
  assert.ok(Math.abs(r.outputTokensPerSecond - 42 / r.wallSeconds) < 1e-9);
});

test("concurrency above the request count sends each request once", async () => {
  maxInFlight = 0;
  seen.length = 0;
  const r = await runLoad(base({ concurrency: 8, requests: 2 }));
  assert.equal(r.completed, 2);
  assert.equal(seen.length, 2);
  assert.equal(maxInFlight, 2);
});

test("firstIndex picks the prompts: consecutive runs from consecutive indices send no prompt twice", async () => {
  seen.length = 0;
  await runLoad(base({ concurrency: 2, requests: 3, firstIndex: 500 }));
  await runLoad(base({ concurrency: 2, requests: 3, firstIndex: 503 }));
  const prompts = seen.map((s) => s.body.prompt);
  assert.equal(new Set(prompts).size, 6);
  assert.deepEqual(new Set(prompts), new Set([500, 501, 502, 503, 504, 505].map((i) => promptFor(i, 32))));
});

test("one request: a timestamp per content chunk, TTFT before the end", async () => {
  const s = await runOne(base(), 0);
  assert.equal(s.ok, true);
  assert.equal(s.outputTokens, 6);
  assert.equal(s.itlMs.length, 5);
  assert.ok(s.itlMs.every((gap) => gap >= 0));
  assert.ok(s.ttftMs > 0 && s.ttftMs < s.e2eMs);
});

test("chat streams deltas to /v1/chat/completions; role-only deltas are not tokens; the API key is sent", async () => {
  seen.length = 0;
  const s = await runOne(base({ endpoint: "chat", model: "no-usage", apiKey: "sk-test", maxTokens: 4 }), 3);
  assert.equal(s.ok, true);
  assert.equal(s.outputTokens, 4); // no usage chunk: counted from content chunks
  assert.equal(s.promptTokens, null);
  assert.equal(seen[0]!.path, "/v1/chat/completions");
  assert.equal(seen[0]!.auth, "Bearer sk-test");
  assert.equal(seen[0]!.body.ignore_eos, true);
  assert.deepEqual(seen[0]!.body.stream_options, { include_usage: true });
});

test("an HTTP 500 is counted as an error, not thrown", async () => {
  const r = await runLoad(base({ model: "fail-500", concurrency: 2, requests: 3 }));
  assert.equal(r.errors, 3);
  assert.equal(r.completed, 0);
  assert.equal(r.outputTokens, 0);
  assert.match(r.errorSamples[0]!, /HTTP 500.*boom/);
});

test("an error frame in the stream fails the request", async () => {
  const r = await runLoad(base({ model: "sse-error", requests: 2 }));
  assert.equal(r.errors, 2);
  assert.deepEqual(r.errorSamples, ["SSE error: model crashed"]);
});

test("an unreachable server is an error per request", async () => {
  // A port that was free a moment ago: nothing listens there now.
  const probe = http.createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((r) => probe.close(() => r()));
  const r = await runLoad(base({ url: `http://127.0.0.1:${port}`, requests: 2 }));
  assert.equal(r.errors, 2);
  assert.match(r.errorSamples[0]!, /ECONNREFUSED/);
});

test("a request that outlives timeoutMs is an error", async () => {
  const started = performance.now();
  const r = await runLoad(base({ model: "hang", timeoutMs: 100 }));
  assert.equal(r.errors, 1);
  assert.match(r.errorSamples[0]!, /timed out after 100 ms/);
  assert.ok(performance.now() - started < 5_000);
});

test("aborting the signal ends requests in flight and sends no more", async () => {
  seen.length = 0;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 100);
  try {
    const r = await runLoad(base({ model: "hang", concurrency: 2, requests: 10, signal: abort.signal }));
    assert.equal(r.requests, 2);
    assert.equal(r.errors, 2);
    assert.deepEqual(r.errorSamples, ["aborted"]);
    assert.equal(seen.length, 2);
  } finally {
    clearTimeout(timer);
  }
});
