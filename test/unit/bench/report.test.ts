import assert from "node:assert/strict";
import { test } from "node:test";
import type { CeilingLevel } from "../../../bench/ceiling.js";
import { compare, compareTable, pairedRatio } from "../../../bench/compare.js";
import { gaps, promptFor, requestBody, summarizeLevel, type RequestSample } from "../../../bench/loadgen.js";
import { ceilingTable, loadTable, parseCeilingJson, reportJson } from "../../../bench/report.js";

const sample = (ttftMs: number, e2eMs: number, outputTokens: number, promptTokens: number | null = 32): RequestSample => ({
  ok: true,
  ttftMs,
  e2eMs,
  itlMs: [10, 20],
  outputTokens,
  promptTokens,
});
const failed: RequestSample = { ok: false, error: "HTTP 500: boom", ttftMs: NaN, e2eMs: 5, itlMs: [], outputTokens: 0, promptTokens: null };
const ceilingLevel = (concurrency: number, outputTokensPerSecond: number): CeilingLevel => ({
  concurrency,
  rounds: 1,
  outputTokens: outputTokensPerSecond,
  seconds: 1,
  outputTokensPerSecond,
});

test("summarizeLevel counts tokens over wall time, derives TPOT and the median prompt size", () => {
  const r = summarizeLevel({ concurrency: 2 }, [sample(100, 1100, 11, 30), sample(200, 1200, 11, 40), failed, failed], 2);
  assert.equal(r.requests, 4);
  assert.equal(r.completed, 2);
  assert.equal(r.errors, 2);
  assert.deepEqual(r.errorSamples, ["HTTP 500: boom"]); // distinct messages only
  assert.equal(r.outputTokens, 22);
  assert.equal(r.outputTokensPerSecond, 11);
  assert.equal(r.tpotMs.p50, 100); // (1100 - 100) / (11 - 1)
  assert.equal(r.ttftMs.p50, 150);
  assert.equal(r.itlMs.p50, 15);
  assert.equal(r.promptTokensMedian, 35);
});

test("a level with no successes has no latencies and no prompt size", () => {
  const r = summarizeLevel({ concurrency: 1 }, [failed], 1);
  assert.equal(r.completed, 0);
  assert.ok(Number.isNaN(r.ttftMs.p50));
  assert.equal(r.promptTokensMedian, null);
  assert.match(loadTable([r]), /\| 1 \| 1 \| 0 \| 1 \| - \| 0\.0 \| - \| - \|/);
  assert.equal(
    JSON.parse(reportJson({ kind: "load", url: "u", model: "m", endpoint: "chat", promptTokens: 1, maxTokens: 1, ignoreEos: true, levels: [r] })).levels[0]
      .ttftMs.p50,
    null,
  );
});

test("the load table has the documented columns, and no ratio column without a ceiling", () => {
  const table = loadTable([summarizeLevel({ concurrency: 4 }, [sample(50, 1050, 101)], 1)]);
  const [head, rule, row] = table.split("\n");
  assert.equal(
    head,
    "| concurrency | req | ok | err | prompt tok | out tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | TPOT p50 ms | E2E p50 ms | E2E p99 ms |",
  );
  assert.equal(rule, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  assert.equal(row, "| 4 | 1 | 1 | 0 | 32 | 101.0 | 50 | 50 | 15.0 | 19.9 | 10.0 | 1050 | 1050 |");
});

test("the load table shows the ratio to the ceiling at the same concurrency, '-' where there is none", () => {
  const levels = [summarizeLevel({ concurrency: 4 }, [sample(50, 1050, 101)], 1), summarizeLevel({ concurrency: 8 }, [sample(50, 1050, 101)], 1)];
  const table = loadTable(levels, [ceilingLevel(4, 202)]);
  assert.match(table.split("\n")[0]!, /\| out tok\/s \| vs ceiling \| TTFT p50 ms \|/);
  assert.match(table, /\| 4 \| 1 \| 1 \| 0 \| 32 \| 101\.0 \| 0\.500 \|/);
  assert.match(table, /\| 8 \| 1 \| 1 \| 0 \| 32 \| 101\.0 \| - \|/);
  assert.match(ceilingTable([ceilingLevel(4, 202)]), /\| 4 \| 1 \| 202 \| 1\.00 \| 202\.0 \|/);
});

test("ceiling JSON round-trips through reportJson and parseCeilingJson, and a wrong file is refused", () => {
  const shape = {
    modelPath: "m.gguf",
    concurrency: [4],
    requests: null,
    promptTokens: 32,
    maxTokens: 64,
    contextPerSequence: 256,
    threads: 2,
    gpu: "off" as const,
  };
  const how = { execArgv: ["--max-semi-space-size=1"], env: { UV_THREADPOOL_SIZE: "1" } };
  const text = reportJson({ kind: "ceiling", shape, process: how, levels: [ceilingLevel(4, 202)] });
  assert.deepEqual(parseCeilingJson(text), [ceilingLevel(4, 202)]);
  assert.throws(() => parseCeilingJson(JSON.stringify({ kind: "load", levels: [] })), /not a 'bench ceiling --json' file/);
  assert.throws(() => parseCeilingJson(JSON.stringify({ kind: "ceiling", levels: [{ concurrency: 1 }] })), /outputTokensPerSecond/);
  assert.throws(() => parseCeilingJson("{"), SyntaxError);
});

test("compare takes medians over runs", () => {
  const lvl = (c: number, tps: number) => ({ ...summarizeLevel({ concurrency: c }, [sample(10, 20, 2)], 1), outputTokensPerSecond: tps });
  const rows = compare(
    [[ceilingLevel(1, 100)], [ceilingLevel(1, 120)], [ceilingLevel(1, 110)]],
    [{ name: "x", runs: [[lvl(1, 90)], [lvl(1, 99)], [lvl(1, 300)]] }],
  );
  assert.equal(rows[0]!.ceiling, 110);
  assert.equal(rows[0]!.servers[0]!.tokensPerSecond, 99);
  assert.equal(rows[0]!.servers[0]!.ratio, 0.9);
  assert.match(compareTable(rows), /\| 1 \| 110\.0 \| 99\.0 \| 0\.900 \|/);
});

test("the ratio to the ceiling pairs each run with the ceiling measured next to it, so drift over the run cancels", () => {
  const lvl = (tps: number) => ({ ...summarizeLevel({ concurrency: 8 }, [sample(10, 20, 2)], 1), outputTokensPerSecond: tps });
  // The machine sped up and slowed down; each server run is measured beside its own ceiling.
  const ceilings = [[ceilingLevel(8, 100)], [ceilingLevel(8, 200)], [ceilingLevel(8, 150)]];
  const [row] = compare(ceilings, [{ name: "x", runs: [[lvl(90)], [lvl(190)], [lvl(100)]] }]);
  assert.equal(row!.servers[0]!.ratio, 0.9); // median of 0.9, 0.95, 0.667; the medians' ratio would be 100 / 150
  assert.equal(row!.servers[0]!.tokensPerSecond, 100);
  assert.equal(pairedRatio([90, 190, 100], [100, 200, 150]), 0.9);
  // Unpaired (counts differ): median over median.
  assert.equal(pairedRatio([90, 100], [100, 200, 150]), 95 / 150);
  assert.ok(Number.isNaN(pairedRatio([], [100])));
});

test("prompts are deterministic, distinct from their first word and promptTokens - 1 words long (BOS is the last token)", () => {
  const a = promptFor(0, 32).split(" ");
  const b = promptFor(1, 32).split(" ");
  assert.equal(a.length, 31);
  assert.notEqual(a[0], b[0]);
  assert.notDeepEqual(a, b);
  assert.equal(promptFor(7, 16), promptFor(7, 16));
});

test("request bodies stream with usage, and send ignore_eos only when asked", () => {
  const base = { url: "http://x", model: "m", concurrency: 1, requests: 1, promptTokens: 8, maxTokens: 5, timeoutMs: 1 };
  const chat = requestBody({ ...base, endpoint: "chat", ignoreEos: true }, 0);
  assert.deepEqual(chat.stream_options, { include_usage: true });
  assert.equal(chat.stream, true);
  assert.equal(chat.max_tokens, 5);
  assert.equal(chat.ignore_eos, true);
  assert.ok(Array.isArray(chat.messages));
  const completion = requestBody({ ...base, endpoint: "completions", ignoreEos: false }, 0);
  assert.equal(completion.ignore_eos, undefined);
  assert.equal(typeof completion.prompt, "string");
  assert.equal("temperature" in completion, false);
});

test("gaps are the differences between consecutive times", () => {
  assert.deepEqual(gaps([1, 4, 10]), [3, 6]);
  assert.deepEqual(gaps([5]), []);
});
