// The soak's and the overload bench's pure parts: reading /metrics, counting
// every request on both sides, RSS growth after warm-up, outcome classes.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { classify, overloadTable, type OverloadResult } from "../../../bench/overload.js";
import { parsePromText, sumOf } from "../../../bench/promText.js";
import { poissonGapMs, seededRandom } from "../../../bench/random.js";
import { rssSummary, type RssSample } from "../../../bench/rss.js";
import { accountFor, countsDelta, serverCounts } from "../../../bench/soak.js";
import type { RequestSample } from "../../../bench/loadgen.js";

const METRICS = `# HELP llamux_requests_total HTTP requests by endpoint and status
# TYPE llamux_requests_total counter
llamux_requests_total{endpoint="/v1/chat",status="200"} 10
llamux_requests_total{endpoint="/v1/chat",status="499"} 3
llamux_requests_total{endpoint="/v1/completions",status="429"} 2
llamux_requests_total{endpoint="/metrics",status="200"} 40
llamux_rejections_total{tenant="default",reason="server_queue_full"} 2
llamux_slots_busy 0
llamux_process_weird{label="a \\"quoted\\" b"} 1.5e3
`;

describe("promText", () => {
  test("parses samples with labels (escaped quotes included), skipping comments", () => {
    const s = parsePromText(METRICS);
    assert.equal(s.length, 7);
    assert.deepEqual(s[0], { name: "llamux_requests_total", labels: { endpoint: "/v1/chat", status: "200" }, value: 10 });
    assert.deepEqual(s.at(-1), { name: "llamux_process_weird", labels: { label: 'a "quoted" b' }, value: 1500 });
  });

  test("sumOf adds the samples whose labels match", () => {
    const s = parsePromText(METRICS);
    assert.equal(sumOf(s, "llamux_requests_total"), 55);
    assert.equal(sumOf(s, "llamux_requests_total", { endpoint: "/v1/chat" }), 13);
    assert.equal(sumOf(s, "llamux_slots_busy"), 0);
    assert.equal(sumOf(s, "absent"), 0);
  });
});

describe("soak accounting", () => {
  test("serverCounts keeps generation endpoints only; countsDelta subtracts", () => {
    const after = serverCounts(parsePromText(METRICS));
    assert.deepEqual(after, { byStatus: { "200": 10, "499": 3, "429": 2 }, rejections: { server_queue_full: 2 } });
    const before = { byStatus: { "200": 4 }, rejections: {} };
    assert.deepEqual(countsDelta(before, after), { byStatus: { "200": 6, "499": 3, "429": 2 }, rejections: { server_queue_full: 2 } });
  });

  test("matching counts account for every request", () => {
    const a = accountFor(11, { completed: 6, cancelled: 3, rejected: 2, error: 0 }, { byStatus: { "200": 6, "499": 3, "429": 2 }, rejections: {} });
    assert.deepEqual(a.mismatches, []);
    assert.deepEqual(a.server, { total: 11, completed: 6, cancelled: 3, rejected: 2, other: 0 });
  });

  test("each kind of discrepancy is named", () => {
    const a = accountFor(12, { completed: 6, cancelled: 3, rejected: 2, error: 1 }, { byStatus: { "200": 5, "499": 4, "503": 1, "500": 1 }, rejections: {} });
    assert.deepEqual(a.mismatches, [
      "1 requests failed",
      "the server counted 11 generation requests, 12 sent",
      "server completed 5, client 6",
      "server saw 4 clients leave, client cancelled 3",
      "server refused 1, client saw 2 refused",
      "server answered 1 with another status",
    ]);
    assert.match(
      accountFor(5, { completed: 1, cancelled: 0, rejected: 0, error: 0 }, { byStatus: { "200": 1 }, rejections: {} }).mismatches[0]!,
      /client outcomes add up to 1, 5 sent/,
    );
  });
});

describe("rssSummary", () => {
  const samples = (values: number[]): RssSample[] => values.map((v, i) => ({ atMs: i * 1000, frontBytes: v, workerBytes: null }));

  test("compares the median just after warm-up with the median at the end", () => {
    // 0-1 s warm-up (ignored), then 100 100 100 ... 110 110 at the end.
    const s = samples([500, 400, 100, 100, 100, 105, 105, 105, 110, 110, 110]);
    const r = rssSummary(s, (x) => x.frontBytes, 2000, 10_000, 0.25);
    assert.equal(r.baselineBytes, 100);
    assert.equal(r.endBytes, 110);
    assert.equal(r.peakBytes, 500);
    assert.ok(Math.abs(r.growth! - 0.1) < 1e-9);
  });

  test("without samples for a process every figure is null", () => {
    const r = rssSummary(samples([1, 2, 3]), (x) => x.workerBytes, 0, 2000);
    assert.deepEqual(r, { baselineBytes: null, endBytes: null, peakBytes: null, growth: null });
  });
});

describe("overload", () => {
  const sample = (over: Partial<RequestSample>): RequestSample => ({
    ok: false,
    ttftMs: NaN,
    e2eMs: 1,
    itlMs: [],
    outputTokens: 0,
    promptTokens: null,
    ...over,
  });

  test("classify separates admitted, refused by code, and failures", () => {
    const c = classify([
      sample({ ok: true, ttftMs: 5, outputTokens: 3 }),
      sample({ status: 429, errorCode: "queue_full", error: "HTTP 429" }),
      sample({ status: 429, errorCode: "queue_full", error: "HTTP 429" }),
      sample({ status: 503, errorCode: "queue_timeout", error: "HTTP 503" }),
      sample({ status: 503, error: "HTTP 503: no body" }),
      sample({ error: "ECONNRESET" }),
    ]);
    assert.deepEqual(c, { admitted: 1, refused: { queue_full: 2, queue_timeout: 1, http_503: 1 }, errors: 1, errorSamples: ["ECONNRESET"] });
  });

  test("the table has one row per run", () => {
    const summary = { p50: 10, p99: 20, mean: 12 };
    const result: OverloadResult = {
      capacity: null,
      offeredPerSecond: 4,
      durationMs: 1000,
      sent: 5,
      admitted: 3,
      refused: { queue_full: 2 },
      errors: 0,
      errorSamples: [],
      admittedTtftMs: summary,
      admittedE2eMs: summary,
      goodputTokensPerSecond: 9,
      server: { byStatus: {}, rejections: {} },
      rss: {
        front: { startBytes: null, peakBytes: null, endBytes: 2 * 1024 * 1024 },
        worker: { startBytes: null, peakBytes: null, endBytes: null },
        samples: [],
      },
    };
    const lines = overloadTable([
      { name: "a", result },
      { name: "b", result },
    ]).split("\n");
    assert.equal(lines.length, 4);
    assert.match(lines[2]!, /^\| a \| - \| 4\.00 \| 5 \| 3 \| 2 \| 0 \| 0 \| 10 \| 20 \| 20 \| 9\.0 \| 2 \| - \|$/);
  });
});

describe("random", () => {
  test("the same seed gives the same sequence; Poisson gaps average 1/rate", () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    const xs = Array.from({ length: 5 }, () => a());
    assert.deepEqual(
      xs,
      Array.from({ length: 5 }, () => b()),
    );
    assert.ok(xs.every((x) => x >= 0 && x < 1));
    const r = seededRandom(1);
    const n = 20_000;
    let total = 0;
    for (let i = 0; i < n; i++) total += poissonGapMs(r, 4);
    assert.ok(Math.abs(total / n - 250) < 10, `mean gap ${total / n} ms`);
  });
});
