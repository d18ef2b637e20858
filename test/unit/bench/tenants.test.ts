// The multi-tenant workload (bench/tenants.ts): argument parsing, per-tenant
// aggregation, and the closed loops against a fake OpenAI-style SSE server
// that tells tenants apart by their bearer key, as llamux does.
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { benchMain } from "../../../bench/cli.js";
import type { RequestSample } from "../../../bench/loadgen.js";
import { reportJson, tenantsTable } from "../../../bench/report.js";
import {
  parseTenantList,
  parseTenantMap,
  runTenantWorkload,
  summarizeTenant,
  tenantSpecs,
  type TenantSpec,
  type TenantWorkload,
} from "../../../bench/tenants.js";

const defaults = { apiKey: undefined, promptTokens: 32, maxTokens: 64 };

describe("parsing", () => {
  test("--tenants: NAME:IN_FLIGHT pairs in order", () => {
    assert.deepEqual(parseTenantList("a:16,b:1"), [
      { name: "a", inFlight: 16 },
      { name: "b", inFlight: 1 },
    ]);
    assert.deepEqual(parseTenantList(" team-1:2 , x.y_z:3 "), [
      { name: "team-1", inFlight: 2 },
      { name: "x.y_z", inFlight: 3 },
    ]);
  });

  test("--tenants: malformed lists are refused", () => {
    for (const bad of ["", "a", "a:", ":3", "a:0", "a:-1", "a:1.5", "a:1,,b:2", "a b:1", "a:1,a:2"]) {
      assert.throws(() => parseTenantList(bad), /--tenants/, bad);
    }
  });

  test("NAME=VALUE maps: values may contain '='; names must be tenants; no repeats", () => {
    assert.deepEqual(
      [...parseTenantMap("tenant-keys", "a=sk-1,b=k==", ["a", "b"])],
      [
        ["a", "sk-1"],
        ["b", "k=="],
      ],
    );
    assert.equal(parseTenantMap("tenant-keys", undefined, ["a"]).size, 0);
    assert.throws(() => parseTenantMap("tenant-keys", "c=k", ["a", "b"]), /--tenant-keys names tenant 'c', which is not in --tenants/);
    assert.throws(() => parseTenantMap("tenant-keys", "a", ["a"]), /NAME=VALUE/);
    assert.throws(() => parseTenantMap("tenant-keys", "a=", ["a"]), /NAME=VALUE/);
    assert.throws(() => parseTenantMap("tenant-keys", "=k", ["a"]), /NAME=VALUE/);
    assert.throws(() => parseTenantMap("tenant-keys", "a=1,a=2", ["a"]), /twice/);
  });

  test("specs: per-tenant values where given, shared defaults elsewhere", () => {
    const { specs, solo } = tenantSpecs(
      { tenants: "a:16,b:1,c:2", tenantKeys: "a=KA,b=KB", tenantMaxTokens: "a=256,b=32", tenantPromptTokens: "c=8", solo: "b" },
      { apiKey: "shared", promptTokens: 32, maxTokens: 64 },
    );
    assert.deepEqual(specs, [
      { name: "a", inFlight: 16, apiKey: "KA", promptTokens: 32, maxTokens: 256 },
      { name: "b", inFlight: 1, apiKey: "KB", promptTokens: 32, maxTokens: 32 },
      { name: "c", inFlight: 2, apiKey: "shared", promptTokens: 8, maxTokens: 64 },
    ]);
    assert.deepEqual(solo, ["b"]);
  });

  test("specs: no key anywhere means no Authorization header; bad numbers and unknown --solo are refused", () => {
    assert.equal(tenantSpecs({ tenants: "a:1" }, defaults).specs[0]!.apiKey, undefined);
    assert.deepEqual(tenantSpecs({ tenants: "a:1,b:1", solo: "b,a,b" }, defaults).solo, ["b", "a"]);
    assert.throws(() => tenantSpecs({ tenants: "a:1", tenantMaxTokens: "a=0" }, defaults), /--tenant-max-tokens: a must be a positive integer/);
    assert.throws(() => tenantSpecs({ tenants: "a:1", tenantPromptTokens: "a=x" }, defaults), /--tenant-prompt-tokens/);
    assert.throws(() => tenantSpecs({ tenants: "a:1", solo: "z" }, defaults), /--solo names tenant 'z'/);
  });
});

describe("the CLI refuses inconsistent tenant options before sending anything", () => {
  const messages: string[] = [];
  const originalError = console.error;
  before(() => void (console.error = (...args: unknown[]) => void messages.push(args.join(" "))));
  after(() => void (console.error = originalError));

  test("one line, exit 2", async () => {
    const base = ["--url", "http://127.0.0.1:1", "--model", "m"];
    const cases: Array<[string[], RegExp]> = [
      [["--solo", "b"], /--solo needs --tenants/],
      [["--duration-s", "5"], /--duration-s needs --tenants/],
      [["--tenant-keys", "a=k"], /--tenant-keys needs --tenants/],
      [["--tenants", "a:1", "--concurrency", "4"], /--concurrency cannot be combined with --tenants/],
      [["--tenants", "a:1", "--duration-s", "5", "--requests", "3"], /alternatives/],
      [["--tenants", "a:1", "--duration-s", "0"], /--duration-s must be a positive number/],
      [["--tenants", "a:1", "--duration-s", "soon"], /--duration-s must be a positive number/],
      [["--tenants", "a=1"], /--tenants must be/],
      [["--tenants", "a:1", "--tenant-keys", "b=k"], /not in --tenants/],
      [["--tenants", "a:1", "--solo", "b"], /--solo names tenant 'b'/],
    ];
    for (const [argv, expected] of cases) {
      messages.length = 0;
      const code = await benchMain([...base, ...argv]);
      const said = messages.join("\n");
      assert.equal(code, 2, `${argv.join(" ")}: ${said}`);
      assert.match(said, expected);
      assert.equal(said.split("\n").length, 1, said);
    }
  });
});

const sample = (over: Partial<RequestSample>): RequestSample => ({
  ok: true,
  ttftMs: 10,
  e2eMs: 100,
  itlMs: [5, 5],
  outputTokens: 3,
  promptTokens: 30,
  ...over,
});
const spec = (over: Partial<TenantSpec> = {}): TenantSpec => ({ name: "a", inFlight: 2, promptTokens: 32, maxTokens: 3, ...over });

describe("summarizeTenant", () => {
  test("completed, failed and cut requests are told apart; cut requests' tokens and TTFT count", () => {
    const r = summarizeTenant(
      spec(),
      [
        sample({ ttftMs: 10, e2eMs: 100 }),
        sample({ ttftMs: 30, e2eMs: 300 }),
        sample({ ok: false, error: "HTTP 429: slow down", ttftMs: NaN, outputTokens: 0, promptTokens: null }),
        sample({ ok: false, error: "aborted", aborted: true, ttftMs: 50, outputTokens: 2, promptTokens: null }),
        sample({ ok: false, error: "aborted", aborted: true, ttftMs: NaN, outputTokens: 0, promptTokens: null }),
      ],
      2,
    );
    assert.equal(r.requests, 5);
    assert.equal(r.completed, 2);
    assert.equal(r.errors, 1);
    assert.equal(r.cut, 2);
    assert.deepEqual(r.errorSamples, ["HTTP 429: slow down"]);
    assert.equal(r.outputTokens, 3 + 3 + 2);
    assert.equal(r.outputTokensPerSecond, 4);
    assert.equal(r.ttftMs.p50, 30); // 10, 30, 50: the request cut before its first token has no TTFT
    assert.equal(r.e2eMs.p50, 200);
    assert.equal(r.promptTokensMedian, 30);
    assert.equal(r.tenant, "a");
    assert.equal(r.inFlight, 2);
  });

  test("no samples: zeros and NaN latencies, which the table shows as '-' and JSON as null", () => {
    const r = summarizeTenant(spec(), [], 0);
    assert.equal(r.outputTokensPerSecond, 0);
    assert.ok(Number.isNaN(r.ttftMs.p50));
    const table = tenantsTable([{ phase: "mixed", tenants: [r] }]);
    assert.match(table, /\| mixed \| a \| 2 \| 3 \| 0 \| 0 \| 0 \| 0 \| - \| 0\.0 \| - \| - \| - \| - \|/);
    assert.match(
      reportJson({
        kind: "tenants",
        url: "u",
        model: "m",
        endpoint: "chat",
        ignoreEos: true,
        durationS: 1,
        requestsPerTenant: null,
        tenants: [],
        phases: [{ phase: "mixed", tenants: [r] }],
      }),
      /"p50": null/,
    );
  });

  test("the table gives each tenant's share of its phase", () => {
    const a = { ...summarizeTenant(spec(), [sample({ outputTokens: 30 })], 1) };
    const b = { ...summarizeTenant(spec({ name: "b", inFlight: 1 }), [sample({ outputTokens: 10 })], 1) };
    const solo = summarizeTenant(spec({ name: "b", inFlight: 1 }), [sample({ outputTokens: 20 })], 1);
    const lines = tenantsTable([
      { phase: "mixed", tenants: [a, b] },
      { phase: "solo b", tenants: [solo] },
    ]).split("\n");
    assert.equal(lines.length, 5);
    assert.match(lines[0]!, /\| phase \| tenant \| in flight .* out tok\/s \| share \| TTFT p50 ms \| TTFT p99 ms \| E2E p50 ms \|/);
    assert.match(lines[2]!, /^\| mixed \| a \| .*\| 30\.0 \| 0\.750 \|/);
    assert.match(lines[3]!, /^\| mixed \| b \| .*\| 10\.0 \| 0\.250 \|/);
    assert.match(lines[4]!, /^\| solo b \| b \| .*\| 20\.0 \| 1\.000 \|/);
  });
});

// A fake server: one content chunk per token every CHUNK_MS, usage at the end.
const CHUNK_MS = 4;
let server: http.Server;
let url: string;
const inFlight = new Map<string, number>();
const maxInFlight = new Map<string, number>();
const seen: Array<{ auth: string | undefined; maxTokens: number; prompt: string }> = [];

async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  let raw = "";
  for await (const d of req) raw += (d as Buffer).toString();
  const body = JSON.parse(raw) as { max_tokens: number; prompt: string };
  const who = req.headers.authorization ?? "none";
  seen.push({ auth: req.headers.authorization, maxTokens: body.max_tokens, prompt: body.prompt });
  inFlight.set(who, (inFlight.get(who) ?? 0) + 1);
  maxInFlight.set(who, Math.max(maxInFlight.get(who) ?? 0, inFlight.get(who)!));
  let closed = false;
  res.on("close", () => void (closed = true));
  try {
    res.writeHead(200, { "content-type": "text/event-stream" });
    for (let i = 0; i < body.max_tokens && !closed; i++) {
      await new Promise((r) => setTimeout(r, CHUNK_MS));
      res.write(`data: ${JSON.stringify({ choices: [{ index: 0, text: `t${i} `, finish_reason: null }] })}\n\n`);
    }
    res.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 32, completion_tokens: body.max_tokens } })}\n\n`);
    res.end("data: [DONE]\n\n");
  } finally {
    inFlight.set(who, inFlight.get(who)! - 1);
  }
}

describe("runTenantWorkload against a fake server", () => {
  before(async () => {
    server = http.createServer((req, res) => void handle(req, res).catch((err) => res.destroy(err as Error)));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  const workload = (over: Partial<TenantWorkload>): TenantWorkload => ({
    url,
    model: "m",
    endpoint: "completions",
    ignoreEos: true,
    timeoutMs: 10_000,
    tenants: [spec({ name: "a", inFlight: 3, apiKey: "KA", maxTokens: 5 }), spec({ name: "b", inFlight: 1, apiKey: "KB", maxTokens: 2 })],
    durationS: null,
    requestsPerTenant: 4,
    ...over,
  });

  test("count mode: each tenant keeps its own in-flight count, key and max tokens", async () => {
    seen.length = 0;
    maxInFlight.clear();
    const phases = await runTenantWorkload(workload({}), []);
    assert.equal(phases.length, 1);
    const [a, b] = phases[0]!.tenants;
    assert.deepEqual([a!.tenant, a!.requests, a!.completed, a!.outputTokens], ["a", 4, 4, 20]);
    assert.deepEqual([b!.tenant, b!.requests, b!.completed, b!.outputTokens], ["b", 4, 4, 8]);
    assert.equal(maxInFlight.get("Bearer KA"), 3);
    assert.equal(maxInFlight.get("Bearer KB"), 1);
    assert.deepEqual(new Set(seen.filter((s) => s.auth === "Bearer KA").map((s) => s.maxTokens)), new Set([5]));
    assert.deepEqual(new Set(seen.filter((s) => s.auth === "Bearer KB").map((s) => s.maxTokens)), new Set([2]));
    assert.equal(new Set(seen.map((s) => s.prompt)).size, 8, "no two requests share a prompt");
    assert.ok(a!.ttftMs.p50 > 0 && a!.e2eMs.p50 > a!.ttftMs.p50);
  });

  test("duration mode: sending stops at the deadline, requests still streaming are cut, not failed", async () => {
    const w = workload({
      durationS: 0.25,
      requestsPerTenant: null,
      tenants: [spec({ name: "a", inFlight: 2, maxTokens: 1000 }), spec({ name: "b", inFlight: 1, maxTokens: 3 })],
    });
    const started = performance.now();
    const [mixed] = await runTenantWorkload(w, []);
    assert.ok(performance.now() - started < 3000);
    const [a, b] = mixed!.tenants;
    assert.equal(a!.completed, 0);
    assert.equal(a!.cut, 2);
    assert.equal(a!.errors, 0);
    assert.ok(a!.outputTokens > 5, `a streamed ${a!.outputTokens} tokens before the cut`);
    assert.equal(a!.wallSeconds, 0.25);
    assert.ok(Math.abs(a!.outputTokensPerSecond - a!.outputTokens / 0.25) < 1e-9);
    assert.ok(b!.completed >= 5, `b completed ${b!.completed}`);
    assert.ok(b!.cut <= 1);
  });

  test("--solo: after the mixed phase, the named tenant runs alone, with fresh prompts", async () => {
    seen.length = 0;
    const phases = await runTenantWorkload(workload({ requestsPerTenant: 2 }), ["b"]);
    assert.deepEqual(
      phases.map((p) => [p.phase, p.tenants.map((t) => t.tenant)]),
      [
        ["mixed", ["a", "b"]],
        ["solo b", ["b"]],
      ],
    );
    const soloRequests = seen.slice(-2);
    assert.ok(soloRequests.every((s) => s.auth === "Bearer KB"));
    assert.equal(new Set(seen.map((s) => s.prompt)).size, seen.length);
    assert.equal(phases[1]!.tenants[0]!.completed, 2);
  });
});
