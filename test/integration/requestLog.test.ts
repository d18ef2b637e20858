// Request ids and access logs: x-request-id on every response (the client's own
// when sane, else a generated one), one structured log line per request, and
// prompts kept out of the logs unless --log-content asks for them.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { pino } from "pino";
import { MODELS, startTestServer, waitFor, type TestServer } from "./helpers/server.js";

type LogLine = Record<string, unknown> & { msg: string; level: number };

/** A debug-level pino logger whose lines are kept in memory, parsed. */
function memoryLogger(): { log: pino.Logger; lines: LogLine[]; text: () => string } {
  const raw: string[] = [];
  const lines: LogLine[] = [];
  const log = pino(
    { level: "debug" },
    {
      write(s: string) {
        raw.push(s);
        lines.push(JSON.parse(s) as LogLine);
      },
    },
  );
  return { log, lines, text: () => raw.join("") };
}

async function accessLine(lines: LogLine[], requestId: string): Promise<LogLine> {
  await waitFor(() => lines.some((l) => l.msg === "request" && l.requestId === requestId), 5000, `the log line of ${requestId}`);
  const found = lines.filter((l) => l.msg === "request" && l.requestId === requestId);
  assert.equal(found.length, 1, "exactly one access log line per request");
  return found[0]!;
}

const GENERATED = /^req_[0-9a-f]{32}$/;
const SECRET_PROMPT = "purple-elephant-4417 tells a story";

describe("request ids and access logs (content off)", () => {
  let t: TestServer;
  const mem = memoryLogger();
  before(async () => {
    t = await startTestServer(["--model", MODELS.stories260K, "--slots", "2", "--ctx-per-slot", "256"], { log: mem.log });
  });
  after(async () => {
    await t?.close();
  });

  test("a sane client x-request-id is echoed; a missing or unsafe one is replaced by a generated one", async () => {
    const own = await fetch(`${t.url}/v1/models`, { headers: { "x-request-id": "client-42.a:b_c" } });
    assert.equal(own.headers.get("x-request-id"), "client-42.a:b_c");
    for (const bad of [undefined, "has spaces", "x".repeat(129), "semi;colon"]) {
      const res = await fetch(`${t.url}/v1/models`, { headers: bad === undefined ? {} : { "x-request-id": bad } });
      assert.match(res.headers.get("x-request-id") ?? "", GENERATED, `for ${String(bad)}`);
    }
    const a = (await fetch(`${t.url}/health`)).headers.get("x-request-id");
    const b = (await fetch(`${t.url}/health`)).headers.get("x-request-id");
    assert.notEqual(a, b);
  });

  test("errors carry it too: 404, 400 (seen by the openai client), 413", async () => {
    const notFound = await fetch(`${t.url}/v1/nope`, { headers: { "x-request-id": "nf-1" } });
    assert.equal(notFound.status, 404);
    assert.equal(notFound.headers.get("x-request-id"), "nf-1");
    const err = await t.client.chat.completions.create({ model: t.modelId, messages: [], max_tokens: 2 }).catch((e: unknown) => e);
    assert.ok(err instanceof OpenAI.BadRequestError, String(err));
    assert.match(err.requestID ?? "", GENERATED);
    const line = await accessLine(mem.lines, err.requestID!);
    assert.equal(line.status, 400);
    assert.equal(line.path, "/v1/chat/completions");
    const badJson = await fetch(`${t.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: "{" });
    assert.equal(badJson.status, 400);
    assert.match(badJson.headers.get("x-request-id") ?? "", GENERATED);
  });

  test("a chat completion logs one line with ids, usage, timings and no content", async () => {
    const { data, request_id } = await t.client.chat.completions
      .create({ model: t.modelId, messages: [{ role: "user", content: SECRET_PROMPT }], max_tokens: 5, ignore_eos: true } as never)
      .withResponse();
    const completion = data as unknown as OpenAI.ChatCompletion;
    assert.match(request_id ?? "", GENERATED);
    const line = await accessLine(mem.lines, request_id!);
    assert.equal(line.method, "POST");
    assert.equal(line.path, "/v1/chat/completions");
    assert.equal(line.status, 200);
    assert.equal(line.tenant, "default");
    assert.equal(line.model, t.modelId);
    assert.equal(line.promptTokens, completion.usage!.prompt_tokens);
    assert.equal(line.completionTokens, 5);
    assert.equal(typeof line.cachedTokens, "number");
    assert.equal(typeof line.queueMs, "number");
    assert.equal(typeof line.ttftMs, "number");
    assert.equal(typeof line.durationMs, "number");
    assert.ok((line.ttftMs as number) <= (line.durationMs as number));
    assert.equal(line.clientDisconnected, false);
    assert.ok(!mem.text().includes("purple-elephant"), "the prompt must not be logged by default");
  });

  test("a stream's line has its first-byte time before its end; a client that leaves is logged as disconnected", async () => {
    const ac = new AbortController();
    const stream = await t.client.chat.completions
      .create({ model: t.modelId, messages: [{ role: "user", content: "go" }], max_tokens: 200, ignore_eos: true, stream: true } as never, {
        signal: ac.signal,
      })
      .withResponse();
    let chunks = 0;
    try {
      for await (const _ of stream.data as unknown as AsyncIterable<unknown>) {
        if (++chunks === 3) ac.abort();
      }
    } catch {
      // the SDK throws on abort
    }
    const line = await accessLine(mem.lines, stream.request_id!);
    assert.equal(line.clientDisconnected, true);
    assert.equal(line.status, 200);
    assert.ok((line.ttftMs as number) < (line.durationMs as number));
  });

  test("a client-chosen id names the log line", async () => {
    await fetch(`${t.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "trace:7" },
      body: JSON.stringify({ model: t.modelId, prompt: SECRET_PROMPT, max_tokens: 2 }),
    });
    const line = await accessLine(mem.lines, "trace:7");
    assert.equal(line.path, "/v1/completions");
    assert.equal(line.status, 200);
    assert.equal(line.completionTokens, 2);
    assert.ok(!mem.text().includes("purple-elephant"));
  });
});

describe("access logs with --log-content", () => {
  let t: TestServer;
  const mem = memoryLogger();
  before(async () => {
    t = await startTestServer(["--model", MODELS.stories260K, "--slots", "1", "--ctx-per-slot", "256", "--log-content"], { log: mem.log });
  });
  after(async () => {
    await t?.close();
  });

  test("the request's messages and prompt are logged at debug level, apart from the access line", async () => {
    const chat = await t.client.chat.completions
      .create({ model: t.modelId, messages: [{ role: "user", content: SECRET_PROMPT }], max_tokens: 2 })
      .withResponse();
    const access = await accessLine(mem.lines, chat.request_id!);
    assert.ok(!JSON.stringify(access).includes("purple-elephant"), "the access line itself never holds content");
    await waitFor(() => mem.lines.some((l) => l.msg === "request content" && l.requestId === chat.request_id), 5000, "the content line");
    const content = mem.lines.find((l) => l.msg === "request content" && l.requestId === chat.request_id)!;
    assert.equal(content.level, 20, "debug");
    assert.deepEqual(content.messages, [{ role: "user", content: SECRET_PROMPT }]);

    const completion = await t.client.completions.create({ model: t.modelId, prompt: SECRET_PROMPT, max_tokens: 2 }).withResponse();
    await waitFor(() => mem.lines.some((l) => l.msg === "request content" && l.requestId === completion.request_id), 5000, "the content line");
    assert.equal(mem.lines.find((l) => l.msg === "request content" && l.requestId === completion.request_id)!.prompt, SECRET_PROMPT);
  });
});
