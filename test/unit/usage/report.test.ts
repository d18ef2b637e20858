// The report's pure parts (src/usage/report.ts): query parsing (defaults,
// bounds, list forms, paging cursors) and how rows become buckets and groups.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ApiError } from "../../../src/errors.js";
import { costOf, encodePage, pageRange, parseReportQuery, reportPage } from "../../../src/usage/report.js";
import type { UsageRow } from "../../../src/usage/usageLog.js";

const q = (kind: "completions" | "embeddings" | "costs", s: string, now = 1_000_000) => parseReportQuery(kind, new URLSearchParams(s), now);
// Results are a union over the three reports; the tests read fields by name.
const results = (page: { data: Array<{ results: unknown[] }> }, i = 0) => page.data[i]!.results as any[];
const row = (over: Partial<UsageRow>): UsageRow => ({
  bucket: 0,
  kind: "completions",
  tenantId: "a",
  apiKeyId: "key_1",
  model: "m",
  batchId: null,
  requests: 1,
  inputTokens: 10,
  cachedTokens: 4,
  outputTokens: 5,
  price: { input: 1, cachedInput: 0.5, output: 2 },
  ...over,
});

describe("usage report: query", () => {
  test("defaults: 1d buckets, 7 of them, end_time now; lists in every form", () => {
    const a = q("completions", "start_time=100");
    assert.equal(a.width, "1d");
    assert.equal(a.limit, 7);
    assert.equal(a.endSeconds, 1_000_001);
    for (const s of ["group_by=model&group_by=batch", "group_by[]=model&group_by[]=batch", "group_by[0]=model&group_by[1]=batch", "group_by=model,batch"]) {
      assert.deepEqual([...q("completions", `start_time=1&${s}`).groupBy], ["model", "batch"], s);
    }
    assert.equal(q("costs", "start_time=1&limit=180").limit, 180);
    assert.equal(q("completions", "start_time=1&bucket_width=1m&limit=1440").limit, 1440);
  });

  test("each bad parameter is a 400 naming it", () => {
    const cases: Array<[string, string, string]> = [
      ["completions", "", "start_time"],
      ["completions", "start_time=-5", "start_time"],
      ["completions", "start_time=1.5", "start_time"],
      ["completions", "start_time=10&end_time=10", "end_time"],
      ["completions", "start_time=1&bucket_width=2h", "bucket_width"],
      ["completions", "start_time=1&bucket_width=1h&limit=169", "limit"],
      ["completions", "start_time=1&limit=1&limit=2", "limit"],
      ["embeddings", "start_time=1&batch=true", "batch"],
      ["completions", "start_time=1&models=a,,b", "models"],
      ["completions", "start_time=1&page=page_x", "page"],
      ["completions", `start_time=1&page=${encodePage(50)}`, "page"],
      ["costs", "start_time=1&group_by=batch", "group_by"],
    ];
    for (const [kind, s, param] of cases) {
      assert.throws(
        () => q(kind as "completions", s),
        (e: unknown) => e instanceof ApiError && e.status === 400 && e.param === param,
        `${kind} ${s}`,
      );
    }
  });

  test("a page cursor continues where the last page stopped", () => {
    const first = q("completions", "start_time=0&end_time=250&bucket_width=1m&limit=2");
    assert.deepEqual(pageRange(first), { fromSeconds: 0, toSeconds: 120, widthSeconds: 60, buckets: 2 });
    const page = reportPage(first, []);
    assert.equal(page.has_more, true);
    const second = q("completions", `start_time=0&end_time=250&bucket_width=1m&limit=2&page=${page.next_page}`);
    assert.deepEqual(pageRange(second), { fromSeconds: 120, toSeconds: 240, widthSeconds: 60, buckets: 2 });
    const third = q("completions", `start_time=0&end_time=250&bucket_width=1m&limit=2&page=${reportPage(second, []).next_page}`);
    const last = reportPage(third, []);
    assert.deepEqual(
      last.data.map((b) => [b.start_time, b.end_time]),
      [[240, 250]],
    );
    assert.equal(last.has_more, false);
    assert.equal(last.next_page, null);
  });
});

describe("usage report: page", () => {
  test("rows fold into the requested groups; ungrouped fields are null", () => {
    const query = q("completions", "start_time=0&end_time=120&bucket_width=1m&group_by=project_id,batch");
    const page = reportPage(query, [row({}), row({ apiKeyId: "key_2" }), row({ batchId: "batch_1", apiKeyId: null }), row({ bucket: 1, tenantId: "b" })]);
    assert.deepEqual(
      results(page).map((r) => [r.project_id, r.batch, r.batch_id, r.num_model_requests, r.input_tokens, r.api_key_id, r.model]),
      [
        ["a", false, null, 2, 20, null, null],
        ["a", true, "batch_1", 1, 10, null, null],
      ],
    );
    assert.equal(results(page, 1)[0].project_id, "b");
  });

  test("filters: keys, models, batch or not", () => {
    const rows = [row({}), row({ apiKeyId: "key_2", model: "n" }), row({ batchId: "b1", apiKeyId: null })];
    const total = (s: string) => results(reportPage(q("completions", `start_time=0&end_time=60&${s}`), rows), 0).reduce((n, r) => n + r.num_model_requests, 0);
    assert.equal(total(""), 3);
    assert.equal(total("api_key_ids=key_2"), 1);
    assert.equal(total("models=m"), 2);
    assert.equal(total("batch=true"), 1);
    assert.equal(total("batch=false"), 2);
    assert.equal(total("batch_ids=b1"), 1);
  });

  test("costs: uncached input, cached input and output at the record's prices, as line items", () => {
    assert.deepEqual(costOf({ input: 1, cachedInput: 0.5, output: 2 }, { inputTokens: 10, cachedTokens: 4, outputTokens: 5 }), {
      input: 6e-6,
      cachedInput: 2e-6,
      output: 10e-6,
    });
    const rows = [row({}), row({ price: null, model: "free" })];
    const items = results(reportPage(q("costs", "start_time=0&end_time=60&group_by=line_item"), rows), 0);
    assert.deepEqual(
      items.map((r) => [r.line_item, r.amount.value]),
      [
        ["m, input", 6e-6],
        ["m, cached input", 2e-6],
        ["m, output", 10e-6],
        ["free, input", 0],
        ["free, cached input", 0],
        ["free, output", 0],
      ],
    );
    const [sum] = results(reportPage(q("costs", "start_time=0&end_time=60"), rows), 0);
    assert.equal(sum!.line_item, null);
    assert.ok(Math.abs(sum!.amount.value - 18e-6) < 1e-18);
  });
});
