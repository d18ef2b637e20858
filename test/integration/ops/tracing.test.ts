// OpenTelemetry traces, received by a real OTLP/HTTP endpoint on loopback
// started by this test: a chat completion sent with a W3C traceparent leaves
// the front's SERVER span (continuing the caller's trace, GenAI attributes
// equal to the usage the client got) and the engine worker's spans for the
// same request under it (waiting for a slot, reading the prompt, decoding),
// exported by the worker process itself; its authentication and quota
// decision are child spans of the front's (tenant and key ids, never the key);
// a KV state saved and restored for a request are worker spans under its
// span; the access log line carries the trace id; and an engine restart is a
// span of its own.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { pino } from "pino";
import { hashApiKey } from "../../../src/tenants/keys.js";
import { MODELS, startTestServer, waitFor, type TestServer } from "../helpers/server.js";

const KEY = "lmx-traceTraceTraceTraceTraceTraceTrace0001";
// Long enough to be worth saving (kvIndex.ts: MIN_SAVED_TOKENS) in this model's tokens.
const A =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun with her friends and her dog Max. " +
  "One day Lily and Max went to the big park near her house, and they played with a red ball until the sun went down.";
const B =
  "Tom had a big red ball. He liked to kick it high in the sky, and every day he ran to the park to play with it. " +
  "The cat sat on the mat and looked at the bird in the tree. The bird sang a song, and the cat fell asleep in the warm sun.";

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  arrayValue?: { values: OtlpValue[] };
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: Array<{ key: string; value: OtlpValue }>;
}
interface OtlpSpanStatus {
  code?: number;
}
interface Received {
  resource: Record<string, unknown>;
  span: OtlpSpan & { status?: OtlpSpanStatus };
}

const SPAN_KIND_SERVER = 2;
const STATUS_ERROR = 2;
let dir: string;
const received: Received[] = [];
let receiver: http.Server;
let t: TestServer;
const logLines: Array<Record<string, unknown>> = [];
const savedEnv = { ...process.env };

function plain(v: OtlpValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.arrayValue) return v.arrayValue.values.map(plain);
  return undefined;
}
const ns = (s: OtlpSpan, k: "startTimeUnixNano" | "endTimeUnixNano") => BigInt(s[k]);
const attrs = (s: OtlpSpan) => Object.fromEntries(s.attributes.map((a) => [a.key, plain(a.value)]));

before(async () => {
  receiver = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      if (req.url === "/v1/traces") {
        const doc = JSON.parse(body) as {
          resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: OtlpValue }> }; scopeSpans: Array<{ spans: OtlpSpan[] }> }>;
        };
        for (const rs of doc.resourceSpans) {
          const resource = Object.fromEntries(rs.resource.attributes.map((a) => [a.key, plain(a.value)]));
          for (const ss of rs.scopeSpans) for (const span of ss.spans) received.push({ resource, span });
        }
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  // The standard variables, read by the front and inherited by the worker.
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  process.env.OTEL_BSP_SCHEDULE_DELAY = "50";
  const log = pino({ level: "info" }, { write: (s: string) => void logLines.push(JSON.parse(s) as Record<string, unknown>) });
  // One tenant (its key authenticates every request), and one slot, so that a
  // second conversation saves the first's KV state and its continuation restores it.
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "llamux-tracing-test-"));
  const tenants = path.join(dir, "tenants.yaml");
  fs.writeFileSync(tenants, `tenants:\n  - id: acme\n    keys: ["${hashApiKey(KEY)}"]\n`);
  t = await startTestServer(["--model", MODELS.tinyStories656K, "--slots", "1", "--ctx-per-slot", "256", "--threads", "1", "--tenants", tenants], {
    log,
    apiKey: KEY,
  });
});
after(async () => {
  await t?.close();
  await new Promise((r) => receiver?.close(r));
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  process.env = savedEnv;
});

/** A client whose requests continue a fresh trace of their own; its trace id. */
function tracedClient(apiKey = KEY): { client: OpenAI; traceId: string; callerSpan: string } {
  const traceId = randomBytes(16).toString("hex");
  const callerSpan = randomBytes(8).toString("hex");
  return {
    client: new OpenAI({ baseURL: `${t.url}/v1`, apiKey, maxRetries: 0, defaultHeaders: { traceparent: `00-${traceId}-${callerSpan}-01` } }),
    traceId,
    callerSpan,
  };
}
const ofTrace = (traceId: string) => received.filter((x) => x.span.traceId === traceId);
const serverSpan = (traceId: string) => ofTrace(traceId).find((x) => x.span.kind === SPAN_KIND_SERVER)?.span;
const named = (traceId: string, name: string) => ofTrace(traceId).filter((x) => x.span.name === name);

describe("OpenTelemetry tracing", () => {
  test("a request's front and worker spans share the caller's trace, with GenAI attributes equal to the usage returned", async () => {
    const { client, traceId, callerSpan } = tracedClient();
    const r = await client.chat.completions.create({
      model: t.modelId,
      messages: [{ role: "user", content: "Once upon a time" }],
      max_tokens: 6,
      temperature: 0,
    });
    const usage = r.usage!;
    await waitFor(() => named(traceId, "llamux.engine.decode").length > 0 && serverSpan(traceId) !== undefined, 15_000, "the trace's spans");

    const server = ofTrace(traceId).find((x) => x.span.kind === SPAN_KIND_SERVER)!;
    assert.equal(server.span.name, "POST /v1/chat/completions");
    assert.equal(server.span.parentSpanId, callerSpan, "the SERVER span continues the caller's traceparent");
    assert.equal(server.resource["llamux.component"], "front");
    const a = attrs(server.span);
    assert.equal(a["gen_ai.operation.name"], "chat");
    assert.equal(a["gen_ai.request.model"], t.modelId);
    assert.equal(a["gen_ai.response.model"], t.modelId);
    assert.equal(a["gen_ai.request.max_tokens"], 6);
    assert.equal(a["gen_ai.usage.input_tokens"], usage.prompt_tokens);
    assert.equal(a["gen_ai.usage.output_tokens"], usage.completion_tokens);
    assert.equal(a["gen_ai.usage.cache_read.input_tokens"], usage.prompt_tokens_details?.cached_tokens ?? 0);
    assert.deepEqual(a["gen_ai.response.finish_reasons"], [r.choices[0]!.finish_reason]);
    assert.equal(a["http.response.status_code"], 200);

    // Authentication and the quota's decision: children of the front's span.
    const [auth] = named(traceId, "llamux.authenticate");
    const [quota] = named(traceId, "llamux.quota.reserve");
    assert.ok(auth && quota, "an authentication span and a quota span");
    for (const c of [auth, quota]) {
      assert.equal(c.span.parentSpanId, server.span.spanId, `${c.span.name} is a child of the request's span`);
      assert.equal(c.resource["llamux.component"], "front");
      assert.equal(attrs(c.span)["llamux.tenant.id"], "acme");
    }
    assert.equal(attrs(auth.span)["llamux.auth.result"], "ok");
    assert.match(String(attrs(auth.span)["llamux.api_key.id"]), /\S/, "the key's id");
    assert.equal(attrs(quota.span)["llamux.quota.decision"], "admitted");
    assert.ok(ns(auth.span, "endTimeUnixNano") <= ns(quota.span, "startTimeUnixNano"), "authenticated before the quota is asked");

    const engine = ofTrace(traceId).filter((x) => x.resource["llamux.component"] === "engine");
    assert.deepEqual(
      engine.map((x) => x.span.name).sort(),
      ["llamux.engine.decode", "llamux.engine.prefill", "llamux.engine.wait_for_slot"],
      "no KV save or restore: the slot was empty",
    );
    for (const e of engine) assert.equal(e.span.parentSpanId, server.span.spanId, `${e.span.name} is a child of the front's span, across the process boundary`);
    const byName = Object.fromEntries(engine.map((e) => [e.span.name, e.span]));
    assert.equal(attrs(byName["llamux.engine.prefill"]!)["gen_ai.usage.input_tokens"], usage.prompt_tokens);
    assert.equal(attrs(byName["llamux.engine.decode"]!)["gen_ai.usage.output_tokens"], usage.completion_tokens);
    // The phases follow each other within the front's span.
    assert.ok(ns(byName["llamux.engine.wait_for_slot"]!, "endTimeUnixNano") <= ns(byName["llamux.engine.prefill"]!, "startTimeUnixNano") + 1_000_000n);
    assert.ok(ns(byName["llamux.engine.prefill"]!, "endTimeUnixNano") <= ns(byName["llamux.engine.decode"]!, "startTimeUnixNano") + 1_000_000n);
    assert.ok(ns(server.span, "startTimeUnixNano") <= ns(byName["llamux.engine.wait_for_slot"]!, "startTimeUnixNano") + 5_000_000n);

    await waitFor(() => logLines.some((l) => l.msg === "request" && l.traceId === traceId), 5000, "the access log line");
  });

  test("a refused key is an authentication span with the reason and an error status, and the key appears in no span", async () => {
    const wrong = "lmx-wrongWrongWrongWrongWrongWrongWrong0009";
    const { client, traceId } = tracedClient(wrong);
    await assert.rejects(
      client.chat.completions.create({ model: t.modelId, messages: [{ role: "user", content: "Hi" }], max_tokens: 2 }),
      OpenAI.AuthenticationError,
    );
    await waitFor(() => named(traceId, "llamux.authenticate").length > 0 && serverSpan(traceId) !== undefined, 15_000, "the refused request's spans");
    const [auth] = named(traceId, "llamux.authenticate");
    assert.equal(auth!.span.parentSpanId, serverSpan(traceId)!.spanId);
    assert.equal(attrs(auth!.span)["llamux.auth.result"], "incorrect");
    assert.equal(auth!.span.status?.code, STATUS_ERROR);
    assert.equal(attrs(auth!.span)["llamux.tenant.id"], undefined);
    assert.deepEqual(named(traceId, "llamux.quota.reserve"), [], "a refused request never reaches the quota");
    assert.equal(attrs(serverSpan(traceId)!)["http.response.status_code"], 401);
    const everything = JSON.stringify(received);
    for (const secret of [wrong, KEY]) assert.ok(!everything.includes(secret), "no span carries a key");
  });

  test("a KV state saved for one request and restored for another: worker spans under each request's span, with bytes and tokens", async () => {
    const complete = async (c: OpenAI, prompt: string) => c.completions.create({ model: t.modelId, prompt, max_tokens: 8, temperature: 0 });
    const first = await complete(t.client, A);
    // B takes A's only slot: A's state is written out first, for B's admission.
    const b = tracedClient();
    await complete(b.client, B);
    // A's continuation is served from A's saved state.
    const c = tracedClient();
    const cont = await complete(c.client, `${A}${first.choices[0]!.text} Then`);
    await waitFor(
      () =>
        named(b.traceId, "llamux.engine.decode").length > 0 &&
        named(c.traceId, "llamux.engine.decode").length > 0 &&
        !!serverSpan(b.traceId) &&
        !!serverSpan(c.traceId),
      15_000,
      "both traces",
    );

    const [save] = named(b.traceId, "llamux.engine.kv_save");
    assert.ok(save, "B's trace has the save of A's state");
    assert.equal(save.resource["llamux.component"], "engine");
    assert.equal(save.span.parentSpanId, serverSpan(b.traceId)!.spanId, "the save is a child of B's span, across the process boundary");
    const sa = attrs(save.span);
    assert.equal(sa["llamux.kv.saved"], true);
    assert.ok(Number(sa["llamux.kv.state.bytes"]) > 0);
    // A's prompt and its completion, but for the last token sampled (never evaluated into the cache).
    const savedTokens = Number(sa["llamux.kv.state.tokens"]);
    assert.ok(
      savedTokens >= first.usage!.prompt_tokens && savedTokens <= first.usage!.prompt_tokens + first.usage!.completion_tokens,
      `${savedTokens} tokens saved`,
    );

    const [restore] = named(c.traceId, "llamux.engine.kv_restore");
    assert.ok(restore, "the continuation's trace has the restore");
    assert.equal(restore.span.parentSpanId, serverSpan(c.traceId)!.spanId);
    const ra = attrs(restore.span);
    assert.equal(ra["llamux.kv.restored"], true);
    assert.equal(ra["llamux.kv.state.bytes"], sa["llamux.kv.state.bytes"], "the state restored is the one saved");
    assert.equal(ra["llamux.kv.state.tokens"], sa["llamux.kv.state.tokens"]);
    // What the restore brought back is what the continuation reports as cached.
    const cached = cont.usage!.prompt_tokens_details!.cached_tokens!;
    assert.ok(cached > 0 && cached <= Number(ra["llamux.kv.state.tokens"]));
    assert.equal(attrs(named(c.traceId, "llamux.engine.prefill")[0]!.span)["gen_ai.usage.cache_read.input_tokens"], cached);
    // The restore happens at admission: after the wait for a slot began, before decoding.
    const decode = named(c.traceId, "llamux.engine.decode")[0]!.span;
    assert.ok(ns(restore.span, "endTimeUnixNano") <= ns(decode, "startTimeUnixNano") + 5_000_000n);
  });

  test("without a traceparent a request starts its own trace; a route nobody knows is named by its template, not its path", async () => {
    const before = received.length;
    await fetch(`${t.url}/no-such-thing/${"x".repeat(40)}`);
    await waitFor(() => received.slice(before).some((x) => x.span.kind === SPAN_KIND_SERVER), 10_000, "the span");
    const span = received.slice(before).find((x) => x.span.kind === SPAN_KIND_SERVER)!.span;
    assert.equal(span.parentSpanId ?? "", "");
    assert.equal(span.name, "GET other");
    assert.equal(attrs(span)["http.response.status_code"], 404);
  });

  test("an engine restart is a span", async () => {
    const before = received.length;
    // TinyStories-656K aborts natively on '#' (shared/models/SOURCES.md).
    await client404Safe(() => t.client.completions.create({ model: t.modelId, prompt: "# crash", max_tokens: 2 }));
    await waitFor(() => received.slice(before).some((x) => x.span.name === "llamux.engine.restart"), 15_000, "the restart span");
    await waitFor(async () => (await fetch(`${t.url}/ready`)).status === 200, 30_000, "the engine to come back");
  });
});

async function client404Safe(f: () => Promise<unknown>): Promise<void> {
  await f().catch(() => undefined);
}
