// OpenTelemetry traces, received by a real OTLP/HTTP endpoint on loopback
// started by this test: a chat completion sent with a W3C traceparent leaves
// the front's SERVER span (continuing the caller's trace, GenAI attributes
// equal to the usage the client got) and the engine worker's spans for the
// same request under it (waiting for a slot, reading the prompt, decoding),
// exported by the worker process itself; the access log line carries the
// trace id; and an engine restart is a span of its own.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import { pino } from "pino";
import { MODELS, startTestServer, waitFor, type TestServer } from "../helpers/server.js";

interface OtlpValue { stringValue?: string; intValue?: string | number; boolValue?: boolean; arrayValue?: { values: OtlpValue[] } }
interface OtlpSpan { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; startTimeUnixNano: string; endTimeUnixNano: string; attributes: Array<{ key: string; value: OtlpValue }> }
interface Received { resource: Record<string, unknown>; span: OtlpSpan }

const SPAN_KIND_SERVER = 2;
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
const attrs = (s: OtlpSpan) => Object.fromEntries(s.attributes.map((a) => [a.key, plain(a.value)]));

before(async () => {
  receiver = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      if (req.url === "/v1/traces") {
        const doc = JSON.parse(body) as { resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: OtlpValue }> }; scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
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
  t = await startTestServer(["--model", MODELS.tinyStories656K, "--slots", "2", "--ctx-per-slot", "256", "--threads", "1"], { log });
});
after(async () => {
  await t?.close();
  await new Promise((r) => receiver?.close(r));
  process.env = savedEnv;
});

describe("OpenTelemetry tracing", () => {
  test("a request's front and worker spans share the caller's trace, with GenAI attributes equal to the usage returned", async () => {
    const traceId = randomBytes(16).toString("hex");
    const callerSpan = randomBytes(8).toString("hex");
    const client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: "k", maxRetries: 0, defaultHeaders: { traceparent: `00-${traceId}-${callerSpan}-01` } });
    const r = await client.chat.completions.create({ model: t.modelId, messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 6, temperature: 0 });
    const usage = r.usage!;
    const ofTrace = () => received.filter((x) => x.span.traceId === traceId);
    await waitFor(() => ofTrace().some((x) => x.span.name === "llamux.engine.decode") && ofTrace().some((x) => x.span.kind === SPAN_KIND_SERVER), 15_000, "the trace's spans");

    const server = ofTrace().find((x) => x.span.kind === SPAN_KIND_SERVER)!;
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

    const engine = ofTrace().filter((x) => x.resource["llamux.component"] === "engine");
    assert.deepEqual(engine.map((x) => x.span.name).sort(), ["llamux.engine.decode", "llamux.engine.prefill", "llamux.engine.wait_for_slot"]);
    for (const e of engine) assert.equal(e.span.parentSpanId, server.span.spanId, `${e.span.name} is a child of the front's span, across the process boundary`);
    const byName = Object.fromEntries(engine.map((e) => [e.span.name, e.span]));
    assert.equal(attrs(byName["llamux.engine.prefill"]!)["gen_ai.usage.input_tokens"], usage.prompt_tokens);
    assert.equal(attrs(byName["llamux.engine.decode"]!)["gen_ai.usage.output_tokens"], usage.completion_tokens);
    // The phases follow each other within the front's span.
    const ns = (s: OtlpSpan, k: "startTimeUnixNano" | "endTimeUnixNano") => BigInt(s[k]);
    assert.ok(ns(byName["llamux.engine.wait_for_slot"]!, "endTimeUnixNano") <= ns(byName["llamux.engine.prefill"]!, "startTimeUnixNano") + 1_000_000n);
    assert.ok(ns(byName["llamux.engine.prefill"]!, "endTimeUnixNano") <= ns(byName["llamux.engine.decode"]!, "startTimeUnixNano") + 1_000_000n);
    assert.ok(ns(server.span, "startTimeUnixNano") <= ns(byName["llamux.engine.wait_for_slot"]!, "startTimeUnixNano") + 5_000_000n);

    await waitFor(() => logLines.some((l) => l.msg === "request" && l.traceId === traceId), 5000, "the access log line");
  });

  test("without a traceparent a request starts its own trace; a route nobody knows is named by its template, not its path", async () => {
    const before = received.length;
    await fetch(`${t.url}/v1/no-such-thing/${"x".repeat(40)}`);
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
