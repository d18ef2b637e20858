// Slow, silent and oversized clients, with raw sockets: a head trickled byte
// by byte is cut by --headers-timeout-ms, a body trickled after a complete head
// by --request-timeout-ms (Node answers 408 and closes), an over-16 KiB head
// gets 431 and a close, and hundreds of idle sockets neither stop a normal
// request nor live forever. The same deadlines never cut a response: a
// request waiting for a slot or a stream may outlast them.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { createParser } from "eventsource-parser";
import { MODELS, startTestServer, waitFor, type TestServer } from "../helpers/server.js";

const HEADERS_TIMEOUT_MS = 1000;
const REQUEST_TIMEOUT_MS = 1500;
const ARGS = [
  "--model",
  MODELS.stories260K,
  "--slots",
  "1",
  "--ctx-per-slot",
  "16384",
  "--headers-timeout-ms",
  String(HEADERS_TIMEOUT_MS),
  "--request-timeout-ms",
  String(REQUEST_TIMEOUT_MS),
  "--keep-alive-timeout-ms",
  "500",
];
// Ample time for the server to act on any deadline above; a hang fails the test instead of blocking it.
const CLOSE_WITHIN_MS = 20_000;

interface Raw {
  socket: net.Socket;
  /** Everything the server sent. */
  received(): string;
  /** Resolves when the connection is closed, by either side. */
  closed: Promise<void>;
  isClosed(): boolean;
}

function connect(url: string): Promise<Raw> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let data = "";
    let closedFlag = false;
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => (data += d));
    socket.on("error", () => undefined); // a reset shows as a close
    const closed = new Promise<void>((r) => socket.once("close", () => ((closedFlag = true), r())));
    socket.once("connect", () => resolve({ socket, received: () => data, closed, isClosed: () => closedFlag }));
    socket.once("error", reject);
  });
}

/** Writes `text` one byte every `everyMs` until it is all sent or the socket closes; resolves whether it was all sent. */
async function trickle(raw: Raw, text: string, everyMs: number): Promise<boolean> {
  for (const ch of text) {
    if (raw.isClosed()) return false;
    raw.socket.write(ch);
    await Promise.race([new Promise((r) => setTimeout(r, everyMs)), raw.closed]);
  }
  return !raw.isClosed();
}

async function closedWithin(raw: Raw, ms: number, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<"expired">((r) => (timer = setTimeout(() => r("expired"), ms)));
  const outcome = await Promise.race([raw.closed.then(() => "closed" as const), expired]);
  clearTimeout(timer);
  assert.equal(outcome, "closed", `${what}: the server did not close the connection`);
}

let t: TestServer;
before(async () => {
  t = await startTestServer(ARGS);
});
after(async () => {
  await t?.close();
});

describe("connection deadlines", () => {
  test("a request head sent one byte at a time is cut by the headers timeout with 408", async () => {
    const raw = await connect(t.url);
    try {
      const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nX-Slow: ${"a".repeat(400)}\r\n\r\n`;
      // 250 ms a byte: the whole head would take about two minutes.
      const sentAll = await trickle(raw, head, 250);
      assert.equal(sentAll, false, "the server closed the connection before the head was complete");
      await closedWithin(raw, CLOSE_WITHIN_MS, "slow head");
      assert.match(raw.received(), /^HTTP\/1\.1 408 Request Timeout\r\n/);
      assert.match(raw.received(), /connection: close/i);
    } finally {
      raw.socket.destroy();
    }
  });

  test("a complete head followed by a body trickled one byte at a time is cut by the request timeout with 408", async () => {
    const raw = await connect(t.url);
    try {
      const body = JSON.stringify({ model: "stories260K", messages: [{ role: "user", content: "x".repeat(400) }], max_tokens: 1 });
      raw.socket.write(
        `POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`,
      );
      const startedAt = Date.now();
      const sentAll = await trickle(raw, body, 250);
      assert.equal(sentAll, false, "the server closed the connection before the body was complete");
      await closedWithin(raw, CLOSE_WITHIN_MS, "slow body");
      assert.ok(Date.now() - startedAt >= HEADERS_TIMEOUT_MS, "the head arrived in time: it was the whole-request deadline that cut it");
      assert.match(raw.received(), /^HTTP\/1\.1 408 Request Timeout\r\n/);
    } finally {
      raw.socket.destroy();
    }
  });

  test("a request head over 16 KiB gets 431 and the connection is closed", async () => {
    const raw = await connect(t.url);
    try {
      raw.socket.write(`GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: ${"a".repeat(20 * 1024)}\r\n\r\n`);
      await closedWithin(raw, CLOSE_WITHIN_MS, "oversized head");
      assert.match(raw.received(), /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
      assert.match(raw.received(), /connection: close/i);
    } finally {
      raw.socket.destroy();
    }
  });

  test("an idle keep-alive connection is closed after the keep-alive timeout", async () => {
    const raw = await connect(t.url);
    try {
      raw.socket.write("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
      await waitFor(() => raw.received().includes('{"status":"ok"}'), 10_000, "the /health response");
      assert.match(raw.received(), /connection: keep-alive/i);
      await closedWithin(raw, CLOSE_WITHIN_MS, "idle keep-alive connection");
      assert.doesNotMatch(raw.received(), /408/, "it was idle between requests, not mid-request");
    } finally {
      raw.socket.destroy();
    }
  });
});

describe("idle sockets", () => {
  // Its own server with a head deadline long enough that the sockets are
  // certainly all still open while the request is served.
  let idleServer: TestServer;
  before(async () => {
    idleServer = await startTestServer(["--model", MODELS.stories260K, "--slots", "1", "--headers-timeout-ms", "5000"]);
  });
  after(async () => {
    await idleServer?.close();
  });

  test("500 idle sockets do not stop a normal request, and are closed by the headers timeout", async () => {
    const idle: Raw[] = [];
    try {
      idle.push(...(await Promise.all(Array.from({ length: 500 }, () => connect(idleServer.url)))));
      const res = await fetch(`${idleServer.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 2 }),
      });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      assert.ok(
        idle.every((r) => !r.isClosed()),
        "the idle sockets were all open while the request was served",
      );
      await Promise.all(idle.map((r) => closedWithin(r, CLOSE_WITHIN_MS, "idle socket")));
      assert.ok(
        idle.every((r) => /^HTTP\/1\.1 408 /.test(r.received())),
        "each was closed by the server with 408",
      );
    } finally {
      for (const r of idle.reverse()) r.socket.destroy();
    }
  });
});

describe("responses are not limited by the request deadlines", () => {
  test("a stream, and a request waiting for the slot, both outlast the request timeout", async () => {
    const streamAbort = new AbortController();
    const waiterAbort = new AbortController();
    try {
      const res = await fetch(`${t.url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "stories260K", prompt: "Once", max_tokens: 16_000, ignore_eos: true, stream: true }),
        signal: streamAbort.signal,
      });
      assert.equal(res.status, 200);
      const startedAt = Date.now();
      // Holds the only slot, so this one waits, with nothing sent, past the deadline.
      const waiting = fetch(`${t.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "stories260K", messages: [{ role: "user", content: "Hi" }], max_tokens: 2 }),
        signal: waiterAbort.signal,
      });
      let framesAfterDeadline = 0;
      let sawDone = false;
      const parser = createParser({
        onEvent: (e) => {
          if (e.data === "[DONE]") sawDone = true;
          if (Date.now() - startedAt > REQUEST_TIMEOUT_MS + 1000) framesAfterDeadline++;
        },
      });
      const decoder = new TextDecoder();
      const reader = res.body!.getReader();
      while (framesAfterDeadline < 5) {
        const { value, done } = await reader.read();
        assert.equal(done, false, "the stream ran on");
        parser.feed(decoder.decode(value, { stream: true }));
      }
      assert.equal(sawDone, false, "the stream was still running past the deadline");
      await reader.cancel();
      const served = await waiting;
      assert.equal(served.status, 200, "the request that waited past the deadline was served");
      await served.arrayBuffer();
    } finally {
      waiterAbort.abort();
      streamAbort.abort();
    }
  });
});
