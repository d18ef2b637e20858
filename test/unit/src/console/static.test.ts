// The console's pure modules (plain browser ES modules, no DOM in them) under
// node: Prometheus text read back from prom-client's own rendering, chart
// layout, and the usage and cost reports folded for the charts.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createMetrics } from "../../../../src/metrics.js";
import { CONSOLE_DIR, loadConsoleFiles } from "../../../../src/console/route.js";

// Untyped browser modules, loaded from the copy the build put beside route.js.
const load = async (name: string): Promise<any> => import(new URL(`file://${CONSOLE_DIR}/${name}`).href);
const prom = await load("prometheus.js");
const charts = await load("charts.js");
const usage = await load("usage.js");

describe("console: prometheus.js", () => {
  test("reads back what prom-client renders, label escapes included", async () => {
    const m = createMetrics();
    m.completionTokens.inc({ model: "m1", tenant: "acme" }, 7);
    m.completionTokens.inc({ model: "m1", tenant: 'we"ird\\ten\nant' }, 5);
    m.completionTokens.inc({ model: "m2", tenant: "acme" }, 11);
    m.ttftSeconds.observe({ model: "m1" }, 0.2);
    const samples = prom.parsePrometheus(await m.registry.metrics());
    const byModel = prom.sumBy(samples, "llamux_completion_tokens_total", "model");
    assert.deepEqual(Object.fromEntries(byModel), { m1: 12, m2: 11 });
    const byTenant = prom.sumBy(samples, "llamux_completion_tokens_total", "tenant");
    assert.deepEqual(Object.fromEntries(byTenant), { acme: 18, 'we"ird\\ten\nant': 5 });
    const inf = samples.find((s: any) => s.name === "llamux_time_to_first_token_seconds_bucket" && s.labels.le === "+Inf");
    assert.equal(inf.value, 1);
  });

  test("skips comments and malformed lines; reads special values and timestamps", () => {
    const samples = prom.parsePrometheus('# HELP x y\n\nx 1 1700000000000\ny{a="b"} NaN\nz +Inf\nbroken{a="b} 3\nw{a=b} 2\n');
    assert.deepEqual(
      samples.map((s: any) => [s.name, s.value]),
      [
        ["x", 1],
        ["y", NaN],
        ["z", Infinity],
      ],
    );
  });

  test("rates between two readings; a counter that went down (a restarted worker) counts from 0", () => {
    const r = prom.rates(
      new Map([
        ["a", 10],
        ["b", 50],
      ]),
      new Map([
        ["a", 30],
        ["b", 4],
        ["c", 6],
      ]),
      2,
    );
    assert.deepEqual(Object.fromEntries(r), { a: 10, b: 2, c: 3 });
    assert.equal(prom.rates(new Map(), new Map([["a", 1]]), 0).size, 0);
  });
});

describe("console: charts.js layout", () => {
  test("ticks are 1, 2 or 5 × 10^n and reach the maximum", () => {
    assert.deepEqual(charts.ticks(0), [0, 1]);
    assert.deepEqual(charts.ticks(7), [0, 2, 4, 6, 8]);
    assert.deepEqual(charts.ticks(100), [0, 50, 100]);
    assert.deepEqual(charts.ticks(0.3), [0, 0.1, 0.2, 0.3]);
    for (const max of [1, 3, 17, 999, 1234567, 0.042]) {
      const t = charts.ticks(max);
      assert.ok(t[t.length - 1] >= max, `${max}: top ${t[t.length - 1]}`);
      assert.ok(t.length <= 6, `${max}: ${t.length} ticks`);
    }
  });

  test("stacked bars: each bucket's rectangles stack to its total, on one scale", () => {
    const buckets = [{ values: { a: 2, b: 3 } }, { values: { a: 0, b: 10 } }, { values: {} }];
    const { top, rects } = charts.stackedBarLayout(buckets, ["a", "b"], { width: 300, height: 100 });
    assert.equal(top, 10);
    const col = (i: number) => rects.filter((r: any) => r.bucket === i);
    assert.equal(col(0).length, 2);
    assert.equal(col(1).length, 1, "zero values draw nothing");
    assert.equal(col(2).length, 0);
    // Bucket 0: 5 of 10 → half the height, a below b.
    const [a, b] = col(0);
    assert.equal(a.height + b.height, 50);
    assert.equal(a.y, 80);
    assert.equal(b.y, 50);
    assert.equal(col(1)[0].y, 0, "the largest bucket reaches the top");
    assert.ok(rects.every((r: any) => r.x >= 0 && r.x + r.width <= 300));
  });

  test("sparkline points span the width; the newest value is at the right edge", () => {
    const pts = charts.sparklinePoints([0, 5, 10], { width: 100, height: 20 });
    assert.deepEqual(pts, [
      { x: 0, y: 20 },
      { x: 50, y: 10 },
      { x: 100, y: 0 },
    ]);
    assert.deepEqual(charts.sparklinePoints([3], { width: 100, height: 20 }), [{ x: 100, y: 0 }]);
    assert.deepEqual(charts.sparklinePoints([0, 0], { width: 100, height: 20 }), [
      { x: 0, y: 20 },
      { x: 100, y: 20 },
    ]);
  });
});

describe("console: usage.js", () => {
  const result = (project_id: string, model: string, input: number, cached: number, output: number, requests: number) => ({
    object: "organization.usage.completions.result",
    input_tokens: input,
    input_cached_tokens: cached,
    output_tokens: output,
    num_model_requests: requests,
    project_id,
    model,
    api_key_id: null,
    batch: null,
  });

  test("buckets in time order, cached input split from computed input, totals per tenant and model", () => {
    const data = [
      { object: "bucket", start_time: 120, end_time: 180, results: [result("b", "m", 5, 0, 1, 1)] },
      { object: "bucket", start_time: 60, end_time: 120, results: [result("a", "m", 10, 4, 3, 2), result("b", "m", 1, 0, 1, 1)] },
      { object: "bucket", start_time: 180, end_time: 240, results: [] },
    ];
    const f = usage.foldUsage(data);
    assert.deepEqual(
      f.buckets.map((b: any) => b.start),
      [60, 120, 180],
    );
    assert.deepEqual(f.buckets[0].values, { uncached: 7, cached: 4, output: 4, requests: 3 });
    assert.deepEqual(f.buckets[0].byTenant, { a: 2, b: 1 });
    assert.deepEqual(f.buckets[2].values, { uncached: 0, cached: 0, output: 0, requests: 0 });
    assert.deepEqual(f.tenants, ["a", "b"]);
    assert.deepEqual(f.totals, [
      { tenant: "a", model: "m", input: 10, cached: 4, output: 3, requests: 2 },
      { tenant: "b", model: "m", input: 6, cached: 0, output: 2, requests: 2 },
    ]);
    assert.deepEqual(Object.fromEntries(usage.perTenant(f)), { a: { tokens: 13, requests: 2 }, b: { tokens: 8, requests: 2 } });
  });

  test("costs per day and tenant, and their total", () => {
    const cost = (project_id: string, value: number) => ({
      object: "organization.costs.result",
      amount: { value, currency: "usd" },
      line_item: null,
      project_id,
    });
    const f = usage.foldCosts([
      { object: "bucket", start_time: 86400, end_time: 172800, results: [cost("a", 0.25), cost("a", 0.5), cost("b", 1)] },
      { object: "bucket", start_time: 0, end_time: 86400, results: [cost("b", 2)] },
    ]);
    assert.deepEqual(
      f.buckets.map((b: any) => [b.start, b.values]),
      [
        [0, { b: 2 }],
        [86400, { a: 0.75, b: 1 }],
      ],
    );
    assert.equal(f.total, 3.75);
    assert.deepEqual(f.tenants, ["a", "b"]);
  });

  test("a report's start is aligned to its bucket width and covers the range", () => {
    const now = 1_765_000_000 + 1234;
    for (const [width, seconds] of [
      ["1m", 60],
      ["1h", 3600],
      ["1d", 86400],
    ] as const) {
      const start = usage.startTime(width, now);
      assert.equal(start % seconds, 0, width);
      assert.ok(now - start <= usage.RANGES[width].seconds && now - start > usage.RANGES[width].seconds - seconds, width);
    }
  });
});

describe("console: route", () => {
  test("the build copied every file index.html needs", () => {
    const files = loadConsoleFiles();
    for (const name of ["index.html", "app.js", "console.css", "api.js", "charts.js", "prometheus.js", "usage.js"]) assert.ok(files.has(name), name);
    // Every relative module import of every file resolves to a served file.
    for (const [name, file] of files) {
      if (!name.endsWith(".js")) continue;
      for (const m of file.body.toString("utf8").matchAll(/from "\.\/([^"]+)"/g)) assert.ok(files.has(m[1]!), `${name} imports ${m[1]}`);
    }
  });
});
